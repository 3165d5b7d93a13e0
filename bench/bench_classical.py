"""Classical candidates' figures, measured side by side in one run (numbers go in the closing note).

1. `--part search`: on emotion (train 16k, validation 2k) and banking77 (its train split
   80/20, stratified, seed 0): the best linear candidate's validation macro-F1, the trials,
   and the wall seconds of all trials with the features vectorised once (search_linear) vs
   vectorised again for every fit (fit_linear per trial, the same trials in the same order).
2. `--part probe`: the embedding probe (frozen minilm-l6 mean-pooled states + LR) on the same
   splits: validation macro-F1, rows embedded, seconds.
3. `--part estimate`: vectorise and coarse-grid fit seconds on emotion and banking77 at
   2k / 8k / 16k training rows (banking77 tops out at its 8k train split): the constants in
   lmforge/classical/search.py come from this table.

    OMP_NUM_THREADS=1 python bench/bench_classical.py [--part search probe estimate] [--probe-rows 4000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "src"))


def splits(name: str) -> tuple[list[str], list[str], list[str], list[str]]:
    if name == "emotion":
        train = pd.read_csv(DATA / "emotion.csv")
        valid = pd.read_csv(DATA / "emotion_validation.csv")
    else:
        from sklearn.model_selection import train_test_split

        frame = pd.read_csv(DATA / "banking77.csv")
        train, valid = train_test_split(frame, test_size=0.2, stratify=frame["label"], random_state=0)
    return (
        train["text"].astype(str).tolist(),
        train["label"].astype(str).tolist(),
        valid["text"].astype(str).tolist(),
        valid["label"].astype(str).tolist(),
    )


def part_search(names: list[str]) -> None:
    from lmforge.classical.linear import fit_features, fit_head, fit_linear
    from lmforge.classical.search import estimate_seconds, search_linear
    from lmforge.tasks.classification import metrics

    print("== search_linear: vectorise once vs per fit, same trials ==")
    for name in names:
        tt, tl, vt, vl = splits(name)
        labels = sorted(set(tl))
        t0 = time.perf_counter()
        result = search_linear(tt, tl, vt, vl, labels)
        once = time.perf_counter() - t0
        # The same trials again, both ways, alternating trial by trial so load from other jobs
        # on the machine falls on both arms alike: A fits the head on matrices vectorised once
        # (that vectorising counted once), B vectorises again for every fit (fit_linear).
        t0 = time.perf_counter()
        features, X = fit_features(tt)
        V = features.transform(vt)
        shared = time.perf_counter() - t0
        per_fit = 0.0
        for trial in result.trials:
            t0 = time.perf_counter()
            head = fit_head(X, tl, trial.head, trial.C)
            metrics(vl, [str(c) for c in head.classes_[head.predict_proba(V).argmax(1)]])
            shared += time.perf_counter() - t0
            t0 = time.perf_counter()
            model = fit_linear(tt, tl, head=trial.head, C=trial.C)
            metrics(vl, [model.labels[i] for i in model.proba(vt).argmax(1)])
            per_fit += time.perf_counter() - t0
        best = result.best_trial
        predicted = estimate_seconds(len(tt), len(labels), len(result.trials))
        print(
            f"{name}: {len(tt)} train / {len(vt)} validation rows, {len(labels)} classes; "
            f"best {best.head} C={best.C:g} macro-F1 {best.score:.4f}; {len(result.trials)} trials "
            f"({result.stopped}); search_linear {once:.1f}s (estimate_seconds said {predicted:.1f}s); "
            f"same trials paired: vectorised once {shared:.1f}s vs per fit {per_fit:.1f}s "
            f"(vectorising {result.vectorise_seconds:.1f}s)"
        )
        for trial in result.trials:
            print(f"    {trial.head:20s} C={trial.C:<8g} {trial.score:.4f} {trial.fit_seconds:6.1f}s")
        with tempfile.TemporaryDirectory() as folder:
            from lmforge.classical.linear import save_linear
            from lmforge.classical.onnx import HEAD_FILE, OnnxLinear, export_head, parity

            saved = save_linear(result.best, Path(folder) / "model")
            runner = OnnxLinear(saved, export_head(result.best, saved / HEAD_FILE), threads=1)
            t0 = time.perf_counter()
            report = parity(result.best, runner, vt)
            print(
                f"    ONNX head on {len(vt)} validation texts: max prob diff {report['max_prob_diff']:.2e}, "
                f"argmax agreement {report['argmax_agreement']:.4f} ({time.perf_counter() - t0:.1f}s)"
            )


def part_probe(names: list[str], probe_rows: int | None) -> None:
    from lmforge.classical.embedding_probe import fit_embedding_probe
    from lmforge.tasks.classification import metrics

    print("== embedding probe (minilm-l6, frozen, mean-pooled) ==")
    for name in names:
        tt, tl, vt, vl = splits(name)
        labels = sorted(set(tl))
        if probe_rows and probe_rows < len(tt):
            pick = np.random.default_rng(0).choice(len(tt), probe_rows, replace=False)
            tt, tl = [tt[i] for i in pick], [tl[i] for i in pick]
        with tempfile.TemporaryDirectory() as folder:
            t0 = time.perf_counter()
            _, probe = fit_embedding_probe(
                "minilm-l6", None, tt, tl, labels, max_length=64, C=1.0, out_dir=Path(folder) / "probe"
            )
            fit_seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            probs = probe.proba(vt)
            predict_seconds = time.perf_counter() - t0
        score = metrics(vl, [labels[i] for i in probs.argmax(1)])["f1_macro"]
        print(
            f"{name}: probe on {probe.rows_used}/{len(tt)} rows, macro-F1 {score:.4f}; "
            f"embed + fit + save {fit_seconds:.1f}s, validation {len(vt)} rows {predict_seconds:.1f}s"
        )


def part_estimate(names: list[str]) -> None:
    from lmforge.classical.linear import fit_features, fit_head
    from lmforge.classical.search import COARSE, estimate_fit_seconds

    print("== fit seconds by rows (estimate constants) ==")
    print(
        "data        rows classes vectorise  "
        + "  ".join(f"{h[:3]} C={c:g}" for h in COARSE for c in COARSE[h])
    )
    for name in names:
        tt, tl, vt, _ = splits(name)
        for rows in (2_000, 8_000, 16_000):
            if rows > len(tt):
                continue
            t, y = tt[:rows], tl[:rows]
            t0 = time.perf_counter()
            features, X = fit_features(t)
            features.transform(vt)
            vectorise = time.perf_counter() - t0
            cells = []
            for head, Cs in COARSE.items():
                for C in Cs:
                    t0 = time.perf_counter()
                    fit_head(X, y, head, C)
                    seconds = time.perf_counter() - t0
                    cells.append(f"{seconds:5.1f}/{estimate_fit_seconds(rows, len(set(y)), head):4.1f}")
            print(f"{name:10s} {rows:5d} {len(set(y)):7d} {vectorise:9.1f}  " + "  ".join(cells), flush=True)
    print("(cells: measured / estimated seconds)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--part", nargs="+", default=["search", "probe"], choices=["search", "probe", "estimate"]
    )
    parser.add_argument("--data", nargs="+", default=["emotion", "banking77"])
    parser.add_argument("--probe-rows", type=int, default=None, help="train the probe on this many rows")
    args = parser.parse_args()
    if "estimate" in args.part:
        part_estimate(args.data)
    if "search" in args.part:
        part_search(args.data)
    if "probe" in args.part:
        part_probe(args.data, args.probe_rows)


if __name__ == "__main__":
    main()
