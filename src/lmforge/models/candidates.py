"""Candidate base models for the `select` stage."""

from __future__ import annotations

from lmforge.config import Config
from lmforge.models.zoo import ZOO


def candidates(config: Config) -> list[str]:
    """`model` as a list; `auto` means every zoo model that supports the task."""
    if isinstance(config.model, list):
        return list(config.model)
    if config.model == "auto":
        return [name for name, entry in ZOO.items() if config.task in entry.tasks]
    return [config.model]
