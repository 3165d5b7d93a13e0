"""Admin routes: `/metrics` (Prometheus), `/v1/admin/reload` (check the registry now),
`/v1/admin/audit` (the key store's audit log) and `/v1/admin/keys/revoke` (revoke a key with
immediate effect on this server). All need an admin key, except `/metrics` with
`serve.metrics_public` (for a scraper inside the network)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from lmforge.serve.context import ADMIN, ERRORS, ServeContext, context
from lmforge.serve.keys import ApiKeyError
from lmforge.serve.schemas import RevokeRequest

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


@router.post("/v1/admin/keys/revoke", responses=ERRORS)
async def revoke_key(
    body: RevokeRequest, key: Any = Depends(ADMIN), ctx: ServeContext = Depends(context)
) -> dict[str, Any]:
    """Revoke a key (by id, prefix or name): this server refuses it from the next request on;
    other servers sharing the keys database within 2 s (their cached lookups expire)."""
    try:
        info = await ctx.authorizer.revoke(body.key)
    except ApiKeyError as exc:  # no such key, several match, or revoked already
        raise HTTPException(422, str(exc)) from None
    ctx.authorizer.audit("admin.revoke", key, f"key {info.id}", f"name={info.name}")
    return {"id": info.id, "name": info.name, "prefix": info.prefix, "revoked_at": info.revoked_at}
