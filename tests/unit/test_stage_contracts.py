"""Stage contracts: while a stage runs it reads only the config sections its spec declares."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lmforge.config import Config, load_config
from lmforge.pipeline import runner
from lmforge.pipeline.context import StageConfig, StageResult, UndeclaredConfigRead
from lmforge.pipeline.graph import StageSpec, stages_for


@dataclass(frozen=True)
class _FakeSpec(StageSpec):
    body: Callable[..., Any] | None = None

    def function(self) -> Callable[..., Any]:
        assert self.body is not None
        return self.body


def _config(tmp_path: Path, **extra: Any) -> Config:
    return load_config(data={"data": {"train": "data.csv"}, "output_dir": str(tmp_path / "runs"), **extra})


def test_a_stage_reading_an_undeclared_section_fails_naming_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def peek(ctx: Any, cfg: Any, inputs: Any) -> StageResult:
        assert cfg.enabled  # its own section comes as the argument
        _ = ctx.config.clean.min_chars  # declared: fine
        _ = ctx.config.train.epochs  # not declared: the key would miss it
        return StageResult()

    spec = _FakeSpec("peek", (), ("clean",), body=peek)
    monkeypatch.setattr(runner, "stages_for", lambda config: (spec,))
    with pytest.raises(UndeclaredConfigRead, match=r"stage 'peek' read config section 'train'"):
        runner.run_pipeline(_config(tmp_path))


def test_declared_unkeyed_and_always_readable_values_are_allowed(tmp_path: Path) -> None:
    config = _config(tmp_path)
    view = StageConfig(config, "demo", ("clean", "model", "register"))
    assert view.clean is config.clean
    assert view.register_ is config.register_  # attribute name vs YAML key `register`
    assert view.model_name == config.model_name
    assert view.task == "classification"
    assert view.resolve_path("x.csv") == config.base_dir / "x.csv"
    assert view.section("clean") == config.section("clean")
    assert view.section_model("model") == config.model


@pytest.mark.parametrize(
    ("read", "named"),
    [
        (lambda c: c.train, "'train'"),
        (lambda c: c.validate_, "'validate'"),
        (lambda c: c.project_name, "'project' (via 'project_name')"),
        (lambda c: c.section("label"), "'label'"),
        (lambda c: c.section_model("serve"), "'serve'"),
        (lambda c: c.output_dir, "'output_dir'"),
        (lambda c: c.model_dump(), "'model_dump'"),  # the whole config: never a stage's key
        (lambda c: c.to_yaml(), "'to_yaml'"),
    ],
)
def test_undeclared_reads_raise(tmp_path: Path, read: Callable[[Any], Any], named: str) -> None:
    view = StageConfig(_config(tmp_path), "demo", ("clean",))
    with pytest.raises(UndeclaredConfigRead, match=r"stage 'demo' read .*" + re.escape(named)):
        read(view)


def test_getattr_with_a_default_cannot_hide_an_undeclared_read(tmp_path: Path) -> None:
    # An AttributeError would let `getattr(config, name, default)` silently bypass the contract.
    view = StageConfig(_config(tmp_path), "demo", ())
    with pytest.raises(UndeclaredConfigRead):
        getattr(view, "train", None)


@pytest.mark.parametrize("task", ["classification", "generation", "language-modeling"])
def test_every_spec_declares_known_sections(tmp_path: Path, task: str) -> None:
    extra: dict[str, Any] = {"task": task, "tune": {"enabled": True}}
    if task == "classification":
        extra.update(model=["minilm-l6", "other"], evaluate={"cv_folds": 3})
    config = _config(tmp_path, **extra)
    keys = set(config.model_dump(by_alias=True))
    for spec in stages_for(config):
        assert set(spec.sections) | set(spec.unkeyed) <= keys, spec.name
        assert not set(spec.sections) & set(spec.unkeyed), spec.name
