"""A fine-tune that fits a time budget: measure the step time, plan the steps that fit, stop at
rungs where cheaper models already do better, and stop at the deadline whatever happens.

The plan keeps the recipe's settings (max_length, batch size, learning rate, class weights)
and cuts only how long it trains, with the learning-rate schedule laid out over the seconds it
has (`clock_schedule.py`): a run that ends by the clock ends with its learning rate decayed,
which is worth more than more rows at a high rate.
When a full fine-tune cannot see the train split once, the bottom layers are frozen
(`method: freeze`, top blocks trained): a step then costs about half, so twice the rows fit.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lmforge.config import TrainConfig
from lmforge.training.clock_schedule import clock_schedule, clock_settings, warmup_steps_of

# Timed steps. The first ones pay for allocator growth and for each new padded shape (oneDNN
# builds its kernels per shape): on emotion 0.52 s, falling to 0.21-0.28 s by the tenth.
PROBE_STEPS = 10
SLOW_PROBE_SECONDS = 10.0
MIN_STEPS = 30  # fewer optimizer steps than this leave a fine-tuned head barely trained
FREEZE_STEP_RATIO = 0.55  # a step with only the top 2 of 6 blocks trained, vs a full step (measured)
# At a rung (fraction of the planned steps), the fine-tune continues while its validation score
# is within this margin of the best cheaper candidate: early scores understate the final one.
RUNG_MARGINS = {1 / 3: 0.15, 2 / 3: 0.05}
# Nor before it has seen this much of the train split: emotion at 5 minutes, an LP-FT fine-tune
# scored 0.64 validation macro-F1 at 0.26 epochs and was stopped (trailing TF-IDF's 0.86 by more
# than 0.15), while the same fine-tune pinned reached 0.83 at 0.39 epochs and 0.88 at 1.12.
MIN_JUDGED_EPOCHS = 0.5


# Count mode with `minutes` (`budget.deterministic`): steps come from this fixed figure, never
# from this machine's speed (minilm-l6, batch 32 x 64 tokens on the reference 2-core machine,
# ~0.5 s per step; a step's cost grows about linearly with max_length).
REFERENCE_SECONDS_PER_STEP_64 = 0.5


@dataclass(frozen=True)
class StepTiming:
    seconds_per_step: float
    eval_seconds: float  # one pass over the validation split
    batch: int


@dataclass(frozen=True)
class StepPlan:
    max_steps: int
    method: str  # "full" | "freeze"
    epochs: float
    reason: str


def reference_timing(max_length: int, batch: int, validation_rows: int) -> StepTiming:
    """The fixed step cost count mode plans with (the same on every machine)."""
    per_step = REFERENCE_SECONDS_PER_STEP_64 * max(1.0, max_length / 64) * batch / 32
    return StepTiming(per_step, per_step / 3 * validation_rows / max(1, batch), batch)


def time_steps(
    reference: str,
    base_dir: Path,
    labels: list[str],
    train: pd.DataFrame,
    validation_rows: int,
    cfg: TrainConfig,
    folder: Path,
) -> StepTiming:
    """Seconds per optimizer step of `cfg` on this machine, from a few real steps."""
    from transformers import TrainerCallback

    from lmforge.training.fit import fit_classifier, remove_checkpoints

    stamps: list[float] = []

    class Stamp(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            stamps.append(time.perf_counter())
            # Slow steps are measured well enough by three: more would spend the budget.
            if len(stamps) >= 3 and stamps[-1] - stamps[0] > SLOW_PROBE_SECONDS:
                control.should_training_stop = True

    batch = cfg.batch_size * cfg.gradient_accumulation_steps
    sample = train.sample(n=min(len(train), batch * PROBE_STEPS), random_state=0)
    probe = cfg.model_copy(
        update={"max_steps": PROBE_STEPS, "eval_steps": None, "early_stopping_patience": None, "epochs": 1.0}
    )
    fit_classifier(
        reference,
        base_dir,
        labels,
        sample,
        sample.head(2),
        probe,
        folder,
        callbacks=lambda: [Stamp()],
        save_checkpoints=False,
    )
    remove_checkpoints(folder)
    gaps = [b - a for a, b in itertools.pairwise(stamps)] or [1.0]
    steady = sorted(gaps[2:] if len(gaps) > 4 else gaps)
    # The lower quartile of the later steps: still falling towards the steady-state cost.
    per_step = steady[len(steady) // 4]
    # A forward pass costs about a third of a training step (no backward, no optimizer).
    eval_seconds = per_step / 3 * validation_rows / max(1, batch)
    return StepTiming(per_step, eval_seconds, batch)


def plan_steps(
    seconds: float, timing: StepTiming, train_rows: int, recipe_epochs: float, evaluations: int = 4
) -> StepPlan | None:
    """The optimizer steps that fit `seconds`; None when fewer than MIN_STEPS fit."""
    batch = timing.batch
    recipe_steps = max(1, int(recipe_epochs * train_rows / batch))
    usable = seconds - evaluations * timing.eval_seconds
    full_steps = int(usable / timing.seconds_per_step) if usable > 0 else 0
    epoch_steps = max(1, train_rows // batch)
    if full_steps >= recipe_steps:
        return StepPlan(recipe_steps, "full", recipe_epochs, f"the recipe's {recipe_epochs:g} epochs fit")
    if full_steps >= epoch_steps:
        epochs = full_steps * batch / train_rows
        return StepPlan(
            full_steps, "full", epochs, f"{epochs:.2f} of the recipe's {recipe_epochs:g} epochs fit"
        )
    freeze_steps = (
        min(recipe_steps, int(usable / (timing.seconds_per_step * FREEZE_STEP_RATIO))) if usable > 0 else 0
    )
    if freeze_steps >= MIN_STEPS and freeze_steps > full_steps:
        epochs = freeze_steps * batch / train_rows
        return StepPlan(
            freeze_steps,
            "freeze",
            epochs,
            f"a full fine-tune sees {full_steps * batch / train_rows:.2f} epochs; with the bottom layers "
            f"frozen {epochs:.2f} fit",
        )
    if full_steps >= MIN_STEPS:
        epochs = full_steps * batch / train_rows
        return StepPlan(full_steps, "full", epochs, f"{epochs:.2f} epochs fit")
    return None


def most_steps(plan: StepPlan, train_rows: int, batch: int, recipe_epochs: float, most_epochs: float) -> int:
    """The most optimizer steps a fine-tune in auto mode may take: the recipe's, or, when the
    recipe's epochs fit the time with a full fine-tune, up to `most_epochs` epochs. The clock
    schedule then ends it by the seconds it has (it uses the time, its learning rate decayed),
    or at those steps when the budget is larger still."""
    recipe_steps = max(1, int(recipe_epochs * train_rows / max(1, batch)))
    if plan.method != "full" or plan.max_steps < recipe_steps or most_epochs <= recipe_epochs:
        return max(plan.max_steps, recipe_steps)
    return max(recipe_steps, int(most_epochs * train_rows / max(1, batch)))


def budget_callbacks(
    deadline: float | None,
    max_steps: int,
    rival: Callable[[], float | None],
    metric: str,
    on_stop: Callable[[str], None],
    final_pass: float = 0.0,
) -> list[Any]:
    """Stop in time for `deadline` (monotonic): while the next step and a final pass over the
    validation split (`final_pass` seconds, or the longest evaluation seen, whichever is more)
    still fit. At each rung, stop when the validation `metric` trails the best cheaper
    candidate (`rival()`) by more than the rung's margin, once it has seen MIN_JUDGED_EPOCHS."""
    from transformers import TrainerCallback

    class Budgeted(TrainerCallback):
        def __init__(self) -> None:
            self.evaluations = 0
            self.step_ended = time.monotonic()
            self.step_seconds = 0.0
            self.eval_seconds = final_pass

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            now = time.monotonic()
            self.step_seconds = now - self.step_ended
            self.step_ended = now
            # A callback before this one (the clock schedule) may end training at this step,
            # evaluated: then no next step has to fit, only the pass. (Steps vary: batches
            # grouped by length took 3-10 s on samsum; the last one's length is no guide.)
            ending = control.should_training_stop and control.should_evaluate
            ahead = self.eval_seconds + 5 + (0.0 if ending else self.step_seconds)
            if deadline is not None and now + ahead >= deadline:
                # No evaluation here: the best evaluated checkpoint is kept, and the caller's
                # final pass over the validation split scores it.
                control.should_training_stop = True
                control.should_evaluate = False
                control.should_save = False
                on_stop(f"the deadline at step {state.global_step} of {max_steps}")

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kw: Any) -> None:
            # Evaluations come at each rung in turn (eval_steps = a third of the steps).
            self.evaluations += 1
            self.eval_seconds = max(self.eval_seconds, time.monotonic() - self.step_ended)
            rungs = sorted(RUNG_MARGINS.items())
            best, value = rival(), (metrics or {}).get(f"eval_{metric}")
            if (
                best is None
                or value is None
                or self.evaluations > len(rungs)
                or state.global_step >= max_steps
                # Too few steps to judge (a slow machine, or a restart after a divergence):
                # a rung reached by the clock alone does not stop a fine-tune that barely began.
                or state.global_step < MIN_STEPS
                or (state.epoch or 0.0) < MIN_JUDGED_EPOCHS
            ):
                return
            rung, margin = rungs[self.evaluations - 1]
            if value < best - margin:
                control.should_training_stop = True
                on_stop(
                    f"rung {rung:.0%}: validation {metric} {value:.4f} trails the best cheaper "
                    f"candidate ({best:.4f}) by more than {margin}"
                )

    return [Budgeted()]


