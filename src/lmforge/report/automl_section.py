"""The report's AutoML parts: model selection, hyperparameter search, monitoring, gate."""

from __future__ import annotations

import base64
from typing import Any

from lmforge.pipeline.context import Inputs

HPO_IMAGES = ("hpo_history", "hpo_trials", "hpo_curves", "hpo_importance")


def automl_section(inputs: Inputs) -> dict[str, Any]:
    """Plain data for the template; a part is None when its stage did not run."""
    train = inputs["train"]
    section: dict[str, Any] = {
        "select": None,
        "tune": None,
        "crossval": None,
        "gate": inputs["gate"].json("decision") if "gate" in inputs else None,
        "restarts": train.summary.get("restarts") or [],
        "regularisation": train.summary.get("regularisation") or {},
        "ensemble": train.summary.get("ensemble"),
        "portfolio": None,
    }
    if train.has("portfolio.json"):
        # Auto mode: every candidate, and the budget's plan and decisions as of the train stage.
        section["portfolio"] = {
            "candidates": train.json("portfolio"),
            "budget": train.json("budget") if train.has("budget.json") else None,
            "kind": train.summary.get("kind"),
        }
    if "select" in inputs:
        select = inputs["select"]
        section["select"] = {
            "candidates": select.json("candidates"),
            "choice": select.json("choice"),
            "seconds": select.metrics.get("seconds", 0.0),
        }
    if "tune" in inputs:
        tune = inputs["tune"]
        import pandas as pd

        trials = pd.read_csv(tune.path("trials.csv"))
        params = [c for c in trials.columns if c.startswith("param_")]
        section["tune"] = {
            "metrics": tune.metrics,
            "summary": tune.summary,
            "best": tune.json("best"),
            "params": [p.removeprefix("param_") for p in params],
            "trials": trials.sort_values("number").to_dict("records"),
            "images": {
                name: base64.b64encode(tune.path(f"{name}.png").read_bytes()).decode()
                for name in HPO_IMAGES
                if tune.has(f"{name}.png")
            },
        }
    if "crossval" in inputs:
        crossval = inputs["crossval"]
        section["crossval"] = {"metrics": crossval.metrics, "folds": crossval.json("folds")}
    return section
