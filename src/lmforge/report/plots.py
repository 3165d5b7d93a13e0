"""matplotlib figures for the report, returned as PNG bytes (Agg backend: no display)."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

BLUE, ORANGE, GREY = "#2b6cb0", "#dd6b20", "#718096"


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def training_curves(history: list[dict[str, Any]], metric: str) -> bytes:
    """Training and validation loss (left) and the validation metric (right) by epoch."""
    train = [(h["epoch"], h["loss"]) for h in history if "loss" in h and "epoch" in h]
    evals = [h for h in history if "eval_loss" in h]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    if train:
        left.plot(*zip(*train, strict=True), color=BLUE, label="training loss")
    if evals:
        left.plot(
            [h["epoch"] for h in evals],
            [h["eval_loss"] for h in evals],
            "o-",
            color=ORANGE,
            label="validation loss",
        )
        key = f"eval_{metric}" if f"eval_{metric}" in evals[0] else "eval_loss"
        right.plot([h["epoch"] for h in evals], [h[key] for h in evals], "o-", color=ORANGE)
        right.set_title(f"validation {key.removeprefix('eval_')}")
    left.set_title("loss")
    for axis in (left, right):
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    left.legend(frameon=False)
    return _png(fig)


def confusion(matrix: list[list[int]], labels: list[str]) -> bytes:
    """Confusion matrix, rows = true label, normalised colour, raw counts written in."""
    counts = np.asarray(matrix)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.55 * len(labels) + 2)
    fig, axis = plt.subplots(figsize=(size, size * 0.85))
    axis.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if len(labels) <= 25:
        for i in range(len(labels)):
            for j in range(len(labels)):
                if counts[i, j]:
                    axis.text(
                        j,
                        i,
                        str(counts[i, j]),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if rates[i, j] > 0.5 else "black",
                    )
    return _png(fig)


def label_distribution(counts: dict[str, dict[str, int]]) -> bytes:
    """Rows per label in each split, as grouped horizontal bars."""
    labels = sorted(counts.get("train", {}), key=lambda k: -counts["train"][k])
    splits = [s for s in ("train", "validation", "test") if s in counts]
    fig, axis = plt.subplots(figsize=(8, max(2.5, 0.3 * len(labels) * len(splits) / 1.5)))
    height = 0.8 / len(splits)
    for k, (split, color) in enumerate(zip(splits, (BLUE, ORANGE, GREY), strict=False)):
        values = [counts[split].get(label, 0) for label in labels]
        axis.barh(np.arange(len(labels)) + k * height, values, height, label=split, color=color)
    axis.set_yticks(np.arange(len(labels)) + 0.4 - height / 2, labels)
    axis.invert_yaxis()
    axis.set_xlabel("rows")
    axis.legend(frameon=False)
    axis.grid(axis="x", alpha=0.3)
    return _png(fig)
