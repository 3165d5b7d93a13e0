"""What the clean stage did, row by row: every removal and change with its reason."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass
class CleanLog:
    """Removed rows, changed rows, duplicate-label conflicts and counters for the report."""

    removed: list[dict[str, Any]] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    pii: Counter[str] = field(default_factory=Counter)
    repairs: Counter[str] = field(default_factory=Counter)
    # The label-noise probe used, why, and its folds (None: the check did not run).
    noise_probe: dict[str, Any] | None = None
    # Columns of a removed row recorded besides text and label (generation: the answer).
    row_columns: tuple[str, ...] = ()

    def remove(self, split: str, frame: pd.DataFrame, reason: str | Sequence[str], **extra: Any) -> None:
        """Record every row of `frame` as removed, with one reason for all or one per row.

        `extra` values are scalars for all rows or sequences with one value per row.
        """
        reasons = [reason] * len(frame) if isinstance(reason, str) else list(reason)
        for i, row in enumerate(frame.itertuples(index=False)):
            record = {
                "split": split,
                "source_row": row.source_row,
                "reason": reasons[i],
                "text": row.text,
                "label": row.label,
                **{column: getattr(row, column) for column in self.row_columns},
            }
            for key, value in extra.items():
                record[key] = value if isinstance(value, (str, int, float)) or value is None else value[i]
            self.removed.append(record)

    def change(self, split: str, source_row: int, changes: list[str], before: str, after: str) -> None:
        self.repairs.update(changes)
        self.changed.append(
            {
                "split": split,
                "source_row": source_row,
                "changes": " ".join(changes),
                "before": before,
                "after": after,
            }
        )
