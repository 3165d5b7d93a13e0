"""Token buckets in the keys database (`serve/ratelimit_shared.py`): one limit per key across
threads, processes and skewed clocks; revocation, rate changes, a locked or tampered database."""

from __future__ import annotations

import multiprocessing as mp
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from lmforge.config import ServeConfig
from lmforge.serve.app import shared_rates
from lmforge.serve.auth import Authorizer
from lmforge.serve.keys import KeyStore, RateLimiter, buckets_table
from lmforge.serve.ratelimit_shared import LOCK_TIMEOUT, SharedRateLimiter


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys.db")


class Clock:
    """A wall clock moved by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _rows(store: KeyStore) -> dict[int, dict[str, Any]]:
    with store.engine.connect() as conn:
        return {r["key_id"]: dict(r) for r in conn.execute(sa.select(buckets_table)).mappings()}


def test_burst_refuse_refill_with_retry_after(store: KeyStore) -> None:
    key = store.create("predict", rate="4/s").info
    other = store.create("predict", rate="4/s").info
    unlimited = store.create("predict").info
    clock = Clock()  # steps of 1/8 s: exact in binary, so the refill sums are too
    limiter = SharedRateLimiter(store.url, clock)
    assert [limiter.check(key) for _ in range(4)] == [None] * 4
    assert limiter.check(key) == pytest.approx(0.25)  # one token every 1/4 s
    assert limiter.check(other) is None  # buckets are per key
    assert all(limiter.check(unlimited) is None for _ in range(100))
    assert set(_rows(store)) == {key.id, other.id}  # no row for an unlimited key
    clock.now += 0.125
    assert limiter.check(key) == pytest.approx(0.125)
    clock.now += 0.125
    assert limiter.check(key) is None
    clock.now += 3600  # a long pause refills to the burst, not beyond
    assert sum(limiter.check(key) is None for _ in range(20)) == 4


def test_two_limiters_share_one_bucket(store: KeyStore) -> None:
    """Two workers' limiters on one file: the key's 5 tokens are spent once, not once each."""
    key = store.create("predict", rate="5/h").info
    clock = Clock()
    a, b = SharedRateLimiter(store.url, clock), SharedRateLimiter(store.url, clock)
    granted = [limiter.check(key) is None for limiter in (a, b) * 10]
    assert sum(granted) == 5 and granted[:5] == [True] * 5


def test_threads_lose_no_update(store: KeyStore) -> None:
    key = store.create("predict", rate="20/h").info  # refill is negligible during the test
    limiter = SharedRateLimiter(store.url)
    allowed: list[bool] = []

    def worker() -> None:
        for _ in range(10):
            allowed.append(limiter.check(key) is None)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(allowed) == 80 and sum(allowed) == 20


def _hammer(url: str, key_id: int, rate: str, takes: int, start: Any, out: Any) -> None:
    """One worker process: `takes` takes as fast as it can once `start` is set."""
    from lmforge.serve.key_rules import parse_rate

    capacity, period = parse_rate(rate)
    limiter = SharedRateLimiter(url)
    start.wait()
    first = time.time()
    granted = sum(limiter.take(key_id, rate, capacity, capacity / period) is None for _ in range(takes))
    out.put((granted, first, time.time()))


def _race(store: KeyStore, rate: str, processes: int, takes: int) -> tuple[int, float]:
    """Granted takes of `processes` processes hammering one key, and the seconds they spanned."""
    key = store.create("predict", rate=rate).info
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_hammer, args=(store.url, key.id, rate, takes, start, out))
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    start.set()
    results = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    span = max(r[2] for r in results) - min(r[1] for r in results)
    return sum(r[0] for r in results), span


def test_processes_get_exactly_the_burst(store: KeyStore) -> None:
    """Two processes, 150 takes each, on a 40/h key: exactly 40 granted (no lost update, no
    double grant); the refill over the test (~1 token per 90 s) cannot add one."""
    granted, span = _race(store, "40/h", processes=2, takes=150)
    assert span < 90 and granted == 40


def test_processes_get_burst_plus_refill(store: KeyStore) -> None:
    """Two processes on a 20/s key: the burst, plus at most the refill over the seconds they ran."""
    granted, span = _race(store, "20/s", processes=2, takes=300)
    assert 20 <= granted <= 20 + 20 * span + 1  # +1: a token that was almost full at the start


def test_clock_behind_another_process_never_refills(store: KeyStore) -> None:
    """Process B's clock 10 s behind A's: alternating takes while neither clock moves grant the
    burst once; then the bucket refills by the furthest clock only."""
    key = store.create("predict", rate="5/s").info
    ahead, behind = Clock(1_000_010.0), Clock(1_000_000.0)
    a, b = SharedRateLimiter(store.url, ahead), SharedRateLimiter(store.url, behind)
    assert sum(limiter.check(key) is None for limiter in (a, b) * 20) == 5
    behind.now += 5  # still behind A's stamp: nothing refilled
    assert b.check(key) is not None
    ahead.now += 1  # a second on the furthest clock: 5 tokens
    assert sum(limiter.check(key) is None for limiter in (b, a) * 10) == 5


def test_clock_set_back_for_good_rebases(store: KeyStore) -> None:
    """The clock set back an hour: no tokens added, and the bucket refills from the new time
    (not starved for an hour)."""
    key = store.create("predict", rate="5/s").info
    clock = Clock()
    limiter = SharedRateLimiter(store.url, clock)
    assert sum(limiter.check(key) is None for _ in range(10)) == 5
    clock.now -= 3600
    assert limiter.check(key) is not None
    clock.now += 1
    assert sum(limiter.check(key) is None for _ in range(10)) == 5


def test_rate_change_resets_and_revocation_drops_the_row(store: KeyStore) -> None:
    key = store.create("predict", rate="2/h").info
    limiter = SharedRateLimiter(store.url)
    assert [limiter.check(key) is None for _ in range(3)] == [True, True, False]
    with store.engine.begin() as conn:  # the rate changed in the database
        conn.execute(sa.text("UPDATE keys SET rate = '3/h' WHERE id = :id"), {"id": key.id})
    changed = store.get(key.id)
    assert changed is not None
    assert [limiter.check(changed) is None for _ in range(4)] == [True, True, True, False]
    store.revoke(key.id)
    assert key.id not in _rows(store)


def test_forget_drops_the_bucket(store: KeyStore) -> None:
    key = store.create("predict", rate="1/h").info
    limiter = SharedRateLimiter(store.url)
    assert limiter.check(key) is None and limiter.check(key) is not None
    limiter.forget(key.id)
    assert limiter.check(key) is None


@pytest.mark.parametrize(
    ("tokens", "stamp"),
    [
        (1e12, 1e6),
        (float("inf"), 1e6),
        (-7.0, 1e6),
        ("lots", 1e6),
        (5.0, "yesterday"),
        (5.0, -1e300),
        (5.0, 1e300),
    ],
)
def test_tampered_row_grants_at_most_the_burst(store: KeyStore, tokens: Any, stamp: Any) -> None:
    """Whatever the row holds (SQLite keeps text in a REAL column), at most the burst is granted."""
    key = store.create("predict", rate="3/h").info
    with sqlite3.connect(store.location) as conn:
        conn.execute("INSERT INTO rate_buckets VALUES (?, '3/h', ?, ?)", (key.id, tokens, stamp))
    limiter = SharedRateLimiter(store.url, Clock())
    assert sum(limiter.check(key) is None for _ in range(10)) <= 3


def test_locked_database_answers_from_memory(store: KeyStore, caplog: pytest.LogCaptureFixture) -> None:
    """Another process holds the write lock: a take answers within the lock timeout (from this
    process's in-memory bucket, with one warning), and the database is used again once free."""
    key = store.create("predict", rate="2/h").info
    limiter = SharedRateLimiter(store.url)
    holder = sqlite3.connect(store.location, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        answers = [limiter.check(key) is None for _ in range(3)]
        waited = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert answers == [True, True, False]  # the in-memory fallback still limits
    assert waited < 3 * (LOCK_TIMEOUT + 2)  # answered, did not hang on the 10 s store timeout
    assert sum("limiting per process" in r.getMessage() for r in caplog.records) == 1
    assert limiter.check(key) is None and key.id in _rows(store)  # the database again


@pytest.mark.parametrize(
    ("settings", "shared"),
    [
        ({}, False),
        ({"workers": 2}, True),
        ({"keys_url": "sqlite:///elsewhere.db"}, True),
        ({"workers": 4, "rate_limits": "process"}, False),
        ({"rate_limits": "shared"}, True),
    ],
)
def test_auto_shares_rates_when_several_processes_enforce_them(
    settings: dict[str, Any], shared: bool, tmp_path: Path
) -> None:
    assert shared_rates(ServeConfig(**settings)) is shared
    limiter = Authorizer(tmp_path / "keys.db", shared_rates=shared_rates(ServeConfig(**settings))).limiter
    assert isinstance(limiter, SharedRateLimiter if shared else RateLimiter)


def test_rate_buckets_table_is_added_to_an_older_database(tmp_path: Path) -> None:
    """A keys.db written before the table existed opens, gains the table, and keeps its keys."""
    path = tmp_path / "keys.db"
    old = KeyStore(path)
    created = old.create("predict", rate="1/h", name="kept")
    old.close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE rate_buckets")
    store = KeyStore(path)
    assert store.authenticate(created.secret) is not None
    assert SharedRateLimiter(store.url).check(created.info) is None


# PostgreSQL (SELECT ... FOR UPDATE, lock_timeout): run with LMFORGE_TEST_POSTGRES_URL set, e.g.
# postgresql+psycopg://user@127.0.0.1:5432/db (an empty database) and psycopg installed.
POSTGRES = os.environ.get("LMFORGE_TEST_POSTGRES_URL")


@pytest.mark.skipif(not POSTGRES, reason="LMFORGE_TEST_POSTGRES_URL not set")
def test_postgres_processes_rows_and_lock_timeout() -> None:
    assert POSTGRES is not None
    store = KeyStore(POSTGRES)
    granted, span = _race(store, "40/h", processes=2, takes=150)
    assert span < 90 and granted == 40
    key = store.create("predict", rate="2/h").info
    limiter = SharedRateLimiter(store.url)
    assert limiter.check(key) is None
    with store.engine.connect() as holder, holder.begin():  # another transaction holds the row
        query = sa.select(buckets_table).where(buckets_table.c.key_id == key.id).with_for_update()
        holder.execute(query).all()
        started = time.monotonic()
        answers = [limiter.check(key) is None for _ in range(3)]  # from memory: a full bucket
        assert answers == [True, True, False] and time.monotonic() - started < 3 * (LOCK_TIMEOUT + 2)
    assert limiter.check(key) is None and limiter.check(key) is not None  # the row again: 1 left
    store.revoke(key.id)
    assert key.id not in _rows(store)
