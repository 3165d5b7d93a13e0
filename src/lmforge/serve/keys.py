"""API keys for `lmforge serve`: a SQLite key store, an audit log and a per-key rate limiter.

A key is a bearer secret shaped ``lmf_<prefix>_<random>``. Only the SHA-256 of the secret
is stored, so a copied database file does not hand out working keys; the 8-character
prefix is kept in the clear so people can tell keys apart in `lmforge keys list`.

Scopes, i.e. what a key may call (:func:`allows` is the one place this rule lives):

* ``predict``: prediction routes only.
* ``feedback``: feedback routes *and* prediction routes, because a client that reports
  feedback on predictions has to be able to make them.
* ``admin``: everything, admin routes included (keys, reloads, the audit log).

The store opens a short-lived connection per call (WAL journal, busy timeout), so one
`KeyStore` can be shared by the server's threads and by several worker processes;
a revocation is seen by the very next request because every check reads the database.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, cast, get_args

from lmforge.errors import LmforgeError

Scope = Literal["predict", "feedback", "admin"]
SCOPES: tuple[str, ...] = get_args(Scope)
SECRET_PREFIX = "lmf_"
# What each scope may call; see the module docstring for why feedback includes predict.
_GRANTS: dict[str, frozenset[str]] = {
    "predict": frozenset({"predict"}),
    "feedback": frozenset({"feedback", "predict"}),
    "admin": frozenset(SCOPES),
}
_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE_RE = re.compile(r"(\d+)/([smh])")
_RATE_FORMS = "COUNT/s, COUNT/m or COUNT/h with COUNT >= 1, e.g. 50/s, 600/m, 10/h"
_COLUMNS = "id, name, prefix, scope, rate, created_at, revoked_at, last_used_at"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL UNIQUE,
    secret_sha256 TEXT NOT NULL UNIQUE,
    scope TEXT NOT NULL,
    rate TEXT,
    created_at TEXT NOT NULL,
    revoked_at TEXT,
    last_used_at TEXT
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,
    key_id INTEGER,
    key_name TEXT,
    action TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT ''
);
"""


class ApiKeyError(LmforgeError):
    """A bad scope, rate or key reference given by the user."""

    headline = "api key error"


@dataclass(frozen=True)
class KeyInfo:
    """One key as listed: everything but the secret (never stored) and its hash. Times are UTC ISO-8601."""

    id: int
    name: str
    prefix: str
    scope: str
    rate: str | None
    created_at: str
    revoked_at: str | None = None
    last_used_at: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True)
class CreatedKey:
    """A new key and its plaintext secret: the only time the secret exists outside the client."""

    info: KeyInfo
    secret: str = field(repr=False)  # so a logged or printed CreatedKey does not leak the key


def check_scope(scope: str) -> Scope:
    """Validate a scope given as plain text (CLI, HTTP) before it reaches the store."""
    if scope not in SCOPES:
        raise ApiKeyError(f"scope '{scope}' is not valid", hint=f"use one of {', '.join(SCOPES)}")
    return cast(Scope, scope)


@functools.lru_cache(maxsize=256)  # parsed on every rate-limited request
def parse_rate(rate: str) -> tuple[int, float]:
    """Turn ``"50/s"`` into ``(50, 1.0)``: the burst size and the seconds one full refill takes."""
    match = _RATE_RE.fullmatch(rate.strip())
    if match is None or int(match.group(1)) < 1:
        raise ApiKeyError(f"rate '{rate}' is not valid", hint=f"use {_RATE_FORMS}")
    return int(match.group(1)), _PERIODS[match.group(2)]


