"""The FastAPI app of `lmforge serve`: classification with micro-batching, OpenAI-style
completions for generation models, feedback, health, metrics; every route behind API keys.

This module only assembles: it builds one server's parts (`ServeContext`), starts and stops
them (lifespan), and adds the middleware, the error mapping and the routers
(`routes_classify`, `routes_generation`, `routes_feedback`, `routes_health`, `routes_admin`).

Status codes a client should handle: 400 (several Authorization headers, unreadable body),
401 (no or unknown key), 403 (key lacks the scope), 404 (feedback about an unknown
prediction), 413 (body over serve.max_body_bytes, too many texts, text too long), 422
(malformed body, a text with a lone surrogate or NUL, too many tokens asked), 429 (the key's
rate limit, with Retry-After), 503 (queue full or model not loaded, with Retry-After). Which
exception gives which status is `serve/errors.py`; the key and the body size are checked
before the body is read (`serve/guard.py`).

`/healthz` and `/readyz` are open; `/metrics` with ``serve.metrics_public``; `/docs`,
`/redoc` and `/openapi.json` exist only when `docs_public` (``serve.public_docs``, by default
when bound to a loopback address).
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from lmforge.config import ServeConfig
from lmforge.serve import routes_admin, routes_classify, routes_feedback, routes_generation, routes_health
from lmforge.serve.auth import Authorizer
from lmforge.serve.batching import MicroBatcher
from lmforge.serve.context import ServeContext
from lmforge.serve.errors import add_error_handlers
from lmforge.serve.guard import RequestGuard
from lmforge.serve.metrics import ObserveRequests, ServeMetrics
from lmforge.serve.predlog import PredictionLog
from lmforge.serve.state import ModelHolder
from lmforge.serve.store import ServeStore
from lmforge.state_dir import StateDir

ROUTERS = (routes_classify, routes_generation, routes_feedback, routes_health, routes_admin)
ENV_SETTINGS = "LMFORGE_SERVE_SETTINGS"
HEALTH = ("/healthz", "/readyz")  # orchestrators probe these without keys
DOCS = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")


def create_app(ref: str, tracking_uri: str, cfg: ServeConfig, *, auth: bool = True) -> FastAPI:
    """An app serving registry model `ref` (NAME@champion, NAME@3 ...); the model loads at start-up."""
    docs = docs_public(cfg)
    app = FastAPI(
        title="lmforge model server",
        version="1",
        lifespan=_lifespan,
        description="Send `Authorization: Bearer <key>`; create keys with `lmforge keys create`.",
        docs_url=DOCS[0] if docs else None,
        swagger_ui_oauth2_redirect_url=DOCS[1] if docs else None,
        redoc_url=DOCS[2] if docs else None,
        openapi_url=DOCS[3] if docs else None,
    )
    ctx = build_context(ref, tracking_uri, cfg, auth=auth)
    app.state.serve = ctx
    public = [*HEALTH, *(["/metrics"] if cfg.metrics_public else []), *(DOCS if docs else [])]
    app.add_middleware(
        RequestGuard, authorizer=ctx.authorizer, max_body_bytes=cfg.max_body_bytes, public=public
    )
    # Outermost, so refusals of the guard (400/401/413) are counted too.
    app.add_middleware(ObserveRequests, metrics=ctx.metrics, batcher=ctx.batcher)
    add_error_handlers(app)
    for module in ROUTERS:
        app.include_router(module.router)
    return app


def docs_public(cfg: ServeConfig) -> bool:
    """Whether the API docs are served: ``serve.public_docs``, or by default only when bound to
    a loopback address (the schema maps every route for whoever can reach the server)."""
    if cfg.public_docs is not None:
        return cfg.public_docs
    if cfg.host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(cfg.host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def shared_rates(cfg: ServeConfig) -> bool:
    """Whether per-key rates live in the keys database (``serve.rate_limits``): by default when
    more than one process enforces them, i.e. several workers or hosts sharing ``keys_url``."""
    if cfg.rate_limits != "auto":
        return cfg.rate_limits == "shared"
    return cfg.workers > 1 or cfg.keys_url is not None


def build_context(ref: str, tracking_uri: str, cfg: ServeConfig, *, auth: bool = True) -> ServeContext:
    """One server's parts, not started: stores opened (and created) in the state folder."""
    state = StateDir.of(cfg).create()
    holder = ModelHolder(ref, tracking_uri, cfg, state)
    metrics = ServeMetrics()
    store = ServeStore(state.feedback_url)
    batcher = MicroBatcher(
        lambda: holder.current,
        lambda loaded, texts: loaded.predictor.classify(texts),
        max_batch_size=cfg.max_batch_size,
        max_wait_ms=cfg.max_wait_ms,
        max_queue=cfg.max_queue,
        on_batch=metrics.batch_size.observe,
    )
    return ServeContext(
        cfg=cfg,
        state=state,
        holder=holder,
        store=store,
        predlog=PredictionLog(store, log_inputs=cfg.log_inputs),
        metrics=metrics,
        batcher=batcher,
        authorizer=Authorizer(state.keys_url, enabled=auth, shared_rates=shared_rates(cfg)),
        generation_slots=threading.BoundedSemaphore(cfg.max_generations),
    )


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    ctx: ServeContext = app.state.serve
    ctx.holder.current = await asyncio.to_thread(ctx.holder.load_now)
    ctx.publish()
    ctx.batcher.start()
    ctx.predlog.start()
    ctx.holder.start_watching()
    yield
    await ctx.holder.stop()
    await ctx.batcher.stop()
    await ctx.predlog.stop()


def app_from_env() -> FastAPI:
    """uvicorn's factory for `--workers N`: every worker process builds its app from the
    settings the parent put in the environment."""
    import json
    import os

    settings = json.loads(os.environ[ENV_SETTINGS])
    return create_app(
        settings["ref"], settings["tracking_uri"], ServeConfig(**settings["serve"]), auth=settings["auth"]
    )
