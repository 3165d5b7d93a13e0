"""kill -9 trials: a run killed at a stage boundary and inside train, export and register, and
`lmforge models export` killed mid-tarball. After each kill, and after the rerun:

- the rerun resumes and reaches the metrics of an uninterrupted run;
- `run.json` / `lmforge runs` say `killed`, with the time the run ran (not growing with the clock);
- no MLflow run is left RUNNING, and the killed register's partial model copy is gone;
- no `.partial` file or `lmforge-export-*` temp folder of a dead owner remains, while a live
  (or another host's) export's are kept.

The kills are real SIGKILLs of a child process (no cleanup, no finally blocks): the child
kills itself at a named point, found through the run's own events, or by wrapping the MLflow
call or tar filter it dies after. Nothing in lmforge knows about the test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from lmforge.cli import app as lmforge_app
from lmforge.cli_models import models_app
from lmforge.config import load_config
from lmforge.owner import owner_dead, sweep_partials, sweep_tempdirs, this_host
from lmforge.pipeline.runner import run_pipeline
from lmforge.pipeline.runs import LOCK_FILE, RUN_FILE, RunRecord, list_runs, read_run
from lmforge.registry import client_for
from lmforge.registry.names import ORPHAN_TAG, OWNER_TAG
from lmforge.registry.orphans import end_orphans
from lmforge.registry.transfer import EXPORT_TMP
from tests.conftest import fast_config, make_rows, write_csv

ROOT = Path(__file__).resolve().parents[2]

# Each kill point: where the child SIGKILLs itself. `event` points match a pipeline event;
# the others wrap the call they die right after.
CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    point, config = sys.argv[1], json.loads(sys.argv[2])

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def at(event):
        if (
            (point == "after:split" and event.kind == "stage_done" and event.stage == "split")
            # eval_steps 2: checkpoint-2 is on disk when step 3 reports
            or (point == "train:after_checkpoint" and event.kind == "progress"
                and event.stage == "train" and event.data.get("completed", 0) >= 3)
            or (point == "export:after_onnx" and event.kind == "log" and event.stage == "export"
                and event.message.startswith("model.onnx"))
        ):
            die()

    if point == "register:after_model_upload":  # the ~model-sized copy is in the store
        from mlflow.tracking import MlflowClient
        upload = MlflowClient.log_artifacts
        def upload_then_die(self, run_id, local_dir, artifact_path=None):
            upload(self, run_id, local_dir, artifact_path)
            if artifact_path == "model":
                die()
        MlflowClient.log_artifacts = upload_then_die

    if point == "models-export:mid_tarball":  # the model is downloaded, the .partial half written
        import lmforge.registry.transfer as transfer
        members, anonymous = [], transfer._anonymous
        def add_then_die(member):
            members.append(member)
            if len(members) == 4:
                die()
            return anonymous(member)
        transfer._anonymous = add_then_die
        from lmforge.cli import app
        app(["models", "export", "test-project@1", "--out", config["out"],
             "--tracking-uri", config["uri"]], standalone_mode=False)
    else:
        from lmforge.config import load_config
        from lmforge.pipeline.events import EventBus
        from lmforge.pipeline.runner import run_pipeline
        run_pipeline(load_config(data=config), events=EventBus([at]))
    """
)

PIPELINE_KILLS = ["after:split", "train:after_checkpoint", "export:after_onnx", "register:after_model_upload"]


def _config(folder: Path, model: Path) -> dict[str, Any]:
    folder.mkdir(exist_ok=True)
    config = fast_config(folder, write_csv(folder / "data.csv", make_rows()), model)
    config["train"].update({"eval_steps": 2, "epochs": 1})  # checkpoints to resume from
    config["export"] = {"int8": False}  # quantizing costs seconds and is not a kill point
    return config


