"""Logins for the UI: an API key (the same keys and scopes as `lmforge serve`) is exchanged
for a random session token in an HttpOnly, SameSite=Strict cookie; the key itself never
lives in the browser. Read-only pages need `predict`, actions need `admin`.

A session is only as good as the key behind it: every request re-reads that key from the
key store (one primary-key read), and a key that was revoked, deleted or given another scope
since the login ends the session at once, on every host that shares the keys database. A
session also ends after `ui.idle_minutes` without a request and `ui.session_hours` after the
login. Each session carries its own CSRF token (see `csrf.py`).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request

COOKIE = "lmforge_session"
# Sent by the pages' own polling scripts: a poll is not the user doing something, so it does not
# keep an idle session alive (a run page left open would otherwise never log out).
BACKGROUND = "X-Lmforge-Background"
SESSION_SECONDS = 12 * 3600  # the default of ui.session_hours
IDLE_SECONDS = 30 * 60  # the default of ui.idle_minutes
_NONE = object()  # "looked up, no session" in request.state (None would mean "not looked up")


class LoginRequired(Exception):
    """Raised by a page dependency; the app answers with a redirect to /login."""


class Forbidden(Exception):
    def __init__(self, needed: str, scope: str) -> None:
        super().__init__(f"this page needs a key with scope '{needed}'; you are logged in with '{scope}'")
        self.needed = needed


@dataclass(frozen=True)
class User:
    name: str
    scope: str
    key_id: int | None

    @property
    def is_admin(self) -> bool:
        return self.scope == "admin"


@dataclass
class Session:
    """One login: who, the token its forms must carry, and when it started and was last used
    (on the `Sessions.clock`, a monotonic clock: a change of the wall clock moves nothing)."""

    user: User
    csrf: str
    started: float
    seen: float


class Sessions:
    """Session tokens in memory: a restart logs everyone out, which is the safe default."""

    def __init__(
        self,
        keys: str | Path,
        *,
        auth: bool = True,
        idle_seconds: float = IDLE_SECONDS,
        lifetime_seconds: float = SESSION_SECONDS,
    ) -> None:
        """`keys`: the server's keys database, a SQLAlchemy URL or a SQLite file."""
        from lmforge.serve.keys import KeyStore

        self.keys = KeyStore(keys)
        self.auth = auth
        self.idle_seconds = idle_seconds
        self.lifetime_seconds = lifetime_seconds
        self.clock: Callable[[], float] = time.monotonic
        self._live: dict[str, Session] = {}
        self._lock = threading.Lock()
        # --no-auth: one visitor, the local admin; its token still keeps other sites' forms out.
        self._local = Session(User("local", "admin", None), secrets.token_urlsafe(32), 0.0, 0.0)

    def login(self, secret: str) -> str | None:
        """A session token for a valid key, None for a wrong or revoked one (audited)."""
        key = self.keys.authenticate(secret.strip())
        if key is None:
            self.keys.audit("ui.login.denied", None, "/login", "unknown or revoked key")
            return None
        token = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            self._sweep(now)
            self._live[token] = Session(
                User(key.name, key.scope, key.id), secrets.token_urlsafe(32), now, now
            )
        self.keys.audit("ui.login", key, "/login")
        return token

    def logout(self, token: str | None) -> None:
        with self._lock:
            self._live.pop(token or "", None)

    def current(self, request: Request) -> Session | None:
        """The request's live session, or None; looked up (and its key re-checked) once per request."""
        cached = getattr(request.state, "lmforge_session", None)
        if cached is None:
            token, touch = request.cookies.get(COOKIE, ""), BACKGROUND not in request.headers
            cached = self._lookup(token, touch=touch) if self.auth else self._local
            request.state.lmforge_session = cached if cached is not None else _NONE
        return None if cached is _NONE else cached

    def user(self, request: Request) -> User | None:
        session = self.current(request)
        return session.user if session else None

    def audit(self, action: str, user: User, target: str, detail: str = "") -> None:
        self.keys.audit(action, None, target, f"ui user {user.name}: {detail}".strip(": "))

    def _lookup(self, token: str, *, touch: bool) -> Session | None:
        now = self.clock()
        with self._lock:
            session = self._live.get(token)
            if session is None:
                return None
            if now - session.seen > self.idle_seconds or now - session.started > self.lifetime_seconds:
                self._live.pop(token, None)
                return None
        ended = self._key_changed(session.user)
        with self._lock:
            if ended:
                self._live.pop(token, None)
                return None
            if touch:
                session.seen = now
        return session

    def _key_changed(self, user: User) -> bool:
        """Whether the key behind `user` was revoked, deleted or re-scoped since the login (audited)."""
        if user.key_id is None:
            return False
        key = self.keys.get(user.key_id)
        if key is None:
            reason = "key no longer exists"
        elif key.revoked:
            reason = f"key revoked at {key.revoked_at}"
        elif key.scope != user.scope:
            reason = f"key scope changed from {user.scope} to {key.scope}"
        else:
            return False
        self.keys.audit("ui.session.ended", key, "", f"ui user {user.name}: {reason}")
        return True

    def _sweep(self, now: float) -> None:
        # Sessions nobody comes back to would otherwise stay in memory until a restart.
        for token, s in list(self._live.items()):
            if now - s.seen > self.idle_seconds or now - s.started > self.lifetime_seconds:
                del self._live[token]


def needs(scope: str) -> Any:
    """A dependency: the logged-in user, who must hold `scope` (admin holds every scope)."""
    from lmforge.serve.keys import KeyInfo, allows

    def dependency(request: Request) -> User:
        sessions: Sessions = request.app.state.sessions
        user = sessions.user(request)
        if user is None:
            raise LoginRequired()
        probe = KeyInfo(
            id=user.key_id or 0, name=user.name, prefix="", scope=user.scope, rate=None, created_at=""
        )
        if not allows(probe, scope):
            raise Forbidden(scope, user.scope)
        return user

    return dependency
