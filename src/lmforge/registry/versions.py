"""Finding registered versions: parse a reference, list, resolve and download.

Read-only on purpose: what a server, `lmforge models show` or the UI needs to find a version
never moves an alias. Moving aliases is `registry.lifecycle`; copying versions between stores
is `registry.archive`. Every function takes an `MlflowClient` or a tracking URI string, so the
CLI, the server and tests share one code path.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.registry.client import RegistryError, connect
from lmforge.registry.names import (
    ARCHIVED,
    ARCHIVED_TAG,
    CHAMPION,
    GATE_TAG,
    METRIC_TAG_PREFIX,
)

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

REF_FORMS = "NAME, NAME@ALIAS, NAME@VERSION or NAME/VERSION (e.g. spam, spam@challenger, spam@3)"
_ALIAS = re.compile(r"^[\w\-]+$")  # what MLflow accepts as an alias
_VERSION = re.compile(r"^[vV]?(\d+)$")  # MLflow reserves `v3` alias names for versions


@dataclass(frozen=True)
class ModelRef:
    """A parsed reference: exactly one of `alias` and `version` is set."""

    name: str
    alias: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        return f"{self.name}@{self.alias or self.version}"


@dataclass(frozen=True)
class VersionInfo:
    """One model version as lmforge shows it; `archived` covers the tag and MLflow's old stage."""

    name: str
    version: str
    aliases: tuple[str, ...]
    archived: bool
    status: str  # MLflow's READY / PENDING_REGISTRATION / FAILED_REGISTRATION
    stage: str  # MLflow's deprecated stage ("None" unless set elsewhere)
    metrics: dict[str, float]  # from the `test_*` version tags, prefix removed
    tags: dict[str, str]
    created: datetime
    run_id: str | None
    source: str
    gate: str | None  # the gate's reasons (or "passed"), from the `lmforge.gate` tag
    description: str

    @property
    def ref(self) -> str:
        """The canonical reference, `NAME@VERSION`."""
        return f"{self.name}@{self.version}"

    @property
    def state(self) -> str:
        """active | archived | MLflow's registration status when it is not READY."""
        if self.archived:
            return "archived"
        return "active" if self.status == "READY" else self.status.lower()


def parse_ref(ref: str) -> ModelRef:
    """`NAME` (its champion), `NAME@ALIAS`, `NAME@3`, `NAME@v3` or `NAME/3`.

    MLflow forbids `/` and `:` in model names and reserves all-digit-like `vN` aliases, so the
    forms cannot be confused with one another.
    """
    text = ref.strip()
    name, sep, tail = text.partition("@")
    if not sep:
        name, sep, tail = text.rpartition("/")
        if not sep:
            name, tail = text, CHAMPION
    if name and ":" not in name and "/" not in name and "@" not in tail:
        version = _VERSION.match(tail)
        if version and (sep != "/" or tail.isdigit()):
            return ModelRef(name, version=str(int(version.group(1))))
        if sep != "/" and _ALIAS.match(tail):
            return ModelRef(name, alias=tail)
    raise RegistryError(f"bad model reference '{ref}'", hint=f"use {REF_FORMS}")


def list_models(client: MlflowClient | str) -> list[dict[str, Any]]:
    """Every registered model: name, latest version, aliases, champion version, description."""
    c = connect(client)
    rows = []
    for model in _pages(c.search_registered_models):
        latest = max((int(v.version) for v in model.latest_versions or []), default=None)
        aliases = {alias: str(version) for alias, version in model.aliases.items()}
        rows.append(
            {
                "name": model.name,
                "latest": None if latest is None else str(latest),
                "aliases": aliases,
                "champion": aliases.get(CHAMPION),
                "description": model.description or "",
            }
        )
    return sorted(rows, key=lambda row: row["name"])


def list_versions(client: MlflowClient | str, name: str) -> list[VersionInfo]:
    """Every version of `name`, newest first, archived ones included (they say so)."""
    c = connect(client)
    model = registered_model(c, name)
    quoted = f'"{name}"' if "'" in name else f"'{name}'"
    versions = _pages(c.search_model_versions, filter_string=f"name = {quoted}")
    # Search results carry no aliases; the registered model has them all.
    infos = [_info(v, model.aliases, model.description) for v in versions]
    return sorted(infos, key=lambda info: -int(info.version))


