"""Data-automation figures, measured side by side in one run.

1. clean stage throughput (rows/s) on ../shared/data/emotion.csv + banking77.csv together
   (26k rows), with every step on, with label noise off, and then each other step off in turn.
2. near-duplicate recall / precision on real rows with injected near-copies (bench_dedup.py).
3. label-noise precision / recall with 10% of emotion.csv labels flipped (bench_noise.py).

    python bench/bench_data.py [--skip-noise] [--noise-rows N] [--copies 500]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "bench"))

# Label noise dominates (10-fold logistic regression over 83 classes here), so the cheaper
# steps are each measured with it off: their cost is the difference from "label_noise: off".
QUIET: dict[str, Any] = {"label_noise": "off"}
VARIANTS: dict[str, dict[str, Any]] = {
    "every step (defaults)": {},
    "label_noise: off": QUIET,
    "  + near_duplicates: off": {**QUIET, "near_duplicates": False},
    "  + pii: off": {**QUIET, "pii": "off"},
    "  + fix_unicode: off": {**QUIET, "fix_unicode": False},
}


def clean_throughput(folder: Path) -> list[dict[str, Any]]:
    from lmforge.config import load_config
    from lmforge.pipeline.runner import run_pipeline

    frames = [pd.read_csv(DATA / name, dtype=str) for name in ("emotion.csv", "banking77.csv")]
    data = folder / "emotion+banking77.csv"
    pd.concat(frames, ignore_index=True).to_csv(data, index=False)
    rows = sum(len(f) for f in frames)
    results = []
    for name, clean in VARIANTS.items():
        config = {
            "project": "bench-data",
            "data": {"train": str(data)},
            "clean": clean,
            "output_dir": str(folder / "runs"),
        }
        run_pipeline(load_config(data=config), until="clean", force=["clean"])
        manifest = json.loads(sorted((folder / "runs").glob("2*/clean/manifest.json"))[-1].read_text())
        seconds = manifest["seconds"]
        results.append(
            {
                "variant": name,
                "seconds": seconds,
                "rows_per_s": rows / seconds,
                "removed": manifest["rows"]["removed"],
                "label_issues": manifest["rows"]["label_issues"],
            }
        )
        print(
            f"   {name:<24}{seconds:>8.1f}s{rows / seconds:>10,.0f} rows/s"
            f"{manifest['rows']['removed']:>9,} removed{manifest['rows']['label_issues']:>7,} label issues"
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--copies", type=int, default=500, help="near-copies injected for step 2")
    parser.add_argument("--noise-rows", type=int, default=None, help="subset of emotion.csv for step 3")
    parser.add_argument("--skip-noise", action="store_true")
    args = parser.parse_args()
    if not (DATA / "emotion.csv").exists():
        print(f"skipped: {DATA} is absent")
        return
    with tempfile.TemporaryDirectory(prefix="lmforge-bench-data-") as tmp:
        print("1. clean stage on emotion.csv + banking77.csv (26,003 rows)")
        started = time.perf_counter()
        clean_throughput(Path(tmp))
        print(f"   ({time.perf_counter() - started:.0f}s in all)")
    import bench_dedup

    print(f"2. near-duplicates: {args.copies} injected near-copies among real rows")
    bench_dedup.print_table(bench_dedup.run(rows=20_000, copies=args.copies))
    if args.skip_noise:
        return
    import bench_noise

    print("3. label noise: 10% of emotion.csv labels flipped at random")
    bench_noise.report(
        bench_noise.run(rows=args.noise_rows, flip=0.1, models=["tfidf", "embeddings"], seed=0)
    )


if __name__ == "__main__":
    main()