def _kill(point: str, payload: dict[str, Any], cwd: Path, env: dict[str, str] | None = None) -> None:
    child = subprocess.run(
        [sys.executable, "-c", CHILD, point, json.dumps(payload)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", **(env or {})},
    )
    assert child.returncode == -signal.SIGKILL, f"{point}: {child.stderr[-3000:]}"


def _running_mlflow_runs(uri: str) -> list[Any]:
    client = client_for(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, filter_string="attributes.status = 'RUNNING'")


def test_kill_9_trials_resume_and_leave_nothing_behind(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uninterrupted = _config(tmp_path / "uninterrupted", tiny_model)
    reference = run_pipeline(load_config(data=uninterrupted), until="evaluate")
    project = tmp_path / "killed"
    config = _config(project, tiny_model)
    uri = config["tracking"]["uri"]
    runs_dir = project / "runs"

    for number, point in enumerate(PIPELINE_KILLS, start=1):
        _kill(point, config, project)
        died_by = time.time()
        killed = list_runs(runs_dir)[0]
        assert len(list_runs(runs_dir)) == number
        assert killed["status"] == "killed", point
        # The time it ran ends at its last heartbeat, before the kill, not at "now".
        assert killed["started_at"] <= killed["finished_at"] == killed["heartbeat_at"] <= died_by
        raw = json.loads((runs_dir / killed["run_id"] / RUN_FILE).read_text())
        assert raw["status"] == "running"  # what the dead process left; only readers know better

    # The register kill left what the issue saw: a RUNNING MLflow run holding a model copy.
    (orphan,) = _running_mlflow_runs(uri)
    orphan_files = Path(orphan.info.artifact_uri.removeprefix("file://"))
    assert (orphan_files / "model" / "model.safetensors").is_file()

    monkeypatch.chdir(project)  # `lmforge runs` without a config lists ./runs
    listing = CliRunner().invoke(lmforge_app, ["runs"], terminal_width=200)
    assert listing.exit_code == 0 and listing.output.count("killed") == len(PIPELINE_KILLS), listing.output
    for run in list_runs(runs_dir):  # the time each ran, not the time since it started
        assert f"{run['finished_at'] - run['started_at']:.1f}s" in listing.output

    result = run_pipeline(load_config(data=config))
    # Trained by the run killed in export, which resumed the one killed in train.
    assert result.artifacts["train"].summary["resumed_from"] == "checkpoint-2"
    assert result.artifacts["evaluate"].metrics == reference.artifacts["evaluate"].metrics
    assert result.artifacts["register"].summary["version"] == "1"
    for run in list_runs(runs_dir)[1:]:  # settled for good by the rerun
        record = json.loads((runs_dir / run["run_id"] / RUN_FILE).read_text())
        assert record["status"] == "killed" and not (runs_dir / run["run_id"] / LOCK_FILE).exists()
    assert _running_mlflow_runs(uri) == []
    ended = client_for(uri).get_run(orphan.info.run_id)
    assert ended.info.status == "FAILED" and "died while logging" in ended.data.tags[ORPHAN_TAG]
    assert not orphan_files.exists()
    copies = list((project / "mlartifacts").rglob("model/model.safetensors"))
    assert len(copies) == 1  # the retry's, no duplicate

    # `lmforge models export` killed mid-tarball: a .partial and a temp folder of a dead owner.
    tmp, out = project / "tmp", project / "exports"
    tmp.mkdir()
    out.mkdir()
    tarball = out / "model.tar.gz"
    live = f"{os.getppid()}@{this_host()}"  # a live process: a concurrent export
    kept = [
        out / f".model.tar.gz.{live}.partial",
        out / ".model.tar.gz.1@some-other-host.partial",
        tmp / f"{EXPORT_TMP}{live}-abcd1234",
    ]
    for path in kept:
        path.mkdir() if path.suffix != ".partial" else path.write_bytes(b"live")
    _kill("models-export:mid_tarball", {"out": str(tarball), "uri": uri}, project, {"TMPDIR": str(tmp)})
    partial, folder = stale = sorted({*out.iterdir(), *tmp.iterdir()} - set(kept))
    assert partial.name.startswith(".model.tar.gz.") and partial.suffix == ".partial", stale
    assert owner_dead(partial.name.split(".")[-2]), stale
    assert owner_dead(folder.name.removeprefix(EXPORT_TMP).rpartition("-")[0]), stale
    assert any(folder.rglob("model.safetensors"))  # the downloaded model copy

    monkeypatch.setattr("tempfile.tempdir", str(tmp))
    models = typer.Typer()
    models.add_typer(models_app, name="models")
    done = CliRunner().invoke(
        models, ["models", "export", "test-project@1", "--out", str(tarball), "--tracking-uri", uri]
    )
    assert done.exit_code == 0 and tarball.is_file(), done.output
    assert sorted({*out.iterdir(), *tmp.iterdir()}) == sorted([*kept, tarball])


def _dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    return int(child.stdout)


def test_a_running_record_whose_lock_is_free_is_killed_even_if_its_pid_is_reused(tmp_path: Path) -> None:
    # The pid in run.json is alive (ours: a reused pid looks just like this); the lock says dead.
    run_dir = tmp_path / "20260101-000000-abcd"
    run_dir.mkdir()
    now = time.time()
    record = {"run_id": run_dir.name, "status": "running", "pid": os.getpid(), "started_at": now - 60}
    (run_dir / RUN_FILE).write_text(json.dumps({**record, "heartbeat_at": now - 50}))
    (run_dir / LOCK_FILE).write_bytes(b"")
    killed = read_run(run_dir)
    assert killed["status"] == "killed" and killed["finished_at"] - killed["started_at"] == 10


def test_a_live_run_reads_running_until_it_finishes(tmp_path: Path) -> None:
    run_dir = tmp_path / "20260101-000000-abcd"
    run_dir.mkdir()
    record = RunRecord.create(run_dir, "p", None, heartbeat=0.01)
    assert read_run(run_dir)["status"] == "running"
    record.finish("succeeded")
    assert read_run(run_dir)["status"] == "succeeded" and not (run_dir / LOCK_FILE).exists()


def test_a_record_without_a_lock_falls_back_to_its_pid(tmp_path: Path) -> None:
    # Written by lmforge before the lock existed: no heartbeat either, so the file's write time.
    run_dir = tmp_path / "20260101-000000-abcd"
    run_dir.mkdir()
    (run_dir / RUN_FILE).write_text(json.dumps({"status": "running", "pid": _dead_pid(), "started_at": 1.0}))
    os.utime(run_dir / RUN_FILE, (5.0, 5.0))
    killed = read_run(run_dir)
    assert killed["status"] == "killed" and killed["finished_at"] == 5.0


@pytest.mark.parametrize(
    ("owner", "partial_removed", "folder_removed"),
    [
        ("{dead}@{host}", True, True),
        ("{dead}", True, False),  # a partial named before the host was (temp folders never were)
        ("{live}@{host}", False, False),  # a concurrent export's
        ("{dead}@elsewhere", False, False),  # a pid of another host means nothing here
    ],
)
def test_sweeps_remove_only_a_dead_owners_leftovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, owner: str, partial_removed: bool, folder_removed: bool
) -> None:
    token = owner.format(dead=_dead_pid(), live=os.getppid(), host=this_host())
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    partial = tmp_path / f".m.tar.gz.{token}.partial"
    partial.write_bytes(b"x")
    folder = tmp_path / f"{EXPORT_TMP}{token}-abc_123"
    folder.mkdir()
    assert sweep_partials(tmp_path) == ([partial] if partial_removed else [])
    assert sweep_tempdirs(EXPORT_TMP) == ([folder] if folder_removed else [])
    assert partial.exists() is not partial_removed and folder.exists() is not folder_removed


def test_an_orphan_with_a_registered_version_keeps_its_files(tmp_path: Path) -> None:
    """Killed after `create_model_version`: the version serves from the run's files."""
    client = client_for(f"sqlite:///{(tmp_path / 'mlruns.db').as_posix()}")
    experiment = client.create_experiment("p", artifact_location=(tmp_path / "art").as_uri())
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    dead, live = f"{_dead_pid()}@{this_host()}", f"{os.getppid()}@{this_host()}"
    runs = {}
    for name, token in (("registered", dead), ("partial", dead), ("live", live)):
        run = client.create_run(experiment, tags={OWNER_TAG: token})
        client.log_artifacts(run.info.run_id, str(tmp_path / "model"), "model")
        runs[name] = run
    client.create_registered_model("p")
    client.create_model_version(
        "p", f"{runs['registered'].info.artifact_uri}/model", runs["registered"].info.run_id
    )

    ended = dict(end_orphans(client, experiment))
    assert ended == {runs["registered"].info.run_id: "FINISHED", runs["partial"].info.run_id: "FAILED"}
    for name, files in (("registered", True), ("partial", False), ("live", True)):
        folder = Path(runs[name].info.artifact_uri.removeprefix("file://")) / "model"
        assert folder.is_dir() is files, name
    assert client.get_run(runs["live"].info.run_id).info.status == "RUNNING"
