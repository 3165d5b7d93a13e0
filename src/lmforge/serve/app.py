"""The FastAPI app of `lmforge serve`: classification with micro-batching, OpenAI-style
completions for generation models, feedback, health, metrics; every route behind API keys.

Status codes a client should handle: 401 (no or unknown key), 403 (key lacks the scope),
404 (feedback about an unknown prediction), 413 (too many texts / text too long), 422
(malformed body, too many tokens asked), 429 (the key's rate limit, with Retry-After), 503
(queue full or model not loaded, with Retry-After). Which exception gives which status is
`serve/errors.py`.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Response
from fastapi.responses import JSONResponse

from lmforge.config import ServeConfig
from lmforge.serve.auth import Authorizer
from lmforge.serve.batching import MicroBatcher
from lmforge.serve.errors import add_error_handlers
from lmforge.serve.generation import generation_routes
from lmforge.serve.metrics import ServeMetrics
from lmforge.serve.predlog import PredictionLog
from lmforge.serve.schemas import (
    ClassifyRequest,
    ClassifyResponse,
    ErrorResponse,
    FeedbackRequest,
    FeedbackResponse,
    Prediction,
)
from lmforge.serve.state import ModelHolder
from lmforge.state_dir import StateDir

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 413, 422, 429, 503)
}


def create_app(ref: str, tracking_uri: str, cfg: ServeConfig, *, auth: bool = True) -> FastAPI:
    """An app serving registry model `ref` (NAME@champion, NAME@3 ...)."""
    from lmforge.serve.store import ServeStore

    state = StateDir.of(cfg).create()
    holder = ModelHolder(ref, tracking_uri, cfg, state)
    metrics = ServeMetrics()
    store = ServeStore(state.feedback_url)
    predlog = PredictionLog(store, log_inputs=cfg.log_inputs)
    authorizer = Authorizer(state.keys_url, enabled=auth)
    batcher = MicroBatcher(
        lambda: holder.current,
        lambda loaded, texts: loaded.predictor.classify(texts),
        max_batch_size=cfg.max_batch_size,
        max_wait_ms=cfg.max_wait_ms,
        max_queue=cfg.max_queue,
        on_batch=metrics.batch_size.observe,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        holder.current = await asyncio.to_thread(holder.load_now)
        _publish(metrics, holder)
        batcher.start()
        predlog.start()
        holder.start_watching()
        yield
        await holder.stop()
        await batcher.stop()
        await predlog.stop()

    app = FastAPI(
        title="lmforge model server",
        version="1",
        lifespan=lifespan,
        description="Send `Authorization: Bearer <key>`; create keys with `lmforge keys create`.",
    )
    app.state.holder, app.state.store, app.state.metrics, app.state.batcher = holder, store, metrics, batcher
    app.state.authorizer = authorizer

    app.add_middleware(_Observe, metrics=metrics, batcher=batcher)
    add_error_handlers(app)

    predict, feedback, admin = (authorizer.require(s) for s in ("predict", "feedback", "admin"))

    def serving() -> Any:
        if holder.current is None:
            raise HTTPException(503, "the model is still loading", headers={"Retry-After": "5"})
        return holder.current

    @app.post("/v1/classify", response_model=ClassifyResponse, responses=ERRORS, tags=["predict"])
    async def classify(body: ClassifyRequest, key: Any = Depends(predict)) -> ClassifyResponse:
        """Labels and class probabilities for a batch of texts."""
        loaded = serving()
        if loaded.task != "classification":
            raise HTTPException(422, f"{loaded.name} is a {loaded.task} model: use /v1/chat/completions")
        _check_texts(body.texts, cfg)
        started = time.perf_counter()
        results, used = await batcher.submit(body.texts)  # Overloaded -> 503 (serve/errors.py)
        latency = (time.perf_counter() - started) * 1000
        ids = [uuid.uuid4().hex for _ in results]
        predlog.add(used, body.texts, results, ids, latency, route="/v1/classify")
        for r in results:
            metrics.predictions.labels(r.label).inc()
        return ClassifyResponse(
            model=used.name,
            version=used.version,
            predictions=[
                Prediction(id=i, label=r.label, confidence=r.confidence, probabilities=r.probabilities)
                for i, r in zip(ids, results, strict=True)
            ],
        )

    @app.post(
        "/v1/feedback",
        response_model=FeedbackResponse,
        responses={**ERRORS, 404: {"model": ErrorResponse}},
        tags=["feedback"],
    )
    async def post_feedback(body: FeedbackRequest, key: Any = Depends(feedback)) -> FeedbackResponse:
        """A correct label, a rating or a corrected answer; stored durably before the reply."""
        from lmforge.serve.store import FeedbackItem, InvalidFeedback

        loaded = serving()
        kinds = [
            k
            for k, v in (
                ("label", body.label),
                ("rating", body.rating),
                ("correction", body.corrected_output),
            )
            if v is not None
        ]
        if len(kinds) != 1:
            raise InvalidFeedback("send exactly one of label, rating, corrected_output")
        if body.label is not None and loaded.predictor.labels and body.label not in loaded.predictor.labels:
            raise InvalidFeedback(
                f"unknown label {body.label!r}; labels: {', '.join(loaded.predictor.labels)}"
            )
        await asyncio.to_thread(predlog.flush)  # the prediction it refers to may still be buffered
        item = FeedbackItem(
            prediction_id=body.prediction_id,
            kind=kinds[0],
            label=body.label,
            rating=body.rating,
            corrected_output=body.corrected_output,
            text=body.text,
            key_name=getattr(key, "name", None),
        )
        # InvalidFeedback -> 422, UnknownPrediction -> 404, by type (serve/errors.py)
        feedback_id = await asyncio.to_thread(store.add_feedback, item)
        return FeedbackResponse(id=feedback_id, status="pending")

    @app.get("/v1/models", tags=["predict"])
    async def models(key: Any = Depends(predict)) -> dict[str, Any]:
        loaded = serving()
        return {
            "object": "list",
            "data": [
                {
                    "id": loaded.name,
                    "object": "model",
                    "version": loaded.version,
                    "task": loaded.task,
                    "runtime": loaded.predictor.runtime,
                    "file": loaded.predictor.file,
                    "labels": loaded.predictor.labels,
                    "owned_by": "lmforge",
                }
            ],
        }

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process answers (liveness); reveals nothing, so needs no key."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"model": ErrorResponse}})
    async def readyz() -> JSONResponse:
        """A model is loaded and can take requests (readiness)."""
        if holder.current is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse(
            {"status": "ready", "model": holder.current.name, "version": holder.current.version}
        )

    metrics_guard = [] if cfg.metrics_public else [Depends(admin)]

    @app.get("/metrics", tags=["admin"], dependencies=metrics_guard)
    async def prometheus() -> Response:
        metrics.load_drift(state.drift_report(holder.ref.split("@")[0].split("/")[0]))
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.post("/v1/admin/reload", tags=["admin"])
    async def reload(key: Any = Depends(admin)) -> dict[str, Any]:
        """Check the registry now; swap to the version `ref` points at if it changed."""
        swapped = await holder.check()
        _publish(metrics, holder)
        authorizer.audit("reload", key, holder.ref, f"swapped={swapped}")
        assert holder.current is not None
        return {"swapped": swapped, "model": holder.current.name, "version": holder.current.version}

    @app.get("/v1/admin/audit", tags=["admin"])
    async def audit(limit: int = 100, key: Any = Depends(admin)) -> list[dict[str, Any]]:
        return authorizer.audit_log(min(max(limit, 1), 1000))

    generation_routes(app, serving, predict, cfg, predlog, metrics)
    return app


class _Observe:
    """Request counts and latency by route template and status. A plain ASGI middleware:
    Starlette's `@app.middleware("http")` wraps every response in a stream and costs
    several ms per request under load."""

    def __init__(self, app: Any, metrics: ServeMetrics, batcher: MicroBatcher) -> None:
        self.app, self.metrics, self.batcher = app, metrics, batcher

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_status(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(path, str(status[0])).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)
            self.metrics.queue_depth.set(self.batcher.queued_texts)


def _publish(metrics: ServeMetrics, holder: ModelHolder) -> None:
    if holder.current:
        metrics.set_model(holder.current.name, holder.current.version, holder.current.predictor.runtime)


def _check_texts(texts: list[str], cfg: ServeConfig) -> None:
    if len(texts) > cfg.max_texts:
        raise HTTPException(
            413, f"{len(texts)} texts in one request; the limit is serve.max_texts={cfg.max_texts}"
        )
    for i, text in enumerate(texts):
        if len(text) > cfg.max_chars:
            raise HTTPException(
                413, f"texts[{i}] has {len(text)} characters; the limit is serve.max_chars={cfg.max_chars}"
            )


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


ENV_SETTINGS = "LMFORGE_SERVE_SETTINGS"


def app_from_env() -> FastAPI:
    """uvicorn's factory for `--workers N`: every worker process builds its app from the
    settings the parent put in the environment."""
    import json
    import os

    settings = json.loads(os.environ[ENV_SETTINGS])
    return create_app(
        settings["ref"], settings["tracking_uri"], ServeConfig(**settings["serve"]), auth=settings["auth"]
    )
