"""The real shipped minilm-l6 on tiny data, end to end, a few optimizer steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmforge.config import load_config
from lmforge.pipeline.runner import run_pipeline
from lmforge.registry import tracking_uri

pytestmark = pytest.mark.integration


def test_minilm_fine_tune_is_tracked_registered_and_reported(config_dict: dict, tmp_path: Path) -> None:
    config_dict["model"] = "minilm-l6"
    config_dict["train"] = {
        "max_steps": 6,
        "batch_size": 16,
        "learning_rate": 1e-4,
        "max_length": 32,
        "eval_steps": 3,
        "logging_steps": 1,
    }
    config_dict["tracking"]["tensorboard"] = True
    config = load_config(data=config_dict)
    result = run_pipeline(config)

    train = result.artifacts["train"]
    assert train.summary["parameters"] > 20_000_000 and train.metrics["steps"] == 6
    assert train.summary["best_checkpoint"] in ("checkpoint-3", "checkpoint-6")
    assert result.artifacts["evaluate"].metrics["accuracy"] > 0.25  # beats chance on 4 topics
    # The head reads minilm as it was pretrained (mean pooling); the rest is as configured.
    recipe = {row["key"]: row for row in train.json("recipe")}
    assert recipe["pooling"]["value"] == "mean" and recipe["pooling"]["chosen"]
    assert recipe["max_length"] == {**recipe["max_length"], "value": 32, "chosen": False}
    assert train.json("hyperparameters")["pooling"] == "mean"

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri(config), registry_uri=tracking_uri(config))
    version = client.get_model_version("test-project", "1")
    run = client.get_run(version.run_id)
    assert run.data.params["train.max_steps"] == "6"
    assert run.data.metrics["test/accuracy"] == pytest.approx(
        result.artifacts["evaluate"].metrics["accuracy"]
    )
    history = client.get_metric_history(version.run_id, "train/eval_f1_macro")
    assert [m.step for m in history] == [3, 6]
    artifacts = {a.path for a in client.list_artifacts(version.run_id)}
    assert {"report.html", "confusion_matrix.png", "model", "config.yaml"} <= artifacts

    html = (result.run_dir / "report" / "report.html").read_text()
    for section in (
        "Baselines vs model",
        "Per-class metrics",
        "Confusion matrix",
        "Most confident mistakes",
        "Training settings",
        "the zoo records minilm-l6 as mean-pooled",
        "data:image/png;base64,",
        "TF-IDF + logistic regression",
        "minilm-l6",
    ):
        assert section in html

    # The export of the real model: ONNX matches torch, int8 is measured, and the server runs it.
    check = result.artifacts["export"].json("onnx_check")
    assert check["fp32"]["max_logit_diff"] < 1e-3 and check["fp32"]["argmax_agreement"] == 1.0
    assert check["int8"]["megabytes"] < check["fp32"]["megabytes"] / 3  # ~91 -> ~23 MB
    assert "export/model.onnx" in {a.path for a in client.list_artifacts(version.run_id, "export")}

    from fastapi.testclient import TestClient

    from lmforge.config import ServeConfig
    from lmforge.serve.app import create_app

    serve = ServeConfig(state_dir=str(tmp_path / "state"), reload_seconds=0)
    with TestClient(create_app("test-project@champion", tracking_uri(config), serve, auth=False)) as http:
        model = http.get("/v1/models").json()["data"][0]
        assert (
            model["runtime"] == "onnx" and model["file"] == result.artifacts["export"].summary["serving_file"]
        )
        texts = result.artifacts["split"].table("test")["text"].tolist()[:8]
        served = http.post("/v1/classify", json={"texts": texts}).json()["predictions"]
    predicted = result.artifacts["evaluate"].table("predictions").set_index("text")["predicted"]
    agree = sum(p["label"] == predicted[t] for p, t in zip(served, texts, strict=True))
    assert agree >= len(texts) - 1  # int8 may flip a near-tie; the export bounds the accuracy drop
