"""Logins for the UI: an API key (the same keys and scopes as `lmforge serve`) is exchanged
for a random session token in an HttpOnly, SameSite=Strict cookie; the key itself never
lives in the browser. Read-only pages need `predict`, actions need `admin`."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request

COOKIE = "lmforge_session"
SESSION_SECONDS = 12 * 3600


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


class Sessions:
    """Session tokens in memory: a restart logs everyone out, which is the safe default."""

    def __init__(self, keys: str | Path, *, auth: bool = True) -> None:
        """`keys`: the server's keys database, a SQLAlchemy URL or a SQLite file."""
        from lmforge.serve.keys import KeyStore

        self.keys = KeyStore(keys)
        self.auth = auth
        self._live: dict[str, tuple[float, User]] = {}
        self._lock = threading.Lock()

    def login(self, secret: str) -> str | None:
        """A session token for a valid key, None for a wrong or revoked one (audited)."""
        key = self.keys.authenticate(secret.strip())
        if key is None:
            self.keys.audit("ui.login.denied", None, "/login", "unknown or revoked key")
            return None
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._live[token] = (time.time() + SESSION_SECONDS, User(key.name, key.scope, key.id))
        self.keys.audit("ui.login", key, "/login")
        return token

    def logout(self, token: str | None) -> None:
        with self._lock:
            self._live.pop(token or "", None)

    def user(self, request: Request) -> User | None:
        if not self.auth:
            return User("local", "admin", None)
        token = request.cookies.get(COOKIE, "")
        with self._lock:
            found = self._live.get(token)
            if found and found[0] < time.time():
                self._live.pop(token, None)
                found = None
        return found[1] if found else None

    def audit(self, action: str, user: User, target: str, detail: str = "") -> None:
        self.keys.audit(action, None, target, f"ui user {user.name}: {detail}".strip(": "))


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
