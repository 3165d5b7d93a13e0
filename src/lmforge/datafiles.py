"""Read a user's data file (CSV, JSONL, Parquet) into strings, with errors that say where.

Every cell is read as text, so "007" stays "007" and a label "NA" stays a label. Each
row keeps its 1-based position in the file as a spreadsheet shows it (`source_row`):
CSV header is row 1, so data starts at row 2; JSONL rows are line numbers.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
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
    # Columns the file typed as something other than text (Parquet dtypes, JSON numbers,
    # lists): column -> (what it holds, first row holding it or None for a whole column).
    # Cells are strings in `frame` either way; this says which strings were numbers.
    non_text: dict[str, tuple[str, int | None]] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return [c for c in self.frame.columns if c != "source_row"]


def require_text(data: DataFile, column: str, hint: str, *, all_numbers: bool = True) -> None:
    """Stop when `column` does not hold texts (`hint` says which setting picked it): a Parquet column of
    integers, JSON numbers or lists, or a CSV column where every value is a number, which
    would otherwise train on "0", "1", ... as if they were sentences. `all_numbers=False` keeps
    only what the file itself types as not text (where a column of number strings can be right)."""
    if column in data.non_text:
        kind, row = data.non_text[column]
        raise DataError(f"holds {kind}, not text", file=data.path, row=row, column=column, hint=hint)
    if not all_numbers:
        return
    values = data.frame[column].dropna()

    def numbers(part: pd.Series) -> bool:
        return bool(len(part)) and bool(pd.to_numeric(part, errors="coerce").notna().all())

    if numbers(values.head(100)) and numbers(values):  # the head decides for most files, cheaply
        raise DataError("every value is a number, not text", file=data.path, column=column, hint=hint)


def check_path(path: Path) -> None:
    """Stop on a data path that is no file: a folder, a link to nothing (or a loop of links),
    or nothing at all."""
    if path.is_dir():
        raise DataError("is a folder, not a file", file=path, hint="point at a CSV, JSONL or Parquet file")
    if not path.exists():
        # exists() is False for a dangling link and for a loop of links alike; say which.
        missing = "a symbolic link to nothing (or a loop of links)" if path.is_symlink() else "file not found"
        raise DataError(missing, file=path, hint="paths in the config are relative to the config file")


def read_data_file(path: Path, *, format: str = "auto", encoding: str = "auto") -> DataFile:
    """Read a data file; raise DataError naming the file (and row) on any problem."""
    check_path(path)
    fmt = format if format != "auto" else FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"unknown file type '{path.suffix}'",
            file=path,
            hint="use .csv, .jsonl, .parquet or .txt, or set data.format",
        )
    if fmt == "parquet":
        table, types = _read_parquet(path)
        return DataFile(path, table, fmt, None, types)
    try:
        raw = path.read_bytes()
    except OSError as exc:  # permissions, a device, a file removed meanwhile
        raise DataError(f"cannot read the file: {exc.strerror or exc}", file=path) from None
    if not raw.strip():
        raise DataError("the file is empty", file=path)
    if raw.startswith(b"PK\x03\x04"):
        raise DataError(
            "is a ZIP archive (an Excel .xlsx workbook?), not text",
            file=path,
            hint="save it as CSV (UTF-8) or export the sheet",
        )
    text, used = _decode(path, raw, encoding)
    if "\x00" in text:  # UTF-16 decodes its zero bytes away; text left with NULs is binary
        line = text[: text.index("\x00")].count("\n") + 1
        raise DataError("holds binary data (NUL bytes), not text", file=path, row=line)
    non_text: dict[str, tuple[str, int | None]] = {}
    if fmt == "jsonl":
        frame, non_text = _parse_jsonl(path, text)
    else:
        frame = (_parse_csv if fmt == "csv" else _parse_txt)(path, text)
    if frame.empty:
        raise DataError("the file has a header but no rows", file=path)
    return DataFile(path, frame, fmt, used, non_text)


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


def csv_parser_error(exc: Exception, path: Path, where: str = "") -> DataError:
    """pandas' CSV parser error as one line naming the file and, when pandas says, the row."""
    message = str(exc)
    if match := _TOKENIZE.search(message):
        expected, line, saw = match.groups()
        return DataError(
            f"expected {expected} fields, saw {saw}",
            file=path,
            row=int(line),
            hint="quote fields that contain the separator",
        )
    if match := _EOF.search(message):
        return DataError("a quoted field is never closed", file=path, row=int(match.group(1)) + 1)
    return DataError(f"malformed CSV{where}: {message}", file=path)


