"""The standing hostile-request suite (issue 21) against the real app serving a tiny classifier.

What no request may do, however it is built: get a 5xx, or change what a good request sent at
the same time gets (every good request answers 200 with the answer it gets alone). Hand cases
(lone surrogates, NULs, huge and chunked bodies, duplicate credentials, malformed JSON, wrong
types) pin the known faults; hypothesis draws new members of each class: arbitrary text with
surrogates and controls, raw bytes, arbitrary JSON, sent concurrently with good requests.
The OpenAPI-driven fuzzing of every route is `test_serve_app.py`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmforge.config import ServeConfig, load_config
from lmforge.pipeline.runner import run_pipeline
from lmforge.serve.app import create_app, docs_public
from lmforge.serve.keys import KeyStore
from tests.conftest import fast_config, make_rows, write_csv

NAME = "test-project"
CLASSIFY = "/v1/classify"
MAX_BODY = 64 * 1024  # small, so the body tests stay fast
MAX_TEXTS = 8
# Texts the tiny model was trained on the topics of: it labels them with confidence.
GOOD = [text for text, _ in make_rows(per_class=3, seed=5)]
# A good answer sent with others may differ from the same text alone by the int8 graph's
# per-batch activation scaling (export/onnx.py): measured below 0.002; 0.01 leaves room.
TOLERANCE = 0.01
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))


@dataclass
class Served:
    client: TestClient
    keys: dict[str, str]
    uri: str
    state: Path
    alone: dict[str, dict[str, Any]]  # each GOOD text's prediction, sent alone

    def headers(self, key: str | None = "predict") -> dict[str, str]:
        return (
            {"Authorization": f"Bearer {self.keys[key]}", "Content-Type": "application/json"} if key else {}
        )

    def post(self, path: str, body: Any, key: str | None = "predict") -> httpx.Response:
        return self.client.post(path, content=_json(body), headers=self.headers(key))


def _json(body: Any) -> bytes:
    """JSON as a client library may send it: ASCII, so a lone surrogate travels as ``\\ud800``
    (valid JSON; httpx's own encoder would refuse to encode it)."""
    return body if isinstance(body, bytes) else json.dumps(body).encode()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("hostile")
    config = fast_config(folder, write_csv(folder / "data.csv", make_rows()), tiny_model)
    run_pipeline(load_config(data=config))
    state = folder / "state"
    store = KeyStore(state / "keys.db")
    keys = {scope: store.create(scope, name=scope).secret for scope in ("predict", "feedback", "admin")}
    cfg = ServeConfig(
        state_dir=str(state),
        reload_seconds=0,
        max_texts=MAX_TEXTS,
        max_chars=200,
        max_wait_ms=50,  # concurrent requests surely share micro-batches
        max_body_bytes=MAX_BODY,
    )
    app = create_app(f"{NAME}@champion", config["tracking"]["uri"], cfg)
    with TestClient(app, raise_server_exceptions=False) as client:
        served = Served(client, keys, config["tracking"]["uri"], state, {})
        for text in GOOD:
            reply = served.post(CLASSIFY, {"texts": [text]})
            assert reply.status_code == 200, reply.text
            served.alone[text] = reply.json()["predictions"][0]
        yield served


def _assert_same_as_alone(served: Served, texts: list[str], response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    for text, got in zip(texts, response.json()["predictions"], strict=True):
        alone = served.alone[text]
        assert got["label"] == alone["label"], text
        for label, p in alone["probabilities"].items():
            assert abs(got["probabilities"][label] - p) <= TOLERANCE, (text, label)


def _assert_answered(response: httpx.Response) -> None:
    """No 5xx, and an error body a client can parse."""
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert isinstance(response.json()["detail"], str | list)


async def _together(app: Any, requests: list[tuple[str, bytes, dict[str, str]]]) -> list[httpx.Response]:
    """Send all `requests` at once on the app's own event loop (run through the TestClient's
    portal), as concurrent clients would."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
        return list(
            await asyncio.gather(*(client.post(path, content=body, headers=h) for path, body, h in requests))
        )


def _on_app_loop(served: Served, fn: Any, *args: Any) -> Any:
    """Run coroutine function `fn(app, *args)` on the loop the app was started on."""
    portal = served.client.portal
    assert portal is not None  # the module fixture entered the client
    return portal.call(fn, served.client.app, *args)


def _mixed(served: Served, bad: list[bytes], rounds: int = 1, refused: bool = True) -> None:
    """Good requests and `bad` bodies together, the bad ones spread among the good ones: each
    good one gets its lone answer; each bad one no 5xx (a 4xx when `refused`)."""
    good = [GOOD[i : i + 2] for i in range(0, len(GOOD), 2)] * rounds
    requests = [(CLASSIFY, _json({"texts": texts}), served.headers()) for texts in good]
    requests += [(CLASSIFY, body, served.headers()) for body in bad]
    order = list(range(len(requests)))
    random.Random(len(requests)).shuffle(order)
    responses = _on_app_loop(served, _together, [requests[i] for i in order])
    by_index = dict(zip(order, responses, strict=True))
    for i, texts in enumerate(good):
        _assert_same_as_alone(served, texts, by_index[i])
    for j in range(len(good), len(requests)):
        _assert_answered(by_index[j])
        assert not refused or 400 <= by_index[j].status_code < 500, by_index[j].text


# --- hand cases ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    body: Any
    status: int
    loc: list[Any] | None = None  # where the 422 points
    path: str = CLASSIFY
    key: str | None = "predict"


CASES = {
    "lone-high-surrogate": Case({"texts": ["refund my bill", "a\ud800b"]}, 422, ["body", "texts", 1]),
    "lone-low-surrogate": Case({"texts": ["\udc00"]}, 422, ["body", "texts", 0]),
    "nul": Case({"texts": ["ok", "ok", "nul\x00here"]}, 422, ["body", "texts", 2]),
    "escaped-pair-is-a-real-character": Case(b'{"texts": ["\\ud83d\\ude00 refund"]}', 200),
    "controls-and-bidi-are-text": Case({"texts": ["\x01\x1b[31m\u202eparcel\ufeff"]}, 200),
    "surrogate-in-an-unknown-field-name": Case({"texts": ["a"], "\ud800": 1}, 422, ["body"]),
    "surrogate-in-a-wrong-type": Case({"texts": "\ud800"}, 422, ["body", "texts"]),
    "infinite-number": Case(
        b'{"text": "t", "rating": 1e400}', 422, ["body", "rating"], "/v1/feedback", "feedback"
    ),
    "nan": Case(b'{"text": "t", "rating": NaN}', 422, ["body", "rating"], "/v1/feedback", "feedback"),
    "feedback-surrogate-label": Case(
        {"text": "t", "label": "\ud800"}, 422, ["body", "label"], "/v1/feedback", "feedback"
    ),
    "feedback-nul-text": Case(
        {"text": "\x00", "rating": 1}, 422, ["body", "text"], "/v1/feedback", "feedback"
    ),
    "chat-surrogate-on-a-classifier": Case(
        {"messages": [{"role": "user", "content": "\ud800"}]},
        422,
        ["body", "messages", 0, "content"],
        "/v1/chat/completions",
    ),
    "revoke-surrogate": Case({"key": "\ud800"}, 422, ["body", "key"], "/v1/admin/keys/revoke", "admin"),
    "malformed-json": Case(b'{"texts": [', 422),
    "invalid-utf8": Case(b'{"texts": ["\xff\xfe"]}', 400),
    "deeply-nested": Case(b"[" * 20_000 + b"]" * 20_000, 400),
    "empty-body": Case(b"", 422),
    "numbers-for-texts": Case({"texts": [1, 2]}, 422, ["body", "texts", 0]),
    "null-texts": Case({"texts": None}, 422),
    "nested-texts": Case({"texts": [["a"]]}, 422),
    "a-list-body": Case(["a"], 422),
    "a-string-body": Case("texts", 422),
    "too-many-texts": Case({"texts": ["a"] * (MAX_TEXTS + 1)}, 413),
    "text-too-long": Case({"texts": ["a" * 201]}, 413),
    "body-over-the-cap": Case({"texts": ["a" * (MAX_BODY + 1)]}, 413),
    "no-key-and-a-body-over-the-cap": Case({"texts": ["a" * (MAX_BODY + 1)]}, 401, key=None),
}


@pytest.mark.parametrize("name", CASES)
def test_hand_cases(served: Served, name: str) -> None:
    case = CASES[name]
    response = served.post(case.path, case.body, key=case.key)
    assert response.status_code == case.status, response.text
    if case.status >= 400:
        detail = response.json()["detail"]  # ASCII JSON: any echo of the input still encodes
        assert response.content.isascii()
        if case.loc is not None:
            assert detail[0]["loc"] == case.loc
            assert all("input" not in error for error in detail)  # the 422 does not echo the input


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([("authorization", "Bearer {predict}"), ("authorization", "Bearer lmf_wrong")], 400),
        ([("authorization", "Bearer lmf_wrong"), ("authorization", "Bearer {predict}")], 400),
        ([("authorization", "Bearer {predict}"), ("authorization", "Bearer {predict}")], 400),
        ([("authorization", "Bearer {predict}, Bearer {admin}")], 401),
        ([("authorization", "Basic {predict}")], 401),
        ([("authorization", "Bearer \xff\xfe\x00")], 401),
        ([("authorization", "Bearer " + "a" * 8000)], 401),
        ([("authorization", "bearer   {predict}  ")], 200),
    ],
    ids=["good-then-bad", "bad-then-good", "twice-the-same", "two-in-one", "basic", "binary", "long", "case"],
)
def test_credentials(served: Served, headers: list[tuple[str, str]], status: int) -> None:
    raw = [(n.encode(), v.format(**served.keys).encode("latin-1")) for n, v in headers]
    raw.append((b"content-type", b"application/json"))
    response = served.client.post(CLASSIFY, content=_json({"texts": ["x"]}), headers=raw)
    assert response.status_code == status, response.text


def test_two_authorization_headers_are_refused_even_on_public_routes(served: Served) -> None:
    headers = [(b"authorization", f"Bearer {served.keys['admin']}".encode())] * 2
    assert served.client.get("/healthz", headers=headers).status_code == 400
    assert served.client.get("/healthz").status_code == 200


def test_unknown_paths_need_a_key_first(served: Served) -> None:
    assert served.client.get("/v1/nothing-here").status_code == 401
    assert served.client.get("/v1/nothing-here", headers=served.headers()).status_code == 404


# --- bodies: the key first, then the size, before anything is parsed ------------------------


async def _raw_post(app: Any, headers: list[tuple[bytes, bytes]], chunks: Iterable[bytes]) -> tuple[int, int]:
    """POST /v1/classify straight through ASGI with a body the client streams in `chunks`;
    the status, and how many body bytes the server pulled before answering."""
    pulled = 0
    source = iter(chunks)
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        chunk = next(source, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": CLASSIFY,
        "raw_path": CLASSIFY.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("test", 80),
    }
    await app(scope, receive, send)
    return statuses[0], pulled


CHUNK = 16 * 1024
BIG = 8 * 1024 * 1024  # 128 times the cap: the old code read and parsed all of it


def _stream(total: int = BIG) -> Iterator[bytes]:
    """A JSON body of `total` bytes in CHUNK pieces (a client sending 'chunked')."""
    head = b'{"texts": ["'
    yield head
    yield from itertools.repeat(b"a" * CHUNK, (total - len(head)) // CHUNK)
    yield b'"]}'


@pytest.mark.parametrize(
    ("key", "length", "status", "most_read"),
    [
        (None, BIG, 401, 0),  # no key: refused before one byte of the body is read
        ("lmf_unknown", BIG, 401, 0),
        ("predict", BIG, 413, 0),  # Content-Length over the cap: refused unread
        ("predict", None, 413, MAX_BODY + CHUNK),  # chunked: stops one chunk past the cap
        (None, None, 401, 0),
    ],
    ids=["no-key", "wrong-key", "declared-too-big", "chunked-too-big", "no-key-chunked"],
)
def test_big_bodies_are_refused_before_they_are_read(
    served: Served, key: str | None, length: int | None, status: int, most_read: int
) -> None:
    headers = []
    if key:
        headers.append((b"authorization", f"Bearer {served.keys.get(key, key)}".encode()))
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    got, pulled = _on_app_loop(served, _raw_post, headers, _stream())
    assert got == status
    assert pulled <= most_read


@pytest.mark.parametrize("length", [b"12abc", b"-1"])
def test_a_garbled_content_length_is_a_client_error(served: Served, length: bytes) -> None:
    headers = [(b"authorization", f"Bearer {served.keys['predict']}".encode()), (b"content-length", length)]
    got, _ = _on_app_loop(served, _raw_post, headers, [b'{"texts": ["a"]}'])
    assert got == 400


def test_a_body_under_the_cap_still_works_when_streamed(served: Served) -> None:
    headers = [(b"authorization", f"Bearer {served.keys['predict']}".encode())]
    body = [b'{"texts": ', b'["', GOOD[0].encode(), b'"]}']
    got, pulled = _on_app_loop(served, _raw_post, headers, body)
    assert got == 200 and pulled == sum(map(len, body))


# --- concurrency: bad requests next to good ones ------------------------------------------


BAD_BODIES = [
    _json({"texts": [GOOD[0], "\ud800", GOOD[1]]}),
    _json({"texts": ["\udfff" * 3]}),
    _json({"texts": ["nul\x00", GOOD[2]]}),
    _json({"texts": [GOOD[3], 7]}),
    b'{"texts": ["unterminated',
    b'{"texts": ["\xff"]}',
    _json({"texts": ["a" * 201]}),
    _json({"texts": ["x"] * (MAX_TEXTS + 1)}),
]


def test_a_poisoned_batch_does_not_touch_the_good_requests_in_it(served: Served) -> None:
    """Regression: 16 clients, a lone surrogate among them; ~2/3 of the others got 500."""
    _mixed(served, BAD_BODIES, rounds=2)


def test_threads_sending_good_and_bad_requests_at_once(served: Served) -> None:
    """The same through blocking clients on 8 threads, several rounds each."""

    def client(worker: int) -> list[tuple[list[str] | None, httpx.Response]]:
        out: list[tuple[list[str] | None, httpx.Response]] = []
        for round_ in range(4):
            if (worker + round_) % 2:
                body = BAD_BODIES[(worker + round_) % len(BAD_BODIES)]
                out.append((None, served.post(CLASSIFY, body)))
            else:
                texts = [GOOD[(worker * 3 + round_) % len(GOOD)]]
                out.append((texts, served.post(CLASSIFY, {"texts": texts})))
        return out

    with ThreadPoolExecutor(8) as pool:
        results = [r for batch in pool.map(client, range(8)) for r in batch]
    assert sum(texts is not None for texts, _ in results) == 16
    for texts, response in results:
        if texts is None:
            _assert_answered(response)
            assert 400 <= response.status_code < 500
        else:
            _assert_same_as_alone(served, texts, response)


# --- hypothesis: new members of each class --------------------------------------------------

ODD = st.sampled_from(
    ["\ud800", "\udbff", "\udc00", "\udfff", "\x00", "\ufeff", "\u202e", "\U0010ffff", "\ufffe"]
)
HOSTILE_TEXT = st.text(st.one_of(st.characters(exclude_categories=()), ODD), max_size=40)


@SETTINGS
@given(texts=st.lists(HOSTILE_TEXT, min_size=1, max_size=4))
def test_any_text_next_to_good_requests(served: Served, texts: list[str]) -> None:
    """Whatever the characters, a request gets 200/422 and its neighbours their own answers."""
    _mixed(served, [_json({"texts": texts}), _json({"texts": [*texts, GOOD[0]]})], refused=False)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | HOSTILE_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(HOSTILE_TEXT, inner, max_size=4),
    max_leaves=12,
)
# Not the revocation route: a drawn {"key": "1"} would revoke the suite's own keys.
ROUTES = ["/v1/classify", "/v1/feedback", "/v1/chat/completions", "/v1/completions"]


@SETTINGS
@given(
    path=st.sampled_from(ROUTES),
    body=st.one_of(
        JSON,
        st.fixed_dictionaries({"texts": st.lists(JSON, max_size=3)}),
        st.fixed_dictionaries(
            {"messages": st.lists(st.fixed_dictionaries({"role": st.just("user"), "content": JSON}))}
        ),
    ),
)
def test_any_json_body_on_any_route(served: Served, path: str, body: Any) -> None:
    # allow_nan: NaN and Infinity are what Python's json module reads too.
    response = served.client.post(path, content=json.dumps(body).encode(), headers=served.headers("admin"))
    _assert_answered(response)


@SETTINGS
@given(body=st.binary(max_size=2048), content_type=st.sampled_from(["application/json", "text/plain", ""]))
def test_any_bytes_as_a_body(served: Served, body: bytes, content_type: str) -> None:
    headers = {**served.headers(), "Content-Type": content_type}
    _assert_answered(served.client.post(CLASSIFY, content=body, headers=headers))


# --- revocation and docs ---------------------------------------------------------------------


def test_a_key_revoked_through_the_server_is_refused_by_the_next_request(
    served: Served, tmp_path: Path
) -> None:
    """Regression: a successful lookup was cached for 2 s, so a revoked key kept working."""
    store = KeyStore(tmp_path / "keys.db")
    admin = store.create("admin", name="admin").secret
    victim = store.create("predict", name="leaked").secret
    cfg = ServeConfig(state_dir=str(tmp_path), reload_seconds=0)
    with TestClient(create_app(f"{NAME}@champion", served.uri, cfg)) as client:
        use = {"Authorization": f"Bearer {victim}"}
        assert client.get("/v1/models", headers=use).status_code == 200  # now cached
        revoked = client.post(
            "/v1/admin/keys/revoke", json={"key": "leaked"}, headers={"Authorization": f"Bearer {admin}"}
        )
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["name"] == "leaked" and revoked.json()["revoked_at"]
        assert client.get("/v1/models", headers=use).status_code == 401
        again = client.post(
            "/v1/admin/keys/revoke", json={"key": "leaked"}, headers={"Authorization": f"Bearer {admin}"}
        )
        assert again.status_code == 422 and "already revoked" in again.json()["detail"]
        assert client.post("/v1/admin/keys/revoke", json={"key": "leaked"}, headers=use).status_code == 401
    actions = [row["action"] for row in store.audit_log()]
    assert "admin.revoke" in actions and "key.revoke" in actions


def test_a_keyless_flood_writes_a_bounded_number_of_audit_rows(served: Served) -> None:
    """Regression: every refused request wrote one audit row, so a client without a key could
    make the server write to the keys database as fast as it sent requests."""
    from lmforge.serve.denials import BURST

    throttle = served.client.app.state.serve.authorizer.denials  # type: ignore[attr-defined]
    store = KeyStore(served.state / "keys.db")
    now = [1e9]  # a clock the test moves: far ahead first, so the bucket starts full
    before = max(row["id"] for row in store.audit_log(limit=1))
    throttle.clock = lambda: now[0]
    try:
        for _ in range(200):
            assert served.client.get("/v1/models").status_code == 401
        now[0] += 10
        assert served.client.get("/v1/models").status_code == 401
    finally:
        throttle.clock = time.monotonic
    denied = [r for r in store.audit_log(limit=1000) if r["id"] > before and r["action"] == "denied"]
    assert len(denied) == BURST + 1
    assert "(+180 more refused since the previous entry)" in denied[0]["detail"]  # newest first


@pytest.mark.parametrize(
    ("host", "setting", "public"),
    [
        ("127.0.0.1", None, True),
        ("localhost", None, True),
        ("::1", None, True),
        ("0.0.0.0", None, False),
        ("10.1.2.3", None, False),
        ("api.example.com", None, False),
        ("0.0.0.0", True, True),
        ("127.0.0.1", False, False),
    ],
)
def test_docs_are_public_only_on_loopback_unless_set(
    served: Served, tmp_path: Path, host: str, setting: bool | None, public: bool
) -> None:
    cfg = ServeConfig(state_dir=str(tmp_path), host=host, public_docs=setting)
    assert docs_public(cfg) is public
    admin = KeyStore(tmp_path / "keys.db").create("admin").secret
    # The model is not loaded (no lifespan): the docs routes do not need it.
    client = TestClient(create_app(f"{NAME}@champion", served.uri, cfg))
    for path in ("/docs", "/redoc", "/openapi.json"):
        if public:
            assert client.get(path).status_code == 200, path
        else:
            assert client.get(path).status_code == 401, path  # not public: a key first ...
            headers = {"Authorization": f"Bearer {admin}"}
            assert client.get(path, headers=headers).status_code == 404, path  # ... and not there


def test_probes_stay_public_behind_a_proxy_prefix(served: Served, tmp_path: Path) -> None:
    """Behind a proxy mounting the server under a prefix (``root_path``), the scope's path
    carries the prefix: the public paths are matched without it."""
    cfg = ServeConfig(state_dir=str(tmp_path))
    client = TestClient(create_app(f"{NAME}@champion", served.uri, cfg), root_path="/api")
    assert client.get("/api/healthz").status_code == 200
    assert client.get("/api/v1/models").status_code == 401
