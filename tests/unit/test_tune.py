"""The tune stage on a tiny random BERT: pruning, best parameters into train, resume."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from lmforge.config import load_config
from lmforge.errors import ConfigError
from lmforge.pipeline.runner import run_pipeline
from tests.conftest import fast_config, make_rows, write_csv

ROOT = Path(__file__).resolve().parents[2]


def tune_config(folder: Path, model: Path, **tune: Any) -> dict[str, Any]:
    config = fast_config(folder, write_csv(folder / "data.csv", make_rows()), model)
    config["train"].update({"eval_steps": 3, "epochs": 3})
    config["tune"] = {
        "enabled": True,
        "trials": 6,
        "startup_trials": 2,
        # The tiny model needs high learning rates; the low end makes trials worth pruning.
        "space": {
            "learning_rate": {"low": 1e-6, "high": 2e-2, "log": True},
            "batch_size": {"choices": [8, 16]},
        },
        **tune,
    }
    return config


@pytest.mark.parametrize("pruner", ["median", "successive_halving"])
def test_study_prunes_and_train_uses_the_best_parameters(
    tmp_path: Path, tiny_model: Path, pruner: str
) -> None:
    config = tune_config(tmp_path, tiny_model, pruner=pruner)
    # Validation loss separates weak trials from good ones early (macro-F1 ties at chance).
    config["train"]["metric_for_best_model"] = "loss"
    result = run_pipeline(load_config(data=config))
    tune = result.artifacts["tune"]
    trials = pd.read_csv(tune.path("trials.csv"))
    assert len(trials) == 6 and set(trials["state"]) <= {"COMPLETE", "PRUNED"}
    assert (trials["state"] == "PRUNED").any(), trials  # weak learning rates stop early
    pruned = trials[trials["state"] == "PRUNED"]
    assert (pruned["steps"] < trials["steps"].max()).all()
    best = tune.json("best")
    assert best["value"] == trials[trials["state"] == "COMPLETE"]["value"].min()
    used = result.artifacts["train"].json("hyperparameters")
    assert used["learning_rate"] == pytest.approx(best["params"]["learning_rate"])
    assert used["batch_size"] == best["params"]["batch_size"]
    assert tune.metrics["total_steps"] == trials["steps"].sum()
    assert all(tune.has(f"hpo_{name}.png") for name in ("history", "curves", "trials"))
    html = (result.run_dir / "report" / "report.html").read_text()
    assert "Hyperparameter search" in html and "pruned" in html


def test_pruning_on_the_loss_still_picks_the_best_trial_by_the_metric(
    tmp_path: Path, tiny_model: Path
) -> None:
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    config = tune_config(
        tmp_path, tiny_model, trials=3, pruner="successive_halving", prune_on="loss", storage=storage
    )
    tune = run_pipeline(load_config(data=config), until="tune").artifacts["tune"]
    study = optuna.load_study(study_name=None, storage=storage)
    assert study.direction.name == "MAXIMIZE"  # macro-F1
    table = pd.read_csv(tune.path("trials.csv")).set_index("number")
    for trial in study.trials:
        curve = trial.user_attrs["metric_curve"]
        # The pruner saw minus the validation loss; the trial's value is its best macro-F1.
        assert all(value < 0 for value in trial.intermediate_values.values())
        assert len(trial.intermediate_values) == len(curve)
        assert table.loc[trial.number, "value"] == pytest.approx(max(curve))
        if trial.state.name == "COMPLETE":
            assert trial.value == pytest.approx(max(curve))
    assert tune.json("best")["value"] == pytest.approx(study.best_value)


def test_killed_study_resumes_where_it_stopped(tmp_path: Path, tiny_model: Path) -> None:
    config = tune_config(tmp_path, tiny_model, trials=3, pruner="none")
    script = tmp_path / "killed.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, signal, sys
            sys.path.insert(0, {str(ROOT)!r})
            from lmforge.config import load_config
            from lmforge.pipeline.events import EventBus
            from lmforge.pipeline.runner import run_pipeline

            def kill(event):
                # SIGKILL: no cleanup, no finally blocks, like a lost machine.
                if event.stage == "tune" and event.message.startswith("trial 1 "):
                    os.kill(os.getpid(), signal.SIGKILL)

            run_pipeline(load_config(data={config!r}), events=EventBus([kill]))
            """
        )
    )
    killed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=os.environ)
    assert killed.returncode == -9, killed.stderr[-2000:]

    messages: list[str] = []
    from lmforge.pipeline.events import EventBus

    result = run_pipeline(
        load_config(data=config), events=EventBus([lambda e: messages.append(f"{e.stage} {e.message}")])
    )
    assert any("resuming study" in m and "2 trials finished before" in m for m in messages), messages
    trials = pd.read_csv(result.artifacts["tune"].path("trials.csv"))
    assert list(trials["number"]) == [0, 1, 2]  # only one new trial ran
    assert sum(m.startswith("tune trial ") for m in messages) == 1


