"""The human review queue: doubtful labels go to a person, whose answers the next run trains on.

The label stage writes `review_queue.csv` (low-confidence auto-labels and possible label errors)
and `labels.json` beside it. `lmforge review` shows the pending items one at a time and appends
each answer to an answers CSV (by default `reviewed_labels.csv` beside the user's config, outside
any run folder, so answers outlive runs). Every answer is flushed and fsynced before the next
item is shown: Ctrl-C, a closed laptop or a crash loses at most the item on screen.

Items are keyed by `item_id`, a hash of the text, not by row number: answers stay attached to
their text when the data file is edited, re-sorted or deduplicated between runs.

A skipped item stays pending (a skip means "not now", not "no label"); the next session shows
it again, after the items nobody has seen yet. Of several answers to one item the latest wins.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Group
from rich.panel import Panel
from rich.text import Text

from lmforge.errors import DataError

QUEUE_COLUMNS: tuple[str, ...] = (
    "item_id",
    "source_row",
    "text",
    "suggested",
    "confidence",
    "reason",
    "given",
)
ANSWER_COLUMNS: tuple[str, ...] = ("item_id", "text", "label", "action", "reviewer", "reviewed_at")
ACTIONS = ("accept", "correct", "skip")
LOW_CONFIDENCE = "low-confidence auto-label"
POSSIBLE_ERROR = "possible label error"
QUEUE_FILE = "review_queue.csv"
LABELS_FILE = "labels.json"


def item_id(text: str) -> str:
    """Stable id of a text: the first 16 hex digits of its UTF-8 sha256."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def write_queue(path: Path, rows: pd.DataFrame, labels: Sequence[str] | None = None) -> None:
    """Write the queue atomically (temp file + rename), and `labels.json` beside it if given.

    `item_id` is computed from `text` when the frame lacks it; other missing columns are a bug
    in the caller, so they raise `ValueError`.
    """
    frame = rows.copy()
    if "item_id" not in frame.columns:
        frame["item_id"] = [item_id(str(t)) for t in frame["text"]]
    missing = [c for c in QUEUE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"review queue rows lack columns {missing}")
    frame = frame.loc[:, list(QUEUE_COLUMNS)]
    frame["given"] = frame["given"].fillna("")
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, frame.to_csv(index=False))
    if labels is not None:
        _atomic_write(path.with_name(LABELS_FILE), json.dumps(list(labels), indent=2, ensure_ascii=False))


def read_queue(path: Path) -> pd.DataFrame:
    """The queue as written by `write_queue`; `DataError` naming the file, row and column if not."""
    frame = _read_csv(path, QUEUE_COLUMNS, "review queue")
    confidence = pd.to_numeric(frame["confidence"].replace("", "nan"), errors="coerce")
    bad = frame.index[confidence.isna() & (frame["confidence"] != "")]
    if len(bad):
        raise DataError(
            f"confidence '{frame.at[bad[0], 'confidence']}' is not a number",
            file=path,
            row=int(bad[0]) + 2,  # +1 for 1-based, +1 for the header row, as a spreadsheet shows it
            column="confidence",
        )
    frame["confidence"] = confidence
    frame["source_row"] = pd.to_numeric(frame["source_row"], errors="coerce").astype("Int64")
    return frame


def read_labels(queue_path: Path) -> list[str]:
    """Label names from `labels.json` beside the queue, else the labels the queue mentions."""
    path = queue_path.with_name(LABELS_FILE)
    if path.exists():
        try:
            labels = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"not valid JSON ({exc})", file=path) from None
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise DataError("expected a JSON list of label names", file=path)
        return labels
    queue = read_queue(queue_path)
    found = set(queue["suggested"]) | set(queue["given"])
    return sorted(label for label in found if label)


def read_answers(path: Path) -> pd.DataFrame:
    """Answers so far, one row per item (the latest); an empty frame when the file is absent."""
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame({c: pd.Series(dtype=str) for c in ANSWER_COLUMNS})
    frame = _read_csv(path, ANSWER_COLUMNS, "answers")
    bad = frame.index[~frame["action"].isin(ACTIONS)]
    if len(bad):
        raise DataError(
            f"action '{frame.at[bad[0], 'action']}' is not one of {', '.join(ACTIONS)}",
            file=path,
            row=int(bad[0]) + 2,
            column="action",
        )
    return frame.drop_duplicates("item_id", keep="last").reset_index(drop=True)


def pending(queue: pd.DataFrame, answers: pd.DataFrame) -> pd.DataFrame:
    """Queue items without an accept/correct answer: unseen ones first, then the skipped ones.

    An item whose text appears twice in the queue is asked once.
    """
    labelled = set(human_labels(answers))
    skipped = set(answers.loc[answers["action"] == "skip", "item_id"])
    todo = queue[~queue["item_id"].isin(labelled)].drop_duplicates("item_id")
    order = todo["item_id"].isin(skipped).to_numpy()
    return pd.concat([todo[~order], todo[order]]).reset_index(drop=True)


