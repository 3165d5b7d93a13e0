"""`lmforge run --budget` and `lmforge auto`: through the real CLI, on a tiny CSV."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lmforge.cli import app
from lmforge.config import load_config
from tests.conftest import make_rows, write_csv

runner = CliRunner()


def _user_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    for fragment in fragments:
        assert fragment in result.output, (fragment, result.output)


def _run_config(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / "config.yaml").read_text())


def test_run_budget_overrides_the_minutes_and_keeps_the_rest(config_dict: dict, tmp_path: Path) -> None:
    config_dict["budget"] = {"minutes": 60, "trials": 3}
    path = tmp_path / "lmforge.yaml"
    path.write_text(yaml.safe_dump(config_dict))
    result = runner.invoke(app, ["run", str(path), "--budget", "1h30m", "--until", "ingest"])
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "runs").glob("2*")
    assert _run_config(run_dir)["budget"] == {"minutes": 90.0, "trials": 3, "deterministic": False}
    assert "budget 1:30:00" in result.output
    assert re.search(r"✓ ingest .* budget left 1:(29:\d\d|30:00)", result.output)


def test_run_budget_replaces_a_short_form_budget(config_dict: dict, tmp_path: Path) -> None:
    config_dict["budget"] = "1m"  # invalid on its own: the flag's value is the one checked
    path = tmp_path / "lmforge.yaml"
    path.write_text(yaml.safe_dump(config_dict))
    result = runner.invoke(app, ["run", str(path), "-b", "20m", "--until", "ingest"])
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "runs").glob("2*")
    assert _run_config(run_dir)["budget"]["minutes"] == 20.0


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("abc", "--budget: cannot read 'abc': write 90s, 15m, 2h or 1h30m"),
        ("", "--budget: cannot read ''"),
        ("15 minutes", "--budget: cannot read '15 minutes'"),
        ("30s", "--budget: 0.5 is below the minimum of 2 minutes"),
        ("0s", "--budget: must be > 0 minutes, got 0"),
        ("10000h", "--budget: 600000 minutes is above the cap of 10080 minutes (7 days)"),
    ],
)
def test_a_bad_budget_flag_is_one_line_naming_it(
    value: str, fragment: str, config_dict: dict, tmp_path: Path
) -> None:
    path = tmp_path / "lmforge.yaml"
    path.write_text(yaml.safe_dump(config_dict))
    result = runner.invoke(app, ["run", str(path), "--budget", value, "--until", "ingest"])
    _user_error(result, "config error", fragment)
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "runs").exists()  # refused before any run folder


def test_a_budget_below_the_minimum_suggests_the_flag_form(config_dict: dict, tmp_path: Path) -> None:
    path = tmp_path / "lmforge.yaml"
    path.write_text(yaml.safe_dump(config_dict))
    _user_error(runner.invoke(app, ["run", str(path), "--budget", "90s"]), "set --budget 2m or more")


@pytest.fixture
def tickets(tmp_path: Path) -> Path:
    """Columns whose names `init` would not recognise as text / label."""
    rows = [(i, text, label) for i, (text, label) in enumerate(make_rows())]
    return write_csv(tmp_path / "tickets.csv", rows, header=("id", "message", "intent"))


def test_auto_writes_an_auto_config_with_the_budget_and_runs_it(tickets: Path, tmp_path: Path) -> None:
    out = tmp_path / "project"  # created by auto
    result = runner.invoke(
        app, ["auto", str(tickets), "--budget", "20m", "--out", str(out), "--until", "split"]
    )
    assert result.exit_code == 0, result.output
    config = load_config(out / "lmforge.yaml")
    assert config.model == "auto" and config.budget.minutes == 20
    assert (config.data.text_column, config.data.label_column) == ("message", "intent")
    assert config.resolve_path(config.data.train).resolve() == tickets.resolve()
    (run_dir,) = (out / "runs").glob("2*")
    assert (run_dir / "split" / "train.parquet").is_file() and not (run_dir / "baseline").exists()
    assert "model: auto, budget 20 minutes" in result.output and "budget left" in result.output


def test_auto_defaults_to_fifteen_minutes_in_the_current_folder(
    tickets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["auto", tickets.name, "--until", "ingest"])
    assert result.exit_code == 0, result.output
    assert load_config(tmp_path / "lmforge.yaml").budget.minutes == 15


def test_auto_never_overwrites_a_config_without_force(tickets: Path, tmp_path: Path) -> None:
    config = tmp_path / "lmforge.yaml"
    config.write_text("# mine\n")
    args = ["auto", str(tickets), "--out", str(tmp_path), "--until", "ingest"]
    _user_error(runner.invoke(app, args), f"{config} exists", "--force")
    assert config.read_text() == "# mine\n"
    result = runner.invoke(app, [*args, "--force"])
    assert result.exit_code == 0, result.output
    assert load_config(config).model == "auto"


def test_auto_refuses_to_write_through_a_dangling_link(tickets: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "victim.yaml"
    (tmp_path / "lmforge.yaml").symlink_to(target)
    _user_error(runner.invoke(app, ["auto", str(tickets), "--out", str(tmp_path)]), "exists")
    assert not target.exists()


def test_auto_takes_the_columns_it_is_given(tmp_path: Path) -> None:
    # Names and lengths would make `init` guess the other way round.
    rows = [(f"{text} with some more words", label, "x") for text, label in make_rows()]
    data = write_csv(tmp_path / "d.csv", rows, header=("a", "b", "text"))
    args = ["auto", str(data), "--out", str(tmp_path), "--text-column", "a", "--label-column", "b"]
    result = runner.invoke(app, [*args, "--until", "ingest"])
    assert result.exit_code == 0, result.output
    config = load_config(tmp_path / "lmforge.yaml")
    assert (config.data.text_column, config.data.label_column) == ("a", "b")
    assert "text column 'a': --text-column" in result.output


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--text-column", "body"], ["--text-column 'body' is not a column", "columns: id, message, intent"]),
        (["--label-column", "nope"], ["--label-column 'nope' is not a column"]),
        (["--text-column", "message", "--label-column", "message"], ["also the text column"]),
        (["--budget", "abc"], ["--budget: cannot read 'abc'"]),
        (["--budget", "1m"], ["--budget: 1 is below the minimum of 2 minutes"]),
    ],
)
def test_auto_refuses_bad_options_before_writing(
    args: list[str], fragments: list[str], tickets: Path, tmp_path: Path
) -> None:
    out = tmp_path / "project"
    _user_error(runner.invoke(app, ["auto", str(tickets), "--out", str(out), *args]), *fragments)
    assert not (out / "lmforge.yaml").exists()


def test_auto_refuses_data_that_is_not_for_a_classifier(tmp_path: Path) -> None:
    rows = [(f"question {i}", f"answer {i}") for i in range(20)]
    data = write_csv(tmp_path / "sft.csv", rows, header=("instruction", "output"))
    _user_error(
        runner.invoke(app, ["auto", str(data), "--out", str(tmp_path)]),
        "looks like generation data",
        "columns 'instruction' + 'output'",
        "picks among classifiers",
    )
    assert not (tmp_path / "lmforge.yaml").exists()


def test_auto_reports_an_out_folder_it_cannot_create(tickets: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    _user_error(runner.invoke(app, ["auto", str(tickets), "--out", str(blocker / "sub")]), "cannot write")


def test_a_causal_budget_below_the_minimum_counts_scoring_the_base_model(tmp_path: Path) -> None:
    import json

    rows = [{"instruction": f"Say {i}.", "output": f"{i}"} for i in range(400)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    path = tmp_path / "lmforge.yaml"
    path.write_text(yaml.safe_dump({"task": "generation", "data": {"train": "rows.jsonl"}, "budget": "2m"}))
    result = runner.invoke(app, ["run", str(path)])
    # 40 test rows: 40 answers and a perplexity pass, before fine-tuning and after
    _user_error(result, "config error", "budget.minutes: 2 is below", "scoring the base model", "or more")
    assert not (tmp_path / "runs").exists()
