"""The portfolio's arithmetic: the honest blend, the step plan of a timed fine-tune, the run plan."""

from __future__ import annotations

import numpy as np
import pytest

from lmforge.pipeline.budget import RunBudget
from lmforge.tasks.classification import metrics
from lmforge.training.blend import blend, keep_blend, paired_noise
from lmforge.training.timed_finetune import MIN_STEPS, StepPlan, StepTiming, most_steps, plan_steps

LABELS = ["a", "b", "c"]


def _f1(truth, predicted) -> float:
    return float(metrics(list(truth), list(predicted))["f1_macro"])


def _onehot(index: np.ndarray, sharp: float = 0.8) -> np.ndarray:
    out = np.full((len(index), 3), (1 - sharp) / 2)
    out[np.arange(len(index)), index] = sharp
    return out


def test_a_blend_of_a_model_with_itself_is_not_used():
    rng = np.random.default_rng(0)
    truth_idx = rng.integers(0, 3, 300)
    noisy = np.where(rng.random(300) < 0.3, rng.integers(0, 3, 300), truth_idx)
    proba = _onehot(noisy)
    result = blend(proba, proba.copy(), [LABELS[i] for i in truth_idx], LABELS, _f1)
    assert not result.used
    assert result.first_score == result.second_score


def test_members_right_on_different_rows_blend_into_a_better_model():
    rng = np.random.default_rng(1)
    n = 600
    truth_idx = rng.integers(0, 3, n)
    wrong = (truth_idx + 1) % 3
    # Each member is sure where it is right and unsure where it is wrong, on different halves.
    first = np.where((np.arange(n) % 2 == 0)[:, None], _onehot(truth_idx, 0.9), _onehot(wrong, 0.4))
    second = np.where((np.arange(n) % 2 == 1)[:, None], _onehot(truth_idx, 0.9), _onehot(wrong, 0.4))
    result = blend(first, second, [LABELS[i] for i in truth_idx], LABELS, _f1)
    assert result.used, result.reason
    assert 0 < result.weight < 1
    assert result.score > max(result.first_score, result.second_score)


@pytest.mark.parametrize(
    ("oof", "first", "second", "noise", "weight", "used", "why"),
    [
        (0.95, 0.94, 0.90, 0.01, 0.6, True, "gain"),  # beats both by more than MIN_GAIN
        (0.9747, 0.9747, 0.9708, 0.006, 0.5, True, "members tied"),  # two errors apart on 507 rows
        (0.9747, 0.9747, 0.9500, 0.006, 0.5, False, "not tied"),  # one member is clearly better
        (0.9740, 0.9747, 0.9708, 0.006, 0.5, False, "no gain"),  # tied, but the blend is worse
        (0.9747, 0.9747, 0.9747, 0.0, 0.5, False, "no gain"),  # no noise: the members agree everywhere
        (0.99, 0.94, 0.90, 0.01, 1.0, False, "one member alone"),
    ],
)
def test_keep_blend_ships_a_gain_or_a_tie_that_the_blend_does_not_lose(
    oof, first, second, noise, weight, used, why
):
    kept, _, reason = keep_blend(oof, first, second, noise, weight)
    assert kept is used and why in reason


def test_paired_noise_is_zero_for_one_model_and_grows_with_disagreement():
    rng = np.random.default_rng(3)
    truth_idx = rng.integers(0, 3, 500)
    truth = np.asarray([LABELS[i] for i in truth_idx], dtype=object)
    labels = np.asarray(LABELS, dtype=object)
    first = _onehot(truth_idx)
    assert paired_noise(first, first.copy(), truth, labels, _f1) == 0.0
    few = np.where(rng.random(500) < 0.02, (truth_idx + 1) % 3, truth_idx)
    many = np.where(rng.random(500) < 0.2, (truth_idx + 1) % 3, truth_idx)
    close = paired_noise(first, _onehot(few), truth, labels, _f1)
    far = paired_noise(first, _onehot(many), truth, labels, _f1)
    assert 0 < close < far < 0.1


