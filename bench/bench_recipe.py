"""The fine-tune recipe on real data, side by side: TF-IDF vs today's recipe vs the new one vs
a hand grid, at several train sizes and seeds (issue: "The fine-tune recipe").

For each data set, size and seed: a stratified sample of SIZE rows of the train file (`full`:
every row), 10% of it (at least one row per class) held out for validation, the fixed test
file for scoring (a data set without one, such as sms_spam, holds out a fixed 20% first).
Every arm trains through `lmforge.training.fit.fit_classifier` (the train stage's code path,
checkpoints and best-checkpoint reload included) on the same split.

Arms:
  tfidf   the baseline stage's TF-IDF + logistic regression
  old     the recipe before this change: [CLS] pooler head, lr 5e-5, 3 epochs, max_length
          128, random batches, no class weights
  new     every default (`auto`): settings derived from the data
  grid    `--grid` points (pooling x learning rate x epochs), other settings `auto`

Results go to `--out` (JSONL, one line per arm x data set x size x seed); a rerun skips the
lines already there, so a long run can be stopped and resumed. The summary printed at the end
(also alone with `--summary`) compares, per data set and size, mean test macro-F1 and train
seconds: new vs TF-IDF, new vs the grid's best point, new / old wall time.

    python bench/bench_recipe.py --datasets emotion banking77 --sizes 500 1000 2000 full \\
        --seeds 1 2 3 --arms tfidf old new
    python bench/bench_recipe.py --arms grid --seeds 1 --grid pooling=mean,default \\
        learning_rate=1e-4,2e-4,5e-4 epochs=3,6
    python bench/bench_recipe.py --markdown --out bench/results/recipe.jsonl   # tables for docs/
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
OLD = {
    "pooling": "default",
    "learning_rate": 5e-5,
    "epochs": 3,
    "max_length": 128,
    "class_weights": "none",
    "group_by_length": False,
}


def load(dataset: str, size: str, seed: int) -> tuple[Any, Any, Any, list[str]]:
    import pandas as pd
    from sklearn.model_selection import train_test_split

    def read(name: str) -> pd.DataFrame:
        return pd.read_csv(DATA / f"{name}.csv", dtype=str, keep_default_na=False)[["text", "label"]]

    full = read(dataset)
    if (DATA / f"{dataset}_test.csv").exists():
        test = read(f"{dataset}_test")
    else:  # no test file (sms_spam): a fixed 20% held out, the same for every seed and size
        full, test = train_test_split(full, test_size=0.2, stratify=full["label"], random_state=0)
    labels = sorted(full["label"].unique())
    rows = full if size == "full" or int(size) >= len(full) else None
    if rows is None:
        rows = train_test_split(full, train_size=int(size), stratify=full["label"], random_state=seed)[0]
    held = max(int(0.1 * len(rows)), len(labels))
    train, validation = train_test_split(rows, test_size=held, stratify=rows["label"], random_state=seed)
    return train.reset_index(drop=True), validation.reset_index(drop=True), test, labels


def run_tfidf(train: Any, test: Any) -> dict[str, Any]:
    from lmforge.config import BaselineConfig
    from lmforge.stages.baseline import tfidf_pipeline
    from lmforge.tasks.classification import metrics

    started = time.perf_counter()
    model = tfidf_pipeline(BaselineConfig()).fit(train["text"], train["label"])
    scores = metrics(test["label"].tolist(), model.predict(test["text"]).tolist())
    return {"seconds": time.perf_counter() - started, **scores}


def run_finetune(
    overrides: dict[str, Any], seed: int, train: Any, validation: Any, test: Any, labels: list[str]
) -> dict[str, Any]:
    from lmforge.config import TrainConfig
    from lmforge.tasks.classification import metrics, predict_proba
    from lmforge.training.fit import fit_classifier

    cfg = TrainConfig.model_validate({**overrides, "seed": seed})
    work = Path(tempfile.mkdtemp(prefix="bench-recipe-"))
    try:
        started = time.perf_counter()
        fit = fit_classifier("minilm-l6", Path.cwd(), labels, train, validation, cfg, work / "checkpoints")
        seconds = time.perf_counter() - started
        settings = fit.settings
        probs = predict_proba(
            fit.model, fit.tokenizer, test["text"].tolist(), batch_size=128, max_length=settings.max_length
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    predicted = [labels[i] for i in probs.argmax(axis=1)]
    scores = {
        **metrics(test["label"].tolist(), predicted),
        **rarest_recall(test["label"].tolist(), predicted),
    }
    history = [
        (round(h["epoch"], 2), round(h["eval_loss"], 4), round(h["eval_f1_macro"], 4))
        for h in fit.trainer.state.log_history
        if "eval_loss" in h
    ]
    chosen = {d.key: d.value for d in fit.decisions}
    return {"seconds": seconds, "steps": fit.steps, "settings": chosen, "validation": history, **scores}


def rarest_recall(truth: list[str], predicted: list[str]) -> dict[str, Any]:
    """Recall of the test set's rarest class: the class a short training forgets first."""
    from collections import Counter

    rarest = min(Counter(truth).items(), key=lambda kv: kv[1])[0]
    hits = [p == t for p, t in zip(predicted, truth, strict=True) if t == rarest]
    return {"rarest_class": rarest, "rarest_recall": sum(hits) / len(hits)}


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


def arm_name(arm: str, point: dict[str, Any] | None) -> str:
    if point is None:
        return arm
    return "grid:" + ",".join(f"{k}={v}" for k, v in point.items())


def done_keys(out: Path) -> set[tuple[str, str, str, int]]:
    if not out.exists():
        return set()
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    return {(r["arm"], r["dataset"], r["size"], r["seed"]) for r in rows}


