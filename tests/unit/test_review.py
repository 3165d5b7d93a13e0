"""The review queue: files, pending logic, a scripted terminal session and the `lmforge review` CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from lmforge.cli import app
from lmforge.data.review import (
    ANSWER_COLUMNS,
    QUEUE_COLUMNS,
    human_labels,
    item_id,
    parse_answer,
    pending,
    read_answers,
    read_labels,
    read_queue,
    record_answer,
    review_session,
    write_queue,
)
from lmforge.errors import DataError

LABELS = ["billing", "shipping", "login"]
TEXTS = ["where is my parcel", "refund the double charge", "cannot reset my password [b]bold?[/b]"]


def make_queue(folder: Path, texts: list[str] = TEXTS) -> Path:
    rows = pd.DataFrame(
        {
            "source_row": [2, 5, 9][: len(texts)],
            "text": texts,
            "suggested": ["shipping", "shipping", ""][: len(texts)],
            "confidence": [0.55, 0.41, float("nan")][: len(texts)],
            "reason": ["low-confidence auto-label", "low-confidence auto-label", "possible label error"][
                : len(texts)
            ],
            "given": [None, None, "billing"][: len(texts)],
        }
    )
    path = folder / "review_queue.csv"
    write_queue(path, rows, labels=LABELS)
    return path


def scripted(replies: list[str]) -> Any:
    """An `ask` that answers from a list and then behaves like closed input (EOFError)."""
    remaining = list(replies)
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        if not remaining:
            raise EOFError
        return remaining.pop(0)

    ask.asked = asked  # type: ignore[attr-defined]
    return ask


def rendered(shown: list[Any]) -> str:
    console = Console(record=True, width=120)
    for item in shown:
        console.print(item)
    return console.export_text()


def test_item_id_is_a_stable_16_hex_sha256_prefix() -> None:
    assert item_id("hello") == "2cf24dba5fb0a30e"
    assert item_id("hello") != item_id("hello ")


def test_write_and_read_queue_round_trip(tmp_path: Path) -> None:
    path = make_queue(tmp_path)
    queue = read_queue(path)
    assert tuple(queue.columns) == QUEUE_COLUMNS
    assert list(queue["item_id"]) == [item_id(t) for t in TEXTS]
    assert list(queue["source_row"]) == [2, 5, 9]
    assert queue["confidence"].iloc[0] == pytest.approx(0.55) and pd.isna(queue["confidence"].iloc[2])
    assert list(queue["given"]) == ["", "", "billing"]
    assert read_labels(path) == LABELS
    assert not list(tmp_path.glob(".*tmp*"))  # the temp files were renamed into place


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("item_id,text\nabc,hi\n", "missing columns source_row"),
        (",".join(QUEUE_COLUMNS) + "\nab,1,hi,x,high,r,\n", "row 2, column 'confidence'"),
        ("", "unreadable review queue"),
    ],
)
def test_malformed_queue_is_a_data_error_naming_the_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "review_queue.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as error:
        read_queue(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_labels_fall_back_to_those_the_queue_mentions(tmp_path: Path) -> None:
    path = make_queue(tmp_path)
    (tmp_path / "labels.json").unlink()
    assert read_labels(path) == ["billing", "shipping"]


def test_absent_answers_file_reads_as_empty_frame(tmp_path: Path) -> None:
    answers = read_answers(tmp_path / "none.csv")
    assert tuple(answers.columns) == ANSWER_COLUMNS and answers.empty
    assert human_labels(answers) == {}


def test_answers_latest_per_item_wins_and_skips_stay_pending(tmp_path: Path) -> None:
    queue = read_queue(make_queue(tmp_path))
    answers_path = tmp_path / "answers.csv"
    first, second, third = queue.to_dict("records")
    record_answer(answers_path, first, "shipping", "accept", "ann")
    record_answer(answers_path, second, None, "skip", "ann")
    record_answer(answers_path, third, "billing", "accept", "ann")
    record_answer(answers_path, third, "login", "correct", "bob")  # a later answer overrides

    raw = pd.read_csv(answers_path, dtype=str, keep_default_na=False)
    assert tuple(raw.columns) == ANSWER_COLUMNS and len(raw) == 4
    assert raw["reviewed_at"].str.endswith("+00:00").all()  # ISO UTC
    answers = read_answers(answers_path)
    assert len(answers) == 3
    assert human_labels(answers) == {first["item_id"]: "shipping", third["item_id"]: "login"}
    assert list(pending(queue, answers)["item_id"]) == [second["item_id"]]


def test_pending_asks_unseen_items_before_skipped_ones_and_duplicates_once(tmp_path: Path) -> None:
    queue = read_queue(make_queue(tmp_path, texts=[TEXTS[0], TEXTS[1], TEXTS[0]]))
    answers_path = tmp_path / "answers.csv"
    record_answer(answers_path, queue.iloc[0].to_dict(), None, "skip", "ann")
    order = list(pending(queue, read_answers(answers_path))["text"])
    assert order == [TEXTS[1], TEXTS[0]]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("", ("accept", "shipping")),
        ("Y", ("accept", "shipping")),
        ("2", ("accept", "shipping")),  # picking the suggestion by number is agreeing with it
        ("1", ("correct", "billing")),
        (" login ", ("correct", "login")),
        ("s", ("skip", None)),
        ("q", ("quit", None)),
    ],
)
def test_parse_answer(reply: str, expected: tuple[str, str | None]) -> None:
    assert parse_answer(reply, "shipping", LABELS) == expected


@pytest.mark.parametrize("reply", ["4", "0", "Billing?", "maybe"])
def test_parse_answer_rejects_unclear_replies_with_a_hint(reply: str) -> None:
    with pytest.raises(ValueError, match="1-3"):
        parse_answer(reply, "shipping", LABELS)


def test_numeric_label_names_match_by_name_before_position() -> None:
    assert parse_answer("1", "2", ["2", "1"]) == ("correct", "1")
    with pytest.raises(ValueError, match="no suggestion"):
        parse_answer("", "", ["a", "b"])


def test_review_session_records_each_answer_and_re_asks_unclear_ones(tmp_path: Path) -> None:
    queue_path = make_queue(tmp_path)
    answers_path = tmp_path / "reviewed.csv"
    shown: list[Any] = []
    ask = scripted(["", "nonsense", "1", "", "3"])  # accept; unclear; correct; no suggestion; correct
    counts = review_session(queue_path, answers_path, LABELS, ask=ask, show=shown.append, reviewer="ann")
    assert counts == {"accept": 1, "correct": 2, "skip": 0}
    assert len(ask.asked) == 5
    answers = pd.read_csv(answers_path, dtype=str, keep_default_na=False)
    assert list(answers["label"]) == ["shipping", "billing", "login"]
    assert list(answers["action"]) == ["accept", "correct", "correct"]
    assert set(answers["reviewer"]) == {"ann"}
    screen = rendered(shown)
    assert "1 of 3" in screen and "suggested: shipping (55%)" in screen
    assert "[b]bold?[/b]" in screen  # texts are shown verbatim, never read as Rich markup
    assert "current label: billing" in screen and "'nonsense' is not a choice" in screen


def test_review_session_stops_on_quit_and_resumes_where_it_stopped(tmp_path: Path) -> None:
    queue_path = make_queue(tmp_path)
    answers_path = tmp_path / "reviewed.csv"
    first = review_session(
        queue_path, answers_path, LABELS, ask=scripted(["s", "y", "q"]), show=lambda _: None, reviewer="a"
    )
    assert first == {"accept": 1, "correct": 0, "skip": 1}
    shown: list[Any] = []
    second = review_session(
        queue_path, answers_path, LABELS, ask=scripted(["2"]), show=shown.append, reviewer="a", limit=1
    )
    assert second == {"accept": 0, "correct": 1, "skip": 0}
    assert TEXTS[2] in rendered(shown)  # the unseen item comes before the skipped one
    remaining = pending(read_queue(queue_path), read_answers(answers_path))
    assert list(remaining["text"]) == [TEXTS[0]]


def make_run(tmp_path: Path, run_id: str) -> Path:
    folder = tmp_path / "runs" / run_id / "label"
    folder.mkdir(parents=True)
    return make_queue(folder)


def write_config(tmp_path: Path, **label: Any) -> Path:
    (tmp_path / "data.csv").write_text("text,label\na,b\n", encoding="utf-8")
    config: dict[str, Any] = {"data": {"train": "data.csv"}, "output_dir": "runs"}
    if label:
        config["label"] = label
    path = tmp_path / "lmforge.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_cli_review_uses_the_newest_run_and_the_configured_answers_file(tmp_path: Path) -> None:
    make_run(tmp_path, "20240101-000000-aaaa")
    newest = make_run(tmp_path, "20240202-000000-bbbb")
    (newest.parent / "labels.json").write_text(json.dumps([*LABELS, "bug"]), encoding="utf-8")
    config = write_config(tmp_path, reviewed="answers/mine.csv")
    result = CliRunner().invoke(
        app, ["review", "--config", str(config), "--reviewer", "ann"], input="\n4\ns\n"
    )
    assert result.exit_code == 0, result.output
    assert "1 accepted, 1 corrected, 1 skipped" in result.output
    answers = pd.read_csv(tmp_path / "answers" / "mine.csv", dtype=str, keep_default_na=False)
    assert list(answers["label"]) == ["shipping", "bug", ""]  # "bug" exists only in the newest run
    assert list(answers["reviewer"]) == ["ann"] * 3


@pytest.mark.parametrize("how", ["run-id", "folder", "file"])
def test_cli_review_target_and_limit(tmp_path: Path, how: str) -> None:
    queue = make_run(tmp_path, "20240101-000000-aaaa")
    make_run(tmp_path, "20240202-000000-bbbb")
    config = write_config(tmp_path)
    target = {"run-id": "20240101-000000-aaaa", "folder": str(queue.parent.parent), "file": str(queue)}[how]
    result = CliRunner().invoke(app, ["review", target, "--config", str(config), "--limit", "1"], input="y\n")
    assert result.exit_code == 0, result.output
    answers = read_answers(tmp_path / "reviewed_labels.csv")  # default: beside the config
    assert list(answers["item_id"]) == [item_id(TEXTS[0])]
    again = CliRunner().invoke(app, ["review", target, "--config", str(config), "-n", "5"], input="q\n")
    assert again.exit_code == 0 and "2 items to review" in again.output


def test_cli_review_without_a_queue_is_a_user_error_with_a_hint(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = CliRunner().invoke(app, ["review", "--config", str(config)])
    assert result.exit_code == 1
    assert "no run in" in result.output and "review_queue.csv" in result.output
    missing = CliRunner().invoke(app, ["review", "nope", "--config", str(config)])
    assert missing.exit_code == 1 and "no review queue at 'nope'" in missing.output