def fit_in_budget(
    ctx: Any,
    reference: str,
    labels: list[str],
    train: pd.DataFrame,
    validation: pd.DataFrame,
    cfg: TrainConfig,
) -> tuple[TrainConfig, list[Any]]:
    """A pinned model under a wall-clock budget: up to the recipe's steps, the learning rate
    laid out over the seconds before the stages after training (the clock schedule comes first
    in the callbacks returned; its `ends_at` caps the progress bar's ETA), and a hard stop at
    the deadline. Fewer than MIN_STEPS fit: a config error naming the budget that would."""
    from lmforge.errors import ConfigError
    from lmforge.training.fit import classification_settings
    from lmforge.training.recipe import auto_epochs

    budget = ctx.budget
    settings = classification_settings(reference, ctx.config.base_dir, cfg, train, labels)[2]
    batch = settings.batch_size * settings.gradient_accumulation_steps
    epochs = auto_epochs(len(train), batch)[0] if cfg.epochs == "auto" else float(cfg.epochs)
    timing = time_steps(
        reference,
        ctx.config.base_dir,
        labels,
        train,
        len(validation),
        cfg.model_copy(update={"max_length": settings.max_length}),
        ctx.work_dir / "timing",
    )
    deadline = budget.stage_deadline("train", "transformer")
    available = deadline - time.monotonic() - timing.eval_seconds - 5
    plan = plan_steps(available, timing, len(train), epochs, evaluations=3)
    if plan is None:
        needed = (MIN_STEPS * timing.seconds_per_step + 3 * timing.eval_seconds + 5) - available
        minimum = (budget.seconds + max(needed, 0)) / 60
        raise ConfigError(
            [
                f"budget.minutes: {budget.seconds / 60:g} leaves {max(available, 0):.0f} s to fine-tune "
                f"{reference} ({timing.seconds_per_step:.2f} s per step here, {MIN_STEPS} steps at least); "
                f"set budget.minutes: {math.ceil(minimum)} or more, "
                "or model: auto (it fits a linear model first)"
            ]
        )
    # As in auto mode and the causal fit: the recipe's steps are the most it trains, and the
    # learning rate is laid out over the seconds it has (clock_schedule.py), so a step cost
    # measured high (the first steps meet new padded shapes) does not leave time unused. The
    # planned steps still decide whether it fits at all and whether the bottom layers freeze.
    steps = max(plan.max_steps, max(1, int(epochs * len(train) / batch)))
    reason = (
        f"up to the recipe's {steps} steps, learning rate laid out over {available:.0f} s "
        f"({plan.reason} at the {timing.seconds_per_step:.2f} s per step measured)"
    )
    budget.decide("train", "ends by the clock", reason)
    ctx.log(f"budget: {reason}")
    update: dict[str, Any] = clock_settings(steps)
    if plan.method == "freeze" and cfg.method == "full":
        update.update(method="freeze", trainable_layers=2)
    stops: list[str] = []

    def stopped(reason: str) -> None:
        stops.append(reason)
        budget.decide("train", "stopped", reason)

    clock = clock_schedule(
        time.monotonic() + available + timing.eval_seconds,  # the last pass is kept free inside
        steps,
        warmup_steps_of(settings.warmup_ratio, plan.max_steps),
        settings.lr_scheduler,
        reserve=timing.eval_seconds,
    )
    # The clock first: a step it ends needs only its final pass to fit the hard stop.
    callbacks = [
        clock,
        *budget_callbacks(deadline, steps, lambda: None, "f1_macro", stopped, timing.eval_seconds),
    ]
    return cfg.model_copy(update=update), callbacks
