"""The time budget as users write it: durations, the `budget` section, its bounds."""

from __future__ import annotations

import math

import pytest
import yaml

from lmforge.budget_text import (
    MAX_BUDGET_MINUTES,
    MIN_BUDGET_MINUTES,
    DurationError,
    format_duration,
    minutes_problem,
    parse_minutes,
)
from lmforge.config import load_config
from lmforge.config_docs import markdown
from lmforge.errors import ConfigError

BASE = {"data": {"train": "x.csv"}}


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("15m", 15),
        ("2h", 120),
        ("90s", 1.5),
        ("1h30m", 90),
        ("1h30m30s", 90.5),
        ("1.5h", 90),
        ("15", 15),
        (" 15M ", 15),
        ("0s", 0),
        (15, 15),
        (2.5, 2.5),
    ],
)
def test_durations_are_read_as_minutes(text: object, minutes: float) -> None:
    assert parse_minutes(text) == pytest.approx(minutes)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "abc",
        "15 minutes",
        "15min",
        "\uff11\uff15m",  # full-width digits
        "\u0661\u0665m",  # Arabic-Indic digits
        "-5m",
        "1e400",
        "inf",
        "nan",
        "1h30",  # a number without its unit
        "m",
        "15mm",
        "1.m",
        "30m1h",  # units out of order
        "15m\n2h",
        "9" * 5000 + "h",
        True,
        None,
        [15],
        {"m": 15},
        math.nan,
    ],
)
def test_unreadable_durations_are_one_line_errors(text: object) -> None:
    with pytest.raises(DurationError) as caught:
        parse_minutes(text)
    message = str(caught.value)
    assert message.startswith("cannot read ") and "write 90s, 15m, 2h" in message
    assert "\n" not in message and len(message) < 120  # a pasted essay is not echoed back


def test_an_integer_too_large_for_a_float_reads_as_infinite() -> None:
    assert parse_minutes(10**400) == math.inf  # then refused by the cap, not an OverflowError


@pytest.mark.parametrize(
    ("minutes", "fragment"),
    [
        (0, "must be > 0 minutes, got 0"),
        (-3, "must be > 0 minutes, got -3"),
        (0.5, f"0.5 is below the minimum of {MIN_BUDGET_MINUTES:g} minutes"),
        (MAX_BUDGET_MINUTES + 1, "above the cap of 10080 minutes (7 days)"),
        (600_000, "600000 minutes is above the cap"),
        (math.inf, "inf minutes is above the cap"),
        (MIN_BUDGET_MINUTES, None),
        (15, None),
        (MAX_BUDGET_MINUTES, None),
    ],
)
def test_budget_bounds(minutes: float, fragment: str | None) -> None:
    problem = minutes_problem(minutes, "budget.minutes")
    if fragment is None:
        assert problem is None
    else:
        assert problem is not None and problem.startswith("budget.minutes: ") and fragment in problem


