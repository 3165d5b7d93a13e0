"""Read the text column (and the row id) of a CSV / JSONL / Parquet file in chunks.

Only one chunk is in memory at a time. Row numbers are the ones a spreadsheet or an editor
shows, like `datafiles.py`: CSV data starts at row 2 (row 1 is the header), a JSONL row is its
line number, a Parquet row is counted from 1. A row id is the `id_column` value as text, else
the 0-based position of the row among the file's rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.datafiles import FORMATS, check_path, csv_parser_error
from lmforge.errors import DataError


@dataclass
class Chunk:
    ids: list[Any]  # str (from id_column, None when empty) or int (0-based position)
    rows: list[int]  # row numbers for messages
    texts: list[Any]  # whatever the file holds: str, None, a number, a list ...


@dataclass
class Source:
    """An opened input: its format, the id column used (None: positions) and its chunks."""

    path: Path
    format: str
    id_column: str | None
    chunks: Iterator[Chunk]


def open_source(path: Path, column: str, *, id_column: str | None = None, chunk_rows: int = 1024) -> Source:
    """Check the file and its columns now (wrong column: one error listing the columns there);
    the chunks are read as the caller iterates. `id_column=None` uses `id` when present."""
    check_path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt not in ("csv", "jsonl", "parquet"):
        raise DataError(
            f"unknown file type '{path.suffix}'", file=path, hint="use .csv, .tsv, .jsonl or .parquet"
        )
    if path.stat().st_size == 0:
        raise DataError("the file is empty", file=path)
    opener = {"csv": _csv, "jsonl": _jsonl, "parquet": _parquet}[fmt]
    return opener(path, column, id_column, chunk_rows)


def _pick_id(path: Path, columns: list[str], column: str, id_column: str | None) -> str | None:
    if column not in columns:
        raise DataError(
            f"no column '{column}'; columns: {', '.join(map(str, columns)) or 'none'}",
            file=path,
            hint="choose one with --column",
        )
    if id_column is None:
        return "id" if "id" in columns and column != "id" else None
    if id_column not in columns:
        raise DataError(
            f"no id column '{id_column}'; columns: {', '.join(map(str, columns))}",
            file=path,
            hint="choose one with --id-column, or leave it out to number the rows",
        )
    return id_column


def _csv(path: Path, column: str, id_column: str | None, chunk_rows: int) -> Source:
    import pandas as pd

    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    options: dict[str, Any] = {
        "sep": sep,
        "dtype": str,
        "keep_default_na": False,
        "na_values": [],
        "encoding": "utf-8-sig",
        # A blank line is a row with empty text: dropping it would shift every later row number.
        "skip_blank_lines": False,
    }
    try:
        header = list(pd.read_csv(path, nrows=0, **options).columns)
    except pd.errors.EmptyDataError:
        raise DataError("the file is empty", file=path) from None
    except UnicodeDecodeError:
        raise DataError("is not UTF-8 text", file=path, hint="save the file as UTF-8") from None
    ids = _pick_id(path, header, column, id_column)

    def chunks() -> Iterator[Chunk]:
        position = 0
        reader = pd.read_csv(path, chunksize=chunk_rows, **options)
        try:
            for frame in reader:
                count = len(frame)
                rows = list(range(position + 2, position + 2 + count))
                yield Chunk(
                    [v or None for v in frame[ids]] if ids else list(range(position, position + count)),
                    rows,
                    frame[column].tolist(),
                )
                position += count
        except pd.errors.ParserError as exc:
            raise csv_parser_error(exc, path, f" after row {position + 1}") from None
        except UnicodeDecodeError:
            raise DataError(
                f"is not UTF-8 text (after row {position + 1})", file=path, hint="save the file as UTF-8"
            ) from None
        finally:
            reader.close()

    return Source(path, "csv", ids, chunks())


def _jsonl(path: Path, column: str, id_column: str | None, chunk_rows: int) -> Source:
    first = _first_record(path)
    ids = _pick_id(path, list(first), column, id_column)

    def chunks() -> Iterator[Chunk]:
        chunk = Chunk([], [], [])
        position = 0
        with path.open(encoding="utf-8-sig", errors="strict") as handle:
            number = 0
            try:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    record = _record(path, line, number)
                    value = record.get(ids) if ids else position
                    chunk.ids.append(value if ids is None or value is None else str(value))
                    chunk.rows.append(number)
                    chunk.texts.append(record.get(column, MISSING))
                    position += 1
                    if len(chunk.rows) >= chunk_rows:
                        yield chunk
                        chunk = Chunk([], [], [])
            except UnicodeDecodeError:
                raise DataError(
                    "is not UTF-8 text", file=path, row=number + 1, hint="save the file as UTF-8"
                ) from None
        if chunk.rows:
            yield chunk

    return Source(path, "jsonl", ids, chunks())


class _Missing:
    """A JSONL row without the text field (told apart from a `null` value)."""

    def __repr__(self) -> str:
        return "missing"


MISSING = _Missing()


def _record(path: Path, line: str, number: int) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg} (column {exc.colno})", file=path, row=number) from None
    if not isinstance(record, dict):
        raise DataError("each line must be a JSON object", file=path, row=number)
    return record


def _first_record(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8-sig") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    return _record(path, line, number)
    except UnicodeDecodeError:
        raise DataError("is not UTF-8 text", file=path, hint="save the file as UTF-8") from None
    raise DataError("the file is empty", file=path)


def _parquet(path: Path, column: str, id_column: str | None, chunk_rows: int) -> Source:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise DataError(f"cannot read Parquet: {exc}", file=path) from None
    schema = handle.schema_arrow
    ids = _pick_id(path, list(schema.names), column, id_column)
    kind = schema.field(column).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)):
        raise DataError(f"holds {kind} values, not text", file=path, column=column, hint="choose --column")

    def chunks() -> Iterator[Chunk]:
        position = 0
        wanted = [column] + ([ids] if ids and ids != column else [])
        try:
            for batch in handle.iter_batches(batch_size=chunk_rows, columns=wanted):
                count = batch.num_rows
                texts = batch.column(column).to_pylist()
                if ids:
                    found = batch.column(ids).to_pylist()
                    row_ids: list[Any] = [None if v is None else str(v) for v in found]
                else:
                    row_ids = list(range(position, position + count))
                yield Chunk(row_ids, list(range(position + 1, position + 1 + count)), texts)
                position += count
        except OSError as exc:
            raise DataError(f"cannot read Parquet after row {position}: {exc}", file=path) from None

    return Source(path, "parquet", ids, chunks())


def count_rows(path: Path, fmt: str) -> int | None:
    """Rows to expect, for the progress bar: Parquet's metadata, else the file's lines (a CSV
    row with line breaks inside quotes counts more than once: an estimate, not a check)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    lines = 0
    last = b"\n"
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    lines += last != b"\n"
    return max(lines - (1 if fmt == "csv" else 0), 0)
