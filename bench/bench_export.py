"""int8 vs fp32 vs torch on a real test set: size, speed and accuracy, side by side.

    python bench/bench_export.py [--train-rows 3000] [--epochs 2]

Fine-tunes minilm-l6 on a subset of `../shared/data/emotion.csv`, then runs the export stage,
which scores torch, ONNX fp32 and ONNX int8 on all 2,000 rows of `emotion_test.csv`.
Skips (exit 0) when the shared data folder is absent.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import pandas as pd

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train-rows", type=int, default=3000)
    parser.add_argument("--epochs", type=float, default=2)
    args = parser.parse_args()
    if not (DATA / "emotion.csv").exists():
        print(f"skipped: {DATA} has no emotion.csv")
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lmforge.config import load_config
    from lmforge.pipeline.runner import run_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        train = pd.read_csv(DATA / "emotion.csv").sample(args.train_rows, random_state=0)
        train.to_csv(folder / "train.csv", index=False)
        config = {
            "project": "bench-export",
            "data": {"train": "train.csv", "test": str(DATA / "emotion_test.csv")},
            "split": {"validation": 0.1, "seed": 0},
            "clean": {"near_duplicates": False, "label_noise": "off"},
            "model": "minilm-l6",
            "train": {"epochs": args.epochs, "batch_size": 32, "learning_rate": 1e-4, "max_length": 64},
            "tracking": {"enabled": False},
            "output_dir": "runs",
        }
        import yaml

        (folder / "lmforge.yaml").write_text(yaml.safe_dump(config))
        result = run_pipeline(load_config(folder / "lmforge.yaml"), until="export")
        check = result.artifacts["export"].json("onnx_check")
    print(f"\n{check['texts']} test texts (emotion_test.csv), batch 32, 2 CPU cores")
    print(f"{'format':12} {'MB':>7} {'accuracy':>9} {'texts/s':>8}")
    for name in ("torch", "fp32", "int8"):
        if name in check:
            entry = check[name]
            print(
                f"{name:12} {entry['megabytes']:7.1f} {entry['accuracy']:9.4f} "
                f"{entry['texts_per_second']:8.0f}"
            )
    torch, fp32 = check["torch"], check["fp32"]
    print(
        f"fp32 vs torch: max |logit diff| {fp32['max_logit_diff']:.1e}, "
        f"argmax agreement {fp32['argmax_agreement']:.1%}"
    )
    if "int8" in check:
        int8 = check["int8"]
        print(
            f"int8 vs fp32: {fp32['megabytes'] / int8['megabytes']:.2f}x smaller, "
            f"{int8['texts_per_second'] / fp32['texts_per_second']:.2f}x faster, "
            f"{int8['texts_per_second'] / torch['texts_per_second']:.2f}x faster than torch, "
            f"accuracy {int8['accuracy'] - torch['accuracy']:+.4f} vs torch (shipped: {int8['shipped']})"
        )


if __name__ == "__main__":
    main()
