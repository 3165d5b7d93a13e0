"""The label stage: auto-labels with provenance, a review queue, and people's answers win."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from lmforge.config import load_config
from lmforge.data import review
from lmforge.pipeline.runner import run_pipeline
from tests.conftest import make_rows, write_csv

UNLABELED = ["invoice refund charge please", "password login locked again", "parcel delivery courier why"]


def _run(config: dict[str, Any], rows: list[tuple[str, str]], **label: Any) -> Any:
    write_csv(Path(config["data"]["train"]), rows)
    config["clean"] = {"label_noise": "off"}
    config["label"].update(label)
    return run_pipeline(load_config(data=config), until="label")


@pytest.mark.parametrize(("low_confidence", "kept"), [("exclude", 0), ("keep", 3)])
def test_rows_without_labels_get_one_and_doubtful_ones_are_queued(
    config_dict: dict, low_confidence: str, kept: int
) -> None:
    rows = [*make_rows(), *((text, "") for text in UNLABELED)]
    # At min_confidence 1.0 every auto-label (a probability below 1) waits for a person.
    result = _run(config_dict, rows, method="embeddings", min_confidence=1.0, low_confidence=low_confidence)
    label = result.artifacts["label"]
    assert label.manifest["rows"]["auto_labelled"] == 3 and label.manifest["rows"]["queued"] == 3
    train = label.table("train")
    auto = train[train["label_source"].str.startswith("embeddings:")]
    assert len(auto) == kept and len(train) == 120 + kept
    assert set(auto["label"]) <= {"billing", "bug", "login", "shipping"}
    queue = review.read_queue(result.run_dir / "label" / review.QUEUE_FILE)
    assert sorted(queue["text"]) == sorted(UNLABELED)
    assert (queue["reason"] == review.LOW_CONFIDENCE).all() and queue["confidence"].between(0, 1).all()
    assert review.read_labels(result.run_dir / "label" / review.QUEUE_FILE) == [
        "billing", "bug", "login", "shipping"
    ]  # fmt: skip
    autolabels = pd.read_csv(result.run_dir / "label" / "autolabels.csv")
    assert len(autolabels) == 3 and autolabels["queued"].all()


def test_a_separate_unlabeled_file_is_labelled(config_dict: dict, tmp_path: Path) -> None:
    unlabeled = write_csv(tmp_path / "unlabeled.csv", [(t,) for t in UNLABELED], header=("text",))
    result = _run(config_dict, make_rows(), method="embeddings", min_confidence=0.0, unlabeled=str(unlabeled))
    train = result.artifacts["label"].table("train")
    from_file = train[train["source_file"] == "unlabeled"]
    assert sorted(from_file["text"]) == sorted(UNLABELED)
    assert from_file["source_row"].tolist() == [2, 3, 4]


def test_answers_from_review_override_the_file_and_the_model(config_dict: dict) -> None:
    rows = [*make_rows(), (UNLABELED[0], "")]
    first = _run(config_dict, rows, method="embeddings", min_confidence=1.0)
    answers = Path(config_dict["label"]["reviewed"])
    queued = review.read_queue(first.run_dir / "label" / review.QUEUE_FILE).iloc[0]
    review.record_answer(answers, queued.to_dict(), "billing", "correct", "tester")
    relabelled = {"item_id": review.item_id(rows[0][0]), "text": rows[0][0]}
    review.record_answer(answers, relabelled, "bug", "correct", "tester")

    second = run_pipeline(load_config(data=config_dict), until="label")
    assert not second.cached["label"]  # the answers file is part of the label stage's key
    train = second.artifacts["label"].table("train").set_index("text")
    assert train.loc[UNLABELED[0], "label"] == "billing"
    assert train.loc[UNLABELED[0], "label_source"] == "human"
    assert train.loc[rows[0][0], "label"] == "bug" and train.loc[rows[0][0], "label_source"] == "human"
    assert second.artifacts["label"].manifest["rows"]["queued"] == 0
