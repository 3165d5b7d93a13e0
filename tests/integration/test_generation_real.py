"""Instruction tuning of the real smollm2-135m: a few LoRA steps through the pipeline, and
the merged model reloaded with plain transformers gives the adapter model's logits."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmforge.config import load_config
from lmforge.pipeline.runner import run_pipeline

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support-replies"


def test_lora_steps_on_smollm2_and_merged_reload(tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmforge.models.load import model_folder
    from lmforge.models.resolve import resolve_model

    config = load_config(EXAMPLE / "lmforge.yaml")
    data = config.model_dump(mode="json", by_alias=True)
    data["data"]["train"] = str(EXAMPLE / "replies.jsonl")
    data["train"].update(max_steps=2, eval_steps=2, batch_size=2, max_length=96)
    data["evaluate"].update(generation_rows=2, max_new_tokens=8)
    data["register"] = {"enabled": False}
    data["tracking"] = {"enabled": False, "tensorboard": False}
    data["output_dir"] = str(tmp_path / "runs")
    result = run_pipeline(load_config(data=data), until="export")
    train = result.artifacts["train"]
    assert train.metrics["steps"] == 2 and train.summary["lora_target_modules"] == ["q_proj", "v_proj"]
    evaluate = result.artifacts["evaluate"].metrics
    assert evaluate["perplexity"] > 1 and 0 <= evaluate["rouge_l"] <= 1
    assert result.artifacts["baseline"].metrics["base_generated_rows"] == 2

    gguf = result.artifacts["export"].json("gguf_check")  # f16 GGUF of the merged model
    assert gguf["max_logit_diff"] < 0.1 and gguf["same_next_token"]
    assert 0.25e9 < gguf["bytes"] < 0.3e9  # ~2 bytes per parameter

    merged = AutoModelForCausalLM.from_pretrained(train.path("model"))
    base = AutoModelForCausalLM.from_pretrained(model_folder(resolve_model("smollm2-135m")))
    adapted = PeftModel.from_pretrained(base, str(train.path("model-adapter")))
    tokens = AutoTokenizer.from_pretrained(train.path("model"))(
        "Hello, where is my order?", return_tensors="pt"
    )
    with torch.inference_mode():
        difference = (merged(**tokens).logits - adapted(**tokens).logits).abs().max()
    assert float(difference) < 1e-3
