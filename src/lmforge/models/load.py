"""Load models and tokenizers from resolved files (heavy imports stay inside functions)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.models.device import place
from lmforge.models.pooling import MAX_LENGTH_KEY, POOLING_KEY, classifier_class
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


def model_pooling(resolved: ResolvedModel) -> tuple[str, str]:
    """How the model was pretrained to pool token states, and how we know: `("mean", why)` for
    sentence-transformers checkpoints (zoo record, or their `1_Pooling/config.json`), else
    `("default", why)`: the head transformers builds for the architecture."""
    import json

    if resolved.zoo is not None and resolved.zoo.pooling:
        return resolved.zoo.pooling, f"the zoo records {resolved.zoo.name} as {resolved.zoo.pooling}-pooled"
    if resolved.is_gguf:
        return "default", "a causal LM: the last token's state"
    config = (
        json.loads((resolved.path / "config.json").read_text())
        if (resolved.path / "config.json").exists()
        else {}
    )
    if config.get(POOLING_KEY):
        return str(config[POOLING_KEY]), f"the model's config says {POOLING_KEY}: {config[POOLING_KEY]}"
    pooling_file = resolved.path / "1_Pooling" / "config.json"
    if pooling_file.exists():
        modes = json.loads(pooling_file.read_text())
        if modes.get("pooling_mode_mean_tokens"):
            return "mean", "a sentence-transformers model trained with mean pooling (1_Pooling/config.json)"
    return "default", "no pooling recorded for this model: the architecture's own head"


@dataclass(frozen=True)
class ModelFacts:
    """What the recipe needs to know of a base model before training it."""

    token_limit: int  # longest input it takes
    hidden_size: int | None
    causal: bool  # a causal LM (used as a classifier: last-token head)
    pooling: tuple[str, str]  # (pooling it was pretrained with, how we know)


def model_facts(resolved: ResolvedModel, tokenizer: Any) -> ModelFacts:
    """Token limit, width, family and pooling of a model, from its config and tokenizer."""
    import json

    folder = model_folder(resolved)
    config = json.loads((folder / "config.json").read_text())
    limits = [
        int(config[k]) for k in ("max_position_embeddings", "n_positions") if isinstance(config.get(k), int)
    ]
    if resolved.zoo is not None:
        limits.append(resolved.zoo.context_length)
    tokenizer_limit = int(getattr(tokenizer, "model_max_length", 0) or 0)
    if 0 < tokenizer_limit < 1_000_000:  # transformers uses a huge sentinel for "unknown"
        limits.append(tokenizer_limit)
    architectures = config.get("architectures") or []
    causal = (
        resolved.is_gguf
        or (resolved.zoo is not None and resolved.zoo.kind == "causal-lm")
        or any(str(a).endswith("ForCausalLM") for a in architectures)
    )
    hidden = config.get("hidden_size") or config.get("d_model") or config.get("n_embd")
    return ModelFacts(
        token_limit=min(limits) if limits else 512,
        hidden_size=int(hidden) if hidden else None,
        causal=bool(causal),
        pooling=model_pooling(resolved),
    )


def load_tokenizer(resolved: ResolvedModel) -> Any:
    from transformers import AutoTokenizer

    quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(model_folder(resolved))
    if tokenizer.pad_token is None:  # causal LMs used as classifiers
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_classifier(
    resolved: ResolvedModel, labels: list[str], *, dropout: float | None = None, pooling: str = "default"
) -> tuple[Any, Any]:
    """Tokenizer and a sequence-classification model with a fresh head for `labels`;
    `dropout` overrides every dropout probability of the model's config; `pooling: mean`
    classifies from the mean of the token states (models/pooling.py)."""
    from transformers import AutoConfig, AutoTokenizer

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
    setattr(config, POOLING_KEY, pooling)
    if dropout is not None:
        override_dropout(config, dropout)
    model = classifier_class(config).from_pretrained(
        folder,
        config=config,
        # A base model that already has a classification head of another size gets a new one.
        ignore_mismatched_sizes=True,
    )
    if tokenizer.pad_token is None:  # causal LMs used as classifiers
        tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


def load_trained_classifier(folder: Path, *, on_device: bool = False) -> tuple[Any, Any]:
    """Tokenizer and classifier (eval mode) from a folder lmforge saved: the head is rebuilt
    as it was trained (mean pooling or the architecture's own). `on_device`: on the inference
    device (models/device.py) rather than the CPU (ONNX export traces on the CPU)."""
    from transformers import AutoConfig, AutoTokenizer

    quiet_transformers()
    config = AutoConfig.from_pretrained(folder)
    model = classifier_class(config).from_pretrained(folder, config=config)
    model.eval()
    return AutoTokenizer.from_pretrained(folder), place(model) if on_device else model


def trained_max_length(config: Any, default: int = 128) -> int:
    """The token limit a saved classifier was trained with (`lmforge_max_length` in its config)."""
    return int(getattr(config, MAX_LENGTH_KEY, None) or default)


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
    return tokenizer, place(model)
