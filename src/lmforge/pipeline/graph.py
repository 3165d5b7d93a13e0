"""The stage graph: the task's stage list (lmforge.tasks) for a config, and what depends on what.

Stage modules are imported when a stage runs, not here, so that a fully cached rerun
never pays for importing torch or transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmforge.pipeline.spec import StageSpec

if TYPE_CHECKING:
    from lmforge.config import Config

__all__ = ["StageSpec", "dependents", "stages_for"]


def stages_for(config: Config) -> tuple[StageSpec, ...]:
    """The stage graph for the config, in a valid execution order: its task's `stages`."""
    return config.task_def.stages(config)


def dependents(stages: tuple[StageSpec, ...], names: set[str]) -> set[str]:
    """`names` and every stage that depends on them, transitively."""
    closed = set(names)
    for spec in stages:  # stages are in topological order, one pass suffices
        if closed.intersection(spec.inputs):
            closed.add(spec.name)
    return closed
