"""API keys: the SQLite store, scopes, audit log, rate limiter and the `lmforge keys` CLI."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from lmforge.cli_keys import keys_app
from lmforge.config import load_config
from lmforge.errors import LmforgeError
from lmforge.serve.keys import KeyInfo, KeyStore, RateLimiter, allows, parse_rate
from lmforge.state_dir import StateDir

runner = CliRunner()
app = typer.Typer()
app.add_typer(keys_app, name="keys")


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys.db")


def _key(scope: str, revoked: bool = False) -> KeyInfo:
    return KeyInfo(
        1,
        "k",
        "abcd1234",
        scope,
        None,
        "2024-01-01T00:00:00+00:00",
        revoked_at="2024-01-02T00:00:00+00:00" if revoked else None,
    )


def test_create_authenticate_revoke(store: KeyStore) -> None:
    created = store.create("predict", name="ci", rate="10/m")
    info = created.info
    _, prefix, random_part = created.secret.split("_", 2)
    assert created.secret.startswith("lmf_") and prefix == info.prefix and len(prefix) == 8
    assert len(random_part) >= 32
    assert created.secret not in repr(created) and "sha256" not in repr(info)
    assert (info.name, info.scope, info.rate, info.last_used_at) == ("ci", "predict", "10/m", None)

    found = store.authenticate(created.secret)
    assert found is not None and found.id == info.id and found.last_used_at is not None
    assert store.list()[0].last_used_at == found.last_used_at
    for wrong in (created.secret + "x", created.secret[:-1], "", "Bearer " + created.secret):
        assert store.authenticate(wrong) is None

    revoked = store.revoke("ci")
    assert revoked.revoked and revoked.id == info.id
    assert store.authenticate(created.secret) is None
    assert store.list()[0].revoked_at == revoked.revoked_at


def test_default_name_and_unique_live_names(store: KeyStore) -> None:
    first = store.create("admin").info
    assert first.name == f"admin-{first.prefix}" and first.rate is None
    store.create("feedback", name="labeler")
    with pytest.raises(LmforgeError, match="'labeler' already exists"):
        store.create("predict", name="labeler")
    store.revoke("labeler")
    again = store.create("predict", name="labeler").info  # a revoked key's name is free again
    assert store.revoke("labeler").id == again.id  # and the live key is the one revoked


@pytest.mark.parametrize("how", ["id", "prefix", "name", "secret"])
def test_revoke_by_any_reference(store: KeyStore, how: str) -> None:
    created = store.create("predict", name="web")
    other = store.create("predict", name="batch")
    ref = {"id": str(created.info.id), "prefix": created.info.prefix, "name": "web", "secret": created.secret}
    assert store.revoke(ref[how]).id == created.info.id
    assert store.authenticate(other.secret) is not None


def test_revoke_unknown_or_twice(store: KeyStore) -> None:
    with pytest.raises(LmforgeError, match="no API key 'ghost'"):
        store.revoke("ghost")
    key = store.create("predict").info
    store.revoke(key.id)
    with pytest.raises(LmforgeError, match="already revoked"):
        store.revoke(key.id)


@pytest.mark.parametrize(
    ("scope", "needed", "expected"),
    [
        ("predict", "predict", True),
        ("predict", "feedback", False),
        ("predict", "admin", False),
        ("feedback", "predict", True),
        ("feedback", "feedback", True),
        ("feedback", "admin", False),
        ("admin", "predict", True),
        ("admin", "feedback", True),
        ("admin", "admin", True),
    ],
)
def test_scope_matrix(scope: str, needed: str, expected: bool) -> None:
    assert allows(_key(scope), needed) is expected
    assert KeyStore.allows(_key(scope), needed) is expected
    assert allows(_key(scope, revoked=True), needed) is False


def test_allows_rejects_unknown_route_scope() -> None:
    with pytest.raises(ValueError, match="unknown scope 'root'"):
        allows(_key("admin"), "root")


@pytest.mark.parametrize(
    ("rate", "count", "period"), [("50/s", 50, 1.0), ("600/m", 600, 60.0), ("10/h", 10, 3600.0)]
)
def test_parse_rate(rate: str, count: int, period: float) -> None:
    assert parse_rate(rate) == (count, period)


@pytest.mark.parametrize("rate", ["50", "50/d", "0/s", "-1/s", "fast", "50 per s", "1.5/s", "/s", "50/sec"])
def test_bad_rate_is_refused_by_name(store: KeyStore, rate: str) -> None:
    with pytest.raises(LmforgeError) as caught:
        store.create("predict", rate=rate)
    assert f"'{rate}'" in str(caught.value) and "50/s" in str(caught.value) and "10/h" in str(caught.value)
    assert store.list() == []


def test_bad_scope_is_refused_by_name(store: KeyStore) -> None:
    with pytest.raises(LmforgeError, match=r"scope 'root'.*predict, feedback, admin"):
        store.create("root")  # type: ignore[arg-type]  # what an unchecked caller might pass


def test_secret_never_written_in_plain_text(store: KeyStore, tmp_path: Path) -> None:
    created = [store.create(scope) for scope in ("predict", "feedback", "admin")]
    for key in created:
        found = store.authenticate(key.secret)
        store.audit("predict", found, target="/predict", detail="200")
    store.revoke(created[0].secret)
    # The database and any WAL/SHM side files: everything SQLite may have written.
    written = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    for key in created:
        assert key.secret.encode() not in written
        assert key.secret.split("_", 2)[2].encode() not in written
        assert key.info.prefix.encode() in written  # proves these are the bytes the store wrote
        assert hashlib.sha256(key.secret.encode()).hexdigest().encode() in written


def test_audit_log(store: KeyStore) -> None:
    created = store.create("predict", name="app")
    key = store.authenticate(created.secret)
    store.audit("predict", key, target="/predict", detail="200")
    store.audit("auth.fail", None, target="/predict", detail="401 unknown key")
    store.revoke("app")

    log = store.audit_log()
    assert [e["action"] for e in log] == ["key.revoke", "auth.fail", "predict", "key.create"]
    assert log[2]["key_id"] == created.info.id and log[2]["key_name"] == "app"
    assert (log[2]["target"], log[2]["detail"]) == ("/predict", "200")
    assert log[1]["key_id"] is None and log[1]["key_name"] is None
    assert "scope=predict" in log[3]["detail"] and log[3]["ts"]
    assert len(store.audit_log(limit=2)) == 2
    assert not any(created.secret in str(e) for e in log)


def test_rate_limiter_burst_refuse_refill(store: KeyStore) -> None:
    key = store.create("predict", rate="5/s").info
    other = store.create("predict", rate="5/s").info
    unlimited = store.create("predict").info
    limiter = RateLimiter()
    assert [limiter.check(key) for _ in range(5)] == [None] * 5
    wait = limiter.check(key)
    assert wait is not None and 0 < wait <= 0.2  # one token every 1/5 s
    assert limiter.check(other) is None  # buckets are per key
    assert all(limiter.check(unlimited) is None for _ in range(1000))
    time.sleep(wait + 0.05)
    assert limiter.check(key) is None


def test_rate_limiter_is_thread_safe(store: KeyStore) -> None:
    key = store.create("predict", rate="20/h").info  # refill is negligible during the test
    limiter = RateLimiter()
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


def test_concurrent_authentication(store: KeyStore) -> None:
    created = [store.create(scope) for scope in ("predict", "feedback", "admin")]
    results: list[tuple[int, int | None]] = []
    failures: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            for i in range(15):
                key = created[(offset + i) % 3]
                found = store.authenticate(key.secret)
                results.append((key.info.id, found.id if found else None))
        except BaseException as exc:  # surfaced below: a thread's exception is otherwise lost
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(results) == 90 and all(expected == got for expected, got in results)
    assert all(key.last_used_at for key in store.list())


def test_cli_create_list_revoke(tmp_path: Path) -> None:
    db = tmp_path / "state" / "keys.db"
    created = runner.invoke(
        app,
        ["keys", "create", "--scope", "feedback", "--name", "labeler", "--rate", "600/m", "--db", str(db)],
    )
    assert created.exit_code == 0, created.output
    assert "cannot be shown again" in created.output
    secret = next(word for word in created.output.split() if word.startswith("lmf_"))
    key = KeyStore(db).authenticate(secret)
    assert key is not None and (key.name, key.scope, key.rate) == ("labeler", "feedback", "600/m")

    listed = runner.invoke(app, ["keys", "list", "--db", str(db)])
    assert listed.exit_code == 0, listed.output
    for shown in ("labeler", key.prefix, "feedback", "600/m"):
        assert shown in listed.output
    assert secret not in listed.output

    revoked = runner.invoke(app, ["keys", "revoke", "labeler", "--db", str(db)])
    assert revoked.exit_code == 0, revoked.output
    assert "revoked key" in revoked.output and key.prefix in revoked.output
    assert KeyStore(db).authenticate(secret) is None


def test_cli_default_db_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["keys", "create", "--scope", "admin"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "lmforge-state" / "keys.db").is_file()
    assert "admin-" in runner.invoke(app, ["keys", "list"]).output


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["create", "--scope", "root"], "root"),
        (["create", "--scope", "predict", "--rate", "fast"], "fast"),
        (["revoke", "nosuchkey"], "nosuchkey"),
    ],
)
def test_cli_user_errors(tmp_path: Path, args: list[str], named: str) -> None:
    db = tmp_path / "keys.db"
    KeyStore(db).create("predict")
    result = runner.invoke(app, ["keys", *args, "--db", str(db)])
    assert result.exit_code == 1, result.output
    assert f"'{named}'" in result.output
    assert "Traceback" not in result.output and "internal error" not in result.output


def test_cli_missing_database(tmp_path: Path) -> None:
    db = tmp_path / "nowhere" / "keys.db"
    listed = runner.invoke(app, ["keys", "list", "--db", str(db)])
    assert listed.exit_code == 0 and "no keys database" in listed.output
    refused = runner.invoke(app, ["keys", "create", "--scope", "everything", "--db", str(db)])
    assert refused.exit_code == 1
    assert not db.parent.exists()  # neither listing nor a refused create leaves files behind
    revoked = runner.invoke(app, ["keys", "revoke", "1", "--db", str(db)])
    assert revoked.exit_code == 1 and "no keys database" in revoked.output


def _config(folder: Path, serve: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "lmforge.yaml"
    path.write_text(yaml.safe_dump({"data": {"train": "data.csv"}, "serve": serve}))
    return path


def _secret(output: str) -> str:
    return next(word for word in output.split() if word.startswith("lmf_"))


def test_cli_uses_the_configs_state_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: `lmforge keys` wrote ./lmforge-state/keys.db whatever `serve.state_dir` said,
    so the server started with that config refused every key made for it."""
    monkeypatch.chdir(tmp_path)
    config = _config(tmp_path / "project", {"state_dir": str(tmp_path / "served")})
    created = runner.invoke(app, ["keys", "create", "--scope", "predict", "--name", "web", "-c", str(config)])
    assert created.exit_code == 0, created.output
    server_keys = StateDir.of(load_config(config).serve).keys_url  # what `lmforge serve -c` opens
    assert KeyStore(server_keys).authenticate(_secret(created.output)) is not None
    assert not (tmp_path / "lmforge-state").exists()
    listed = runner.invoke(app, ["keys", "list", "--config", str(config)])
    assert listed.exit_code == 0 and "web" in listed.output, listed.output
    revoked = runner.invoke(app, ["keys", "revoke", "web", "--config", str(config)])
    assert revoked.exit_code == 0, revoked.output


