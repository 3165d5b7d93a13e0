"""A linear probe on frozen encoder states, shipped as an ordinary transformer model folder.

Logistic regression is trained on the encoder's mean-pooled token states (unnormalised: the
mean the mean-pooling classification head of models/pooling.py reads), then its weights are
copied into that head's `classifier` layer. The folder is then a transformer classifier like
any fine-tuned one (evaluate, export to ONNX, serve, register need nothing new), and its
logits give exactly the probe's probabilities.

The cost is embedding the training rows. Rows are embedded in chunks, classes interleaved so
every prefix is close to stratified; at the deadline the rows embedded so far are used.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CHUNK_ROWS = 512
# Kept back from the deadline for the LR fit and saving the folder (seconds): measured
# ~1-3s for LR on 16k x 384 and ~1s to save minilm-l6.
RESERVE_SECONDS = 5.0
SCALE_FLOOR = 1e-2  # of the median dimension's std: the smallest std a dimension is divided by


@dataclass
class EmbeddingProbe:
    """The probe as fitted: scaler folded into one linear map over raw mean-pooled states."""

    reference: str
    base_dir: Path | None
    labels: list[str]
    weight: np.ndarray  # [n_labels, hidden]
    bias: np.ndarray  # [n_labels]
    max_length: int
    rows_used: int
    rows_total: int
    embed_seconds: float
    fit_seconds: float
    estimator: Any  # the fitted sklearn Pipeline (scaler, LR), columns in its classes_ order

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        return embeddings.astype(np.float64) @ self.weight.T + self.bias

    def proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, columns in `labels` order (what the saved folder's softmax gives)."""
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)))
        return _softmax(self.logits(raw_embeddings(self.reference, self.base_dir, texts, self.max_length)))


def raw_embeddings(
    reference: str, base_dir: Path | None, texts: Sequence[str], max_length: int
) -> np.ndarray:
    from lmforge.models.embed import embed

    return embed(list(texts), model=reference, base_dir=base_dir, max_length=max_length, normalize=False)


def fit_embedding_probe(
    reference: str,
    base_dir: Path | None,
    train_texts: Sequence[str],
    train_labels: Sequence[str],
    labels: Sequence[str],
    *,
    max_length: int,
    C: float,
    out_dir: Path,
    deadline: float | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> tuple[Path, EmbeddingProbe]:
    """Fit the probe on `reference`'s frozen states and save it as a mean-pooling classifier
    folder in `out_dir` (labels in `labels` order; a label absent from the training rows gets
    a logit of -1e4). With `deadline` (a `time.monotonic()` value), embedding stops at the
    chunk the measured rate says cannot end in time (the first chunk always runs)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    say = log or (lambda message: None)
    labels = [str(label) for label in labels]
    texts = [str(t) for t in train_texts]
    targets = [str(label) for label in train_labels]
    unknown = sorted(set(targets) - set(labels))
    if unknown:
        raise ValueError(f"training labels {unknown[:5]} are not in `labels`")
    order = _interleaved(targets, seed)
    started = time.monotonic()
    chunks: list[np.ndarray] = []
    used = 0
    while used < len(order):
        if deadline is not None and chunks:
            rate = (time.monotonic() - started) / used
            if time.monotonic() + rate * min(CHUNK_ROWS, len(order) - used) + RESERVE_SECONDS > deadline:
                say(f"deadline: the probe uses {used} of {len(order)} training rows")
                break
        index = order[used : used + CHUNK_ROWS]
        chunks.append(raw_embeddings(reference, base_dir, [texts[i] for i in index], max_length))
        used += len(index)
    embed_seconds = time.monotonic() - started
    X = np.concatenate(chunks)
    y = [targets[i] for i in order[:used]]
    if len(set(y)) < 2:
        raise ValueError("the embedding probe needs at least two classes in the rows it embeds")

    t0 = time.monotonic()
    scaler = StandardScaler().fit(X)
    # minilm-l6's mean-pooled states have near-constant dimensions (std 2e-9 beside a median of
    # 0.19): standardising them amplifies float noise, and folding 1/std into the head wrote
    # weights of 4e31, which a fine-tune starting from this head (LP-FT) cannot recover from.
    scaler.scale_ = np.maximum(scaler.scale_, SCALE_FLOOR * float(np.median(scaler.scale_)))
    lr = LogisticRegression(C=C, class_weight="balanced", max_iter=2000, random_state=seed)
    lr.fit(scaler.transform(X), y)
    fit_seconds = time.monotonic() - t0
    weight, bias = _fold(lr, scaler, labels)
    say(f"probe: {used} rows embedded in {embed_seconds:.1f}s, LR fit in {fit_seconds:.1f}s")
    probe = EmbeddingProbe(
        reference=reference,
        base_dir=base_dir,
        labels=labels,
        weight=weight,
        bias=bias,
        max_length=max_length,
        rows_used=used,
        rows_total=len(order),
        embed_seconds=embed_seconds,
        fit_seconds=fit_seconds,
        estimator=Pipeline([("scale", scaler), ("head", lr)]),
    )
    save_probe_folder(probe, Path(out_dir))
    return Path(out_dir), probe


def _interleaved(targets: list[str], seed: int) -> list[int]:
    """Row positions shuffled within each class, then classes taken in turn, so any prefix
    holds the classes in about equal shares (rare classes come early and whole)."""
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(targets):
        by_class[label].append(i)
    queues = [list(rng.permutation(rows)) for _, rows in sorted(by_class.items())]
    order: list[int] = []
    depth = 0
    while len(order) < len(targets):
        order.extend(int(q[depth]) for q in queues if depth < len(q))
        depth += 1
    return order


def _fold(lr: Any, scaler: Any, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """LR over standardised states as one linear map over raw states, rows in `labels` order.

    Binary LR has one row w (p(classes_[1]) = sigmoid(w.x + b)): logits [0, w.x + b] give the
    same softmax. A label the rows never had gets weight 0 and bias -1e4 (probability 0)."""
    coef = np.asarray(lr.coef_, dtype=np.float64)
    intercept = np.asarray(lr.intercept_, dtype=np.float64)
    classes = [str(c) for c in lr.classes_]
    if len(classes) == 2:
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.array([0.0, intercept[0]])
    scale = np.asarray(scaler.scale_, dtype=np.float64)
    mean = np.asarray(scaler.mean_, dtype=np.float64)
    folded = coef / scale
    folded_bias = intercept - folded @ mean
    weight = np.zeros((len(labels), coef.shape[1]))
    bias = np.full(len(labels), -1e4)
    for row, label in enumerate(classes):
        weight[labels.index(label)] = folded[row]
        bias[labels.index(label)] = folded_bias[row]
    return weight, bias


def save_probe_folder(probe: EmbeddingProbe, folder: Path) -> Path:
    """The probe as a mean-pooling sequence classifier folder (weights, config, tokenizer)."""
    import torch

    from lmforge.models.load import load_classifier
    from lmforge.models.pooling import MAX_LENGTH_KEY
    from lmforge.models.resolve import resolve_model

    tokenizer, model = load_classifier(
        resolve_model(probe.reference, probe.base_dir), probe.labels, pooling="mean"
    )
    with torch.no_grad():
        model.classifier.weight.copy_(torch.as_tensor(probe.weight, dtype=model.classifier.weight.dtype))
        model.classifier.bias.copy_(torch.as_tensor(probe.bias, dtype=model.classifier.bias.dtype))
    setattr(model.config, MAX_LENGTH_KEY, probe.max_length)  # serving truncates as the probe did
    model.config.lmforge_probe = {"rows_used": probe.rows_used, "rows_total": probe.rows_total}
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)
