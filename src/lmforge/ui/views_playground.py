"""Playground: try a registered model version in the browser and send feedback on its answer.

Predictions made here are logged to the same store as `lmforge serve` (route
`/playground/...`, so monitoring can tell them apart), and feedback goes through the same
`ServeStore.add_feedback` as `/v1/feedback`: pending until someone accepts it, so a click
in the UI reaches training data only the way client feedback does.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import iterate_in_threadpool

from lmforge.errors import LmforgeError
from lmforge.tasks.registry import get_task
from lmforge.ui.pages import page
from lmforge.ui.session import User, needs

router = APIRouter()
log = logging.getLogger("lmforge.ui")
_SETUP = threading.Lock()


class PlayRequest(BaseModel):
    version: str = Field(pattern=r"^\d+$", description="A registry version number of the project's model.")
    text: str = Field(min_length=1)
    max_new_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.7, ge=0, le=2)
    raw: bool = Field(False, description="Generation: continue the text as is, without the chat template.")


class FeedbackRequest(BaseModel):
    prediction_id: str = Field(min_length=1, max_length=32)
    text: str = Field(min_length=1, description="What was asked: the row a label or correction trains on.")
    rating: Literal[-1, 1] | None = None
    label: str | None = None
    corrected_output: str | None = None


@dataclass
class Playground:
    """Per-app state: loaded versions (loading takes seconds, so each is loaded once), the store
    and its prediction log. One lock serialises loads: two tabs asking for the same new version
    must not download it twice."""

    store: Any
    predlog: Any
    loaded: dict[tuple[str, str], Any] = field(default_factory=dict)
    load_lock: threading.Lock = field(default_factory=threading.Lock)
    classify_lock: threading.Lock = field(default_factory=threading.Lock)


def playground(request: Request) -> Playground:
    """The app's `Playground`, created on first use (the app module knows nothing about it)."""
    state = request.app.state
    with _SETUP:
        if getattr(state, "playground", None) is None:
            from lmforge.serve.predlog import PredictionLog
            from lmforge.serve.store import ServeStore

            config = state.project.config
            store = ServeStore(state.project.state.feedback_url)
            state.playground = Playground(store, PredictionLog(store, log_inputs=config.serve.log_inputs))
    return state.playground


def model_name(request: Request) -> str:
    config = request.app.state.project.config
    return str(config.register_.model_name or config.project_name)


def _load(request: Request, version: str) -> Any:
    """The `Loaded` version (name, version, predictor), downloaded into the serve state dir the
    way `lmforge serve` does (the state folder's `models/NAME-vN/`) so both share the copy."""
    from lmforge.serve.state import ModelHolder

    play, project, name = playground(request), request.app.state.project, model_name(request)
    with play.load_lock:
        key = (name, version)
        if key not in play.loaded:
            holder = ModelHolder(
                f"{name}@{version}", project.tracking_uri, project.config.serve, project.state
            )
            play.loaded[key] = holder.load_now()
        return play.loaded[key]


async def loaded_version(request: Request, body: PlayRequest) -> Any:
    """Load (or reuse) the version asked for; a bad text or unknown version is the client's error."""
    limit = request.app.state.project.config.serve.max_chars
    if len(body.text) > limit:
        raise HTTPException(413, f"the text has {len(body.text)} characters; the limit is {limit}")
    try:
        return await asyncio.to_thread(_load, request, body.version)
    except LmforgeError as exc:
        raise HTTPException(404, str(exc)) from None


@router.get("/playground", response_class=HTMLResponse)
async def playground_page(
    request: Request, version: str | None = None, user: User = Depends(needs("predict"))
) -> Response:
    from lmforge.registry import client_for, list_versions
    from lmforge.registry.names import CHAMPION, TASK_TAG
    from lmforge.serve.keys import KeyInfo, allows

    project, name = request.app.state.project, model_name(request)
    versions, error = [], None
    try:
        versions = await asyncio.to_thread(
            list_versions, client_for(project.tracking_uri, must_exist=True), name
        )
    except LmforgeError as exc:  # no store or no model yet: the page says so
        error = str(exc)
    champion = next((v for v in versions if CHAMPION in v.aliases), versions[0] if versions else None)
    selected = next((v for v in versions if v.version == version), champion)
    probe = KeyInfo(id=0, name=user.name, prefix="", scope=user.scope, rate=None, created_at="")
    task = selected.tags.get(TASK_TAG, project.config.task) if selected else project.config.task
    return page(
        request,
        "playground.html.j2",
        name=name,
        versions=versions,
        selected=selected,
        task="classification" if get_task(task).uses_labels else "generation",  # the page's two modes
        can_feedback=allows(probe, "feedback"),
        max_chars=project.config.serve.max_chars,
        max_new_tokens=min(256, project.config.serve.max_new_tokens),
        error=error,
    )


