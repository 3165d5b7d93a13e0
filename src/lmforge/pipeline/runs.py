"""Run folders: `runs/<run-id>/` with the resolved config, `run.json` status and `run.log`."""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.pipeline.artifacts import write_json_atomic

RUN_FILE = "run.json"


def new_run_id() -> str:
    """Sortable by time, unique across parallel runs."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


@dataclass
class RunRecord:
    """The status file of a run, rewritten after every stage."""

    path: Path
    data: dict[str, Any]

    @classmethod
    def create(cls, run_dir: Path, project: str, config_file: str | None) -> RunRecord:
        record = cls(
            run_dir / RUN_FILE,
            {
                "run_id": run_dir.name,
                "project": project,
                "config_file": config_file,
                "status": "running",
                "pid": os.getpid(),
                "started_at": time.time(),
                "finished_at": None,
                "stages": {},
                "metrics": {},
                "error": None,
            },
        )
        record.save()
        return record

    def save(self) -> None:
        write_json_atomic(self.path, self.data)

    def stage(self, name: str, **info: Any) -> None:
        self.data["stages"].setdefault(name, {}).update(info)
        self.save()

    def finish(self, status: str, error: str | None = None) -> None:
        self.data["status"] = status
        self.data["error"] = error
        self.data["finished_at"] = time.time()
        self.save()


def list_runs(runs_dir: Path) -> list[dict[str, Any]]:
    """Every run under `runs_dir`, newest first. A run whose process died shows as `killed`."""
    runs = []
    for path in sorted(runs_dir.glob(f"*/{RUN_FILE}"), reverse=True):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if data.get("status") == "running" and not process_alive(int(data.get("pid") or 0)):
            data["status"] = "killed"
        runs.append(data)
    return runs


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (a `running` run whose process is gone was killed)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
