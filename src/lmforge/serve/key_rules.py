"""What an API key is and may do, apart from where keys are stored (`serve/keys.py`).

A key is a bearer secret shaped ``lmf_<prefix>_<random>``. Only the SHA-256 of the secret
is stored, so a copied database does not hand out working keys; the 8-character prefix is
kept in the clear so people can tell keys apart in `lmforge keys list`.

Scopes, i.e. what a key may call (:func:`allows` is the one place this rule lives):

* ``predict``: prediction routes only.
* ``feedback``: feedback routes *and* prediction routes, because a client that reports
  feedback on predictions has to be able to make them.
* ``admin``: everything, admin routes included (keys, reloads, the audit log).

No database and no web framework here: the CLI validates a scope or rate with these before
it opens (and so creates) a database.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal, cast, get_args

from lmforge.errors import LmforgeError

Scope = Literal["predict", "feedback", "admin"]
SCOPES: tuple[str, ...] = get_args(Scope)
SECRET_PREFIX = "lmf_"
# What each scope may call; see the module docstring for why feedback includes predict.
_GRANTS: dict[str, frozenset[str]] = {
    "predict": frozenset({"predict"}),
    "feedback": frozenset({"feedback", "predict"}),
    "admin": frozenset(SCOPES),
}
_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE_RE = re.compile(r"(\d+)/([smh])")
_RATE_FORMS = "COUNT/s, COUNT/m or COUNT/h with COUNT >= 1, e.g. 50/s, 600/m, 10/h"


class ApiKeyError(LmforgeError):
    """A bad scope, rate or key reference given by the user."""

    headline = "api key error"


@dataclass(frozen=True)
class KeyInfo:
    """One key as listed: everything but the secret (never stored) and its hash. Times are UTC ISO-8601."""

    id: int
    name: str
    prefix: str
    scope: str
    rate: str | None
    created_at: str
    revoked_at: str | None = None
    last_used_at: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True)
class CreatedKey:
    """A new key and its plaintext secret: the only time the secret exists outside the client."""

    info: KeyInfo
    secret: str = field(repr=False)  # so a logged or printed CreatedKey does not leak the key


def check_scope(scope: str) -> Scope:
    """Validate a scope given as plain text (CLI, HTTP) before it reaches the store."""
    if scope not in SCOPES:
        raise ApiKeyError(f"scope '{scope}' is not valid", hint=f"use one of {', '.join(SCOPES)}")
    return cast(Scope, scope)


@functools.lru_cache(maxsize=256)  # parsed on every rate-limited request
def parse_rate(rate: str) -> tuple[int, float]:
    """Turn ``"50/s"`` into ``(50, 1.0)``: the burst size and the seconds one full refill takes."""
    match = _RATE_RE.fullmatch(rate.strip())
    if match is None or int(match.group(1)) < 1:
        raise ApiKeyError(f"rate '{rate}' is not valid", hint=f"use {_RATE_FORMS}")
    return int(match.group(1)), _PERIODS[match.group(2)]


def allows(key: KeyInfo, needed: str) -> bool:
    """Whether `key` may call a route that needs scope `needed` (rule in the module docstring)."""
    if needed not in _GRANTS:  # a typo in the server's route table, not a user error
        raise ValueError(f"unknown scope {needed!r}; expected one of {SCOPES}")
    return not key.revoked and needed in _GRANTS.get(key.scope, frozenset())


def new_secret() -> tuple[str, str]:
    """A fresh ``(prefix, secret)``; the prefix is hex, so it never holds the ``_`` separator."""
    prefix = secrets.token_hex(4)
    return prefix, f"{SECRET_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"


def digest(secret: str) -> str:
    """What the store keeps of a secret (and looks keys up by)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def utc_now() -> str:
    """Timestamps as the store has always written them: UTC ISO-8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
