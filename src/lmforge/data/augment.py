"""Class balance and offline augmentation of the training split.

Three switchable methods, applied to the train split only (evaluation data must stay real):

* ``oversample``: duplicate random rows of small classes up to a fraction of the largest class.
* ``token_edits``: EDA-style swap / delete / insert of words (no WordNet: it is not available
  offline), keeping ``<EMAIL>``-style placeholders whole.
* ``paraphrase``: a small instruction-tuned causal LM (smollm2-135m) rewrites messages.

Every added row says where it came from (``origin``, ``source_row``, ``augment_model``), so the
report can count augmented rows and a bad variant can be traced to the row it was made from.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import zip_longest
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmforge.data.paraphrase import PLACEHOLDER_RE, clean_paraphrase, normalise, paraphrase

ORIGINS = ("original", "oversample", "token-edit", "paraphrase")
_WORD_RE = re.compile(r"\S*<[^<>\s]+>\S*|\S+")  # a placeholder glued to punctuation stays one word


def oversample(frame: pd.DataFrame, *, target: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """Duplicate random rows of each class until it has ``ceil(target * largest class)`` rows.

    Whole copies of a class are taken before a random remainder, so duplicates are spread
    evenly instead of piling up on the rows a with-replacement draw happens to hit.

    Args:
        frame: rows with ``label`` (and ``source_row``, ``text``; other columns are kept).
        target: fraction of the largest class count each class is raised to (1.0 = balanced).
        seed: seeds which rows are duplicated.

    Returns:
        All original rows first, then the duplicates (``origin="oversample"``).
    """
    base = _with_provenance(frame)
    missing = _missing_per_class(base, target)
    extra = _oversample_rows(base, missing, np.random.default_rng(seed))
    return pd.concat([base, extra], ignore_index=True)


def token_edits(text: str, *, rng: random.Random, n: int = 1, p_delete: float = 0.1) -> list[str]:
    """Up to ``n`` distinct variants of ``text``, each made by one random swap, deletion or insertion.

    A text of fewer than two words gives no variants: any edit of it is either a no-op or
    turns the word into a repetition that adds nothing to learn from.

    Args:
        text: the text to vary; ``<...>`` placeholders are never split or deleted.
        rng: the caller's random generator, so a whole augmentation run replays from one seed.
        n: how many variants are wanted.
        p_delete: per-word deletion probability of the delete operation (one word at least).

    Returns:
        Variants that all differ from ``text`` (fewer than ``n`` when it has few distinct edits).
    """
    words = _WORD_RE.findall(text)
    if len(words) < 2:
        return []
    variants: list[str] = []
    for _ in range(8 * n):  # bounded: a text like "a a" has few distinct edits
        if len(variants) == n:
            break
        operation = rng.choice((_swap, _delete, _insert))
        variant = " ".join(operation(list(words), rng, p_delete))
        if variant and variant != " ".join(words) and variant not in variants:
            variants.append(variant)
    return variants


def augment_train(
    frame: pd.DataFrame,
    *,
    oversample_target: float | None = None,
    token_edits_per_row: int = 0,
    paraphrases_per_row: int = 0,
    max_paraphrases: int = 200,
    model: str = "smollm2-135m",
    seed: int = 0,
    base_dir: Path | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Add paraphrases, token edits and duplicates to a train split; every method is optional.

    With ``oversample_target`` set, only classes below the target get new rows, and only as many
    as they miss: paraphrases first, then token edits (they add variety), then duplicates fill
    what is still missing. Without it, every row gets ``token_edits_per_row`` edits and
    ``paraphrases_per_row`` paraphrases. Generated texts equal to an existing text are dropped.

    Args:
        frame: the train split with ``source_row``, ``text``, ``label`` (other columns are kept).
        oversample_target: balance classes to this fraction of the largest class; None = off.
        token_edits_per_row: edit variants per original row (0 = off).
        paraphrases_per_row: paraphrases per original row (0 = off).
        max_paraphrases: cap on paraphrase *attempts* (generation is slow on CPU).
        model: the paraphrasing causal LM.
        seed: seeds every random choice, so a run replays exactly.
        base_dir: folder a relative ``model`` path is resolved against.
        on_progress: ``(method, done, total)`` as methods progress.

    Returns:
        The frame with added rows after the originals, and the count of added rows per origin.
    """
    base = _with_provenance(frame)
    originals = base[base["origin"] == "original"].reset_index(drop=True)
    rng = random.Random(seed)
    need = None if oversample_target is None else _missing_per_class(base, oversample_target)
    seen = {normalise(text) for text in base["text"]}  # generated copies of existing texts add nothing
    report = on_progress or (lambda method, done, total: None)
    added: list[pd.DataFrame] = []
    if paraphrases_per_row > 0:
        plan = _plan(originals, paraphrases_per_row, need, max_paraphrases, rng)
        outputs = paraphrase(
            [str(originals["text"].iat[p]) for p in plan],
            model=model,
            seed=seed,
            base_dir=base_dir,
            on_progress=lambda done: report("paraphrase", done, len(plan)),
        )
        added.append(_new_rows(originals, plan, outputs, "paraphrase", model, seen))
        need = _subtract(need, added[-1])
    if token_edits_per_row > 0:
        plan = _plan(originals, token_edits_per_row, need, None, rng)
        sources, variants = [], []
        for position, wanted in Counter(plan).items():
            for variant in token_edits(str(originals["text"].iat[position]), rng=rng, n=wanted):
                sources.append(position)
                variants.append(variant)
        added.append(_new_rows(originals, sources, variants, "token-edit", None, seen))
        need = _subtract(need, added[-1])
        report("token-edit", len(plan), len(plan))
    if need is not None:
        added.append(_oversample_rows(originals, need, np.random.default_rng(seed)))
        report("oversample", len(added[-1]), len(added[-1]))
    counts = {origin: sum(int((rows["origin"] == origin).sum()) for rows in added) for origin in ORIGINS[1:]}
    return pd.concat([base, *added], ignore_index=True), counts


