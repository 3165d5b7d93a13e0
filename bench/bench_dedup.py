"""Near-duplicate detection on real short texts: injected near-copies found, and speed.

Rows come from ../shared/data/emotion.csv (tweets) and banking77.csv (intents). A sample is first
cleaned of its own duplicates (exact and near at the lowest threshold, by lmforge's detector), then
`copies` near-copies of distinct rows are appended, each made by one of: 1-3 character edits
(insert/delete/substitute), a swap of two adjacent words, an appended word, a removed word.

Definitions (per threshold t):
- recall: copies reported as a duplicate of their source (with distinct sources and copies after
  all originals, the source is the copy's whole cluster);
- recall@J>=t: the same, among copies whose exact 5-gram Jaccard to their source is >= t (what the
  LSH could find at all; the rest are too different to count as duplicates at t);
- precision: reported near matches that are (copy, its source) / all reported near matches;
- verified: reported near matches that are injected pairs or whose exact Jaccard (recomputed here
  with Python sets, independently of the module) is >= t / all reported near matches.
"datasketch default" is the recipe in datasketch's README for comparison: MinHash.bulk over SHA-1
hashed 5-grams, MinHashLSH with its default band optimum, a candidate accepted when its estimated
Jaccard is >= t, the same first-kept greedy order.

    python bench/bench_dedup.py [--rows 20000] [--copies 500] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from typing import Any

import pandas as pd
from datasketch import MinHash, MinHashLSH

from lmforge.data.dedup import cross_duplicates, find_duplicates, normal_form

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
THRESHOLDS = (0.7, 0.8, 0.9)
KINDS = ("char edits", "word swap", "word append", "word removal")
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def read(name: str) -> list[str]:
    """The text column of one data file (empty when the file is absent), as the file holds it."""
    if not (DATA / name).exists():
        return []
    return list(pd.read_csv(DATA / name, dtype=str, keep_default_na=False)["text"])


def shingles(text: str, k: int = 5) -> set[str]:
    """Character k-grams of the normal form, written independently of the module to check it."""
    form = normal_form(text)
    return {form[i : i + k] for i in range(max(len(form) - k + 1, 1))}


def jaccard(a: str, b: str) -> float:
    """Exact Jaccard of two texts' 5-gram sets."""
    x, y = shingles(a), shingles(b)
    return len(x & y) / len(x | y)


def perturb(text: str, kind: str, vocab: list[str], rng: random.Random) -> str:
    """One near-copy of `text` of the given kind (may equal the text; the caller retries)."""
    words = text.split()
    if kind == "char edits":
        chars = list(text)
        for _ in range(rng.randint(1, 3)):
            pos, op = rng.randrange(len(chars) + 1), rng.choice(("insert", "delete", "substitute"))
            if op == "insert" or pos == len(chars):
                chars.insert(pos, rng.choice(LETTERS))
            elif op == "delete":
                del chars[pos]
            else:
                chars[pos] = rng.choice(LETTERS)
        return "".join(chars)
    if kind == "word swap" and len(words) >= 2:
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    elif kind == "word append":
        words.append(rng.choice(vocab))
    elif kind == "word removal" and len(words) >= 3:
        del words[rng.randrange(len(words))]
    return " ".join(words)


def make_corpus(
    pool: list[str], rows: int, copies: int, seed: int
) -> tuple[list[str], dict[int, int], dict[int, str]]:
    """Clean sample + appended copies; returns (texts, source of each copy, kind of each copy)."""
    rng = random.Random(seed)
    sample = rng.sample(pool, min(rows, len(pool)))
    removed = {m.index for m in find_duplicates(sample, threshold=min(THRESHOLDS))}
    clean = [t for i, t in enumerate(sample) if i not in removed]
    vocab = sorted({w for t in clean[:2000] for w in normal_form(t).split()})
    texts, source_of, kind_of = list(clean), {}, {}
    for source in rng.sample(range(len(clean)), min(copies, len(clean))):
        kind = rng.choice(KINDS)
        copy = perturb(clean[source], kind, vocab, rng)
        while normal_form(copy) == normal_form(clean[source]):  # a near-copy, never an exact one
            kind = rng.choice(KINDS)
            copy = perturb(clean[source], kind, vocab, rng)
        source_of[len(texts)], kind_of[len(texts)] = source, kind
        texts.append(copy)
    return texts, source_of, kind_of


def datasketch_default(texts: list[str], threshold: float, sketches: list[MinHash]) -> dict[int, int]:
    """The README recipe: LSH candidates accepted on estimated Jaccard; returns {row: kept row}."""
    lsh, links = MinHashLSH(threshold=threshold, num_perm=128), {}
    for i, sketch in enumerate(sketches):
        hits = [j for j in lsh.query(sketch) if sketches[j].jaccard(sketch) >= threshold]
        if hits:
            links[i] = min(hits)
        else:
            lsh.insert(i, sketch)
    return links


