from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from lmforge.cli import app
from lmforge.config import load_config
from tests.conftest import make_rows, write_csv

runner = CliRunner()


def test_init_guesses_columns_and_writes_a_loadable_config(tmp_path: Path) -> None:
    data = write_csv(
        tmp_path / "tickets.csv",
        [(i, t, label) for i, (t, label) in enumerate(make_rows())],
        header=("id", "message", "intent"),
    )
    out = tmp_path / "lmforge.yaml"
    result = runner.invoke(app, ["init", str(data), "--output", str(out)])
    assert result.exit_code == 0, result.output
    config = load_config(out)
    assert (config.data.text_column, config.data.label_column) == ("message", "intent")
    assert config.resolve_path(config.data.train).resolve() == data.resolve()
    assert runner.invoke(app, ["init", str(data), "--output", str(out)]).exit_code == 1  # no overwrite


def test_init_refuses_to_write_through_a_dangling_link(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "d.csv", make_rows())
    target = tmp_path / "elsewhere" / "secret.yaml"
    target.parent.mkdir()  # writing through the link would succeed
    (tmp_path / "lmforge.yaml").symlink_to(target)
    result = runner.invoke(app, ["init", str(data), "--output", str(tmp_path / "lmforge.yaml")])
    assert result.exit_code == 1 and "exists" in result.output
    assert not target.exists()


def test_init_guesses_by_content_when_names_say_nothing(tmp_path: Path) -> None:
    rows = [(label[:3], f"{t} and a few more words to be long") for t, label in make_rows()]
    data = write_csv(tmp_path / "d.csv", rows, header=("a", "b"))
    result = runner.invoke(app, ["init", str(data), "--output", str(tmp_path / "c.yaml")])
    assert result.exit_code == 0, result.output
    config = load_config(tmp_path / "c.yaml")
    assert (config.data.text_column, config.data.label_column) == ("b", "a")


def test_config_schema_and_show(config_dict: dict, tmp_path: Path) -> None:
    schema = json.loads(runner.invoke(app, ["config", "schema"]).output)
    assert "train" in schema["properties"] and "TrainConfig" in schema["$defs"]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"data": {"train": "x.csv"}}))
    shown = yaml.safe_load(
        runner.invoke(app, ["config", "show", str(path), "--set", "train.epochs=2"]).output
    )
    assert shown["train"]["epochs"] == 2 and shown["train"]["learning_rate"] == "auto"


def test_run_then_runs_lists_it(config_dict: dict, tmp_path: Path) -> None:
    path = tmp_path / "lmforge.yaml"
    path.write_text(yaml.safe_dump(config_dict))
    result = runner.invoke(app, ["run", str(path), "--until", "baseline"])
    assert result.exit_code == 0, result.output
    listed = runner.invoke(app, ["runs", str(path)])
    assert listed.exit_code == 0 and "succeeded" in listed.output
