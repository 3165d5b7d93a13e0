"""The request guard: who is calling, and how big the body is, settled before the body is read.

FastAPI reads and parses a JSON body before it runs a route's dependencies, so with the key
check in a dependency anyone could make the server read and parse a 50 MB body (and hold
~3x that in memory) just to be told 401. This pure ASGI middleware runs first, in order:

1. several ``Authorization`` headers: 400 (ambiguous credentials: which one counts would
   depend on who reads them);
2. outside the public paths (health probes, and `/metrics` or the docs when the settings
   open them): the key, 401 when missing or unknown;
3. a ``Content-Length`` over ``serve.max_body_bytes``: 413, nothing read;
4. the body, read here up to ``serve.max_body_bytes`` (chunked bodies declare no length):
   413 as soon as it passes the cap, having read at most the cap plus one chunk.

Only then does the app see the request, with the body replayed from memory and the key left
in the scope for the route's scope and rate check (`Authorizer.check`).
"""

from __future__ import annotations

from collections.abc import Collection

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lmforge.serve.auth import KEY_IN_SCOPE, Authorizer
from lmforge.serve.errors import SafeJSONResponse


class BodyTooLarge(Exception):
    """The body passed `max_body_bytes` while it was read."""


class RequestGuard:
    """Authenticates, then bounds and reads the body, before the wrapped app runs.

    Args:
        app: The ASGI app it wraps.
        authorizer: Checks keys (`identify`); with auth off every caller is anonymous.
        max_body_bytes: The largest body accepted (413 above).
        public: Paths served without a key.
    """

    def __init__(
        self, app: ASGIApp, authorizer: Authorizer, max_body_bytes: int, public: Collection[str]
    ) -> None:
        self.app = app
        self.authorizer = authorizer
        self.max_body_bytes = max_body_bytes
        self.public = frozenset(public)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(name.lower(), value) for name, value in scope["headers"]]
        try:
            authorization = [v.decode("latin-1") for n, v in headers if n == b"authorization"]
            if len(authorization) > 1 or _route_path(scope) not in self.public:
                scope[KEY_IN_SCOPE] = await self.authorizer.identify(authorization, scope["path"])
            self._check_length([v for n, v in headers if n == b"content-length"])
            body = await self._read_body(receive)
        except HTTPException as refused:
            await _refuse(refused, scope, receive, send)
            return
        except BodyTooLarge:
            await _refuse(self._too_large(), scope, receive, send)
            return
        if body is None:  # the client left while sending
            return
        await self.app(scope, _replay(body, receive), send)

    def _too_large(self, size: int | None = None) -> HTTPException:
        told = f"{size} bytes" if size is not None else "more bytes than that"
        return HTTPException(
            413, f"the body has {told}; the limit is serve.max_body_bytes={self.max_body_bytes}"
        )

    def _check_length(self, values: list[bytes]) -> None:
        if not values:
            return
        try:
            sizes = {int(v) for v in values}
        except ValueError:
            raise HTTPException(400, "Content-Length is not a number") from None
        if len(sizes) > 1 or min(sizes) < 0:
            raise HTTPException(400, "conflicting or negative Content-Length")
        size = sizes.pop()
        if size > self.max_body_bytes:
            raise self._too_large(size)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None if the client disconnected; `BodyTooLarge` past the cap."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _route_path(scope: Scope) -> str:
    """The path the app routes on: without the ``root_path`` a proxy mounts the server under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the app the body read already, then waits on the client
    (a streaming response listens for the disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(refused: HTTPException, scope: Scope, receive: Receive, send: Send) -> None:
    response = SafeJSONResponse(
        {"detail": refused.detail}, status_code=refused.status_code, headers=refused.headers
    )
    await response(scope, receive, send)
