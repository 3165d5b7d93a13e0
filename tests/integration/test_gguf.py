"""smollm2-135m ships as GGUF: converted once to a safetensors folder, then usable as a classifier."""

from __future__ import annotations

import pytest

from lmforge.models.load import load_classifier, model_folder
from lmforge.models.resolve import resolve_model

pytestmark = pytest.mark.integration


def test_gguf_is_converted_once_with_identical_logits() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve_model("smollm2-135m")
    assert resolved.is_gguf
    folder = model_folder(resolved)
    assert (folder / "model.safetensors").exists() and (folder / "config.json").exists()
    assert model_folder(resolved) == folder  # cached: the second call converts nothing

    direct = AutoModelForCausalLM.from_pretrained(resolved.path.parent, gguf_file=resolved.path.name)
    saved = AutoModelForCausalLM.from_pretrained(folder)
    assert getattr(saved.config, "quantization_config", None) is None
    tokens = AutoTokenizer.from_pretrained(folder)("The capital of France is", return_tensors="pt")
    with torch.inference_mode():
        assert torch.equal(direct(**tokens).logits, saved(**tokens).logits)

    tokenizer, classifier = load_classifier(resolved, ["negative", "positive"])
    batch = tokenizer(["great product", "it broke after a day, awful"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        assert classifier(**batch).logits.shape == (2, 2)
