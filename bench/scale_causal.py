"""bench_scale.py `--task causal`: Ray Train's overhead over the plain causal train stage.

smollm2-135m (LoRA unless `--method`) on the instruction rows of `samsum_sample.jsonl`, the
recipe and encoding done once (`prepare_causal`) as the causal train stage does, then the same
settings and step count three ways: `fit_causal_lm` in this process on T threads, Ray Train
with one worker of T CPUs, and with two workers of T/2 CPUs (a global batch of 8: 4 a worker).
Printed per arm: the median optimizer step (the train stage's `median_step_seconds`) and its
overhead over the plain arm; the Trainer's own train_runtime (model load and Ray start-up apart)
per step and its overhead; wall seconds and the validation loss.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
MODEL = "smollm2-135m"


def causal_data(rows: int, steps: int, method: str) -> Any:
    """samsum instruction rows as messages, resolved and encoded once (`prepare_causal`)."""
    import pandas as pd

    from lmforge.config import TrainConfig
    from lmforge.tasks.generation import conversation
    from lmforge.training.causal_fit import prepare_causal

    lines = (DATA / "samsum_sample.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    messages = [json.dumps(conversation(r["instruction"], r.get("input"), r["output"])) for r in records]
    frame = pd.DataFrame({"messages": messages})
    cfg = TrainConfig(
        method=method,
        max_steps=steps,
        batch_size=8,
        max_length=128,
        learning_rate=2e-4,
        early_stopping_patience=None,
        eval_steps=steps,
        eval_batch_size=8,
    )
    return prepare_causal(MODEL, ROOT, cfg, frame.iloc[:rows], frame.iloc[rows : rows + 16], lm=False)


def plain(data: Any, threads: int) -> dict[str, Any]:
    import torch

    from lmforge.training.causal_fit import fit_causal_lm

    torch.set_num_threads(threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        fit = fit_causal_lm(
            MODEL, ROOT, data.tokenizer, data.train, data.validation, data.settings, Path(folder)
        )
    history = fit.trainer.state.log_history
    return _row("plain", history, fit.steps, time.perf_counter() - started, fit.median_step_seconds)


def on_ray(data: Any, workers: int, cpus: float) -> dict[str, Any]:
    from lmforge.config import ExecutorConfig
    from lmforge.training.ray_causal import fit_causal_lm_on_ray

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        fit = fit_causal_lm_on_ray(
            MODEL,
            ROOT,
            data,
            ExecutorConfig(type="ray", train_workers=workers, cpus_per_worker=cpus),
            Path(folder) / "storage",
            f"bench-causal-{workers}",
            Path(folder) / "model",
        )
    wall = time.perf_counter() - started
    return _row(f"ray {workers} x {cpus:g}", fit.log_history, fit.steps, wall, fit.median_step_seconds)


def _row(arm: str, history: list[dict[str, Any]], steps: int, wall: float, step: Any) -> dict[str, Any]:
    runtime = next(entry["train_runtime"] for entry in reversed(history) if "train_runtime" in entry)
    loss = next(entry["eval_loss"] for entry in reversed(history) if "eval_loss" in entry)
    return {"arm": arm, "steps": steps, "train_s": runtime, "s_per_step": runtime / max(1, steps)} | {
        "wall_s": wall,
        "loss": loss,
        "step_s": float(step),
    }


def causal_part(rows: int, steps: int, threads: int, method: str) -> None:
    if not (DATA / "samsum_sample.jsonl").exists():
        raise SystemExit(f"skipped: {DATA / 'samsum_sample.jsonl'} is absent")
    data = causal_data(rows, steps, method)
    results = [plain(data, threads), on_ray(data, 1, float(threads)), on_ray(data, 2, threads / 2)]
    base, step_base = results[0]["s_per_step"], results[0]["step_s"]
    print(f"causal, {MODEL} {method}, {rows} rows, {steps} steps of a global batch of 8 at max_length 128")
    print(
        "| arm | steps | median step s | overhead | train s | train s/step | overhead | wall s | val loss |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r['arm']} | {r['steps']} | {r['step_s']:.3f} | {r['step_s'] / step_base - 1:+.0%} | "
            f"{r['train_s']:.1f} | {r['s_per_step']:.3f} | {r['s_per_step'] / base - 1:+.0%} | "
            f"{r['wall_s']:.1f} | {r['loss']:.3f} |"
        )
