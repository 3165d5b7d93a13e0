"""What a stage function receives besides its config section and inputs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.config import Config
from lmforge.pipeline.artifacts import Artifact, ArtifactWriter
from lmforge.pipeline.events import EventBus, Progress, progress


@dataclass
class StageResult:
    """What a stage reports beside its files: row counts, metrics, and facts for the report."""

    rows: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageContext:
    """Per-stage handles: where to write, scratch space that survives a crash, events."""

    run_id: str
    stage: str
    config: Config
    out: ArtifactWriter
    work_dir: Path  # keyed by the cache key: a rerun of the same stage finds checkpoints here
    run_dir: Path
    events: EventBus

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
