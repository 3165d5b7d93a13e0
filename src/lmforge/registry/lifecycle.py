"""Moving a model's aliases: promote, challenge, roll back and archive versions.

Every alias change lmforge makes goes through here, whoever asks: a person (`lmforge models`,
the UI) or the pipeline (the `register` stage after the gate, hence `lmforge retrain`). That
is what keeps the champion history whole: a champion set anywhere else would leave
`rollback` nothing to go back to. Promotion state lives in MLflow itself (aliases, version
tags, a registered-model tag for the history), never in a side file, so the MLflow UI and a
team's tracking server always show the truth.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from lmforge.registry.client import RegistryError, connect
from lmforge.registry.names import ARCHIVED, ARCHIVED_TAG, CHALLENGER, CHAMPION, HISTORY_TAG
from lmforge.registry.versions import ModelRef, VersionInfo, parse_ref, registered_model, resolve

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

Audit = Callable[[str, str], None]
"""`audit(action, target)`, e.g. `("promote", "spam@3")`: lets the caller keep an audit trail."""

HISTORY_LIMIT = 50  # a registered-model tag value holds at most 5000 characters


def promote(client: MlflowClient | str, ref: str | ModelRef, *, audit: Audit | None = None) -> VersionInfo:
    """Make a version the champion, remembering the one it replaces so `rollback` can undo it.

    The history is pushed before the alias moves: if the second step fails, the extra entry is
    the current champion, which `rollback` skips.
    """
    c = connect(client)
    info = _active(c, ref, "promoted")
    aliases = _aliases(c, info.name)
    current = aliases.get(CHAMPION)
    if current == info.version:
        return info
    if current is not None:
        _save_history(c, info.name, [*_history(c, info.name), current])
    c.set_registered_model_alias(info.name, CHAMPION, info.version)
    if aliases.get(CHALLENGER) == info.version:  # it won: no longer a challenger
        c.delete_registered_model_alias(info.name, CHALLENGER)
    _emit(audit, "promote", info.ref)
    return resolve(c, info.ref)


def _active(c: MlflowClient, ref: str | ModelRef, becoming: str) -> VersionInfo:
    """The version `ref` names, refused when archived: whoever archived it decided so."""
    info = resolve(c, ref)
    if info.archived:
        raise RegistryError(
            f"{info.ref} is archived and cannot be {becoming}",
            hint=f"pick an active version from `lmforge models show {info.name}`",
        )
    return info


def set_challenger(
    client: MlflowClient | str, ref: str | ModelRef, *, audit: Audit | None = None
) -> VersionInfo:
    """Give a version the `challenger` alias: registered, not serving, one command from promotion.

    An archived version is refused like in `promote`: whoever archived it decided it should not
    come back, and a rerun of the pipeline that trains the same model does not overrule them.
    """
    c = connect(client)
    info = _active(c, ref, "a challenger")
    if CHALLENGER in info.aliases:
        return info
    c.set_registered_model_alias(info.name, CHALLENGER, info.version)
    _emit(audit, "challenge", info.ref)
    return resolve(c, info.ref)


def rollback(client: MlflowClient | str, name: str, *, audit: Audit | None = None) -> VersionInfo:
    """Give `champion` back to the previous champion; archived or deleted ones are skipped.

    The version rolled back from is not pushed onto the history, so two rollbacks go two
    champions back instead of flip-flopping between the last two.
    """
    c = connect(client)
    name = parse_ref(name).name  # `spam@champion` means the model spam
    aliases = _aliases(c, name)
    history = _history(c, name)
    skipped = []
    while history:
        candidate = history.pop()
        if candidate == aliases.get(CHAMPION):
            continue
        try:
            info = resolve(c, ModelRef(name, version=candidate))
        except RegistryError:
            info = None
        if info is None or info.archived:
            skipped.append(candidate)
            continue
        c.set_registered_model_alias(name, CHAMPION, candidate)
        if aliases.get(CHALLENGER) == candidate:
            c.delete_registered_model_alias(name, CHALLENGER)
        _save_history(c, name, history)
        _emit(audit, "rollback", info.ref)
        return resolve(c, info.ref)
    why = f" (versions {', '.join(skipped)} were archived or deleted)" if skipped else ""
    raise RegistryError(
        f"{name} has no previous champion to roll back to{why}",
        hint=f"promote a version instead: `lmforge models promote {name}@VERSION`",
    )


def archive(client: MlflowClient | str, ref: str | ModelRef, *, audit: Audit | None = None) -> VersionInfo:
    """Retire a version: tag it `lmforge.archived=true` and take its aliases away.

    A tag rather than MLflow's stage: stages are deprecated since MLflow 2.9 (the call still
    works in 3.x but warns) and unsupported by Unity Catalog. The champion is refused, so a
    server following `NAME@champion` never loses its model.
    """
    c = connect(client)
    info = resolve(c, ref)
    if CHAMPION in info.aliases:
        raise RegistryError(
            f"{info.ref} is the champion of {info.name} and cannot be archived",
            hint=f"promote another version first (`lmforge models promote {info.name}@VERSION`)",
        )
    if info.archived and not info.aliases:
        return info
    c.set_model_version_tag(info.name, info.version, ARCHIVED_TAG, ARCHIVED)
    for alias in info.aliases:
        c.delete_registered_model_alias(info.name, alias)
    _emit(audit, "archive", info.ref)
    return resolve(c, info.ref)


def _aliases(c: MlflowClient, name: str) -> dict[str, str]:
    return {alias: str(version) for alias, version in registered_model(c, name).aliases.items()}


def _history(c: MlflowClient, name: str) -> list[str]:
    raw = (registered_model(c, name).tags or {}).get(HISTORY_TAG)
    try:
        return [str(v) for v in json.loads(raw)] if raw else []
    except (ValueError, TypeError):  # hand-edited tag: start a fresh history
        return []


def _save_history(c: MlflowClient, name: str, history: list[str]) -> None:
    c.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[-HISTORY_LIMIT:]))


def _emit(audit: Audit | None, action: str, target: str) -> None:
    if audit is not None:
        audit(action, target)
