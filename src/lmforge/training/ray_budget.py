"""A time budget for the train stage on Ray Train: the workers lay the learning rate over the
seconds left and stop together.

In one process a pinned model's steps are planned from a few timed steps (`timed_finetune`).
On Ray the driver cannot time a worker's step (the group is not started yet, and its speed
depends on the workers and the network), so the workers use the clock schedule
(`clock_schedule.py`): up to the recipe's steps, the learning rate decays with the larger of
the steps done and the seconds spent over the seconds given, and training ends, evaluated and
saved, when that progress reaches 1. The end is a wall-clock time (`time.time()`), the one clock
the nodes of a cluster share (NTP keeps them within milliseconds); each step the workers take
the largest of their progresses (an all-reduce of one number), so they stop at the same step.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pandas as pd

from lmforge.config import TrainConfig
from lmforge.errors import ConfigError
from lmforge.training.clock_schedule import clock_schedule, clock_settings, warmup_steps_of

# Seconds a Ray Train run spends outside its training steps: the worker group's start, the model
# load in every worker, the last checkpoint's report and its copy to the stage's folder.
# bench/bench_scale.py on 2 cores: 22.6 s (1 worker) and 25.2 s (2 workers) of wall time beyond
# the Trainer's own train_runtime.
RAY_FIXED_SECONDS = 25.0
MIN_TRAIN_SECONDS = 30.0  # less leaves a fine-tune of a few dozen steps: not worth the start


def plan_on_ray(
    ctx: Any,
    reference: str,
    labels: list[str],
    train: pd.DataFrame,
    validation: pd.DataFrame,
    cfg: TrainConfig,
) -> tuple[TrainConfig, dict[str, Any]]:
    """`cfg` for the workers and their clock (`worker_clock`'s argument): up to the recipe's
    steps, ending at the train stage's deadline less Ray's fixed costs and the last validation
    pass. Too little time is a config error naming the budget that would fit."""
    from lmforge.training.fit import classification_settings
    from lmforge.training.timed_finetune import reference_timing

    budget = ctx.budget
    settings = classification_settings(reference, ctx.config.base_dir, cfg, train, labels)[2]
    batch = settings.batch_size * settings.gradient_accumulation_steps
    steps = max(1, int(settings.epochs * len(train) / batch))
    final_pass = reference_timing(settings.max_length, batch, len(validation)).eval_seconds
    left = budget.stage_deadline("train", "transformer") - time.monotonic()
    available = left - RAY_FIXED_SECONDS - final_pass
    if available < MIN_TRAIN_SECONDS:
        minimum = (budget.seconds + MIN_TRAIN_SECONDS - available) / 60
        raise ConfigError(
            [
                f"budget.minutes: {budget.seconds / 60:g} leaves {max(available, 0):.0f} s to train on Ray "
                f"Train after its start-up (~{RAY_FIXED_SECONDS:.0f} s); set budget.minutes: "
                f"{math.ceil(minimum)} or more, or executor.train_workers: 0 to train in this process"
            ]
        )
    clock = {
        "end": time.time() + available,
        "max_steps": steps,
        "warmup_steps": warmup_steps_of(settings.warmup_ratio, steps),
        "shape": settings.lr_scheduler,
    }
    reason = (
        f"up to the recipe's {steps} steps, learning rate laid out over {available:.0f} s "
        f"(the train stage's {left:.0f} s less Ray's start-up and the last validation pass)"
    )
    budget.decide("train", "Ray Train ends by the clock", reason)
    ctx.log(f"budget: {reason}")
    return cfg.model_copy(update=clock_settings(steps)), clock


def worker_clock(clock: dict[str, Any]) -> Any:
    """The clock schedule of one worker, its progress agreed with the others' each step."""
    return clock_schedule(
        float(clock["end"]),
        int(clock["max_steps"]),
        int(clock["warmup_steps"]),
        str(clock["shape"]),
        clock=time.time,
        agree=largest_over_workers,
        reserve=clock.get("reserve"),
    )


def largest_over_workers(progress: float) -> float:
    """The largest `progress` of all data-parallel workers (this one's when there are none)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return progress
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([progress], dtype=torch.float64, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return float(value.item())
