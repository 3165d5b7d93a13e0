"""API keys for `lmforge serve`: the key store and its audit log, in any SQLAlchemy database.

A SQLite file by default (``keys.db`` in the state folder); ``serve.keys_url`` (PostgreSQL)
lets several hosts share one set of keys, so a key created or revoked once holds everywhere.
What a key is and may do (secrets, scopes, rates) lives in `key_rules.py`, and the per-key
token buckets in `ratelimit.py`; both are re-exported here so callers need one import. When
several workers or hosts enforce one key's rate, its bucket is a row of ``rate_buckets`` here
(`ratelimit_shared.py`); revoking a key drops that row.

The tables keep the layout of the first, raw-sqlite3 store, so its ``keys.db`` files open as
they are. The one addition, a unique index on the names of live keys (the database itself
then refuses a second live key of the same name, even from another host), is created when a
database without it is opened.

`KeyStore.authenticate` reads the database every time, so a revocation is seen by its very
next call. The server in front of it caches a lookup for 2 s: a running server refuses a key
revoked elsewhere within 2 s, one revoked through that server at once (`serve/auth.py`).

On SQLite every write transaction starts with ``BEGIN IMMEDIATE`` (WAL journal, busy timeout), so a
check-then-write cannot interleave between threads or worker processes; elsewhere the unique
index and conditional updates keep the same rules.
"""

from __future__ import annotations

import builtins
import hmac
from dataclasses import replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from lmforge.serve.key_rules import (
    SCOPES,
    SECRET_PREFIX,
    ApiKeyError,
    CreatedKey,
    KeyInfo,
    Scope,
    allows,
    check_scope,
    digest,
    new_secret,
    parse_rate,
    utc_now,
)
from lmforge.serve.ratelimit import RateLimiter
from lmforge.state_dir import database_url, sqlite_file

__all__ = [
    "SCOPES",
    "ApiKeyError",
    "CreatedKey",
    "KeyInfo",
    "KeyStore",
    "RateLimiter",
    "Scope",
    "allows",
    "check_scope",
    "parse_rate",
]

