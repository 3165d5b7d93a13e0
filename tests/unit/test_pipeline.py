"""The runner on a tiny random BERT: cache reuse, invalidation, --force, resume, atomicity."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lmforge.config import load_config
from lmforge.pipeline.events import Event, EventBus
from lmforge.pipeline.runner import run_pipeline
from lmforge.pipeline.runs import list_runs
from tests.conftest import fast_config, make_rows, write_csv

ALL = [
    "ingest", "validate", "clean", "label", "split", "augment", "baseline", "train", "evaluate", "export",
    "gate", "report", "register",
]  # fmt: skip


def _ran(result: Any) -> list[str]:
    return [name for name, cached in result.cached.items() if not cached]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> tuple[dict, Any]:
    folder = tmp_path_factory.mktemp("pipeline")
    config = fast_config(folder, write_csv(folder / "data.csv", make_rows()), tiny_model)
    config["tracking"]["tensorboard"] = True
    return config, run_pipeline(load_config(data=config))


def test_first_run_produces_every_artifact(first_run: tuple[dict, Any]) -> None:
    _, result = first_run
    assert _ran(result) == ALL
    for stage in ALL:
        manifest = json.loads((result.run_dir / stage / "manifest.json").read_text())
        assert manifest["stage"] == stage
        assert len(manifest["content_hash"]) == 64 and len(manifest["cache_key"]) == 64
        assert manifest["versions"]["lmforge"] and manifest["seconds"] >= 0
    train = result.artifacts["train"]
    assert (train.folder / "model" / "model.safetensors").exists()
    assert any((train.folder / "tensorboard").rglob("events.out.tfevents.*"))
    # Every optimizer step is timed; the median is the figure one machine or executor compares by.
    assert 0 < train.metrics["median_step_seconds"] < train.metrics["train_seconds"]
    rows = result.artifacts["split"].manifest["rows"]
    assert rows["test"] == 24 and rows["validation"] == 24 and rows["train"] + rows["leakage_removed"] == 72
    evaluate = result.artifacts["evaluate"]
    assert set(evaluate.metrics) >= {
        "accuracy",
        "f1_macro",
        "f1_weighted",
        "precision_macro",
        "recall_weighted",
    }
    assert evaluate.metrics["accuracy"] > 0.5  # the tiny model learns the topic words
    assert (result.run_dir / "config.yaml").exists()
    assert "report.html" in (result.run_dir / "report" / "manifest.json").read_text()
    status = json.loads((result.run_dir / "run.json").read_text())
    assert status["status"] == "succeeded" and status["metrics"]["model_version"] == "1"
    assert "stage_done" in (result.run_dir / "run.log").read_text()


def test_rerun_with_nothing_changed_reuses_every_stage(first_run: tuple[dict, Any]) -> None:
    config, first = first_run
    again = run_pipeline(load_config(data=config))
    assert _ran(again) == ["gate"]  # never cached: the champion may have changed
    assert again.artifacts["gate"].content_hash == first.artifacts["gate"].content_hash
    assert again.artifacts["train"].content_hash == first.artifacts["train"].content_hash
    # Reused artifacts are full copies in the new run folder, not pointers.
    assert (again.run_dir / "train" / "model" / "model.safetensors").exists()


def test_changing_one_section_reruns_that_stage_and_dependents(first_run: tuple[dict, Any]) -> None:
    config, _ = first_run
    changed = {**config, "split": {**config["split"], "seed": 2}}
    result = run_pipeline(load_config(data=changed))
    assert _ran(result) == [
        "split", "augment", "baseline", "train", "evaluate", "export", "gate", "report", "register",
    ]  # fmt: skip


def test_force_reruns_a_stage_and_its_dependents(first_run: tuple[dict, Any]) -> None:
    config, _ = first_run
    result = run_pipeline(load_config(data=config), force=["baseline"])
    assert _ran(result) == ["baseline", "evaluate", "export", "gate", "report", "register"]


def test_register_is_idempotent_for_the_same_model(first_run: tuple[dict, Any]) -> None:
    config, _ = first_run
    result = run_pipeline(load_config(data=config), force=["register"])
    assert result.artifacts["register"].summary["reused"] is True
    assert result.artifacts["register"].summary["version"] == "1"


def test_a_setting_the_report_shows_is_in_its_key(first_run: tuple[dict, Any]) -> None:
    # B3: clean.pii does not change clean's output here (no personal data), so only the
    # clean stage's key and the report's (which shows the setting) may change. Ingest masks
    # personal data with it, so it reads the files again, but writes the same tables: the
    # stages after it are reused.
    config, _ = first_run
    assert "clean.pii = mask" in (first_run[1].run_dir / "report" / "report.html").read_text()
    changed = {**config, "clean": {**config.get("clean", {}), "pii": "off"}}
    result = run_pipeline(load_config(data=changed))
    assert _ran(result) == ["ingest", "clean", "gate", "report", "register"]
    assert "clean.pii = off" in (result.run_dir / "report" / "report.html").read_text()


@pytest.mark.parametrize(
    ("key", "value", "reran"),
    [
        ("pii_types", ["email"], ["ingest", "clean"]),  # what ingest masks: in its key
        ("phone_region", "GB", ["ingest", "clean"]),
        ("near_duplicate_threshold", 0.9, ["clean"]),  # the rest of `clean`: not in ingest's key
        ("label_noise", "off", ["clean"]),
    ],
)
def test_ingest_is_keyed_by_the_clean_keys_it_masks_with(
    first_run: tuple[dict, Any], key: str, value: Any, reran: list[str]
) -> None:
    config, _ = first_run
    changed = {**config, "clean": {**config.get("clean", {}), key: value}}
    result = run_pipeline(load_config(data=changed), until="clean")
    assert _ran(result) == reran


def test_changed_data_file_reruns_everything(first_run: tuple[dict, Any], tmp_path: Path) -> None:
    config, _ = first_run
    data = write_csv(tmp_path / "other.csv", make_rows(seed=5))
    result = run_pipeline(load_config(data={**config, "data": {"train": str(data)}}), until="split")
    assert _ran(result) == ["ingest", "validate", "clean", "label", "split"]


def test_killed_training_resumes_from_its_last_checkpoint(config_dict: dict, tmp_path: Path) -> None:
    config_dict["train"].update({"eval_steps": 2, "epochs": 2})

    def kill_after_checkpoint(event: Event) -> None:
        if event.kind == "progress" and event.stage == "train" and event.data["completed"] >= 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_pipeline(load_config(data=config_dict), events=EventBus([kill_after_checkpoint]))
    runs = list_runs(tmp_path / "runs")
    assert runs[0]["status"] == "interrupted"
    killed_dir = tmp_path / "runs" / runs[0]["run_id"]
    assert not (killed_dir / "train").exists()  # no half artifact that looks whole
    assert (killed_dir / "split" / "manifest.json").exists()

    result = run_pipeline(load_config(data=config_dict))
    assert result.cached["split"] and not result.cached["train"]
    assert result.artifacts["train"].summary["resumed_from"] == "checkpoint-2"
    assert not (tmp_path / "runs" / ".work").exists() or not any((tmp_path / "runs" / ".work").iterdir())


def test_until_stops_early(config_dict: dict) -> None:
    result = run_pipeline(load_config(data=config_dict), until="split")
    assert list(result.artifacts) == ["ingest", "validate", "clean", "label", "split"]


# The CLI in a fresh process, then which heavy libraries that process imported.
RERUN = """
import json, sys
from lmforge.cli import app
app(["run", sys.argv[1]], standalone_mode=False)
print(json.dumps({name: name in sys.modules for name in ("torch", "transformers")}))
"""


def test_cached_rerun_never_imports_torch(tmp_path: Path, tiny_model: Path) -> None:
    # Importing torch + transformers alone takes seconds: a no-change rerun must not pay it
    # (stage modules load lazily, and the gate reuses the score it stored for the champion).
    config = fast_config(tmp_path, write_csv(tmp_path / "data.csv", make_rows()), tiny_model)
    path = tmp_path / "lmforge.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    run_pipeline(load_config(path))

    done = subprocess.run([sys.executable, "-c", RERUN, str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"torch": False, "transformers": False}
    rerun = max(list_runs(tmp_path / "runs"), key=lambda run: run["started_at"])
    assert rerun["status"] == "succeeded"
    assert [name for name, info in rerun["stages"].items() if info["status"] != "cached"] == ["gate"]
