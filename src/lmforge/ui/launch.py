"""Runs started from the UI: uploads saved under safe names, the config written next to the
project's, `lmforge run` started as a separate process, and a run's live progress.

The pipeline runs in its own process (not a thread of the UI) so that a long training does
not hold the web server, a crash cannot take it down, and the run is exactly what the CLI
would do with the same file. The UI learns the run id from `run.json`, whose `config_file`
names the file it was started with.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

from lmforge.datafiles import FORMATS
from lmforge.pipeline.runs import read_run

UPLOADS = "uploads"
LOGS = "ui-logs"
NAME = re.compile(r"^ui-\d{8}-\d{6}(-\d+)?$")  # what `write_config` names a launch
MAX_UPLOAD_BYTES = 2 * 1024**3


def safe_filename(client_name: str) -> str:
    """A file name made from the browser's: its last path part, with only [A-Za-z0-9._-] kept.

    The client sends any string (`../../etc/x.csv`, `C:\\x.csv`); only the name's base and
    extension survive, so the saved file always lands directly in the uploads folder.
    """
    base = re.split(r"[\\/]", client_name)[-1]
    stem, dot, ext = base.rpartition(".")
    if not dot or f".{ext.lower()}" not in FORMATS:
        raise ValueError(f"'{base}' is not a data file; use one of {', '.join(sorted(FORMATS))}")
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-")[:80] or "data"
    return f"{stem}.{ext.lower()}"


def save_upload(config_dir: Path, client_name: str, source: IO[bytes]) -> Path:
    """Copy an upload to `<config dir>/uploads/<time>/<safe name>`; never overwrites a file.

    A folder per upload (rather than a prefix on the name) keeps the file's own name, which
    the starter config turns into the project (experiment and registered model) name, as
    `lmforge init` on that file would.
    """
    root = (config_dir / UPLOADS).resolve()
    name = safe_filename(client_name)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 100):
        folder = root / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            folder.mkdir(parents=True)
            break
        except FileExistsError:
            continue
    else:
        raise RuntimeError("could not find a free uploads folder")
    path = folder / name
    assert path.parent.parent == root  # the name has no separators; this guards a future change
    written = 0
    with path.open("xb") as out:
        while chunk := source.read(1 << 20):
            written += len(chunk)
            if written > MAX_UPLOAD_BYTES:
                out.close()
                path.unlink()
                folder.rmdir()
                raise ValueError(f"the file is larger than {MAX_UPLOAD_BYTES >> 30} GiB")
            out.write(chunk)
    return path


def write_config(config_dir: Path, data: dict[str, Any], who: str) -> Path:
    """Write `<config dir>/ui-<time>.yaml`, next to the project config, so relative paths
    (uploads/, runs/, the tracking store) mean the same as in the project's own file."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    header = f"# written by lmforge ui for {who} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
    text = header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    for n in range(1, 100):
        path = config_dir / (f"ui-{stamp}.yaml" if n == 1 else f"ui-{stamp}-{n}.yaml")
        try:
            with path.open("x", encoding="utf-8") as handle:
                handle.write(text)
            return path
        except FileExistsError:
            continue
    raise RuntimeError("could not find a free ui-*.yaml name")


@dataclass
class Launch:
    """A `lmforge run` process started by the UI; `name` is its config file's stem."""

    name: str
    config_file: Path
    log_file: Path
    process: subprocess.Popen[bytes] | None

    def exited(self) -> int | None:
        """The exit code once the process has ended (polling also reaps it), else None."""
        return self.process.poll() if self.process is not None else None


def launch(config_file: Path) -> Launch:
    """Start `python -m lmforge.cli run FILE` in the config's folder, output to a log file."""
    config_file = config_file.resolve()
    logs = config_file.parent / LOGS
    logs.mkdir(exist_ok=True)
    log_file = logs / f"{config_file.stem}.log"
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "lmforge.cli", "run", str(config_file)],
            cwd=config_file.parent,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C of the UI server does not kill the run
            env={**os.environ, "COLUMNS": "120"},
        )
    return Launch(config_file.stem, config_file, log_file, process)


def find_launch(config_dir: Path, name: str, known: dict[str, Launch]) -> Launch | None:
    """The launch `name`; after a UI restart it is rebuilt from its files (without a process)."""
    if not NAME.match(name):
        return None
    if name in known:
        return known[name]
    config_file = (config_dir / f"{name}.yaml").resolve()
    if not config_file.exists():
        return None
    return Launch(name, config_file, config_dir / LOGS / f"{name}.log", None)


def run_of(runs_dir: Path, config_file: Path) -> str | None:
    """The id of the run started with `config_file` (its run.json says so), if it exists yet."""
    for path in sorted(runs_dir.glob("*/run.json"), reverse=True):
        try:
            started_with = json.loads(path.read_text(encoding="utf-8")).get("config_file")
        except (OSError, json.JSONDecodeError):
            continue  # being written right now
        if started_with and Path(started_with).resolve() == config_file:
            return path.parent.name
    return None


def run_folder(runs_dir: Path, run_id: str) -> Path | None:
    """The folder of run `run_id`, or None; the id comes from a URL, so only a plain name
    of a folder directly under runs/ is accepted."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", run_id) or ".." in run_id:
        return None
    folder = runs_dir / run_id
    return folder if (folder / "run.json").exists() else None


def progress(folder: Path) -> dict[str, Any]:
    """Status, per-stage status and seconds, and the current stage of a run, from run.json.

    Stages that have not started yet are listed as `pending` (from the run's config), so a
    page can show how far along the run is.
    """
    run = read_run(folder)  # as `list_runs` reads it: a killed run says `killed`, its time stops
    status = run.get("status", "unknown")
    stages = {name: dict(info) for name, info in run.get("stages", {}).items()}
    for name in _planned_stages(folder):
        stages.setdefault(name, {"status": "pending"})
    ended = run.get("finished_at") or time.time()
    return {
        "run_id": run.get("run_id", folder.name),
        "status": status,
        "error": run.get("error"),
        "seconds": round(ended - run.get("started_at", ended), 1),
        "current": next((n for n, s in stages.items() if s.get("status") == "running"), None),
        "done": sum(1 for s in stages.values() if s.get("status") in ("done", "cached")),
        "total": len(stages),
        "stages": [
            {"name": n, "status": s.get("status"), "seconds": s.get("seconds"), "cached": "reused_from" in s}
            for n, s in stages.items()
        ],
        "metrics": run.get("metrics", {}),
    }


def _planned_stages(folder: Path) -> list[str]:
    from lmforge.config import load_config
    from lmforge.errors import LmforgeError
    from lmforge.pipeline.graph import stages_for

    try:
        config = load_config(data=yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, LmforgeError):
        return []
    return [spec.name for spec in stages_for(config)]
