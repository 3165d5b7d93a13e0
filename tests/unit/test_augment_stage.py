"""The augment stage grows only the train split, and every added row says where it came from."""

from __future__ import annotations

from pathlib import Path

from lmforge.config import load_config
from lmforge.pipeline.runner import run_pipeline
from tests.conftest import make_rows, write_csv


def test_off_by_default_passes_train_through(config_dict: dict) -> None:
    config_dict["clean"] = {"label_noise": "off"}
    result = run_pipeline(load_config(data=config_dict), until="augment")
    train = result.artifacts["augment"].table("train")
    assert len(train) == result.artifacts["split"].manifest["rows"]["train"]
    assert (train["origin"] == "original").all()


def test_oversampling_and_edits_grow_train_only(config_dict: dict) -> None:
    rows = [r for r in make_rows() if r[1] != "bug"] + [r for r in make_rows(seed=3) if r[1] == "bug"][:12]
    write_csv(Path(config_dict["data"]["train"]), rows)
    config_dict["clean"] = {"label_noise": "off"}
    config_dict["augment"] = {"oversample": 1.0, "token_edits": 1}
    result = run_pipeline(load_config(data=config_dict), until="baseline")
    split, augment = result.artifacts["split"], result.artifacts["augment"]
    train = augment.table("train")
    counts = train["label"].value_counts()
    assert counts.min() == counts.max()  # balanced up to the largest class
    assert {"original", "token-edit"} <= set(train["origin"])
    original = split.table("train")
    assert len(train[train["origin"] == "original"]) == len(original)
    assert set(train["source_row"]) == set(original["source_row"])  # every added row traces back
    assert augment.summary["added"] and sum(augment.summary["added"].values()) == len(train) - len(original)
    assert result.artifacts["baseline"].manifest["rows"]["train"] == len(train)  # a fair comparison
