"""Duplicates applied to tables: every removal logged with its split and the row it copies."""

from __future__ import annotations

import pandas as pd
import pytest

from lmforge.config import CleanConfig
from lmforge.data.cleanlog import CleanLog
from lmforge.data.duplicate_rows import deduplicate

BASE = "I am still waiting on my new card, it was ordered two weeks ago and has not arrived"


def _frame(texts: list[str], labels: list[str | None], first_row: int) -> pd.DataFrame:
    return pd.DataFrame(
        {"source_row": range(first_row, first_row + len(texts)), "text": texts, "label": labels}
    )


@pytest.mark.parametrize("near", [True, False])
def test_removals_across_train_and_unlabeled_name_both_splits(near: bool) -> None:
    other = "my flight got cancelled and i feel so angry right now"
    train = _frame([BASE, other, BASE.upper(), BASE + " yet"], ["card", "travel", "card", "card"], 2)
    unlabeled = _frame([other + "!", "something else entirely here", BASE], [None, None, None], 100)
    log = CleanLog()
    out = deduplicate(CleanConfig(near_duplicates=near), {"train": train, "unlabeled": unlabeled}, log)
    removed = pd.DataFrame(log.removed)
    expected = [
        ("train", 4, "exact duplicate", "train", 2),
        *([("train", 5, "near duplicate", "train", 2)] if near else []),
        ("unlabeled", 100, "exact duplicate", "train", 3),
        ("unlabeled", 102, "exact duplicate", "train", 2),
    ]
    got = removed[["split", "source_row", "reason", "duplicate_of_split", "duplicate_of_row"]]
    assert [tuple(r) for r in got.itertuples(index=False)] == expected
    assert out["train"]["source_row"].tolist() == ([2, 3] if near else [2, 3, 5])
    assert out["unlabeled"]["source_row"].tolist() == [101]
    assert removed["text"].tolist()[0] == BASE.upper()  # the removed row itself, not its keeper