def test_cli_reads_the_config_in_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _config(tmp_path, {"state_dir": "served"})
    assert runner.invoke(app, ["keys", "create", "--scope", "admin"]).exit_code == 0
    assert (tmp_path / "served" / "keys.db").is_file()
    assert not (tmp_path / "lmforge-state").exists()


def test_cli_honours_serve_keys_url_and_db_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    shared = tmp_path / "shared" / "keys.db"
    config = _config(tmp_path, {"state_dir": "served", "keys_url": f"sqlite:///{shared}"})
    assert runner.invoke(app, ["keys", "create", "--scope", "admin", "-c", str(config)]).exit_code == 0
    assert shared.is_file() and not (tmp_path / "served").exists()
    explicit = tmp_path / "explicit.db"
    created = runner.invoke(
        app, ["keys", "create", "--scope", "admin", "-c", str(config), "--db", str(explicit)]
    )
    assert created.exit_code == 0, created.output
    assert len(KeyStore(explicit).list()) == 1 and len(KeyStore(shared).list()) == 1
    via_url = runner.invoke(app, ["keys", "list", "--db", f"sqlite:///{explicit}"])
    assert via_url.exit_code == 0 and "admin-" in via_url.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["list", "--config", "missing.yaml"], "missing.yaml"),
        (["create", "--scope", "admin", "--config", "bad.yaml"], "serve.nope"),
        (
            ["create", "--scope", "admin", "--db", "nosuchdialect://host/keys"],
            "cannot open the keys database",
        ),
    ],
)
def test_cli_bad_config_or_database_is_a_user_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], says: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"data": {"train": "x.csv"}, "serve": {"nope": 1}}))
    result = runner.invoke(app, ["keys", *args])
    assert result.exit_code == 1, result.output
    assert says in result.output and "Traceback" not in result.output
    assert not (tmp_path / "lmforge-state").exists()
