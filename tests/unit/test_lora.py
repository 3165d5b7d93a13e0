"""LoRA fine-tuning of a classifier: few trainable weights, a plain merged model out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge.config import load_config
from lmforge.pipeline.runner import run_pipeline


def test_lora_trains_adapters_and_outputs_a_merged_model(
    config_dict: dict[str, Any], tiny_model: Path
) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    config_dict["tracking"]["enabled"] = False
    config_dict["train"].update(
        {"method": "lora", "lora_r": 4, "lora_alpha": 8, "lora_target_modules": ["query", "value"]}
    )
    result = run_pipeline(load_config(data=config_dict))
    train = result.artifacts["train"]
    summary = train.summary
    assert summary["method"] == "lora"
    assert summary["trainable_parameters"] < summary["parameters"] / 2
    assert (train.path("model-adapter") / "adapter_config.json").exists()
    model = AutoModelForSequenceClassification.from_pretrained(train.path("model"))  # no peft needed
    assert not any("lora" in name for name, _ in model.named_parameters())
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model)
    layer, base_layer = model.bert.encoder.layer[0].attention.self, base.bert.encoder.layer[0].attention.self
    # The adapters were merged into query/value; key had none and is untouched.
    assert not torch.equal(layer.query.weight, base_layer.query.weight)
    assert torch.equal(layer.key.weight, base_layer.key.weight)
    assert "accuracy" in result.artifacts["evaluate"].metrics


def test_lora_parameters_are_tunable(config_dict: dict[str, Any]) -> None:
    config_dict["tracking"]["enabled"] = False
    config_dict["train"].update({"method": "lora", "epochs": 2})
    config_dict["tune"] = {
        "enabled": True,
        "trials": 2,
        "pruner": "none",
        "space": {"lora_r": {"choices": [2, 4]}, "lora_dropout": {"low": 0.0, "high": 0.2}},
    }
    result = run_pipeline(load_config(data=config_dict), until="train")
    best = result.artifacts["tune"].json("best")["params"]
    assert set(best) == {"lora_r", "lora_dropout"}
    assert result.artifacts["train"].json("hyperparameters")["lora_r"] == best["lora_r"]
