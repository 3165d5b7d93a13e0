"""Admin routes: `/metrics` (Prometheus), `/v1/admin/reload` (check the registry now) and
`/v1/admin/audit` (the key store's audit log). All need an admin key, except `/metrics` with
`serve.metrics_public` (for a scraper inside the network)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from lmforge.serve.context import ADMIN, ServeContext, context

router = APIRouter(tags=["admin"])


async def metrics_access(request: Request, ctx: ServeContext = Depends(context)) -> None:
    """Dependency: an admin key unless `serve.metrics_public`."""
    if not ctx.cfg.metrics_public:
        await ctx.authorizer.check(request, "admin")


@router.get("/metrics", dependencies=[Depends(metrics_access)])
async def prometheus(ctx: ServeContext = Depends(context)) -> Response:
    """The server's metrics, with the drift gauges of the latest `lmforge monitor` report."""
    name = ctx.holder.ref.split("@")[0].split("/")[0]
    ctx.metrics.load_drift(ctx.state.drift_report(name))
    return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4")


@router.post("/v1/admin/reload")
async def reload(key: Any = Depends(ADMIN), ctx: ServeContext = Depends(context)) -> dict[str, Any]:
    """Check the registry now; swap to the version `ref` points at if it changed."""
    swapped = await ctx.holder.check()
    ctx.publish()
    ctx.authorizer.audit("reload", key, ctx.holder.ref, f"swapped={swapped}")
    loaded = ctx.serving()
    return {"swapped": swapped, "model": loaded.name, "version": loaded.version}


@router.get("/v1/admin/audit")
async def audit(
    limit: int = 100, key: Any = Depends(ADMIN), ctx: ServeContext = Depends(context)
) -> list[dict[str, Any]]:
    """The newest `limit` (1-1000) audit entries, newest first."""
    return ctx.authorizer.audit_log(min(max(limit, 1), 1000))
