"""The fine-tune recipe for instruction tuning, side by side: the base model vs the settings
`lmforge init` wrote before the recipe (`old`) vs the `auto` defaults (`new`) vs a hand grid,
on ../shared/data/samsum_sample.jsonl and self_instruct_user_oriented.jsonl.

Every arm runs the whole pipeline up to `evaluate` (split: seed 42, 15% validation, 15% test)
in one output folder per data set, so ingest ... baseline (the base model's answers) run once
and only `train` and `evaluate` run per arm. Scores: test ROUGE-L, BLEU and perplexity of the
first 32 test prompts' greedy answers (64 new tokens), the best validation loss and the epoch
it came from, and the train stage's seconds.

Results go to `--out` (JSONL; a rerun skips what is there); the summary table is printed at
the end (or alone with `--summary`).

    python bench/bench_recipe_causal.py --arms old new
    python bench/bench_recipe_causal.py --arms grid --grid method=lora learning_rate=3e-4,1e-3,3e-3 epochs=4
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DATASETS = {"samsum": "samsum_sample.jsonl", "self_instruct": "self_instruct_user_oriented.jsonl"}
# What `lmforge init` wrote for a generation task before `auto` settings existed.
OLD = {"method": "lora", "epochs": 2, "learning_rate": 1e-3, "batch_size": 4, "max_length": 256}
NEW = {"method": "lora", "batch_size": 4}


def run_arm(dataset: str, train: dict[str, Any], work: Path) -> dict[str, Any]:
    from lmforge.config import load_config
    from lmforge.pipeline.runner import run_pipeline

    config = {
        "project": f"bench-recipe-{dataset}",
        "task": "generation",
        "data": {"train": str(DATA / DATASETS[dataset])},
        "split": {"validation": 0.15, "test": 0.15, "seed": 42},
        "model": "smollm2-135m",
        "train": {"early_stopping_patience": 2, **train},
        "evaluate": {"max_new_tokens": 64, "generation_rows": 32, "max_length": 512},
        "tracking": {"enabled": False, "tensorboard": False},
        "output_dir": str(work / dataset),
    }
    started = time.perf_counter()
    result = run_pipeline(load_config(data=config), until="evaluate")
    trained, after, before = (result.artifacts[n] for n in ("train", "evaluate", "baseline"))
    history = trained.json("history")
    evals = [(h["epoch"], h["eval_loss"]) for h in history if "eval_loss" in h]
    best_epoch, best_loss = min(evals, key=lambda e: e[1]) if evals else (None, None)
    return {
        "rouge_l": after.metrics["rouge_l"],
        "bleu": after.metrics["bleu"],
        "perplexity": after.metrics["perplexity"],
        "base_rouge_l": before.metrics["base_rouge_l"],
        "base_perplexity": before.metrics["base_perplexity"],
        "best_validation_loss": best_loss,
        "best_epoch": best_epoch,
        "validation": [(round(e, 2), round(v, 4)) for e, v in evals],
        "train_seconds": trained.metrics["train_seconds"],
        "seconds": time.perf_counter() - started,
        "settings": {row["key"]: row["value"] for row in trained.json("recipe")},
    }


def grid_points(specs: list[str]) -> list[dict[str, Any]]:
    keys, values = [], []
    for spec in specs:
        key, _, raw = spec.partition("=")
        keys.append(key)
        values.append([_value(v) for v in raw.split(",")])
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def _value(raw: str) -> Any:
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def summary(out: Path) -> None:
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    print(
        f"\n{'data set':14} {'arm':52} {'ROUGE-L':>8} {'base':>6} {'gain':>7} {'BLEU':>6} "
        f"{'ppl':>7} {'val loss':>8} {'best ep':>7} {'train s':>8}"
    )
    for r in sorted(rows, key=lambda r: (r["dataset"], r["arm"])):
        gain = r["rouge_l"] - r["base_rouge_l"]
        print(
            f"{r['dataset']:14} {r['arm']:52} {r['rouge_l']:8.4f} {r['base_rouge_l']:6.3f} {gain:+7.4f} "
            f"{r['bleu']:6.1f} {r['perplexity']:7.2f} {r['best_validation_loss'] or float('nan'):8.4f} "
            f"{r['best_epoch'] or 0:7.2f} {r['train_seconds']:8.0f}"
        )
    for dataset in sorted({r["dataset"] for r in rows}):
        mine = {r["arm"]: r for r in rows if r["dataset"] == dataset}
        if "old" in mine and "new" in mine:
            old, new = mine["old"], mine["new"]
            print(
                f"{dataset}: new - old ROUGE-L {new['rouge_l'] - old['rouge_l']:+.4f}, "
                f"train seconds new / old {new['train_seconds'] / old['train_seconds']:.2f}"
            )
        grid = [r for a, r in mine.items() if a.startswith("grid:")]
        if grid and "new" in mine:
            best = max(grid, key=lambda r: r["rouge_l"])
            gap = mine["new"]["rouge_l"] - best["rouge_l"]
            print(f"{dataset}: grid best {best['arm']} ROUGE-L {best['rouge_l']:.4f}; new - best {gap:+.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--arms", nargs="+", default=["old", "new"], choices=["old", "new", "grid"])
    parser.add_argument(
        "--grid", nargs="*", default=["method=lora", "learning_rate=3e-4,1e-3,3e-3", "epochs=4"]
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/recipe-causal.jsonl"))
    parser.add_argument("--work", type=Path, default=Path("bench/out/recipe-causal"))
    parser.add_argument("--summary", action="store_true")
    args = parser.parse_args()
    if args.summary:
        summary(args.out)
        return
    if not DATA.exists():
        print(f"skipped: {DATA} is absent (the shared data sets are not part of the repository)")
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if args.out.exists():
        done = {
            (json.loads(x)["arm"], json.loads(x)["dataset"]) for x in args.out.read_text().splitlines() if x
        }
    for dataset in args.datasets:
        for arm in args.arms:
            points: list[dict[str, Any] | None] = grid_points(args.grid) if arm == "grid" else [None]
            for point in points:
                name = arm if point is None else "grid:" + ",".join(f"{k}={v}" for k, v in point.items())
                if (name, dataset) in done:
                    continue
                train = OLD if arm == "old" else {**NEW, **(point or {})}
                result = run_arm(dataset, dict(train), args.work)
                with args.out.open("a") as handle:
                    handle.write(json.dumps({"arm": name, "dataset": dataset, **result}) + "\n")
                print(
                    f"{dataset} {name}: ROUGE-L {result['base_rouge_l']:.4f} -> {result['rouge_l']:.4f}, "
                    f"best validation loss {result['best_validation_loss']:.4f} "
                    f"at epoch {result['best_epoch']}, "
                    f"train {result['train_seconds']:.0f} s",
                    flush=True,
                )
    summary(args.out)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
