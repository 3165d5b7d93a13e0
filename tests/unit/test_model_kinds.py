"""The linear and ensemble model kinds after training: scored, evaluated, exported with parity,
served with the same probabilities, and refused with one clear line when tampered with.

A real run up to `train` (tiny BERT, fast_config) gives the split and the transformer; the
linear model is fitted here on that split's train rows, and the ensemble folder is laid out
as the contract says (the transformer folder + `linear/` + the kind file)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lmforge.config import load_config
from lmforge.errors import LmforgeError
from lmforge.models.kinds import read_kind, write_kind
from lmforge.models.scorer import ModelFolderError, load_scorer
from lmforge.pipeline.artifacts import Artifact, ArtifactWriter
from lmforge.pipeline.context import StageContext
from lmforge.pipeline.events import EventBus
from lmforge.pipeline.runner import run_pipeline
from tests.conftest import fast_config, make_rows, write_csv

WEIGHTS = (0.6, 0.4)


def _artifact(folder: Path, stage: str, **manifest: Any) -> Artifact:
    return Artifact(folder, {"stage": stage, "content_hash": f"{stage}-{folder.name}", **manifest})


def _linear_folder(split: Artifact, folder: Path, *, C: float = 10.0) -> Path:
    from lmforge.classical.linear import fit_linear, save_linear

    train = split.table("train")
    model = fit_linear(train["text"].tolist(), train["label"].tolist(), C=C)
    return save_linear(model, folder)


def _ensemble_folder(transformer: Path, split: Artifact, folder: Path, weights: tuple[float, float]) -> Path:
    shutil.copytree(transformer, folder)
    _linear_folder(split, folder / "linear")
    labels = list(reversed(split.json("labels")))  # another column order than either member's
    write_kind(
        folder,
        "ensemble",
        labels=labels,
        method="weighted_average",
        members=[
            {"kind": "transformer", "path": ".", "weight": weights[0]},
            {"kind": "linear", "path": "linear", "weight": weights[1]},
        ],
    )
    return folder


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("kinds")
    config = fast_config(folder, write_csv(folder / "data.csv", make_rows(per_class=20)), tiny_model)
    config["train"]["epochs"] = 3
    loaded = load_config(data=config)
    result = run_pipeline(loaded, until="train")
    split, train = result.artifacts["split"], result.artifacts["train"]
    trains = {"transformer": train}
    for kind in ("linear", "ensemble"):
        copy = folder / f"train-{kind}"
        copy.mkdir()
        model = copy / "model"
        if kind == "linear":
            _linear_folder(split, model)
        else:
            _ensemble_folder(train.path("model"), split, model, WEIGHTS)
            shutil.copy(train.path("hyperparameters.json"), copy / "hyperparameters.json")
        trains[kind] = _artifact(copy, "train", summary={"model": kind, "method": kind})
    return {"config": loaded, "dict": config, "folder": folder, "split": split, "trains": trains}


def _ctx(run: dict[str, Any], stage: str, out: Path) -> StageContext:
    return StageContext(
        run_id="test",
        stage=stage,
        config=run["config"],
        out=ArtifactWriter(out),
        work_dir=out.parent / f"{stage}-work",
        run_dir=out.parent,
        events=EventBus(),
    )


def _evaluate(run: dict[str, Any], kind: str) -> Artifact:
    from lmforge.stages import evaluate

    out = run["folder"] / f"evaluate-{kind}"
    if not out.exists():
        baseline = run["folder"] / "baseline"
        baseline.mkdir(exist_ok=True)
        inputs = {
            "split": run["split"],
            "train": run["trains"][kind],
            "baseline": _artifact(baseline, "baseline", metrics={}),
        }
        result = evaluate.run(_ctx(run, "evaluate", out), run["config"].evaluate, inputs)
        (out / "manifest.json").write_text(json.dumps({"stage": "evaluate", "metrics": result.metrics}))
    return Artifact.load(out)


def _export(run: dict[str, Any], kind: str) -> Artifact:
    from lmforge.stages import export

    out = run["folder"] / f"export-{kind}"
    if not out.exists():
        inputs = {"split": run["split"], "train": run["trains"][kind], "evaluate": _evaluate(run, kind)}
        result = export.run(_ctx(run, "export", out), run["config"].export, inputs)
        (out / "manifest.json").write_text(
            json.dumps({"stage": "export", "metrics": result.metrics, "summary": result.summary}, default=str)
        )
    return Artifact.load(out)


def _version(run: dict[str, Any], kind: str, tmp_path: Path) -> Path:
    """A folder laid out as `registry.versions.download` writes it: model/, export/, version.json."""
    export = _export(run, kind)
    folder = tmp_path / f"{kind}-v1"
    shutil.copytree(run["trains"][kind].path("model"), folder / "model")
    shutil.copytree(export.folder, folder / "export", ignore=shutil.ignore_patterns("manifest.json"))
    (folder / "version.json").write_text(json.dumps({"name": kind, "version": "1", "tags": {}}))
    return folder


@pytest.mark.parametrize("kind", ["transformer", "linear", "ensemble"])
def test_the_scorer_gives_probabilities_for_every_kind(run: dict[str, Any], kind: str) -> None:
    split = run["split"]
    texts = split.table("test")["text"].tolist()
    scorer = load_scorer(run["trains"][kind].path("model"))
    probs = scorer.proba(texts, batch_size=7)
    assert scorer.kind == kind
    assert sorted(scorer.labels) == sorted(split.json("labels"))
    assert probs.shape == (len(texts), len(scorer.labels))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_the_ensemble_is_the_weighted_sum_of_its_members_in_its_label_order(run: dict[str, Any]) -> None:
    from lmforge.classical.linear import load_linear

    model_dir = run["trains"]["ensemble"].path("model")
    texts = run["split"].table("test")["text"].tolist()
    ensemble = load_scorer(model_dir)
    labels = read_kind(model_dir)["labels"]
    assert ensemble.labels == labels
    transformer = load_scorer(run["trains"]["transformer"].path("model"))
    index = [transformer.labels.index(label) for label in labels]
    linear = load_linear(model_dir / "linear").proba(texts, labels=labels)
    expected = WEIGHTS[0] * transformer.proba(texts)[:, index] + WEIGHTS[1] * linear
    np.testing.assert_allclose(ensemble.proba(texts), expected, atol=1e-6)


@pytest.mark.parametrize("kind", ["linear", "ensemble"])
def test_evaluate_scores_every_kind_with_the_scorer(run: dict[str, Any], kind: str) -> None:
    evaluate = _evaluate(run, kind)
    predictions = evaluate.table("predictions")
    labels = run["split"].json("labels")
    scorer = load_scorer(run["trains"][kind].path("model"))
    probs = scorer.proba(predictions["text"].tolist())
    best = [scorer.labels[i] for i in probs.argmax(axis=1)]
    assert predictions["predicted"].tolist() == best
    np.testing.assert_allclose(predictions["confidence"].to_numpy(), probs.max(axis=1), atol=1e-6)
    assert set(predictions["predicted"]) <= set(labels)
    assert 0.0 <= evaluate.metrics["f1_macro"] <= 1.0
    # The topic words decide the label: TF-IDF + a linear head learns them from 20 rows a class.
    if kind == "linear":
        assert evaluate.metrics["accuracy"] >= 0.9


@pytest.mark.parametrize("kind", ["linear", "ensemble"])
def test_export_writes_the_graphs_serving_json_and_a_parity_check(run: dict[str, Any], kind: str) -> None:
    export = _export(run, kind)
    serving = export.json("serving")
    assert export.summary["serving_file"] == serving["onnx"]
    check = export.json("onnx_check")
    labels = run["split"].json("labels")
    assert serving["kind"] == kind and serving["labels"] == labels and serving["task"] == "classification"
    if kind == "linear":
        assert serving["onnx"] == "linear_head.onnx" and "max_length" not in serving
        parity = check
    else:
        assert serving["onnx"] in ("model.onnx", "model.int8.onnx")
        assert serving["linear_onnx"] == "linear_head.onnx"
        assert serving["weights"] == {"transformer": WEIGHTS[0], "linear": WEIGHTS[1]}
        assert check["fp32"]["argmax_agreement"] == 1.0  # the transformer member's own check
        parity = check["ensemble"]
    assert export.has("linear_head.onnx")
    assert parity["texts"] == len(run["split"].table("test")) > 0
    assert parity["onnx"]["argmax_agreement"] == 1.0
    assert parity["onnx"]["max_prob_diff"] < 1e-4
    card = export.path("MODEL_CARD.md").read_text()
    assert "TF-IDF word 1-2-grams and character 2-5-grams" in card
    assert "C=10" in card
    if kind == "ensemble":
        assert "weight 0.600" in card and "weight 0.400" in card


@pytest.mark.parametrize("kind", ["linear", "ensemble"])
@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_served_answers_equal_the_evaluated_probabilities(
    run: dict[str, Any], kind: str, runtime: str, tmp_path: Path
) -> None:
    from lmforge.serve.predictor import KindPredictor, load_predictor

    folder = _version(run, kind, tmp_path)
    serving = json.loads((folder / "export" / "serving.json").read_text())
    # The fp32 graph (held to 100% agreement at export): the int8 one differs by design.
    (folder / "export" / "serving.json").write_text(json.dumps({**serving, "onnx": "model.onnx"}))
    if kind == "linear":
        (folder / "export" / "serving.json").write_text(json.dumps(serving))
    predictor = load_predictor(folder, runtime=runtime)  # type: ignore[arg-type]
    assert isinstance(predictor, KindPredictor) and predictor.runtime == runtime
    labels = run["split"].json("labels")
    assert predictor.labels == labels
    texts = [*run["split"].table("test")["text"].tolist()[:9], "a text about nothing the model saw"]
    answers = predictor.classify(texts)
    scorer = load_scorer(run["trains"][kind].path("model"))
    expected = scorer.proba(texts)
    for answer, row in zip(answers, expected, strict=True):
        for label, p in zip(scorer.labels, row, strict=True):
            assert answer.probabilities[label] == pytest.approx(float(p), abs=1e-5)
        assert answer.label == scorer.labels[int(row.argmax())]
    assert predictor.count_tokens("three short words") >= 3


def test_the_served_file_and_runtime_are_reported(run: dict[str, Any], tmp_path: Path) -> None:
    from lmforge.serve.predictor import load_predictor

    linear = load_predictor(_version(run, "linear", tmp_path))
    assert (linear.runtime, linear.file) == ("onnx", "linear_head.onnx")
    assert load_predictor(_version(run, "linear", tmp_path / "t"), runtime="torch").file == "linear.skops"


def test_a_linear_model_without_an_onnx_export_serves_in_process_only(
    run: dict[str, Any], tmp_path: Path
) -> None:
    from lmforge.serve.predictor import ServeError, load_predictor

    folder = _version(run, "linear", tmp_path)
    serving = json.loads((folder / "export" / "serving.json").read_text())
    (folder / "export" / "serving.json").write_text(json.dumps({**serving, "onnx": None}))
    assert load_predictor(folder).runtime == "torch"
    with pytest.raises(ServeError, match="no exported ONNX graph"):
        load_predictor(folder, runtime="onnx")


def _tamper_kind(folder: Path, **changes: Any) -> None:
    record = read_kind(folder)
    record.update(changes)
    write_kind(folder, record.pop("kind"), **record)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"members": "weights sum"}, "members' must list"),
        ("weights", "weights sum to 1.2"),
        ("negative", "weight must be a number >= 0"),
        ("nan", "weight must be a number >= 0"),
        ("escape", "leaves the model folder"),
        ("absolute", "leaves the model folder"),
        ("missing", "member folder 'gone' is missing"),
        ("labels", "predicts"),
        ("duplicate", "lists a label twice"),
        ("method", "unknown ensemble method"),
        ("nested", r"members\[1\]\.kind must be transformer or linear"),
        ("two-linear", "one transformer and one linear model"),
        ("moved-transformer", "must be the folder itself"),
    ],
)
def test_a_tampered_ensemble_is_refused_at_load(
    run: dict[str, Any], tmp_path: Path, change: Any, message: str
) -> None:
    folder = shutil.copytree(run["trains"]["ensemble"].path("model"), tmp_path / "model")
    record = read_kind(folder)
    members = record["members"]
    if isinstance(change, dict):
        _tamper_kind(folder, **change)
    elif change == "weights":
        members[1]["weight"] = 0.6
        _tamper_kind(folder, members=members)
    elif change in ("negative", "nan"):
        members[0]["weight"], members[1]["weight"] = (
            (1.5, -0.5) if change == "negative" else (float("nan"), 1)
        )
        _tamper_kind(folder, members=members)
    elif change in ("escape", "absolute", "missing"):
        outside = shutil.copytree(folder / "linear", tmp_path / "outside")
        members[1]["path"] = {"escape": "../outside", "absolute": str(outside), "missing": "gone"}[change]
        _tamper_kind(folder, members=members)
    elif change == "labels":
        _tamper_kind(folder, labels=[*record["labels"][:-1], "not-a-label"])
    elif change == "duplicate":
        _tamper_kind(folder, labels=[*record["labels"], record["labels"][0]])
    elif change == "method":
        _tamper_kind(folder, method="stacked_magic")
    elif change == "nested":
        members[1]["kind"] = "ensemble"
        _tamper_kind(folder, members=members)
    elif change == "two-linear":
        members[0] = {**members[1], "weight": members[0]["weight"]}
        _tamper_kind(folder, members=members)
    elif change == "moved-transformer":
        members[0]["path"] = "linear"
        _tamper_kind(folder, members=members)
    with pytest.raises(ModelFolderError, match=message) as raised:
        load_scorer(folder)
    assert "\n" not in str(raised.value)


def test_an_ensemble_whose_members_were_trained_on_other_labels_is_refused(
    run: dict[str, Any], tmp_path: Path
) -> None:
    from lmforge.classical.linear import fit_linear, save_linear

    folder = shutil.copytree(run["trains"]["ensemble"].path("model"), tmp_path / "model")
    shutil.rmtree(folder / "linear")
    rows = [(t, "other" if label == "bug" else label) for t, label in make_rows(per_class=5)]
    save_linear(fit_linear([t for t, _ in rows], [label for _, label in rows]), folder / "linear")
    with pytest.raises(ModelFolderError, match=r"member 'linear' \(linear\) predicts"):
        load_scorer(folder)


@pytest.mark.parametrize("tamper", ["garbage", "truncated", "kind-json", "no-kind-file"])
def test_a_tampered_linear_folder_is_refused_with_one_line(
    run: dict[str, Any], tmp_path: Path, tamper: str
) -> None:
    folder = shutil.copytree(run["trains"]["linear"].path("model"), tmp_path / "model")
    skops = folder / "linear.skops"
    if tamper == "garbage":
        skops.write_bytes(b"\x00not a zip file" * 10)
    elif tamper == "truncated":
        skops.write_bytes(skops.read_bytes()[: skops.stat().st_size // 2])
    elif tamper == "kind-json":
        (folder / "lmforge_kind.json").write_text("{not json")
    else:
        (folder / "lmforge_kind.json").unlink()  # then it reads as a transformer folder: no config.json
    with pytest.raises(LmforgeError) as raised:
        load_scorer(folder)
    assert "\n" not in str(raised.value)
    assert str(folder) in str(raised.value)


def test_serving_json_must_agree_with_the_model_folder(run: dict[str, Any], tmp_path: Path) -> None:
    from lmforge.serve.predictor import ServeError, load_predictor

    folder = _version(run, "ensemble", tmp_path)
    path = folder / "export" / "serving.json"
    serving = json.loads(path.read_text())
    path.write_text(json.dumps({**serving, "weights": {"transformer": 0.1, "linear": 0.9}}))
    with pytest.raises(ServeError, match="weights"):
        load_predictor(folder)
    path.write_text(json.dumps({**serving, "kind": "linear"}))
    with pytest.raises(ServeError, match="says kind 'linear'"):
        load_predictor(folder)
    path.write_text(json.dumps({**serving, "linear_onnx": "../../model/linear/linear.skops"}))
    with pytest.raises(LmforgeError, match="not a file of the export"):
        load_predictor(folder)


def _run_copy(run: dict[str, Any], kind: str, tmp_path: Path) -> Path:
    """The run folder with `train/model/` replaced by the `kind` model (as a portfolio run
    that picked it would leave it)."""
    source = run["split"].folder.parent
    copy = shutil.copytree(source, tmp_path / source.name, symlinks=False)
    shutil.rmtree(copy / "train" / "model")
    shutil.copytree(run["trains"][kind].path("model"), copy / "train" / "model")
    return copy


def _ruff_clean(script: Path) -> None:
    import subprocess
    import sys

    from lmforge.eject import LINE_LENGTH

    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed")
    checked = subprocess.run(
        [ruff, "check", "--isolated", "--no-cache", "--select", "E,F,W,I,B,UP,SIM,RUF",
         "--line-length", str(LINE_LENGTH), "--target-version", "py310", str(script)],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_an_ejected_linear_run_is_a_scikit_learn_script_that_reproduces_the_metrics(
    run: dict[str, Any], tmp_path: Path
) -> None:
    import subprocess
    import sys

    from lmforge.eject import eject

    run_dir = _run_copy(run, "linear", tmp_path)
    script = eject(run_dir, run["config"].base_dir, tmp_path / "linear_script.py")
    source = script.read_text()
    assert "import torch" not in source and "transformers" not in source and "lmforge." not in source
    assert "LINEAR_C = 10.0" in source
    _ruff_clean(script)
    out = tmp_path / "metrics.json"
    done = subprocess.run(
        [sys.executable, str(script), "--output", str(out)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "test accuracy" in done.stdout and "test f1_macro" in done.stdout
    # The script refits the same features and head on the same rows: the run's test metrics.
    evaluated = _evaluate(run, "linear").metrics
    ejected = json.loads(out.read_text())
    for name in ("accuracy", "f1_macro", "f1_weighted"):
        assert ejected[name] == pytest.approx(evaluated[name], abs=1e-9), name


def test_an_ejected_ensemble_adds_the_linear_member_and_the_weighted_average(
    run: dict[str, Any], tmp_path: Path
) -> None:
    import subprocess
    import sys

    from lmforge.eject import eject

    run_dir = _run_copy(run, "ensemble", tmp_path)
    script = eject(run_dir, run["config"].base_dir, tmp_path / "ensemble_script.py")
    source = script.read_text()
    assert f"TRANSFORMER_WEIGHT = {WEIGHTS[0]}" in source and f"LINEAR_WEIGHT = {WEIGHTS[1]}" in source
    _ruff_clean(script)
    model = tmp_path / "ejected-model"
    done = subprocess.run(
        [sys.executable, str(script), "--max-steps", "2", "--output-dir", str(model)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ensemble validation macro-F1" in done.stdout
    metrics = json.loads((model / "ensemble_validation_metrics.json").read_text())
    assert 0.0 <= metrics["f1_macro"] <= 1.0


def _register(run: dict[str, Any], kind: str, *, name: str | None = None) -> str:
    """Log the `kind` model and its export to the test project's MLflow store as the register
    stage does (model/ and export/ artifacts, a version with the task tag, `champion`)."""
    from lmforge.registry import client_for, experiment_id, tracking_uri
    from lmforge.registry.names import CHAMPION, TASK_TAG

    config = run["config"]
    uri = tracking_uri(config)
    client = client_for(uri)
    name = name or f"kinds-{kind}"
    mlflow_run = client.create_run(experiment_id(client, config))
    run_id = mlflow_run.info.run_id
    client.log_artifacts(run_id, str(run["trains"][kind].path("model")), "model")
    export = _export(run, kind).folder
    for path in sorted(export.iterdir()):
        if path.is_file() and path.name != "manifest.json":
            client.log_artifact(run_id, str(path), "export")
    client.set_terminated(run_id)
    client.create_registered_model(name)
    version = client.create_model_version(
        name, source=f"{mlflow_run.info.artifact_uri}/model", run_id=run_id, tags={TASK_TAG: "classification"}
    )
    client.set_registered_model_alias(name, CHAMPION, version.version)
    return uri


@pytest.mark.parametrize("kind", ["linear", "ensemble"])
def test_a_registered_model_of_each_kind_answers_v1_classify_with_the_evaluated_probabilities(
    run: dict[str, Any], kind: str, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from lmforge.config import ServeConfig
    from lmforge.serve.app import create_app
    from lmforge.serve.keys import KeyStore

    uri = _register(run, kind)
    state = tmp_path / "state"
    state.mkdir()
    secret = KeyStore(state / "keys.db").create("predict", name="predict").secret
    cfg = ServeConfig(state_dir=str(state), reload_seconds=0, max_texts=64)
    predictions = _evaluate(run, kind).table("predictions").head(12)
    texts = predictions["text"].tolist()
    with TestClient(create_app(f"kinds-{kind}@champion", uri, cfg)) as client:
        headers = {"Authorization": f"Bearer {secret}"}
        models = client.get("/v1/models", headers=headers).json()["data"][0]
        assert models["runtime"] == "onnx" and "linear_head.onnx" in models["file"]
        reply = client.post("/v1/classify", json={"texts": texts}, headers=headers)
        assert reply.status_code == 200, reply.text
    served = reply.json()["predictions"]
    # An int8 graph (shipped within export.max_accuracy_drop) is close, not equal.
    tolerance = 0.05 if "int8" in models["file"] else 1e-5
    expected = load_scorer(run["trains"][kind].path("model")).proba(texts)
    labels = load_scorer(run["trains"][kind].path("model")).labels
    for answer, row, predicted, confidence in zip(
        served, expected, predictions["predicted"], predictions["confidence"], strict=True
    ):
        assert answer["confidence"] == pytest.approx(confidence, abs=tolerance)
        for label, p in zip(labels, row, strict=True):
            assert answer["probabilities"][label] == pytest.approx(float(p), abs=tolerance)
        if tolerance < 1e-3:
            assert answer["label"] == predicted


@pytest.mark.parametrize("tamper", ["garbage", "other-width", "outside"])
def test_a_tampered_linear_head_graph_is_refused_with_one_line(
    run: dict[str, Any], tmp_path: Path, tamper: str
) -> None:
    from lmforge.serve.predictor import load_predictor

    folder = _version(run, "linear", tmp_path)
    graph = folder / "export" / "linear_head.onnx"
    if tamper == "garbage":
        graph.write_bytes(b"\x08\x07not a graph" * 50)
    elif tamper == "other-width":  # the head of a model fitted on other texts: another vocabulary
        from lmforge.classical.linear import fit_linear
        from lmforge.classical.onnx import export_head

        rows = make_rows(per_class=6, seed=3)
        export_head(fit_linear([t for t, _ in rows], [label for _, label in rows]), graph)
    else:
        serving = json.loads((folder / "export" / "serving.json").read_text())
        (folder / "export" / "serving.json").write_text(json.dumps({**serving, "onnx": "/etc/passwd"}))
    with pytest.raises(LmforgeError) as raised:
        load_predictor(folder)
    assert "\n" not in str(raised.value)
    assert "linear_head.onnx" in str(raised.value) or "/etc/passwd" in str(raised.value)


@pytest.mark.parametrize("kind", ["linear", "ensemble"])
def test_the_gate_scores_a_champion_of_each_kind_like_evaluate(
    run: dict[str, Any], kind: str, tmp_path: Path
) -> None:
    from lmforge.registry import client_for
    from lmforge.registry.names import CHAMPION
    from lmforge.stages.gate import _score_champion

    client = client_for(_register(run, kind, name=f"gate-{kind}"))
    champion = client.get_model_version_by_alias(f"gate-{kind}", CHAMPION)
    test, labels = run["split"].table("test"), run["split"].json("labels")
    ctx = _ctx(run, "gate", tmp_path / "gate")
    score = _score_champion(ctx, client, champion, test, labels, "f1_macro")
    assert score == pytest.approx(_evaluate(run, kind).metrics["f1_macro"], abs=1e-9)


@pytest.mark.parametrize("kind", ["linear", "ensemble"])
def test_without_onnx_export_the_kind_is_served_in_process(
    run: dict[str, Any], kind: str, tmp_path: Path
) -> None:
    from lmforge.serve.predictor import load_predictor
    from lmforge.stages import export

    out = tmp_path / "export"
    inputs = {"split": run["split"], "train": run["trains"][kind], "evaluate": _evaluate(run, kind)}
    cfg = run["config"].export.model_copy(update={"onnx": False})
    export.run(_ctx(run, "export", out), cfg, inputs)
    serving = json.loads((out / "serving.json").read_text())
    assert (serving["kind"], serving["onnx"]) == (kind, None)
    assert "## Export checks" not in (out / "MODEL_CARD.md").read_text()
    folder = tmp_path / "version"
    shutil.copytree(run["trains"][kind].path("model"), folder / "model")
    shutil.copytree(out, folder / "export")
    predictor = load_predictor(folder)
    assert predictor.runtime == "torch"
    texts = run["split"].table("test")["text"].tolist()[:5]
    expected = load_scorer(run["trains"][kind].path("model")).proba(texts)
    got = [max(a.probabilities.values()) for a in predictor.classify(texts)]
    np.testing.assert_allclose(got, expected.max(axis=1), atol=1e-5)


def test_a_version_without_an_export_folder_is_served_in_process(run: dict[str, Any], tmp_path: Path) -> None:
    from lmforge.serve.predictor import load_predictor

    folder = tmp_path / "version"
    shutil.copytree(run["trains"]["linear"].path("model"), folder / "model")
    predictor = load_predictor(folder)
    assert (predictor.runtime, predictor.labels) == ("torch", load_scorer(folder / "model").labels)


def test_the_ui_playground_answers_with_a_linear_model(run: dict[str, Any], tmp_path: Path) -> None:
    import yaml

    from lmforge.serve.keys import KeyStore
    from lmforge.ui.app import create_ui_app, project_for
    from tests.ui_support import logged_in

    name = "playground-linear"
    _register(run, "linear", name=name)
    path = tmp_path / "lmforge.yaml"
    state = str(tmp_path / "state")
    config = {**run["dict"], "serve": {"state_dir": state}, "register": {"model_name": name}}
    path.write_text(yaml.safe_dump(config))
    key = KeyStore(tmp_path / "state" / "keys.db").create("predict", name="player").secret
    client = logged_in(create_ui_app(project_for(path)), key)
    text = run["split"].table("test")["text"].iloc[0]
    reply = client.post("/playground/classify", json={"version": "1", "text": text})
    assert reply.status_code == 200, reply.text
    scorer = load_scorer(run["trains"]["linear"].path("model"))
    expected = dict(zip(scorer.labels, scorer.proba([text])[0].tolist(), strict=True))
    assert reply.json()["probabilities"] == pytest.approx(expected, abs=1e-5)
