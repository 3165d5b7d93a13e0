"""A time budget on the causal tasks, side by side with the default run without one (issue "Auto
mode under a hard time budget": the whole run ends within its budget, whatever the task).

Per data set every arm runs the real pipeline (`lmforge run`, ingest to register, GGUF export
included) in a subprocess, smollm2-135m with the task's defaults (LoRA, batch 4, the recipe's
epochs, learning rate and max_length), the same split and test rows:

  budget@Nm  `budget: {minutes: N}`: the fit ends by the clock
  default    no budget: the recipe's epochs to the end (`--arms default`; ~25 min on samsum)

Printed per arm: test ROUGE-L, BLEU and perplexity (and the base model's), steps and epochs
trained, how training ended, wall seconds (the whole `lmforge run` process) against the budget.
Results are appended to `--out` (JSONL); a rerun skips arms already there.

    python bench/bench_causal_budget.py --datasets samsum --budgets 6 10
    python bench/bench_causal_budget.py --datasets samsum --arms default
    python bench/bench_causal_budget.py --summary
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from bench_auto import DATA, ROOT, run_lmforge, stage_seconds  # the same `lmforge run`, timed alike

SETS = {"samsum": "samsum_sample.jsonl", "self_instruct": "self_instruct_user_oriented.jsonl"}


def config_text(dataset: str, minutes: float | None) -> str:
    lines = [
        f"project: bench-causal-{dataset}",
        "task: generation",
        f"data: {{train: {DATA / SETS[dataset]}}}",
        "split: {validation: 0.1, test: 0.1, seed: 42}",
        "model: smollm2-135m",
        "tracking: {uri: sqlite:///mlruns.db}",
        "gate: {min_gain: -1.0}",
    ]
    if minutes is not None:
        lines.append(f"budget: {{minutes: {minutes:g}}}")
    return "\n".join(lines) + "\n"


def run_arm(dataset: str, arm: str, minutes: float | None, work: Path) -> dict[str, Any]:
    proc, seconds, run = run_lmforge(work / dataset / arm.replace("@", "_"), config_text(dataset, minutes))
    row: dict[str, Any] = {"dataset": dataset, "arm": arm}
    row["budget_seconds"] = minutes * 60 if minutes else None
    row.update(seconds=round(seconds, 1), returncode=proc.returncode)
    if run is None:
        row["error"] = (proc.stderr or proc.stdout)[-500:]
        return row
    evaluate = json.loads((run / "evaluate" / "manifest.json").read_text())["metrics"]
    baseline = json.loads((run / "baseline" / "manifest.json").read_text())["metrics"]
    train = json.loads((run / "train" / "manifest.json").read_text())
    budget = json.loads((run / "budget.json").read_text()) if (run / "budget.json").exists() else {}
    row.update(
        rouge_l=evaluate.get("rouge_l"),
        bleu=evaluate.get("bleu"),
        perplexity=evaluate.get("perplexity"),
        base_rouge_l=baseline.get("base_rouge_l"),
        base_perplexity=baseline.get("base_perplexity"),
        steps=train["metrics"].get("steps"),
        epochs=train["summary"].get("epochs_run"),
        train_seconds=train.get("seconds"),
        decisions=[d for d in budget.get("decisions", []) if d["stage"] == "train"],
        stage_seconds=stage_seconds(run),
    )
    if row["budget_seconds"]:
        row["budget_ratio"] = round(seconds / row["budget_seconds"], 3)
    return row


def summary(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| set | arm | ROUGE-L | BLEU | perplexity | base ROUGE-L / ppl | steps | epochs | train s "
        "| wall s | wall/budget | ended |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['dataset']} | {r['arm']} | failed: {r['error'][-80:]!r} |" + " |" * 9)
            continue
        lines.append(_row(r))
    return "\n".join(lines)


def _row(r: dict[str, Any]) -> str:
    stops = [d["reason"] for d in r.get("decisions", []) if d["decision"] == "stopped"]
    planned = [
        int(m.group(1))
        for d in r.get("decisions", [])
        if (m := re.search(r"up to the recipe's (\d+) steps", d["reason"]))
    ]
    if stops:
        ended = stops[0]
    elif planned and r["steps"] < planned[0]:
        ended = f"by the clock at step {r['steps']:.0f} of {planned[0]}"
    else:
        ended = "the recipe's steps"
    return (
        f"| {r['dataset']} | {r['arm']} | {r['rouge_l']:.3f} | {r['bleu']:.1f} | {r['perplexity']:.2f} | "
        f"{r['base_rouge_l']:.3f} / {r['base_perplexity']:.2f} | {r['steps']:.0f} | {r['epochs']:.2f} | "
        f"{r['train_seconds']:.0f} | {r['seconds']:.0f} | {r.get('budget_ratio', '-')} | {ended} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["samsum"], choices=sorted(SETS))
    parser.add_argument("--budgets", nargs="+", type=float, default=[6.0, 10.0], help="minutes")
    parser.add_argument("--arms", nargs="+", default=["budget"], help="budget, default")
    parser.add_argument("--work", type=Path, default=Path("/tmp/lmforge-bench-causal-budget"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "causal_budget.jsonl")
    parser.add_argument("--summary", action="store_true", help="only print the table of --out")
    args = parser.parse_args()
    done = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.exists() else []
    if not args.summary:
        for dataset in args.datasets:
            if not (DATA / SETS[dataset]).exists():
                print(f"skip {dataset}: {DATA / SETS[dataset]} absent")
                continue
            arms: list[tuple[str, float | None]] = []
            if "budget" in args.arms:
                arms += [(f"budget@{m:g}m", m) for m in args.budgets]
            if "default" in args.arms:
                arms.append(("default", None))
            for arm, minutes in arms:
                if any(r["dataset"] == dataset and r["arm"] == arm and "error" not in r for r in done):
                    continue
                print(f"{dataset} {arm} ...", flush=True)
                row = run_arm(dataset, arm, minutes, args.work)
                done.append(row)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                with args.out.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row) + "\n")
    print(summary(done))


if __name__ == "__main__":
    main()
