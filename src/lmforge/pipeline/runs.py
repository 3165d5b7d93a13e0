"""Run folders: `runs/<run-id>/` with the resolved config, `run.json` status and `run.log`.

A running run holds an exclusive lock on `runs/<run-id>/.run.lock` for its whole life and
rewrites `heartbeat_at` in `run.json` every few seconds. A `kill -9` (or a lost machine) leaves
`"status": "running"` behind, but frees the lock: whoever reads the run then knows it was
killed, and that it ran from `started_at` to its last heartbeat, not until now. The next run
in the same output folder rewrites such a record as `killed` for good.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from lmforge.owner import owner, owner_dead
from lmforge.owner import process_alive as process_alive
from lmforge.pipeline.artifacts import write_json_atomic

try:
    import fcntl
except ImportError:  # Windows: no flock; a killed run is then recognised by its dead pid alone
    fcntl = None  # type: ignore[assignment]

RUN_FILE = "run.json"
LOCK_FILE = ".run.lock"
HEARTBEAT_SECONDS = 5.0


def new_run_id() -> str:
    """Sortable by time, unique across parallel runs."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


@dataclass
class RunRecord:
    """The status file of a run, rewritten after every stage and on every heartbeat."""

    path: Path
    data: dict[str, Any]
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _beat: threading.Thread | None = field(default=None, repr=False)
    _held: IO[bytes] | None = field(default=None, repr=False)

    @classmethod
    def create(
        cls, run_dir: Path, project: str, config_file: str | None, *, heartbeat: float = HEARTBEAT_SECONDS
    ) -> RunRecord:
        """Write `run.json` as running, take the run's lock and start the heartbeat."""
        now = time.time()
        record = cls(
            run_dir / RUN_FILE,
            {
                "run_id": run_dir.name,
                "project": project,
                "config_file": config_file,
                "status": "running",
                "pid": int(owner().partition("@")[0]),
                "owner": owner(),
                "started_at": now,
                "heartbeat_at": now,
                "finished_at": None,
                "stages": {},
                "metrics": {},
                "error": None,
            },
        )
        record._held = _take_lock(run_dir / LOCK_FILE)  # before the record says "running"
        record.save()
        record._beat = threading.Thread(target=record._heartbeat, args=(heartbeat,), daemon=True)
        record._beat.start()
        return record

    def save(self) -> None:
        with self._lock:
            if self.data["status"] == "running":
                self.data["heartbeat_at"] = time.time()
            write_json_atomic(self.path, self.data)

    def stage(self, name: str, **info: Any) -> None:
        with self._lock:
            self.data["stages"].setdefault(name, {}).update(info)
            self.save()

    def set_metrics(self, metrics: dict[str, Any]) -> None:
        with self._lock:
            self.data["metrics"] = metrics

    def finish(self, status: str, error: str | None = None) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        with self._lock:
            self.data["status"] = status
            self.data["error"] = error
            self.data["finished_at"] = time.time()
            self.save()
        if self._held is not None:
            (self.path.parent / LOCK_FILE).unlink(missing_ok=True)
            self._held.close()  # releases the lock
            self._held = None

    def _heartbeat(self, interval: float) -> None:
        # A thread, not progress events: a stage can be silent for minutes (an MLflow upload).
        while not self._stop.wait(interval):
            self.save()


def _take_lock(path: Path) -> IO[bytes] | None:
    handle = path.open("wb")
    if fcntl is not None:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh run folder: never contended
    return handle


def _lock_free(path: Path) -> bool | None:
    """Whether nobody holds the run's lock; None when that cannot be told (no lock file or flock)."""
    if fcntl is None:
        return None
    try:
        handle = path.open("rb")
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError:
            return None
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


def was_killed(run_dir: Path, data: dict[str, Any]) -> bool:
    """A `running` record whose process is gone: its lock is free, or (a record written
    before the lock existed, or a lock a forked child still holds) its pid is dead on this host."""
    if data.get("status") != "running":
        return False
    if _lock_free(run_dir / LOCK_FILE):
        return True
    return owner_dead(str(data.get("owner") or data.get("pid") or 0))


def as_killed(run_dir: Path, data: dict[str, Any]) -> dict[str, Any]:
    """The record as it should read once its process is known dead: `killed`, ended at the last
    sign of life (the heartbeat; `run.json`'s own write time for records without one)."""
    last = data.get("heartbeat_at")
    if last is None:
        try:
            last = (run_dir / RUN_FILE).stat().st_mtime
        except OSError:
            last = data.get("started_at")
    who = data.get("owner") or f"pid {data.get('pid')}"
    return {
        **data,
        "status": "killed",
        "finished_at": last,
        "error": data.get("error") or f"the process ({who}) died without finishing the run",
    }


def read_run(run_dir: Path) -> dict[str, Any]:
    """`run.json` of a run folder, with a killed run shown as `killed` (raises on a missing file)."""
    data: dict[str, Any] = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    return as_killed(run_dir, data) if was_killed(run_dir, data) else data


def list_runs(runs_dir: Path) -> list[dict[str, Any]]:
    """Every run under `runs_dir`, newest first. A run whose process died shows as `killed`."""
    runs = []
    for path in sorted(runs_dir.glob(f"*/{RUN_FILE}"), reverse=True):
        try:
            runs.append(read_run(path.parent))
        except (OSError, json.JSONDecodeError):
            continue
    return runs


def settle_killed(runs_dir: Path) -> list[str]:
    """Rewrite the record of every killed run under `runs_dir` as `killed`, for good; their ids."""
    settled = []
    for path in runs_dir.glob(f"*/{RUN_FILE}"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if was_killed(path.parent, data):
            write_json_atomic(path, as_killed(path.parent, data))
            (path.parent / LOCK_FILE).unlink(missing_ok=True)
            settled.append(path.parent.name)
    return settled
