"""`model: auto` with the real zoo models: both probed, measured and compared."""

from __future__ import annotations

import pytest

from lmforge.config import load_config
from lmforge.pipeline.runner import run_pipeline

pytestmark = pytest.mark.integration


def test_auto_probes_the_zoo_and_lora_trains_the_choice(config_dict: dict) -> None:
    config_dict["model"] = "auto"
    config_dict["select"] = {"probe_rows": 40, "latency_texts": 4}
    config_dict["train"] = {
        "method": "lora",
        "max_steps": 4,
        "batch_size": 8,
        "max_length": 32,
        "eval_steps": 4,
    }
    config_dict["tracking"]["enabled"] = False
    result = run_pipeline(load_config(data=config_dict), until="train")
    rows = {r["model"]: r for r in result.artifacts["select"].json("candidates")}
    assert set(rows) == {"minilm-l6", "smollm2-135m"}
    assert rows["smollm2-135m"]["parameters"] > 5 * rows["minilm-l6"]["parameters"]
    assert all(r["latency_ms"] > 0 and r["estimated_train_minutes"] > 0 for r in rows.values())
    assert all(r["score"] > 0.25 for r in rows.values())  # better than chance on 4 topics
    chosen = result.artifacts["select"].json("choice")["model"]
    train = result.artifacts["train"].summary
    assert train["model"] == chosen and train["method"] == "lora"
    assert train["trainable_parameters"] < train["parameters"] / 10
