"""k-fold cross-validation and the ensemble of the best trials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge.config import load_config
from lmforge.pipeline.runner import run_pipeline


def test_cross_validation_reports_mean_and_spread(config_dict: dict[str, Any]) -> None:
    config_dict["evaluate"] = {"cv_folds": 3}
    config_dict["tracking"]["enabled"] = False
    result = run_pipeline(load_config(data=config_dict))
    crossval = result.artifacts["crossval"]
    folds = crossval.json("folds")
    assert [f["fold"] for f in folds] == [1, 2, 3]
    assert sum(f["rows"] for f in folds) == result.artifacts["augment"].manifest["rows"]["train"] + 24
    m = crossval.metrics
    assert 0 <= m["f1_macro_mean"] <= 1 and m["f1_macro_std"] >= 0
    html = (result.run_dir / "report" / "report.html").read_text()
    assert "3-fold cross-validation" in html


def test_ensemble_of_the_best_trials(config_dict: dict[str, Any], tmp_path: Path) -> None:
    config_dict["tracking"]["enabled"] = False
    config_dict["train"].update({"epochs": 3})
    config_dict["tune"] = {
        "enabled": True,
        "trials": 3,
        "pruner": "none",
        "ensemble_top_k": 3,
        "space": {
            "learning_rate": {"low": 3e-3, "high": 1e-2, "log": True},
            "batch_size": {"choices": [4, 8]},
        },
    }
    result = run_pipeline(load_config(data=config_dict))
    tune, train = result.artifacts["tune"], result.artifacts["train"]
    assert sorted(p.name for p in tune.path("ensemble").iterdir()) == ["rank-1", "rank-2", "rank-3"]
    decision = train.json("ensemble")
    assert decision["members"] == 3
    assert decision["used"] == (decision["validation_ensemble"] > decision["validation_single"])
    members = sorted(p.name for p in train.path("ensemble").iterdir()) if decision["used"] else []
    assert members == (["member-2", "member-3"] if decision["used"] else [])
    assert "Ensemble of the 3 best trials" in (result.run_dir / "report" / "report.html").read_text()
