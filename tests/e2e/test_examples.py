"""Every shipped example config runs through the real CLI (fewer steps via --set)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(ROOT.glob("examples/*/lmforge.yaml"))

pytestmark = pytest.mark.e2e

# CPU decoding is slow: generation examples answer fewer, shorter test prompts here.
FEWER = {"support-replies": ["evaluate.generation_rows=2", "evaluate.max_new_tokens=8"]}


def test_there_is_an_example() -> None:
    assert EXAMPLES


@pytest.mark.parametrize("config", EXAMPLES, ids=[p.parent.name for p in EXAMPLES])
def test_example_runs_end_to_end(config: Path, tmp_path: Path) -> None:
    overrides = [
        "train.max_steps=4",
        "train.eval_steps=2",
        f"output_dir={tmp_path / 'runs'}",
        f"tracking.uri=sqlite:///{tmp_path / 'mlruns.db'}",
        *FEWER.get(config.parent.name, []),
    ]
    command = [sys.executable, "-m", "lmforge.cli", "run", str(config)]
    for item in overrides:
        command += ["--set", item]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fine-tuned model" in done.stdout and "version 1" in done.stdout
    reports = list((tmp_path / "runs").glob("*/report/report.html"))
    assert len(reports) == 1
    # A rerun with nothing changed reuses every stage but the gate (never cached).
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    cached = re.search(r"\((\d+) of (\d+) stages cached\)", again.stdout)
    assert cached and int(cached[1]) == int(cached[2]) - 1, again.stdout


def test_automl_example_runs_end_to_end(tmp_path: Path) -> None:
    config = ROOT / "examples" / "support-intents" / "automl.yaml"
    overrides = [
        "select.probe_rows=60",
        "select.latency_texts=4",
        "select.max_latency_ms=null",  # a loaded CI machine is slow; the limit is tested in unit tests
        "tune.trials=2",
        "train.max_steps=4",
        "train.eval_steps=2",
        "gate.min={}",
        "gate.min_gain=-1",
        f"output_dir={tmp_path / 'runs'}",
        f"tracking.uri=sqlite:///{tmp_path / 'mlruns.db'}",
    ]
    command = [sys.executable, "-m", "lmforge.cli", "run", str(config)]
    for item in overrides:
        command += ["--set", item]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "as champion" in done.stdout
    run = next((tmp_path / "runs").glob("*/report/report.html"))
    html = run.read_text()
    assert "Model selection" in html and "Hyperparameter search" in html and "Quality gate" in html
