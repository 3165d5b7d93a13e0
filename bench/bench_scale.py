"""Scale-out figures (issue "Outgrowing one machine"): (a) Ray Train's overhead over the plain
train stage, (b) the clean stage on 100k-1M synthetic rows, single-process vs Ray Data.

(a) `--part train` (the default): Ray Train's overhead over the plain train stage.

Same data, model, settings and step count, side by side in one run:

  plain         fit_classifier in this process, torch on `--threads` threads
  2 plain x T/2 two plain processes at once, T/2 threads, half the batch each, no all-reduce
  ray 1 x T     Ray Train, one worker with T CPUs (Ray's own cost, no communication)
  ray 2 x T/2   Ray Train, two workers with T/2 CPUs each (gloo all-reduce of the gradients,
                the word embedding's touched rows only: training/row_allreduce.py)
  ray 2 x T/2, dense all-reduce   the same with DDP's plain all-reduce of every gradient
  plain T/2, ray 1 x T/2          a core to spare for Ray's own processes: its cost then

Printed per arm: the median seconds of an optimizer step (forward, backward, the all-reduce,
the optimizer; the train stage's `median_step_seconds`, timed in the worker: evaluation and
checkpoints apart) and each Ray arm's overhead on it over the plain arm; the Trainer's own
train_runtime (model loading and Ray's start-up apart, the evaluation and the checkpoint Ray copies
to its storage in) per step; wall seconds of the whole call; validation accuracy. On a 2-core
machine two workers cannot be faster than one process using both cores: the figure is the overhead.

The arms run once per round, `--rounds` rounds one after another (a drift of the machine's
speed touches every arm alike); printed are the medians over the rounds, and each overhead is
taken within its round: median [lowest, highest].

    python bench/bench_scale.py [--rows 2000 --steps 40 --threads 2 --rounds 3]

(b) `--part clean`: ingest -> validate -> clean through the real pipeline on a synthetic file
(bench/scale_data.py: ~100-character texts with exact and near-duplicates, e-mails, phones,
mojibake; label noise off, it is its own figure in bench_noise_probe.py). Each arm runs in a
child process of its own; printed: rows/s of the clean stage and of the three stages together,
and peak RSS: the child's ru_maxrss, and for the Ray arm the peak of the summed RSS of the
child's whole process tree (raylet, workers), sampled every 0.2 s.

    python bench/bench_scale.py --part clean [--rows 100000 --arms single,ray]

`--part allreduce`: the gradient all-reduce alone, plain vs the touched embedding rows
(bench/scale_allreduce.py).

    python bench/bench_scale.py --part allreduce [--repeats 20]

`--task causal`: the same three arms for the causal train stage (bench/scale_causal.py:
smollm2-135m, LoRA unless `--method`, on samsum instruction rows).

    python bench/bench_scale.py --task causal [--rows 160 --steps 20 --method lora]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
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


def _config(steps: int, batch: int = 32) -> Any:
    from lmforge.config import TrainConfig

    return TrainConfig(
        max_steps=steps,
        batch_size=batch,
        max_length=64,
        learning_rate=1e-4,
        early_stopping_patience=None,
        eval_steps=steps,
    )


def plain(
    train: Any, validation: Any, labels: list[str], steps: int, threads: int, batch: int = 32
) -> dict[str, Any]:
    import torch

    from lmforge.training.fit import fit_classifier

    torch.set_num_threads(threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        fit = fit_classifier(
            "minilm-l6", ROOT, labels, train, validation, _config(steps, batch), Path(folder)
        )
    history = fit.trainer.state.log_history
    return _row(
        "plain", 1, threads, history, fit.steps, time.perf_counter() - started, fit.median_step_seconds
    )


def pair(rows: int, steps: int, threads: int) -> dict[str, Any]:
    """Two plain processes at once, each on half the threads, half the batch and every other
    train row, with no communication: what two workers on this machine cost before Ray and the
    all-reduce (they share its caches and memory bandwidth)."""
    with tempfile.TemporaryDirectory() as folder:
        outs = [Path(folder) / f"{i}.json" for i in range(2)]
        children = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--part",
                    "pair-arm",
                    "--arm",
                    str(i),
                    "--rows",
                    str(rows),
                    "--steps",
                    str(steps),
                    "--threads",
                    str(threads),
                    "--result",
                    str(out),
                ]
            )
            for i, out in enumerate(outs)
        ]
        if any(child.wait() != 0 for child in children):
            raise SystemExit("a process of the pair failed")
        results = [json.loads(out.read_text()) for out in outs]
    row = dict(results[0])
    for key in ("train_s", "s_per_step", "wall_s", "step_s"):
        row[key] = max(r[key] for r in results)  # a data-parallel step waits for the slower
    row["accuracy"] = float("nan")
    row["arm"] = f"2 plain processes x {threads // 2}, no all-reduce"
    return row


def on_ray(
    train: Any, validation: Any, labels: list[str], steps: int, workers: int, cpus: float, dense: bool = False
) -> dict[str, Any]:
    """`dense`: DDP's plain all-reduce of every gradient, not the word embedding's touched rows
    alone (training/row_allreduce.py); the local Ray started here passes the switch on."""
    from lmforge.config import ExecutorConfig
    from lmforge.training.ray_train import fit_classifier_on_ray
    from lmforge.training.row_allreduce import SWITCH

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder, _environment(SWITCH, "0" if dense else None):
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
        f"ray {workers} x {cpus:g}" + (", dense all-reduce" if dense else ""),
        workers,
        cpus,
        fit.log_history,
        fit.steps,
        time.perf_counter() - started,
        fit.median_step_seconds,
    )


@contextlib.contextmanager
def _environment(name: str, value: str | None) -> Any:
    before = os.environ.pop(name, None)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)
        if before is not None:
            os.environ[name] = before


def _row(
    arm: str, workers: int, cpus: float, history: list[dict[str, Any]], steps: int, wall: float, step: Any
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
        "step_s": float(step),
    }


def clean_arm(data: Path, folder: Path, arm: str) -> dict[str, Any]:
    """One arm of part (b), in this (child) process: the pipeline up to clean on `data`."""
    from lmforge.config import load_config
    from lmforge.pipeline.runner import run_pipeline

    config = {
        "project": "bench-scale",
        "data": {"train": str(data)},
        "clean": {"label_noise": "off"},
        "output_dir": str(folder / "runs"),
    }
    if arm == "ray":
        config["executor"] = {"type": "ray"}
    started = time.perf_counter()
    run_pipeline(load_config(data=config), until="clean")
    wall = time.perf_counter() - started
    manifest = json.loads(sorted((folder / "runs").glob("2*/clean/manifest.json"))[-1].read_text())
    return {"clean_s": manifest["seconds"], "wall_s": wall, "rows": manifest["rows"]}


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        root = psutil.Process(pid)
        total = root.memory_info().rss
        for child in root.children(recursive=True):
            with contextlib.suppress(psutil.Error):  # a worker may exit between the two calls
                total += child.memory_info().rss
        return int(total)
    except psutil.Error:
        return 0


def measure_clean(data: Path, rows: int, arm: str) -> dict[str, Any]:
    """Run `clean_arm` in a child process; its peak RSS alone (wait4) and its tree's (sampled)."""
    with tempfile.TemporaryDirectory(prefix="lmforge-bench-scale-") as folder:
        out = Path(folder) / "result.json"
        command = [sys.executable, __file__, "--part", "clean-arm", "--arm", arm]
        command += ["--data", str(data), "--work", folder, "--result", str(out)]
        child = subprocess.Popen(command)
        peak_tree, done = 0, threading.Event()

        def sample() -> None:
            nonlocal peak_tree
            while not done.wait(0.2):
                peak_tree = max(peak_tree, _tree_rss(child.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(child.pid, 0)
        done.set()
        sampler.join()
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise SystemExit(f"arm {arm} failed with exit code {child.returncode}")
        result = json.loads(out.read_text())
    result.update(arm=arm, n=rows, rss_mb=usage.ru_maxrss / 1024, tree_mb=peak_tree / 2**20)
    return result


def clean_part(rows: int, arms: list[str]) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    import scale_data

    with tempfile.TemporaryDirectory(prefix="lmforge-bench-scale-data-") as folder:
        data = scale_data.write(Path(folder) / f"synthetic_{rows}.csv", rows)
        results = [measure_clean(data, rows, arm) for arm in arms]
    print(
        "| arm | rows | clean s | clean rows/s | 3 stages s | removed | changed "
        "| peak RSS MB | tree peak MB |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r['arm']} | {r['n']:,} | {r['clean_s']:.1f} | {r['n'] / r['clean_s']:,.0f} | "
            f"{r['wall_s']:.1f} | {r['rows']['removed']:,} | {r['rows']['changed']:,} | "
            f"{r['rss_mb']:,.0f} | {r['tree_mb']:,.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--part", choices=["train", "allreduce", "clean", "clean-arm", "pair-arm"], default="train"
    )
    parser.add_argument("--rows", type=int, default=None, help="(a) 2000, --task causal 160; (b) 100000")
    parser.add_argument("--steps", type=int, default=None, help="40; --task causal: 20")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--task", choices=["classification", "causal"], default="classification")
    parser.add_argument("--method", default="lora", help="--task causal: full, lora or freeze")
    parser.add_argument("--repeats", type=int, default=20, help="--part allreduce: timed all-reduces")
    parser.add_argument("--rounds", type=int, default=3, help="(a): every arm once per round")
    parser.add_argument("--arms", default="single,ray", help="(b) which arms, comma-separated")
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part == "allreduce":
        sys.path.insert(0, str(ROOT / "bench"))
        from scale_allreduce import allreduce_part

        allreduce_part(args.repeats)
        return
    if args.part == "pair-arm":
        train, validation, labels = _frames(args.rows)
        half = train.iloc[int(args.arm) :: 2]
        result = plain(half, validation, labels, args.steps, max(1, args.threads // 2), batch=16)
        args.result.write_text(json.dumps(result))
        return
    if args.part == "clean-arm":
        args.result.write_text(json.dumps(clean_arm(args.data, args.work, args.arm)))
        return
    if args.part == "clean":
        arms = args.arms.split(",")
        if unknown := set(arms) - {"single", "ray"}:
            raise SystemExit(f"--arms: unknown arm(s) {', '.join(sorted(unknown))}; use single, ray")
        clean_part(args.rows or 100_000, arms)
        return
    if args.task == "causal":
        sys.path.insert(0, str(ROOT / "bench"))
        from scale_causal import causal_part

        causal_part(args.rows or 160, args.steps or 20, args.threads, args.method)
        return
    args.rows, args.steps = args.rows or 2000, args.steps or 40
    if not (DATA / "emotion.csv").exists():
        raise SystemExit(f"skipped: {DATA / 'emotion.csv'} is absent")
    train_part(args.rows, args.steps, args.threads, args.rounds)


def train_part(rows: int, steps: int, threads: int, rounds: int) -> None:
    """Part (a): every arm once per round, the rounds one after another, so a drift of the
    machine's speed touches every arm alike; each overhead is taken within its round."""
    import statistics

    train, validation, labels = _frames(rows)
    half = max(1, threads // 2)
    # (name, run, the arm its overhead is measured against)
    arms: list[tuple[str, Any, str]] = [
        (f"plain, {threads} threads", lambda: plain(train, validation, labels, steps, threads), ""),
        (f"2 plain processes x {half} thread(s), no all-reduce", lambda: pair(rows, steps, threads), "plain"),
        (
            f"Ray Train, 1 worker x {threads} CPU",
            lambda: on_ray(train, validation, labels, steps, 1, float(threads)),
            "plain",
        ),
        (
            f"Ray Train, 2 workers x {threads / 2:g} CPU (touched embedding rows)",
            lambda: on_ray(train, validation, labels, steps, 2, threads / 2),
            "plain",
        ),
        (
            f"Ray Train, 2 workers x {threads / 2:g} CPU, DDP's plain all-reduce",
            lambda: on_ray(train, validation, labels, steps, 2, threads / 2, dense=True),
            "plain",
        ),
    ]
    if threads >= 2:
        # With a core to spare for Ray's own processes: its cost when it does not interrupt
        # a worker that uses every core (compared with the plain arm on as many threads).
        arms += [
            (
                f"plain, {half} thread(s) (a core to spare)",
                lambda: plain(train, validation, labels, steps, half),
                "",
            ),
            (
                f"Ray Train, 1 worker x {half} CPU (a core to spare)",
                lambda: on_ray(train, validation, labels, steps, 1, float(half)),
                "spare",
            ),
        ]
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in arms}
    for round_ in range(rounds):
        for name, run, _ in arms:
            print(f"round {round_ + 1}/{rounds}: {name}", file=sys.stderr, flush=True)
            results[name].append(run())
    bases = {"plain": arms[0][0], "spare": arms[5][0] if threads >= 2 else ""}
    print(
        f"{rounds} round(s), the arms in this order in each; median over the rounds, overheads "
        "taken within each round (median [lowest, highest]); the last arm's over the one above it"
    )
    print("| arm | median step s | overhead | train s/step | overhead | wall s | val accuracy |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, _, against in arms:
        runs = results[name]
        cells = [f"{statistics.median(r['step_s'] for r in runs):.3f}"]
        for key in ("step_s", "s_per_step"):
            if against:
                ratios = [r[key] / b[key] - 1 for r, b in zip(runs, results[bases[against]], strict=True)]
                spread = f" [{min(ratios):+.0%}, {max(ratios):+.0%}]" if rounds > 1 else ""
                cells.append(f"{statistics.median(ratios):+.0%}{spread}")
            else:
                cells.append("-")
            if key == "step_s":
                cells.append(f"{statistics.median(r['s_per_step'] for r in runs):.3f}")
        cells.append(f"{statistics.median(r['wall_s'] for r in runs):.1f}")
        accuracy = runs[-1]["accuracy"]
        cells.append("-" if accuracy != accuracy else f"{accuracy:.3f}")  # NaN: the pair has none
        print(f"| {name} | " + " | ".join(cells) + " |")
    # Data parallelism's own cost inside Ray: two workers of T/2 against one of T.
    one, two = results[arms[2][0]], results[arms[3][0]]
    ratios = sorted(b["step_s"] / a["step_s"] - 1 for a, b in zip(one, two, strict=True))
    print(
        f"Ray Train 2 workers x {threads / 2:g} CPU over 1 worker x {threads} CPU, median step: "
        f"{statistics.median(ratios):+.0%} [{ratios[0]:+.0%}, {ratios[-1]:+.0%}]"
    )


if __name__ == "__main__":
    main()
