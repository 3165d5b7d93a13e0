"""How many refused requests reach the audit log: all of them, until a flood.

Every 400/401/403 used to write one audit row, so a client without a key could make the
server write to the keys database as fast as it could send requests (disk growth, and write
contention with the audit rows of real admin actions). Each caller (a key, or every keyless
caller together) gets a token bucket of audit rows: `BURST` at once, `PER_SECOND` after. The
denials a bucket holds back are counted, not lost: the caller's next audit row carries the
count ("no key (+312 more refused since the previous entry)").
"""

from __future__ import annotations

import time
from collections.abc import Callable

from lmforge.serve.ratelimit import RateLimiter

BURST = 20
PER_SECOND = 2.0
# Callers with a bucket; past this the oldest are dropped (their pending counts go with the
# next entry written for a caller that has one, so the totals stay right).
MAX_CALLERS = 10_000


class DenialThrottle:
    """Decides whether a denial is written, and with how many held back before it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets = RateLimiter(clock)
        self._held_back: dict[object, int] = {}
        self._orphaned = 0  # held-back counts of callers forgotten at MAX_CALLERS

    @property
    def clock(self) -> Callable[[], float]:
        return self._buckets.clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:  # tests move time by hand
        self._buckets.clock = clock

    def admit(self, caller: int | None) -> int | None:
        """None to skip writing this denial (it is counted); else how many denials of this
        caller were held back since its previous row (0 when none)."""
        if caller not in self._held_back and len(self._buckets) >= MAX_CALLERS:
            oldest = self._buckets.oldest()
            self._buckets.forget(oldest)
            self._orphaned += self._held_back.pop(oldest, 0)
        self._held_back.setdefault(caller, 0)
        if self._buckets.take(caller, "denials", BURST, PER_SECOND) is not None:
            self._held_back[caller] += 1
            return None
        held = self._held_back[caller] + self._orphaned
        self._held_back[caller] = self._orphaned = 0
        return held


def with_held_back(detail: str, held: int) -> str:
    """`detail` with the count of denials written in its stead."""
    if not held:
        return detail
    return f"{detail} (+{held} more refused since the previous entry)"
