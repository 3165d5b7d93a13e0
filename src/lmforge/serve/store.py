"""The prediction log and feedback store behind `lmforge serve`, `monitor` and `retrain`.

One small SQLAlchemy Core schema so the same code runs on a local SQLite file (the default,
`sqlite:///path.db`) and on PostgreSQL for teams, chosen by URL alone. The server answers a
feedback request only after `add_feedback` has committed, so SQLite runs in WAL mode with
`synchronous=FULL`: an acknowledged row survives the server being killed.

Feedback arrives as 'pending'. Nothing reaches training data until someone accepts it
(`set_status`, or `accept_pending` when `lmforge retrain --accept-all` is used), because
feedback comes from clients and may be wrong or hostile.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from lmforge.errors import LmforgeError
from lmforge.state_dir import sqlite_url as sqlite_url  # re-exported: the default store's URL

FEEDBACK_KINDS = ("label", "rating", "correction")
STATUSES = ("pending", "accepted", "rejected")
# The field each kind of feedback cannot do without.
_REQUIRED = {"label": "label", "rating": "rating", "correction": "corrected_output"}

metadata = sa.MetaData()

predictions_table = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("model_version", sa.String(100), nullable=False),
    sa.Column("route", sa.String(100), nullable=False),
    sa.Column("text_sha256", sa.String(64), nullable=False),
    sa.Column("text_length", sa.Integer, nullable=False),
    sa.Column("text", sa.Text, nullable=True),
    sa.Column("label", sa.String(200), nullable=True),
    sa.Column("confidence", sa.Float, nullable=True),
    sa.Column("probabilities", sa.Text, nullable=True),
    sa.Column("output", sa.Text, nullable=True),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Index("ix_predictions_model_ts", "model_name", "ts"),
)

feedback_table = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.Float, nullable=False),
    # Not a real foreign key: predictions may be pruned, and clients may send feedback
    # about texts the server never logged (then `text` carries the text).
    sa.Column("prediction_id", sa.String(32), nullable=True, index=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("label", sa.String(200), nullable=True),
    sa.Column("rating", sa.Integer, nullable=True),
    sa.Column("corrected_output", sa.Text, nullable=True),
    sa.Column("text", sa.Text, nullable=True),
    sa.Column("key_name", sa.String(200), nullable=True),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("used_in_run", sa.String(200), nullable=True),
)


class FeedbackError(LmforgeError):
    """Feedback the store refuses: the client's request is wrong, not the server.

    Raised as one of the subclasses below; the server answers each with its own status
    (`serve/errors.py`), chosen by type, never by the wording of the message.
    """

    headline = "invalid feedback"


class InvalidFeedback(FeedbackError):
    """Incomplete or contradictory feedback (no kind, two kinds, an unknown label or status)."""


class UnknownPrediction(FeedbackError):
    """Feedback about a prediction id the store never logged, without the text it is about."""


def text_sha256(text: str) -> str:
    """The digest logged for every prediction, so texts can be matched without storing them."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class PredictionRow:
    """One logged prediction; `text` only when the server keeps (masked) texts."""

    model_name: str
    model_version: str
    route: str
    text_sha256: str
    text_length: int
    latency_ms: float
    text: str | None = None
    label: str | None = None
    confidence: float | None = None
    probabilities: dict[str, float] | None = None
    output: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    ts: float = field(default_factory=time.time)


@dataclass
class FeedbackItem:
    """One piece of client feedback; `id` is None until the store has saved it."""

    kind: str
    prediction_id: str | None = None
    label: str | None = None
    rating: int | None = None
    corrected_output: str | None = None
    text: str | None = None
    key_name: str | None = None
    status: str = "pending"
    used_in_run: str | None = None
    id: int | None = None
    ts: float = field(default_factory=time.time)


def _prediction_values(row: PredictionRow) -> dict[str, Any]:
    values = dict(row.__dict__)
    values["probabilities"] = None if row.probabilities is None else json.dumps(row.probabilities)
    return values


def _prediction_from(mapping: Any) -> PredictionRow:
    values = dict(mapping)
    if values["probabilities"] is not None:
        values["probabilities"] = json.loads(values["probabilities"])
    return PredictionRow(**values)


def _check_feedback(item: FeedbackItem) -> None:
    if item.kind not in FEEDBACK_KINDS:
        raise InvalidFeedback(
            f"unknown feedback kind '{item.kind}'", hint=f"use one of {list(FEEDBACK_KINDS)}"
        )
    needed = _REQUIRED[item.kind]
    value = getattr(item, needed)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidFeedback(f"'{item.kind}' feedback needs a '{needed}'")
    if item.kind == "rating" and (isinstance(item.rating, bool) or not isinstance(item.rating, int)):
        raise InvalidFeedback(f"rating must be an integer, got {item.rating!r}")
    if item.status not in STATUSES:
        raise InvalidFeedback(f"unknown status '{item.status}'", hint=f"use one of {list(STATUSES)}")


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise InvalidFeedback(f"unknown status '{status}'", hint=f"use one of {list(STATUSES)}")


