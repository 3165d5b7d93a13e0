"""Auto mode under a time budget, side by side with today's default run and the TF-IDF baseline
(issue "Auto mode under a hard time budget").

Per data set, every arm runs the real pipeline (`lmforge run`, ingest to register) in a
subprocess on the same config, data and split, so the test rows are the same:

  auto@Nm   `model: auto` + `budget: {minutes: N}`: the portfolio within the budget
  pinned@Nm `model: minilm-l6` + the budget: the pinned model's fine-tune fitted to it (`--arms pinned`)
  default   `model: minilm-l6`, no budget: today's default run (slow: `--arms default`)
  grid:...  a fine-tune with fixed train settings, no budget (`--grid lr=1e-4,epochs=3 ...`)
  tfidf     read from every run's baseline stage (same split, same test rows)

Data sets (from ../shared/data, skipped when absent): emotion (16k train, its 2k test file),
banking77 (10k, its 3k test file), sms_spam (5.5k, 20% held out) and `docstrings`, a long-text
set built here from the docstrings of installed packages (label = the package: numpy, pandas,
scipy, sklearn, torch, matplotlib), 800 per class, texts of 60 words or more.

Printed per set: test accuracy and macro-F1, wall seconds (the whole `lmforge run` process)
against the budget, and the winning candidate. Results are appended to `--out` (JSONL); a
rerun skips arms already there.

    python bench/bench_auto.py --datasets sms_spam emotion --budgets 5 15
    python bench/bench_auto.py --datasets emotion --arms default          # today's default run
    python bench/bench_auto.py --datasets emotion --budgets 15 --arms auto default --seeds 1 2
    python bench/bench_auto.py --summary --out bench/results/auto.jsonl
"""

from __future__ import annotations

import argparse
import inspect
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
LMFORGE = Path(sys.executable).with_name("lmforge")

SETS = {
    "emotion": {"train": "emotion.csv", "test": "emotion_test.csv"},
    "banking77": {"train": "banking77.csv", "test": "banking77_test.csv"},
    "sms_spam": {"train": "sms_spam.csv", "test": None},
    "docstrings": {"train": None, "test": None},
}
PACKAGES = ("numpy", "pandas", "scipy", "sklearn", "torch", "matplotlib")


def docstrings_csv(path: Path, per_class: int = 800, min_words: int = 60) -> Path:
    """Long texts with a label that shows in the words: each package's public docstrings."""
    import importlib

    import pandas as pd

    if path.exists():
        return path
    rows: list[dict[str, str]] = []
    for package in PACKAGES:
        seen: set[str] = set()
        texts: list[str] = []
        root = importlib.import_module(package)
        base = Path(root.__path__[0])
        names = [
            ".".join((package, *p.relative_to(base).with_suffix("").parts)).removesuffix(".__init__")
            for p in base.rglob("*.py")
            if not any(
                part.startswith(("test", "_")) and part != "__init__.py" for part in p.relative_to(base).parts
            )
        ]
        for name in sorted(names):
            try:
                module = importlib.import_module(name)
            except Exception:
                continue
            for _, value in sorted(vars(module).items()):
                doc = inspect.getdoc(value) if callable(value) else None
                if doc and len(doc.split()) >= min_words and doc not in seen:
                    seen.add(doc)
                    texts.append(" ".join(doc.split()))
        random.Random(0).shuffle(texts)
        rows += [{"text": t, "label": package} for t in texts[:per_class]]
    pd.DataFrame(rows).sample(frac=1.0, random_state=0).to_csv(path, index=False)
    return path


def config_text(dataset: str, work: Path, arm: str, minutes: float | None, grid: dict[str, Any]) -> str:
    files = SETS[dataset]
    train = docstrings_csv(work / "docstrings.csv") if dataset == "docstrings" else DATA / files["train"]
    test = f"{DATA / files['test']}" if files["test"] else "null"
    split = (
        "{validation: 0.1, seed: 42}"  # the test file is the test split
        if files["test"]
        else "{validation: 0.1, test: 0.2, seed: 42}"
    )
    lines = [
        f"project: bench-{dataset}",
        "task: classification",
        f"data: {{train: {train}, test: {test}, text_column: text, label_column: label}}",
        f"split: {split}",
        f"model: {'auto' if arm.startswith('auto') else 'minilm-l6'}",
        "tracking: {uri: sqlite:///mlruns.db}",
        "gate: {min_gain: -1.0, required: false}",
    ]
    if minutes is not None:
        lines.append(f"budget: {{minutes: {minutes:g}}}")
    if grid:
        lines.append("train: {" + ", ".join(f"{k}: {v}" for k, v in grid.items()) + "}")
    return "\n".join(lines) + "\n"


