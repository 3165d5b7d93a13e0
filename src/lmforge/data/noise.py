"""Label-noise detection: which rows' given label is probably wrong.

A fast model is cross-validated so that every row gets predicted probabilities from a model
that never saw it (out-of-fold); cleanlab's confident learning then compares those
probabilities with the given labels. A model that memorised a row would agree with its wrong
label, which is why in-sample probabilities are useless here.

Two models, chosen by name (`NOISE_MODELS`):

- `tfidf`: word 1-2 gram TF-IDF + logistic regression. Seconds per thousand rows and no
  encoder; strong where the label shows in the words (emotion tweets, topics).
- `embeddings`: the `tfidf` probabilities mixed with those of a logistic-regression probe on
  sentence embeddings (minilm-l6 by default). The mixing weight (0 = TF-IDF only, 1 = probe
  only) is the one with the lowest out-of-fold log-loss, because neither model wins
  everywhere: on emotion.csv (10% flips, 10 folds) the probe alone puts 62% flips among the
  lowest-quality k rows (k = number of flips) against TF-IDF's 82%, and the chosen weight 0.2
  gives 83%; on banking77 the probe is the better one (95% vs 93%) and the chosen weight
  0.8 gives 95%.

Defaults (10 folds, C=10, `filter_by="low_self_confidence"`) are the best of the variations
tried on emotion.csv with 10% injected flips; the figures are in bench/bench_noise.py.
cleanlab's own default, `prune_by_noise_rate`, had higher recall (0.88) but precision 0.60.

Probes (`PROBES`, `probe=`): `full` is the above; `fast` is for large data: 5 folds, the
TF-IDF vocabulary fitted once on all texts (no labels are seen, so nothing leaks into the
out-of-fold probabilities) and an SGD logistic regression instead of saga. With 10% flips it
was ~10x faster: emotion 7.5 s vs 84 s, precision/recall 0.807/0.806 vs 0.811/0.808; banking77
14 s vs 146 s, 0.908/0.922 vs 0.963/0.810 (more recall, less precision); 100k rows in 48 s and
352 MB. `choose_probe` picks `fast` from `FAST_ROWS` rows, where the full probe passes ~2
minutes on 2 cores (bench/bench_noise_probe.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from sklearn.model_selection import StratifiedKFold

# sklearn and cleanlab are imported inside the functions: importing them costs ~1.5 s, which
# every CLI command would pay just because the pipeline imports this module.

NOISE_MODELS = ("tfidf", "embeddings")
PROBES = ("full", "fast")
PROBE_SETTINGS = ("auto", *PROBES)
FAST_FOLDS = 5
# SGD's L2 strength. Measured (10% flips, precision/recall): emotion 1e-4 0.72/0.58, 1e-5
# 0.83/0.77, 5e-6 0.81/0.81, 3e-6 0.78/0.82; banking77 1e-5 0.95/0.85, 5e-6 0.91/0.92, 3e-6
# 0.86/0.94. sklearn's default 1e-4 regularises far too hard for flagging; 1/(C x rows), the
# full probe's penalty, is 1.2e-5 on banking77 and lost 8 points of its recall.
FAST_ALPHA = 5e-6
FAST_ROWS = 20_000  # `auto` takes the fast probe from here on (see bench/bench_noise_probe.py)
FILTER_METHODS = (
    "low_self_confidence",
    "prune_by_noise_rate",
    "prune_by_class",
    "both",
    "confident_learning",
    "predicted_neq_given",
    "low_normalized_margin",
)
COLUMNS = [
    "given",
    "suggested",
    "quality",
    "given_probability",
    "suggested_probability",
    "is_issue",
    "checked",
]
TFIDF_C = 10.0  # weaker regularisation than sklearn's 1.0: sharper probabilities rank flips better
EMBEDDING_C = 10.0
WEIGHTS = np.linspace(0.0, 1.0, 11)  # candidate shares of the embedding probe in the mix


def find_label_issues(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    model: str = "tfidf",
    folds: int = 10,
    seed: int = 0,
    embedding_model: str = "minilm-l6",
    embeddings: np.ndarray | None = None,
    filter_by: str = "low_self_confidence",
    probe: str = "full",
) -> pd.DataFrame:
    """Flag rows whose given label disagrees confidently with an out-of-fold model.

    Args:
        texts: The input texts.
        labels: The given label of each text (compared as strings).
        model: One of `NOISE_MODELS`.
        folds: Cross-validation folds; lowered to the smallest class count (at least 2), because
            stratified folds need every class in every training split.
        seed: Seed of the fold shuffle and the solver, so a rerun flags the same rows.
        embedding_model: Encoder for `model="embeddings"` when `embeddings` is not given.
        embeddings: Precomputed embeddings (one row per text), so a caller who already embedded
            the texts (e.g. for near-duplicates) does not pay for it twice.
        filter_by: cleanlab's `filter_by` (one of `FILTER_METHODS`). The default flags the k rows
            with the lowest given-label probability, k being cleanlab's estimate of the number of
            issues; it had the best precision/recall balance in the benchmark.
        probe: One of `PROBES`: `fast` uses at most `FAST_FOLDS` folds, one vocabulary and
            SGD (see the module docstring); `choose_probe` resolves `auto`.

    Returns:
        One row per input row, in input order, with columns `given`, `suggested` (the
        out-of-fold model's most likely label), `quality` (cleanlab's self-confidence label
        quality score, 0..1, low = suspicious; equal to `given_probability`),
        `given_probability`, `suggested_probability`, `is_issue` and `checked`. Rows of a class
        with fewer than 2 rows cannot be cross-validated: they have `checked=False`, NaN scores,
        `suggested` equal to `given`, and are never flagged. `frame.attrs` records `model`,
        `folds` (as used) and `embedding_weight` (the probe's share, 0 for `tfidf`) and `probe`.

    Raises:
        ValueError: On an unknown `model` or `filter_by`, `folds` < 2, or inputs whose lengths
            differ.
    """
    text_array, given = _check(texts, labels, model, folds, filter_by, embeddings, probe)
    if probe == "fast":
        folds = min(folds, FAST_FOLDS)
    counts = pd.Series(given, dtype=object).value_counts()
    kept = np.flatnonzero([counts[label] >= 2 for label in given])
    classes, codes = np.unique(given[kept], return_inverse=True)
    columns = _unchecked(given)
    n_folds, weight = 0, 0.0
    if len(classes) >= 2:  # with one class (or none) left there is nothing to confuse a label with
        n_folds = max(2, min(folds, int(counts[classes].min())))
        from sklearn.model_selection import StratifiedKFold

        cv = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        tfidf_probs = _tfidf_fast_probs if probe == "fast" else _tfidf_probs
        probs = tfidf_probs(text_array[kept], codes, cv, seed)
        if model == "embeddings":
            vectors = _embeddings(text_array, kept, embedding_model, embeddings)
            probs, weight = _mix(probs, _probe_probs(vectors, codes, cv, seed), codes)
        for name, values in _score(classes, codes, probs, filter_by).items():
            columns[name][kept] = values
        columns["checked"][kept] = True
    frame = pd.DataFrame(columns, columns=COLUMNS)
    frame.attrs.update(model=model, folds=n_folds, embedding_weight=weight, probe=probe)
    return frame


def _unchecked(given: np.ndarray) -> dict[str, np.ndarray]:
    """The columns of rows nobody could check: own label suggested, no scores, never flagged."""
    missing = np.full(len(given), np.nan)
    return {
        "given": given.copy(),
        "suggested": given.copy(),
        "quality": missing.copy(),
        "given_probability": missing.copy(),
        "suggested_probability": missing.copy(),
        "is_issue": np.zeros(len(given), dtype=bool),
        "checked": np.zeros(len(given), dtype=bool),
    }


def _check(
    texts: Sequence[str],
    labels: Sequence[str],
    model: str,
    folds: int,
    filter_by: str,
    embeddings: np.ndarray | None,
    probe: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate the arguments up front, so a bad config fails before minutes of embedding."""
    if probe not in PROBES:
        raise ValueError(f"unknown noise probe {probe!r}; choose one of {', '.join(PROBES)}")
    if model not in NOISE_MODELS:
        raise ValueError(f"unknown noise model {model!r}; choose one of {', '.join(NOISE_MODELS)}")
    if filter_by not in FILTER_METHODS:
        raise ValueError(f"unknown filter_by {filter_by!r}; choose one of {', '.join(FILTER_METHODS)}")
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    if embeddings is not None and len(embeddings) != len(texts):
        raise ValueError(f"{len(embeddings)} embeddings for {len(texts)} texts")
    as_array = np.array([str(t) for t in texts], dtype=object)
    return as_array, np.array([str(label) for label in labels], dtype=object)


def _tfidf_probs(texts: np.ndarray, codes: np.ndarray, cv: StratifiedKFold, seed: int) -> np.ndarray:
    """Out-of-fold probabilities of TF-IDF + logistic regression (vocabulary fit per fold)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    tfidf = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
        # saga is ~8x faster than lbfgs on sparse TF-IDF here, with the same accuracy.
        LogisticRegression(C=TFIDF_C, solver="saga", max_iter=1000, random_state=seed),
    )
    return _cross_val_probs(tfidf, texts, codes, cv)


def _tfidf_fast_probs(texts: np.ndarray, codes: np.ndarray, cv: StratifiedKFold, seed: int) -> np.ndarray:
    """Out-of-fold probabilities of SGD logistic regression on one TF-IDF of all texts.

    Vectorising once saves a vocabulary fit per fold; the vocabulary and IDF see no labels, so
    the held-out rows' probabilities still come from a model that never saw their label.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import SGDClassifier

    features = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32).fit_transform(texts)
    sgd = SGDClassifier(loss="log_loss", alpha=FAST_ALPHA, tol=1e-4, random_state=seed)
    return _cross_val_probs(sgd, features, codes, cv)


