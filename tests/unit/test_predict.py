"""`lmforge predict`: a registered tiny classifier (and a linear model, and a tiny causal LM)
over CSV / JSONL / Parquet files, streamed in small chunks; answers equal /v1/classify's; bad
rows kept with their reason; hostile inputs and outputs refused in one line, no output left."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from lmforge.cli import app
from lmforge.config import ServeConfig, load_config
from lmforge.errors import DataError
from lmforge.pipeline.runner import run_pipeline
from lmforge.predict import predict_file
from lmforge.serve.app import create_app
from lmforge.serve.predictor import load_predictor
from tests.conftest import fast_config, make_rows, write_csv

NAME = "test-project"
runner = CliRunner()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("predict")
    config = fast_config(folder, write_csv(folder / "data.csv", make_rows()), tiny_model)
    result = run_pipeline(load_config(data=config))
    assert result.artifacts["register"].summary["alias"] == "champion"
    return {"uri": config["tracking"]["uri"], "folder": folder}


@pytest.fixture(scope="module")
def predictor(registry: dict[str, Any]) -> Any:
    from lmforge.serve.state import ModelHolder
    from lmforge.state_dir import StateDir

    cfg = ServeConfig(state_dir=str(registry["folder"] / "state"))
    return ModelHolder(f"{NAME}@champion", registry["uri"], cfg, StateDir.of(cfg)).load_now().predictor


def _texts(n: int = 23) -> list[str]:
    return [text for text, _ in make_rows(per_class=8, seed=3)][:n]


def write_input(path: Path, records: list[dict[str, Any]]) -> Path:
    """`records` as the file type `path` ends with."""
    if path.suffix == ".csv":
        pd.DataFrame(records).to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    else:
        pq.write_table(pa.Table.from_pylist(records), path)
    return path


def read_output(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"id": str})
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True, dtype={"id": str})
    return pq.read_table(path).to_pandas()


def _cli(registry: dict[str, Any], *args: str) -> Any:
    return runner.invoke(
        app,
        ["predict", f"{NAME}@champion", *args, "--tracking-uri", registry["uri"], "--chunk-rows", "5"],
    )


@pytest.mark.parametrize(
    ("fmt", "runtime"), [("csv", "torch"), ("jsonl", "torch"), ("parquet", "torch"), ("csv", "auto")]
)
def test_predictions_equal_what_the_server_answers(
    registry: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, runtime: str
) -> None:
    monkeypatch.chdir(tmp_path)  # the downloaded model goes to ./lmforge-state, as for serve
    texts = _texts()
    source = write_input(tmp_path / f"in.{fmt}", [{"text": t} for t in texts])
    out = tmp_path / "out.parquet"
    result = _cli(registry, str(source), "--out", str(out), "--runtime", runtime)
    assert result.exit_code == 0, result.output
    assert "23 rows" in result.output
    assert ("onnx: model.int8.onnx" in result.output) == (runtime == "auto")
    table = read_output(out)
    assert table["row"].tolist() == list(range(len(texts)))  # 0-based, in input order over 5 chunks
    assert table["error"].isna().all()

    cfg = ServeConfig(
        state_dir=str(tmp_path / "serve-state"), reload_seconds=0, max_texts=64, runtime=runtime
    )
    with TestClient(create_app(f"{NAME}@champion", registry["uri"], cfg)) as client:
        from lmforge.serve.keys import KeyStore

        secret = KeyStore(tmp_path / "serve-state" / "keys.db").create("predict", name="p").secret
        reply = client.post(
            "/v1/classify", json={"texts": texts}, headers={"Authorization": f"Bearer {secret}"}
        ).json()
    served = reply["predictions"]
    # The same code scores both: equal up to float noise from other batches' padding. The int8
    # graph (auto) quantizes activations with each batch's range, and the server's micro-batches
    # are not predict's length-sorted ones: same labels, probabilities within 0.01.
    tolerance = 1e-5 if runtime == "torch" else 1e-2
    assert table["label"].tolist() == [p["label"] for p in served]
    for (_, row), answer in zip(table.iterrows(), served, strict=True):
        assert row["probability"] == pytest.approx(answer["probabilities"][answer["label"]], abs=tolerance)
        for label, prob in answer["probabilities"].items():
            assert row[f"prob_{label}"] == pytest.approx(prob, abs=tolerance)


@pytest.mark.parametrize("out_fmt", ["parquet", "csv", "jsonl"])
@pytest.mark.parametrize("in_fmt", ["csv", "jsonl", "parquet"])
def test_bad_rows_are_kept_with_their_reason_and_ids_are_copied(
    predictor: Any, tmp_path: Path, in_fmt: str, out_fmt: str
) -> None:
    texts = _texts(12)
    records = [{"id": f"r{i}", "text": t} for i, t in enumerate(texts)]
    records[3]["text"] = ""
    records[8]["text"] = "   "
    source = write_input(tmp_path / f"in.{in_fmt}", records)
    out = tmp_path / f"out.{out_fmt}"
    result = predict_file(predictor, source, out, chunk_rows=4)
    assert (result.rows, result.scored, result.bad) == (12, 10, 2)
    first = {"csv": 2, "jsonl": 1, "parquet": 1}[in_fmt]  # the row numbers an editor shows
    assert [row for row, _ in result.bad_rows] == [first + 3, first + 8]
    assert f"rows {first + 3} (empty text)" in result.bad_line(source)
    table = read_output(out)
    assert table["id"].tolist() == [f"r{i}" for i in range(12)]
    assert table["label"].isna().tolist() == [i in (3, 8) for i in range(12)]
    assert table.loc[3, "error"] == "empty text"
    assert set(table.loc[~table["label"].isna(), "label"]) <= set(predictor.labels)


def test_jsonl_rows_that_are_not_text_or_lack_the_field_are_bad_rows(predictor: Any, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    lines = [{"text": "refund my invoice"}, {"text": 7}, {"text": ["a"]}, {"other": "x"}, {"text": None}]
    source.write_text("".join(json.dumps(r) + "\n" for r in lines) + "\n", encoding="utf-8")
    result = predict_file(predictor, source, tmp_path / "out.parquet")
    assert result.bad_rows == [
        (2, "not text: int"),
        (3, "not text: list"),
        (4, "no such field"),
        (5, "empty text"),
    ]


def test_an_id_column_chosen_by_name(predictor: Any, tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.csv", [{"key": f"k{i}", "text": t} for i, t in enumerate(_texts(3))])
    predict_file(predictor, source, tmp_path / "out.parquet", id_column="key")
    assert read_output(tmp_path / "out.parquet")["key"].tolist() == ["k0", "k1", "k2"]
    with pytest.raises(DataError, match="no id column 'nope'; columns: key, text"):
        predict_file(predictor, source, tmp_path / "o2.parquet", id_column="nope")


def test_a_huge_text_is_truncated_by_the_tokenizer(predictor: Any, tmp_path: Path) -> None:
    huge = "refund my invoice please " * 40_000  # 1 MB, far past max_length tokens
    source = write_input(tmp_path / "in.parquet", [{"text": huge}, {"text": "parcel tracking"}])
    result = predict_file(predictor, source, tmp_path / "out.parquet")
    assert result.scored == 2


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_a_wrong_column_names_the_file_and_the_columns(
    registry: dict[str, Any], tmp_path: Path, fmt: str
) -> None:
    source = write_input(tmp_path / f"in.{fmt}", [{"sentence": "hi", "id": "1"}])
    result = _cli(registry, str(source), "--out", str(tmp_path / "o.parquet"), "--column", "txt")
    assert result.exit_code == 1
    assert f"in.{fmt}: no column 'txt'; columns: sentence, id" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_every_row_bad_is_an_error_and_leaves_no_output(predictor: Any, tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.csv", [{"text": ""}, {"text": " "}, {"text": ""}])
    with pytest.raises(DataError, match=r"row 2: none of its 3 rows has text to score"):
        predict_file(predictor, source, tmp_path / "out.parquet", chunk_rows=2)
    assert list(tmp_path.iterdir()) == [source]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "the file is empty"),
        ("text\n", "the file has a header but no rows"),
        ("text,label\nrefund please,a\nparcel,b,extra\n", "row 3: expected 2 fields, saw 3"),
        # past the first chunks: the line number counts from the top of the file
        ("text,label\n" + "refund please,a\n" * 9 + "parcel,b,extra\n", "row 11: expected 2 fields, saw 3"),
        ("text\n\xff\xfe broken", "is not UTF-8 text"),
    ],
)
def test_empty_and_malformed_csv(predictor: Any, tmp_path: Path, content: str, message: str) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(content.encode("latin-1"))
    with pytest.raises(DataError, match=message):
        predict_file(predictor, source, tmp_path / "out.parquet", chunk_rows=2)
    assert not (tmp_path / "out.parquet").exists()


def test_a_malformed_line_after_written_chunks_leaves_no_output(predictor: Any, tmp_path: Path) -> None:
    lines = [json.dumps({"text": t}) for t in _texts(12)]
    lines.insert(10, "{not json")
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"in.jsonl, row 11: invalid JSON"):
        predict_file(predictor, source, tmp_path / "out.parquet", chunk_rows=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_an_interrupted_run_leaves_no_output_and_keeps_the_old_one(predictor: Any, tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.csv", [{"text": t} for t in _texts(12)])
    out = tmp_path / "out.csv"
    out.write_text("earlier\n")

    def interrupt(done: int, total: int | None) -> None:
        assert total == 12
        if done >= 6:
            raise KeyboardInterrupt  # what Ctrl-C raises between two chunks

    with pytest.raises(KeyboardInterrupt):
        predict_file(predictor, source, out, chunk_rows=3, force=True, progress=interrupt)
    assert out.read_text() == "earlier\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "{tmp}/missing/out.parquet"], "folder {tmp}/missing does not exist"),
        (["--out", "{tmp}/exists.parquet"], "exists already (pass --force to replace it)"),
        (["--out", "{tmp}/out.xlsx"], "unknown output type '.xlsx'"),
        (["--out", "{tmp}/in.csv", "--force"], "is the input file too"),
    ],
)
def test_output_paths_are_checked_before_loading_the_model(
    registry: dict[str, Any], tmp_path: Path, args: list[str], message: str
) -> None:
    source = write_input(tmp_path / "in.csv", [{"text": "refund"}])
    (tmp_path / "exists.parquet").write_text("keep me")
    result = _cli(registry, str(source), *[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 1
    assert message.format(tmp=tmp_path) in " ".join(result.output.split())
    assert (tmp_path / "exists.parquet").read_text() == "keep me"


@pytest.mark.parametrize(
    ("ref", "message"), [("nope@champion", "nope"), (f"{NAME}@staging", "has no alias 'staging'")]
)
def test_an_unknown_model_or_alias_is_one_line(
    registry: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ref: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    source = write_input(tmp_path / "in.csv", [{"text": "refund"}])
    result = runner.invoke(
        app, ["predict", ref, str(source), "--out", "o.parquet", "--tracking-uri", registry["uri"]]
    )
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o.parquet").exists()


def test_a_linear_model_predicts_its_in_process_probabilities(tmp_path: Path) -> None:
    from lmforge.classical.linear import fit_linear, load_linear, save_linear

    rows = make_rows(per_class=10)
    save_linear(fit_linear([t for t, _ in rows], [y for _, y in rows]), tmp_path / "version" / "model")
    predictor = load_predictor(tmp_path / "version")
    assert predictor.kind == "linear"
    texts = _texts(9)
    source = write_input(tmp_path / "in.jsonl", [{"text": t} for t in texts])
    predict_file(predictor, source, tmp_path / "out.parquet", chunk_rows=4)
    table = read_output(tmp_path / "out.parquet")
    labels = list(predictor.labels)
    expected = load_linear(tmp_path / "version" / "model").proba(texts, labels=labels)
    got = table[[f"prob_{label}" for label in labels]].to_numpy()
    assert got == pytest.approx(expected, abs=1e-6)
    assert table["label"].tolist() == [labels[i] for i in expected.argmax(axis=1)]


def test_a_generation_model_writes_its_answers(tiny_llama: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(tiny_llama, tmp_path / "version" / "model")
    predictor = load_predictor(tmp_path / "version")
    assert predictor.task == "generation"
    prompts = ["what is the opposite of hot", "", "opposite of big"]
    source = write_input(tmp_path / "in.csv", [{"text": p} for p in prompts])
    result = predict_file(predictor, source, tmp_path / "out.jsonl", max_new_tokens=4)
    assert (result.scored, result.bad) == (2, 1)
    table = read_output(tmp_path / "out.jsonl")
    assert list(table.columns) == ["row", "generated", "error"]
    greedy = "".join(
        predictor.stream(
            predictor.chat_prompt([{"role": "user", "content": prompts[0]}]),
            max_new_tokens=4,
            temperature=0.0,
            top_p=1.0,
        )
    )
    assert table.loc[0, "generated"] == greedy
    assert table.loc[1, "error"] == "empty text"


def test_a_parquet_column_of_numbers_or_a_corrupt_file_is_refused(predictor: Any, tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.parquet", [{"text": 1}, {"text": 2}])
    with pytest.raises(DataError, match="column 'text': holds int64 values, not text"):
        predict_file(predictor, source, tmp_path / "out.parquet")
    source.write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="cannot read Parquet"):
        predict_file(predictor, source, tmp_path / "out.parquet")


def test_the_cli_reports_bad_rows_in_one_line(
    registry: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    records = [{"text": t} for t in _texts(14)]
    for i in range(12):  # more than the ten row numbers shown
        records[i]["text"] = " "
    source = write_input(tmp_path / "in.jsonl", records)
    result = _cli(registry, str(source), "--out", "out.csv")
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if "not scored" in x)
    assert line.endswith(
        "rows 1 (empty text), 2 (empty text), 3 (empty text), 4 (empty text), "
        "5 (empty text), 6 (empty text), 7 (empty text), 8 (empty text), "
        "9 (empty text), 10 (empty text) and 2 more"
    )
    assert "12 rows not scored" in line and "14 rows -> out.csv  (2 scored" in result.output