MAX_NAME = 200
metadata = sa.MetaData()
keys_table = sa.Table(
    "keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(MAX_NAME), nullable=False),
    sa.Column("prefix", sa.String(16), nullable=False, unique=True),
    sa.Column("secret_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("scope", sa.String(20), nullable=False),
    sa.Column("rate", sa.String(40)),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("revoked_at", sa.String(40)),
    sa.Column("last_used_at", sa.String(40)),
    sqlite_autoincrement=True,  # ids are never reused: the audit log refers to them
)
audit_table = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.String(40), nullable=False),
    sa.Column("key_id", sa.Integer),
    sa.Column("key_name", sa.String(MAX_NAME)),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("target", sa.Text, nullable=False, server_default=""),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sqlite_autoincrement=True,
)
# The token bucket of each rate-limited key when several workers (or hosts) share one limit
# (`serve/ratelimit_shared.py`). Stamps are wall-clock seconds: monotonic clocks differ per process.
buckets_table = sa.Table(
    "rate_buckets",
    metadata,
    sa.Column("key_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("rate", sa.String(40), nullable=False),
    sa.Column("tokens", sa.Double, nullable=False),
    sa.Column("stamp", sa.Double, nullable=False),
)
_LIVE = keys_table.c.revoked_at.is_(None)
# Partial indexes exist on SQLite and PostgreSQL only; elsewhere the in-transaction check stands alone.
_PARTIAL = ("sqlite", "postgresql")
live_names = sa.Index(
    "ux_keys_live_name", keys_table.c.name, unique=True, sqlite_where=_LIVE, postgresql_where=_LIVE
).ddl_if(dialect=_PARTIAL)  # type: ignore[arg-type]  # a tuple is documented
_INFO = [c for c in keys_table.c if c.name != "secret_sha256"]  # what a KeyInfo holds


def _info(row: sa.RowMapping) -> KeyInfo:
    return KeyInfo(**{c.name: row[c.name] for c in _INFO})


def _write_audit(conn: sa.Connection, action: str, key: KeyInfo | None, target: str, detail: str) -> None:
    conn.execute(
        audit_table.insert().values(
            ts=utc_now(),
            key_id=key.id if key else None,
            key_name=key.name if key else None,
            action=action,
            target=target,
            detail=detail,
        )
    )


class KeyStore:
    """API keys and their audit log; the tables (and a SQLite file's folder) are created if missing.

    Args:
        target: A SQLAlchemy URL (``postgresql+psycopg://host/db``) or the path of a SQLite file.
    """

    def __init__(self, target: str | Path) -> None:
        self.url = database_url(target)
        # What messages name: the file, or the URL without its password.
        self.location = str(sqlite_file(self.url) or _hidden(self.url))
        try:
            parsed = sa.make_url(self.url)
            self.engine = _engine(parsed)
            with self.engine.begin() as conn:
                metadata.create_all(conn)
                _upgrade(conn)
        except (sa.exc.SQLAlchemyError, OSError, ImportError) as exc:
            reason = getattr(exc, "orig", None) or exc
            raise ApiKeyError(f"{_hidden(self.url)}: cannot open the keys database ({reason})") from exc
        # Reads never take SQLite's write lock (see _sqlite_begin); writes go through self.engine.
        self._reader = self.engine.execution_options(lmforge_read_only=True)

    def close(self) -> None:
        """Close pooled connections (the database stays consistent either way)."""
        self.engine.dispose()

    def create(self, scope: Scope, name: str | None = None, rate: str | None = None) -> CreatedKey:
        """Create a key; the returned secret is not stored and cannot be recovered later."""
        scope = check_scope(scope)  # callers may pass unchecked text despite the type
        if rate is not None:
            parse_rate(rate)  # raises on a bad rate before anything is written
            rate = rate.strip()
        prefix, secret = new_secret()
        name = (name or "").strip() or f"{scope}-{prefix}"
        if len(name) > MAX_NAME:
            raise ApiKeyError(f"a key name has at most {MAX_NAME} characters, got {len(name)}")
        taken = ApiKeyError(
            f"a key named '{name}' already exists", hint="pick another name or revoke that key first"
        )
        k = keys_table
        with self.engine.begin() as conn:
            if conn.execute(sa.select(k.c.id).where(k.c.name == name, _LIVE)).first():
                raise taken
            values = {"name": name, "prefix": prefix, "secret_sha256": digest(secret), "scope": scope}
            try:
                result = conn.execute(k.insert().values(**values, rate=rate, created_at=utc_now()))
            except sa.exc.IntegrityError:  # another host created the same name since the check
                raise taken from None
            assert result.inserted_primary_key is not None
            query = sa.select(*_INFO).where(k.c.id == result.inserted_primary_key[0])
            info = _info(conn.execute(query).mappings().one())
            _write_audit(conn, "key.create", info, "", f"scope={scope} rate={rate or 'unlimited'}")
        return CreatedKey(info=info, secret=secret)

    def revoke(self, ref: str | int) -> KeyInfo:
        """Revoke a key named by id, prefix, name or its secret; the row stays for the audit trail."""
        ref = str(ref).strip()
        k = keys_table
        named = sa.or_(
            sa.cast(k.c.id, sa.String) == ref,
            k.c.prefix == ref,
            k.c.name == ref,
            k.c.secret_sha256 == digest(ref),
        )
        with self.engine.begin() as conn:
            rows = conn.execute(sa.select(*_INFO).where(named).order_by(k.c.id)).mappings().all()
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
            now = utc_now()
            # Conditional: of two hosts revoking at once, only one records the revocation.
            done = conn.execute(k.update().where(k.c.id == info.id, _LIVE).values(revoked_at=now))
            if info.revoked or done.rowcount != 1:
                raise ApiKeyError(f"key '{ref}' (id {info.id}) was already revoked at {info.revoked_at}")
            info = replace(info, revoked_at=now)
            conn.execute(buckets_table.delete().where(buckets_table.c.key_id == info.id))
            _write_audit(conn, "key.revoke", info, "", f"scope={info.scope}")
        return info

    def authenticate(self, secret: str) -> KeyInfo | None:
        """The live key whose secret this is, or None; records when it was last used.

        The database compares hashes, never the secret itself, so response times reveal
        nothing about how much of a guessed secret was right. A wrong secret costs one read
        and no write lock, so guessing cannot stall the writers.
        """
        if not secret.startswith(SECRET_PREFIX):  # cheap reject: no database round trip
            return None
        wanted = digest(secret)
        k = keys_table
        with self._reader.connect() as conn:
            query = sa.select(*_INFO, k.c.secret_sha256).where(k.c.secret_sha256 == wanted)
            row = conn.execute(query).mappings().first()
        if row is None or row["revoked_at"] is not None:
            return None
        if not hmac.compare_digest(row["secret_sha256"], wanted):  # belt and braces
            return None
        now = utc_now()
        with self.engine.begin() as conn:
            conn.execute(k.update().where(k.c.id == row["id"]).values(last_used_at=now))
        return replace(_info(row), last_used_at=now)

    def get(self, key_id: int) -> KeyInfo | None:
        """Key `key_id` as the database has it now (revoked ones included), or None.

        One primary-key read, no write: cheap enough for a per-request re-check of a key
        that was authenticated earlier (a UI session), and never stale.
        """
        with self._reader.connect() as conn:
            row = conn.execute(sa.select(*_INFO).where(keys_table.c.id == key_id)).mappings().first()
        return _info(row) if row is not None else None

    @staticmethod
    def allows(key: KeyInfo, needed: str) -> bool:
        """Same as the module-level :func:`allows`, here so the server needs only the store."""
        return allows(key, needed)

    def audit(self, action: str, key: KeyInfo | None, target: str = "", detail: str = "") -> None:
        """Record who did what (e.g. ``predict``, ``/predict``, ``200``); `key` None for anonymous."""
        with self.engine.begin() as conn:
            _write_audit(conn, action, key, target, detail)

    def audit_log(self, limit: int = 100) -> builtins.list[dict[str, Any]]:
        """The newest `limit` audit entries, newest first."""
        query = sa.select(audit_table).order_by(audit_table.c.id.desc()).limit(limit)
        with self._reader.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def list(self) -> builtins.list[KeyInfo]:
        """Every key, revoked ones included, oldest first; secrets and hashes are never returned."""
        with self._reader.connect() as conn:
            rows = conn.execute(sa.select(*_INFO).order_by(keys_table.c.id)).mappings().all()
        return [_info(row) for row in rows]


def _hidden(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "the keys database URL"


def _engine(url: sa.URL, timeout: float = 10.0) -> sa.Engine:
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    # timeout: threads and processes writing at once wait for the lock instead of failing.
    engine = sa.create_engine(url, connect_args={"timeout": timeout, "check_same_thread": False})
    sa.event.listen(engine, "connect", _sqlite_connect)
    sa.event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver must not open transactions itself: _sqlite_begin says how each one starts.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    # IMMEDIATE takes the write lock up front, so a check-then-write cannot interleave and a
    # reader turned writer never fails with "database is locked" mid-transaction.
    read_only = conn.get_execution_options().get("lmforge_read_only", False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _upgrade(conn: sa.Connection) -> None:
    """Bring a database written by an earlier lmforge up to date (a no-op on a current one)."""
    for table in (keys_table, audit_table, buckets_table):
        found = {c["name"] for c in sa.inspect(conn).get_columns(table.name)}
        missing = {c.name for c in table.c} - found
        if missing:
            raise ApiKeyError(
                f"table '{table.name}' lacks columns {sorted(missing)}: not an lmforge keys database",
                hint="point serve.keys_url (or --db) at another database",
            )
    if conn.dialect.name in _PARTIAL:
        live_names.create(conn, checkfirst=True)  # absent from keys.db files before this index
