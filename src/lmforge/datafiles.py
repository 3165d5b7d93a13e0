"""Read a user's data file (CSV, JSONL, Parquet) into strings, with errors that say where.

Every cell is read as text, so "007" stays "007" and a label "NA" stays a label. Each
row keeps its 1-based position in the file as a spreadsheet shows it (`source_row`):
CSV header is row 1, so data starts at row 2; JSONL rows are line numbers.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lmforge.errors import DataError

FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "txt",
    ".md": "txt",
}


@dataclass
class DataFile:
    """A file's rows as a frame of strings (None where a value is missing)."""

    path: Path
    frame: pd.DataFrame
    format: str
    encoding: str | None

    @property
    def columns(self) -> list[str]:
        return [c for c in self.frame.columns if c != "source_row"]


def read_data_file(path: Path, *, format: str = "auto", encoding: str = "auto") -> DataFile:
    """Read a data file; raise DataError naming the file (and row) on any problem."""
    if not path.exists():
        raise DataError(
            "file not found", file=path, hint="paths in the config are relative to the config file"
        )
    fmt = format if format != "auto" else FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"unknown file type '{path.suffix}'",
            file=path,
            hint="use .csv, .jsonl, .parquet or .txt, or set data.format",
        )
    if fmt == "parquet":
        return DataFile(path, _read_parquet(path), fmt, None)
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError("the file is empty", file=path)
    text, used = _decode(path, raw, encoding)
    parse = {"csv": _parse_csv, "txt": _parse_txt}.get(fmt, _parse_jsonl)
    frame = parse(path, text)
    if frame.empty:
        raise DataError("the file has a header but no rows", file=path)
    return DataFile(path, frame, fmt, used)


def _decode(path: Path, raw: bytes, encoding: str) -> tuple[str, str]:
    if encoding != "auto":
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError as exc:
            raise DataError(
                f"byte 0x{raw[exc.start]:02x} is not valid {encoding}",
                file=path,
                row=raw[: exc.start].count(b"\n") + 1,
                hint="set data.encoding to the file's encoding, or `auto` to detect it",
            ) from None
        except LookupError:
            raise DataError(
                f"unknown encoding '{encoding}'",
                file=path,
                hint="set data.encoding to e.g. utf-8, cp1252, latin-1 or auto",
            ) from None
    try:
        return raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    matches = list(from_bytes(raw))
    if not matches:
        raise DataError(
            "cannot detect the text encoding", file=path, hint="save the file as UTF-8 or set data.encoding"
        )
    # Short texts fit many code pages about equally well; among near-ties prefer
    # Windows-1252, by far the most common non-UTF-8 encoding of CSV files (Excel).
    best = matches[0]
    try:
        windows = raw.decode("cp1252")
    except UnicodeDecodeError:
        windows = None
    if windows is not None and (
        str(best) == windows or any(m.encoding == "cp1252" and m.chaos <= best.chaos + 0.1 for m in matches)
    ):
        return windows, "cp1252"
    return str(best), best.encoding


_TOKENIZE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_EOF = re.compile(r"EOF inside string starting at row (\d+)")


def _parse_csv(path: Path, text: str) -> pd.DataFrame:
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        frame = pd.read_csv(
            io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_values=[], skip_blank_lines=True
        )
    except pd.errors.ParserError as exc:
        message = str(exc)
        if match := _TOKENIZE.search(message):
            expected, line, saw = match.groups()
            raise DataError(
                f"expected {expected} fields, saw {saw}",
                file=path,
                row=int(line),
                hint="quote fields that contain the separator",
            ) from None
        if match := _EOF.search(message):
            raise DataError(
                "a quoted field is never closed", file=path, row=int(match.group(1)) + 1
            ) from None
        raise DataError(f"malformed CSV: {message}", file=path) from None
    except pd.errors.EmptyDataError:
        raise DataError("the file is empty", file=path) from None
    unnamed = [c for c in frame.columns if str(c).startswith("Unnamed:")]
    if unnamed and len(unnamed) == len(frame.columns):
        raise DataError("the first line must be a header naming the columns", file=path, row=1)
    frame = frame.replace({"": None})
    frame.insert(0, "source_row", range(2, len(frame) + 2))
    return frame


def _parse_jsonl(path: Path, text: str) -> pd.DataFrame:
    records, rows = [], []
    stripped = text.lstrip()
    if path.suffix.lower() == ".json" and stripped.startswith("["):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON: {exc.msg}", file=path, row=exc.lineno) from None
        records, rows = list(loaded), list(range(1, len(loaded) + 1))
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"invalid JSON: {exc.msg} (column {exc.colno})", file=path, row=number
                ) from None
            if not isinstance(record, dict):
                raise DataError("each line must be a JSON object", file=path, row=number)
            records.append(record)
            rows.append(number)
    frame = pd.DataFrame.from_records(records)
    for column in frame.columns:
        frame[column] = [
            None
            if v is None or (isinstance(v, float) and v != v)
            else v
            if isinstance(v, (str, list, dict))
            else str(v)
            for v in frame[column]
        ]
    frame.insert(0, "source_row", rows)
    return frame


def _parse_txt(path: Path, text: str) -> pd.DataFrame:
    """Plain text: each paragraph (lines up to a blank line) is one row of column `text`;
    `source_row` is the line the paragraph starts on."""
    rows: list[int] = []
    texts: list[str] = []
    current: list[str] = []
    start = 0
    for number, line in enumerate([*text.splitlines(), ""], start=1):
        if line.strip():
            if not current:
                start = number
            current.append(line.rstrip())
        elif current:
            rows.append(start)
            texts.append("\n".join(current))
            current = []
    return pd.DataFrame({"source_row": rows, "text": texts})


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise DataError(f"cannot read Parquet: {exc}", file=path) from None
    if frame.empty:
        raise DataError("the file has no rows", file=path)
    for column in frame.columns:
        frame[column] = [_parquet_value(v) for v in frame[column]]
    frame.insert(0, "source_row", range(1, len(frame) + 1))
    return frame


def _parquet_value(value: object) -> object:
    # Lists (chat messages) stay lists; every other cell is text, like CSV.
    if value is None or (isinstance(value, float) and value != value):
        return None
    if hasattr(value, "tolist") and not isinstance(value, str) and getattr(value, "ndim", 0) > 0:
        return value.tolist()
    return value if isinstance(value, (list, dict)) else str(value)