def score(
    texts: list[str], links: dict[int, int], source_of: dict[int, int], kind_of: dict[int, str], t: float
) -> dict[str, Any]:
    """Recall, recall among reachable copies, per-kind recall, precision and verified share."""
    hit = {c for c, s in source_of.items() if links.get(c) == s}
    reachable = {c for c, s in source_of.items() if jaccard(texts[c], texts[s]) >= t}
    others = [(i, j) for i, j in links.items() if i not in hit]
    verified = sum(jaccard(texts[i], texts[j]) >= t for i, j in others)
    return {
        "recall": len(hit) / len(source_of),
        "recall_reachable": len(hit & reachable) / max(len(reachable), 1),
        "reachable": len(reachable),
        "precision": len(hit) / max(len(links), 1),
        "verified": (len(hit) + verified) / max(len(links), 1),
        "reported": len(links),
        "by_kind": {
            k: sum(kind_of[c] == k for c in hit) / max(sum(v == k for v in kind_of.values()), 1)
            for k in KINDS
        },
    }


def throughput(pool: list[str]) -> dict[str, float]:
    """find_duplicates on every row (default settings), and emotion's train-vs-eval leakage check."""
    start, cpu = time.perf_counter(), time.process_time()
    matches = find_duplicates(pool)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    result = {
        "rows": len(pool),
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rows_per_s": len(pool) / seconds,
        "exact": sum(m.kind == "exact" for m in matches),
        "near": sum(m.kind == "near" for m in matches),
    }
    train, evaluation = read("emotion.csv"), read("emotion_validation.csv") + read("emotion_test.csv")
    if evaluation:
        start = time.perf_counter()
        leaks = cross_duplicates(train, evaluation)
        result |= {
            "leak_seconds": time.perf_counter() - start,
            "leak_exact": sum(m.kind == "exact" for m in leaks),
            "leak_near": sum(m.kind == "near" for m in leaks),
            "leak_train_rows": len(train),
            "leak_eval_rows": len(evaluation),
        }
    return result


def run(rows: int, copies: int, seed: int = 0) -> dict[str, Any]:
    """Everything the table prints, for the project's combined data benchmark."""
    if not (DATA / "emotion.csv").exists() or not (DATA / "banking77.csv").exists():
        return {"skipped": f"{DATA} has no emotion.csv/banking77.csv"}
    pool = read("emotion.csv") + read("banking77.csv")
    texts, source_of, kind_of = make_corpus(pool, rows, copies, seed)
    start = time.perf_counter()
    sketches = MinHash.bulk([[s.encode() for s in shingles(t)] for t in texts], num_perm=128)
    bulk_seconds = time.perf_counter() - start
    result: dict[str, Any] = {"rows": len(texts) - len(source_of), "copies": len(source_of), "thresholds": {}}
    for t in THRESHOLDS:
        start = time.perf_counter()
        links = {m.index: m.duplicate_of for m in find_duplicates(texts, threshold=t)}
        ours = {"seconds": time.perf_counter() - start}
        start = time.perf_counter()
        base_links = datasketch_default(texts, t, sketches)
        base = {"seconds": bulk_seconds + time.perf_counter() - start}
        ours |= score(texts, links, source_of, kind_of, t)
        base |= score(texts, base_links, source_of, kind_of, t)
        result["thresholds"][t] = {"lmforge": ours, "datasketch default": base}
    result["throughput"] = throughput(pool)
    return result


def print_table(result: dict[str, Any]) -> None:
    """Thresholds side by side, one row per figure."""
    print(f"{result['rows']} clean rows + {result['copies']} injected near-copies")
    columns = [(t, name) for t in THRESHOLDS for name in ("lmforge", "datasketch default")]
    print(
        f"{'':24}"
        + "".join(f"{f't={t} ' + ('lmforge' if n == 'lmforge' else 'ds-default'):>20}" for t, n in columns)
    )
    cells = {(t, n): result["thresholds"][t][n] for t, n in columns}
    for key in ("recall", "recall_reachable", "precision", "verified", "reported", "reachable", "seconds"):
        print(
            f"{key:24}"
            + "".join(
                f"{cells[c][key]:>20.3f}" if isinstance(cells[c][key], float) else f"{cells[c][key]:>20}"
                for c in columns
            )
        )
    for kind in KINDS:
        print(f"{'recall: ' + kind:24}" + "".join(f"{cells[c]['by_kind'][kind]:>20.3f}" for c in columns))
    tp = result["throughput"]
    print(
        f"\nfind_duplicates on all {tp['rows']} rows (t=0.8): {tp['seconds']:.2f} s wall "
        f"({tp['cpu_seconds']:.2f} s CPU) = {tp['rows_per_s']:.0f} rows/s; "
        f"{tp['exact']} exact + {tp['near']} near duplicates"
    )
    if "leak_seconds" in tp:
        print(
            f"cross_duplicates emotion train ({tp['leak_train_rows']}) vs validation+test "
            f"({tp['leak_eval_rows']}): "
            f"{tp['leak_seconds']:.2f} s; {tp['leak_exact']} exact + {tp['leak_near']} near leaks"
        )


def main() -> None:
    """Parse arguments, run, print the table (or a skip line when the data is absent)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=20000, help="rows sampled before cleaning")
    parser.add_argument("--copies", type=int, default=500, help="near-copies injected")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = run(args.rows, args.copies, args.seed)
    if "skipped" in result:
        print(f"skipped: {result['skipped']}")
        return
    print_table(result)


if __name__ == "__main__":
    main()
