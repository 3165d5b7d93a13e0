"""The key store on SQLAlchemy: databases written by the raw-sqlite3 store of lmforge <= 0.x
keep working, one database shared by several stores (hosts) keeps the rules, bad targets
are user errors."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from lmforge.errors import LmforgeError
from lmforge.serve.keys import KeyStore
from lmforge.state_dir import database_url

# `sqlite3.iterdump()` of a keys.db written by the previous KeyStore (raw sqlite3), made with
# fixed secrets: create web (predict, 10/m), ops (admin), gone (feedback); authenticate ops;
# revoke gone; audit a reload.
LEGACY_SECRETS = {
    "web": "lmf_0a1b2c3d_predict-secret-pppppppppppppppppppppppppppp",
    "ops": "lmf_4e5f6a7b_admin-secret-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "gone": "lmf_8c9d0e1f_gone-secret-ggggggggggggggggggggggggggggggg",
}
LEGACY_DUMP = """
BEGIN TRANSACTION;
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,
    key_id INTEGER,
    key_name TEXT,
    action TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT ''
);
INSERT INTO "audit" VALUES(1,'2026-11-29T10:58:44+00:00',1,'web','key.create','','scope=predict rate=10/m');
INSERT INTO "audit" VALUES(2,'2026-11-29T10:58:44+00:00',2,'ops','key.create','','scope=admin rate=unlimited');
INSERT INTO "audit" VALUES(3,'2026-11-29T10:58:44+00:00',3,'gone','key.create','','scope=feedback rate=unlimited');
INSERT INTO "audit" VALUES(4,'2026-11-29T10:58:44+00:00',3,'gone','key.revoke','','scope=feedback');
INSERT INTO "audit" VALUES(5,'2026-11-29T10:58:44+00:00',2,'ops','reload','test@champion','swapped=False');
CREATE TABLE keys (
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
INSERT INTO "keys" VALUES(1,'web','0a1b2c3d','4baf152f5d176f907f6bb8bf055f77a2cdc97c6ddac525e914df3cf19e1bed88','predict','10/m','2026-11-29T10:58:44+00:00',NULL,NULL);
INSERT INTO "keys" VALUES(2,'ops','4e5f6a7b','04048c375e280f4064deaba1c9e29093cf395f437e2a72413088de41be878a34','admin',NULL,'2026-11-29T10:58:44+00:00',NULL,'2026-11-29T10:58:44+00:00');
INSERT INTO "keys" VALUES(3,'gone','8c9d0e1f','23b7bf6f4c415d539ca8002ea2d3bdaa015660d7788466a6a0a3f4eadd4c4ca3','feedback',NULL,'2026-11-29T10:58:44+00:00','2026-11-29T10:58:44+00:00',NULL);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('keys',3);
INSERT INTO "sqlite_sequence" VALUES('audit',5);
COMMIT;
"""  # noqa: E501


@pytest.fixture
def legacy_db(tmp_path: Path) -> Path:
    path = tmp_path / "state" / "keys.db"
    path.parent.mkdir()
    with sqlite3.connect(path) as db:
        db.executescript(LEGACY_DUMP)
        db.execute("PRAGMA journal_mode=WAL")
    return path


def _indexes(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}


def test_a_database_written_by_the_old_store_keeps_working(legacy_db: Path) -> None:
    assert "ux_keys_live_name" not in _indexes(legacy_db)
    store = KeyStore(legacy_db)
    assert "ux_keys_live_name" in _indexes(legacy_db)  # the one migration, run on open

    listed = {k.name: k for k in store.list()}
    assert [(k.id, k.scope, k.rate, k.revoked) for k in listed.values()] == [
        (1, "predict", "10/m", False),
        (2, "admin", None, False),
        (3, "feedback", None, True),
    ]
    web = store.authenticate(LEGACY_SECRETS["web"])
    assert web is not None and (web.id, web.name, web.rate) == (1, "web", "10/m")
    assert store.authenticate(LEGACY_SECRETS["gone"]) is None  # revoked stays revoked

    assert [e["action"] for e in store.audit_log()][-5:] == [
        "reload",
        "key.revoke",
        "key.create",
        "key.create",
        "key.create",
    ]
    with pytest.raises(LmforgeError, match="'web' already exists"):
        store.create("predict", name="web")
    again = store.create("feedback", name="gone")  # a revoked key's name is free
    assert again.info.id == 4  # ids continue after the old ones, never reused
    assert store.revoke("ops").id == 2
    assert store.authenticate(LEGACY_SECRETS["ops"]) is None


def test_the_old_store_code_can_still_read_a_migrated_database(legacy_db: Path) -> None:
    """A host not yet upgraded shares the file: the layout it reads must be unchanged."""
    KeyStore(legacy_db).create("predict", name="new")
    with sqlite3.connect(legacy_db) as db:
        db.row_factory = sqlite3.Row
        columns = "id, name, prefix, scope, rate, created_at, revoked_at, last_used_at"
        rows = db.execute(f"SELECT {columns} FROM keys ORDER BY id").fetchall()
    assert [r["name"] for r in rows] == ["web", "ops", "gone", "new"]


def test_a_database_of_another_layout_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE keys (id INTEGER PRIMARY KEY, token TEXT)")
    with pytest.raises(LmforgeError, match=r"table 'keys' lacks columns .*not an lmforge keys database"):
        KeyStore(path)


@pytest.mark.parametrize(
    "target",
    [
        "not-a-scheme://x",  # no such SQLAlchemy dialect
        "sqlite:////proc/no/such/folder/keys.db",  # a folder that cannot be made
    ],
)
def test_unusable_targets_are_user_errors(target: str) -> None:
    with pytest.raises(LmforgeError, match="cannot open the keys database"):
        KeyStore(target)


def test_a_file_that_is_not_a_database_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LmforgeError, match="cannot open the keys database"):
        KeyStore(path)


def test_a_password_in_the_url_never_reaches_the_message() -> None:
    with pytest.raises(LmforgeError) as caught:
        KeyStore("nosuchdialect://user:hunter2@db.example/keys")
    assert "hunter2" not in str(caught.value)


def test_urls_and_paths_name_the_same_database(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    created = KeyStore(path).create("admin", name="root")
    via_url = KeyStore(database_url(path))
    assert via_url.url == f"sqlite:///{path}" and via_url.location == str(path)
    assert via_url.authenticate(created.secret) is not None
    assert KeyStore(str(path)).list()[0].name == "root"  # a plain string is a path too


def test_two_hosts_sharing_one_database_see_each_others_changes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    host_a, host_b = KeyStore(url), KeyStore(url)
    created = host_a.create("predict", name="client")
    assert host_b.authenticate(created.secret) is not None
    host_b.revoke("client")
    assert host_a.authenticate(created.secret) is None  # seen at the very next lookup
    with pytest.raises(LmforgeError, match="already revoked"):
        host_a.revoke("client")
    assert [e["action"] for e in host_a.audit_log()] == ["key.revoke", "key.create"]


def test_concurrent_creates_of_one_name_leave_one_live_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    stores = [KeyStore(url) for _ in range(4)]
    outcomes: list[str] = []
    start = threading.Barrier(len(stores) * 2)

    def worker(store: KeyStore) -> None:
        start.wait()
        try:
            store.create("predict", name="same")
            outcomes.append("created")
        except LmforgeError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("created") == 1, outcomes
    assert all("already exists" in o for o in outcomes if o != "created")
    assert [k.name for k in stores[0].list()] == ["same"]


def test_the_database_refuses_a_second_live_name_even_past_the_check(tmp_path: Path) -> None:
    """The unique index holds where the in-transaction check cannot (another host's insert)."""
    path = tmp_path / "keys.db"
    KeyStore(path).create("predict", name="dup")
    with sqlite3.connect(path) as db, pytest.raises(sqlite3.IntegrityError):
        db.execute(
            "INSERT INTO keys (name, prefix, secret_sha256, scope, created_at) "
            "VALUES ('dup', 'ffffffff', 'x', 'predict', 'now')"
        )


@pytest.mark.parametrize("name", ["x" * 201, "   "])
def test_hostile_names(tmp_path: Path, name: str) -> None:
    store = KeyStore(tmp_path / "keys.db")
    if name.strip():
        with pytest.raises(LmforgeError, match="at most 200 characters"):
            store.create("predict", name=name)
        assert store.list() == []
    else:  # blank: the default name, as before
        assert store.create("predict", name=name).info.name.startswith("predict-")
