"""Load models and tokenizers from resolved files (heavy imports stay inside functions)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from lmforge.models.quiet import quiet_transformers
from lmforge.models.resolve import ResolvedModel


def cache_root() -> Path:
    """Where converted models are kept (`LMFORGE_CACHE`, else ~/.cache/lmforge)."""
    root = os.environ.get("LMFORGE_CACHE") or Path.home() / ".cache" / "lmforge"
    return Path(root)


def model_folder(resolved: ResolvedModel) -> Path:
    """A Hugging Face folder for the model; a .gguf file is converted once and cached."""
    if not resolved.is_gguf:
        return resolved.path
    return gguf_to_folder(resolved.path)


def gguf_to_folder(gguf_path: Path) -> Path:
    """Dequantize a GGUF file into a safetensors folder, cached by the file's hash.

    transformers leaves a GGUF-loaded model flagged as quantized, which blocks
    `save_pretrained` and the Trainer; clearing the flags is safe because the weights
    are already dequantized torch tensors.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    digest = hashlib.sha256()
    with gguf_path.open("rb") as handle:
        digest.update(hashlib.file_digest(handle, "sha256").digest())
    target = cache_root() / "gguf" / f"{gguf_path.stem}-{digest.hexdigest()[:16]}"
    if (target / "config.json").exists():
        return target
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    setattr(model, "hf_quantizer", None)  # noqa: B010 (not a declared attribute for mypy)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    setattr(model, "is_quantized", False)  # noqa: B010
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)
    return target


def load_classifier(
    resolved: ResolvedModel, labels: list[str], *, dropout: float | None = None
) -> tuple[Any, Any]:
    """Tokenizer and a sequence-classification model with a fresh head for `labels`;
    `dropout` overrides every dropout probability of the model's config."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from lmforge.training.regularize import override_dropout

    quiet_transformers()
    folder = model_folder(resolved)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = AutoConfig.from_pretrained(
        folder,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    if dropout is not None:
        override_dropout(config, dropout)
    model = AutoModelForSequenceClassification.from_pretrained(
        folder,
        config=config,
        # A base model that already has a classification head of another size gets a new one.
        ignore_mismatched_sizes=True,
    )
    if tokenizer.pad_token is None:  # causal LMs used as classifiers
        tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


def load_causal_lm(resolved: ResolvedModel) -> tuple[Any, Any]:
    """Tokenizer and causal LM (a .gguf file is converted once and cached), in eval mode.

    The tokenizer pads on the left, so batched generation continues every prompt from its
    last real token; a tokenizer without a pad token pads with its end-of-sequence token.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    folder = model_folder(resolved)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(folder)
    model.eval()
    return tokenizer, model
