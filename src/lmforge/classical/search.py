"""Search the linear head and its C on the validation split, under a deadline or a fit count.

The features are fitted on the training texts and both splits are vectorised ONCE; every
trial reuses the two sparse matrices, so a trial costs only the head's fit (on emotion,
vectorising costs about what one LinearSVC fit does; bench/bench_classical.py measures the
search both ways).

Order: a coarse grid, cheapest fits first, heads alternating (LinearSVC C=0.1, LR C=1,
LinearSVC C=1, LR C=10), then a refinement around each head's best C in log space: its
neighbours half a decade away, then a quarter, the best head first; a head more than 0.2 point
behind the best is not refined. That is a golden-section-like bracket search
with no library: optuna's TPE needs tens of trials to beat a bracket on one parameter, and
there are rarely more than ten here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmforge.classical.linear import HEADS, LinearModel, assemble, clip, fit_features, fit_head
from lmforge.tasks.classification import GREATER_IS_BETTER, metrics

METRICS = tuple(m for m, greater in GREATER_IS_BETTER.items() if greater)

COARSE: dict[str, tuple[float, ...]] = {"linear_svc": (0.1, 1.0), "logistic_regression": (1.0, 10.0)}
C_RANGE = (1e-3, 1e3)
REFINE_WITHIN = 0.002  # metric points (0.002 = 0.2 pt of macro-F1)
# Decades: steps of 0.125 found only noise-sized gains on emotion and banking77 (+0.2 pt,
# +0.0001) for 7 more fits; a quarter decade is the finest step tried.
SMALLEST_STEP = 0.25
# A fit with a larger C takes more iterations: allow this much over the slowest one measured.
SLACK = 1.3

# Measured on this machine (2 cores shared with other jobs, OMP_NUM_THREADS=1) with
# `bench/bench_classical.py --part estimate`: seconds of vectorising (fit on train + transform
# of validation) and of one head fit at the coarse grid's C values.
#   data       rows classes vectorise  SVC C=0.1  SVC C=1  LR C=1  LR C=10
#   emotion    2000       6       2.4        0.9      1.2     1.7      1.9
#   emotion    8000       6       3.1        1.5      3.4     3.0      3.6
#   emotion   16000       6       4.4        4.1      7.0     7.0      7.8
#   banking77  2000      77       0.4        1.1      1.1     2.4      2.7
#   banking77  8000      77       0.9        3.9      5.6     7.4      8.9
# Fit time grows with rows and only weakly with classes (77 vs 6 classes: ~2x, not 13x:
# banking77's texts are also shorter), so a fit is modelled as overhead + k * rows *
# classes**0.3, k from the mean of each head's two coarse fits: within ~30% of the table's
# means, except banking77 2k LinearSVC (estimated 1.8s, measured 1.1s: on the safe side).
# Vectorising uses emotion's per-row cost (longer texts than banking77: the safe side).
# Repeated runs on the busy machine moved single cells by up to 2x (emotion 16k SVC C=1: 7.0s
# with 3 calibration folds, 23.7s with 5 and other jobs running): a planner should treat these
# as typical, and `_predicted_seconds` replaces them with measured fits as they come.
SECONDS_PER_ROW_VECTORISE = 2.5e-4
VECTORISE_OVERHEAD_SECONDS = 0.5
CLASS_EXPONENT = 0.3
SECONDS_PER_ROW: dict[str, float] = {"logistic_regression": 2.8e-4, "linear_svc": 2.0e-4}
FIT_OVERHEAD_SECONDS: dict[str, float] = {"logistic_regression": 0.5, "linear_svc": 0.3}


def estimate_fit_seconds(n_rows: int, n_classes: int, head: str) -> float:
    """Predicted seconds of one head fit on `n_rows` training rows (measured constants)."""
    return FIT_OVERHEAD_SECONDS[head] + SECONDS_PER_ROW[head] * n_rows * max(2, n_classes) ** CLASS_EXPONENT


def estimate_seconds(n_rows: int, n_classes: int, n_fits: int | None = None) -> float:
    """Predicted seconds of `search_linear` with the default schedule (`n_fits` trials,
    default: the coarse grid + four refinements), vectorising included."""
    n_fits = 8 if n_fits is None else n_fits
    per_fit = sum(estimate_fit_seconds(n_rows, n_classes, head) for head in HEADS) / len(HEADS)
    return VECTORISE_OVERHEAD_SECONDS + SECONDS_PER_ROW_VECTORISE * n_rows + n_fits * per_fit


@dataclass(frozen=True)
class Trial:
    head: str
    C: float
    score: float
    fit_seconds: float


@dataclass
class SearchResult:
    best: LinearModel
    best_trial: Trial
    trials: list[Trial]
    stopped: str  # why no further trial ran
    metric: str
    vectorise_seconds: float
    seconds_per_fit: dict[str, float] = field(default_factory=dict)  # measured mean per head
    skipped: list[tuple[str, float, str]] = field(default_factory=list)  # (head, C, why)

    def summary(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "best": {"head": self.best_trial.head, "C": self.best_trial.C, "score": self.best_trial.score},
            "trials": [t.__dict__ for t in self.trials],
            "stopped": self.stopped,
            "vectorise_seconds": self.vectorise_seconds,
            "seconds_per_fit": self.seconds_per_fit,
        }


def search_linear(
    train_texts: Sequence[str],
    train_labels: Sequence[str],
    val_texts: Sequence[str],
    val_labels: Sequence[str],
    labels: Sequence[str],
    *,
    metric: str = "f1_macro",
    heads: Sequence[str] = HEADS,
    Cs: Sequence[float] | None = None,
    deadline: float | None = None,
    max_fits: int | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> SearchResult:
    """The best TF-IDF + linear head on the validation split.

    `Cs` given: exactly those C values for every head (a grid, no refinement). `deadline` is a
    `time.monotonic()` value: no fit starts that the fits measured so far say cannot end
    before it (the first fit always runs). `max_fits` caps the trials: with it and no
    deadline the search is reproducible (same trials, same scores). `labels` is the task's
    label order; the returned model's `proba(texts, labels)` gives columns in it."""
    unknown = [h for h in heads if h not in HEADS]
    if unknown or not heads:
        raise ValueError(f"heads must be among {', '.join(HEADS)}; got {list(heads)}")
    if len(val_texts) == 0:
        raise ValueError("search_linear needs validation rows to score the trials")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}; got {metric!r}")
    if max_fits is not None and max_fits < 1:
        raise ValueError(f"max_fits must be at least 1; got {max_fits}")
    if len({str(label) for label in train_labels}) < 2:
        raise ValueError("search_linear needs at least two classes in the training rows")
    outside = sorted({str(label) for label in train_labels} - {str(label) for label in labels})
    if outside:
        raise ValueError(f"training labels {outside[:5]} are not in `labels`")
    say = log or (lambda message: None)
    started = time.monotonic()
    features, X = fit_features(train_texts)
    V = features.transform(clip(val_texts))
    vectorise_seconds = time.monotonic() - started
    say(
        f"vectorised {len(train_texts)} + {len(val_texts)} texts into {X.shape[1]} features"
        f" in {vectorise_seconds:.1f}s"
    )
    n_classes = len(set(train_labels))
    truth = [str(label) for label in val_labels]

    schedule = _Schedule(heads, Cs)
    trials: list[Trial] = []
    skipped: list[tuple[str, float, str]] = []
    fit_times: dict[str, list[float]] = {h: [] for h in heads}
    best: tuple[Trial, Any] | None = None
    stopped = "grid done" if Cs is not None else "converged"
    while True:
        if max_fits is not None and len(trials) >= max_fits:
            stopped = f"max_fits ({max_fits}) reached"
            break
        candidate = schedule.next(trials, skipped)
        if candidate is None:
            if skipped:
                stopped = f"deadline: {len(skipped)} trial(s) skipped as too slow to end in time"
            break
        head, C = candidate
        if deadline is not None and trials:
            predicted = _predicted_seconds(head, fit_times, len(train_texts), n_classes)
            left = deadline - time.monotonic()
            if predicted > left:
                skipped.append((head, C, f"predicted {predicted:.1f}s > {max(left, 0):.1f}s left"))
                say(f"skip {head} C={C:g}: predicted {predicted:.1f}s, {max(left, 0):.1f}s left")
                if all(_predicted_seconds(h, fit_times, len(train_texts), n_classes) > left for h in heads):
                    stopped = "deadline: no further fit can end in time"
                    break
                continue
        t0 = time.monotonic()
        fitted = fit_head(X, train_labels, head, C, seed)
        seconds = time.monotonic() - t0
        predicted_labels = np.asarray(fitted.classes_)[np.asarray(fitted.predict_proba(V)).argmax(axis=1)]
        score = float(metrics(truth, [str(p) for p in predicted_labels])[metric])
        trial = Trial(head=head, C=float(C), score=score, fit_seconds=seconds)
        trials.append(trial)
        fit_times[head].append(seconds)
        say(f"{head} C={C:g}: {metric} {score:.4f} in {seconds:.1f}s")
        # Ties keep the earlier (cheaper, more regularised) trial.
        if best is None or score > best[0].score:
            best = (trial, fitted)
    assert best is not None  # the first fit always runs
    trial, fitted = best
    model = assemble(features, fitted, trial.head, trial.C)
    return SearchResult(
        best=model,
        best_trial=trial,
        trials=trials,
        stopped=stopped,
        metric=metric,
        vectorise_seconds=vectorise_seconds,
        seconds_per_fit={h: float(np.mean(t)) for h, t in fit_times.items() if t},
        skipped=skipped,
    )


