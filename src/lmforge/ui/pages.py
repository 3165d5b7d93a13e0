"""Rendering a page of the UI: the Jinja2 templates shipped in the package and `page`, which
every view uses. Its own module so views import it at the top without importing the app
(`ui/app.py` imports the views to include their routers: the other way round was a cycle)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader

HERE = Path(__file__).parent

# Autoescape everything: the `.html.j2` names are not in Jinja's default list, and pages show
# user data (texts, labels, error messages) that must never become markup.
templates = Jinja2Templates(
    env=Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=True)
)


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render `template` with the user and project every page shows in its header, and the
    session's CSRF token, which every form embeds and scripts send (see `csrf.py`)."""
    app = request.app
    session = app.state.sessions.current(request)
    return templates.TemplateResponse(
        request,
        template,
        {
            "user": session.user if session else None,
            "csrf_token": session.csrf if session else "",
            "project": app.state.project.config.project_name,
            **context,
        },
        status_code=status_code,
    )
