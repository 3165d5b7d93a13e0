"""A time budget for the causal train stage (generation, language modelling), in this process
or on Ray Train.

A causal fit keeps the recipe's settings and steps at most; its learning rate is laid out over
the seconds the train stage has (`clock_schedule.py`), so it ends, evaluated and saved, with its
rate decayed whether the machine is fast or slow. The validation pass is not timed before
training (a causal LM has no cheap probe: a few steps of smollm2 on 2 cores take a minute), so
the schedule starts from an estimate and keeps the longest pass-and-save it sees at a rung free
before the end. A hard stop (`timed_finetune.budget_callbacks`) catches a step that runs long.
On Ray Train the workers share a wall-clock end less Ray's start-up, as classification does
(`ray_budget.py`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from lmforge.errors import ConfigError
from lmforge.training.causal_fit import CausalData
from lmforge.training.clock_schedule import clock_schedule, clock_settings, warmup_steps_of
from lmforge.training.ray_budget import MIN_TRAIN_SECONDS, RAY_FIXED_SECONDS
from lmforge.training.recipe import ResolvedTrain

# A validation row's forward pass on the reference machine (smollm2-135m, 2 cores, ~130 tokens
# a row on samsum: 18 rows in ~4 s); scaled by the tokens a row holds. Only the first guess:
# the schedule replaces it with the pass it measures at its first rung.
VALIDATION_SECONDS_PER_128_TOKENS = 0.25
SAVE_SECONDS = 15.0  # the merged model's folder (and the adapter) written after training


@dataclass
class CausalPlan:
    """The settings the fit runs with under a budget, and its clock."""

    settings: ResolvedTrain
    clock: dict[str, Any]  # clock_schedule's arguments (`end` on `clock_kind`'s clock)
    deadline: float | None  # monotonic hard stop (this process only)
    steps: int
    reason: str
    stops: list[str] = field(default_factory=list)

    def callbacks(self) -> list[Any]:
        """The clock schedule and the hard stop, made once: a divergence restart keeps them."""
        from lmforge.training.timed_finetune import budget_callbacks

        made = [clock_schedule(**self.clock)]
        if self.deadline is not None:
            made += budget_callbacks(
                self.deadline, self.steps, lambda: None, "loss", self.stops.append, self.clock["reserve"]
            )
        return made


def plan_causal(ctx: Any, data: CausalData, *, on_ray: bool = False) -> CausalPlan:
    """Up to the recipe's steps, ending by the train stage's deadline (less Ray's start-up on
    Ray Train). Too little time is a config error naming the budget that would fit."""
    budget = ctx.budget
    settings = data.settings
    batch = settings.batch_size * settings.gradient_accumulation_steps
    steps = max(1, int(-(-len(data.train) // batch) * settings.epochs))
    tokens = sum(len(ids) for ids in data.validation.input_ids) / max(1, len(data.validation))
    final_pass = VALIDATION_SECONDS_PER_128_TOKENS * len(data.validation) * max(1.0, tokens / 128)
    deadline = budget.stage_deadline("train", "causal")
    left = deadline - time.monotonic()
    fixed = SAVE_SECONDS + (RAY_FIXED_SECONDS if on_ray else 0.0)
    available = left - fixed - final_pass
    if available < MIN_TRAIN_SECONDS:
        minimum = (budget.seconds + MIN_TRAIN_SECONDS - available) / 60
        where = "on Ray Train after its start-up" if on_ray else "after the stages that follow it"
        raise ConfigError(
            [
                f"budget.minutes: {budget.seconds / 60:g} leaves {max(left - fixed, 0):.0f} s to fine-tune "
                f"{ctx.config.model_name} {where} (at least {MIN_TRAIN_SECONDS:.0f} s of steps and "
                f"~{final_pass:.0f} s for the last validation pass); set budget.minutes: "
                f"{math.ceil(minimum)} or more"
            ]
        )
    # The end is the time the last pass and save must be done by; the schedule keeps them free.
    end_in = left - fixed
    clock = {
        "end": (time.time() if on_ray else time.monotonic()) + end_in,
        "max_steps": steps,
        "warmup_steps": warmup_steps_of(settings.warmup_ratio, steps),
        "shape": settings.lr_scheduler,
        "reserve": final_pass,
    }
    reason = (
        f"up to the recipe's {steps} steps ({settings.epochs:g} epochs), learning rate laid out over "
        f"{available:.0f} s (the train stage's {left:.0f} s less "
        + ("Ray's start-up, " if on_ray else "")
        + f"the save and ~{final_pass:.0f} s for the last validation pass)"
    )
    return CausalPlan(
        settings.model_copy(update=clock_settings(steps)),
        clock,
        # The hard stop looks one step and one validation pass ahead of the stage's end; the
        # clock ends SAVE_SECONDS before it, so it ends the fit first unless a step runs long.
        None if on_ray else deadline,
        steps,
        reason,
    )
