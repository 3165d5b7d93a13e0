"""Sentence embeddings on Ray Data by block size (the clean stage's embedding label-noise probe,
auto-labelling, drift): how many rows each Ray Data block holds decides how evenly the actors
share the work.

Arms, side by side in one run on the same texts (`emotion.csv` from ../shared/data, repeated
or cut to `--rows`):

  local         `lmforge.models.embed.embed` in this process, torch on every core
  ray, B rows   `lmforge.data.on_ray.embed_on_ray` on a local Ray with one CPU per actor,
                blocks of B rows (`--blocks`, default 10000 2500 1000)

Printed: seconds, texts/s, the ratio to the local arm, and the largest difference from the
local embeddings (the same encoder: they agree to float rounding).

    python bench/bench_embed_blocks.py [--rows 16000 --blocks 10000 2500 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "emotion.csv"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=16_000)
    parser.add_argument("--blocks", type=int, nargs="+", default=[10_000, 2_500, 1_000])
    args = parser.parse_args()
    if not DATA.exists():
        raise SystemExit(f"{DATA} is absent: this bench reads ../shared/data/emotion.csv")
    import ray

    from lmforge.config import ExecutorConfig
    from lmforge.data.on_ray import embed_on_ray, ray_session
    from lmforge.models.embed import embed

    texts = pd.read_csv(DATA)["text"].astype(str).tolist()
    texts = (texts * (args.rows // len(texts) + 1))[: args.rows]
    embed(texts[:8])  # the encoder loaded before the clock starts
    started = time.perf_counter()
    local = embed(texts)
    base = time.perf_counter() - started
    rows = [("local, this process", base, 0.0)]
    executor = ExecutorConfig(type="ray")
    cpus = os.cpu_count() or 2
    with ray_session(executor):
        print(f"local Ray: {ray.cluster_resources().get('CPU', 0):g} CPUs", file=sys.stderr)
        embed_on_ray(executor, texts[:8], model="minilm-l6", base_dir=None)  # Ray warmed up
        for block in args.blocks:
            started = time.perf_counter()
            got = embed_on_ray(executor, texts, model="minilm-l6", base_dir=None, block_rows=block)
            rows.append(
                (
                    f"Ray Data, {cpus} actors, blocks of {block:,} rows",
                    time.perf_counter() - started,
                    float(np.abs(got - local).max()),
                )
            )
    print(f"{len(texts):,} texts of emotion.csv, minilm-l6")
    print("| arm | s | texts/s | vs local | max abs diff |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, seconds, diff in rows:
        print(f"| {name} | {seconds:.1f} | {len(texts) / seconds:,.0f} | {seconds / base:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