def summary(out: Path) -> None:
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    groups: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["size"]), {}).setdefault(r["arm"], []).append(r)

    def mean(arm_rows: list[dict[str, Any]] | None, key: str) -> float | None:
        return statistics.mean(r[key] for r in arm_rows) if arm_rows else None

    def show(value: float | None, spec: str = ".4f") -> str:
        return "-" if value is None else format(value, spec)

    def diff(a: float | None, b: float | None) -> float | None:
        return a - b if a is not None and b is not None else None

    header = ("data set", "size", "seeds", "TF-IDF", "old", "new", "grid best", "new-TFIDF", "new-grid")
    print("\n" + " ".join(f"{h:>9}" for h in header), "    old s     new s   new/old  grid best point")
    order = {"500": 0, "1000": 1, "2000": 2, "full": 9}
    for (dataset, size), arms in sorted(groups.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 5))):
        tfidf, old, new = (mean(arms.get(a), "f1_macro") for a in ("tfidf", "old", "new"))
        grid = {a: mean(v, "f1_macro") for a, v in arms.items() if a.startswith("grid:")}
        best = max(grid, key=lambda a: grid[a] or 0.0) if grid else None
        best_f1 = grid[best] if best else None
        old_s, new_s = mean(arms.get("old"), "seconds"), mean(arms.get("new"), "seconds")
        seeds = len(arms.get("new") or arms.get("old") or [])
        cells = [dataset, size, str(seeds), show(tfidf), show(old), show(new), show(best_f1)]
        cells += [show(diff(new, tfidf), "+.4f"), show(diff(new, best_f1), "+.4f")]
        ratio = new_s / old_s if new_s and old_s else None
        times = f"{show(old_s, '.0f'):>9} {show(new_s, '.0f'):>9} {show(ratio, '.2f'):>9}"
        print(" ".join(f"{c:>9}" for c in cells), times, " ", best.removeprefix("grid:") if best else "")


def markdown(out: Path) -> None:
    """One table per data set: every arm's mean test macro-F1 (and seeds) by size, for docs/."""
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    order = {"500": 0, "1000": 1, "2000": 2, "full": 9}
    for dataset in sorted({r["dataset"] for r in rows}):
        mine = [r for r in rows if r["dataset"] == dataset]
        sizes = sorted({r["size"] for r in mine}, key=lambda s: order.get(s, 5))
        arms = sorted({r["arm"] for r in mine}, key=lambda a: (not a.startswith(("tfidf", "old", "new")), a))
        print(f"\n{dataset}: test macro-F1 (mean train seconds, seeds when more than one)\n")
        print("| arm | " + " | ".join(sizes) + " |")
        print("| --- |" + " --- |" * len(sizes))
        for arm in arms:
            cells = []
            for size in sizes:
                found = [r for r in mine if r["arm"] == arm and r["size"] == size]
                if not found:
                    cells.append("")
                    continue
                f1 = statistics.mean(r["f1_macro"] for r in found)
                seconds = statistics.mean(r["seconds"] for r in found)
                seeds = f", {len(found)} seeds" if len(found) > 1 else ""
                cells.append(f"{f1:.3f} ({seconds:.0f} s{seeds})")
            print(f"| {arm.removeprefix('grid:').replace('pooling=', '')} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["emotion", "banking77"])
    parser.add_argument("--sizes", nargs="+", default=["500", "1000", "2000", "full"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument(
        "--arms", nargs="+", default=["tfidf", "old", "new"], choices=["tfidf", "old", "new", "grid"]
    )
    parser.add_argument(
        "--grid", nargs="*", default=["pooling=mean,default", "learning_rate=1e-4,2e-4,5e-4", "epochs=3,6"]
    )
    parser.add_argument("--set", nargs="*", default=[], help="train keys for every fine-tune arm: key=value")
    parser.add_argument("--out", type=Path, default=Path("bench/results/recipe.jsonl"))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--summary", action="store_true", help="only print the summary of --out")
    parser.add_argument("--markdown", action="store_true", help="only print --out as Markdown tables")
    args = parser.parse_args()
    if args.summary or args.markdown:
        (markdown if args.markdown else summary)(args.out)
        return
    if not DATA.exists():
        print(f"skipped: {DATA} is absent (the shared data sets are not part of the repository)")
        return
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = done_keys(args.out)
    common = dict(grid_points(args.set)[0]) if args.set else {}
    for dataset, size, seed in itertools.product(args.datasets, args.sizes, args.seeds):
        train, validation, test = None, None, None
        for arm in args.arms:
            points: list[dict[str, Any] | None] = grid_points(args.grid) if arm == "grid" else [None]
            for point in points:
                name = arm_name(arm, point)
                if (name, dataset, size, seed) in done:
                    continue
                if train is None:
                    train, validation, test, labels = load(dataset, size, seed)
                if arm == "tfidf":
                    result = run_tfidf(train, test)
                else:
                    overrides = OLD if arm == "old" else {**common, **(point or {})}
                    result = run_finetune(dict(overrides), seed, train, validation, test, labels)
                line = {
                    "arm": name,
                    "dataset": dataset,
                    "size": size,
                    "seed": seed,
                    "train_rows": len(train),
                    **result,
                }
                with args.out.open("a") as handle:
                    handle.write(json.dumps(line) + "\n")
                print(
                    f"{dataset} {size} seed {seed} {name}: macro-F1 {result['f1_macro']:.4f} "
                    f"accuracy {result['accuracy']:.4f} in {result['seconds']:.0f} s",
                    flush=True,
                )
    summary(args.out)


if __name__ == "__main__":
    sys.exit(main())
