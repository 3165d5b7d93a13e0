"""The UI app: FastAPI with server-rendered Jinja2 pages and one stylesheet shipped in the
package (no CDN: it must work on a machine without internet). Pages live in `views_*.py`,
which render through `pages.page` and never import this module (it imports them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from lmforge.config import Config
from lmforge.state_dir import StateDir
from lmforge.ui import (
    views_compare,
    views_models,
    views_monitor,
    views_playground,
    views_review,
    views_runs,
    views_start,
)
from lmforge.ui.pages import HERE, page
from lmforge.ui.session import COOKIE, SESSION_SECONDS, Forbidden, LoginRequired, Sessions


@dataclass
class Project:
    """Where the UI reads and writes: the config's run folder, MLflow store and serve state
    (the same state folder `lmforge serve` uses with this config: keys, feedback, models, drift)."""

    config: Config
    config_file: Path
    runs_dir: Path
    tracking_uri: str
    state: StateDir


def project_for(config_file: Path, tracking_uri: str | None = None) -> Project:
    from lmforge.config import load_config
    from lmforge.registry import tracking_uri as configured

    config = load_config(config_file)
    return Project(
        config,
        config_file.resolve(),
        config.resolve_path(config.output_dir),
        tracking_uri or configured(config),
        StateDir.of(config.serve),
    )


def create_ui_app(project: Project, *, auth: bool = True) -> FastAPI:
    """The UI of `project`; `auth` False makes every visitor an admin (`--no-auth`, loopback only)."""
    app = FastAPI(title="lmforge ui", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.project = project
    app.state.sessions = Sessions(project.state.keys_url, auth=auth)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        return page(request, "error.html.j2", status_code=403, title="Not allowed", message=str(exc))

    @app.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request, next: str = "/runs", error: str | None = None) -> Response:
        return page(request, "login.html.j2", next=_local(next), error=error)

    @app.post("/login")
    async def login(request: Request, key: str = Form(...), next: str = Form("/runs")) -> Response:
        token = app.state.sessions.login(key)
        if token is None:
            return page(
                request, "login.html.j2", status_code=401, next=_local(next), error="Unknown or revoked key."
            )
        response = RedirectResponse(_local(next), status_code=303)
        response.set_cookie(COOKIE, token, max_age=SESSION_SECONDS, httponly=True, samesite="strict")
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        app.state.sessions.logout(request.cookies.get(COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @app.get("/")
    async def home() -> Response:
        return RedirectResponse("/runs", status_code=303)

    pages = (
        views_runs,
        views_start,
        views_compare,
        views_models,
        views_playground,
        views_review,
        views_monitor,
    )
    for module in pages:
        app.include_router(module.router)
    return app


def _local(path: str) -> str:
    # Only same-site paths: a login link must not redirect the user to another site.
    return path if path.startswith("/") and not path.startswith("//") else "/runs"