def _predicted_seconds(head: str, fit_times: dict[str, list[float]], n_rows: int, n_classes: int) -> float:
    """The slowest fit of this head so far (with slack for a larger C); a head not fitted yet
    is predicted from the other head's measured time scaled by the constants' ratio."""
    if fit_times.get(head):
        return SLACK * max(fit_times[head])
    measured = [(h, max(t)) for h, t in fit_times.items() if t]
    if not measured:
        return estimate_fit_seconds(n_rows, n_classes, head)
    other, seconds = measured[0]
    ratio = estimate_fit_seconds(n_rows, n_classes, head) / estimate_fit_seconds(n_rows, n_classes, other)
    return SLACK * seconds * ratio


class _Schedule:
    """Which (head, C) to try next: the grid in order, then bracket refinement per head."""

    def __init__(self, heads: Sequence[str], Cs: Sequence[float] | None) -> None:
        order = [h for h in ("linear_svc", "logistic_regression") if h in heads]
        # Heads alternate, lower C first (fewer iterations): under a tight deadline every head
        # gets a trial before any gets a second, and the cheapest fits come first.
        if Cs is not None:
            self.grid = [(h, float(c)) for c in sorted(Cs) for h in order]
            self.refine = False
        else:
            self.grid = [(h, COARSE[h][i]) for i in range(2) for h in order]
            self.refine = True
        self.heads = order

    def next(self, trials: list[Trial], skipped: list[tuple[str, float, str]]) -> tuple[str, float] | None:
        done = {(t.head, _key(t.C)) for t in trials} | {(h, _key(c)) for h, c, _ in skipped}
        for head, C in self.grid:
            if (head, _key(C)) not in done:
                return head, C
        if not self.refine:
            return None
        best_per_head = {
            h: max((t for t in trials if t.head == h), key=lambda t: t.score, default=None)
            for h in self.heads
        }
        ranked = sorted((t for t in best_per_head.values() if t is not None), key=lambda t: -t.score)
        # A head more than REFINE_WITHIN behind the best is dropped (successive halving over
        # heads): on banking77, LR 0.26 pt behind took 7 refinement fits and gained 0.04 pt.
        for best in [t for t in ranked if t.score >= ranked[0].score - REFINE_WITHIN]:
            tried = sorted(c for h, c in done if h == best.head)
            step = 0.5
            while step >= SMALLEST_STEP:
                for direction in (-1, 1):
                    C = _key(best.C * 10 ** (direction * step))
                    near = any(abs(math.log10(C) - math.log10(c)) < step / 2 for c in tried)
                    if C_RANGE[0] <= C <= C_RANGE[1] and not near:
                        return best.head, C
                step /= 2
        return None


def _key(C: float) -> float:
    return float(f"{C:.4g}")
