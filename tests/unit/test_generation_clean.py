"""The generation / language-modeling clean stage honours every `clean` key (B4), or the
config refuses a key it cannot apply."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from lmforge.config import load_config
from lmforge.errors import ConfigError
from lmforge.pipeline.runner import run_pipeline

NEAR = "please tell me the opposite word of the adjective early"
ROWS = [  # (instruction, output); source rows are 1-based JSONL lines
    ("opposite of hot", "cold"),  # 1 kept
    ("Opposite of HOT?", "Cold."),  # 2 exact duplicate of 1 (same prompt, same answer)
    ("what is the opposite of big", "large"),  # 3 conflict group: majority 'small'
    ("what is the opposite of big", "small"),  # 4
    ("what is the opposite of big", "Small!"),  # 5
    ("give the opposite of fast", "slow"),  # 6 conflict group: a tie
    ("give the opposite of fast", "quick"),  # 7
    (NEAR, "late"),  # 8 kept
    (NEAR + "s", "late"),  # 9 near duplicate of 8
    ("hi", "hello there"),  # 10 prompt too short for min_chars=3
    ("opposite of up", "no"),  # 11 answer too short for min_chars=3
]


def _run(folder: Path, rows: list[dict[str, Any]], task: str = "generation", **clean: Any) -> Any:
    data = folder / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    config = {
        "project": "clean-test",
        "task": task,
        "data": {"train": str(data)},
        "clean": clean,
        "tracking": {"enabled": False},
        "output_dir": str(folder / "runs"),
    }
    return run_pipeline(load_config(data=config), until="clean")


def _generation(folder: Path, **clean: Any) -> tuple[dict[int, str], pd.DataFrame, Any]:
    rows = [{"instruction": q, "input": "", "output": a} for q, a in ROWS]
    result = _run(folder, rows, **clean)
    clean_art = result.artifacts["clean"]
    kept = clean_art.table("train")
    answers = {
        int(r): json.loads(m)[-1]["content"]
        for r, m in zip(kept["source_row"], kept["messages"], strict=True)
    }
    return answers, pd.read_csv(clean_art.path("removed.csv")), clean_art


def _reasons(removed: pd.DataFrame) -> dict[int, str]:
    return dict(zip(removed["source_row"], removed["reason"], strict=True))


def test_duplicates_conflicts_near_copies_and_lengths(tmp_path: Path) -> None:
    answers, removed, art = _generation(tmp_path, min_chars=3)
    # The majority answer wins and is written into the kept (first) row of the group.
    assert answers == {1: "cold", 3: "small", 8: "late"}
    reasons = _reasons(removed)
    assert reasons[2] == "exact duplicate"
    assert reasons[4] == reasons[5] == "exact duplicate"
    assert reasons[6] == reasons[7] == "conflicting labels among duplicates"
    assert reasons[9] == "near duplicate"
    assert reasons[10] == "prompt shorter than clean.min_chars=3"
    assert reasons[11] == "answer shorter than clean.min_chars=3"
    assert removed.set_index("source_row").loc[7, "answer"] == "quick"
    conflicts = pd.read_csv(art.path("conflicts.csv"))
    assert set(conflicts["answer"]) == {"large", "small", "Small!", "slow", "quick"}
    assert art.summary["conflict_groups"] == 2


@pytest.mark.parametrize(
    ("conflicts", "kept"),
    [("drop", {1, 8, 10, 11}), ("keep", {1, 3, 4, 5, 6, 7, 8, 10, 11})],
)
def test_conflicts_setting_decides_what_happens_to_differing_answers(
    tmp_path: Path, conflicts: str, kept: set[int]
) -> None:
    answers, _, _ = _generation(tmp_path, conflicts=conflicts)
    assert set(answers) == kept


def test_near_duplicates_off_keeps_near_copies(tmp_path: Path) -> None:
    answers, removed, _ = _generation(tmp_path, near_duplicates=False)
    assert 9 in answers and 9 not in set(removed["source_row"])


def test_language_modeling_texts_have_lengths_and_duplicates(tmp_path: Path) -> None:
    long = "the quick brown fox jumps over the lazy dog near the river bank"
    texts = [long, long.upper(), long + "s", "tiny", "another sentence entirely about a cat"]
    result = _run(tmp_path, [{"text": t} for t in texts], task="language-modeling", min_chars=5)
    art = result.artifacts["clean"]
    assert list(art.table("train")["source_row"]) == [1, 5]
    reasons = _reasons(pd.read_csv(art.path("removed.csv")))
    assert reasons == {
        2: "exact duplicate",
        3: "near duplicate",
        4: "shorter than clean.min_chars=5",
    }


PII_ROWS = [  # (instruction, output): personal data in the prompt, the answer, or neither
    ("opposite of hot", "cold"),
    ("mail the opposite of big to jane.doe@example.com", "small"),
    ("what is my card number", "it is 4111 1111 1111 1111"),
    ("give the opposite of fast", "slow"),
]
RAW = ("jane.doe@example.com", "4111 1111 1111 1111")


@pytest.mark.parametrize("task", ["generation", "language-modeling"])
@pytest.mark.parametrize("mode", ["mask", "drop"])
def test_personal_data_is_masked_as_read_and_counted_by_clean(tmp_path: Path, task: str, mode: str) -> None:
    from tests.unit.test_pii_leaks import files_holding

    if task == "generation":
        rows: list[dict[str, Any]] = [{"instruction": q, "input": "", "output": a} for q, a in PII_ROWS]
    else:
        rows = [{"text": f"{q} {a}"} for q, a in PII_ROWS]
    result = _run(tmp_path, rows, task=task, pii=mode)
    assert all(files_holding(result.run_dir, value) == set() for value in RAW)
    assert result.artifacts["ingest"].summary["pii_masked"] == {"email": 1, "card": 1}
    clean = result.artifacts["clean"]
    assert clean.summary["pii"] == {"email": 1, "card": 1}
    kept = clean.table("train")
    assert "pii" not in kept.columns
    column = "text" if task == "language-modeling" else "messages"
    if mode == "drop":
        assert set(kept["source_row"]) == {1, 4}
        assert set(pd.read_csv(clean.path("removed.csv"))["reason"]) == {"personal data"}
    else:
        assert set(kept["source_row"]) == {1, 2, 3, 4}
        joined = " ".join(kept[column])
        assert "<EMAIL>" in joined and "<CARD>" in joined


@pytest.mark.parametrize(
    ("task", "clean", "key"),
    [
        ("generation", {"normalize_whitespace": True}, "clean.normalize_whitespace"),
        ("generation", {"label_noise": "flag"}, "clean.label_noise"),
        ("language-modeling", {"conflicts": "keep"}, "clean.conflicts"),
    ],
)
def test_a_clean_key_the_task_cannot_apply_is_a_config_error(
    tmp_path: Path, task: str, clean: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError, match=key):
        load_config(data={"task": task, "data": {"train": "data.jsonl"}, "clean": clean})


@pytest.mark.parametrize("task", ["generation", "language-modeling"])
def test_a_resolved_causal_config_loads_back(task: str) -> None:
    # Every default is written out in a run's config.yaml; the UI reruns from it.
    config = load_config(data={"task": task, "data": {"train": "data.jsonl"}})
    assert config.clean.normalize_whitespace is False and config.clean.label_noise == "off"
    again = load_config(data=config.model_dump(mode="json", by_alias=True))
    assert again.section("clean") == config.section("clean")
