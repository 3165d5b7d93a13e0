"""Label-noise check on large data: the full probe against the fast one (`clean.label_noise_probe`).

For emotion.csv (16k rows, 6 classes) and banking77.csv (10k rows, 77 intents) from
../shared/data, 10% of the labels are flipped at random (seeded, as in bench_noise.py) and
`find_label_issues` runs with `probe="full"` (10 folds, TF-IDF per fold, saga LR) and
`probe="fast"` (5 folds, one TF-IDF, SGD LR); printed side by side: seconds, precision and
recall of the flagged rows against the flips. Then a synthetic large set (emotion repeated
with small perturbations, `--big` rows) runs the fast probe alone for seconds and peak RSS
(measured in a child process, so each figure is that probe's own).

Measured on 2 shared (busy) cores, seed 0 (seconds, precision / recall, peak RSS):

    emotion 16k     full 84.2 s  0.811 / 0.808  242 MB    fast  7.5 s  0.807 / 0.806  220 MB  11.2x
    banking77 10k   full 145.6 s 0.963 / 0.810  251 MB    fast 14.3 s  0.908 / 0.922  206 MB  10.2x
    synthetic 100k  fast 48.4 s  0.978 / 0.745  352 MB    (emotion rows, one word dropped and one
                    repeated per copy; its precision is high because near-copies share folds)
    seed 1: emotion full 131.7 s 0.820 / 0.797, fast 3.4 s 0.810 / 0.794; banking77 full 82.3 s
            0.970 / 0.804, fast 6.7 s 0.931 / 0.884 (12x); full timings include a busy machine
    emotion + banking77 (26k rows, 83 classes, the README's slow case; measured with the same
    function outside this script): full 500.9 s 0.992 / 0.877 636 MB, fast 22.7 s 0.990 / 0.878
    345 MB (22x)

Vocabulary once vs per fold (fast probe, seed 0): emotion once 0.807/0.806, per fold
0.783/0.841; banking77 once 0.908/0.922, per fold 0.880/0.935; the flagged sets agree at
Jaccard 0.92 / 0.96 and per fold costs a vocabulary fit per fold (emotion 15.5 s vs 7.7 s), so
the fast probe fits it once. SGD alpha: see `FAST_ALPHA` in lmforge/data/noise.py.

    python bench/bench_noise_probe.py [--sets emotion banking77] [--big 100000] [--seed 0]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bench_noise import flip_labels, measure

from lmforge.data.noise import find_label_issues

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SETS = {"emotion": DATA / "emotion.csv", "banking77": DATA / "banking77.csv"}
KEYS = [("seconds", ".1f"), ("precision", ".3f"), ("recall", ".3f"), ("flagged", "d"), ("rss_mb", ".0f")]


def _child(texts: list[str], labels: list[str], probe: str, queue: Any) -> None:
    started = time.perf_counter()
    result = find_label_issues(texts, labels, probe=probe, seed=0)
    seconds = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    queue.put((result, seconds, rss_mb))


def timed(texts: list[str], labels: list[str], probe: str) -> tuple[pd.DataFrame, float, float]:
    """The probe's result, seconds and peak RSS (MB), run in a fresh process."""
    queue: Any = mp.get_context("fork").Queue()
    proc = mp.get_context("fork").Process(target=_child, args=(texts, labels, probe, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def perturbed(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """`rows` rows drawn from `frame`, each copy with one word dropped and one repeated, so
    copies are not exact duplicates (the vocabulary and fits see realistic variety)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(frame), size=rows)
    texts = []
    for i, text in zip(picks, frame["text"].to_numpy()[picks], strict=True):
        words = str(text).split()
        if len(words) > 2:
            words.pop(int(rng.integers(len(words))))
            words.insert(int(rng.integers(len(words))), words[int(rng.integers(len(words)))])
        texts.append(" ".join(words) + ("" if i % 2 else " ."))
    return pd.DataFrame({"text": texts, "label": frame["label"].to_numpy()[picks]})


def compare(name: str, seed: int, probes: list[str]) -> dict[str, dict[str, Any]] | None:
    path = SETS[name]
    if not path.exists():
        return None
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    true = frame["label"].to_numpy(dtype=object)
    noisy, flipped = flip_labels(true, 0.1, seed)
    out = {}
    for probe in probes:
        result, seconds, rss = timed(frame["text"].tolist(), list(noisy), probe)
        out[probe] = {**measure(result, flipped, true, seconds), "rss_mb": rss}
    return out


def show(title: str, results: dict[str, dict[str, Any]]) -> None:
    print(title)
    print(f"{'':12}" + "".join(f"{p:>10}" for p in results))
    for key, spec in KEYS:
        print(f"{key:12}" + "".join(f"{results[p][key]:>10{spec}}" for p in results))
    if {"full", "fast"} <= set(results):
        full, fast = results["full"], results["fast"]
        print(
            f"fast is {full['seconds'] / fast['seconds']:.1f}x faster, recall "
            f"{fast['recall'] - full['recall']:+.3f}, precision {fast['precision'] - full['precision']:+.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sets", nargs="*", default=list(SETS), choices=list(SETS))
    parser.add_argument("--probes", nargs="+", default=["full", "fast"], choices=["full", "fast"])
    parser.add_argument(
        "--big", type=int, default=100_000, help="synthetic rows for the fast probe (0: skip)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name in args.sets:
        results = compare(name, args.seed, args.probes)
        if results is None:
            print(f"skipped {name}: {SETS[name]} not found")
            continue
        show(f"{name}: 10% flipped (seed {args.seed})", results)
    if args.big and SETS["emotion"].exists():
        base = pd.read_csv(SETS["emotion"], dtype=str, keep_default_na=False)
        big = perturbed(base, args.big, args.seed)
        true = big["label"].to_numpy(dtype=object)
        noisy, flipped = flip_labels(true, 0.1, args.seed)
        result, seconds, rss = timed(big["text"].tolist(), list(noisy), "fast")
        show(
            f"synthetic {args.big:,} rows (emotion perturbed), 10% flipped",
            {"fast": {**measure(result, flipped, true, seconds), "rss_mb": rss}},
        )


if __name__ == "__main__":
    main()
