"""The task registry: every task declares what the config, the stage graph and the front
ends ask of it, and `stages_for` reads the task instead of branching on its name."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from lmforge.config import Config, GateConfig, TrainConfig, load_config
from lmforge.models.zoo import ZOO
from lmforge.pipeline.graph import stages_for
from lmforge.tasks.registry import TASKS, get_task, register_task, task_names

TASK_NAMES = ("classification", "generation", "language-modeling")


def _config(task: str, **sections: Any) -> Config:
    return load_config(data={"task": task, "data": {"train": "x.csv"}, **sections})


def test_registry_holds_the_three_tasks_by_name() -> None:
    assert task_names() == TASK_NAMES
    for name in TASK_NAMES:
        assert get_task(name) is TASKS[name]
        assert get_task(name).name == name


def test_unknown_task_names_the_registered_ones() -> None:
    with pytest.raises(KeyError, match="registered tasks: classification, generation, language-modeling"):
        get_task("token-classification")


def test_a_task_cannot_be_registered_twice() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register_task(get_task("generation"))
    assert task_names() == TASK_NAMES


def _key_exists(path: str) -> bool:
    section, _, key = path.partition(".")
    model = Config.model_fields.get(section) or next(
        (f for f in Config.model_fields.values() if f.alias == section), None
    )
    if model is None:
        return False
    fields = model.annotation.model_fields  # type: ignore[union-attr]
    return not key or key in fields or any(f.alias == key for f in fields.values())


@pytest.mark.parametrize("name", TASK_NAMES)
def test_every_task_declares_what_it_must(name: str) -> None:
    task = get_task(name)
    assert task.description and task.metrics
    assert name in ZOO[task.default_model].tasks
    gate_metrics = get_args(GateConfig.model_fields["metric"].annotation)
    assert task.gate_metric in task.gate_metrics and set(task.gate_metrics) <= set(gate_metrics)
    bounded = get_args(get_args(GateConfig.model_fields["min"].annotation)[0])
    assert set(task.gate_metrics) <= set(task.threshold_metrics)
    assert set(task.threshold_metrics) <= {m for arg in bounded for m in (get_args(arg) or (arg,))}
    best_metrics = get_args(TrainConfig.model_fields["metric_for_best_model"].annotation)
    assert task.best_model_metrics and set(task.best_model_metrics) <= set(best_metrics)
    assert task.feedback_kind in (None, "label", "correction")
    for path in (*task.defaults, *task.unused_keys):
        assert _key_exists(path), f"{name} declares {path}, which is not a config key"
    assert not set(task.defaults) & set(task.unused_keys)
    assert task.search_space(TrainConfig())["learning_rate"].log


@pytest.mark.parametrize("name", TASK_NAMES)
def test_defaults_come_from_the_task(name: str) -> None:
    task = get_task(name)
    config = _config(name)
    assert config.task_def is task
    assert config.model == task.default_model and config.gate.metric == task.gate_metric
    for path, value in task.defaults.items():
        section, key = path.split(".")
        assert getattr(config.section_model(section), key) == value


@pytest.mark.parametrize("name", TASK_NAMES)
def test_stages_for_asks_the_task(name: str) -> None:
    config = _config(name, tune={"enabled": True})
    stages = stages_for(config)
    assert stages == get_task(name).stages(config)
    seen: set[str] = set()
    for spec in stages:  # a valid execution order: every input ran before
        assert set(spec.inputs) <= seen, spec.name
        seen.add(spec.name)
    assert {"ingest", "validate", "clean", "split", "baseline", "tune", "train", "evaluate"} <= seen
    assert {"gate", "report", "register"} <= seen
    assert next(s for s in stages if s.name == "gate").cacheable is False


def test_classification_stages() -> None:
    plain = [s.name for s in stages_for(_config("classification"))]
    assert plain == [
        "ingest", "validate", "clean", "label", "split", "augment", "baseline",
        "train", "evaluate", "export", "gate", "report", "register",
    ]  # fmt: skip
    every = [
        s.name
        for s in stages_for(
            _config("classification", model="auto", tune={"enabled": True}, evaluate={"cv_folds": 3})
        )
    ]
    assert every[6:11] == ["baseline", "select", "tune", "train", "evaluate"]
    assert "crossval" in every
    assert all(s.module is None for s in stages_for(_config("classification")))


@pytest.mark.parametrize("name", ["generation", "language-modeling"])
@pytest.mark.parametrize("gguf", [True, False])
def test_causal_stages(name: str, gguf: bool) -> None:
    stages = stages_for(_config(name, export={"gguf": gguf}))
    names = [s.name for s in stages]
    assert names == [
        "ingest", "validate", "clean", "split", "baseline", "train", "evaluate",
        *(["export"] if gguf else []), "gate", "report", "register",
    ]  # fmt: skip
    assert not {"label", "augment", "select", "crossval"} & set(names)
    modules = {s.name: s.module for s in stages}
    assert modules["train"] == "generation.train" and modules["gate"] is None


def test_task_modules_are_light() -> None:
    # A cached rerun loads the config, hence the registry: it must not import torch.
    import subprocess
    import sys

    code = "import sys, lmforge.config, lmforge.pipeline.graph; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
