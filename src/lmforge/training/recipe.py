"""The fine-tune recipe: every `auto` training setting chosen from the data and the model.

`train.max_length`, `epochs`, `learning_rate`, `pooling` and `class_weights` default to
`auto`. `resolve_classification` / `resolve_causal` turn a `TrainConfig` into a
`ResolvedTrain` (same keys, concrete values) and a list of `Decision`s, each with the
number it came from; the train stage writes them to `recipe.json` and the report shows them.
Values set in the config (or by a tuning trial) are kept and recorded as such.

The constants below were chosen by measurement (bench/bench_recipe.py; the grid and the
results are in docs/decisions.md, "The fine-tune recipe").
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from lmforge.config import TrainConfig

# Token-length percentile that sets `max_length`: with length-grouped batches a longer limit
# costs only on the few long texts, so the limit keeps 99% of texts whole.
LENGTH_PERCENTILE = 99.0
MIN_MAX_LENGTH = 16

# Epochs: enough passes for TARGET_STEPS optimizer steps, within [MIN_EPOCHS, MAX_EPOCHS].
# Small sets need more passes (up to 2,000 rows: 6), large ones no more than 3; never fewer
# than 3, because one short epoch never predicts a rare class. Early stopping on the
# validation metric ends a run that has converged sooner.
TARGET_STEPS = 340
MIN_EPOCHS = 3
MAX_EPOCHS = 6

# Small encoders, full fine-tuning: the peak learning rate is ENCODER_PEAK_LR up to
# PEAK_LR_STEPS optimizer steps and falls as 1/steps beyond (a fixed "learning-rate x steps"
# budget), down to ENCODER_MIN_LR: on the measured grid 5e-4 won at 84-174 steps, 2e-4 at
# ~340, 1e-4 at ~850 (docs/decisions.md).
ENCODER_PEAK_LR = 5e-4
PEAK_LR_STEPS = 170
ENCODER_MIN_LR = 1e-4

# Peak learning rates by (model family, method) where no step scaling was measured.
# Wider encoders (hidden >= 768) keep the BERT paper's range.
ENCODER_LR = {"full": ENCODER_PEAK_LR, "freeze": 5e-4, "lora": 1e-3}
WIDE_ENCODER_LR = {"full": 5e-5, "freeze": 2e-4, "lora": 5e-4}
WIDE_HIDDEN = 768
CAUSAL_LR = {"full": 5e-5, "freeze": 1e-4, "lora": 1e-3}
CAUSAL_EPOCHS = {"full": 2.0, "freeze": 3.0, "lora": 3.0}

# `class_weights: auto` weights the loss when the rarest class holds fewer rows than this
# fraction of an even share (1 / number of classes).
RARE_SHARE = 0.5


class ResolvedTrain(TrainConfig):
    """`train` with every `auto` replaced by the value the recipe chose."""

    pooling: Literal["mean", "default"]
    epochs: float
    learning_rate: float
    max_length: int
    class_weights: Literal["none", "balanced"]


@dataclass(frozen=True)
class Decision:
    """One training setting: its value, whether lmforge chose it, and why."""

    key: str
    value: Any
    chosen: bool  # True: `auto` resolved by the recipe; False: set in the config or by tuning
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_classification(
    cfg: TrainConfig,
    *,
    token_lengths: Sequence[int],
    train_labels: Sequence[str],
    labels: Sequence[str],
    model_limit: int,
    pooling: tuple[str, str],
    hidden_size: int | None,
    causal: bool,
) -> tuple[ResolvedTrain, list[Decision]]:
    """Concrete settings for fine-tuning a classifier on this train split.

    `token_lengths`: tokens per train text (special tokens included); `model_limit`: the
    model's longest input; `pooling`: the model's pretrained pooling and how it is known
    (`models.load.model_pooling`); `hidden_size` picks the learning-rate row for unknown encoders.
    """
    decisions: list[Decision] = []
    values: dict[str, Any] = {}

    def decide(key: str, configured: Any, auto: tuple[Any, str]) -> None:
        if configured == "auto":
            values[key], reason = auto
            decisions.append(Decision(key, values[key], True, reason))
        else:
            values[key] = configured
            decisions.append(Decision(key, configured, False, "set in the config"))

    decide("pooling", cfg.pooling, pooling if not causal else ("default", "a causal LM: the last token"))
    decide("max_length", cfg.max_length, auto_max_length(token_lengths, model_limit))
    _cap_length(values, decisions, model_limit)
    rows = len(train_labels)
    batch = cfg.batch_size * cfg.gradient_accumulation_steps
    decide("epochs", cfg.epochs, auto_epochs(rows, batch))
    if causal:
        lr = (CAUSAL_LR[cfg.method], f"{cfg.method} fine-tuning of a causal LM")
    elif hidden_size is not None and hidden_size >= WIDE_HIDDEN:
        lr = (WIDE_ENCODER_LR[cfg.method], f"{cfg.method} fine-tuning of an encoder of width {hidden_size}")
    elif cfg.method == "full":
        lr = auto_encoder_lr(rows, batch, float(values["epochs"]))
    else:
        lr = (ENCODER_LR[cfg.method], f"{cfg.method} fine-tuning of a small encoder (width {hidden_size})")
    decide("learning_rate", cfg.learning_rate, lr)
    decide("class_weights", cfg.class_weights, auto_class_weights(train_labels, labels))
    resolved = ResolvedTrain.model_validate({**cfg.model_dump(), **values})
    return resolved, decisions


def auto_max_length(token_lengths: Sequence[int], model_limit: int) -> tuple[int, str]:
    """The `LENGTH_PERCENTILE` of the token lengths, rounded up to a multiple of 8, capped."""
    if not len(token_lengths):
        return min(128, model_limit), "no training texts to measure: 128"
    quantile = float(np.percentile(np.asarray(token_lengths), LENGTH_PERCENTILE))
    value = max(MIN_MAX_LENGTH, int(math.ceil(quantile / 8) * 8))
    capped = min(value, model_limit)
    kept = float(np.mean(np.asarray(token_lengths) <= capped))
    reason = (
        f"{LENGTH_PERCENTILE:g}th percentile of {len(token_lengths):,} train texts is "
        f"{quantile:.0f} tokens (longest {max(token_lengths)}); {kept:.1%} fit whole"
    )
    if capped < value:
        reason += f"; capped by the model's limit of {model_limit}"
    return capped, reason


def _cap_length(values: dict[str, Any], decisions: list[Decision], model_limit: int) -> None:
    """A configured `max_length` above the model's position limit would index past its
    position embeddings: cap it, and say so (the just-made decision is max_length's)."""
    configured = int(values["max_length"])
    if configured > model_limit:
        values["max_length"] = model_limit
        decisions[-1] = Decision(
            "max_length",
            model_limit,
            True,
            f"set to {configured} in the config; capped by the model's limit of {model_limit} tokens",
        )


def auto_epochs(rows: int, batch: int) -> tuple[float, str]:
    """Passes for about `TARGET_STEPS` optimizer steps, within [MIN_EPOCHS, MAX_EPOCHS]."""
    steps_per_epoch = max(1, math.ceil(rows / max(1, batch)))
    wanted = math.ceil(TARGET_STEPS / steps_per_epoch)
    epochs = float(min(MAX_EPOCHS, max(MIN_EPOCHS, wanted)))
    return epochs, (
        f"{rows:,} train rows in batches of {batch} make {steps_per_epoch} steps per epoch; "
        f"{TARGET_STEPS} steps need {wanted}, kept within {MIN_EPOCHS}-{MAX_EPOCHS}"
    )


def auto_encoder_lr(rows: int, batch: int, epochs: float) -> tuple[float, str]:
    """`ENCODER_PEAK_LR` up to `PEAK_LR_STEPS` steps, then scaled by PEAK_LR_STEPS / steps."""
    steps = max(1, math.ceil(rows / max(1, batch))) * epochs
    scaled = ENCODER_PEAK_LR * PEAK_LR_STEPS / steps
    lr = float(f"{min(ENCODER_PEAK_LR, max(ENCODER_MIN_LR, scaled)):.2g}")
    return lr, (
        f"{steps:.0f} optimizer steps: {ENCODER_PEAK_LR:g} x {PEAK_LR_STEPS}/steps, "
        f"kept within {ENCODER_MIN_LR:g}-{ENCODER_PEAK_LR:g}"
    )


def auto_class_weights(train_labels: Sequence[str], labels: Sequence[str]) -> tuple[str, str]:
    """`balanced` when the rarest class holds under `RARE_SHARE` of an even share of rows."""
    counts = Counter(train_labels)
    if not counts:
        return "none", "no training rows"
    rarest = min(labels, key=lambda label: counts.get(label, 0))
    share = counts.get(rarest, 0) / len(train_labels)
    even = 1 / max(1, len(labels))
    verdict = "balanced" if share < RARE_SHARE * even else "none"
    relation = "under" if verdict == "balanced" else "at least"
    return verdict, (
        f"rarest class '{rarest}' holds {share:.1%} of train rows, {relation} "
        f"{RARE_SHARE:g} x the even share of {even:.1%}"
    )


def class_weight_vector(train_labels: Sequence[str], labels: Sequence[str]) -> list[float]:
    """Inverse-frequency weights (scikit-learn's "balanced": n / (classes x count))."""
    counts = Counter(train_labels)
    total, classes = len(train_labels), len(labels)
    return [total / (classes * max(1, counts.get(label, 0))) for label in labels]


# A causal LM's `auto` max_length is also capped here: logits are length x vocabulary floats
# per row (smollm2: 49k), so a 8k-token context would not fit a CPU's memory in training.
CAUSAL_LENGTH_CAP = 1024


def resolve_causal(
    cfg: TrainConfig, *, token_lengths: Sequence[int], model_limit: int
) -> tuple[ResolvedTrain, list[Decision]]:
    """Concrete settings for instruction tuning or continued pretraining of a causal LM.

    `token_lengths`: tokens per whole training example (prompt + answer, or text).
    """
    decisions: list[Decision] = []
    values: dict[str, Any] = {"pooling": "default", "class_weights": "none"}

    def decide(key: str, configured: Any, auto: tuple[Any, str]) -> None:
        if configured == "auto":
            values[key], reason = auto
            decisions.append(Decision(key, values[key], True, reason))
        else:
            values[key] = configured
            decisions.append(Decision(key, configured, False, "set in the config"))

    limit = min(model_limit, CAUSAL_LENGTH_CAP)
    length, reason = auto_max_length(token_lengths, limit)
    if limit < model_limit and length == limit:
        reason += f" (lmforge caps causal LMs at {CAUSAL_LENGTH_CAP} to bound training memory)"
    decide("max_length", cfg.max_length, (length, reason))
    _cap_length(values, decisions, model_limit)
    decide(
        "epochs", cfg.epochs, (CAUSAL_EPOCHS[cfg.method], f"measured default for {cfg.method} on a causal LM")
    )
    decide(
        "learning_rate",
        cfg.learning_rate,
        (CAUSAL_LR[cfg.method], f"measured default for {cfg.method} on a causal LM"),
    )
    resolved = ResolvedTrain.model_validate({**cfg.model_dump(), **values})
    return resolved, decisions