def run_lmforge(folder: Path, config: str) -> tuple[subprocess.CompletedProcess[str], float, Path | None]:
    """`lmforge run` on `config` in `folder` (its output in stdout.txt), timed from outside the
    process; the run's folder, or None when it failed."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lmforge.yaml").write_text(config, encoding="utf-8")
    started = time.perf_counter()
    proc = subprocess.run(
        [str(LMFORGE), "run", "lmforge.yaml"], cwd=folder, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    (folder / "stdout.txt").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    runs = sorted((folder / "runs").glob("2*"))
    return proc, seconds, runs[-1] if proc.returncode == 0 and runs else None


def stage_seconds(run: Path) -> dict[str, float]:
    """Each stage's own seconds, from its manifest."""
    return {
        p.name: json.loads((p / "manifest.json").read_text()).get("seconds")
        for p in run.iterdir()
        if (p / "manifest.json").exists()
    }


def run_arm(
    dataset: str, arm: str, minutes: float | None, grid: dict[str, Any], work: Path
) -> dict[str, Any]:
    folder = work / dataset / arm.replace(":", "_").replace("=", "-").replace(",", "_").replace("/", "_")
    proc, seconds, run = run_lmforge(folder, config_text(dataset, work, arm, minutes, grid))
    row: dict[str, Any] = {
        "dataset": dataset,
        "arm": arm,
        "budget_seconds": minutes * 60 if minutes else None,
    }
    row.update(seconds=round(seconds, 1), returncode=proc.returncode)
    if run is None:
        row["error"] = (proc.stderr or proc.stdout)[-500:]
        return row
    evaluate = json.loads((run / "evaluate" / "manifest.json").read_text())["metrics"]
    baseline = json.loads((run / "baseline" / "manifest.json").read_text())["metrics"]
    train = json.loads((run / "train" / "manifest.json").read_text())
    row.update(
        accuracy=evaluate["accuracy"],
        f1_macro=evaluate["f1_macro"],
        tfidf_accuracy=baseline.get("tfidf_accuracy"),
        tfidf_f1_macro=baseline.get("tfidf_f1_macro"),
        winner=train["summary"].get("model"),
        kind=train["summary"].get("kind", "transformer"),
        stage_seconds=stage_seconds(run),
    )
    if row["budget_seconds"]:
        row["budget_ratio"] = round(seconds / row["budget_seconds"], 3)
    return row


def summary(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| set | arm | accuracy | macro-F1 | TF-IDF macro-F1 | wall s | budget s | wall/budget | winner |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['dataset']} | {r['arm']} | failed: {r['error'][-80:]!r} | | | | | | |")
            continue
        budget = r.get("budget_seconds")
        lines.append(
            f"| {r['dataset']} | {r['arm']} | {r['accuracy']:.3f} | {r['f1_macro']:.3f} | "
            f"{r['tfidf_f1_macro']:.3f} | {r['seconds']:.0f} | {budget or '-'} | "
            f"{r.get('budget_ratio', '-')} | {r['winner']} ({r['kind']}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["sms_spam", "emotion", "banking77", "docstrings"])
    parser.add_argument("--budgets", nargs="+", type=float, default=[5.0, 15.0], help="minutes")
    parser.add_argument("--arms", nargs="+", default=["auto"], help="auto, pinned, default, grid")
    parser.add_argument("--grid", nargs="*", default=[], help="key=value,key=value per grid point")
    parser.add_argument(
        "--seeds",
        nargs="*",
        type=int,
        default=[],
        help="train.seed per arm (arm names get /seed=S); the split's seed stays 42, so the test rows stay",
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/lmforge-bench-auto"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "auto.jsonl")
    parser.add_argument("--summary", action="store_true", help="only print the table of --out")
    args = parser.parse_args()
    done = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.exists() else []
    if not args.summary:
        for dataset in args.datasets:
            files = SETS[dataset]
            if files["train"] and not (DATA / files["train"]).exists():
                print(f"skip {dataset}: {DATA / files['train']} absent")
                continue
            arms: list[tuple[str, float | None, dict[str, Any]]] = []
            if "auto" in args.arms:
                arms += [(f"auto@{m:g}m", m, {}) for m in args.budgets]
            if "pinned" in args.arms:  # `model: minilm-l6` under the budget: the recipe cut to fit
                arms += [(f"pinned@{m:g}m", m, {}) for m in args.budgets]
            if "default" in args.arms:
                arms.append(("default", None, {}))
            if "grid" in args.arms:
                for point in args.grid:
                    arms.append((f"grid:{point}", None, dict(kv.split("=") for kv in point.split(","))))
            if args.seeds:
                arms = [(f"{a}/seed={s}", m, {**g, "seed": s}) for a, m, g in arms for s in args.seeds]
            for arm, minutes, grid in arms:
                if any(r["dataset"] == dataset and r["arm"] == arm for r in done):
                    continue
                print(f"{dataset} {arm} ...", flush=True)
                row = run_arm(dataset, arm, minutes, grid, args.work)
                done.append(row)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                with args.out.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(summary([row]).splitlines()[-1], flush=True)
    print(summary(done))


if __name__ == "__main__":
    main()
