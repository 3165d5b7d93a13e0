"""What every route of one server shares, and the dependencies routes reach it through.

The route modules (`routes_*.py`) are `APIRouter`s defined at import time, so they cannot
close over the objects `create_app` builds; those live in one `ServeContext` on
``app.state.serve`` (several apps in one process, as in tests, each keep their own).
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, Request

from lmforge.config import ServeConfig
from lmforge.serve.schemas import ErrorResponse
from lmforge.state_dir import StateDir

if TYPE_CHECKING:
    from lmforge.serve.auth import Authorizer
    from lmforge.serve.batching import MicroBatcher
    from lmforge.serve.metrics import ServeMetrics
    from lmforge.serve.predlog import PredictionLog
    from lmforge.serve.state import Loaded, ModelHolder
    from lmforge.serve.store import ServeStore

# The error statuses most routes can answer, for the OpenAPI schema (what clients should handle).
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 413, 422, 429, 503)
}


@dataclass
class ServeContext:
    """One server's parts: built by `create_app`, started and stopped by its lifespan."""

    cfg: ServeConfig
    state: StateDir
    holder: ModelHolder
    store: ServeStore
    predlog: PredictionLog
    metrics: ServeMetrics
    batcher: MicroBatcher
    authorizer: Authorizer
    generation_slots: threading.BoundedSemaphore

    def serving(self) -> Loaded:
        """The loaded model, or 503 while it is still loading (a client should retry)."""
        if self.holder.current is None:
            raise HTTPException(503, "the model is still loading", headers={"Retry-After": "5"})
        return self.holder.current

    def publish(self) -> None:
        """Show the served version in the metrics (after loading or swapping)."""
        if self.holder.current:
            loaded = self.holder.current
            self.metrics.set_model(loaded.name, loaded.version, loaded.predictor.runtime)


async def context(request: Request) -> ServeContext:
    """Dependency: the app's `ServeContext` (async, so FastAPI does not hop to a thread for it)."""
    ctx: ServeContext = request.app.state.serve
    return ctx


def require(scope: str) -> Callable[[Request], Awaitable[Any]]:
    """Dependency factory: the caller's key, which must hold `scope` (401/403/429 otherwise)."""

    async def dependency(request: Request) -> Any:
        ctx: ServeContext = request.app.state.serve
        return await ctx.authorizer.check(request, scope)

    return dependency


PREDICT, FEEDBACK, ADMIN = require("predict"), require("feedback"), require("admin")
