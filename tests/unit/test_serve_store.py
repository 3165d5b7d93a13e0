"""The prediction / feedback store on real SQLite files: durability, validation, provenance."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from lmforge.serve.store import (
    FeedbackError,
    FeedbackItem,
    PredictionRow,
    ServeStore,
    accepted_training_rows,
    sqlite_url,
    text_sha256,
)


def prediction(
    text: str, label: str = "billing", *, keep_text: bool = True, ts: float | None = None
) -> PredictionRow:
    row = PredictionRow(
        model_name="tickets",
        model_version="3",
        route="/predict",
        text_sha256=text_sha256(text),
        text_length=len(text),
        latency_ms=4.2,
        text=text if keep_text else None,
        label=label,
        confidence=0.9,
        probabilities={label: 0.9, "other": 0.1},
    )
    if ts is not None:
        row.ts = ts
    return row


@pytest.fixture
def db(tmp_path: Path) -> str:
    return sqlite_url(tmp_path / "serve" / "store.db")


def test_prediction_batch_round_trip(db: str) -> None:
    store = ServeStore(db)
    rows = [prediction(f"refund my invoice {i}", ts=1000.0 + i) for i in range(5)]
    rows.append(prediction("hidden text", keep_text=False, ts=2000.0))
    store.log_predictions(rows)
    assert store.count_predictions() == 6
    got = store.get_prediction(rows[2].id)
    assert got == rows[2]
    assert store.get_prediction("nope") is None
    assert store.get_prediction(rows[-1].id).text is None  # type: ignore[union-attr]

    recent = store.recent_predictions("tickets", since=1002.0)
    assert list(recent["id"]) == [r.id for r in rows[2:]]  # oldest first
    assert recent["probabilities"].iloc[0] == {"billing": 0.9, "other": 0.1}
    assert list(store.recent_predictions("tickets", limit=2)["ts"]) == [1004.0, 2000.0]
    assert store.recent_predictions("other-model").empty
    assert "text_length" in store.recent_predictions("other-model").columns


def test_wal_mode_is_on(db: str, tmp_path: Path) -> None:
    store = ServeStore(db)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    with sqlite3.connect(tmp_path / "serve" / "store.db") as raw:  # persisted in the file
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (FeedbackItem(kind="label", text="t"), "needs a 'label'"),
        (FeedbackItem(kind="label", label="  ", text="t"), "needs a 'label'"),
        (FeedbackItem(kind="rating", text="t"), "needs a 'rating'"),
        (FeedbackItem(kind="rating", rating=True, text="t"), "integer"),  # type: ignore[arg-type]
        (FeedbackItem(kind="correction", label="x", text="t"), "needs a 'corrected_output'"),
        (FeedbackItem(kind="thumbs", label="x", text="t"), "unknown feedback kind"),
        (FeedbackItem(kind="label", label="x", prediction_id="missing"), "unknown prediction id 'missing'"),
        (FeedbackItem(kind="label", label="x"), "needs a 'prediction_id' or the 'text'"),
        (FeedbackItem(kind="label", label="x", text="t", status="maybe"), "unknown status"),
    ],
)
def test_invalid_feedback_is_refused(db: str, item: FeedbackItem, message: str) -> None:
    store = ServeStore(db)
    with pytest.raises(FeedbackError, match=message.replace("(", r"\(")):
        store.add_feedback(item)
    assert store.count_feedback() == 0


@pytest.mark.parametrize(
    "item",
    [
        FeedbackItem(kind="label", label="bug", text="app crashes"),
        FeedbackItem(kind="label", label="bug", prediction_id="unknown-but-texted", text="app crashes"),
        FeedbackItem(kind="rating", rating=-1, text="app crashes"),
        FeedbackItem(kind="rating", rating=5, text="app crashes"),
        FeedbackItem(kind="correction", corrected_output="Fixed.", text="app crashes"),
    ],
)
def test_valid_feedback_is_saved_pending(db: str, item: FeedbackItem) -> None:
    store = ServeStore(db)
    new_id = store.add_feedback(item)
    (saved,) = store.feedback()
    assert saved.id == new_id and saved.status == "pending"
    assert (saved.kind, saved.label, saved.rating, saved.corrected_output) == (
        item.kind,
        item.label,
        item.rating,
        item.corrected_output,
    )


def test_feedback_borrows_the_logged_text(db: str) -> None:
    store = ServeStore(db)
    kept, hidden = prediction("where is my parcel"), prediction("secret", keep_text=False)
    store.log_predictions([kept, hidden])
    store.add_feedback(FeedbackItem(kind="label", label="shipping", prediction_id=kept.id, key_name="ops"))
    store.add_feedback(FeedbackItem(kind="rating", rating=1, prediction_id=hidden.id))
    first, second = store.feedback()
    assert first.text == "where is my parcel" and first.key_name == "ops"
    assert second.text is None  # known prediction, text never logged: kept, but not trainable


@pytest.mark.parametrize(
    "item",
    [
        FeedbackItem(
            kind="label", label="billing", text="refund to DE89 3704 0044 0532 0130 00 or jo@ex.com"
        ),
        FeedbackItem(
            kind="correction", corrected_output="card 4111 1111 1111 1111", text="call +1 415-555-2671"
        ),
        # Already masked (a logged prediction's text): masking again changes nothing.
        FeedbackItem(kind="rating", rating=1, text="mail <EMAIL> about <IBAN>"),
    ],
)
def test_feedback_texts_are_stored_pii_masked(db: str, tmp_path: Path, item: FeedbackItem) -> None:
    from lmforge.data.pii import mask_text

    raw = [v for v in (item.text, item.corrected_output) if v]
    expected = (mask_text(item.text), mask_text(item.corrected_output))
    ServeStore(db).add_feedback(item)
    (stored,) = ServeStore(db).feedback()
    assert (stored.text, stored.corrected_output) == (item.text, item.corrected_output) == expected
    assert all("<" in v for v in expected if v)  # every text above holds personal data or placeholders
    files = [p for p in (tmp_path / "serve").iterdir() if p.is_file()]  # the db, -wal, -shm
    leaked = [v for p in files for v in raw if v != mask_text(v) and v.encode() in p.read_bytes()]
    assert leaked == []


def test_feedback_is_durable_across_a_fresh_store(db: str) -> None:
    ids = [ServeStore(db).add_feedback(FeedbackItem(kind="label", label="bug", text=t)) for t in "abc"]
    fresh = ServeStore(db)
    assert [f.id for f in fresh.feedback()] == ids
    assert fresh.count_feedback(status="pending") == 3


CHILD = textwrap.dedent(
    """
    import sys
    from lmforge.serve.store import FeedbackItem, ServeStore
    store = ServeStore(sys.argv[1])
    for i in range(100000):
        new_id = store.add_feedback(FeedbackItem(kind="label", label="bug", text=f"text {i}"))
        print(new_id, flush=True)
    """
)


def test_acknowledged_feedback_survives_sigkill(db: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, db],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert child.stdout is not None
    acknowledged = []
    while len(acknowledged) < 25:
        line = child.stdout.readline()
        assert line, "child exited before acknowledging feedback"
        acknowledged.append(int(line))
    os.kill(child.pid, signal.SIGKILL)  # mid-write, most likely
    child.wait(timeout=30)
    acknowledged += [int(line) for line in child.stdout.read().split()]  # flushed before the kill
    assert child.returncode == -signal.SIGKILL
    saved = {f.id for f in ServeStore(db).feedback()}
    assert set(acknowledged) <= saved


def test_concurrent_writers_from_threads(db: str) -> None:
    store = ServeStore(db)
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for i in range(20):
                store.add_feedback(FeedbackItem(kind="label", label="bug", text=f"{worker}-{i}"))
                store.log_predictions([prediction(f"{worker}-{i}")])
        except BaseException as error:  # surfaced below: threads swallow exceptions
            errors.append(error)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.count_feedback() == 80 and store.count_predictions() == 80
    assert len({f.text for f in store.feedback()}) == 80


def test_status_changes_and_accept_pending(db: str) -> None:
    store = ServeStore(db)
    a = store.add_feedback(FeedbackItem(kind="label", label="bug", text="a"))
    b = store.add_feedback(FeedbackItem(kind="rating", rating=1, text="b"))
    c = store.add_feedback(FeedbackItem(kind="label", label="bug", text="c"))
    assert store.set_status([c], "rejected") == 1
    assert store.accept_pending(kind="label") == 1
    assert [f.id for f in store.feedback(status="accepted")] == [a]
    assert [f.id for f in store.feedback(status="pending")] == [b]
    assert store.mark_used([a], "run-7") == 1
    assert store.feedback(status="accepted")[0].used_in_run == "run-7"
    assert store.set_status([], "accepted") == 0
    with pytest.raises(FeedbackError, match="unknown status"):
        store.set_status([a], "done")


def test_accepted_training_rows_keep_provenance(db: str) -> None:
    store = ServeStore(db)
    logged = prediction("my card was charged twice", label="shipping")
    store.log_predictions([logged])
    from_prediction = store.add_feedback(FeedbackItem(kind="label", label="billing", prediction_id=logged.id))
    from_client = store.add_feedback(FeedbackItem(kind="label", label="login", text="cannot sign in"))
    relabel_old = store.add_feedback(FeedbackItem(kind="label", label="bug", text="app freezes"))
    relabel_new = store.add_feedback(FeedbackItem(kind="label", label="login", text="app freezes"))
    pending = store.add_feedback(FeedbackItem(kind="label", label="bug", text="still pending"))
    rating = store.add_feedback(FeedbackItem(kind="rating", rating=1, text="rated"))
    store.set_status([from_prediction, from_client, relabel_old, relabel_new, rating], "accepted")

    rows = accepted_training_rows(store, "body", "topic")
    assert list(rows.columns) == ["body", "topic", "feedback_id", "source", "prediction_id"]
    records = rows.astype(object).where(rows.notna(), None).to_dict("records")  # pandas 3: NaN for None
    assert records == [
        {
            "body": "my card was charged twice",
            "topic": "billing",
            "feedback_id": from_prediction,
            "source": "feedback",
            "prediction_id": logged.id,
        },
        {
            "body": "cannot sign in",
            "topic": "login",
            "feedback_id": from_client,
            "source": "feedback",
            "prediction_id": None,
        },
        {
            "body": "app freezes",
            "topic": "login",
            "feedback_id": relabel_new,  # latest label wins
            "source": "feedback",
            "prediction_id": None,
        },
    ]
    assert pending not in set(rows["feedback_id"])
    assert accepted_training_rows(ServeStore(db.replace("store.db", "empty.db")), "t", "l").empty


def _open_stores(folder: str, start: Any, out: Any) -> None:
    """One worker process opening (and so creating) fresh stores the moment `start` is set."""
    start.wait()
    try:
        for i in range(4):
            ServeStore(f"sqlite:///{folder}/serve-{i}.db").close()
        out.put("ok")
    except Exception as exc:  # the test shows what failed, not just that a process died
        out.put(f"{type(exc).__name__}: {exc}".splitlines()[0])


def test_workers_opening_a_fresh_store_at_once_all_start(tmp_path: Path) -> None:
    """`serve --workers 3` on a fresh state folder: each worker creates the tables at once; none
    may die of "table already exists" (6 of 10 two-worker starts did before the retry)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_open_stores, args=(str(tmp_path), start, out)) for _ in range(3)]
    for proc in procs:
        proc.start()
    start.set()
    assert [out.get(timeout=120) for _ in procs] == ["ok"] * 3
    for proc in procs:
        proc.join(timeout=30)
