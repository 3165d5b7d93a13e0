"""The HTTP status of every error serving code raises, chosen by exception type in one table.

The feedback store, the predictors and the micro-batcher know nothing about HTTP: they raise
their own exception types, and the app answers each with the status this table gives
(exception handlers registered by :func:`add_error_handlers`). Statuses once came from
matching words of the message (``404 if "unknown prediction" in str(exc)``), so rewording a
message silently changed what clients saw; a type cannot be reworded by accident.

Starlette picks the handler of the most specific class in the exception's MRO, so a base class
(`FeedbackError`, `ServeError`) is the fallback for subclasses added later without a row here.
Route code that checks HTTP-level limits (413 sizes, 401/403 keys) raises `HTTPException`
itself; this table is for what the layers below the routes raise.

Error bodies are written as ASCII JSON (`SafeJSONResponse`): a message may quote what a client
sent, and a lone surrogate in it would make the UTF-8 encoding of the reply fail, turning a
client's 422 into a 500. A 422 for a malformed body names the field and item (``loc``) but
does not echo the value back: it may be a megabyte, or personal data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from lmforge.serve.batching import Overloaded
from lmforge.serve.predictor import EmptyPrompt, GenerationFailed, ServeError
from lmforge.serve.store import FeedbackError, InvalidFeedback, UnknownPrediction


@dataclass(frozen=True)
class Answer:
    """How the server answers one exception type.

    Attributes:
        status: The HTTP status.
        retry_after: Seconds for a ``Retry-After`` header (load shedding), or None.
        prefix: Put before the exception's message in ``detail``.
    """

    status: int
    retry_after: int | None = None
    prefix: str = ""


STATUS_BY_TYPE: dict[type[Exception], Answer] = {
    UnknownPrediction: Answer(404),
    InvalidFeedback: Answer(422),
    FeedbackError: Answer(422),  # any other refusal of the store is the client's error too
    EmptyPrompt: Answer(422),
    GenerationFailed: Answer(500),
    ServeError: Answer(500),
    Overloaded: Answer(503, retry_after=1, prefix="server busy: "),
}


class SafeJSONResponse(JSONResponse):
    """JSON escaped to ASCII: any Python string, lone surrogates included, encodes."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def error_response(exc: Exception) -> JSONResponse:
    """The response for `exc` by the table above (its most specific listed class)."""
    answer = next(STATUS_BY_TYPE[kind] for kind in type(exc).__mro__ if kind in STATUS_BY_TYPE)
    headers = {"Retry-After": str(answer.retry_after)} if answer.retry_after is not None else None
    return SafeJSONResponse({"detail": f"{answer.prefix}{exc}"}, status_code=answer.status, headers=headers)


async def _handle(request: Request, exc: Exception) -> Response:
    return error_response(exc)


async def _invalid_request(request: Request, exc: Exception) -> Response:
    """FastAPI's 422 body (``{"detail": [{"type", "loc", "msg", "ctx"}]}``) without the
    ``input`` each error would echo."""
    assert isinstance(exc, RequestValidationError)
    errors = [{k: v for k, v in error.items() if k not in ("input", "url")} for error in exc.errors()]
    return SafeJSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


def add_error_handlers(app: FastAPI) -> None:
    """Register the table on `app`: one handler per listed type, all answering the same way;
    and the 422 of a body that does not fit the schema."""
    for kind in STATUS_BY_TYPE:
        app.add_exception_handler(kind, _handle)
    app.add_exception_handler(RequestValidationError, _invalid_request)
