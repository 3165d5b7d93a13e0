"""Cross-site request forgery defence for the UI, and what it believes about the connection.

SameSite=Strict alone is not enough (an older browser, a sibling subdomain, a misconfigured
proxy), so every state-changing request (POST, PUT, PATCH, DELETE) passes two more checks,
both in `guard`, a dependency of the whole app, so a new route cannot forget them:

* its Origin (or, without one, its Referer) must be this server's own origin;
* it must carry the session's CSRF token, as the `csrf_token` form field every form embeds
  or the `X-CSRF-Token` header that scripts copy from the page's `<meta name="csrf-token">`;
  compared in constant time. `/login` has no session yet: its form carries the token of a
  short-lived login cookie instead (double submit).

Behind a TLS proxy the server sees plain http; `X-Forwarded-Proto` and `X-Forwarded-Host`
are believed only from the peers listed in `ui.trusted_proxies`.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from fastapi import Request

from lmforge.config import UiConfig
from lmforge.ui.session import LoginRequired, Sessions

UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HEADER = "X-CSRF-Token"
FIELD = "csrf_token"
LOGIN_PATH = "/login"
LOGIN_COOKIE = "lmforge_login"
LOGIN_COOKIE_SECONDS = 3600
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


class CsrfRefused(Exception):
    """A state-changing request that did not prove it came from this UI's own pages (403)."""


def _trusted(request: Request, settings: UiConfig) -> bool:
    peer = request.client.host if request.client else ""
    return "*" in settings.trusted_proxies or peer in settings.trusted_proxies


def _forwarded(request: Request, settings: UiConfig, header: str) -> str | None:
    if not _trusted(request, settings):
        return None
    value = request.headers.get(header, "").split(",")[0].strip()  # the first proxy's view
    return value or None


def scheme(request: Request, settings: UiConfig) -> str:
    """`https` or `http`, as the browser sees it (a trusted proxy may say so)."""
    forwarded = (_forwarded(request, settings, "x-forwarded-proto") or "").lower()
    return forwarded if forwarded in ("http", "https") else request.url.scheme


def own_origin(request: Request, settings: UiConfig) -> str:
    host = _forwarded(request, settings, "x-forwarded-host") or request.headers.get("host", "")
    return f"{scheme(request, settings)}://{host}".lower()


def secure_cookie(request: Request, settings: UiConfig) -> bool:
    """Whether cookies set in answer to `request` are marked Secure (`ui.secure_cookies`)."""
    if settings.secure_cookies != "auto":
        return settings.secure_cookies == "always"
    return scheme(request, settings) == "https"


def new_login_token() -> str:
    return secrets.token_urlsafe(32)


def check_origin(request: Request, settings: UiConfig) -> None:
    """Refuse a request whose Origin (else Referer) is another site; neither header: token only."""
    origin = request.headers.get("origin")
    if origin is None and (referer := request.headers.get("referer")):
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    if origin is None:
        return  # some privacy tools strip both; the token check below still stands
    expected = own_origin(request, settings)
    if origin.lower() != expected:
        raise CsrfRefused(
            f"this request came from {origin}, not from this site ({expected}); behind a proxy, "
            "forward Host and X-Forwarded-Proto and list it in ui.trusted_proxies"
        )


async def submitted_token(request: Request) -> str:
    """The token the request carries: the header, else the form field (the body FastAPI has
    already read and cached for a form route, so this costs no second read)."""
    token = request.headers.get(HEADER)
    if token:
        return token
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() in FORM_TYPES:
        value = (await request.form()).get(FIELD)
        return value if isinstance(value, str) else ""
    return ""


async def guard(request: Request) -> None:
    """A dependency of every route: the checks of the module docstring for unsafe methods."""
    sessions: Sessions = request.app.state.sessions
    settings: UiConfig = request.app.state.ui_settings
    if not sessions.auth and request.url.hostname not in LOOPBACK:
        # --no-auth makes every visitor admin: a page reached under another name (DNS
        # rebinding of an attacker's domain to 127.0.0.1) must not be served at all.
        raise CsrfRefused(f"--no-auth answers only to 127.0.0.1 or localhost, not {request.url.hostname}")
    if request.method not in UNSAFE:
        return
    check_origin(request, settings)
    if request.url.path == LOGIN_PATH:
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not expected:
            raise CsrfRefused("the login form has expired; reload the login page and try again")
    else:
        session = sessions.current(request)
        if session is None:
            raise LoginRequired()  # nothing is done; after the login the user can try again
        expected = session.csrf
    given = await submitted_token(request)
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise CsrfRefused("this form has expired or came from another page; reload the page and try again")