@pytest.mark.parametrize("value", ["15m", "15", 15, 15.0, {"minutes": 15}, {"minutes": "15m"}, "0.25h"])
def test_budget_section_accepts_its_short_forms(value: object) -> None:
    budget = load_config(data={**BASE, "budget": value}).budget
    assert budget.minutes == 15 and budget.seconds == 900
    assert budget.enabled and not budget.count_based


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ("abc", "budget: cannot read 'abc': write 90s, 15m, 2h or {minutes: 15}"),
        ("", "budget: cannot read '': write 90s, 15m, 2h or {minutes: 15}"),
        ("15 minutes", "budget: cannot read '15 minutes': write 90s, 15m, 2h or {minutes: 15}"),
        (True, "budget: cannot read True: write 90s, 15m, 2h or {minutes: 15}"),
        (
            "90s",
            "budget.minutes: 1.5 is below the minimum of 2 minutes (ingest, the cheapest model, "
            "evaluate and register need about that on 2 cores); set budget.minutes: 2 or more",
        ),
        ("0s", "budget.minutes: must be > 0 minutes, got 0"),
        ({"minutes": -5}, "budget.minutes: must be > 0 minutes, got -5"),
        (
            "10000h",
            "budget.minutes: 600000 minutes is above the cap of 10080 minutes (7 days); "
            "a longer budget is almost certainly a typo",
        ),
        (
            {"minutes": 10**400},
            "budget.minutes: inf minutes is above the cap of 10080 minutes (7 days); "
            "a longer budget is almost certainly a typo",
        ),
        ({"trials": 0}, "budget.trials: must be >= 1, got 0"),
        ({"trials": 10**6}, "budget.trials: must be <= 1000, got 1000000"),
        (
            {"deterministic": True},
            "budget.deterministic: needs budget.minutes or budget.trials to count against",
        ),
        ({"minutes": 15, "hours": 1}, "budget.hours: unknown key; allowed: minutes, trials, deterministic"),
    ],
)
def test_bad_budgets_are_one_line_naming_the_key(value: object, line: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(data={**BASE, "budget": value})
    assert caught.value.problems == [line]


def test_no_budget_is_the_default_and_null_means_none() -> None:
    for data in (BASE, {**BASE, "budget": None}, {**BASE, "budget": {}}):
        budget = load_config(data=data).budget
        assert not budget.enabled and budget.seconds is None and not budget.count_based


@pytest.mark.parametrize(
    ("value", "count_based"),
    [
        ({"trials": 5}, True),
        ({"minutes": 15, "deterministic": True}, True),
        ({"trials": 5, "minutes": 15}, True),
        ({"minutes": 15}, False),
    ],
)
def test_count_based_mode(value: dict, count_based: bool) -> None:
    assert load_config(data={**BASE, "budget": value}).budget.count_based is count_based


def test_a_budget_with_a_pinned_model_is_allowed() -> None:
    config = load_config(data={**BASE, "model": "minilm-l6", "budget": "15m"})
    assert config.model == "minilm-l6" and config.budget.minutes == 15


def test_the_resolved_config_loads_back_with_its_budget() -> None:
    config = load_config(
        data={**BASE, "model": "auto", "budget": {"minutes": "1h30m", "deterministic": True}}
    )
    shown = yaml.safe_load(config.to_yaml())
    assert shown["budget"] == {"minutes": 90.0, "trials": None, "deterministic": True}
    assert load_config(data=shown).budget == config.budget


def test_an_override_sets_the_minutes_of_a_short_form_budget() -> None:
    config = load_config(data={**BASE, "budget": "15m"}, overrides=["budget.minutes=30"])
    assert config.budget.minutes == 30


def test_the_docs_and_the_schema_document_the_budget() -> None:
    from lmforge.config import Config

    docs = markdown()
    assert "## `budget`" in docs
    assert all(f"`budget.{key}`" in docs for key in ("minutes", "trials", "deterministic"))
    schema = Config.model_json_schema(by_alias=True)
    accepted = {item.get("type") or item.get("$ref") for item in schema["properties"]["budget"]["anyOf"]}
    assert {"string", "number", "#/$defs/BudgetConfig"} <= accepted


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0:00"), (59.6, "1:00"), (600, "10:00"), (3725, "1:02:05"), (-65, "-1:05"), (math.inf, "?")],
)
def test_format_duration(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


def test_registering_through_an_mlflow_server_is_priced_as_an_upload() -> None:
    from lmforge.pipeline.budget import REMOTE_REGISTER_SECONDS, RunBudget

    stages = ["ingest", "train", "evaluate", "register"]

    def post(uri: str) -> float:
        config = load_config(data={**BASE, "budget": "15m", "tracking": {"uri": uri}})
        budget = RunBudget.from_config(config, stages)
        assert budget is not None
        return budget.post_seconds("transformer")

    local = post("sqlite:///mlruns.db")
    assert post("http://mlflow.internal:5000") == pytest.approx(local + REMOTE_REGISTER_SECONDS)
    assert post("file:///tmp/mlruns") == pytest.approx(local)
