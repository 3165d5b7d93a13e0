"""`/healthz` (liveness) and `/readyz` (readiness): open to anyone, because orchestrators probe
them without keys; they reveal only whether a model is loaded and which version."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from lmforge.serve.context import ServeContext, context
from lmforge.serve.schemas import ErrorResponse

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers (liveness); reveals nothing, so needs no key."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"model": ErrorResponse}})
async def readyz(ctx: ServeContext = Depends(context)) -> JSONResponse:
    """A model is loaded and can take requests (readiness)."""
    loaded = ctx.holder.current
    if loaded is None:
        return JSONResponse({"status": "loading"}, status_code=503)
    return JSONResponse({"status": "ready", "model": loaded.name, "version": loaded.version})