@router.post("/playground/classify")
async def classify(
    request: Request, body: PlayRequest, user: User = Depends(needs("predict"))
) -> dict[str, Any]:
    """Label and class probabilities of one text, logged like a `/v1/classify` prediction."""
    loaded = await loaded_version(request, body)
    if not get_task(loaded.task).uses_labels:
        raise HTTPException(422, f"version {loaded.version} is a {loaded.task} model: generate instead")
    play = playground(request)

    def run() -> Any:
        with play.classify_lock:  # a classifier is safe in one thread at a time
            return loaded.predictor.classify([body.text])[0]

    started = time.perf_counter()
    result = await asyncio.to_thread(run)
    pid = uuid.uuid4().hex
    play.predlog.add(
        loaded,
        [body.text],
        [result],
        [pid],
        (time.perf_counter() - started) * 1000,
        route="/playground/classify",
    )
    await asyncio.to_thread(play.predlog.flush)  # logged before the reply: feedback may follow at once
    return {
        "id": pid,
        "model": loaded.name,
        "version": loaded.version,
        "label": result.label,
        "confidence": result.confidence,
        "probabilities": dict(sorted(result.probabilities.items(), key=lambda kv: -kv[1])),
    }


@router.post("/playground/generate")
async def generate(request: Request, body: PlayRequest, user: User = Depends(needs("predict"))) -> Response:
    """The answer as plain text streamed piece by piece (the page reads it with fetch); its
    prediction id comes first, in the `X-Prediction-Id` header, so feedback can refer to it."""
    from lmforge.serve.predictor import ServeError

    loaded = await loaded_version(request, body)
    if get_task(loaded.task).uses_labels:
        raise HTTPException(422, f"version {loaded.version} is a classifier: classify instead")
    cfg = request.app.state.project.config.serve
    wanted = body.max_new_tokens or min(256, cfg.max_new_tokens)
    if wanted > cfg.max_new_tokens:
        raise HTTPException(422, f"max_new_tokens={wanted} exceeds serve.max_new_tokens={cfg.max_new_tokens}")
    messages = [{"role": "user", "content": body.text}]
    prompt = body.text if body.raw else loaded.predictor.chat_prompt(messages)
    pieces = loaded.predictor.stream(prompt, max_new_tokens=wanted, temperature=body.temperature, top_p=0.95)
    play, pid, started = playground(request), uuid.uuid4().hex, time.perf_counter()

    async def answer() -> AsyncIterator[str]:
        text: list[str] = []
        try:
            async for piece in iterate_in_threadpool(pieces):
                text.append(piece)
                yield piece
        except ServeError as exc:
            yield f"\n[{exc}]"
        finally:  # also when the reader goes away: what was generated is still a prediction
            try:
                latency = (time.perf_counter() - started) * 1000
                play.predlog.add(
                    loaded, [body.text], ["".join(text)], [pid], latency, route="/playground/generate"
                )
                play.predlog.flush()
            except Exception as exc:  # the answer was sent; a logging failure must not hide it
                log.warning("playground prediction not logged: %s", exc)

    headers = {"X-Prediction-Id": pid, "X-Model-Version": loaded.version, "Cache-Control": "no-cache"}
    return StreamingResponse(answer(), media_type="text/plain; charset=utf-8", headers=headers)


@router.post("/playground/feedback")
async def feedback(
    request: Request, body: FeedbackRequest, user: User = Depends(needs("feedback"))
) -> dict[str, Any]:
    """Thumbs up/down (rating 1/-1), a corrected label, or a corrected answer, stored pending."""
    from lmforge.serve.store import FeedbackError, FeedbackItem

    given = [
        (k, v)
        for k, v in (("rating", body.rating), ("label", body.label), ("correction", body.corrected_output))
        if v is not None
    ]
    if len(given) != 1:
        raise HTTPException(422, "send exactly one of rating, label, corrected_output")
    play = playground(request)
    logged = await asyncio.to_thread(play.store.get_prediction, body.prediction_id)
    known = list(logged.probabilities or {}) if logged else []
    if body.label is not None and known and body.label not in known:
        raise HTTPException(422, f"unknown label {body.label!r}; labels: {', '.join(known)}")
    item = FeedbackItem(
        kind=given[0][0],
        prediction_id=body.prediction_id,
        label=body.label,
        rating=body.rating,
        corrected_output=body.corrected_output,
        text=body.text,
        key_name=user.name,
    )
    try:
        feedback_id = await asyncio.to_thread(play.store.add_feedback, item)
    except FeedbackError as exc:
        raise HTTPException(422, str(exc)) from None
    thanks = {"rating": "rating", "label": "corrected label", "correction": "corrected answer"}[item.kind]
    return {
        "id": feedback_id,
        "status": "pending",
        "message": f"Thanks: your {thanks} is saved (pending review).",
    }
