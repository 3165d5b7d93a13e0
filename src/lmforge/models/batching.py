"""Tokenised batches of texts sorted by length, for inference: similar lengths pad little."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np


def length_sorted_batches(
    tokenizer: Any, texts: Sequence[str], *, batch_size: int, max_length: int
) -> Iterator[tuple[np.ndarray, Any]]:
    """(row positions, padded `pt` batch) pairs covering `texts`, shortest texts first.

    Callers write results back with the positions, so the output keeps the input order.
    """
    order = np.argsort([len(t) for t in texts], kind="stable")
    for start in range(0, len(texts), batch_size):
        index = order[start : start + batch_size]
        batch = tokenizer(
            [texts[i] for i in index],
            truncation=True,
            max_length=max_length,
            padding=True,
            return_tensors="pt",
        )
        yield index, batch
