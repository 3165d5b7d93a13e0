"""Artifact store: stages read and write files only through these classes.

A stage writes into a temporary folder (`ArtifactWriter`); the runner renames it into
`runs/<run-id>/<stage>/` once the manifest is written, so a killed run never leaves a
folder that looks finished. `Artifact` is the read side, typed by file kind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas costs 0.6 s to import; a fully cached rerun never needs it
    import pandas as pd

MANIFEST = "manifest.json"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, streamed."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def folder_files(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (manifest excluded), keyed by relative posix path."""
    hashes = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            hashes[path.relative_to(folder).as_posix()] = file_sha256(path)
    return hashes


def combined_hash(files: dict[str, str]) -> str:
    """One hash for a set of files: changes when any name or content changes."""
    digest = hashlib.sha256()
    for name, sha in sorted(files.items()):
        digest.update(f"{name}\0{sha}\n".encode())
    return digest.hexdigest()


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temp name, then rename: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


class ArtifactWriter:
    """The folder a running stage writes its outputs into."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        """A file or folder the stage fills itself (a model folder, a plot)."""
        return self.folder / name

    def write_table(self, name: str, frame: pd.DataFrame) -> Path:
        path = self.folder / f"{name}.parquet"
        frame.to_parquet(path, index=False)
        return path

    def write_csv(self, name: str, frame: pd.DataFrame) -> Path:
        path = self.folder / f"{name}.csv"
        frame.to_csv(path, index=False)
        return path

    def write_json(self, name: str, obj: Any) -> Path:
        path = self.folder / f"{name}.json"
        path.write_text(json.dumps(obj, indent=2, default=str), encoding="utf-8")
        return path

    def write_text(self, name: str, text: str) -> Path:
        path = self.folder / name
        path.write_text(text, encoding="utf-8")
        return path


class Artifact:
    """A finished stage's output folder and its manifest."""

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        self.folder = folder
        self.manifest = manifest

    @classmethod
    def load(cls, folder: Path) -> Artifact:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        return cls(folder, manifest)

    @property
    def stage(self) -> str:
        return str(self.manifest["stage"])

    @property
    def content_hash(self) -> str:
        return str(self.manifest["content_hash"])

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.manifest.get("metrics", {}))

    @property
    def summary(self) -> dict[str, Any]:
        return dict(self.manifest.get("summary", {}))

    def has(self, name: str) -> bool:
        return (self.folder / name).exists()

    def path(self, name: str) -> Path:
        path = self.folder / name
        if not path.exists():
            raise FileNotFoundError(f"artifact {self.stage} has no '{name}' ({self.folder})")
        return path

    def table(self, name: str) -> pd.DataFrame:
        import pandas as pd

        return pd.read_parquet(self.path(f"{name}.parquet"))

    def json(self, name: str) -> Any:
        return json.loads(self.path(f"{name}.json").read_text(encoding="utf-8"))


def link_copy(src: Path, dst: Path) -> None:
    """Copy a finished artifact folder by hard links (instant, no extra disk), else by copy."""

    def _link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=_link)
