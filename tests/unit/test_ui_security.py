"""The UI's sessions and CSRF defence under attack: a revoked or re-scoped key ends its
session at the next request, idle and old sessions end, a forged or cross-site request changes
nothing, and cookies are Secure over https. The standing tests walk every state-changing route
and every form, so a route or form added later cannot skip the checks."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from fastapi.testclient import TestClient

from lmforge import registry
from lmforge.serve.keys import KeyStore, keys_table
from lmforge.ui import csrf
from lmforge.ui.app import create_ui_app, project_for
from lmforge.ui.session import BACKGROUND, COOKIE
from tests.ui_support import log_in, logged_in, page_token, ui_project

NAME = "test-project"
EVIL = "https://evil.example"
TEMPLATES = Path(csrf.__file__).parent / "templates"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict[str, Any]:
    """Two registered versions (2 is champion), one key per scope."""
    project = ui_project(tmp_path_factory.mktemp("ui-sec"), tiny_model)
    return {**project, "store": KeyStore(project["folder"] / "state" / "keys.db")}


def _app(project: dict[str, Any], *, auth: bool = True, **ui: Any) -> Any:
    """The UI of the project, with `ui:` settings written into a config file next to its own."""
    path = project["path"]
    if ui:
        path = project["folder"] / f"settings-{len(list(project['folder'].glob('settings-*.yaml')))}.yaml"
        path.write_text(yaml.safe_dump({**project["config"], "ui": ui}))
    return create_ui_app(project_for(path), auth=auth)


def _champion(project: dict[str, Any]) -> str:
    client = registry.client_for(registry.tracking_uri(project_for(project["path"]).config))
    return str(client.get_model_version_by_alias(NAME, "champion").version)


def _other(project: dict[str, Any]) -> str:
    """The version that is not champion: what a forged promote would try to make champion."""
    return "1" if _champion(project) == "2" else "2"


def _fresh_key(project: dict[str, Any], scope: str = "admin") -> tuple[str, int]:
    created = project["store"].create(scope)  # type: ignore[arg-type]
    return created.secret, created.info.id


def _is_login_redirect(response: Any) -> bool:
    return response.status_code == 303 and response.headers["location"].startswith("/login")


def test_a_revoked_key_is_logged_out_at_its_next_request(project: dict[str, Any]) -> None:
    secret, key_id = _fresh_key(project)
    client = logged_in(_app(project), secret)
    cookie = client.cookies[COOKIE]
    assert client.get("/models", follow_redirects=False).status_code == 200
    project["store"].revoke(key_id)  # what `lmforge keys revoke` does, in this same process

    before, target = _champion(project), _other(project)
    promote = client.post(f"/models/{NAME}/versions/{target}/promote", follow_redirects=False)
    assert _is_login_redirect(promote) and _champion(project) == before
    # The session is gone on the server, not only from this browser: the old cookie is dead.
    assert f"{COOKIE}=" in promote.headers.get("set-cookie", "")  # the browser is told to forget it
    client.cookies.set(COOKIE, cookie)
    assert _is_login_redirect(client.get("/runs", follow_redirects=False))
    ended = [e for e in project["store"].audit_log() if e["action"] == "ui.session.ended"]
    assert ended and ended[0]["key_id"] == key_id and "revoked" in ended[0]["detail"]


def test_a_key_whose_scope_was_lowered_cannot_act(project: dict[str, Any]) -> None:
    secret, key_id = _fresh_key(project)
    client = logged_in(_app(project), secret)
    assert "Promote" in client.get("/models").text
    # An operator lowers the key's scope in the (possibly shared) keys database.
    with project["store"].engine.begin() as conn:
        conn.execute(sa.update(keys_table).where(keys_table.c.id == key_id).values(scope="predict"))

    before, target = _champion(project), _other(project)
    refused = client.post(f"/models/{NAME}/versions/{target}/promote", follow_redirects=False)
    assert _is_login_redirect(refused) and _champion(project) == before
    again = logged_in(_app(project), secret)  # logging in again gives the new, lower scope
    refused = again.post(f"/models/{NAME}/versions/{target}/promote")
    assert refused.status_code == 403 and "needs a key with scope &#39;admin&#39;" in refused.text
    assert _champion(project) == before


def test_a_session_ends_after_idle_minutes_and_after_session_hours(project: dict[str, Any]) -> None:
    app = _app(project, idle_minutes=5, session_hours=1)
    now = [1000.0]
    app.state.sessions.clock = lambda: now[0]
    client = logged_in(app, project["keys"]["predict"])
    for _ in range(14):  # active every 4 minutes: idle never reaches 5, 56 minutes in all
        now[0] += 4 * 60
        assert client.get("/runs", follow_redirects=False).status_code == 200
    now[0] += 4 * 60 + 1  # 60 minutes and a second after the login
    assert _is_login_redirect(client.get("/runs", follow_redirects=False))

    client = logged_in(app, project["keys"]["predict"])
    now[0] += 5 * 60 + 1
    assert _is_login_redirect(client.get("/runs", follow_redirects=False))


def test_a_pages_polling_does_not_keep_an_idle_session_alive(project: dict[str, Any]) -> None:
    app = _app(project)
    now = [0.0]
    app.state.sessions.clock = lambda: now[0]
    client = logged_in(app, project["keys"]["predict"])
    progress = f"/runs/{project['runs'][0].run_id}/progress.json"
    for _ in range(5):  # a run page left open polls its progress: 25 minutes of polls, all answered
        now[0] += 5 * 60
        poll = client.get(progress, headers={BACKGROUND: "1"}, follow_redirects=False)
        assert poll.status_code == 200
    now[0] += 6 * 60  # 31 minutes after the user last did something (6 after the last poll)
    assert _is_login_redirect(client.get("/runs", follow_redirects=False))


def test_idle_minutes_defaults_to_thirty(project: dict[str, Any]) -> None:
    app = _app(project)
    now = [0.0]
    app.state.sessions.clock = lambda: now[0]
    client = logged_in(app, project["keys"]["predict"])
    now[0] += 29 * 60
    assert client.get("/runs", follow_redirects=False).status_code == 200
    now[0] += 30 * 60 + 1
    assert _is_login_redirect(client.get("/runs", follow_redirects=False))


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": EVIL},
        {"Origin": "null"},
        {"Origin": "https://testserver"},  # same host, another scheme: another origin
        {"Referer": f"{EVIL}/page"},
    ],
    ids=["origin", "null-origin", "scheme", "referer"],
)
def test_a_cross_origin_post_with_a_valid_cookie_and_token_is_refused(
    project: dict[str, Any], headers: dict[str, str]
) -> None:
    client = logged_in(_app(project), project["keys"]["admin"])  # sends the right token too
    before, target = _champion(project), _other(project)
    response = client.post(f"/models/{NAME}/versions/{target}/promote", headers=headers)
    assert response.status_code == 403 and "not from this site" in response.text
    assert _champion(project) == before
    last = project["store"].audit_log(limit=1)[0]  # the attempt is on record for the admins
    assert last["action"] == "ui.csrf.refused" and last["target"].endswith("/promote")


@pytest.mark.parametrize("token", [None, "", "wrong", "other-session"])
def test_a_post_without_the_sessions_csrf_token_is_refused(
    project: dict[str, Any], token: str | None
) -> None:
    app = _app(project)
    client = logged_in(app, project["keys"]["admin"])
    del client.headers[csrf.HEADER]
    if token == "other-session":  # a token is only good for its own session
        token = logged_in(app, project["keys"]["admin"]).headers[csrf.HEADER]
    form = {} if token is None else {"csrf_token": token}
    before, target = _champion(project), _other(project)
    response = client.post(f"/models/{NAME}/versions/{target}/promote", data=form)
    assert response.status_code == 403 and "reload the page" in response.text
    assert _champion(project) == before


def test_the_token_a_page_embeds_lets_its_form_post_from_this_site(project: dict[str, Any]) -> None:
    client = logged_in(_app(project), project["keys"]["admin"])
    del client.headers[csrf.HEADER]  # a plain form post: the token travels as a form field
    target = _other(project)
    token = page_token(client.get("/models").text)
    response = client.post(
        f"/models/{NAME}/versions/{target}/promote",
        data={"csrf_token": token},
        headers={"Origin": "http://testserver"},
    )
    assert f"version {target} is the champion" in response.text and _champion(project) == target


def test_login_needs_the_login_pages_token(project: dict[str, Any]) -> None:
    client = TestClient(_app(project))
    key = project["keys"]["admin"]
    assert client.post("/login", data={"key": key}).status_code == 403  # a form posted from elsewhere
    page_token(client.get("/login").text)  # sets the login cookie: still no token in the form
    assert client.post("/login", data={"key": key, "csrf_token": "guess"}).status_code == 403
    assert log_in(client, key).status_code == 303
    assert client.get("/runs").status_code == 200


@pytest.mark.parametrize(
    ("base", "ui", "headers", "secure"),
    [
        ("https://testserver", {}, {}, True),
        ("http://testserver", {}, {}, False),
        ("http://testserver", {"trusted_proxies": ["testclient"]}, {"X-Forwarded-Proto": "https"}, True),
        ("http://testserver", {"trusted_proxies": ["*"]}, {"X-Forwarded-Proto": "https"}, True),
        ("http://testserver", {}, {"X-Forwarded-Proto": "https"}, False),  # an untrusted peer says so
        ("http://testserver", {"secure_cookies": "always"}, {}, True),
        ("https://testserver", {"secure_cookies": "never"}, {}, False),
    ],
    ids=["tls", "plain", "trusted-proxy", "any-proxy", "untrusted-proxy", "always", "never"],
)
def test_cookies_are_secure_over_https(
    project: dict[str, Any], base: str, ui: dict[str, Any], headers: dict[str, str], secure: bool
) -> None:
    client = TestClient(_app(project, **ui), base_url=base, headers=headers)
    login_page = client.get("/login")
    login_cookie = login_page.headers["set-cookie"]
    assert ("; secure" in login_cookie.lower()) is secure
    # The test client talks plain http to the "proxy" and so would not send a Secure cookie
    # back; a browser (speaking https to the proxy) would: send it by hand.
    form = {"key": project["keys"]["predict"], "csrf_token": page_token(login_page.text)}
    cookie = {"Cookie": login_cookie.split(";")[0]}
    response = client.post("/login", data=form, headers=cookie, follow_redirects=False)
    assert response.status_code == 303
    session_cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(f"{COOKIE}="))
    assert ("; secure" in session_cookie.lower()) is secure


def test_a_trusted_proxys_https_origin_is_this_sites_own(project: dict[str, Any]) -> None:
    """Behind a TLS proxy the browser's Origin is https while the server sees http."""
    proxied = {"X-Forwarded-Proto": "https", "Origin": "https://testserver"}
    trusted = logged_in(_app(project, trusted_proxies=["testclient"]), project["keys"]["predict"])
    assert trusted.post("/logout", headers=proxied, follow_redirects=False).status_code == 303
    untrusted = logged_in(_app(project), project["keys"]["predict"])
    assert untrusted.post("/logout", headers=proxied, follow_redirects=False).status_code == 403


