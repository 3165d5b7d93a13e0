"""The UI app: FastAPI with server-rendered Jinja2 pages and one stylesheet shipped in the
package (no CDN: it must work on a machine without internet). Pages live in `views_*.py`,
which render through `pages.page` and never import this module (it imports them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from lmforge.config import Config
from lmforge.state_dir import StateDir
from lmforge.ui import (
    csrf,
    views_compare,
    views_models,
    views_monitor,
    views_playground,
    views_review,
    views_runs,
    views_start,
)
from lmforge.ui.pages import HERE, page
from lmforge.ui.session import COOKIE, Forbidden, LoginRequired, Sessions


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
    """The UI of `project`; `auth` False makes every visitor an admin (`--no-auth`, loopback only).

    Every route depends on `csrf.guard`: state-changing requests must come from this site's
    own pages (Origin and CSRF token), so a route added later cannot forget the check.
    """
    settings = project.config.ui
    app = FastAPI(
        title="lmforge ui",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(csrf.guard)],
    )
    app.state.project = project
    app.state.ui_settings = settings
    app.state.sessions = Sessions(
        project.state.keys_url,
        auth=auth,
        idle_seconds=settings.idle_minutes * 60,
        lifetime_seconds=settings.session_hours * 3600,
    )
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    def set_cookie(
        request: Request, response: Response, name: str, value: str, max_age: int, path: str = "/"
    ) -> None:
        secure = csrf.secure_cookie(request, settings)  # ui.secure_cookies
        response.set_cookie(
            name, value, max_age=max_age, path=path, httponly=True, samesite="strict", secure=secure
        )

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> Response:
        # Back to this page after the login; an action (POST) is not repeated: back to the list.
        back = request.url.path if request.method == "GET" else "/runs"
        response = RedirectResponse(f"/login?next={quote(back)}", status_code=303)
        if COOKIE in request.cookies:  # an ended session: the browser forgets it too
            response.delete_cookie(COOKIE)
        return response

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        return page(request, "error.html.j2", status_code=403, title="Not allowed", message=str(exc))

    @app.exception_handler(csrf.CsrfRefused)
    async def refused(request: Request, exc: csrf.CsrfRefused) -> Response:
        session = app.state.sessions.current(request)
        if session is not None and session.user.key_id is not None:
            # A logged-in user's browser sent it: someone may be trying to act in their name.
            app.state.sessions.audit("ui.csrf.refused", session.user, request.url.path, str(exc))
        if "json" in request.headers.get("content-type", "") or csrf.HEADER in request.headers:
            return JSONResponse({"detail": str(exc)}, status_code=403)  # a script's fetch
        return page(request, "error.html.j2", status_code=403, title="Refused", message=str(exc))

    def login_page(request: Request, next: str, error: str | None, status_code: int = 200) -> Response:
        # A fresh login token each time the form is shown (see csrf.py: double submit).
        token = csrf.new_login_token()
        response = page(
            request,
            "login.html.j2",
            status_code=status_code,
            next=_local(next),
            error=error,
            login_token=token,
        )
        set_cookie(
            request, response, csrf.LOGIN_COOKIE, token, max_age=csrf.LOGIN_COOKIE_SECONDS, path="/login"
        )
        return response

    @app.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request, next: str = "/runs", error: str | None = None) -> Response:
        return login_page(request, next, error)

    @app.post("/login")
    async def login(request: Request, key: str = Form(...), next: str = Form("/runs")) -> Response:
        token = app.state.sessions.login(key)
        if token is None:
            return login_page(request, next, "Unknown or revoked key.", status_code=401)
        app.state.sessions.logout(request.cookies.get(COOKIE))  # a new login replaces the old session
        response = RedirectResponse(_local(next), status_code=303)
        set_cookie(request, response, COOKIE, token, max_age=int(settings.session_hours * 3600))
        response.delete_cookie(csrf.LOGIN_COOKIE, path="/login")
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