def record_answer(path: Path, item: Mapping[str, Any], label: str | None, action: str, reviewer: str) -> None:
    """Append one answer and fsync it, so an interrupted session keeps every answer given."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
    if action != "skip" and not label:
        raise ValueError(f"action {action!r} needs a label")
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    reviewed_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(ANSWER_COLUMNS)
        text = str(item["text"])
        key = item.get("item_id") or item_id(text)
        writer.writerow([key, text, label or "", action, reviewer, reviewed_at])
        handle.flush()
        os.fsync(handle.fileno())


def human_labels(answers: pd.DataFrame) -> dict[str, str]:
    """item_id -> label for every accepted or corrected item (latest answer per item)."""
    latest = answers.drop_duplicates("item_id", keep="last")
    decided = latest[latest["action"].isin(("accept", "correct"))]
    return dict(zip(decided["item_id"], decided["label"], strict=True))


def review_session(
    queue_path: Path,
    answers_path: Path,
    labels: Sequence[str],
    *,
    ask: Callable[[str], str],
    show: Callable[[Any], None],
    reviewer: str,
    limit: int | None = None,
) -> dict[str, int]:
    """Show each pending item, read the answer, record it at once; returns counts per action.

    Enter or `y` accepts the suggestion, a number or an exact label name picks a label, `s`
    skips, `q` (or end of input) quits; anything else is asked again with a hint. Picking the
    suggested label by name or number counts as `accept`, so `correct` always means "the
    suggestion was wrong", which is what the counts are read for.
    """
    todo = pending(read_queue(queue_path), read_answers(answers_path))
    if limit is not None:
        todo = todo.head(limit)
    counts = dict.fromkeys(ACTIONS, 0)
    for position, item in enumerate(todo.to_dict("records"), start=1):
        show(render_item(item, labels, position, len(todo)))
        decision = _ask_until_valid(item, labels, ask, show)
        if decision is None:
            break
        action, label = decision
        record_answer(answers_path, item, label, action, reviewer)
        counts[action] += 1
    return counts


def parse_answer(reply: str, suggested: str, labels: Sequence[str]) -> tuple[str, str | None]:
    """`(action, label)` for a typed reply, action one of accept/correct/skip/quit.

    Commands come first, then an exact label name, then a choice number: labels that are
    themselves numbers ("1".."5" stars) are matched by name before being read as positions.

    Raises:
        ValueError: the reply is none of those; the message is the hint to show.
    """
    text = reply.strip()
    command = text.lower()
    if command in ("", "y", "yes"):
        if not suggested:
            raise ValueError("this item has no suggestion: type a label's number or name")
        return "accept", suggested
    if command in ("s", "skip"):
        return "skip", None
    if command in ("q", "quit"):
        return "quit", None
    if text in labels:
        return ("accept" if text == suggested else "correct"), text
    if text.isdigit() and 1 <= int(text) <= len(labels):
        label = labels[int(text) - 1]
        return ("accept" if label == suggested else "correct"), label
    raise ValueError(
        f"'{text}' is not a choice: Enter or y accepts, 1-{len(labels)} or an exact label name "
        "picks a label, s skips, q quits"
    )


def render_item(item: Mapping[str, Any], labels: Sequence[str], position: int, total: int) -> Panel:
    """One queue item as a Rich panel. Texts are data, never markup: `[b]` in a tweet stays `[b]`."""
    lines = [Text(str(item["text"]))]
    confidence = item.get("confidence")
    shown = f" ({float(confidence):.0%})" if confidence is not None and confidence == confidence else ""
    if item.get("suggested"):
        lines.append(Text.assemble(("suggested: ", "bold"), (str(item["suggested"]), "bold cyan"), shown))
    if item.get("given"):
        lines.append(Text.assemble(("current label: ", "bold"), str(item["given"])))
    choices = Text("choices: ", style="bold")
    for number, label in enumerate(labels, start=1):
        choices.append(f"{number}", style="bold magenta")
        choices.append(f" {label}   ")
    lines.append(choices)
    title = f"{position} of {total} · {item.get('reason', '')}"
    return Panel(Group(*lines), title=title, title_align="left")


def _ask_until_valid(
    item: Mapping[str, Any], labels: Sequence[str], ask: Callable[[str], str], show: Callable[[Any], None]
) -> tuple[str, str | None] | None:
    """`(action, label)`, or None to quit; re-asks with a hint until the reply is understood."""
    prompt = f"Enter/y accept · 1-{len(labels)} or label pick · s skip · q quit"
    while True:
        try:
            reply = ask(prompt)
        except EOFError:  # input closed (piped answers ran out): stop cleanly, answers are saved
            return None
        try:
            action, label = parse_answer(reply, str(item.get("suggested") or ""), labels)
        except ValueError as hint:
            show(Text(str(hint), style="yellow"))
            continue
        return None if action == "quit" else (action, label)


def _read_csv(path: Path, columns: Sequence[str], what: str) -> pd.DataFrame:
    if not path.exists():
        raise DataError(f"{what} file not found", file=path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"unreadable {what} CSV ({type(exc).__name__}: {exc})", file=path) from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"not a {what} file: missing columns {', '.join(missing)} (expected {', '.join(columns)})",
            file=path,
        )
    return frame


def _atomic_write(path: Path, content: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(content, encoding="utf-8")
    os.replace(tmp, path)