def resolve(client: MlflowClient | str, ref: str | ModelRef) -> VersionInfo:
    """The version `ref` names; an unknown name, alias or version says what does exist."""
    from mlflow.exceptions import MlflowException

    c = connect(client)
    parsed = parse_ref(ref) if isinstance(ref, str) else ref
    model = registered_model(c, parsed.name)
    aliases = {alias: str(version) for alias, version in model.aliases.items()}
    if parsed.alias is not None:
        if parsed.alias not in aliases:
            known = ", ".join(f"{a} (version {v})" for a, v in sorted(aliases.items()))
            fix = f"promote a version with `lmforge models promote {parsed.name}@VERSION`"
            raise RegistryError(
                f"{parsed.name} has no alias '{parsed.alias}'",
                hint=f"aliases: {known}" if known else f"no version has an alias yet; {fix}",
            )
        version = aliases[parsed.alias]
    else:
        version = str(parsed.version)
    try:
        found = c.get_model_version(parsed.name, version)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        numbers = ", ".join(info.version for info in reversed(list_versions(c, parsed.name)))
        raise RegistryError(
            f"{parsed.name} has no version {version}", hint=f"versions: {numbers or 'none'}"
        ) from None
    return _info(found, model.aliases, model.description)


def download(client: MlflowClient | str, ref: str | ModelRef, dest: Path) -> Path:
    """Fetch a version into `dest` (created if missing): what a server needs to load it.

    Layout: `dest/model/` (the transformers folder), `dest/export/` when the run logged
    exports (ONNX, serving.json, model card), and `dest/version.json` (name, version, tags,
    aliases, run id), so the folder explains itself without the registry.
    """
    c = connect(client)
    info = resolve(c, ref)
    dest.mkdir(parents=True, exist_ok=True)
    _download_model(c, info, dest)
    if info.run_id and c.list_artifacts(info.run_id, "export"):
        c.download_artifacts(info.run_id, "export", str(dest))
    (dest / "version.json").write_text(json.dumps(version_record(info), indent=2) + "\n")
    return dest


def version_record(info: VersionInfo) -> dict[str, Any]:
    """What `version.json` and an export's manifest say about a version."""
    return {
        "name": info.name,
        "version": info.version,
        "aliases": list(info.aliases),
        "tags": info.tags,
        "run_id": info.run_id,
        "description": info.description,
        "created": info.created.isoformat(),
    }


def _info(mv: ModelVersion, aliases: dict[str, Any], description: str | None) -> VersionInfo:
    tags = dict(mv.tags or {})
    metrics = {}
    for key, value in tags.items():
        if key.startswith(METRIC_TAG_PREFIX):
            try:
                metrics[key.removeprefix(METRIC_TAG_PREFIX)] = float(value)
            except ValueError:
                continue
    stage = str(mv.current_stage or "None")
    return VersionInfo(
        name=str(mv.name),
        version=str(mv.version),
        aliases=tuple(sorted(a for a, v in aliases.items() if str(v) == str(mv.version))),
        archived=tags.get(ARCHIVED_TAG) == ARCHIVED or stage.lower() == "archived",
        status=str(mv.status or "READY"),
        stage=stage,
        metrics=metrics,
        tags=tags,
        created=datetime.fromtimestamp((mv.creation_timestamp or 0) / 1000, tz=timezone.utc),
        run_id=mv.run_id or None,
        source=str(mv.source or ""),
        gate=tags.get(GATE_TAG),
        description=description or "",
    )


def registered_model(c: MlflowClient, name: str) -> Any:
    """MLflow's registered model `name`; an unknown name says which names do exist."""
    from mlflow.exceptions import MlflowException

    try:
        return c.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
    names = [row["name"] for row in list_models(c)]
    shown = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
    raise RegistryError(
        f"no registered model '{name}' in {c.tracking_uri}",
        hint=f"registered: {shown}" if names else "nothing is registered there yet",
    )


def _download_model(c: MlflowClient, info: VersionInfo, dest: Path) -> None:
    """Download the version's source into `dest/model` through the run when possible.

    Through the run the client's own tracking URI is used, which also works for a server's
    proxied `mlflow-artifacts:` store; other sources go through `mlflow.artifacts`.
    """
    relative = None
    if info.source.startswith("runs:/"):
        relative = info.source.removeprefix("runs:/").partition("/")[2]
    elif info.run_id:
        base = c.get_run(info.run_id).info.artifact_uri.rstrip("/")
        if info.source.startswith(base + "/"):
            relative = info.source[len(base) + 1 :]
    if relative and info.run_id:
        got = Path(c.download_artifacts(info.run_id, relative, str(dest)))
    else:
        import mlflow.artifacts

        got = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=info.source, dst_path=str(dest), tracking_uri=c.tracking_uri
            )
        )
    if got.resolve() != (dest / "model").resolve():
        shutil.move(str(got), str(dest / "model"))


def _pages(search: Callable[..., Any], **kwargs: Any) -> Iterator[Any]:
    token = None
    while True:
        page = search(page_token=token, **kwargs)
        yield from page
        token = page.token
        if not token:
            return
