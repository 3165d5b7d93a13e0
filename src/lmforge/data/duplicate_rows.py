"""Duplicates at the level of tables: which rows go, which stay, and what happens to labels.

`lmforge.data.dedup` finds duplicate pairs in lists of texts; this module applies them to
the pipeline's tables. Within train + unlabeled the first row of each group is kept; a group
whose labelled rows disagree is a *conflict*, resolved by `clean.conflicts` and always
listed. Across splits, train rows that copy a validation or test row are leakage.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import groupby
from typing import Any

import pandas as pd

from lmforge.config import CleanConfig
from lmforge.data.cleanlog import CleanLog
from lmforge.data.dedup import BlockMapper, Match, cross_duplicates, find_duplicates


def deduplicate(
    cfg: CleanConfig, frames: dict[str, pd.DataFrame], log: CleanLog, *, mapper: BlockMapper | None = None
) -> dict[str, pd.DataFrame]:
    """Drop duplicates within train + unlabeled (jointly), within validation and within test.

    `mapper` runs the MinHash sketching elsewhere (Ray Data); the matches are the same."""
    out = dict(frames)
    groups = [("train", "unlabeled"), ("validation",), ("test",)]
    for names in groups:
        present = [n for n in names if n in frames]
        if not present:
            continue
        rows = pd.concat([frames[n].assign(_split=n) for n in present], ignore_index=True)
        matches = find_duplicates(
            rows["text"].tolist(),
            near=cfg.near_duplicates,
            threshold=cfg.near_duplicate_threshold,
            mapper=mapper,
        )
        if not cfg.exact_duplicates:
            matches = [m for m in matches if m.kind != "exact"]
        rows = _apply(cfg, rows, matches, log)
        for n in present:
            out[n] = rows[rows["_split"] == n].drop(columns="_split").reset_index(drop=True)
    return out


def _apply(cfg: CleanConfig, rows: pd.DataFrame, matches: list[Match], log: CleanLog) -> pd.DataFrame:
    members: dict[int, list[Match]] = defaultdict(list)
    for match in matches:
        members[match.duplicate_of].append(match)
    drop: dict[int, dict[str, Any]] = {}
    labels = rows["label"].tolist()
    for keeper, dupes in members.items():
        group = [keeper, *(m.index for m in dupes)]
        given = Counter(labels[i] for i in group if isinstance(labels[i], str) and labels[i])
        conflict = len(given) > 1
        resolution = _resolve(cfg, given) if conflict else "duplicate"
        if conflict:
            _log_conflict(log, rows, group, keeper, resolution)
        if resolution == "keep all":
            continue
        if resolution == "dropped":
            drop[keeper] = {"reason": "conflicting labels among duplicates"}
        elif resolution.startswith("majority"):
            winner = given.most_common(1)[0][0]
            if labels[keeper] != winner:
                rows.loc[keeper, "label"] = winner
        for m in dupes:
            reason = (
                f"{m.kind} duplicate" if resolution != "dropped" else "conflicting labels among duplicates"
            )
            drop[m.index] = {"reason": reason, "duplicate_of": keeper, "similarity": round(m.similarity, 3)}
    # One log call per run of rows from the same split: a row-by-row `rows.loc[[i]]` copies the
    # Arrow-backed text column each time (quadratic: hours at 1M rows and 100k duplicates).
    splits, source_rows = rows["_split"].tolist(), rows["source_row"].tolist()
    for split, run in groupby(sorted(drop), key=lambda i: splits[i]):
        indexes = list(run)
        infos = [drop[i] for i in indexes]
        of = [info.get("duplicate_of") for info in infos]
        log.remove(
            str(split),
            rows.loc[indexes],
            [info["reason"] for info in infos],
            duplicate_of_split=[None if o is None else splits[o] for o in of],
            duplicate_of_row=[None if o is None else int(source_rows[o]) for o in of],
            similarity=[info.get("similarity") for info in infos],
        )
    return rows.drop(index=list(drop))


def _resolve(cfg: CleanConfig, given: Counter[str]) -> str:
    if cfg.conflicts == "keep":
        return "keep all"
    if cfg.conflicts == "drop":
        return "dropped"
    (top, first), (_, second) = given.most_common(2)
    return f"majority '{top}'" if first > second else "dropped"  # a tie has no majority


def _log_conflict(log: CleanLog, rows: pd.DataFrame, group: list[int], keeper: int, resolution: str) -> None:
    number = len({c["group"] for c in log.conflicts}) + 1
    for index in group:
        log.conflicts.append(
            {
                "group": number,
                "split": rows.at[index, "_split"],
                "source_row": int(rows.at[index, "source_row"]),
                "text": rows.at[index, "text"],
                "label": rows.at[index, "label"],
                "resolution": f"{resolution} (kept)"
                if index == keeper and resolution != "dropped"
                else resolution,
            }
        )


def leakage(
    train: pd.DataFrame, held_out: dict[str, pd.DataFrame], threshold: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train rows that duplicate a validation or test row: (train without them, the leak list)."""
    names = [n for n, f in held_out.items() if len(f)]
    if not names or not len(train):
        return train, pd.DataFrame(columns=_LEAK_COLUMNS)
    reference = pd.concat([held_out[n].assign(_split=n) for n in names], ignore_index=True)
    matches = cross_duplicates(train["text"].tolist(), reference["text"].tolist(), threshold=threshold)
    leaks = pd.DataFrame(
        [
            {
                "source_row": int(train.iloc[m.index]["source_row"]),
                "text": train.iloc[m.index]["text"],
                "label": train.iloc[m.index]["label"],
                "kind": m.kind,
                "similarity": round(m.similarity, 3),
                "duplicates_split": reference.at[m.duplicate_of, "_split"],
                "duplicates_row": int(reference.at[m.duplicate_of, "source_row"]),
                "duplicates_text": reference.at[m.duplicate_of, "text"],
            }
            for m in matches
        ],
        columns=_LEAK_COLUMNS,
    )
    kept = train.drop(index=train.index[[m.index for m in matches]]) if matches else train
    return kept.reset_index(drop=True), leaks


_LEAK_COLUMNS = [
    "source_row",
    "text",
    "label",
    "kind",
    "similarity",
    "duplicates_split",
    "duplicates_row",
    "duplicates_text",
]
