"""The clean, label and split stages keep every row accounted for, on the tiny pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from lmforge.config import load_config
from lmforge.pipeline.runner import run_pipeline
from tests.conftest import make_rows, write_csv

# "doesn't" (curly apostrophe) as UTF-8 read back as cp1252, as a misconfigured export does.
MOJIBAKE = "doesn\u2019t".encode().decode("cp1252")
MESSY = [
    ("Invoice refund please help", "billing"),  # row 122: kept
    ("invoice REFUND, please   help!", "billing"),  # exact copy once normalised
    ("Invoice refund please helps", "billing"),  # near copy (one character)
    ("crash error why again today", "bug"),  # kept: conflict group, majority 'bug'
    ("crash error why again today", "bug"),
    ("Crash error why again today", "login"),
    ("parcel courier arrive not", "shipping"),  # tie: both rows dropped
    ("parcel courier arrive not", "login"),
    ("write to me at jane.doe@example.com about the refund invoice", "billing"),
    (MOJIBAKE + " login password reset", "login"),
    ("x", "bug"),
]


def _run(config: dict[str, Any], rows: list[tuple[str, str]], until: str = "split", **clean: Any) -> Any:
    write_csv(Path(config["data"]["train"]), rows)
    config["clean"] = {"label_noise": "off", **clean}
    return run_pipeline(load_config(data=config), until=until)


def _removed(result: Any) -> pd.DataFrame:
    return pd.read_csv(result.run_dir / "clean" / "removed.csv")


def test_every_row_is_kept_or_removed_with_a_reason(config_dict: dict) -> None:
    rows = [*make_rows(), *MESSY]
    result = _run(config_dict, rows, min_chars=2)
    clean = result.artifacts["clean"]
    removed = _removed(result)
    assert clean.manifest["rows"]["train"] + len(removed) == len(rows)
    assert removed["reason"].notna().all()
    by_row = removed.set_index("source_row")
    assert by_row.loc[123, "reason"] == "exact duplicate" and by_row.loc[123, "duplicate_of_row"] == 122
    assert by_row.loc[124, "reason"] == "near duplicate" and by_row.loc[124, "duplicate_of_row"] == 122
    assert 0.85 <= by_row.loc[124, "similarity"] < 1
    assert by_row.loc[132, "reason"] == "shorter than clean.min_chars=2"


def test_duplicates_with_disagreeing_labels_are_resolved_and_listed(config_dict: dict) -> None:
    result = _run(config_dict, [*make_rows(), *MESSY])
    conflicts = pd.read_csv(result.run_dir / "clean" / "conflicts.csv")
    assert set(conflicts["group"]) == {1, 2}
    majority = conflicts[conflicts["source_row"].isin([125, 126, 127])]
    assert majority["resolution"].str.startswith("majority 'bug'").all()
    tie = conflicts[conflicts["source_row"].isin([128, 129])]
    assert (tie["resolution"] == "dropped").all()
    train = result.artifacts["clean"].table("train").set_index("source_row")
    assert train.loc[125, "label"] == "bug" and 126 not in train.index and 127 not in train.index
    assert 128 not in train.index and 129 not in train.index
    reasons = _removed(result).set_index("source_row")["reason"]
    assert reasons[128] == reasons[129] == "conflicting labels among duplicates"


def test_conflicts_keep_leaves_every_row(config_dict: dict) -> None:
    result = _run(config_dict, [*make_rows(), *MESSY], conflicts="keep")
    train = result.artifacts["clean"].table("train")
    assert {125, 126, 127, 128, 129} <= set(train["source_row"])


@pytest.mark.parametrize("mode", ["mask", "drop"])
def test_personal_data_is_masked_or_dropped(config_dict: dict, mode: str) -> None:
    result = _run(config_dict, [*make_rows(), *MESSY], pii=mode)
    clean = result.artifacts["clean"]
    assert clean.summary["pii"] == {"email": 1}
    train = clean.table("train").set_index("source_row")
    if mode == "mask":
        assert train.loc[130, "text"] == "write to me at <EMAIL> about the refund invoice"
        changed = pd.read_csv(result.run_dir / "clean" / "changed.csv").set_index("source_row")
        assert changed.loc[130, "changes"] == "pii:email"
    else:
        assert 130 not in train.index
        assert _removed(result).set_index("source_row").loc[130, "reason"] == "personal data (email)"


@pytest.mark.parametrize(
    ("mode", "keep_raw", "raw_in"),
    [
        ("mask", False, set()),
        ("drop", False, set()),
        # The opt-in: the tables before clean and clean's record of the change keep the value.
        (
            "mask",
            True,
            {"ingest/train.parquet", "validate/train.parquet", "clean/changed.csv", "clean/manifest.json"},
        ),
    ],
)
def test_raw_personal_data_stays_out_of_every_artifact_unless_kept(
    config_dict: dict, mode: str, keep_raw: bool, raw_in: set[str]
) -> None:
    from tests.unit.test_pii_leaks import files_holding

    result = _run(config_dict, [*make_rows(), *MESSY], until="clean", pii=mode, keep_raw_pii=keep_raw)
    assert files_holding(result.run_dir, "jane.doe@example.com") == raw_in
    assert result.artifacts["clean"].summary["pii"] == {"email": 1}
    assert "pii" not in result.artifacts["clean"].table("train").columns
    if not keep_raw:
        ingested = result.artifacts["ingest"].table("train").set_index("source_row")
        assert ingested.loc[130, "text"] == "write to me at <EMAIL> about the refund invoice"
        assert ingested.loc[130, "pii"] == "email:1" and ingested["pii"].isna().sum() == len(ingested) - 1
    if mode == "drop":
        removed = _removed(result).set_index("source_row")
        assert removed.loc[130, "text"] == "write to me at <EMAIL> about the refund invoice"


def test_mojibake_is_repaired_and_logged(config_dict: dict) -> None:
    result = _run(config_dict, [*make_rows(), *MESSY])
    train = result.artifacts["clean"].table("train").set_index("source_row")
    assert train.loc[131, "text"] == "doesn't login password reset"
    assert result.artifacts["clean"].summary["repairs"]["unicode"] == 1


def test_train_rows_copying_test_rows_are_removed_as_leakage(config_dict: dict, tmp_path: Path) -> None:
    test_rows = make_rows(per_class=3, seed=9)
    config_dict["data"]["test"] = str(write_csv(tmp_path / "test.csv", test_rows))
    leaked = (test_rows[0][0].upper() + " !", test_rows[0][1])
    result = _run(config_dict, [*make_rows(), leaked])
    leaks = pd.read_csv(result.run_dir / "split" / "leakage.csv")
    assert leaks["source_row"].tolist() == [122]
    assert leaks["duplicates_split"].tolist() == ["test"] and leaks["duplicates_row"].tolist() == [2]
    assert 122 not in set(result.artifacts["split"].table("train")["source_row"])


def test_flipped_labels_are_flagged_and_queued_for_review(config_dict: dict) -> None:
    rows = make_rows(per_class=30)
    flipped = {0: "shipping", 1: "login", 2: "bug", 3: "billing"}
    labels = sorted({label for _, label in rows})
    for i in flipped:
        text, label = rows[i]
        rows[i] = (text, labels[(labels.index(label) + 1) % len(labels)])
    write_csv(Path(config_dict["data"]["train"]), rows)
    config_dict["clean"] = {"label_noise": "flag"}
    result = run_pipeline(load_config(data=config_dict), until="label")
    issues = pd.read_csv(result.run_dir / "clean" / "label_issues.csv")
    assert {2, 3, 4, 5} & set(issues["source_row"])  # rows 2..5 in the file (1-based, after the header)
    queue = pd.read_csv(result.run_dir / "label" / "review_queue.csv")
    assert set(issues["source_row"]) <= set(queue["source_row"])
    assert (queue["reason"] == "possible label error").all()