def _parse_csv(path: Path, text: str) -> pd.DataFrame:
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        frame = pd.read_csv(
            io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_values=[], skip_blank_lines=True
        )
    except pd.errors.ParserError as exc:
        raise csv_parser_error(exc, path) from None
    except pd.errors.EmptyDataError:
        raise DataError("the file is empty", file=path) from None
    # pandas renames a repeated header to `text.1`: the second column would be silently unused.
    first = pd.read_csv(io.StringIO(text), sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False)
    header = [str(name) for name in first.iloc[0]] if len(first) else []
    repeated = sorted({name for name in header if name.strip() and header.count(name) > 1})
    if repeated:
        raise DataError(
            f"the header names column '{repeated[0]}' more than once", file=path, row=1, column=repeated[0]
        )
    unnamed = [c for c in frame.columns if str(c).startswith("Unnamed:")]
    if unnamed and len(unnamed) == len(frame.columns):
        raise DataError("the first line must be a header naming the columns", file=path, row=1)
    frame = frame.replace({"": None})
    frame.insert(0, "source_row", range(2, len(frame) + 2))
    return frame


def _parse_jsonl(path: Path, text: str) -> tuple[pd.DataFrame, dict[str, tuple[str, int | None]]]:
    records, rows = [], []
    stripped = text.lstrip()
    if path.suffix.lower() == ".json" and stripped.startswith("["):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON: {exc.msg}", file=path, row=exc.lineno) from None
        if not all(isinstance(record, dict) for record in loaded):
            number = next(i for i, r in enumerate(loaded, start=1) if not isinstance(r, dict))
            raise DataError("each item of the JSON array must be an object", file=path, row=number)
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
    non_text: dict[str, tuple[str, int | None]] = {}
    for column in frame.columns:
        values = frame[column].tolist()
        for row, value in zip(rows, values, strict=True):
            if value is not None and not isinstance(value, str) and not _is_nan(value):
                non_text[str(column)] = (_JSON_KINDS.get(type(value), "a number"), row)
                break
        frame[column] = [
            None if v is None or _is_nan(v) else v if isinstance(v, (str, list, dict)) else str(v)
            for v in values
        ]
    frame.insert(0, "source_row", rows)
    return frame, non_text


_JSON_KINDS = {bool: "true/false", list: "a list", dict: "an object"}


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and value != value


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


def _read_parquet(path: Path) -> tuple[pd.DataFrame, dict[str, tuple[str, int | None]]]:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise DataError(f"cannot read Parquet: {exc}", file=path) from None
    if frame.empty:
        raise DataError("the file has no rows", file=path)
    if frame.columns.duplicated().any():
        repeated = str(frame.columns[frame.columns.duplicated()][0])
        raise DataError(f"column '{repeated}' appears more than once", file=path, column=repeated)
    non_text: dict[str, tuple[str, int | None]] = {
        str(column): (f"{dtype} values", None)
        for column, dtype in frame.dtypes.items()
        if pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_datetime64_any_dtype(dtype)
    }
    for column in frame.columns:
        frame[column] = [_parquet_value(v) for v in frame[column]]
    frame.insert(0, "source_row", range(1, len(frame) + 1))
    return frame, non_text


def _parquet_value(value: object) -> object:
    # Lists (chat messages) stay lists; every other cell is text, like CSV.
    if value is None or (isinstance(value, float) and value != value):
        return None
    if hasattr(value, "tolist") and not isinstance(value, str) and getattr(value, "ndim", 0) > 0:
        return value.tolist()
    return value if isinstance(value, (list, dict)) else str(value)
