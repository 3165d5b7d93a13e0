"""Validation keeps every row accounted for: kept, or rejected with a reason."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lmforge.config import load_config
from lmforge.errors import DataError
from lmforge.pipeline.runner import run_pipeline
from tests.conftest import make_rows, write_csv


def test_rejected_rows_are_listed_with_reasons(config_dict: dict, tmp_path: Path) -> None:
    rows = [*make_rows(), ("", "billing"), ("   ", "bug"), ("no label here", "")]
    write_csv(Path(config_dict["data"]["train"]), rows)
    config_dict["label"]["enabled"] = False  # else the unlabelled row waits for the label stage
    result = run_pipeline(load_config(data=config_dict), until="split")
    rejected = pd.read_csv(result.run_dir / "validate" / "rejected.csv")
    assert rejected["reason"].tolist() == ["missing text", "blank text", "missing label"]
    assert rejected["source_row"].tolist() == [122, 123, 124]
    kept = result.artifacts["validate"].manifest["rows"]
    assert kept["train"] + kept["train_rejected"] == len(rows)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([("some text", "only")] * 30, "only one class ('only')"),
        ([*make_rows(), ("rare", "tiny"), ("rare two", "tiny")], "fewer than 5 rows: 'tiny' (2)"),
        ([("", "a")] * 20 + [("x", "b")] * 5, "20 of 25 rows rejected"),
    ],
)
def test_unusable_data_fails_with_the_file_named(config_dict: dict, rows: list, message: str) -> None:
    path = write_csv(Path(config_dict["data"]["train"]), rows)
    with pytest.raises(DataError) as info:
        run_pipeline(load_config(data=config_dict), until="validate")
    assert message in str(info.value) and str(path) in str(info.value)


def test_given_test_file_is_used_and_unseen_labels_are_errors(config_dict: dict, tmp_path: Path) -> None:
    test = write_csv(tmp_path / "test.csv", make_rows(per_class=3, seed=9))
    config_dict["data"]["test"] = str(test)
    result = run_pipeline(load_config(data=config_dict), until="split")
    assert result.artifacts["split"].manifest["rows"]["test"] == 12
    write_csv(test, [("anything", "never-seen")])
    with pytest.raises(DataError, match="never seen in train: never-seen"):
        run_pipeline(load_config(data=config_dict), until="split")


def test_rows_without_a_label_wait_for_the_label_stage(config_dict: dict) -> None:
    rows = [*make_rows(), ("invoice refund please", ""), ("", "")]
    write_csv(Path(config_dict["data"]["train"]), rows)
    result = run_pipeline(load_config(data=config_dict), until="validate")
    validate = result.artifacts["validate"]
    assert validate.manifest["rows"]["unlabeled"] == 1
    assert validate.table("unlabeled")["text"].tolist() == ["invoice refund please"]
    rejected = pd.read_csv(result.run_dir / "validate" / "rejected.csv")
    assert rejected["reason"].tolist() == ["missing text"]
