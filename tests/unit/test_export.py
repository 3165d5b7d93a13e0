"""Classification export on a tiny random BERT: ONNX parity, int8 bound, model card, no pickles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lmforge.config import load_config
from lmforge.errors import LmforgeError
from lmforge.pipeline.artifacts import file_sha256
from lmforge.pipeline.runner import run_pipeline
from tests.conftest import fast_config, make_rows, write_csv

PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> tuple[dict, Any]:
    folder = tmp_path_factory.mktemp("export")
    config = fast_config(folder, write_csv(folder / "data.csv", make_rows()), tiny_model)
    return config, run_pipeline(load_config(data=config))


def test_onnx_matches_torch_on_the_test_set(exported: tuple[dict, Any]) -> None:
    _, result = exported
    export = result.artifacts["export"]
    check = export.json("onnx_check")
    assert check["texts"] == result.artifacts["split"].manifest["rows"]["test"] > 0
    assert check["fp32"]["max_logit_diff"] < 1e-4
    assert check["fp32"]["argmax_agreement"] == 1.0
    assert check["fp32"]["accuracy"] == check["torch"]["accuracy"]
    # The graph is a real one: onnxruntime scores new texts like torch does.
    from lmforge.export.onnx import OnnxClassifier
    from lmforge.models.load import load_trained_classifier

    model_dir = result.artifacts["train"].path("model")
    tokenizer, model = load_trained_classifier(model_dir)  # the mean-pooling head (fast_config)
    assert type(model).__name__ == "MeanPoolingBertForSequenceClassification"
    texts = ["a text the model never saw", "short", "a much longer text " * 5]
    onnx = OnnxClassifier(export.path("model.onnx"), tokenizer, max_length=32).logits(texts)
    import torch

    with torch.inference_mode():
        for i, text in enumerate(texts):
            reference = model(**tokenizer([text], truncation=True, max_length=32, return_tensors="pt")).logits
            np.testing.assert_allclose(onnx[i], reference[0].numpy(), atol=1e-4)


def test_int8_is_shipped_only_within_the_accuracy_bound(exported: tuple[dict, Any]) -> None:
    _, result = exported
    export = result.artifacts["export"]
    int8 = export.json("onnx_check")["int8"]
    assert int8["shipped"] == (int8["accuracy_drop"] <= 0.02)
    assert export.has("model.int8.onnx") == int8["shipped"]
    assert export.summary["serving_file"] == ("model.int8.onnx" if int8["shipped"] else "model.onnx")
    if int8["shipped"]:
        assert int8["megabytes"] < export.json("onnx_check")["fp32"]["megabytes"]


def test_model_card_names_data_metrics_and_file_hashes(exported: tuple[dict, Any]) -> None:
    config, result = exported
    card = result.artifacts["export"].path("MODEL_CARD.md").read_text()
    model_dir = result.artifacts["train"].path("model")
    for label in result.artifacts["split"].json("labels"):
        assert f"| {label} |" in card  # plain, escaped text (see test_card_values_are_inert_markdown)
    assert file_sha256(model_dir / "model.safetensors") in card
    assert file_sha256(Path(config["data"]["train"])) in card
    assert f"| f1_macro | {result.artifacts['evaluate'].metrics['f1_macro']:.4f} |" in card
    for heading in ("## Intended use", "## Limitations", "## Export checks"):
        assert heading in card


def test_nothing_is_pickled_and_the_export_is_registered(exported: tuple[dict, Any]) -> None:
    config, result = exported
    for stage in ("train", "export"):
        files = [p for p in result.artifacts[stage].folder.rglob("*") if p.is_file()]
        assert not [p for p in files if p.suffix in PICKLE_SUFFIXES]
    from mlflow.tracking import MlflowClient

    uri = config["tracking"]["uri"]
    run_id = result.artifacts["register"].summary["mlflow_run_id"]
    names = {Path(a.path).name for a in MlflowClient(uri).list_artifacts(run_id, "export")}
    assert {"model.onnx", "MODEL_CARD.md", "onnx_check.json"} <= names
    html = result.artifacts["report"].path("report.html").read_text()
    assert "Exported model" in html and "argmax agreement 100%" in html


def test_a_graph_that_disagrees_with_torch_fails_the_stage(tmp_path: Path, tiny_model: Path) -> None:
    config = fast_config(tmp_path, write_csv(tmp_path / "data.csv", make_rows()), tiny_model)
    config["export"] = {"onnx_max_logit_diff": 1e-12, "int8": False}
    with pytest.raises(LmforgeError, match=r"export.onnx_max_logit_diff=1e-12"):
        run_pipeline(load_config(data=config))
    runs = sorted((tmp_path / "runs").iterdir())
    assert not (runs[-1] / "export" / "manifest.json").exists()  # no half artifact that looks whole


def test_onnx_false_still_writes_the_card_and_serving_facts(tmp_path: Path, tiny_model: Path) -> None:
    config = fast_config(tmp_path, write_csv(tmp_path / "data.csv", make_rows()), tiny_model)
    config["export"] = {"onnx": False}
    export = run_pipeline(load_config(data=config)).artifacts["export"]
    assert not export.has("model.onnx") and export.has("MODEL_CARD.md")
    serving = export.json("serving")
    assert serving["onnx"] is None and serving["max_length"] == config["train"]["max_length"]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ('<script>alert("x")</script>', '&lt;script&gt;alert("x")&lt;/script&gt;'),
        ("![pixel](http://evil.example/p.png)", "!\\[pixel\\](http://evil.example/p.png)"),
        ("[click](javascript:alert(1))", "\\[click\\](javascript:alert(1))"),
        ("a`b|c\\d", "a\\`b\\|c\\\\d"),
        ("two\nlines # heading", "two lines # heading"),
        ("R&D", "R&amp;D"),
        ("not_spam", "not_spam"),  # plain names stay as they are
    ],
)
def test_card_values_are_inert_markdown(value: str, shown: str) -> None:
    from lmforge.export.card import md_text

    assert md_text(value) == shown