def choose_probe(setting: str, rows: int) -> tuple[str, str]:
    """The probe for `setting` (one of `PROBE_SETTINGS`) on `rows` rows, and why, in words."""
    if setting not in PROBE_SETTINGS:
        raise ValueError(f"unknown noise probe {setting!r}; choose one of {', '.join(PROBE_SETTINGS)}")
    if setting != "auto":
        return setting, f"clean.label_noise_probe: {setting}"
    if rows >= FAST_ROWS:
        return "fast", f"auto: {rows:,} train rows >= {FAST_ROWS:,}"
    return "full", f"auto: {rows:,} train rows < {FAST_ROWS:,}"


def _probe_probs(vectors: np.ndarray, codes: np.ndarray, cv: StratifiedKFold, seed: int) -> np.ndarray:
    """Out-of-fold probabilities of a logistic-regression probe on sentence embeddings."""
    from sklearn.linear_model import LogisticRegression

    probe = LogisticRegression(C=EMBEDDING_C, solver="saga", max_iter=1000, random_state=seed)
    return _cross_val_probs(probe, vectors, codes, cv)


def _cross_val_probs(estimator: Any, features: Any, codes: np.ndarray, cv: StratifiedKFold) -> np.ndarray:
    """`predict_proba` of `estimator` for each row, from the fold that did not train on it."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import cross_val_predict

    with warnings.catch_warnings():
        # Tiny, separable folds never "converge" (weights keep growing) while the ranking of
        # their probabilities is already settled; the warning would only alarm the user.
        warnings.simplefilter("ignore", ConvergenceWarning)
        probs = np.asarray(cross_val_predict(estimator, features, codes, cv=cv, method="predict_proba"))
    # float32 features give rows summing to 1 +- 1e-7, which log_loss warns about: renormalise.
    probs = probs.astype(np.float64)
    return probs / probs.sum(axis=1, keepdims=True)


def _embeddings(
    texts: np.ndarray, kept: np.ndarray, embedding_model: str, embeddings: np.ndarray | None
) -> np.ndarray:
    """The kept rows' embeddings: the caller's, or computed now (only for the kept rows)."""
    if embeddings is not None:
        return np.asarray(embeddings, dtype=np.float32)[kept]
    from lmforge.models.embed import embed  # imports torch: only when embeddings are needed

    return embed(list(texts[kept]), model=embedding_model)


def _mix(tfidf: np.ndarray, probe: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, float]:
    """The mix of the two models' probabilities with the lowest out-of-fold log-loss.

    One weight fitted on out-of-fold predictions barely overfits, and it lets the data decide
    which view of the text (words or meaning) carries its labels.
    """
    from sklearn.metrics import log_loss

    labels = np.arange(tfidf.shape[1])
    losses = [log_loss(codes, (1 - w) * tfidf + w * probe, labels=labels) for w in WEIGHTS]
    weight = float(WEIGHTS[int(np.argmin(losses))])
    return (1 - weight) * tfidf + weight * probe, weight


def _score(
    classes: np.ndarray, codes: np.ndarray, probs: np.ndarray, filter_by: str
) -> dict[str, np.ndarray]:
    """The score columns for the cross-validated rows, from cleanlab's verdict on `probs`."""
    from cleanlab.filter import find_label_issues as cleanlab_issues
    from cleanlab.rank import get_label_quality_scores

    # n_jobs=1: cleanlab's process pool costs more than it saves on a few cores.
    issues = cleanlab_issues(codes, probs, filter_by=filter_by, n_jobs=1)
    best = probs.argmax(axis=1)
    rows = np.arange(len(codes))
    return {
        "suggested": classes[best],
        "quality": get_label_quality_scores(codes, probs, method="self_confidence"),
        "given_probability": probs[rows, codes],
        "suggested_probability": probs[rows, best],
        "is_issue": np.asarray(issues, dtype=bool),
    }