@pytest.mark.parametrize(
    ("seconds", "method", "steps"),
    [
        (10_000.0, "full", 300),  # the recipe's 3 epochs of 100 steps fit
        (80.0, "full", 152),  # (80 s - 4 evaluations) / 0.5 s: 1.52 epochs fit
        (40.0, "freeze", None),  # less than an epoch: frozen bottom layers see more rows
    ],
)
def test_plan_steps_fits_the_seconds(seconds, method, steps):
    timing = StepTiming(seconds_per_step=0.5, eval_seconds=1.0, batch=32)
    plan = plan_steps(seconds, timing, train_rows=3200, recipe_epochs=3.0, evaluations=4)
    assert plan is not None and plan.method == method
    if steps is not None:
        expected = min(steps, int((seconds - 4.0) / 0.5))
        assert plan.max_steps == expected
    assert plan.max_steps * 0.5 * (0.55 if method == "freeze" else 1) <= seconds


@pytest.mark.parametrize(
    ("plan", "most_epochs", "expected"),
    [
        (StepPlan(300, "full", 3.0, "the recipe fits"), 6.0, 600),  # time to spare: on to 6 epochs
        (StepPlan(300, "full", 3.0, "the recipe fits"), 3.0, 300),  # epochs set by hand: kept
        (StepPlan(152, "full", 1.52, "1.52 epochs fit"), 6.0, 300),  # short of time: the recipe's
        (StepPlan(200, "freeze", 2.0, "frozen"), 6.0, 300),  # frozen layers: never extended
    ],
)
def test_a_fine_tune_trains_past_the_recipe_only_when_the_recipe_fits(plan, most_epochs, expected):
    assert most_steps(plan, train_rows=3200, batch=32, recipe_epochs=3.0, most_epochs=most_epochs) == expected


def test_plan_steps_refuses_when_too_few_steps_fit():
    timing = StepTiming(seconds_per_step=2.0, eval_seconds=5.0, batch=32)
    assert plan_steps(20.0 + 2.0 * 0.55 * (MIN_STEPS - 1), timing, 3200, 3.0) is None


def test_the_plan_reserves_more_after_training_for_a_transformer_than_for_a_linear_model():
    budget = RunBudget(300.0, ["ingest", "split", "train", "evaluate", "export", "report", "register"])
    budget.rows.update(train=10_000, test=2_000)
    budget.revise()
    assert budget.post_seconds("linear") < budget.post_seconds("transformer")
    assert budget.stage_deadline("train", "linear") > budget.stage_deadline("train", "transformer")
    planned = sum(budget.plan.values())
    assert planned == pytest.approx(budget.seconds - budget.margin(), rel=1e-6)


def test_real_stage_times_replace_the_estimates():
    budget = RunBudget(600.0, ["ingest", "clean", "train", "evaluate", "register"])
    before = budget.plan["train"]
    budget.finished("ingest", 100.0, {"train": 10_000}, cached=False)
    assert budget.actual["ingest"] == 100.0
    assert budget.plan["train"] < before - 90  # the slow ingest is paid for by training
    assert [row["stage"] for row in budget.table()] == ["ingest", "clean", "train", "evaluate", "register"]


def _callback(deadline, rival, stops):
    from lmforge.training.timed_finetune import budget_callbacks

    return budget_callbacks(deadline, 90, lambda: rival, "f1_macro", stops.append)[0]


def _state(step):
    from types import SimpleNamespace

    return SimpleNamespace(global_step=step, epoch=1.0)


def _control():
    from types import SimpleNamespace

    return SimpleNamespace(should_training_stop=False, should_evaluate=False, should_save=False)


