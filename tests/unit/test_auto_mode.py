"""Auto mode (`model: auto` or a list, with a budget): the portfolio runs within the budget and
its winner, whatever its kind, goes through evaluate, export, gate, report and register.

Count mode (`budget.trials`) keeps these tests independent of the machine's speed; the wall-clock
planner is measured by bench/bench_auto.py, not asserted here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lmforge.config import load_config
from lmforge.models.kinds import kind_of
from lmforge.pipeline.graph import stages_for
from lmforge.pipeline.runner import run_pipeline
from tests.conftest import build_tiny_bert, fast_config


@pytest.fixture(scope="module")
def other_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("other-bert"), seed=1)


def _auto(config_dict: dict[str, Any], models: tuple[Path, Path], **budget: Any) -> dict[str, Any]:
    # A list of models: the portfolio probes and fine-tunes the first (`auto` would load minilm-l6).
    config_dict["model"] = [str(m) for m in models]
    config_dict["budget"] = budget
    config_dict["train"].update(epochs=4)
    return config_dict


def test_a_budget_turns_model_selection_into_the_portfolio(config_dict, tiny_model, other_model):
    config_dict["model"] = [str(tiny_model), str(other_model)]
    names = [s.name for s in stages_for(load_config(data=config_dict))]
    assert "select" in names  # no budget: today's model selection
    names = [
        s.name for s in stages_for(load_config(data=_auto(config_dict, (tiny_model, other_model), trials=5)))
    ]
    assert "select" not in names and "tune" not in names
    train = next(s for s in stages_for(load_config(data=config_dict)) if s.name == "train")
    assert train.module == "portfolio" and "budget" in train.sections


def test_a_pinned_model_with_a_budget_keeps_the_ordinary_train_stage(config_dict):
    config_dict["budget"] = {"minutes": 10}
    train = next(s for s in stages_for(load_config(data=config_dict)) if s.name == "train")
    assert train.module is None


def test_the_portfolio_winner_is_evaluated_exported_and_registered(config_dict, tiny_model, other_model):
    result = run_pipeline(load_config(data=_auto(config_dict, (tiny_model, other_model), trials=6)))
    train = result.artifacts["train"]
    rows = train.json("portfolio")
    kinds = {r["kind"] for r in rows}
    assert {"majority", "linear", "transformer"} <= kinds
    assert sum(r["chosen"] for r in rows) == 1
    chosen = next(r for r in rows if r["chosen"])
    scored = [r for r in rows if r["validation_score"] is not None and r["status"] == "trained"]
    assert chosen["validation_score"] == max(r["validation_score"] for r in scored)
    kind = train.summary["kind"]
    assert kind_of(train.path("model")) == kind
    assert result.artifacts["evaluate"].metrics["accuracy"] > 0
    serving = json.loads((result.artifacts["export"].path("serving.json")).read_text())
    assert serving.get("kind", "transformer") == kind
    assert result.artifacts["register"].summary.get("version")
    html = result.artifacts["report"].path("report.html").read_text(encoding="utf-8")
    article = "an" if kind == "ensemble" else "a"
    assert "Auto mode: candidates and budget" in html and f"The winner is {article} <b>{kind}</b>" in html
    budget = train.json("budget")
    assert budget["count_based"] and budget["trials"] == 6
    # The same config again: every stage is reused, the portfolio included.
    again = run_pipeline(load_config(data=config_dict))
    assert again.cached["train"] and again.artifacts["train"].content_hash == train.content_hash


def test_one_trial_is_spent_on_the_linear_model_alone(config_dict, tiny_model, other_model):
    result = run_pipeline(load_config(data=_auto(config_dict, (tiny_model, other_model), trials=1)))
    rows = {r["candidate"]: r for r in result.artifacts["train"].json("portfolio")}
    dropped = [r for r in rows.values() if r["status"] == "dropped"]
    assert len(dropped) == 2 and all("budget.trials" in r["reason"] for r in dropped)
    assert result.artifacts["train"].summary["kind"] == "linear"
    assert kind_of(result.artifacts["train"].path("model")) == "linear"
    assert result.artifacts["evaluate"].metrics["f1_macro"] > 0.5  # four word-topics: easy for TF-IDF
    decisions = result.artifacts["train"].json("budget")["decisions"]
    assert any("dropped" in d["decision"] for d in decisions)


@pytest.mark.parametrize("trials", [3])
def test_count_mode_gives_the_same_model_twice(tmp_path, data_csv, tiny_model, other_model, trials):
    hashes = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        config = _auto(fast_config(folder, data_csv, tiny_model), (tiny_model, other_model), trials=trials)
        config["tracking"]["enabled"] = False
        result = run_pipeline(load_config(data=config), until="train")
        rows = result.artifacts["train"].json("portfolio")
        hashes.append([(r["candidate"], r["validation_score"], r["chosen"]) for r in rows])
    assert hashes[0] == hashes[1]


def test_a_budget_too_small_for_the_data_is_one_config_error_naming_the_minimum(config_dict, tmp_path):
    from lmforge.errors import ConfigError
    from tests.conftest import make_rows, write_csv

    rows = make_rows(per_class=20_000)  # 80,000 rows: more than 2 minutes of data stages alone
    config_dict["data"]["train"] = str(write_csv(tmp_path / "big.csv", rows))
    config_dict["budget"] = {"minutes": 2}
    with pytest.raises(ConfigError) as caught:
        run_pipeline(load_config(data=config_dict))
    message = str(caught.value)
    assert "budget.minutes: 2 is below" in message and "set budget.minutes: " in message
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_candidate_that_fails_is_reported_and_the_others_still_compete(
    config_dict, tiny_model, other_model
):
    config = _auto(config_dict, (tiny_model, other_model), trials=6)
    config["train"].update(learning_rate=1e4, max_restarts=0)  # the fine-tune diverges at once
    result = run_pipeline(load_config(data=config), until="train")
    rows = {r["candidate"]: r for r in result.artifacts["train"].json("portfolio")}
    failed = [r for r in rows.values() if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["candidate"] == "fine-tune"
    assert "diverged" in failed[0]["reason"] or "Diverg" in failed[0]["reason"]
    # LP-FT diverged first; the fresh-head fine-tune was tried before giving up.
    decisions = [d["decision"] for d in result.artifacts["train"].json("budget")["decisions"]]
    assert "fine-tune restart" in decisions and "fine-tune failed" in decisions
    assert next(r for r in rows.values() if r["chosen"])["kind"] in ("linear", "transformer", "ensemble")


def test_a_wall_clock_budget_times_the_fine_tune_and_plans_its_steps(config_dict, tiny_model, other_model):
    # The clock decides here, so only the shape is asserted: bench/bench_auto.py measures the rest.
    config = _auto(config_dict, (tiny_model, other_model), minutes=3)
    config["tracking"]["enabled"] = False
    result = run_pipeline(load_config(data=config), until="train")
    train = result.artifacts["train"]
    rows = {r["candidate"]: r for r in train.json("portfolio")}
    finetune = next(r for name, r in rows.items() if name.endswith("fine-tuned"))
    assert finetune["status"] in ("trained", "stopped", "dropped")
    budget = train.json("budget")
    assert budget["seconds"] == 180 and not budget["count_based"]
    decisions = [d["decision"] for d in budget["decisions"]]
    assert "fine-tune plan" in decisions or any(d.startswith("dropped") for d in decisions)
    assert all(s["actual_seconds"] is not None for s in budget["stages"] if s["stage"] in ("ingest", "split"))


def test_a_pinned_model_under_a_budget_ends_by_the_clock_and_reports_its_plan(config_dict):
    config_dict["budget"] = {"minutes": 3}
    result = run_pipeline(load_config(data=config_dict))
    budget = json.loads((result.run_dir / "budget.json").read_text())
    decision = next(d for d in budget["decisions"] if d["decision"] == "ends by the clock")
    assert decision["stage"] == "train" and "up to the recipe's" in decision["reason"]
    assert "s per step measured" in decision["reason"]
    train = result.artifacts["train"]
    history = train.json("history")
    # Tiny data: the recipe's steps end the fit before the clock, evaluated at its last step.
    assert any("eval_loss" in h and h["step"] == train.metrics["steps"] for h in history)
    assert train.json("hyperparameters")["lr_scheduler"] == "constant_with_warmup"  # the clock's rate
    rates = [h["learning_rate"] for h in history if "learning_rate" in h]
    assert rates and rates[-1] < max(rates)  # decayed by the clock's progress
    assert budget["elapsed_seconds"] < 180
    html = result.artifacts["report"].path("report.html").read_text()
    assert "Time budget" in html and "ends by the clock" in html
