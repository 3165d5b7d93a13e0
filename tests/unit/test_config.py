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


# A key the task never reads is an error naming it (issue 18, B4); a default is never one.
@pytest.mark.parametrize(
    ("task", "section", "key", "value"),
    [
        ("generation", "train", "adversarial", "fgm"),
        ("language-modeling", "train", "adversarial", "fgm"),
        ("generation", "train", "adversarial_epsilon", 0.5),
        ("generation", "train", "class_weights", "balanced"),
        ("language-modeling", "train", "pooling", "mean"),
        ("generation", "label", "unlabeled", "more.csv"),
        ("language-modeling", "label", "enabled", False),
        ("generation", "augment", "paraphrases", 2),
        ("generation", "baseline", "ngram_max", 3),
        ("generation", "clean", "label_noise_model", "embeddings"),
        ("generation", "validate", "min_rows_per_class", 2),
        ("generation", "evaluate", "cv_folds", 3),
        ("language-modeling", "export", "int8", False),
        ("generation", "select", "max_params", 1e9),
        ("language-modeling", "evaluate", "max_new_tokens", 16),
        ("classification", "train", "packing", True),
        ("classification", "evaluate", "samples", 2),
        ("classification", "export", "gguf", False),
    ],
)
def test_a_key_the_task_does_not_use_is_an_error(task: str, section: str, key: str, value: object) -> None:
    data: dict = {"task": task, "data": {"train": "x.csv"}}
    data.setdefault(section, {})[key] = value
    problems = _problems(data)
    assert len(problems) == 1
    assert problems[0].startswith(f"{section}.{key}: not used by task {task} (only by ")


def test_ignored_keys_are_all_reported_with_other_problems() -> None:
    problems = _problems(
        {
            "task": "generation",
            "data": {"train": "x.jsonl"},
            "train": {"adversarial": "fgm", "pooling": "mean", "epochs": 0},
            "gate": {"metric": "accuracy"},
        }
    )
    assert problems[0].startswith("train.epochs: must be > 0")  # a bad value stops the task checks
    problems = _problems(
        {
            "task": "generation",
            "data": {"train": "x.jsonl"},
            "train": {"adversarial": "fgm", "pooling": "mean"},
        }
    )
    assert [p.split(":")[0] for p in problems] == ["train.pooling", "train.adversarial"]


@pytest.mark.parametrize("task", ["classification", "generation", "language-modeling"])
def test_a_resolved_config_spelling_out_every_default_stays_valid(task: str, tmp_path: Path) -> None:
    # Each run saves its resolved config (every key written out); it must load again as it was.
    config = load_config(data={"task": task, "data": {"train": "x.csv"}})
    path = tmp_path / "resolved.yaml"
    path.write_text(config.to_yaml(), encoding="utf-8")
    assert load_config(path).model_dump() == config.model_dump()


@pytest.mark.parametrize("task", ["generation", "language-modeling"])
def test_default_values_written_out_are_not_errors(task: str) -> None:
    config = load_config(
        data={
            "task": task,
            "data": {"train": "x.jsonl", "label_column": "label"},
            "train": {"adversarial": False, "class_weights": "auto", "pooling": "auto"},
            "label": {"enabled": True},
            "augment": {},
        }
    )
    assert config.train.adversarial == "off"


def test_unknown_task_lists_the_registered_tasks() -> None:
    problems = _problems({"task": "token-classification", "data": {"train": "x.csv"}})
    assert problems == [
        "task: must be one of 'classification', 'generation' or 'language-modeling', "
        "got 'token-classification'"
    ]


@pytest.mark.parametrize(
    ("task", "metric", "message"),
    [
        (
            "classification",
            "rouge_l",
            "gate.metric: classification is gated on f1_macro or f1_weighted or accuracy",
        ),
        (
            "language-modeling",
            "rouge_l",
            "gate.metric: language-modeling is gated on perplexity, not rouge_l",
        ),
    ],
)
def test_gate_metric_must_be_one_the_task_computes(task: str, metric: str, message: str) -> None:
    problems = _problems({"task": task, "data": {"train": "x.csv"}, "gate": {"metric": metric}})
    assert problems[0].startswith(message)


@pytest.mark.parametrize(
    ("task", "data", "message"),
    [
        (
            "generation",
            {"gate": {"min": {"f1_macro": 0.8}}},
            "gate.min.f1_macro: generation does not compute f1_macro; bound one of rouge_l,",
        ),
        (
            "language-modeling",
            {"gate": {"min": {"rouge_l": 0.2}}},
            "gate.min.rouge_l: language-modeling does not compute rouge_l; bound one of perplexity",
        ),
        (
            "classification",
            {"gate": {"min": {"bleu": 10}}},
            "gate.min.bleu: classification does not compute bleu",
        ),
        (
            "generation",
            {"tune": {"enabled": True, "space": {"adversarial_epsilon": {"low": 0.1, "high": 1}}}},
            "tune.space.adversarial_epsilon: train.adversarial_epsilon is not used by task generation",
        ),
    ],
)
def test_what_the_gate_bounds_and_the_tuner_searches_must_be_used(
    task: str, data: dict, message: str
) -> None:
    problems = _problems({"task": task, "data": {"train": "x.csv"}, **data})
    assert len(problems) == 1 and problems[0].startswith(message)


def test_a_studys_best_params_are_validated_into_the_train_section() -> None:
    import warnings

    from lmforge.config import TrainConfig

    tuned = TrainConfig().tuned({"epochs": 3, "learning_rate": 1e-4})  # optuna's int epochs
    assert tuned.epochs == 3.0 and isinstance(tuned.epochs, float) and tuned.learning_rate == 1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydantic warns when a field holds a value of another type
        tuned.model_dump()
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig().tuned({"epochs": -1})
