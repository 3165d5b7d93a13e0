"""The label-noise check's fast probe: the automatic choice, its config key, what it finds,
and the time budget trying it before turning the check off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lmforge.config import load_config
from lmforge.data.noise import FAST_FOLDS, FAST_ROWS, choose_probe, find_label_issues
from lmforge.errors import ConfigError
from lmforge.pipeline.budget import RunBudget, budget_config
from lmforge.pipeline.runner import run_pipeline
from tests.conftest import make_rows, write_csv
from tests.unit.test_noise import FLIPS, planted

BASE = {"task": "classification", "data": {"train": "x.csv"}}


class Events:
    """Collects what budget_config emits (the runner's event stream, minus the terminal)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, str]] = []

    def emit(self, kind: str, stage: str | None = None, message: str = "", **data: Any) -> None:
        self.lines.append((kind, stage or "", message))


@pytest.mark.parametrize(
    ("setting", "rows", "probe"),
    [
        ("auto", 0, "full"),
        ("auto", FAST_ROWS - 1, "full"),
        ("auto", FAST_ROWS, "fast"),
        ("auto", 10 * FAST_ROWS, "fast"),
        ("full", 10 * FAST_ROWS, "full"),
        ("fast", 20, "fast"),
    ],
)
def test_auto_takes_the_fast_probe_from_the_threshold_and_says_why(
    setting: str, rows: int, probe: str
) -> None:
    chosen, reason = choose_probe(setting, rows)
    assert chosen == probe
    assert (f"{rows:,} train rows" in reason) if setting == "auto" else (setting in reason)


@pytest.mark.parametrize("setting", ["quick", "", "FAST", "auto "])
def test_unknown_probe_settings_are_refused(setting: str) -> None:
    with pytest.raises(ValueError, match="unknown noise probe"):
        choose_probe(setting, 100)
    texts, _, noisy, _ = planted()
    if setting != "auto ":  # find_label_issues takes a resolved probe only
        with pytest.raises(ValueError, match="unknown noise probe"):
            find_label_issues(texts, noisy, probe=setting)


@pytest.mark.parametrize("value", ["quick", "Fast", 3, ["fast"], {"fast": True}, None])
def test_a_malformed_probe_key_is_one_line_naming_it(value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(data={**BASE, "clean": {"label_noise_probe": value}})
    assert len(caught.value.problems) == 1
    line = caught.value.problems[0]
    assert line.startswith("clean.label_noise_probe: ") and "\n" not in line


def test_the_probe_key_defaults_to_auto_and_loads_each_value() -> None:
    assert load_config(data=BASE).clean.label_noise_probe == "auto"
    for value in ("auto", "full", "fast"):
        assert (
            load_config(data={**BASE, "clean": {"label_noise_probe": value}}).clean.label_noise_probe == value
        )


# Measured with seed 0: precision 1.00, recall 0.90 (the full probe: 0.85).
def test_the_fast_probe_finds_planted_flips_with_their_true_label() -> None:
    texts, true, noisy, flipped = planted()
    result = find_label_issues(texts, noisy, probe="fast")

    assert result.attrs["probe"] == "fast" and result.attrs["folds"] == FAST_FOLDS
    flagged = set(np.flatnonzero(result["is_issue"].to_numpy()))
    found = flagged & set(flipped)
    assert len(found) / FLIPS >= 0.8
    assert len(found) / len(flagged) >= 0.9
    assert all(result["suggested"][i] == true[i] for i in found)


def test_the_fast_probe_is_deterministic_and_keeps_rare_classes_unchecked() -> None:
    texts, _, noisy, _ = planted()
    texts, noisy = [*texts, "a lonely row"], [*noisy, "singleton"]
    first = find_label_issues(texts, noisy, probe="fast", seed=3)
    second = find_label_issues(texts, noisy, probe="fast", seed=3)
    pd.testing.assert_frame_equal(first, second)
    assert not first["checked"].iloc[-1] and not first["is_issue"].iloc[-1]


def test_the_fast_probe_survives_hostile_texts() -> None:
    """Empty, whitespace-only, non-Latin and very long texts: one vocabulary for all must not
    fail on a fold whose texts have no words of their own."""
    texts, _, noisy, _ = planted()
    texts[0], texts[1], texts[2] = "", "   ", "\u0000\u202e" + "ж" * 50_000
    result = find_label_issues(texts, noisy, probe="fast")
    assert result["checked"].all() and result["quality"].between(0, 1).all()


def _budget(seconds: float, rows: int, count_based: bool = False) -> RunBudget:
    budget = RunBudget(seconds, ["ingest", "clean", "train", "evaluate"], count_based=count_based)
    budget.rows["train"] = rows
    return budget


@pytest.mark.parametrize(
    ("seconds", "rows", "setting", "probe", "noise", "decision"),
    [
        # share = 10% of the budget; full probe 2 s per 1,000 rows, fast 0.5 s
        (3600, 5_000, "auto", "auto", "flag", None),  # full 10 s <= 360 s: nothing changes
        (120, 10_000, "auto", "fast", "flag", "clean.label_noise_probe: fast"),  # full 20 s > 12 s >= 5 s
        (120, 10_000, "full", "fast", "flag", "clean.label_noise_probe: fast"),
        (300, 25_000, "auto", "auto", "flag", None),  # auto is fast already, and 12.5 s <= 30 s
        (120, 50_000, "auto", "auto", "off", "clean.label_noise: off"),  # fast 25 s > 12 s
        (120, 50_000, "fast", "fast", "off", "clean.label_noise: off"),
    ],
)
def test_the_budget_tries_the_fast_probe_before_turning_the_check_off(
    seconds: float, rows: int, setting: str, probe: str, noise: str, decision: str | None
) -> None:
    config = load_config(data={**BASE, "clean": {"label_noise_probe": setting}})
    budget, events = _budget(seconds, rows), Events()
    scaled = budget_config(budget, "clean", config, events)

    assert scaled.clean.label_noise_probe == probe
    assert scaled.clean.label_noise == noise
    assert [d["decision"] for d in budget.decisions] == ([decision] if decision else [])
    if decision:
        assert f"{rows:,} rows" in budget.decisions[0]["reason"]
        assert len(events.lines) == 1 and events.lines[0][0] == "warning"
    assert config.clean.label_noise_probe == setting  # the caller's config is left alone


def test_a_count_based_budget_never_scales_the_check() -> None:
    config = load_config(data={**BASE, "clean": {"label_noise_probe": "full"}})
    budget = _budget(120, 50_000, count_based=True)
    assert budget_config(budget, "clean", config, Events()) == config
    assert budget.decisions == []


def test_the_clean_stage_records_the_probe_and_the_report_shows_it(config_dict: dict) -> None:
    rows = make_rows(per_class=30)
    write_csv(Path(config_dict["data"]["train"]), rows)
    config_dict["clean"] = {"label_noise": "flag", "label_noise_probe": "fast"}
    config_dict["tracking"]["enabled"] = False
    result = run_pipeline(load_config(data=config_dict), until="report")
    recorded = result.artifacts["clean"].summary["label_noise_probe"]
    assert recorded == {"probe": "fast", "reason": "clean.label_noise_probe: fast", "folds": FAST_FOLDS}
    html = result.artifacts["report"].path("report.html").read_text(encoding="utf-8")
    # Shown whether or not any row was flagged (with the flagged rows, or in their place).
    assert "5 folds" in html and "clean.label_noise_probe: fast" in html


def test_a_probe_the_budget_chose_says_so_in_the_clean_stage(tmp_path: Path) -> None:
    """A 2-minute budget and 1,000 rows of ~1,000 characters: the full probe (~20 s) is over the
    check's share (12 s), the fast one (~5 s) fits; the stage's record says the budget chose it."""
    from lmforge.pipeline.runner import run_pipeline
    from tests.conftest import build_tiny_bert, fast_config, make_rows, write_csv

    base = make_rows(per_class=250)
    rows = [((f"{text} " * 40)[:1000] + f" {i}", label) for i, (text, label) in enumerate(base)]
    config = fast_config(tmp_path, write_csv(tmp_path / "long.csv", rows), build_tiny_bert(tmp_path / "bert"))
    config.update(budget={"minutes": 2}, clean={"label_noise": "flag", "near_duplicates": False})
    result = run_pipeline(load_config(data=config), until="clean")
    recorded = result.artifacts["clean"].summary["label_noise_probe"]
    assert recorded["probe"] == "fast"
    assert recorded["reason"].startswith("the time budget: the full label-noise probe on ")