def _state_changing_routes(routes: list[Any], prefix: str = "") -> list[tuple[str, str]]:
    """(method, path) of every route that accepts POST, PUT, PATCH or DELETE: plain Starlette
    routes too (they would bypass the app's dependencies), and routes of included routers
    (which newer FastAPI keeps inside the router rather than copying into `app.routes`)."""
    found = []
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            context = getattr(route, "include_context", None)
            found += _state_changing_routes(included.routes, prefix + getattr(context, "prefix", ""))
        for method in sorted((getattr(route, "methods", None) or set()) & csrf.UNSAFE):
            found.append((method, prefix + route.path))
    return found


def _fill(path: str) -> str:
    values = {"name": NAME, "version": "1"}
    return re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: values.get(m.group(1), "x"), path)


@pytest.mark.parametrize("auth", [True, False], ids=["keys", "no-auth"])
def test_every_state_changing_route_refuses_forged_requests(project: dict[str, Any], auth: bool) -> None:
    """Standing test: any route that changes state must refuse a request that lacks the
    session's token or comes from another origin, with the session cookie in place."""
    app = _app(project, auth=auth)
    routes = _state_changing_routes(app.routes)
    assert ("POST", "/models/{name}/versions/{version}/promote") in routes and len(routes) >= 10
    before = _champion(project)
    if auth:
        client = logged_in(app, project["keys"]["admin"])
        token = client.headers.pop(csrf.HEADER)
    else:  # the local admin's pages carry a token too
        client = TestClient(app, base_url="http://127.0.0.1:8080")
        token = page_token(client.get("/models").text)
    for method, path in routes:
        url = _fill(path)
        if path == csrf.LOGIN_PATH:
            client.get("/login")  # the login cookie is there; only the form's token is missing
        missing = client.request(method, url, data={"key": project["keys"]["admin"]})
        assert missing.status_code == 403, (method, path, missing.status_code)
        assert "reload" in missing.text, (method, path, missing.text)
        for header in ("Origin", "Referer"):
            foreign = client.request(method, url, headers={csrf.HEADER: token, header: f"{EVIL}/x"})
            assert foreign.status_code == 403, (method, path, header, foreign.status_code)
            assert "not from this site" in foreign.text, (method, path, header)
    assert _champion(project) == before


