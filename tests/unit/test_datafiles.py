from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from lmforge.datafiles import read_data_file, require_text
from lmforge.errors import DataError


def test_reads_csv_jsonl_parquet_with_source_rows(tmp_path: Path) -> None:
    rows = [{"text": "hello there", "label": "a"}, {"text": "007", "label": "NA"}]
    pd.DataFrame(rows).to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    pd.DataFrame(rows).to_parquet(tmp_path / "d.parquet")
    for name, first_row in (("d.csv", 2), ("d.jsonl", 1), ("d.parquet", 1)):
        frame = read_data_file(tmp_path / name).frame
        assert frame["text"].tolist() == ["hello there", "007"], name
        assert frame["label"].tolist() == ["a", "NA"], name  # strings stay strings
        assert frame["source_row"].tolist() == [first_row, first_row + 1], name


def test_detects_a_legacy_encoding(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\ncafé crème brûlée déjà vu à la carte,food\n".encode("cp1252"))
    data = read_data_file(path)
    assert data.frame["text"][0] == "café crème brûlée déjà vu à la carte"
    assert data.encoding != "utf-8"


def test_explicit_encoding_error_names_file_and_row(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(b"text,label\nfine,a\nbad \xff byte,b\n")
    with pytest.raises(DataError) as info:
        read_data_file(path, encoding="utf-8")
    assert info.value.row == 3 and "mixed.csv" in str(info.value) and "0xff" in str(info.value)


@pytest.mark.parametrize(
    ("content", "row", "message"),
    [
        ('text,label\n"ok",a\n"too",many,fields\n', 3, "expected 2 fields, saw 3"),
        ('text,label\n"never closed,a\n', 2, "never closed"),
    ],
)
def test_malformed_csv_names_the_row(tmp_path: Path, content: str, row: int, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError) as info:
        read_data_file(path)
    assert info.value.row == row and message in str(info.value)


@pytest.mark.parametrize("content", ["", "  \n", "text,label\n"])
def test_empty_files_are_errors(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=r"empty|no rows"):
        read_data_file(path)


def test_bad_jsonl_line_is_located(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n\n{"text": "b", label: "y"}\n')
    with pytest.raises(DataError) as info:
        read_data_file(path)
    assert info.value.row == 3


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "d.xlsx"
    path.write_bytes(b"x")
    with pytest.raises(DataError, match="unknown file type"):
        read_data_file(path)


@pytest.mark.parametrize(
    ("name", "content", "row", "message"),
    [
        ("d.csv", b"text,text,label\na,b,c\n", 1, "names column 'text' more than once"),
        ("d.csv", b"PK\x03\x04 rest of a workbook", None, "ZIP archive"),
        ("d.csv", b"text,label\nok,a\nb\x00d,b\n", 3, "NUL bytes"),
        ("d.json", b'[{"text": "a", "label": "b"}, 7]', 2, "must be an object"),
    ],
)
def test_files_that_are_not_tables_of_text(
    tmp_path: Path, name: str, content: bytes, row: int | None, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        read_data_file(path)
    assert info.value.row == row


def test_a_folder_or_a_loop_of_links_is_named(tmp_path: Path) -> None:
    (tmp_path / "a.csv").symlink_to(tmp_path / "b.csv")
    (tmp_path / "b.csv").symlink_to(tmp_path / "a.csv")
    with pytest.raises(DataError, match="is a folder"):
        read_data_file(tmp_path)
    with pytest.raises(DataError, match="symbolic link"):
        read_data_file(tmp_path / "a.csv")


@pytest.mark.parametrize(
    ("name", "write", "row", "message"),
    [
        (
            "d.parquet",
            lambda p: pd.DataFrame({"text": [1, 2], "label": ["a", "b"]}).to_parquet(p),
            None,
            "int64",
        ),
        ("d.jsonl", lambda p: p.write_text('{"text": "a"}\n{"text": 2.5}\n'), 2, "a number"),
        ("d.jsonl", lambda p: p.write_text('{"text": ["a"]}\n'), 1, "a list"),
        ("d.csv", lambda p: p.write_text("text,label\n1,a\n2.5,b\n"), None, "every value is a number"),
    ],
)
def test_a_text_column_that_holds_no_text_is_refused(
    tmp_path: Path, name: str, write: Any, row: int | None, message: str
) -> None:
    path = tmp_path / name
    write(path)
    with pytest.raises(DataError, match=message) as info:
        require_text(read_data_file(path), "text", "check data.text_column")
    assert info.value.row == row and info.value.column == "text"


def test_text_with_some_numbers_and_numeric_labels_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    pd.DataFrame({"text": ["hello", "42"], "label": [0, 1]}).to_parquet(path)
    data = read_data_file(path)
    require_text(data, "text", "check data.text_column")
    assert data.frame["label"].tolist() == ["0", "1"] and "label" in data.non_text
