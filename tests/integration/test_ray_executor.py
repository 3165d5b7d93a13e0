"""Trials as Ray tasks on a local Ray started by the test, against the same optuna study."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from lmforge.config import load_config
from lmforge.pipeline.runner import run_pipeline
from lmforge.ray_connect import start_local_ray

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    start_local_ray(num_cpus=2)  # lmforge's own way: token mode, as Ray's default
    yield
    ray.shutdown()


@pytest.mark.integration
def test_tiny_study_on_ray(local_ray: None, config_dict: dict[str, Any]) -> None:
    config_dict["tracking"]["enabled"] = False
    config_dict["train"].update({"epochs": 2, "eval_steps": 4})
    config_dict["tune"] = {
        "enabled": True,
        "trials": 4,
        "startup_trials": 1,
        "space": {"learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}},
    }
    config_dict["executor"] = {"type": "ray", "num_cpus": 1}
    result = run_pipeline(load_config(data=config_dict), until="train")
    tune = result.artifacts["tune"]
    assert tune.summary["executor"] == "ray"
    trials = pd.read_csv(tune.path("trials.csv"))
    assert len(trials) == 4 and set(trials["state"]) <= {"COMPLETE", "PRUNED"}
    # Each trial ran in a Ray worker process, not in this one.
    finished = trials.dropna(subset=["pid"])
    assert len(finished) and (finished["pid"] != os.getpid()).all()
    assert result.artifacts["train"].json("hyperparameters")["learning_rate"] == pytest.approx(
        tune.json("best")["params"]["learning_rate"]
    )
