"""Sentence embeddings from an encoder (minilm-l6 by default): mean-pooled, L2-normalised.

Used wherever lmforge needs a cheap, meaning-aware view of texts without fine-tuning:
label-noise detection, auto-labelling, drift. all-MiniLM-L6-v2 was trained for exactly
this pooling, so its embeddings work with a linear probe or cosine similarity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.models.batching import length_sorted_batches
from lmforge.models.quiet import quiet_transformers
from lmforge.models.resolve import resolve_model


def encoder(reference: str, base_dir: Path | None = None) -> tuple[Any, Any]:
    """The (tokenizer, base model) pair `embed` uses, loaded once per process."""
    return _load(reference, str(base_dir) if base_dir else None)


@lru_cache(maxsize=2)
def _load(reference: str, base_dir: str | None) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    from lmforge.models.device import place
    from lmforge.models.load import model_folder

    quiet_transformers()
    folder = model_folder(resolve_model(reference, Path(base_dir) if base_dir else None))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:  # causal LMs (e.g. probed by model selection)
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModel.from_pretrained(folder)
    model.eval()
    return tokenizer, place(model)


def embed(
    texts: Sequence[str],
    *,
    model: str = "minilm-l6",
    base_dir: Path | None = None,
    batch_size: int = 64,
    max_length: int = 128,
    on_batch: Callable[[int], None] | None = None,
    normalize: bool = True,
) -> np.ndarray:
    """Embeddings of `texts` as a float32 array (rows L2-normalised unless `normalize` is
    False: the raw mean a mean-pooling classification head reads), batched by length."""
    import torch

    tokenizer, encoder = _load(model, str(base_dir) if base_dir else None)
    texts = list(texts)
    width = int(encoder.config.hidden_size)
    out = np.zeros((len(texts), width), dtype=np.float32)
    with torch.inference_mode():
        for index, batch in length_sorted_batches(
            tokenizer, texts, batch_size=batch_size, max_length=max_length
        ):
            hidden = encoder(**batch.to(encoder.device)).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out[index] = pooled.float().cpu().numpy()
            if on_batch is not None:
                on_batch(len(index))
    return out
