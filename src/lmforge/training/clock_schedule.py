"""A learning-rate schedule laid out over the time a fine-tune has, not over a step count.

A budgeted fine-tune cannot know its step count in advance: a few timed steps overstate the
steady-state cost (minilm-l6 on emotion: 0.60 s per step over the first six, 0.28 s from the
tenth on, as new padded shapes stop appearing), so a plan in steps used half the time it had.
Here the schedule's progress is the larger of the steps done over `max_steps` and the seconds
spent over the seconds given; the learning rate warms up over `warmup_steps` and then decays
with that progress (linear or cosine, the recipe's shape), and training ends, evaluated and
saved, when the progress reaches 1. So the fine-tune uses the time it has whatever its speed,
and still ends with its learning rate decayed. The validation passes at the rungs come at a
third and two thirds of the progress, where a step-planned run would have them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

RUNGS = (1 / 3, 2 / 3)


def clock_settings(steps: int) -> dict[str, Any]:
    """The train settings of a fit the clock schedule drives: at most `steps`, evaluated only
    where the clock says (its rungs and its end: `eval_steps` past the last step), and the
    Trainer's own schedule constant with no warmup, so the base rate it restores each step is
    the one the clock multiplies."""
    return {
        "max_steps": steps,
        "eval_steps": steps + 1,
        "lr_scheduler": "constant_with_warmup",
        "warmup_ratio": 0.0,
    }


def warmup_steps_of(warmup: float, steps: int) -> int:
    """`train.warmup_ratio` as steps: a fraction of `steps` below 1, a step count from 1 on."""
    return int(warmup * steps) if warmup < 1 else int(warmup)


def multiplier(progress: float, step: int, warmup_steps: int, shape: str) -> float:
    """The factor on the base learning rate at `progress` (0..1) and optimizer step `step`."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    left = min(1.0, max(0.0, 1.0 - progress))
    if shape == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * (1.0 - left)))
    elif shape == "constant_with_warmup":
        decay = 1.0
    else:  # linear
        decay = left
    return warm * decay


def clock_schedule(
    end: float,
    max_steps: int,
    warmup_steps: int,
    shape: str,
    rungs: Sequence[float] = RUNGS,
    clock: Callable[[], float] = time.monotonic,
    agree: Callable[[float], float] = lambda progress: progress,
    reserve: float | None = None,
) -> Any:
    """A Trainer callback that sets the learning rate of every parameter group from the
    progress (see the module's docstring) and ends training when it reaches 1 at `end` (a
    `clock()` value). Use with the Trainer's own schedule constant (`constant_with_warmup`
    and no warmup), so the base rate it restores each step is the one multiplied here.
    `agree` turns this process's progress into the one every data-parallel worker uses (the
    largest, `training/ray_budget.py`): workers whose clocks differ by a step would otherwise
    stop at different steps, and the one still training would wait for the others forever.
    `reserve`: seconds kept free before `end` for the last validation pass and save, raised to
    the longest pass-and-save seen at a rung (`end` is then the time everything must be done
    by): a causal LM's validation pass is not timed before training starts."""
    from transformers import TrainerCallback

    class ClockSchedule(TrainerCallback):
        def __init__(self) -> None:
            self.started: float | None = None
            self.passed = 0  # rungs already evaluated
            self.ended_by_clock = False
            self.reserved = reserve or 0.0
            self.step_ended: float | None = None
            self.step_began: float | None = None
            self.recent: list[float] = []  # the last steps' seconds (evaluations apart)

        def progress(self, step: int, ahead: float = 0.0) -> float:
            """Of the steps and of the time (`ahead` seconds from now), the further along."""
            started = self.started if self.started is not None else clock()
            by_time = (clock() + ahead - started) / max(1e-9, end - self.reserved - started)
            return agree(max(step / max(1, max_steps), by_time))

        def ends_at(self) -> float | None:
            """The wall-clock time the clock will end training (None before it starts)."""
            if self.started is None:
                return None
            return time.time() + (end - self.reserved - clock())

        def _measure(self) -> None:
            # A validation pass (and the save after it) runs between a step's end and the next.
            if reserve is not None and self.step_ended is not None:
                self.reserved = max(self.reserved, clock() - self.step_ended)

        def on_evaluate(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._measure()

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._measure()

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.started is None:  # a restart after divergence keeps the first start
                self.started = clock()

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.step_began = clock()
            optimizer = kw.get("optimizer")
            if optimizer is None:
                return
            factor = multiplier(self.progress(state.global_step), state.global_step, warmup_steps, shape)
            for group in optimizer.param_groups:
                # `initial_lr` is the scheduler's base rate (scaled down after a restart).
                group["lr"] = group.get("initial_lr", group["lr"]) * factor
            scheduler = kw.get("lr_scheduler")
            if scheduler is not None and hasattr(scheduler, "_last_lr"):
                # The Trainer logs the scheduler's last rate, read before its next `step()`
                # (the constant base here): so history and TensorBoard show the rate used.
                scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.step_ended = clock()
            ahead = 0.0
            if reserve is not None and self.step_began is not None:
                # With a reserve (the end is when everything must be done), end at the step
                # whose next one would cross the end: steps vary (samsum's batches grouped by
                # length: 3-12 s) and one that overshoots eats the time kept for the last pass.
                self.recent = [*self.recent[-4:], self.step_ended - self.step_began]
                ahead = max(self.recent)
            progress = self.progress(state.global_step, ahead)
            if self.passed < len(rungs) and progress >= rungs[self.passed]:
                self.passed = sum(1 for rung in rungs if progress >= rung)
                control.should_evaluate = control.should_save = True
            if progress >= 1.0 and state.global_step < state.max_steps:
                # The end by the clock: evaluated and saved like the last planned step.
                self.ended_by_clock = True
                control.should_training_stop = True
                control.should_evaluate = control.should_save = True

    return ClockSchedule()
