"""`lmforge eject`: a standalone script that reproduces a run's training without lmforge."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from lmforge.cli import app
from lmforge.config import TrainConfig, load_config
from lmforge.eject import LINE_LENGTH, EjectSpec, python_literal, read_run, render_script
from lmforge.pipeline.runner import run_pipeline
from tests.conftest import fast_config, make_rows, write_csv

runner = CliRunner()

# Every regularisation switch on, so the ejected script exercises all of them.
TRAIN = {
    "epochs": 1,
    "dropout": 0.2,
    "freeze_layers": 1,
    "label_smoothing": 0.1,
    "adversarial": "fgm",
    "adversarial_epsilon": 0.5,
    "early_stopping_patience": 1,
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """A config file whose runs folder holds one finished run (through `train`)."""
    folder = tmp_path_factory.mktemp("eject")
    data = write_csv(folder / "data.csv", make_rows())
    config = fast_config(folder, data, tiny_model)
    config["train"].update(TRAIN)
    path = folder / "lmforge.yaml"
    path.write_text(yaml.safe_dump(config))
    run_pipeline(load_config(path), until="train")
    return path


@pytest.fixture(scope="module")
def lora_project(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """Like `project`, but the run trained LoRA adapters on the tiny BERT."""
    folder = tmp_path_factory.mktemp("eject-lora")
    data = write_csv(folder / "data.csv", make_rows())
    config = fast_config(folder, data, tiny_model)
    config["train"].update(
        {"epochs": 1, "method": "lora", "lora_r": 4, "lora_target_modules": ["query", "value"]}
    )
    path = folder / "lmforge.yaml"
    path.write_text(yaml.safe_dump(config))
    run_pipeline(load_config(path), until="train")
    return path


def _run_dir(project: Path) -> Path:
    runs = sorted(p for p in (project.parent / "runs").iterdir() if (p / "train/manifest.json").exists())
    return runs[0]


def _eject(project: Path, target: str, out: Path, *extra: str) -> tuple[int, str]:
    result = runner.invoke(app, ["eject", target, "--config", str(project), "--out", str(out), *extra])
    return result.exit_code, result.output


def _imports(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    return names


def _ruff(script: Path) -> None:
    """The project's rule set at ruff's default line length: clean in any project."""
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


def _load(script: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("ejected_script", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines constants and functions; main() is not run
    return module


def test_ejected_script_trains_without_lmforge(project: Path, tmp_path: Path) -> None:
    run_dir = _run_dir(project)
    script = tmp_path / "train_script.py"
    code, output = _eject(project, run_dir.name, script)
    assert code == 0, output
    assert "wrote" in output
    source = script.read_text()
    compile(source, str(script), "exec")
    assert "lmforge" not in _imports(source)
    assert {"transformers", "torch", "sklearn", "pandas"} <= _imports(source)
    assert "peft" not in _imports(source)  # a full fine-tune needs no peft
    _ruff(script)

    used = json.loads((run_dir / "train/hyperparameters.json").read_text())
    ejected = _load(script)
    for constant, key in [
        ("LEARNING_RATE", "learning_rate"),
        ("EPOCHS", "epochs"),
        ("BATCH_SIZE", "batch_size"),
        ("MAX_LENGTH", "max_length"),
        ("DROPOUT", "dropout"),
        ("FREEZE_LAYERS", "freeze_layers"),
        ("LABEL_SMOOTHING", "label_smoothing"),
        ("FGM_EPSILON", "adversarial_epsilon"),
        ("EARLY_STOPPING_PATIENCE", "early_stopping_patience"),
        ("SEED", "seed"),
    ]:
        assert getattr(ejected, constant) == used[key], constant
    constants = vars(ejected)
    assert constants["LABELS"] == json.loads((run_dir / "split/labels.json").read_text())
    assert Path(ejected.MODEL).is_absolute() and (Path(ejected.MODEL) / "config.json").exists()
    assert constants["TRAIN_FILE"] == str(run_dir / "augment/train.parquet")
    assert constants["VALIDATION_FILE"] == str(run_dir / "split/validation.parquet")
    assert "class RunTrainer(Trainer)" in source and "def training_step" in source

    model_dir = tmp_path / "model"
    done = subprocess.run(
        [sys.executable, str(script), "--max-steps", "3", "--output-dir", str(model_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "validation accuracy" in done.stdout and "validation macro-F1" in done.stdout
    metrics = json.loads((model_dir / "validation_metrics.json").read_text())
    assert 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["f1_macro"] <= 1
    assert not (model_dir / "checkpoints").exists()

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    assert [model.config.id2label[i] for i in range(model.config.num_labels)] == constants["LABELS"]
    AutoTokenizer.from_pretrained(model_dir)


def test_ejected_lora_script_saves_adapter_and_merged_model(lora_project: Path, tmp_path: Path) -> None:
    run_dir = _run_dir(lora_project)
    script = tmp_path / "train_script.py"
    code, output = _eject(lora_project, run_dir.name, script)
    assert code == 0, output
    source = script.read_text()
    assert "lmforge" not in _imports(source)
    assert {"peft", "transformers"} <= _imports(source)
    _ruff(script)
    ejected = _load(script)
    assert ejected.LORA_R == 4 and ejected.LORA_TARGET_MODULES == ["query", "value"]
    used = json.loads((run_dir / "train/hyperparameters.json").read_text())
    assert used["lora_alpha"] == ejected.LORA_ALPHA and used["lora_dropout"] == ejected.LORA_DROPOUT

    model_dir = tmp_path / "model"
    done = subprocess.run(
        [sys.executable, str(script), "--max-steps", "3", "--output-dir", str(model_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    adapter_dir = tmp_path / "model-adapter"
    assert (adapter_dir / "adapter_config.json").is_file()
    adapter = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and sorted(adapter["target_modules"]) == ["query", "value"]
    assert not (model_dir / "adapter_config.json").exists()  # the merged model is plain
    assert not (model_dir / "checkpoints").exists()

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    names = [name for name, _ in model.named_parameters()]
    assert names and not [name for name in names if "lora" in name.lower()]
    assert [model.config.id2label[i] for i in range(model.config.num_labels)] == ejected.LABELS
    AutoTokenizer.from_pretrained(model_dir)


def test_script_reads_csv_with_text_and_label(project: Path, tmp_path: Path) -> None:
    script = tmp_path / "train_script.py"
    assert _eject(project, str(_run_dir(project)), script)[0] == 0  # a run folder works too
    ejected = _load(script)
    rows = write_csv(tmp_path / "rows.csv", [("a parcel", "shipping"), ("my invoice", "billing")])
    frame = ejected.read_rows(str(rows))
    assert frame["label"].tolist() == ["shipping", "billing"]
    write_csv(tmp_path / "bad.csv", [("x", "nonsense")])
    with pytest.raises(SystemExit, match="nonsense"):
        ejected.read_rows(str(tmp_path / "bad.csv"))


def _spec(run_dir: Path, **changes: Any) -> EjectSpec:
    spec = EjectSpec(
        run_dir=run_dir,
        model_reference="minilm-l6",
        model_folder=run_dir / "model",
        labels=["a", "b"],
        train_file=run_dir / "augment/train.parquet",
        validation_file=run_dir / "split/validation.parquet",
        hyperparameters=TrainConfig(),
    )
    return dataclasses.replace(spec, **changes)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {
            "hyperparameters": TrainConfig.model_validate({**TRAIN, "eval_steps": 5}),
            "tuned": ["learning_rate", "epochs", "batch_size", "weight_decay", "warmup_ratio", "dropout"],
            "restarts": [{"new_learning_rate": 2.5e-5}],
            "ensemble": True,
        },
        {"labels": [f'label "{i}" with \\ and ünïcode and a rather long name' for i in range(8)]},
        {"hyperparameters": TrainConfig(method="lora")},
        {
            "hyperparameters": TrainConfig.model_validate(
                {**TRAIN, "method": "lora", "lora_r": 16, "lora_target_modules": ["q_proj", "v_proj"]}
            )
        },
    ],
    ids=["defaults", "every-switch", "awkward-labels", "lora-default-targets", "lora-every-switch"],
)
def test_every_variant_renders_clean_python(tmp_path: Path, changes: dict[str, Any]) -> None:
    deep = tmp_path / ("a very long folder name with spaces and 'quotes' " * 3).strip() / "runs"
    spec = _spec(deep / "20261124-073000-ab12", **changes)
    script = tmp_path / "train_script.py"
    script.write_text(render_script(spec, script, tmp_path / "out"))
    _ruff(script)
    constants = vars(_load(script))
    assert constants["LABELS"] == spec.labels
    assert constants["TRAIN_FILE"] == str(spec.train_file)
    assert constants["LEARNING_RATE"] == spec.hyperparameters.learning_rate
    assert ("def training_step" in script.read_text()) == (spec.hyperparameters.adversarial == "fgm")
    lora = spec.hyperparameters.method == "lora"
    assert ("peft" in _imports(script.read_text())) == lora
    if lora:
        assert constants["LORA_R"] == spec.hyperparameters.lora_r
        assert constants["LORA_TARGET_MODULES"] == spec.hyperparameters.lora_target_modules


@pytest.mark.parametrize("text", ["short", "/x/" * 60, "no slashes " * 20, 'q"uo\\te/' * 30, "é/" * 80])
def test_python_literal_round_trips_within_the_line_length(text: str) -> None:
    source = python_literal(text)
    assert ast.literal_eval(source) == text
    assert all(len(line) <= LINE_LENGTH for line in source.splitlines())


def test_unknown_run_id_is_a_user_error(project: Path, tmp_path: Path) -> None:
    code, output = _eject(project, "20990101-000000-0000", tmp_path / "s.py")
    assert code == 1 and "no run '20990101-000000-0000'" in output and "lmforge runs" in output
    assert "Traceback" not in output


def test_run_without_a_train_stage_is_a_user_error(project: Path, tmp_path: Path) -> None:
    result = run_pipeline(load_config(project), until="split")
    code, output = _eject(project, result.run_id, tmp_path / "s.py")
    assert code == 1 and "has no finished train stage" in output, output
    assert not (tmp_path / "s.py").exists()


def test_existing_script_needs_force(project: Path, tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("# mine\n")
    code, output = _eject(project, _run_dir(project).name, script)
    assert code == 1 and "exists" in output and "--force" in output
    assert script.read_text() == "# mine\n"
    code, output = _eject(project, _run_dir(project).name, script, "--force")
    assert code == 0, output
    assert "TrainingArguments" in script.read_text()


def test_read_run_prefers_the_hyperparameters_used(project: Path) -> None:
    spec = read_run(_run_dir(project), project.parent)
    assert spec.hyperparameters.adversarial == "fgm" and spec.hyperparameters.dropout == 0.2
    assert spec.labels == sorted({label for _, label in make_rows()})
