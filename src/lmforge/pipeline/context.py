"""What a stage function receives besides its config section and inputs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from lmforge.config import Config
from lmforge.pipeline.artifacts import Artifact, ArtifactWriter
from lmforge.pipeline.budget import RunBudget
from lmforge.pipeline.events import EventBus, Progress, progress


@dataclass
class StageResult:
    """What a stage reports beside its files: row counts, metrics, and facts for the report."""

    rows: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


class UndeclaredConfigRead(RuntimeError):
    """A stage read a config value outside the sections its StageSpec declares: a bug in
    lmforge (the stage's cache key would miss a setting that changes its output)."""


# Readable by every stage. `task` picks the stage graph, so the stage that runs already
# implies it; `base_dir` and `resolve_path` only locate files (user files a stage reads are
# hashed through its spec's `files`, and the run's data through its input artifacts).
ALWAYS_READABLE = frozenset({"task", "base_dir", "resolve_path"})

# Config properties derived from one section.
_DERIVED = {"model_name": "model", "selects_model": "model", "project_name": "project"}


@cache
def _section_names(config_type: type) -> dict[str, str]:
    """Attribute name -> YAML key (`validate_` -> `validate`) of a Config class's fields."""
    fields = getattr(config_type, "model_fields", {})
    return {**_DERIVED, **{attr: f.alias or attr for attr, f in fields.items()}}


class StageConfig:
    """What `ctx.config` is while a stage runs: the run's Config, read-only in spirit and
    limited to the sections the stage declares (keyed or unkeyed).

    Reading anything else raises `UndeclaredConfigRead` naming the stage and the section,
    so a setting that changes a stage's output can never be missing from its cache key.
    Sections come back as the Config's own objects: a read costs one dict and one set lookup.
    """

    __slots__ = ("_allowed", "_config", "_stage")

    def __init__(self, config: Config, stage: str, sections: Iterable[str]) -> None:
        self._config = config
        self._stage = stage
        self._allowed = frozenset(sections)

    def _check(self, section: str, via: str) -> None:
        if section not in self._allowed and section not in ALWAYS_READABLE:
            raise UndeclaredConfigRead(
                f"stage {self._stage!r} read config section {section!r}"
                + (f" (via {via!r})" if via != section else "")
                + f" but its StageSpec declares only {sorted(self._allowed)}; declare the section "
                "in pipeline/graph.py (so it is in the cache key) or read it from an input artifact"
            )

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # copy/pickle probes: behave like a plain object
            raise AttributeError(name)
        section = _section_names(type(self._config)).get(name)
        if section is None and name not in ALWAYS_READABLE:
            raise UndeclaredConfigRead(
                f"stage {self._stage!r} read {name!r}, which is not one config "
                "section: a stage may read only the sections its StageSpec declares"
            )
        self._check(section or name, name)
        return getattr(self._config, name)

    def section(self, name: str) -> Any:
        self._check(name, name)
        return self._config.section(name)

    def section_model(self, name: str) -> Any:
        self._check(name, name)
        return self._config.section_model(name)


@dataclass
class StageContext:
    """Per-stage handles: where to write, scratch space that survives a crash, events."""

    run_id: str
    stage: str
    config: Config  # at run time a StageConfig: only the stage's declared sections
    out: ArtifactWriter
    work_dir: Path  # keyed by the cache key: a rerun of the same stage finds checkpoints here
    run_dir: Path
    events: EventBus
    budget: RunBudget | None = None  # the run's time budget, when it has one (pipeline/budget.py)

    def log(self, message: str, **data: Any) -> None:
        self.events.emit("log", self.stage, message, **data)

    def warn(self, message: str, **data: Any) -> None:
        self.events.emit("warning", self.stage, message, **data)

    def progress(self, description: str, total: float | None) -> AbstractContextManager[Progress]:
        return progress(self.events, self.stage, description, total)


Inputs = dict[str, Artifact]


def iter_batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive slices of `items` of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