def allows(key: KeyInfo, needed: str) -> bool:
    """Whether `key` may call a route that needs scope `needed` (rule in the module docstring)."""
    if needed not in _GRANTS:  # a typo in the server's route table, not a user error
        raise ValueError(f"unknown scope {needed!r}; expected one of {SCOPES}")
    return not key.revoked and needed in _GRANTS.get(key.scope, frozenset())


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _info(row: sqlite3.Row) -> KeyInfo:
    return KeyInfo(
        id=row["id"],
        name=row["name"],
        prefix=row["prefix"],
        scope=row["scope"],
        rate=row["rate"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


def _write_audit(
    db: sqlite3.Connection, action: str, key: KeyInfo | None, target: str = "", detail: str = ""
) -> None:
    db.execute(
        "INSERT INTO audit (ts, key_id, key_name, action, target, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (_now(), key.id if key else None, key.name if key else None, action, target, detail),
    )


class KeyStore:
    """API keys and their audit log in one SQLite file (created, with its folder, if missing)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.execute("PRAGMA journal_mode=WAL")  # persistent: readers never block the writer
                db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise ApiKeyError(f"{self.path}: cannot open the keys database ({exc})") from exc

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # A connection per call: nothing is shared between threads, and SQLite's own
        # locking (WAL + busy timeout) orders writers across threads and processes.
        db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        try:
            yield db
        finally:
            db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so a check-then-write cannot interleave.
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def create(self, scope: Scope, name: str | None = None, rate: str | None = None) -> CreatedKey:
        """Create a key; the returned secret is not stored and cannot be recovered later."""
        scope = check_scope(scope)  # callers may pass unchecked text despite the type
        if rate is not None:
            parse_rate(rate)  # raises on a bad rate before anything is written
            rate = rate.strip()
        prefix = secrets.token_hex(4)  # hex: never contains the "_" that separates the parts
        secret = f"{SECRET_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        name = (name or "").strip() or f"{scope}-{prefix}"
        with self._transaction() as db:
            taken = "SELECT 1 FROM keys WHERE name = ? AND revoked_at IS NULL"
            if db.execute(taken, (name,)).fetchone():
                raise ApiKeyError(
                    f"a key named '{name}' already exists", hint="pick another name or revoke that key first"
                )
            cursor = db.execute(
                "INSERT INTO keys (name, prefix, secret_sha256, scope, rate, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (name, prefix, _digest(secret), scope, rate, _now()),
            )
            row = db.execute(f"SELECT {_COLUMNS} FROM keys WHERE id = ?", (cursor.lastrowid,)).fetchone()
            info = _info(row)
            _write_audit(db, "key.create", info, detail=f"scope={scope} rate={rate or 'unlimited'}")
        return CreatedKey(info=info, secret=secret)

    def revoke(self, ref: str | int) -> KeyInfo:
        """Revoke a key named by id, prefix, name or its secret; the row stays for the audit trail."""
        ref = str(ref).strip()
        with self._transaction() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM keys "
                "WHERE CAST(id AS TEXT) = ? OR prefix = ? OR name = ? OR secret_sha256 = ?",
                (ref, ref, ref, _digest(ref)),
            ).fetchall()
            # A name may be reused once its old key is revoked: the live key is the one meant.
            matches = [r for r in rows if r["revoked_at"] is None] or rows
            if not matches:
                raise ApiKeyError(
                    f"no API key '{ref}'", hint="`lmforge keys list` shows ids, names, prefixes"
                )
            if len(matches) > 1:
                ids = ", ".join(str(r["id"]) for r in matches)
                raise ApiKeyError(f"'{ref}' matches keys {ids}", hint="revoke by id instead")
            info = _info(matches[0])
            if info.revoked:
                raise ApiKeyError(f"key '{ref}' (id {info.id}) was already revoked at {info.revoked_at}")
            info = replace(info, revoked_at=_now())
            db.execute("UPDATE keys SET revoked_at = ? WHERE id = ?", (info.revoked_at, info.id))
            _write_audit(db, "key.revoke", info, detail=f"scope={info.scope}")
        return info

    def authenticate(self, secret: str) -> KeyInfo | None:
        """The live key whose secret this is, or None; records when it was last used.

        The database compares hashes, never the secret itself, so response times reveal
        nothing about how much of a guessed secret was right.
        """
        if not secret.startswith(SECRET_PREFIX):  # cheap reject: no database round trip
            return None
        digest = _digest(secret)
        with self._connect() as db:
            query = f"SELECT {_COLUMNS}, secret_sha256 FROM keys WHERE secret_sha256 = ?"
            row = db.execute(query, (digest,)).fetchone()
            if row is None or row["revoked_at"] is not None:
                return None
            if not hmac.compare_digest(row["secret_sha256"], digest):  # belt and braces
                return None
            now = _now()
            db.execute("UPDATE keys SET last_used_at = ? WHERE id = ?", (now, row["id"]))
        return replace(_info(row), last_used_at=now)

    @staticmethod
    def allows(key: KeyInfo, needed: str) -> bool:
        """Same as the module-level :func:`allows`, here so the server needs only the store."""
        return allows(key, needed)

    def audit(self, action: str, key: KeyInfo | None, target: str = "", detail: str = "") -> None:
        """Record who did what (e.g. ``predict``, ``/predict``, ``200``); `key` None for anonymous."""
        with self._connect() as db:
            _write_audit(db, action, key, target, detail)

    def audit_log(self, limit: int = 100) -> builtins.list[dict[str, Any]]:
        """The newest `limit` audit entries, newest first."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [dict(row) for row in rows]

    def list(self) -> builtins.list[KeyInfo]:
        """Every key, revoked ones included, oldest first; secrets and hashes are never returned."""
        with self._connect() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM keys ORDER BY id").fetchall()
        return [_info(row) for row in rows]


@dataclass
class _Bucket:
    rate: str
    tokens: float
    stamp: float


class RateLimiter:
    """A token bucket per key: a ``COUNT/PERIOD`` key may burst COUNT requests, refilled at COUNT per PERIOD.

    Buckets live in memory, so limits are per server process; that keeps the hot path off the
    database, and a restart simply hands every key a full bucket.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[int, _Bucket] = {}

    def check(self, key: KeyInfo) -> float | None:
        """Take one token: None when allowed, else the seconds until one is free (for ``Retry-After``)."""
        if key.rate is None:
            return None
        capacity, period = parse_rate(key.rate)
        per_second = capacity / period
        with self._lock:
            now = self._clock()  # read under the lock so time never runs backwards for a bucket
            bucket = self._buckets.get(key.id)
            if bucket is None or bucket.rate != key.rate:
                bucket = self._buckets[key.id] = _Bucket(key.rate, float(capacity), now)
            bucket.tokens = min(float(capacity), bucket.tokens + (now - bucket.stamp) * per_second)
            bucket.stamp = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return None
            return (1.0 - bucket.tokens) / per_second
