from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from lmforge.datafiles import read_data_file
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
