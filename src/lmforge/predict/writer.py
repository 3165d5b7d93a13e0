"""Write the prediction table chunk by chunk to a temporary file, renamed into place at the end.

A failure or Ctrl-C deletes the temporary file, so OUTPUT is either the whole answer or not
there at all (an earlier OUTPUT, replaced only with --force, stays until the rename).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import TracebackType
from typing import Any

from lmforge.errors import DataError

OUTPUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl"}


def check_output(path: Path, *, force: bool, inputs: Path | None = None) -> str:
    """The output format, after refusing what would lose data or fail only at the end."""
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"unknown output type '{path.suffix}'", file=path, hint="end --out with .parquet, .csv or .jsonl"
        )
    if not path.parent.is_dir():
        raise DataError(f"folder {path.parent} does not exist", file=path, hint="create it first")
    if inputs is not None and path.resolve() == inputs.resolve():
        raise DataError("is the input file too", file=path, hint="write the predictions elsewhere")
    if path.is_dir():
        raise DataError("is a folder", file=path, hint="name a file")
    if path.exists() and not force:
        raise DataError("exists already", file=path, hint="pass --force to replace it")
    return fmt


class TableWriter:
    """`with TableWriter(path, fmt) as w: w.write(table)`; the file appears on a clean exit only."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.format = fmt
        self.tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        self._writer: Any = None
        self._handle: Any = None
        self.rows = 0

    def __enter__(self) -> TableWriter:
        return self

    def write(self, table: Any) -> None:
        """Append a pyarrow Table (every call with the schema of the first)."""
        if self.format == "parquet":
            import pyarrow.parquet as pq

            if self._writer is None:
                self._writer = pq.ParquetWriter(self.tmp, table.schema)
            self._writer.write_table(table)
        elif self.format == "csv":
            import pyarrow.csv as pc

            if self._writer is None:
                self._writer = pc.CSVWriter(self.tmp, table.schema)
            self._writer.write_table(table)
        else:
            import json

            if self._handle is None:
                self._handle = self.tmp.open("w", encoding="utf-8")
            for record in table.to_pylist():
                self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.rows += table.num_rows

    def _close(self) -> None:
        for closer in (self._writer, self._handle):
            if closer is not None:
                closer.close()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._close()
        finally:
            if kind is None:
                os.replace(self.tmp, self.path)
            else:
                with contextlib.suppress(FileNotFoundError):
                    self.tmp.unlink()
