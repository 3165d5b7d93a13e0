"""`/v1/classify` (micro-batched labels and probabilities) and `/v1/models` (what is served)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter, Depends, HTTPException

from lmforge.config import ServeConfig
from lmforge.serve.context import ERRORS, PREDICT, ServeContext, context
from lmforge.serve.schemas import ClassifyRequest, ClassifyResponse, Prediction
from lmforge.tasks.registry import get_task

router = APIRouter(tags=["predict"])


@router.post("/v1/classify", response_model=ClassifyResponse, responses=ERRORS)
async def classify(
    body: ClassifyRequest, key: Any = Depends(PREDICT), ctx: ServeContext = Depends(context)
) -> ClassifyResponse:
    """Labels and class probabilities for a batch of texts."""
    loaded = ctx.serving()
    if not get_task(loaded.task).uses_labels:
        raise HTTPException(422, f"{loaded.name} is a {loaded.task} model: use /v1/chat/completions")
    check_texts(body.texts, ctx.cfg)
    started = time.perf_counter()
    results, used = await ctx.batcher.submit(body.texts)  # Overloaded -> 503 (serve/errors.py)
    latency = (time.perf_counter() - started) * 1000
    ids = [uuid.uuid4().hex for _ in results]
    ctx.predlog.add(used, body.texts, results, ids, latency, route="/v1/classify")
    for r in results:
        ctx.metrics.predictions.labels(r.label).inc()
    return ClassifyResponse(
        model=used.name,
        version=used.version,
        predictions=[
            Prediction(id=i, label=r.label, confidence=r.confidence, probabilities=r.probabilities)
            for i, r in zip(ids, results, strict=True)
        ],
    )


@router.get("/v1/models")
async def models(key: Any = Depends(PREDICT), ctx: ServeContext = Depends(context)) -> dict[str, Any]:
    """The served model in the OpenAI list format, with its version, task, runtime and labels."""
    loaded = ctx.serving()
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


def check_texts(texts: list[str], cfg: ServeConfig) -> None:
    """413 for more texts, or a longer text, than the server accepts (bounded work per request)."""
    if len(texts) > cfg.max_texts:
        raise HTTPException(
            413, f"{len(texts)} texts in one request; the limit is serve.max_texts={cfg.max_texts}"
        )
    for i, text in enumerate(texts):
        if len(text) > cfg.max_chars:
            raise HTTPException(
                413, f"texts[{i}] has {len(text)} characters; the limit is serve.max_chars={cfg.max_chars}"
            )