class ServeStore:
    """Predictions and feedback in any SQLAlchemy database; tables are created on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = sa.engine.make_url(url)
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            # timeout: threads and processes writing at once wait for the lock, not fail.
            self.engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
            sa.event.listen(self.engine, "connect", _sqlite_durable)
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True)
        # `serve --workers N` opens a fresh store in N processes at once: another may create a
        # table between create_all's check and its CREATE ("already exists"); checking again settles it.
        for attempt in range(3):
            try:
                metadata.create_all(self.engine)
                break
            except sa.exc.DatabaseError:
                if attempt == 2:
                    raise

    def close(self) -> None:
        """Close pooled connections (the file stays consistent either way)."""
        self.engine.dispose()

    # predictions

    def log_predictions(self, rows: list[PredictionRow]) -> None:
        """Insert a micro-batch of predictions in one transaction (one fsync, not one per row)."""
        if not rows:
            return
        with self.engine.begin() as conn:
            conn.execute(predictions_table.insert(), [_prediction_values(r) for r in rows])

    def get_prediction(self, prediction_id: str) -> PredictionRow | None:
        query = sa.select(predictions_table).where(predictions_table.c.id == prediction_id)
        with self.engine.connect() as conn:
            found = conn.execute(query).mappings().first()
        return None if found is None else _prediction_from(found)

    def recent_predictions(
        self, model_name: str, since: float | None = None, limit: int = 10000
    ) -> pd.DataFrame:
        """The newest `limit` predictions of a model (after `since`), oldest first, one row each."""
        t = predictions_table
        query = sa.select(t).where(t.c.model_name == model_name)
        if since is not None:
            query = query.where(t.c.ts >= since)
        query = query.order_by(t.c.ts.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
        frame = pd.DataFrame(rows, columns=[c.name for c in t.columns])
        frame["probabilities"] = [None if p is None else json.loads(p) for p in frame["probabilities"]]
        return frame.iloc[::-1].reset_index(drop=True)

    def count_predictions(self, model_name: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(predictions_table)
        if model_name is not None:
            query = query.where(predictions_table.c.model_name == model_name)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    # feedback

    def add_feedback(self, item: FeedbackItem) -> int:
        """Validate and save feedback; returns its id only once the row is committed.

        Feedback about a logged prediction borrows the prediction's text when the client
        sent none, so it can become a training row. Feedback about an unknown prediction
        is kept only when it carries its own text: otherwise it could never be used.

        Raises:
            InvalidFeedback: the feedback is incomplete or contradictory.
            UnknownPrediction: it names a prediction never logged and carries no text.
        """
        _check_feedback(item)
        text = item.text
        if item.prediction_id is not None:
            logged = self.get_prediction(item.prediction_id)
            if logged is None and text is None:
                raise UnknownPrediction(
                    f"unknown prediction id '{item.prediction_id}'",
                    hint="send the 'text' the feedback is about, or a prediction id returned by the server",
                )
            if text is None and logged is not None:
                text = logged.text
        elif text is None:
            raise InvalidFeedback("feedback needs a 'prediction_id' or the 'text' it is about")
        from lmforge.data.pii import mask_text

        # Stored PII-masked, like the prediction log's texts: clients send whatever they have.
        text = mask_text(text)
        values = {k: v for k, v in item.__dict__.items() if k != "id"}
        values["text"] = text
        values["corrected_output"] = mask_text(item.corrected_output)
        with self.engine.begin() as conn:
            result = conn.execute(feedback_table.insert().values(**values))
            assert result.inserted_primary_key is not None
            new_id = int(result.inserted_primary_key[0])
        item.id, item.text, item.corrected_output = new_id, text, values["corrected_output"]
        return new_id

    def feedback(self, status: str | None = None, kind: str | None = None) -> list[FeedbackItem]:
        """All feedback (optionally of one status and kind), oldest first."""
        t = feedback_table
        query = sa.select(t).order_by(t.c.id)
        if status is not None:
            _check_status(status)
            query = query.where(t.c.status == status)
        if kind is not None:
            query = query.where(t.c.kind == kind)
        with self.engine.connect() as conn:
            return [FeedbackItem(**dict(r)) for r in conn.execute(query).mappings()]

    def set_status(self, ids: Iterable[int], status: str) -> int:
        """Accept or reject feedback by id; returns how many rows changed."""
        _check_status(status)
        return self._update(ids, status=status)

    def mark_used(self, ids: Iterable[int], run_id: str) -> int:
        """Record the retrain run that consumed these feedback rows (provenance)."""
        return self._update(ids, used_in_run=run_id)

    def accept_pending(self, kind: str | None = None) -> int:
        """Accept every pending item (of one kind): `lmforge retrain --accept-all`."""
        t = feedback_table
        query = sa.update(t).where(t.c.status == "pending").values(status="accepted")
        if kind is not None:
            query = query.where(t.c.kind == kind)
        with self.engine.begin() as conn:
            return int(conn.execute(query).rowcount)

    def count_feedback(self, status: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(feedback_table)
        if status is not None:
            query = query.where(feedback_table.c.status == status)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def _update(self, ids: Iterable[int], **values: Any) -> int:
        wanted = [int(i) for i in ids]
        if not wanted:
            return 0
        query = sa.update(feedback_table).where(feedback_table.c.id.in_(wanted)).values(**values)
        with self.engine.begin() as conn:
            return int(conn.execute(query).rowcount)


def _sqlite_durable(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets readers run beside the writer; FULL syncs the WAL at every commit."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def accepted_training_rows(store: ServeStore, text_column: str, label_column: str) -> pd.DataFrame:
    """Accepted label feedback with a known text, as training rows that keep their provenance.

    When the same text was relabelled more than once, the latest accepted label wins:
    training on both would only add label noise.
    """
    items = [f for f in store.feedback(status="accepted", kind="label") if f.text is not None]
    latest = {f.text: f for f in items}  # ordered by id, so later items overwrite earlier
    columns = [text_column, label_column, "feedback_id", "source", "prediction_id"]
    rows = [
        {
            text_column: f.text,
            label_column: f.label,
            "feedback_id": f.id,
            "source": "feedback",
            "prediction_id": f.prediction_id,
        }
        for f in sorted(latest.values(), key=lambda f: f.id or 0)
    ]
    return pd.DataFrame(rows, columns=columns)
