"""The closed loop on a tiny classifier: serve -> predictions logged -> feedback -> retrain
(merged with provenance, gated, promoted) and monitor (drift page, alerts, gauges)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from lmforge.cli import app as cli_app
from lmforge.config import ServeConfig, load_config
from lmforge.errors import LmforgeError
from lmforge.pipeline.runner import run_pipeline
from lmforge.registry import rollback
from lmforge.retrain import retrain
from lmforge.serve.app import create_app
from lmforge.serve.store import ServeStore
from tests.conftest import fast_config, make_rows, write_csv

NAME = "test-project"


@pytest.fixture
def project(tmp_path: Path, tiny_model: Path) -> dict[str, Any]:
    config = fast_config(tmp_path, write_csv(tmp_path / "data.csv", make_rows()), tiny_model)
    config["serve"] = {"state_dir": str(tmp_path / "state"), "reload_seconds": 0}
    config["gate"] = {"min_gain": -1.0, "champion_tolerance": 1.0}
    path = tmp_path / "lmforge.yaml"
    path.write_text(yaml.safe_dump(config))
    first = run_pipeline(load_config(path))
    return {"path": path, "config": config, "first": first, "uri": config["tracking"]["uri"]}


def _serve(project: dict[str, Any]) -> TestClient:
    cfg = ServeConfig(**project["config"]["serve"])
    return TestClient(create_app(f"{NAME}@champion", project["uri"], cfg, auth=False))


def test_feedback_from_the_server_retrains_and_promotes(project: dict[str, Any]) -> None:
    texts = ["a brand new message about nothing", "another unseen message"]
    with _serve(project) as client:
        predictions = client.post("/v1/classify", json={"texts": texts}).json()["predictions"]
        labels = list(predictions[0]["probabilities"])
        # The server logged no texts (log_inputs off), so the client sends them with the label.
        for text, p in zip(texts, predictions, strict=True):
            wrong = next(label for label in labels if label != p["label"])
            sent = client.post("/v1/feedback", json={"prediction_id": p["id"], "label": wrong, "text": text})
            assert sent.status_code == 200

    with pytest.raises(LmforgeError, match="--accept-all"):  # pending feedback is not used silently
        retrain(project["path"])
    result = retrain(project["path"], accept_all=True)
    assert result.feedback_rows == 2
    merged = pd.read_csv(result.merged_file)
    fed = merged[merged["source"] == "feedback"]
    assert sorted(fed["text"]) == sorted(texts) and fed["feedback_id"].notna().all()
    assert (merged["source"] == "data").sum() == len(make_rows())
    register = result.pipeline.artifacts["register"].summary
    assert register["version"] == "2" and register["alias"] == "champion"  # the gate passed
    store = ServeStore(f"sqlite:///{project['config']['serve']['state_dir']}/feedback.db")
    assert {f.used_in_run for f in store.feedback(status="accepted") if f.text in texts} == {
        result.pipeline.run_id
    }

    again = retrain(project["path"])  # nothing new: the same merged file, every stage reused
    assert [s for s, cached in again.pipeline.cached.items() if not cached] == ["gate"]
    # The promotion went through the registry's lifecycle: it can be undone.
    assert rollback(project["uri"], NAME).version == "1"


def test_retrain_without_feedback_says_so(project: dict[str, Any]) -> None:
    with pytest.raises(LmforgeError, match="no accepted label feedback"):
        retrain(project["path"])


def test_monitor_writes_a_page_raises_alerts_and_feeds_the_gauges(project: dict[str, Any]) -> None:
    runner = CliRunner()
    base = ["monitor", NAME, "--config", str(project["path"]), "--no-embeddings"]
    quiet = runner.invoke(cli_app, base)
    assert quiet.exit_code == 0 and "not enough traffic" in quiet.output

    with _serve(project) as client:
        for i in range(8):  # much longer texts than in training: length PSI must alert
            client.post("/v1/classify", json={"texts": [f"{'word ' * 150} {i}.{j}" for j in range(5)]})
    shifted = runner.invoke(cli_app, base, terminal_width=200)
    assert shifted.exit_code == 3, shifted.output
    assert "ALERT" in shifted.output and "psi_length" in shifted.output
    state = Path(project["config"]["serve"]["state_dir"])
    report = json.loads((state / "drift" / f"{NAME}.json").read_text())
    assert report["metrics"]["psi_length"] > 0.2 and report["alerts"]
    assert report["alerts"][0] in (state / "drift" / f"{NAME}.html").read_text()

    cfg = ServeConfig(**{**project["config"]["serve"], "metrics_public": True})
    with TestClient(create_app(f"{NAME}@champion", project["uri"], cfg, auth=False)) as client:
        metrics = client.get("/metrics").text
    assert 'lmforge_drift{metric="psi_length"}' in metrics
    assert f"lmforge_drift_alerts {float(len(report['alerts']))}" in metrics


def test_no_auth_refuses_a_public_interface(project: dict[str, Any]) -> None:
    result = CliRunner().invoke(cli_app, ["serve", f"{NAME}@champion", "--no-auth", "--host", "0.0.0.0"])
    assert result.exit_code == 1 and "--no-auth refuses to bind 0.0.0.0" in result.output


def test_generation_retrains_on_corrected_answers(tmp_path: Path, tiny_llama: Path) -> None:
    from lmforge.serve.store import FeedbackItem
    from tests.conftest import make_instructions

    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_instructions()), encoding="utf-8")
    config = {
        "project": NAME,
        "task": "generation",
        "data": {"train": str(data)},
        "model": str(tiny_llama),
        "split": {"validation": 0.15, "test": 0.15, "seed": 1},
        "train": {"epochs": 1, "batch_size": 8, "learning_rate": 5e-3, "max_length": 32},
        "evaluate": {"max_new_tokens": 2, "generation_rows": 2, "samples": 1},
        "gate": {"min_gain": -1.0, "champion_tolerance": 1.0},
        "export": {"gguf": False},
        "serve": {"state_dir": str(tmp_path / "state")},
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlruns.db", "tensorboard": False},
        "output_dir": str(tmp_path / "runs"),
    }
    path = tmp_path / "lmforge.yaml"
    path.write_text(yaml.safe_dump(config))
    run_pipeline(load_config(path))
    store = ServeStore(f"sqlite:///{tmp_path / 'state' / 'feedback.db'}")
    store.add_feedback(
        FeedbackItem(kind="correction", text="tell me the reverse of up", corrected_output="down")
    )
    store.add_feedback(FeedbackItem(kind="rating", text="tell me the reverse of up", rating=-1))

    result = retrain(path, accept_all=True)
    assert result.feedback_rows == 1 and result.merged_file is not None
    rows = [json.loads(line) for line in result.merged_file.read_text().splitlines()]
    fed = [r for r in rows if r["source"] == "feedback"]
    assert fed == [
        {
            "instruction": "tell me the reverse of up",
            "output": "down",
            "source": "feedback",
            "feedback_id": 1,
            "prediction_id": None,
        }
    ]
    assert len(rows) == len(make_instructions()) + 1
    assert result.pipeline.artifacts["register"].summary["version"] == "2"
    assert [f.status for f in store.feedback(kind="rating")] == ["pending"]  # ratings are not training rows
