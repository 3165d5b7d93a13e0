"""Ray Train's overhead over the plain train stage (issue "Outgrowing one machine", part a).

Same data, model, settings and step count, side by side in one run:

  plain         fit_classifier in this process, torch on `--threads` threads
  ray 1 x T     Ray Train, one worker with T CPUs (Ray's own cost, no communication)
  ray 2 x T/2   Ray Train, two workers with T/2 CPUs each (gloo all-reduce of the gradients)

Printed per arm: training seconds (the Trainer's own train_runtime, so model loading and Ray's
start-up are apart), seconds per optimizer step, wall seconds of the whole call, validation
accuracy; and each Ray arm's overhead per step over the plain arm. On a 2-core machine two
workers cannot be faster than one process using both cores: the figure is the overhead.

    python bench/bench_scale.py [--rows 2000 --steps 40 --threads 2]

`--task causal`: the same three arms for the causal train stage (bench/scale_causal.py:
smollm2-135m, LoRA unless `--method`, on samsum instruction rows).

    python bench/bench_scale.py --task causal [--rows 160 --steps 20 --method lora]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def _frames(rows: int) -> tuple[Any, Any, list[str]]:
    import pandas as pd

    frame = pd.read_csv(DATA / "emotion.csv").sample(n=rows + 500, random_state=0)
    frame["label"] = frame["label"].astype(str)
    train, validation = frame.iloc[:rows], frame.iloc[rows:]
    return train, validation, sorted(frame["label"].unique())


def _config(steps: int) -> Any:
    from lmforge.config import TrainConfig

    return TrainConfig(
        max_steps=steps,
        batch_size=32,
        max_length=64,
        learning_rate=1e-4,
        early_stopping_patience=None,
        eval_steps=steps,
    )


def plain(train: Any, validation: Any, labels: list[str], steps: int, threads: int) -> dict[str, Any]:
    import torch

    from lmforge.training.fit import fit_classifier

    torch.set_num_threads(threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        fit = fit_classifier("minilm-l6", ROOT, labels, train, validation, _config(steps), Path(folder))
    history = fit.trainer.state.log_history
    return _row("plain", 1, threads, history, fit.steps, time.perf_counter() - started)


def on_ray(
    train: Any, validation: Any, labels: list[str], steps: int, workers: int, cpus: float
) -> dict[str, Any]:
    from lmforge.config import ExecutorConfig
    from lmforge.training.ray_train import fit_classifier_on_ray

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        fit = fit_classifier_on_ray(
            "minilm-l6",
            ROOT,
            labels,
            train,
            validation,
            _config(steps),
            ExecutorConfig(type="ray", train_workers=workers, cpus_per_worker=cpus),
            Path(folder) / "storage",
            f"bench-{workers}",
            Path(folder) / "model",
        )
    return _row(
        f"ray {workers} x {cpus:g}", workers, cpus, fit.log_history, fit.steps, time.perf_counter() - started
    )


def _row(
    arm: str, workers: int, cpus: float, history: list[dict[str, Any]], steps: int, wall: float
) -> dict[str, Any]:
    runtime = next(entry["train_runtime"] for entry in reversed(history) if "train_runtime" in entry)
    accuracy = next(entry["eval_accuracy"] for entry in reversed(history) if "eval_accuracy" in entry)
    return {
        "arm": arm,
        "workers": workers,
        "cpus": cpus,
        "steps": steps,
        "train_s": runtime,
        "s_per_step": runtime / max(1, steps),
        "wall_s": wall,
        "accuracy": accuracy,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=None, help="2000; --task causal: 160")
    parser.add_argument("--steps", type=int, default=None, help="40; --task causal: 20")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--task", choices=["classification", "causal"], default="classification")
    parser.add_argument("--method", default="lora", help="--task causal: full, lora or freeze")
    args = parser.parse_args()
    if args.task == "causal":
        import sys

        sys.path.insert(0, str(ROOT / "bench"))
        from scale_causal import causal_part

        causal_part(args.rows or 160, args.steps or 20, args.threads, args.method)
        return
    args.rows, args.steps = args.rows or 2000, args.steps or 40
    if not (DATA / "emotion.csv").exists():
        raise SystemExit(f"skipped: {DATA / 'emotion.csv'} is absent")
    train, validation, labels = _frames(args.rows)
    rows = [
        plain(train, validation, labels, args.steps, args.threads),
        on_ray(train, validation, labels, args.steps, 1, float(args.threads)),
        on_ray(train, validation, labels, args.steps, 2, args.threads / 2),
    ]
    base = rows[0]["s_per_step"]
    print("| arm | steps | train s | s/step | overhead/step | wall s | val accuracy |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        overhead = row["s_per_step"] / base - 1
        print(
            f"| {row['arm']} | {row['steps']} | {row['train_s']:.1f} | {row['s_per_step']:.3f} | "
            f"{overhead:+.0%} | {row['wall_s']:.1f} | {row['accuracy']:.3f} |"
        )


if __name__ == "__main__":
    main()
