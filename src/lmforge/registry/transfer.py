"""Move a registered model version between MLflow stores as one checksummed `.tar.gz`.

Teams often train against a laptop's sqlite store and serve from a shared tracking server
(or an air-gapped one): `export_version` packs what `registry.versions.download` fetches plus
a manifest and `SHA256SUMS`; `import_version` checks every file before it registers anything,
so a truncated copy or an edited weight file never becomes a model version.

The checksums catch corruption and casual edits, not a forger who rewrites `SHA256SUMS` too:
carry the archive's own hash out of band when that matters. Nothing in it is unpickled
(safetensors, JSON, ONNX, and a linear model's skops file, which is loaded only with lmforge's
list of trusted types) and members that would land outside the folder are refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tarfile
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.owner import owned_tempdir, partial_path, sweep_partials
from lmforge.registry.client import RegistryError, artifact_location, connect
from lmforge.registry.lifecycle import Audit
from lmforge.registry.names import ARCHIVED_TAG, HASH_TAG, IMPORTED_TAG, IMPORTED_VERSION_TAG
from lmforge.registry.orphans import end_orphans, end_run, owner_tags
from lmforge.registry.versions import ModelRef, VersionInfo, download, resolve, version_record

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

MANIFEST, SUMS = "MANIFEST.json", "SHA256SUMS"
# Temp folder prefixes; the owner in the name lets the next export remove a killed one's folder.
EXPORT_TMP, IMPORT_TMP = "lmforge-export-", "lmforge-import-"
FORMAT = 1


def export_version(
    client: MlflowClient | str, ref: str | ModelRef, out: Path, *, audit: Audit | None = None
) -> Path:
    """Write version `ref` to the tarball `out`, atomically (temp name in the same folder, renamed).

    The tarball holds one folder `NAME-vN/` with `model/`, `export/` (if the run has one),
    `version.json`, `MANIFEST.json` and `SHA256SUMS` (`sha256sum -c` format).
    """
    from lmforge import __version__

    c = connect(client)
    info = resolve(c, ref)
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_partials(out.parent)  # of exports here that were killed; a live one's is kept
    partial = partial_path(out)
    try:
        with owned_tempdir(EXPORT_TMP) as work:
            root = work / f"{info.name}-v{info.version}"
            download(c, info.ref, root)
            manifest = {
                "format": FORMAT,
                **version_record(info),
                "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "lmforge_version": __version__,
            }
            (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            sums = [f"{_sha256(path)}  {rel}" for rel, path in _files(root) if rel != SUMS]
            (root / SUMS).write_text("\n".join(sums) + "\n")
            with tarfile.open(partial, "w:gz") as tar:
                tar.add(root, arcname=root.name, filter=_anonymous)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    if audit is not None:
        audit("export", info.ref)
    return out


def import_version(
    client: MlflowClient | str, tarball: Path, name: str | None = None, *, audit: Audit | None = None
) -> VersionInfo:
    """Register the version packed in `tarball` as a new version of `name` (default: its own).

    Every checksum is verified before anything is written to the store. The version keeps
    its original tags plus where it came from (`IMPORTED_TAG`), but gets no alias: whether it should
    serve here is a decision for `lmforge models promote`, not a side effect of copying it.
    """
    c = connect(client)
    if not tarball.is_file():
        raise RegistryError(f"{tarball}: no such file")
    with owned_tempdir(IMPORT_TMP) as work:
        root = _unpack(tarball, work)
        _verify(root, tarball.name)
        manifest = json.loads((root / MANIFEST).read_text())
        info = _register(c, root, manifest, name or str(manifest["name"]), tarball.name)
    if audit is not None:
        audit("import", info.ref)
    return info


def _unpack(tarball: Path, work: Path) -> Path:
    """Extract with the `data` filter (no absolute paths, `..`, links out, devices); find the root."""
    try:
        with tarfile.open(tarball, "r:*") as tar:
            tar.extractall(work, filter="data")
    except tarfile.FilterError as exc:
        member = exc.tarinfo.name if exc.tarinfo else "?"
        raise RegistryError(
            f"{tarball.name}: refused member '{member}' ({exc})",
            hint="it would be written outside the import folder; this archive was not made by "
            "`lmforge models export`",
        ) from None
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise RegistryError(f"{tarball.name} is not a readable .tar.gz ({exc})") from None
    if (work / MANIFEST).is_file():
        return work
    entries = list(work.iterdir())
    if len(entries) == 1 and (entries[0] / MANIFEST).is_file():
        return entries[0]
    raise RegistryError(
        f"{tarball.name} has no {MANIFEST}", hint="make archives with `lmforge models export`"
    )


def _verify(root: Path, label: str) -> None:
    """Every file listed with the right hash, nothing unlisted, nothing missing."""
    if not (root / SUMS).is_file():
        raise RegistryError(f"{label} has no {SUMS}: its files cannot be checked")
    expected: dict[str, str] = {}
    for number, line in enumerate((root / SUMS).read_text().splitlines(), start=1):
        digest, sep, rel = line.partition("  ")
        if not line.strip():
            continue
        if not sep or len(digest) != 64:
            raise RegistryError(f"{label}: {SUMS} line {number} is not `HASH  PATH`")
        expected[rel] = digest
    present = {rel: path for rel, path in _files(root) if rel != SUMS}
    for rel, digest in sorted(expected.items()):
        if rel not in present:  # also catches `../x`: only files inside root are present
            raise RegistryError(f"{label}: {rel} is listed in {SUMS} but missing from the archive")
        if _sha256(present[rel]) != digest:
            raise RegistryError(
                f"{label}: checksum mismatch for {rel}",
                hint="the file changed after export (corrupt or edited copy); export it again",
            )
    unlisted = sorted(set(present) - set(expected))
    if unlisted:
        raise RegistryError(f"{label}: {unlisted[0]} is not listed in {SUMS}")
    if MANIFEST not in present or not any(rel.startswith("model/") for rel in present):
        missing = MANIFEST if MANIFEST not in present else "model/"
        raise RegistryError(f"{label}: {missing} is missing from the archive")


def _register(c: MlflowClient, root: Path, manifest: dict[str, Any], name: str, file: str) -> VersionInfo:
    from mlflow.exceptions import MlflowException

    tags = {str(k): str(v) for k, v in manifest.get("tags", {}).items() if k != ARCHIVED_TAG}
    origin = f"{manifest.get('name')}@{manifest.get('version')}"
    run_tags = {IMPORTED_TAG: file, IMPORTED_VERSION_TAG: origin}
    if HASH_TAG in tags:  # lets `register` recognise the same model later
        run_tags[HASH_TAG] = tags[HASH_TAG]
    experiment = _experiment(c, name)
    end_orphans(c, experiment)  # imports into this experiment that were killed
    run = c.create_run(experiment, run_name=f"import {origin}", tags={**run_tags, **owner_tags()})
    run_id = run.info.run_id
    try:
        c.log_artifacts(run_id, str(root / "model"), "model")
        if (root / "export").is_dir():
            c.log_artifacts(run_id, str(root / "export"), "export")
        c.log_artifact(run_id, str(root / MANIFEST))
        try:
            c.create_registered_model(name, description=str(manifest.get("description") or ""))
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        version = c.create_model_version(
            name,
            source=f"{run.info.artifact_uri}/model",
            run_id=run_id,
            tags={**tags, IMPORTED_TAG: file, IMPORTED_VERSION_TAG: origin},
        )
    except BaseException as exc:
        with contextlib.suppress(Exception):  # the store may be what failed: the next import ends it
            end_run(c, c.get_run(run_id), f"import failed: {str(exc)[:200] or type(exc).__name__}")
        raise
    c.set_terminated(run_id)
    return resolve(c, ModelRef(name, version=str(version.version)))


def _experiment(c: MlflowClient, name: str) -> str:
    """Experiment `name`, created with artifacts beside a sqlite database like `lmforge run` does."""
    found = c.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            raise RegistryError(
                f"experiment '{name}' is deleted in {c.tracking_uri}",
                hint="restore it (`mlflow experiments restore`) or import with --name",
            )
        return str(found.experiment_id)
    return str(c.create_experiment(name, artifact_location=artifact_location(str(c.tracking_uri))))


def _files(root: Path) -> list[tuple[str, Path]]:
    return sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*") if p.is_file())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _anonymous(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """No user or group names of the exporting machine in the archive."""
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    return member
