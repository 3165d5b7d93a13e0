"""Divergence detection: a NaN/inf loss, or a loss that explodes, stops training at once.

The check runs after the backward pass and before the optimizer step, so the bad update
is never applied and every saved checkpoint predates the divergence.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any


class Divergence(Exception):
    """Raised inside the training loop; `fit` restarts from the last good checkpoint."""

    def __init__(self, step: int, loss: float, reason: str) -> None:
        super().__init__(f"{reason} at step {step} (loss {loss:.4g})")
        self.step, self.loss, self.reason = step, loss, reason


@dataclass
class LossWatch:
    """Smoothed loss with its lowest value; a smoothed loss `factor` times above the
    lowest and above the starting loss is exploding (an overfitting run whose loss
    fell near zero does not trip it on a noisy batch). A loss at or below `floor` (a
    classifier's: that of a uniform guess, ln K) is never exploding: a fine-tune that starts
    from a trained head (LP-FT) begins near zero, and its first noisy steps are not divergence."""

    factor: float
    smoothing: float = 0.2
    warmup_steps: int = 3
    ema: float | None = None
    lowest: float = math.inf
    first: float | None = None
    seen: int = 0
    floor: float = 0.0

    def check(self, step: int, loss: float) -> None:
        if not math.isfinite(loss):
            raise Divergence(step, loss, "non-finite loss")
        self.seen += 1
        self.ema = loss if self.ema is None else (1 - self.smoothing) * self.ema + self.smoothing * loss
        if self.first is None:
            self.first = loss
        if self.seen <= self.warmup_steps:
            self.lowest = min(self.lowest, self.ema)
            return
        if self.ema > self.factor * self.lowest and self.ema > self.first and self.ema > self.floor:
            raise Divergence(step, loss, f"exploding loss ({self.ema:.3g} vs lowest {self.lowest:.3g})")
        self.lowest = min(self.lowest, self.ema)


def step_timer() -> Any:
    """A Trainer callback timing each optimizer step (forward, backward, the all-reduce of a
    data-parallel run, the optimizer), evaluations and checkpoints apart: its median is the
    figure that compares one process with Ray Train workers, or one machine with another."""
    import time

    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.began: float | None = None

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.began = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.began is not None:
                self.seconds.append(time.perf_counter() - self.began)
                self.began = None

        def median(self) -> float | None:
            """The median step, the first left out (it builds the optimizer's state)."""
            timed = self.seconds[1:] or self.seconds
            return float(statistics.median(timed)) if timed else None

    return StepTimer()
