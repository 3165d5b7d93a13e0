"""Text classification: metrics, tokenised datasets and batched prediction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from lmforge.models.batching import length_sorted_batches

GREATER_IS_BETTER = {"f1_macro": True, "f1_weighted": True, "accuracy": True, "loss": False}


def metrics(y_true: Sequence[Any], y_pred: Sequence[Any]) -> dict[str, float]:
    """Accuracy and macro / weighted precision, recall and F1."""
    out = {"accuracy": float(accuracy_score(y_true, y_pred))}
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0)
        out[f"precision_{average}"] = float(p)
        out[f"recall_{average}"] = float(r)
        out[f"f1_{average}"] = float(f)
    return out


def trainer_metrics(eval_pred: Any) -> dict[str, float]:
    """`compute_metrics` for the Trainer: logits and label ids in, metrics out."""
    logits, label_ids = eval_pred
    predictions = np.asarray(logits).argmax(axis=-1)
    return metrics(label_ids, predictions)


class EncodedTexts:
    """Tokenised texts (unpadded) with label ids; the collator pads each batch."""

    def __init__(
        self, tokenizer: Any, texts: list[str], label_ids: list[int] | None, max_length: int
    ) -> None:
        self.encodings = tokenizer(texts, truncation=True, max_length=max_length)
        self.label_ids = label_ids

    def __len__(self) -> int:
        return len(self.encodings["input_ids"])

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = {key: values[index] for key, values in self.encodings.items()}
        if self.label_ids is not None:
            item["labels"] = self.label_ids[index]
        return item


def predict_proba(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    *,
    batch_size: int,
    max_length: int,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Class probabilities for `texts`, batched, sorted by length so batches pad little."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    probs = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    with torch.inference_mode():
        for index, batch in length_sorted_batches(
            tokenizer, texts, batch_size=batch_size, max_length=max_length
        ):
            logits = model(**batch.to(device)).logits.float()
            probs[index] = torch.softmax(logits, dim=-1).cpu().numpy()
            if on_batch is not None:
                on_batch(len(index))
    return probs
