"""Blend two classifiers' probabilities (a weighted average), and say honestly whether the blend
beats both: the weight is chosen on validation folds and scored on the fold it did not see.

Choosing the weight on the whole validation split and scoring there too would always find a
blend at least as good as either member (weight 0 or 1 are among the choices): the gain would
be the search's optimism, not the blend's. Out-of-fold scoring removes that optimism, so a
blend is shipped only when it wins on rows its weight never saw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

WEIGHTS = tuple(round(w, 2) for w in np.linspace(0.0, 1.0, 21))
FOLDS = 5
MIN_GAIN = 0.002  # below this the blend's gain is noise on a validation split of a few thousand rows


@dataclass(frozen=True)
class Blend:
    weight: float  # of the first member; the second gets 1 - weight
    score: float  # out-of-fold validation score of the blend
    first_score: float
    second_score: float
    used: bool
    reason: str


Score = Callable[[Sequence[str], Sequence[str]], float]


def blend(
    first: np.ndarray,
    second: np.ndarray,
    truth: Sequence[str],
    labels: Sequence[str],
    score: Score,
    seed: int = 0,
) -> Blend:
    """Weighted average of `first` and `second` (rows of probabilities in `labels` order)."""
    truth_arr = np.asarray(list(truth), dtype=object)
    label_arr = np.asarray(list(labels), dtype=object)
    first_score = score(list(truth_arr), list(label_arr[first.argmax(1)]))
    second_score = score(list(truth_arr), list(label_arr[second.argmax(1)]))
    folds = np.random.default_rng(seed).permutation(len(truth_arr)) % FOLDS
    predicted = np.empty(len(truth_arr), dtype=object)
    for fold in range(FOLDS):
        seen, held = folds != fold, folds == fold
        weight = _best_weight(first[seen], second[seen], truth_arr[seen], label_arr, score)
        mixed = weight * first[held] + (1 - weight) * second[held]
        predicted[held] = label_arr[mixed.argmax(1)]
    oof = score(list(truth_arr), list(predicted))
    weight = _best_weight(first, second, truth_arr, label_arr, score)
    best_single = max(first_score, second_score)
    used = oof >= best_single + MIN_GAIN and 0.0 < weight < 1.0
    reason = (
        f"out-of-fold blend {oof:.4f} vs best member {best_single:.4f} "
        f"({'gain' if used else 'no gain'} at or above {MIN_GAIN})"
    )
    return Blend(weight, oof, first_score, second_score, used, reason)


def _best_weight(
    first: np.ndarray, second: np.ndarray, truth: np.ndarray, labels: np.ndarray, score: Score
) -> float:
    best, best_score = 0.5, -np.inf
    for weight in WEIGHTS:
        mixed = weight * first + (1 - weight) * second
        value = score(list(truth), list(labels[mixed.argmax(1)]))
        # Ties go to the weight nearest an even blend: the flattest choice generalises best.
        if value > best_score + 1e-12 or (
            abs(value - best_score) <= 1e-12 and abs(weight - 0.5) < abs(best - 0.5)
        ):
            best, best_score = weight, value
    return float(best)
