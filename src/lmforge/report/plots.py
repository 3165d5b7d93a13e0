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
    if train or evals:
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


def label_before_after(series: dict[str, dict[str, int]]) -> bytes:
    """Rows per label at each named point (file, after cleaning and labelling, ...), grouped bars."""
    first = next(iter(series.values()))
    labels = sorted({k for counts in series.values() for k in counts}, key=lambda k: -first.get(k, 0))
    fig, axis = plt.subplots(figsize=(8, max(2.5, 0.16 * len(labels) * (len(series) + 1))))
    rows = np.arange(len(labels))
    height = 0.8 / len(series)
    for k, ((name, counts), color) in enumerate(zip(series.items(), (GREY, BLUE, ORANGE), strict=False)):
        axis.barh(rows + k * height, [counts.get(x, 0) for x in labels], height, label=name, color=color)
    axis.set_yticks(rows + 0.4 - height / 2, labels)
    axis.invert_yaxis()
    axis.set_xlabel("rows")
    # Below the plot: inside, it would cover the longest bars, which sort to the top.
    axis.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=len(series))
    axis.grid(axis="x", alpha=0.3)
    return _png(fig)


def length_histogram(before: list[int], after: list[int]) -> bytes:
    """Text length in characters, before and after cleaning (log-spaced bins: lengths are skewed)."""
    fig, axis = plt.subplots(figsize=(8, 2.8))
    low, top = max(1, min([*before, *after, 1])), max([*before, *after, 2])
    bins = np.unique(np.geomspace(low, top + 1, 40).astype(int)).tolist()
    axis.hist(before, bins=bins, color=GREY, alpha=0.6, label="before cleaning")
    axis.hist(after, bins=bins, color=BLUE, alpha=0.6, label="after cleaning")
    axis.set_xscale("log")
    axis.set_xlabel("characters")
    axis.set_ylabel("rows")
    axis.legend(frameon=False)
    axis.grid(alpha=0.3)
    return _png(fig)


def confidence_histogram(counts: list[int], edges: list[float], threshold: float) -> bytes:
    """Auto-label confidences, with the review threshold marked."""
    fig, axis = plt.subplots(figsize=(8, 2.6))
    widths = np.diff(edges)
    colours = [ORANGE if left < threshold else BLUE for left in edges[:-1]]
    axis.bar(edges[:-1], counts, widths, align="edge", color=colours, edgecolor="white")
    axis.axvline(threshold, color="black", linestyle="--", linewidth=1)
    axis.text(threshold, max([*counts, 1]), " review below", va="top", fontsize=8)
    axis.set_xlabel("confidence of the auto-label")
    axis.set_ylabel("rows")
    axis.grid(axis="y", alpha=0.3)
    return _png(fig)
