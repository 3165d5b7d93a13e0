"""The check of the Bearer key, its scope and its rate that every route runs (through the
`context.require(scope)` dependency).

Denied attempts and admin actions go to the audit log; a key's use updates its
`last_used_at` (an audit row per prediction would make the log the bottleneck).
A successful lookup is remembered for `CACHE_SECONDS`, so a busy client costs one database
read-and-write every 2 s instead of one per request; a revoked key is refused within 2 s.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request

log = logging.getLogger("lmforge.serve")
CACHE_SECONDS = 2.0


class Anonymous:
    """The caller when auth is off (`--no-auth`, loopback only)."""

    id = None
    name = "anonymous"
    scope = "admin"


class Authorizer:
    """Checks keys against the key store, with a short cache and per-key rate limits."""

    def __init__(self, keys: str | Path, *, enabled: bool = True) -> None:
        """`keys`: the keys database, a SQLAlchemy URL or a SQLite file."""
        from lmforge.serve.keys import KeyStore, RateLimiter

        self.enabled = enabled
        self.keys = KeyStore(keys)
        self.limiter = RateLimiter()
        self._cache: dict[str, tuple[float, Any]] = {}  # sha256(secret) -> (expiry, KeyInfo)

    async def _authenticate(self, secret: str) -> Any:
        digest = hashlib.sha256(secret.encode()).hexdigest()
        hit = self._cache.get(digest)
        now = time.monotonic()
        if hit and hit[0] > now:
            return hit[1]
        key = await asyncio.to_thread(self.keys.authenticate, secret)
        if key is not None:
            if len(self._cache) > 10_000:  # bounded: random wrong keys are never cached anyway
                self._cache.clear()
            self._cache[digest] = (now + CACHE_SECONDS, key)
        return key

    async def check(self, request: Request, scope: str) -> Any:
        """The request's key (or `Anonymous` with auth off); 401, 403 or 429 when refused.
        Routes reach this through `context.require(scope)`."""
        if not self.enabled:
            return Anonymous()
        header = request.headers.get("authorization", "")
        secret = header[7:].strip() if header[:7].lower() == "bearer " else ""
        route = request.url.path
        if not secret:
            await self._deny(None, route, "no key")
            raise HTTPException(
                401,
                "missing API key: send 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        key = await self._authenticate(secret)
        if key is None:
            await self._deny(None, route, "unknown or revoked key")
            raise HTTPException(401, "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
        if not self.keys.allows(key, scope):
            await self._deny(key, route, f"scope {key.scope} lacks {scope}")
            raise HTTPException(403, f"this key has scope '{key.scope}'; {route} needs '{scope}'")
        wait = self.limiter.check(key)
        if wait is not None:
            raise HTTPException(
                429,
                f"rate limit of key '{key.name}' ({key.rate}) exceeded",
                headers={"Retry-After": str(max(1, round(wait + 0.5)))},
            )
        return key

    async def _deny(self, key: Any, route: str, why: str) -> None:
        await asyncio.to_thread(self.keys.audit, "denied", key, route, why)

    def audit(self, action: str, key: Any, target: str, detail: str = "") -> None:
        self.keys.audit(action, None if isinstance(key, Anonymous) else key, target, detail)

    def audit_log(self, limit: int) -> list[dict[str, Any]]:
        return list(self.keys.audit_log(limit))
