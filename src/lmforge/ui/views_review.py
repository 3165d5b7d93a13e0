"""Review queue: the doubtful labels of the newest run, one at a time, answered in the browser.

The same files and functions as `lmforge review`: the queue is the newest run's
`label/review_queue.csv`, answers are appended with `lmforge.data.review.record_answer` to the
config's `label.reviewed` file (reviewer = the key's name, with a timestamp), and the next
`lmforge run` trains on them. Anyone logged in may look; answering changes training data, so
it needs an admin key.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lmforge.errors import LmforgeError
from lmforge.ui.pages import page
from lmforge.ui.session import User, needs

router = APIRouter()
# Answers are appended by sync handlers running in a thread pool: one writer at a time keeps
# lines whole and makes "is it still pending?" and "record it" one step.
_WRITE = threading.Lock()


def queue_file(runs_dir: Path) -> Path | None:
    """The newest run's queue (run ids sort by time), as `lmforge review` picks it."""
    from lmforge.data.review import QUEUE_FILE

    found = sorted(runs_dir.glob(f"*/label/{QUEUE_FILE}"), reverse=True) if runs_dir.exists() else []
    return found[0] if found else None


def answers_file(request: Request) -> Path:
    config = request.app.state.project.config
    return Path(config.resolve_path(config.label.reviewed))


def open_items(queue: Path, answers: Path) -> tuple[list[dict[str, Any]], set[str], list[str]]:
    """Pending items in asking order (unseen first, then skipped), the skipped ids, and the labels."""
    from lmforge.data.review import pending, read_answers, read_labels, read_queue

    done = read_answers(answers)
    todo = pending(read_queue(queue), done)
    skipped = set(done.loc[done["action"] == "skip", "item_id"])
    return todo.to_dict("records"), skipped, read_labels(queue)


def _shown(item: dict[str, Any]) -> dict[str, Any]:
    """The item with missing numbers as None (pandas gives NaN / NA, which templates print)."""
    confidence = item.get("confidence")
    row = item.get("source_row")
    return {
        **item,
        "confidence": None if confidence is None or confidence != confidence else float(confidence),
        "source_row": None if row is None or str(row) == "<NA>" else int(row),
    }


@router.get("/review", response_class=HTMLResponse)
def review_page(
    request: Request,
    user: User = Depends(needs("predict")),
    message: str | None = None,
    error: str | None = None,
) -> Response:
    queue, answers = queue_file(request.app.state.project.runs_dir), answers_file(request)
    todo: list[dict[str, Any]] = []
    skipped: set[str] = set()
    labels: list[str] = []
    if queue is not None:
        try:
            todo, skipped, labels = open_items(queue, answers)
        except LmforgeError as exc:  # a hand-edited file the page cannot read: say which
            error = error or str(exc)
    return page(
        request,
        "review.html.j2",
        run_id=queue.parent.parent.name if queue else None,
        item=_shown(todo[0]) if todo else None,
        left=len(todo),
        skipped=sum(1 for t in todo if t["item_id"] in skipped),
        labels=labels,
        answers=answers,
        message=message,
        error=error,
    )


@router.post("/review/answer")
def answer(
    request: Request,
    item_id: str = Form(...),
    action: str = Form(...),
    label: str = Form(""),
    user: User = Depends(needs("admin")),
) -> Response:
    """Record accept (the suggestion), correct (a chosen label) or skip for one pending item."""
    from lmforge.data.review import record_answer

    queue, answers = queue_file(request.app.state.project.runs_dir), answers_file(request)
    if queue is None:
        return _back(error="there is no review queue")
    with _WRITE:
        try:
            todo, _, labels = open_items(queue, answers)
        except LmforgeError as exc:
            return _back(error=str(exc))
        item = next((t for t in todo if t["item_id"] == item_id), None)
        if item is None:
            return _back(error="that item is already answered or no longer in the queue")
        suggested = str(item.get("suggested") or "")
        if action == "accept":
            if not suggested:
                return _back(error="this item has no suggestion: choose a label")
            label = suggested
        elif action == "correct":
            if label not in labels:
                return _back(error=f"unknown label {label!r}")
            # As in `lmforge review`: picking the suggestion is an accept, so `correct`
            # always means the suggestion was wrong.
            action = "accept" if label == suggested else "correct"
        elif action == "skip":
            label = ""
        else:
            return _back(error=f"unknown action {action!r}")
        record_answer(answers, item, label or None, action, user.name)
    request.app.state.sessions.audit(f"review.{action}", user, item_id, label)
    left = len(todo) - (action != "skip")
    done = (
        "skipped" if action == "skip" else f"{'accepted' if action == 'accept' else 'corrected to'} '{label}'"
    )
    return _back(message=f"{done}; {left} left")


def _back(*, message: str | None = None, error: str | None = None) -> Response:
    query = f"message={quote(message)}" if message else f"error={quote(error or '')}"
    return RedirectResponse(f"/review?{query}", status_code=303)
