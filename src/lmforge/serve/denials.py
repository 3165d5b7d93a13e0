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
from dataclasses import dataclass

BURST = 20
PER_SECOND = 2.0
# Callers with a bucket; past this the oldest are dropped (their pending counts go with the
# next entry written for a caller that has one, so the totals stay right).
MAX_CALLERS = 10_000


@dataclass
class _Bucket:
    tokens: float
    updated: float
    held_back: int = 0


class DenialThrottle:
    """Decides whether a denial is written, and with how many held back before it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._buckets: dict[int | None, _Bucket] = {}
        self._orphaned = 0  # held-back counts of buckets dropped at MAX_CALLERS

    def admit(self, caller: int | None) -> int | None:
        """None to skip writing this denial (it is counted); else how many denials of this
        caller were held back since its previous row (0 when none)."""
        now = self.clock()
        bucket = self._buckets.get(caller)
        if bucket is None:
            if len(self._buckets) >= MAX_CALLERS:
                oldest = next(iter(self._buckets))
                self._orphaned += self._buckets.pop(oldest).held_back
            bucket = self._buckets[caller] = _Bucket(tokens=BURST, updated=now)
        bucket.tokens = min(BURST, bucket.tokens + (now - bucket.updated) * PER_SECOND)
        bucket.updated = now
        if bucket.tokens < 1:
            bucket.held_back += 1
            return None
        bucket.tokens -= 1
        held, bucket.held_back = bucket.held_back + self._orphaned, 0
        self._orphaned = 0
        return held


def with_held_back(detail: str, held: int) -> str:
    """`detail` with the count of denials written in its stead."""
    if not held:
        return detail
    return f"{detail} (+{held} more refused since the previous entry)"
