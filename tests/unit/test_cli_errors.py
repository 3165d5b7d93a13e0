"""Bad input through the real CLI: one line naming file/row/column/key, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lmforge.cli import app
from tests.conftest import make_rows, write_csv

runner = CliRunner()


def _run(config: dict, tmp_path: Path, *args: str) -> tuple[int, str]:
    path = tmp_path / "lmforge.yaml"
    path.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["run", str(path), *args])
    return result.exit_code, result.output


def _assert_user_error(code: int, output: str, *fragments: str) -> None:
    assert code == 1, output
    assert "Traceback" not in output and "internal error" not in output, output
    for fragment in fragments:
        assert fragment in output, (fragment, output)


def test_malformed_csv(config_dict: dict, tmp_path: Path) -> None:
    Path(config_dict["data"]["train"]).write_text('text,label\nfine,a\n"x",b,extra\n')
    _assert_user_error(
        *_run(config_dict, tmp_path), "data error", "data.csv", "row 3", "expected 2 fields, saw 3"
    )


def test_wrong_column_name(config_dict: dict, tmp_path: Path) -> None:
    config_dict["data"]["text_column"] = "body"
    _assert_user_error(
        *_run(config_dict, tmp_path), "data.csv", "column 'body'", "columns: text, label", "data.text_column"
    )


def test_empty_file(config_dict: dict, tmp_path: Path) -> None:
    Path(config_dict["data"]["train"]).write_text("")
    _assert_user_error(*_run(config_dict, tmp_path), "data.csv", "empty")


def test_single_class(config_dict: dict, tmp_path: Path) -> None:
    write_csv(Path(config_dict["data"]["train"]), [(f"text {i}", "spam") for i in range(30)])
    _assert_user_error(*_run(config_dict, tmp_path), "data.csv", "column 'label'", "only one class ('spam')")


def test_non_utf8_bytes_with_explicit_encoding(config_dict: dict, tmp_path: Path) -> None:
    Path(config_dict["data"]["train"]).write_bytes(b"text,label\nok,a\ncaf\xe9,b\n")
    config_dict["data"]["encoding"] = "utf-8"
    _assert_user_error(*_run(config_dict, tmp_path), "data.csv", "row 3", "0xe9", "data.encoding")


def test_non_utf8_bytes_are_detected_and_reported(config_dict: dict, tmp_path: Path) -> None:
    rows = [(t.replace("please", "pléase"), label) for t, label in make_rows()]
    path = Path(config_dict["data"]["train"])
    path.write_bytes(b"text,label\n" + "".join(f"{t},{label}\n" for t, label in rows).encode("cp1252"))
    code, output = _run(config_dict, tmp_path, "--until", "ingest")
    assert code == 0, output
    assert "not UTF-8, read as cp1252" in output


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        ({"trian": {"epochs": 1}}, ["lmforge.yaml", "trian: unknown key; did you mean 'train'?"]),
        ({"train": {"epochs": "three"}}, ["train.epochs: input should be a valid number", "'three'"]),
        ({"train": {"learning_rate": -1}}, ["train.learning_rate: must be > 0.0 (or 'auto'), got -1"]),
    ],
)
def test_bad_config(config_dict: dict, tmp_path: Path, change: dict, fragments: list[str]) -> None:
    _assert_user_error(*_run({**config_dict, **change}, tmp_path), "config error", *fragments)


def test_missing_model_says_what_to_pass(config_dict: dict, tmp_path: Path) -> None:
    config_dict["model"] = str(tmp_path / "no-such-model")
    _assert_user_error(*_run(config_dict, tmp_path), "model not found", "no-such-model", "zoo name")


def test_debug_shows_the_traceback(config_dict: dict, tmp_path: Path) -> None:
    config_dict["model"] = "not-a-model"
    path = tmp_path / "lmforge.yaml"
    path.write_text(yaml.safe_dump(config_dict))
    result = runner.invoke(app, ["--debug", "run", str(path)])
    assert result.exit_code == 1 and "Traceback" in result.output


def test_unknown_stage_for_force(config_dict: dict, tmp_path: Path) -> None:
    _assert_user_error(*_run(config_dict, tmp_path, "--force", "trian"), "--force: unknown stage trian")


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("", "interrupted\n"),  # keys, models, serve: nothing to resume
        ("run `lmforge run` again to resume", "interrupted: run `lmforge run` again to resume"),
        ("no output was written", "interrupted: no output was written"),
    ],
)
def test_ctrl_c_says_what_the_interrupted_command_left(said: str, expected: str, capsys) -> None:
    import typer

    from lmforge.cli_support import errors

    with pytest.raises(typer.Exit) as exit_info, errors(said):
        raise KeyboardInterrupt
    assert exit_info.value.exit_code == 130
    assert expected in capsys.readouterr().err
