from __future__ import annotations

from pathlib import Path

import pytest

from lmforge.config import Config, load_config
from lmforge.config_docs import markdown
from lmforge.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _problems(data: dict, tmp_path: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(data=data)
    return info.value.problems


def test_three_line_config_gets_defaults(tmp_path: Path) -> None:
    path = tmp_path / "lmforge.yaml"
    path.write_text(
        "task: classification\ndata: {train: support.csv, text_column: body, label_column: intent}\n"
    )
    config = load_config(path)
    assert config.project == "support"
    assert config.model == "minilm-l6"
    assert config.train.learning_rate == "auto" and config.train.max_length == "auto"
    assert config.split.validation == 0.1
    assert config.resolve_path(config.data.train) == tmp_path / "support.csv"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"train": {"learning_rate": -1}}, "train.learning_rate: must be > 0.0 (or 'auto'), got -1"),
        ({"train": {"batch_size": "big"}}, "train.batch_size: input should be a valid integer"),
        (
            {"train": {"method": "magic"}},
            "train.method: must be one of 'full', 'lora' or 'freeze', got 'magic'",
        ),
        ({"train": {"epoch": 3}}, "train.epoch: unknown key; did you mean 'epochs'?"),
        ({"modle": "x"}, "modle: unknown key; did you mean 'model'?"),
        ({"split": {"validation": 0.5, "test": 0.5}}, "split: validation + test must be < 0.9"),
        (
            {"task": "regression"},
            "task: must be one of 'classification', 'generation' or 'language-modeling', got 'regression'",
        ),
    ],
)
def test_each_problem_names_its_key_path(data: dict, expected: str) -> None:
    problems = _problems({"data": {"train": "x.csv"}, **data})
    assert any(p.startswith(expected) for p in problems), problems


def test_all_problems_are_reported_together() -> None:
    problems = _problems({"data": {}, "train": {"epochs": 0, "learning_rate": 0}, "colour": 1})
    assert {p.split(":")[0] for p in problems} == {
        "data.train",
        "train.epochs",
        "train.learning_rate",
        "colour",
    }
    assert "data.train: required key is missing" in problems


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("task: classification\ndata: {train: x.csv\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "bad.yaml" in str(info.value) and "line 3" in str(info.value)


def test_overrides_are_parsed_as_yaml(tmp_path: Path) -> None:
    config = load_config(
        data={"data": {"train": "x.csv"}},
        overrides=["train.epochs=1.5", "train.early_stopping_patience=null", "split.seed=7"],
    )
    assert config.train.epochs == 1.5
    assert config.train.early_stopping_patience is None
    assert config.split.seed == 7


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    config = load_config(data={"data": {"train": "x.csv"}, "validate": {"min_rows_per_class": 3}})
    path = tmp_path / "resolved.yaml"
    path.write_text(config.to_yaml())
    again = load_config(path)
    assert again.model_dump() == config.model_dump()
    assert "validate:" in config.to_yaml() and "register:" in config.to_yaml()


def test_every_field_is_described() -> None:
    schema = Config.model_json_schema(by_alias=True)
    missing = []
    for name, definition in schema["$defs"].items():
        for key, prop in definition.get("properties", {}).items():
            if not prop.get("description"):
                missing.append(f"{name}.{key}")
    assert missing == []


def test_config_docs_are_generated_from_the_schema() -> None:
    assert (ROOT / "docs" / "config.md").read_text() == markdown(), "run `make docs`"