def test_a_fine_tune_far_behind_the_cheap_models_stops_at_the_first_rung():
    stops: list[str] = []
    callback, control = _callback(None, 0.9, stops), _control()
    callback.on_evaluate(None, _state(30), control, metrics={"eval_f1_macro": 0.6})
    assert control.should_training_stop and "rung 33%" in stops[0] and "0.9000" in stops[0]


def test_a_fine_tune_close_enough_continues_until_the_second_rung_is_stricter():
    stops: list[str] = []
    callback = _callback(None, 0.9, stops)
    first, second = _control(), _control()
    callback.on_evaluate(None, _state(30), first, metrics={"eval_f1_macro": 0.8})  # within 0.15
    callback.on_evaluate(None, _state(60), second, metrics={"eval_f1_macro": 0.8})  # not within 0.05
    assert not first.should_training_stop and second.should_training_stop
    assert "rung 67%" in stops[0]


def test_a_rung_reached_after_too_few_steps_does_not_judge():
    # The clock schedule reaches its first rung by time; after a restart (or on a slow machine)
    # that can come 10 steps in, when any fine-tune still trails.
    stops: list[str] = []
    callback, control = _callback(None, 0.9, stops), _control()
    callback.on_evaluate(None, _state(10), control, metrics={"eval_f1_macro": 0.1})
    assert not control.should_training_stop and not stops


def test_a_rung_reached_before_half_an_epoch_does_not_judge():
    # A short budget's first rung can come a quarter of an epoch in, where a fine-tune that ends
    # level with the cheap models still trails them far (emotion at 5 minutes: 0.64 vs 0.86).
    from types import SimpleNamespace

    stops: list[str] = []
    callback, control = _callback(None, 0.9, stops), _control()
    callback.on_evaluate(
        None, SimpleNamespace(global_step=40, epoch=0.26), control, metrics={"eval_f1_macro": 0.6}
    )
    assert not control.should_training_stop and not stops


def test_the_last_evaluation_never_stops_and_no_rival_means_no_rung():
    stops: list[str] = []
    callback, control = _callback(None, None, stops), _control()
    callback.on_evaluate(None, _state(30), control, metrics={"eval_f1_macro": 0.1})
    assert not control.should_training_stop and not stops


def test_the_deadline_stops_training_early_enough_for_the_final_validation_pass():
    import time

    from lmforge.training.timed_finetune import budget_callbacks

    stops: list[str] = []
    # 30 s to the deadline, and the final pass over the validation split takes 40 s: stop now,
    # without an evaluation of its own (the final pass scores the kept checkpoint).
    callback = budget_callbacks(time.monotonic() + 30, 90, lambda: None, "f1_macro", stops.append, 40.0)[0]
    control = _control()
    callback.on_step_end(None, _state(12), control)
    assert control.should_training_stop and not control.should_evaluate
    assert "deadline at step 12 of 90" in stops[0]
    # With an hour left the same step goes on.
    relaxed = budget_callbacks(time.monotonic() + 3600, 90, lambda: None, "f1_macro", [].append, 40.0)[0]
    control = _control()
    relaxed.on_step_end(None, _state(12), control)
    assert not control.should_training_stop


def test_a_step_the_clock_ends_needs_only_its_final_pass_to_fit():
    import time

    from lmforge.training.timed_finetune import budget_callbacks

    stops: list[str] = []
    # 20 s left, a pass of 10 s, and the last step took 8 s (a batch of long examples): a next
    # step would not fit, but the clock ends training here, evaluated, and the pass does fit.
    callback = budget_callbacks(time.monotonic() + 20, 90, lambda: None, "loss", stops.append, 10.0)[0]
    callback.step_ended -= 8.0
    ending = _control()
    ending.should_training_stop = ending.should_evaluate = ending.should_save = True
    callback.on_step_end(None, _state(40), ending)
    assert ending.should_evaluate and ending.should_save and not stops
    callback.step_ended -= 8.0
    going_on = _control()
    callback.on_step_end(None, _state(41), going_on)
    assert going_on.should_training_stop and not going_on.should_evaluate and stops
