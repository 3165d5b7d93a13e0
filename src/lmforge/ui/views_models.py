"""The registry: models, versions with metrics and aliases, gate decisions; promote, roll
back and archive for admins (the same functions as `lmforge models`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lmforge.errors import LmforgeError
from lmforge.ui.pages import page
from lmforge.ui.session import User, needs

router = APIRouter()


@router.get("/models", response_class=HTMLResponse)
async def models(
    request: Request,
    user: User = Depends(needs("predict")),
    message: str | None = None,
    error: str | None = None,
) -> Response:
    from lmforge.registry import client_for, list_models, list_versions

    uri = request.app.state.project.tracking_uri
    try:
        client = client_for(uri, must_exist=True)
        found = [{**m, "versions": list_versions(client, m["name"])} for m in list_models(client)]
    except LmforgeError as exc:  # no store yet: nothing registered
        found, error = [], error or str(exc)
    return page(request, "models.html.j2", models=found, message=message, error=error)


def _act(request: Request, user: User, action: str, target: str) -> Response:
    from urllib.parse import quote

    from lmforge import registry

    uri = request.app.state.project.tracking_uri
    sessions = request.app.state.sessions

    def audit(done: str, what: str) -> None:
        sessions.audit(done, user, what)

    try:
        client = registry.client_for(uri, must_exist=True)
        if action == "promote":
            info = registry.promote(client, target, audit=audit)
            message = f"{info.name} version {info.version} is the champion"
        elif action == "rollback":
            info = registry.rollback(client, target, audit=audit)
            message = f"{info.name} version {info.version} is the champion again"
        else:
            info = registry.archive(client, target, audit=audit)
            message = f"archived {info.name} version {info.version}"
    except LmforgeError as exc:
        return RedirectResponse(f"/models?error={quote(str(exc))}", status_code=303)
    return RedirectResponse(f"/models?message={quote(message)}", status_code=303)


@router.post("/models/{name}/versions/{version}/promote")
async def promote(
    request: Request, name: str, version: str, user: User = Depends(needs("admin"))
) -> Response:
    return _act(request, user, "promote", f"{name}@{version}")


@router.post("/models/{name}/versions/{version}/archive")
async def archive(
    request: Request, name: str, version: str, user: User = Depends(needs("admin"))
) -> Response:
    return _act(request, user, "archive", f"{name}@{version}")


@router.post("/models/{name}/rollback")
async def rollback(request: Request, name: str, user: User = Depends(needs("admin"))) -> Response:
    return _act(request, user, "rollback", name)
