"""The check of the Bearer key, its scope and its rate.

Who the caller is (`identify`: 401, or 400 for ambiguous credentials) is settled by the
request guard (`serve/guard.py`) before the body is read; what the key may do (scope: 403,
rate: 429) by the `context.require(scope)` dependency of each route, through `check`.

Denied attempts and admin actions go to the audit log (denials through a per-caller token
bucket, `serve/denials.py`, so a flood cannot turn into as many database writes); a key's use
updates its `last_used_at` (an audit row per prediction would make the log the bottleneck).

A successful lookup is remembered for `CACHE_SECONDS`, so a busy client costs one database
read-and-write every 2 s instead of one per request. What that means for a revocation:

- revoked through this server (`POST /v1/admin/keys/revoke`, or `Authorizer.revoke` in its
  process): refused from the very next request, because the revocation drops the key from
  this cache (and a lookup that raced with it is not cached);
- revoked elsewhere (`lmforge keys revoke`, another worker process or host sharing
  ``serve.keys_url``): refused by this server within `CACHE_SECONDS` (2 s), once its cached
  lookup expires.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request

from lmforge.serve.denials import DenialThrottle, with_held_back
from lmforge.serve.ratelimit import RateLimiter

log = logging.getLogger("lmforge.serve")
CACHE_SECONDS = 2.0
# Where the request guard leaves the caller's key in the ASGI scope for `check`.
KEY_IN_SCOPE = "lmforge.key"


class Anonymous:
    """The caller when auth is off (`--no-auth`, loopback only)."""

    id = None
    name = "anonymous"
    scope = "admin"


class Authorizer:
    """Checks keys against the key store, with a short cache and per-key rate limits."""

    def __init__(self, keys: str | Path, *, enabled: bool = True, shared_rates: bool = False) -> None:
        """`keys`: the keys database, a SQLAlchemy URL or a SQLite file; `shared_rates`: token
        buckets in that database (one limit across workers and hosts), else in memory."""
        from lmforge.serve.keys import KeyStore, RateLimiter
        from lmforge.serve.ratelimit_shared import SharedRateLimiter

        self.enabled = enabled
        self.keys = KeyStore(keys)
        self.limiter: RateLimiter | SharedRateLimiter = (
            SharedRateLimiter(self.keys.url) if shared_rates else RateLimiter()
        )
        self._cache: dict[str, tuple[float, Any]] = {}  # sha256(secret) -> (expiry, KeyInfo)
        self._revocations = 0  # bumped by every revocation through this server
        self.denials = DenialThrottle()

    async def _authenticate(self, secret: str) -> Any:
        digest = hashlib.sha256(secret.encode()).hexdigest()
        hit = self._cache.get(digest)
        now = time.monotonic()
        if hit and hit[0] > now:
            return hit[1]
        seen = self._revocations
        key = await asyncio.to_thread(self.keys.authenticate, secret)
        # A revocation while the database was read may have found this key still live: not cached.
        if key is not None and seen == self._revocations:
            if len(self._cache) > 10_000:  # bounded: random wrong keys are never cached anyway
                self._cache.clear()
            self._cache[digest] = (now + CACHE_SECONDS, key)
        return key

    async def identify(self, authorization: Sequence[str], route: str) -> Any:
        """The key of a request from its ``Authorization`` header values (`Anonymous` with auth
        off); raises HTTPException 400 for several headers, 401 for no key or an unknown one."""
        if not self.enabled:
            return Anonymous()
        if len(authorization) > 1:  # which one counts would depend on who reads the headers
            await self._deny(None, route, "several Authorization headers")
            raise HTTPException(400, "send one Authorization header, not several")
        header = authorization[0] if authorization else ""
        secret = header[7:].strip() if header[:7].lower() == "bearer " else ""
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
        return key

    async def check(self, request: Request, scope: str) -> Any:
        """The request's key (or `Anonymous` with auth off); 400, 401, 403 or 429 when refused.
        Routes reach this through `context.require(scope)`; the key the request guard found
        is reused, so the key store is not asked twice."""
        key = request.scope.get(KEY_IN_SCOPE)
        if key is None:
            key = await self.identify(request.headers.getlist("authorization"), request.url.path)
        if isinstance(key, Anonymous):
            return key
        route = request.url.path
        if not self.keys.allows(key, scope):
            await self._deny(key, route, f"scope {key.scope} lacks {scope}")
            raise HTTPException(403, f"this key has scope '{key.scope}'; {route} needs '{scope}'")
        if key.rate is None:
            wait = None
        elif isinstance(self.limiter, RateLimiter):
            wait = self.limiter.check(key)
        else:  # a database transaction: off the event loop
            wait = await asyncio.to_thread(self.limiter.check, key)
        if wait is not None:
            raise HTTPException(
                429,
                f"rate limit of key '{key.name}' ({key.rate}) exceeded",
                headers={"Retry-After": str(max(1, round(wait + 0.5)))},
            )
        return key

    async def revoke(self, ref: str) -> Any:
        """Revoke a key (by id, prefix or name) and forget it here at once: this server refuses
        it from the next request on. Raises `ApiKeyError` for no such key or an ambiguous ref."""
        self._revocations += 1  # before the write: a lookup running meanwhile must not cache it
        info = await asyncio.to_thread(self.keys.revoke, ref)
        self.forget(info.id)
        return info

    def forget(self, key_id: int) -> None:
        """Drop key `key_id` from the cache: its next use reads the key store."""
        self._revocations += 1
        for digest, (_, key) in list(self._cache.items()):
            if key.id == key_id:
                del self._cache[digest]

    async def _deny(self, key: Any, route: str, why: str) -> None:
        held = self.denials.admit(getattr(key, "id", None))
        if held is not None:
            await asyncio.to_thread(self.keys.audit, "denied", key, route, with_held_back(why, held))

    def audit(self, action: str, key: Any, target: str, detail: str = "") -> None:
        self.keys.audit(action, None if isinstance(key, Anonymous) else key, target, detail)

    def audit_log(self, limit: int) -> list[dict[str, Any]]:
        return list(self.keys.audit_log(limit))
