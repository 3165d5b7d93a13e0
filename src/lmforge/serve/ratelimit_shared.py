"""Per-key rate limits that hold across worker processes and hosts: token buckets in the keys database.

`RateLimiter` (`ratelimit.py`) keeps buckets in process memory, so `lmforge serve --workers N`
would give every key N times its rate. Here each key's bucket is a row of ``rate_buckets`` in
the keys database, and taking a token is one short write transaction (read, refill,
decrement, write): ``BEGIN IMMEDIATE`` on SQLite (the store's writer lock, so takers in
several threads or processes never lose an update), ``SELECT ... FOR UPDATE`` elsewhere.

Time is the wall clock (``time.time``): each process's monotonic clock has its own origin.
A clock behind the stored stamp (another host's clock ahead, or this one stepped back) never
refills the bucket and leaves the stamp where it is, so whichever process reads it, a bucket
refills by the furthest clock only and never holds more than its capacity. A stamp ahead by
more than `MAX_SKEW` (or a full refill, if longer) is taken as a clock set back for good and
rebased to now, adding nothing, so the key is not starved for as long as the clock jumped;
only hosts whose clocks disagree by more than that could then refill a bucket twice.

When the database cannot answer within `LOCK_TIMEOUT` (locked by a long writer, down), the
request is limited by this process's in-memory bucket instead: the limit degrades to what one
worker enforces (N times the rate for the whole server) rather than to no limit or to an
outage (docs/decisions.md, "One rate limit across workers").
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from lmforge.serve.key_rules import KeyInfo, parse_rate
from lmforge.serve.keys import _engine, buckets_table
from lmforge.serve.ratelimit import RateLimiter

log = logging.getLogger("lmforge.serve")
LOCK_TIMEOUT = 1.0  # seconds a take waits for the database before the in-memory fallback
_WARN_EVERY = 60.0  # seconds between two warnings about the fallback (a flood must not flood the log)
MAX_SKEW = 60.0  # seconds a stamp may lead this clock before it counts as a clock set back
_DB_DOWN = (sa.exc.OperationalError, sa.exc.TimeoutError)


class SharedRateLimiter:
    """Token buckets in the keys database at `url` (the same database `KeyStore` opened, so the
    table exists); the same interface as `RateLimiter` for a key's rate."""

    def __init__(self, url: str, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        parsed = sa.make_url(url)
        # Its own pool with a short lock wait: the key store's writers wait 10 s, a request should not.
        self.engine = _engine(parsed, timeout=LOCK_TIMEOUT)
        if parsed.get_backend_name() == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_fast_commit)
        self.fallback = RateLimiter()
        self._warned = -math.inf

    def close(self) -> None:
        self.engine.dispose()

    def check(self, key: KeyInfo) -> float | None:
        """Take one token: None when allowed, else the seconds until one is free (for ``Retry-After``)."""
        if key.rate is None:
            return None
        capacity, period = parse_rate(key.rate)
        return self.take(key.id, key.rate, capacity, capacity / period)

    def take(self, bucket_id: int, rate: str, capacity: float, per_second: float) -> float | None:
        """Take one token from bucket `bucket_id` (refilled afresh when its `rate` changes):
        None when allowed, else the seconds until one is free."""
        try:
            for _ in range(3):  # PostgreSQL: two first takes may race to insert the row
                try:
                    with self.engine.begin() as conn:
                        return _take(conn, bucket_id, rate, float(capacity), per_second, self.clock())
                except sa.exc.IntegrityError:
                    continue
            raise sa.exc.OperationalError("insert the bucket row", None, RuntimeError("kept racing"))
        except _DB_DOWN as exc:
            now = time.monotonic()
            if now - self._warned > _WARN_EVERY:
                self._warned = now
                reason = getattr(exc, "orig", None) or exc
                log.warning("rate limits: keys database busy or down (%s); limiting per process", reason)
            return self.fallback.take(bucket_id, rate, capacity, per_second)

    def forget(self, bucket_id: int) -> None:
        """Drop a bucket (its next use starts full)."""
        with self.engine.begin() as conn:
            conn.execute(buckets_table.delete().where(buckets_table.c.key_id == bucket_id))
        self.fallback.forget(bucket_id)


def _take(
    conn: sa.Connection, bucket_id: int, rate: str, capacity: float, per_second: float, now: float
) -> float | None:
    """The read-refill-decrement-write, inside one transaction that holds the row (or, on SQLite,
    the database's write lock)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(LOCK_TIMEOUT * 1000)}ms'")
    b = buckets_table
    row = conn.execute(
        sa.select(b.c.rate, b.c.tokens, b.c.stamp).where(b.c.key_id == bucket_id).with_for_update()
    ).first()
    tokens, stamp, changed = _refill(row, rate, capacity, per_second, now)
    granted = tokens >= 1.0
    if granted:
        tokens -= 1.0
    # A refusal writes nothing unless the bucket was reset: the refill is recomputed from the same
    # stamp next time, and a flood of refused requests costs no writes.
    if granted or changed:
        values = {"rate": rate, "tokens": tokens, "stamp": stamp}
        if row is None:
            conn.execute(b.insert().values(key_id=bucket_id, **values))
        else:
            conn.execute(b.update().where(b.c.key_id == bucket_id).values(**values))
    return None if granted else (1.0 - tokens) / per_second


def _refill(row: Any, rate: str, capacity: float, per_second: float, now: float) -> tuple[float, float, bool]:
    """(tokens, stamp, reset) of the bucket at time `now`; reset when the stored one is replaced
    without a refill (new, rate changed, unreadable values, clock set back for good)."""
    if row is None or row.rate != rate:
        return capacity, now, True
    try:  # SQLite stores whatever it is given in a REAL column: a tampered row may hold text
        tokens, stamp = float(row.tokens), float(row.stamp)
    except (TypeError, ValueError):
        tokens, stamp = math.nan, math.nan
    if not (math.isfinite(tokens) and math.isfinite(stamp)):
        return capacity, now, True
    tokens = min(capacity, max(0.0, tokens))  # a tampered row cannot hand out more than the burst
    elapsed = now - stamp
    if elapsed >= 0:
        return min(capacity, tokens + elapsed * per_second), now, False
    if -elapsed > max(MAX_SKEW, capacity / per_second):  # this clock was set back: rebase, add nothing
        return tokens, now, True
    return tokens, stamp, False  # behind another process's clock: no refill until it is passed


def _sqlite_fast_commit(dbapi_connection: Any, _record: Any) -> None:
    # WAL + NORMAL: a commit appends to the WAL without an fsync. A power cut may forget the
    # last takes (keys start fuller), never corrupt the file; keys and audit keep FULL.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