def test_a_trial_reports_and_is_pruned_through_the_storage_by_its_number(tmp_path: Path) -> None:
    """What a Ray worker does with a trial the coordinator asked for, without model training."""
    import optuna
    from optuna.trial import TrialState

    from lmforge.stages.tune import _fail_orphans
    from lmforge.tuning.objective import StoredTrial, make_pruner

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name="s", direction="minimize")
    pruner = make_pruner({"kind": "median", "startup_trials": 1, "prune_after": 0})

    first = study.ask()
    worker = StoredTrial(storage, "s", first.number, pruner)
    for step, value in enumerate([2.0, 1.0], start=1):
        worker.report(value, step)
    worker.set_user_attr("steps", 6)
    study.tell(first, 1.0)

    second = study.ask()
    worker = StoredTrial(storage, "s", second.number, pruner)
    worker.report(5.0, 1)
    assert worker.should_prune()  # worse than the median of the finished trials at evaluation 1
    study.tell(second, state=TrialState.PRUNED)

    study.ask()  # asked, then the process was "killed": it stays RUNNING in the file
    resumed = optuna.load_study(study_name="s", storage=storage)
    assert _fail_orphans(resumed) == 1
    trials = resumed.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]
    assert trials[0].intermediate_values == {1: 2.0, 2: 1.0} and trials[0].user_attrs == {"steps": 6}
    assert trials[1].value == 5.0  # a pruned trial keeps its last reported value


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        ({"lerning_rate": {"low": 1e-5, "high": 1}}, "tune.space.lerning_rate: not a tunable train key"),
        ({"epochs": {"low": 1, "high": 2.5}}, "tune.space.epochs: bounds must be whole numbers"),
        ({"learning_rate": {"low": 0, "high": 1, "log": True}}, "tune.space.learning_rate: a log-scale"),
        ({"weight_decay": {"low": -1, "high": 0.1}}, "tune.space.weight_decay: -1.0 is not a valid"),
        ({"batch_size": {"low": 8}}, "tune.space.batch_size: needs low and high"),
        ({"warmup_ratio": {"low": 0.2, "high": 0.1}}, "tune.space.warmup_ratio: low (0.2) must be"),
    ],
)  # fmt: skip
def test_search_space_errors_name_the_key(space: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(data={"data": {"train": "x.csv"}, "tune": {"enabled": True, "space": space}})
    assert expected in str(caught.value)


def test_a_study_needs_a_budget() -> None:
    with pytest.raises(ConfigError, match="set trials, timeout_minutes or both"):
        load_config(data={"data": {"train": "x.csv"}, "tune": {"trials": None}})


@pytest.mark.parametrize(
    ("train", "keys"),
    [
        # `epochs: auto` is the recipe's: searched only when the config fixes a number.
        ({}, {"learning_rate", "batch_size", "weight_decay", "warmup_ratio"}),
        ({"epochs": 3}, {"learning_rate", "epochs", "batch_size", "weight_decay", "warmup_ratio"}),
        ({"epochs": 3, "max_steps": 100}, {"learning_rate", "batch_size", "weight_decay", "warmup_ratio"}),
        (
            {"method": "lora", "epochs": 3},
            {"learning_rate", "epochs", "batch_size", "weight_decay", "warmup_ratio", "lora_r", "lora_alpha"}
            | {"lora_dropout"},
        ),
    ],
)
def test_default_space_per_method(train: dict[str, Any], keys: set[str]) -> None:
    from lmforge.config import TrainConfig
    from lmforge.tuning.space import default_space

    assert set(default_space(TrainConfig.model_validate(train))) == keys


def test_a_tuned_max_length_reaches_evaluate_export_and_serving(tmp_path: Path, tiny_model: Path) -> None:
    # B2: downstream stages once read train.max_length from the config, not the tuned value.
    config = tune_config(tmp_path, tiny_model, trials=2, startup_trials=2)
    config["train"]["max_length"] = 32
    config["tune"]["space"] = {"max_length": {"choices": [8, 12]}}
    result = run_pipeline(load_config(data=config))
    tuned = result.artifacts["tune"].json("best")["params"]["max_length"]
    assert tuned in (8, 12)
    assert result.artifacts["train"].json("hyperparameters")["max_length"] == tuned
    assert result.artifacts["export"].json("serving")["max_length"] == tuned
