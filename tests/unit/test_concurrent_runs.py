"""Two runs of one config in one output folder, at once, in two real processes.

They compute a stage in the same scratch folder and publish the same cache entry; the second
used to fail with FileNotFoundError when the first renamed or removed its files. Now a stage's
key is computed by one run at a time: the other waits, then reuses the published artifact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lmforge.config import load_config
from lmforge.pipeline.events import EventBus
from lmforge.pipeline.runner import run_pipeline
from lmforge.pipeline.runs import RUN_FILE, list_runs
from lmforge.pipeline.stagelock import stage_lock
from tests.conftest import fast_config, make_rows, write_csv

ROOT = Path(__file__).resolve().parents[2]
STAGES = ["ingest", "validate", "clean", "label", "split"]

# A run in a child process. `barrier`: imports done, waits for the `go` file, then runs.
# `first`: pauses as it starts computing `clean` (holding its key) until the second run says
# it waits for it (or, without the lock, has computed clean itself). `second`: says so.
CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import pandas  # noqa: F401  (imported before the barrier: both runs start at once)
    from lmforge.config import load_config
    from lmforge.pipeline.events import EventBus
    from lmforge.pipeline.runner import run_pipeline

    role, sync, config = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])

    def wait_for(path):
        deadline = time.monotonic() + 300  # a safety net, so a broken run cannot hang the suite
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)

    def sink(event):
        if role == "first" and event.kind == "stage_start" and event.stage == "clean":
            (sync / "first-in-clean").touch()
            wait_for(sync / "second-signal")
        waits = event.kind == "log" and event.message.startswith("waiting for another run")
        clean_over = event.stage == "clean" and event.kind in ("stage_done", "stage_cached", "stage_failed")
        if role == "second" and (waits or clean_over or event.kind == "run_end"):
            (sync / "second-signal").touch()

    if role == "barrier":
        (sync / f"ready-{sys.argv[4]}").touch()
        wait_for(sync / "go")
    run_pipeline(load_config(data=config), events=EventBus([sink]), until="split")
    """
)


def _start(role: str, sync: Path, config: dict[str, Any], *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, role, str(sync), json.dumps(config), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1"},
    )


def _await(path: Path, *children: subprocess.Popen[str]) -> None:
    """Until `path` exists; fails at once if a child died before making it."""
    while not path.exists():
        for child in children:
            if child.poll() is not None:
                pytest.fail(f"child exited {child.returncode} early: {child.communicate()[1][-3000:]}")
        time.sleep(0.02)


def _finish(child: subprocess.Popen[str]) -> None:
    _, stderr = child.communicate(timeout=600)
    assert child.returncode == 0, stderr[-3000:]


def _records(runs_dir: Path) -> list[dict[str, Any]]:
    return [json.loads((runs_dir / run["run_id"] / RUN_FILE).read_text()) for run in list_runs(runs_dir)]


def _assert_each_stage_computed_once(runs_dir: Path) -> None:
    first, second = _records(runs_dir)
    assert first["status"] == second["status"] == "succeeded"
    for stage in STAGES:
        by_status = {run["stages"][stage]["status"]: run for run in (first, second)}
        assert sorted(by_status) == ["cached", "done"], stage  # computed by one run, reused by the other
        producer = runs_dir / by_status["done"]["run_id"] / stage
        assert Path(by_status["cached"]["stages"][stage]["reused_from"]) == producer
        manifests = [
            json.loads((runs_dir / run["run_id"] / stage / "manifest.json").read_text())
            for run in (first, second)
        ]
        assert manifests[0]["content_hash"] == manifests[1]["content_hash"], stage
    work = runs_dir / ".work"
    assert not work.exists() or not any(work.iterdir())  # no scratch folder or lock file left


@pytest.fixture
def config(tmp_path: Path, tiny_model: Path) -> dict[str, Any]:
    return fast_config(tmp_path, write_csv(tmp_path / "data.csv", make_rows()), tiny_model)


def test_two_runs_started_at_once_both_succeed_and_compute_each_stage_once(
    config: dict[str, Any], tmp_path: Path
) -> None:
    sync = tmp_path / "sync"
    sync.mkdir()
    children = [_start("barrier", sync, config, str(n)) for n in range(2)]
    for n in range(2):
        _await(sync / f"ready-{n}", *children)
    (sync / "go").touch()
    for child in children:
        _finish(child)
    _assert_each_stage_computed_once(tmp_path / "runs")


def test_a_run_waits_for_a_stage_another_live_run_computes_and_reuses_it(
    config: dict[str, Any], tmp_path: Path
) -> None:
    sync = tmp_path / "sync"
    sync.mkdir()
    first = _start("first", sync, config)
    _await(sync / "first-in-clean", first)  # the first run holds clean's key, mid-computation
    second = _start("second", sync, config)
    _finish(first)
    _finish(second)

    runs_dir = tmp_path / "runs"
    _assert_each_stage_computed_once(runs_dir)
    older, newer = sorted(_records(runs_dir), key=lambda run: run["started_at"])
    for stage in ("ingest", "validate", "clean"):  # finished by, or waited for and taken from, the first
        assert older["stages"][stage]["status"] == "done"
        assert newer["stages"][stage]["status"] == "cached"
    log = (runs_dir / newer["run_id"] / "run.log").read_text()
    (line,) = [line for line in log.splitlines() if "[clean] waiting" in line]  # said once
    assert f"[clean] waiting for another run computing clean (run {older['run_id']}, pid " in line


def test_a_stage_lock_left_by_a_killed_run_does_not_block_the_next(
    config: dict[str, Any], tmp_path: Path
) -> None:
    # A kill -9 leaves the lock file behind, but the OS freed its lock: the next run neither
    # waits nor fails, and takes the file away when done.
    first = run_pipeline(load_config(data=config), until="ingest")
    work = tmp_path / "runs" / ".work"
    key = first.artifacts["ingest"].manifest["cache_key"]
    leftover = work / f"ingest-{key[:16]}.lock"
    work.mkdir(exist_ok=True)
    leftover.write_text("run 20260101-000000-dead, pid 999999@gone")
    said: list[str] = []
    events = EventBus([lambda event: said.append(event.message) if event.kind == "log" else None])
    result = run_pipeline(load_config(data=config), until="ingest", force=["ingest"], events=events)
    assert not result.cached["ingest"]
    assert not any("waiting" in message for message in said)
    assert not leftover.exists()


def test_a_waiter_woken_by_a_released_lock_relocks_the_path(tmp_path: Path) -> None:
    # The holder removes the lock file as it lets go, so the waiter wakes up holding the lock
    # of a removed file: it must lock the path afresh, or a third run could lock a new file
    # there and compute alongside it.
    path = tmp_path / "stage.lock"
    waiting, seen, heard = threading.Event(), [], []

    def second() -> None:
        with stage_lock(path, "run B", lambda holder: (heard.append(holder), waiting.set())):
            seen.append(path.read_text())

    with stage_lock(path, "run A", heard.append):
        waiter = threading.Thread(target=second)
        waiter.start()
        waiting.wait()
    waiter.join()
    assert heard == ["run A"]  # told who it waited for
    assert seen == ["run B"]  # it holds the file named `path`, not the removed one
    assert not path.exists()
