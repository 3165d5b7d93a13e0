"""Reuse an answer read from a local registry while nothing has written to the registry since.

The gate compares every run with the registry's champion, so it is never cached; but asking
MLflow costs seconds (importing it alone, ~2 s), which a no-change rerun cannot afford. A
local sqlite store is one file (plus its `-wal` journal when one is in use): while its size
and modification time are those recorded with an answer, no alias, tag or version can have
changed, and the answer still holds. Any write (another run registering, `lmforge models
promote`, the UI, a server's feedback retrain) changes the stamp and the next gate asks
MLflow again. Server stores (http, databases) and file-store folders have no such stamp and
are always asked.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

Stamp = list[list[int]]


def store_stamp(store: Path | None) -> Stamp | None:
    """Size and mtime of a local sqlite store and its journal; None when there is none."""
    if store is None or not store.is_file():
        return None
    files = [store, store.with_name(store.name + "-wal")]
    return [[(s := f.stat()).st_size, s.st_mtime_ns] for f in files if f.exists()]


def recall(memo_file: Path, key: dict[str, Any], stamp: Stamp | None) -> Any | None:
    """The answer stored under `key` if the store still has `stamp`, else None."""
    if stamp is None or not memo_file.is_file():
        return None
    try:
        entry = json.loads(memo_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # unreadable: ask the registry, and the next `remember` rewrites it
    if not isinstance(entry, dict) or entry.get("key") != key or entry.get("stamp") != stamp:
        return None
    return entry.get("answer")


def remember(memo_file: Path, key: dict[str, Any], stamp: Stamp | None, answer: Any) -> None:
    """Store `answer` for `key` at the store's `stamp` (atomically: a reader never sees half)."""
    if stamp is None:
        return
    memo_file.parent.mkdir(parents=True, exist_ok=True)
    scratch = memo_file.with_name(f".{memo_file.name}.{os.getpid()}.tmp")
    scratch.write_text(json.dumps({"key": key, "stamp": stamp, "answer": answer}), encoding="utf-8")
    os.replace(scratch, memo_file)
