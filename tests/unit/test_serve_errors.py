"""Errors map to HTTP statuses by exception type (bug B5: the feedback route chose 404 or 422 by
looking for "unknown prediction" in the message), and the serve modules import in any order."""

from __future__ import annotations

import subprocess
import sys

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lmforge.serve.batching import Overloaded
from lmforge.serve.errors import STATUS_BY_TYPE, add_error_handlers
from lmforge.serve.predictor import EmptyPrompt, GenerationFailed, ServeError
from lmforge.serve.store import FeedbackError, InvalidFeedback, UnknownPrediction

CASES = [
    # Messages chosen to mislead any matching on words: the type alone decides.
    (UnknownPrediction("no row for id 'x'"), 404, None),
    (InvalidFeedback("unknown prediction id 'x' and two kinds"), 422, None),
    (FeedbackError("unknown prediction"), 422, None),
    (EmptyPrompt("the prompt has no tokens"), 422, None),
    (GenerationFailed("generation failed: unknown prediction"), 500, None),
    (ServeError("something else"), 500, None),
    (Overloaded("9 texts queued (limit 8)"), 503, "1"),
]


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    add_error_handlers(app)

    @app.get("/raise/{index}")
    async def boom(index: int) -> None:
        raise CASES[index][0]

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("index", range(len(CASES)))
def test_status_by_type_not_by_message(client: TestClient, index: int) -> None:
    exc, status, retry_after = CASES[index]
    response = client.get(f"/raise/{index}")
    assert response.status_code == status, (type(exc).__name__, response.text)
    assert response.json()["detail"].endswith(str(exc))
    assert response.headers.get("retry-after") == retry_after


def test_overloaded_keeps_its_server_busy_detail(client: TestClient) -> None:
    index = next(i for i, (exc, _, _) in enumerate(CASES) if isinstance(exc, Overloaded))
    assert client.get(f"/raise/{index}").json() == {"detail": "server busy: 9 texts queued (limit 8)"}


def test_every_serving_exception_type_has_a_row() -> None:
    """A new subclass must be given a status on purpose, not inherit one by accident."""
    for base in (FeedbackError, ServeError):
        for kind in base.__subclasses__():
            assert kind in STATUS_BY_TYPE, f"{kind.__name__} has no status in serve/errors.py"


def test_unlisted_errors_stay_internal(client: TestClient) -> None:
    app = FastAPI()
    add_error_handlers(app)

    @app.get("/bug")
    async def bug() -> None:
        raise KeyError("not a client error")

    assert TestClient(app, raise_server_exceptions=False).get("/bug").status_code == 500


@pytest.mark.parametrize(
    "first",
    ["lmforge.serve.routes_feedback", "lmforge.serve.routes_generation", "lmforge.serve.errors"],
)
def test_route_modules_import_before_the_app(first: str) -> None:
    """Routers reach shared state through `context`, never by importing the app (no cycle)."""
    code = f"import {first}, sys; assert 'lmforge.serve.app' not in sys.modules; import lmforge.serve.app"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
