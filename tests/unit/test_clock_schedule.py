"""The learning-rate schedule laid out over the seconds a budgeted fine-tune has."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from lmforge.training.clock_schedule import clock_schedule, multiplier


@pytest.mark.parametrize(
    ("progress", "step", "shape", "expected"),
    [
        (0.0, 0, "linear", 0.25),  # first of 4 warmup steps
        (0.0, 3, "linear", 1.0),  # warmed up, nothing spent
        (0.5, 10, "linear", 0.5),
        (0.5, 10, "cosine", 0.5),
        (0.25, 10, "cosine", 0.5 * (1 + math.cos(math.pi * 0.25))),
        (0.9, 10, "constant_with_warmup", 1.0),
        (1.5, 10, "linear", 0.0),  # past the end: never negative
    ],
)
def test_multiplier_warms_up_by_steps_and_decays_by_progress(progress, step, shape, expected):
    assert multiplier(progress, step, warmup_steps=4, shape=shape) == pytest.approx(expected)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _control() -> SimpleNamespace:
    return SimpleNamespace(should_training_stop=False, should_evaluate=False, should_save=False)


def _optimizer(lr: float = 1e-3):
    import torch

    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))]
    # Two groups at different rates, as layer-wise decay makes them.
    optimizer = torch.optim.AdamW([{"params": params[:1], "lr": lr}, {"params": params[1:], "lr": lr / 2}])
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]  # what the Trainer's LambdaLR records
    return optimizer


def test_a_slow_run_decays_by_the_clock_and_ends_evaluated_at_the_deadline():
    clock = _Clock()
    schedule = clock_schedule(end=100.0, max_steps=1000, warmup_steps=0, shape="linear", clock=clock)
    optimizer = _optimizer()
    state = SimpleNamespace(global_step=0, max_steps=1000)
    schedule.on_train_begin(None, state, _control())
    seen: list[tuple[float, bool, bool]] = []
    for step in range(10):  # 10 s per step: 10 of the 1000 steps fit the 100 s
        state.global_step = step
        schedule.on_step_begin(None, state, _control(), optimizer=optimizer)
        clock.now += 10.0
        state.global_step = step + 1
        control = _control()
        schedule.on_step_end(None, state, control)
        seen.append((optimizer.param_groups[0]["lr"], control.should_evaluate, control.should_training_stop))
        if control.should_training_stop:
            break
    lrs = [lr for lr, _, _ in seen]
    assert lrs == pytest.approx([1e-3 * (1 - s / 10) for s in range(10)])
    assert optimizer.param_groups[1]["lr"] == pytest.approx(lrs[-1] / 2)  # each group scaled alike
    evaluated = [i + 1 for i, (_, evaluate, _) in enumerate(seen) if evaluate]
    assert evaluated == [4, 7, 10]  # the rungs at a third and two thirds of the time, and the end
    assert seen[-1][2] and len(seen) == 10 and schedule.ended_by_clock


def test_a_fast_run_ends_at_its_step_limit_not_the_clock():
    clock = _Clock()
    schedule = clock_schedule(end=1000.0, max_steps=6, warmup_steps=0, shape="linear", clock=clock)
    state = SimpleNamespace(global_step=0, max_steps=6)
    schedule.on_train_begin(None, state, _control())
    evaluations = 0
    for step in range(1, 7):
        clock.now += 1.0
        state.global_step = step
        control = _control()
        schedule.on_step_end(None, state, control)
        evaluations += control.should_evaluate
        # The Trainer itself ends (and evaluates) at max_steps; the clock does not claim it.
        assert not control.should_training_stop
    assert evaluations == 2 and not schedule.ended_by_clock


def test_a_restart_keeps_the_first_start():
    clock = _Clock()
    schedule = clock_schedule(end=100.0, max_steps=1000, warmup_steps=0, shape="linear", clock=clock)
    schedule.on_train_begin(None, SimpleNamespace(global_step=0), _control())
    clock.now = 50.0
    schedule.on_train_begin(None, SimpleNamespace(global_step=0), _control())  # after a divergence
    assert schedule.progress(0) == pytest.approx(0.5)


def test_a_real_trainer_ends_by_the_clock_with_its_best_checkpoint(tmp_path: Path, tiny_model: Path):
    import time

    from lmforge.config import TrainConfig
    from lmforge.training.fit import fit_classifier
    from tests.conftest import make_rows

    rows = make_rows(per_class=40)
    train = pd.DataFrame(rows, columns=["text", "label"])
    labels = sorted(train["label"].unique())
    cfg = TrainConfig(
        epochs=1,
        batch_size=4,
        max_steps=100_000,
        eval_steps=100_001,
        learning_rate=1e-3,
        lr_scheduler="constant_with_warmup",
        warmup_ratio=0.0,
        max_length=16,
        early_stopping_patience=None,
    )
    schedule = clock_schedule(time.monotonic() + 4.0, 100_000, warmup_steps=2, shape="linear")
    fit = fit_classifier(
        str(tiny_model),
        tmp_path,
        labels,
        train,
        train.head(20),
        cfg,
        tmp_path / "ck",
        callbacks=lambda: [schedule],
    )
    assert schedule.ended_by_clock and 0 < fit.steps < 100_000
    assert fit.best_metric is not None  # evaluated at the rungs and at the clock's end
    evaluated = [entry for entry in fit.trainer.state.log_history if "eval_loss" in entry]
    assert len(evaluated) == 3


def test_a_reserve_ends_the_schedule_early_enough_for_the_longest_pass_seen():
    clock = _Clock()
    schedule = clock_schedule(
        end=100.0, max_steps=1000, warmup_steps=0, shape="linear", clock=clock, reserve=10.0
    )
    state = SimpleNamespace(global_step=0, max_steps=1000)
    schedule.on_train_begin(None, state, _control())
    ended_at = None
    for step in range(1, 100):
        clock.now += 5.0
        state.global_step = step
        control = _control()
        schedule.on_step_end(None, state, control)
        if control.should_evaluate:
            clock.now += 20.0  # the validation pass and save at a rung: longer than reserved
            schedule.on_evaluate(None, state, control)
            schedule.on_save(None, state, control)
        if control.should_training_stop:
            ended_at = clock.now
            break
    # The first rung comes at a third of (100 - 10) s; from then on 20 s are kept free, so the
    # last pass (another 20 s) ends by the end, not 10 s after it.
    assert schedule.reserved == pytest.approx(20.0)
    assert ended_at is not None and ended_at <= 100.0
    assert schedule.ended_by_clock


def test_without_a_reserve_evaluations_do_not_move_the_end():
    clock = _Clock()
    schedule = clock_schedule(end=100.0, max_steps=1000, warmup_steps=0, shape="linear", clock=clock)
    state = SimpleNamespace(global_step=0, max_steps=1000)
    schedule.on_train_begin(None, state, _control())
    clock.now = 10.0
    schedule.on_step_end(None, state, _control())
    clock.now = 40.0
    schedule.on_evaluate(None, state, _control())
    assert schedule.reserved == 0.0 and schedule.progress(0) == pytest.approx(0.4)


def test_with_a_reserve_the_clock_ends_at_the_step_whose_next_would_cross_the_end():
    clock = _Clock()
    schedule = clock_schedule(
        end=100.0, max_steps=1000, warmup_steps=0, shape="linear", clock=clock, reserve=0.0, rungs=()
    )
    state = SimpleNamespace(global_step=0, max_steps=1000)
    schedule.on_train_begin(None, state, _control())
    lengths = [3.0, 12.0] * 20  # batches grouped by length: short and long steps in turn
    for step, seconds in enumerate(lengths, start=1):
        schedule.on_step_begin(None, state, _control())
        clock.now += seconds
        state.global_step = step
        control = _control()
        schedule.on_step_end(None, state, control)
        if control.should_training_stop:
            break
    # It stops while a 12 s step would still end past 100 s, not after overshooting it.
    assert schedule.ended_by_clock and clock.now <= 100.0 and clock.now + 12.0 > 100.0