def _with_provenance(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with ``origin`` / ``augment_model`` (and ``source_row`` from the position if absent)."""
    base = frame.reset_index(drop=True).copy()
    if "source_row" not in base:
        base["source_row"] = range(len(base))
    base["origin"] = base["origin"].fillna("original") if "origin" in base else "original"
    if "augment_model" not in base:
        base["augment_model"] = None
    return base


def _missing_per_class(frame: pd.DataFrame, target: float) -> dict[Any, int]:
    """Rows each class lacks to reach ``ceil(target * largest class count)``."""
    if not 0 < target <= 1:
        raise ValueError(f"oversample target must be in (0, 1], got {target}")
    counts = frame["label"].value_counts()
    wanted = math.ceil(target * int(counts.max())) if len(counts) else 0
    return {label: max(0, wanted - int(n)) for label, n in counts.items()}


def _oversample_rows(frame: pd.DataFrame, missing: dict[Any, int], gen: np.random.Generator) -> pd.DataFrame:
    """Duplicates of ``frame``'s rows: for each class, whole copies, then a random remainder."""
    picks: list[int] = []
    for label, n in missing.items():
        positions = np.flatnonzero((frame["label"] == label).to_numpy())
        if n <= 0 or len(positions) == 0:
            continue
        copies, remainder = divmod(n, len(positions))
        picks.extend(np.tile(positions, copies).tolist())
        picks.extend(gen.choice(positions, size=remainder, replace=False).tolist())
    rows = frame.iloc[picks].copy()
    rows["origin"] = "oversample"
    rows["augment_model"] = None
    return rows


def _plan(
    frame: pd.DataFrame, per_row: int, need: dict[Any, int] | None, cap: int | None, rng: random.Random
) -> list[int]:
    """Positions of the rows to derive new rows from, one entry per wanted new row.

    Rows of a class are taken in a shuffled order, cycled ``per_row`` times; classes are
    interleaved so a ``cap`` shares its budget fairly instead of going to the first class.
    """
    per_class: list[list[int]] = []
    for label, positions in frame.groupby("label", sort=True).indices.items():
        order = list(positions)
        rng.shuffle(order)
        wanted = per_row * len(order) if need is None else min(need.get(label, 0), per_row * len(order))
        per_class.append([order[i % len(order)] for i in range(wanted)])
    plan = [int(p) for group in zip_longest(*per_class) for p in group if p is not None]
    return plan if cap is None else plan[:cap]


def _new_rows(
    frame: pd.DataFrame,
    positions: Sequence[int],
    texts: Sequence[str | None],
    origin: str,
    model: str | None,
    seen: set[str],
) -> pd.DataFrame:
    """Copies of the source rows with the new texts; rejected and already-seen texts are dropped."""
    keep_positions, keep_texts = [], []
    for position, text in zip(positions, texts, strict=True):
        key = normalise(text) if text else ""
        if key and key not in seen:
            seen.add(key)
            keep_positions.append(position)
            keep_texts.append(text)
    rows = frame.iloc[keep_positions].copy()
    rows["text"] = keep_texts
    rows["origin"] = origin
    rows["augment_model"] = model
    return rows


def _subtract(need: dict[Any, int] | None, rows: pd.DataFrame) -> dict[Any, int] | None:
    """What each class still misses after ``rows`` were added (None stays None: balancing off)."""
    if need is None:
        return None
    got = rows["label"].value_counts()
    return {label: max(0, n - int(got.get(label, 0))) for label, n in need.items()}


def _swap(words: list[str], rng: random.Random, _p: float) -> list[str]:
    i, j = rng.sample(range(len(words)), 2)
    words[i], words[j] = words[j], words[i]
    return words


def _delete(words: list[str], rng: random.Random, p: float) -> list[str]:
    """Drop each ordinary word with probability ``p``; at least one goes and at least one stays."""
    deletable = [i for i, word in enumerate(words) if not PLACEHOLDER_RE.search(word)]
    if not deletable or len(words) < 2:
        return words
    gone = {i for i in deletable if rng.random() < p} or {rng.choice(deletable)}
    if len(gone) == len(words):
        gone.discard(rng.choice(sorted(gone)))
    return [word for i, word in enumerate(words) if i not in gone]


def _insert(words: list[str], rng: random.Random, _p: float) -> list[str]:
    """Insert a copy of one of the text's own words elsewhere (never a placeholder: that fakes PII).

    Not right beside the word itself: "card card" is a typo pattern, not a new phrasing.
    """
    pool = [i for i, word in enumerate(words) if not PLACEHOLDER_RE.search(word)]
    if not pool:
        return words
    source = rng.choice(pool)
    where = rng.choice([k for k in range(len(words) + 1) if k not in (source, source + 1)])
    words.insert(where, words[source])
    return words


__all__ = ["ORIGINS", "augment_train", "clean_paraphrase", "oversample", "paraphrase", "token_edits"]
