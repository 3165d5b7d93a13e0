"""A time budget for the causal tasks: what the plan reserves after training, and the fit's clock."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from lmforge.config import Config, TrainConfig
from lmforge.errors import ConfigError
from lmforge.pipeline.budget import RunBudget
from lmforge.tasks.generation import Encoded
from lmforge.training.causal_budget import SAVE_SECONDS, plan_causal
from lmforge.training.causal_fit import CausalData
from lmforge.training.recipe import resolve_causal

STAGES = ["ingest", "split", "baseline", "train", "evaluate", "gate", "report", "register"]


def _config(task: str, **extra: object) -> Config:
    return Config.model_validate({"task": task, "data": {"train": "rows.jsonl"}, "budget": "10m", **extra})


@pytest.mark.parametrize(("task", "answers"), [("generation", 64), ("language-modeling", 0)])
def test_a_causal_task_plans_for_a_causal_evaluation(task: str, answers: int) -> None:
    budget = RunBudget.from_config(_config(task), STAGES)
    assert budget is not None and budget.model_kind == "causal" and budget.answers == answers


def test_the_causal_evaluation_is_priced_by_the_baseline_once_it_has_run() -> None:
    budget = RunBudget(600.0, STAGES, model_kind="causal", answers=64)
    budget.rows.update(train=160, test=20)
    budget.revise()
    guessed = budget.post_seconds("causal")
    assert budget.plan["baseline"] == pytest.approx(budget.plan["evaluate"])  # the same work
    budget.finished("baseline", 0.01, {"test": 20}, cached=True, computed=120.0)
    # The cached baseline took 120 s to compute: the evaluation of the fine-tuned model will too.
    assert budget.plan["evaluate"] == pytest.approx(5.0 + 1.15 * 120.0)
    assert budget.post_seconds("causal") > guessed
    assert budget.plan["train"] < 600.0 - 140.0


def test_a_skipped_baseline_measures_nothing() -> None:
    budget = RunBudget(600.0, STAGES, model_kind="causal", answers=64)
    budget.rows.update(train=160, test=20)
    budget.revise()
    guessed = budget.plan["evaluate"]
    budget.finished("baseline", 0.01, {}, cached=False, computed=0.01, skipped=True)
    assert budget.plan["evaluate"] == pytest.approx(guessed) and guessed > 20.0


def test_a_classifier_budget_is_unchanged_by_the_causal_pricing() -> None:
    budget = RunBudget.from_config(_config("classification"), STAGES)
    assert budget is not None and budget.model_kind == "transformer" and budget.answers == 0


def _data(examples: int, tokens: int, validation: int, batch: int = 4) -> CausalData:
    settings, decisions = resolve_causal(
        TrainConfig(method="lora", batch_size=batch), token_lengths=[tokens] * examples, model_limit=2048
    )
    rows = [[1] * tokens for _ in range(examples)]
    held = [[1] * tokens for _ in range(validation)]
    return CausalData(None, settings, decisions, Encoded(rows, rows), Encoded(held, held))


def _ctx(seconds: float, spent: float = 0.0) -> SimpleNamespace:
    budget = RunBudget(seconds, STAGES, started=time.monotonic() - spent, model_kind="causal", answers=8)
    budget.rows.update(train=100, test=10)
    budget.finished("baseline", 20.0, {"test": 10}, cached=False)
    return SimpleNamespace(budget=budget, config=SimpleNamespace(model_name="smollm2-135m"))


@pytest.mark.parametrize("on_ray", [False, True])
def test_the_plan_keeps_the_recipe_steps_and_ends_by_the_stage_deadline(on_ray: bool) -> None:
    ctx = _ctx(600.0)
    data = _data(examples=100, tokens=128, validation=10)
    plan = plan_causal(ctx, data, on_ray=on_ray)
    epochs = data.settings.epochs
    assert plan.steps == int(25 * epochs) == plan.settings.max_steps  # 100 rows / batch 4
    assert plan.settings.eval_steps == plan.steps + 1  # the clock evaluates at its rungs
    assert plan.settings.lr_scheduler == "constant_with_warmup" and plan.settings.warmup_ratio == 0.0
    assert plan.settings.learning_rate == data.settings.learning_rate  # the recipe's rate
    now = time.time() if on_ray else time.monotonic()
    left = ctx.budget.stage_deadline("train", "causal") - time.monotonic()
    assert plan.clock["end"] - now == pytest.approx(left - SAVE_SECONDS - (25.0 if on_ray else 0.0), abs=1.0)
    assert plan.clock["reserve"] == pytest.approx(0.25 * 10)  # 10 rows of 128 tokens
    assert (plan.deadline is None) == on_ray  # Ray's workers stop by their shared clock
    assert "the recipe's" in plan.reason and ("Ray's start-up" in plan.reason) == on_ray
    made = plan.callbacks()
    assert len(made) == (1 if on_ray else 2)


def test_too_little_time_names_the_budget_that_would_fit() -> None:
    ctx = _ctx(300.0, spent=240.0)
    with pytest.raises(ConfigError) as caught:
        plan_causal(ctx, _data(examples=100, tokens=128, validation=10))
    (line,) = caught.value.problems
    assert line.startswith("budget.minutes: 5 leaves ") and "set budget.minutes: " in line
    wanted = int(line.rsplit("set budget.minutes: ", 1)[1].split()[0])
    assert wanted > 5


def test_a_real_causal_fit_ends_by_the_clock_evaluated_with_its_pass_kept_free(tmp_path, tiny_llama) -> None:
    from lmforge.training.causal_budget import CausalPlan
    from lmforge.training.causal_fit import fit_causal_lm, prepare_causal
    from tests.conftest import make_instructions, messages_frame

    rows = messages_frame(make_instructions())
    cfg = TrainConfig(
        method="full",
        epochs=10_000,
        batch_size=4,
        learning_rate=5e-3,
        max_length=32,
        early_stopping_patience=None,
    )
    data = prepare_causal(str(tiny_llama), tmp_path, cfg, rows, rows.head(8), lm=False)
    steps = 10_000 * len(data.train) // 4
    settings = data.settings.model_copy(
        update={
            "max_steps": steps,
            "eval_steps": steps + 1,
            "lr_scheduler": "constant_with_warmup",
            "warmup_ratio": 0.0,
        }
    )
    end = time.monotonic() + 5.0
    clock = {"end": end, "max_steps": steps, "warmup_steps": 2, "shape": "linear", "reserve": 0.5}
    plan = CausalPlan(settings, clock, end + SAVE_SECONDS, steps, "test")
    made = plan.callbacks()
    fit = fit_causal_lm(
        str(tiny_llama),
        tmp_path,
        data.tokenizer,
        data.train,
        data.validation,
        settings,
        tmp_path / "ck",
        callbacks=lambda: made,
    )
    schedule = made[0]
    assert (
        schedule.ended_by_clock and 0 < fit.steps < steps and not plan.stops
    )  # the clock, not the hard stop
    assert time.monotonic() < end + 2.0  # the last pass and save were kept inside the end
    evaluated = [entry for entry in fit.trainer.state.log_history if "eval_loss" in entry]
    assert len(evaluated) == 3 and fit.best_metric is not None  # the two rungs and the end
    assert schedule.reserved > 0.0
    # The history shows the rate each step trained at, decaying by the clock (not the constant base).
    rates = [entry["learning_rate"] for entry in fit.trainer.state.log_history if "learning_rate" in entry]
    assert rates[-1] < rates[0] / 2


def _scored(seconds: float, test_rows: int, mean_chars: float = 500.0, **evaluate: object):
    from lmforge.pipeline.budget import budget_config
    from lmforge.pipeline.events import EventBus

    config = _config("generation", evaluate=evaluate) if evaluate else _config("generation")
    budget = RunBudget(seconds, STAGES, model_kind="causal", answers=config.evaluate.generation_rows)
    budget.mean_chars = mean_chars
    budget.rows.update(train=test_rows * 8, test=test_rows)
    warnings: list[str] = []
    bus = EventBus([lambda event: warnings.append(event.message) if event.kind == "warning" else None])
    return budget_config(budget, "baseline", config, bus), budget, warnings


def test_a_small_test_split_is_scored_whole() -> None:
    config, budget, warnings = _scored(900.0, test_rows=20)
    assert config.evaluate.perplexity_rows is None and config.evaluate.generation_rows == 64
    assert not warnings and not budget.decisions


def test_a_large_test_split_reads_fewer_rows_for_perplexity_the_same_way_twice() -> None:
    # 1,500 test rows: ~1,300 s of scoring (two passes), far over a quarter of 15 minutes.
    config, budget, warnings = _scored(900.0, test_rows=1_500)
    read = config.evaluate.perplexity_rows
    assert read is not None and 100 <= read < 1_500
    assert config.evaluate.generation_rows == 64  # the answers still fit once the rows are cut
    assert budget.perplexity_rows == read and budget._causal_evaluate() <= 0.25 * 900 / 2 + 1
    (decision,) = budget.decisions
    assert (
        decision["stage"] == "baseline"
        and decision["decision"] == f"evaluate.perplexity_rows: {read} of 1,500 test rows"
    )
    assert "over 25% of the budget" in decision["reason"] and len(warnings) == 1
    again, _, _ = _scored(900.0, test_rows=1_500)
    assert again.evaluate.perplexity_rows == read  # counts only: a rerun decides alike (cache hit)


def test_at_the_row_floor_fewer_prompts_are_answered() -> None:
    config, budget, _ = _scored(240.0, test_rows=1_500)
    assert config.evaluate.perplexity_rows == 100 and 16 <= config.evaluate.generation_rows < 64
    assert [d["decision"].split(":")[0] for d in budget.decisions] == [
        "evaluate.perplexity_rows",
        "evaluate.generation_rows",
    ]


def test_the_users_own_perplexity_rows_stand() -> None:
    config, budget, warnings = _scored(240.0, test_rows=1_500, perplexity_rows=1_000)
    assert config.evaluate.perplexity_rows == 1_000 and budget.perplexity_rows == 1_000 and not warnings


def test_scoring_reads_the_first_perplexity_rows(tmp_path, tiny_llama) -> None:
    from lmforge.pipeline.events import EventBus, progress
    from lmforge.stages.generation.scoring import score
    from tests.conftest import make_instructions, messages_frame

    rows = make_instructions()[:12]
    test = messages_frame(rows)
    config = _config("generation", evaluate={"perplexity_rows": 5, "generation_rows": 3, "max_new_tokens": 2})
    bus = EventBus()
    ctx = SimpleNamespace(
        config=SimpleNamespace(task="generation", base_dir=tmp_path),
        progress=lambda what, total: progress(bus, "evaluate", what, total),
    )
    scores = score(ctx, str(tiny_llama), test, config.evaluate, "tiny")
    assert scores.metrics["perplexity_rows"] == 5.0 and scores.metrics["generated_rows"] == 3.0
    whole = score(
        ctx, str(tiny_llama), test, config.evaluate.model_copy(update={"perplexity_rows": None}), "tiny"
    )
    assert (
        whole.metrics["perplexity_rows"] == 12.0
        and whole.metrics["test_tokens"] > scores.metrics["test_tokens"]
    )