def test_no_auth_answers_only_under_a_loopback_name(project: dict[str, Any]) -> None:
    """--no-auth: a page reached through another name (DNS rebinding) is refused, reads too."""
    app = _app(project, auth=False)
    assert TestClient(app, base_url="http://127.0.0.1:8080").get("/runs").status_code == 200
    assert TestClient(app, base_url="http://localhost:8080").get("/runs").status_code == 200
    assert TestClient(app, base_url="http://evil.example:8080").get("/runs").status_code == 403


def test_every_post_form_in_the_templates_carries_the_token() -> None:
    """Standing test: a form a browser posts without the token would simply be refused."""
    forms = []
    for template in sorted(TEMPLATES.glob("*.j2")):
        text = template.read_text(encoding="utf-8")
        for match in re.finditer(r"<form\b[^>]*>", text):
            if 'method="post"' not in match.group(0).lower():
                continue
            body = text[match.end() : text.index("</form>", match.end())]
            forms.append((template.name, 'name="csrf_token"' in body))
    assert len(forms) >= 9
    assert [name for name, ok in forms if not ok] == []


def test_the_key_store_reads_a_key_by_id_as_it_is_now(tmp_path: Path) -> None:
    """What the per-request re-check relies on: no cached copy of a key, revoked ones included."""
    store = KeyStore(tmp_path / "keys.db")
    key = store.create("admin", name="ops").info
    assert store.get(key.id) == key
    store.revoke(key.id)
    revoked = store.get(key.id)
    assert revoked is not None and revoked.revoked and revoked.scope == "admin"
    assert store.get(key.id + 1000) is None
