"""Per-key rate limits for `lmforge serve`: a token bucket per key, in memory."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from lmforge.serve.key_rules import KeyInfo, parse_rate


@dataclass
class _Bucket:
    rate: str
    tokens: float
    stamp: float


class RateLimiter:
    """A token bucket per key: a ``COUNT/PERIOD`` key may burst COUNT requests, refilled at COUNT per PERIOD.

    Buckets live in memory, so limits are per server process; that keeps the hot path off the
    database, and a restart simply hands every key a full bucket. With several workers the
    server uses `SharedRateLimiter` (`ratelimit_shared.py`) instead, which falls back to this.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[object, _Bucket] = {}

    def check(self, key: KeyInfo) -> float | None:
        """Take one token: None when allowed, else the seconds until one is free (for ``Retry-After``)."""
        if key.rate is None:
            return None
        capacity, period = parse_rate(key.rate)
        return self.take(key.id, key.rate, capacity, capacity / period)

    def take(self, bucket_id: object, rate: str, capacity: float, per_second: float) -> float | None:
        """Take one token from bucket `bucket_id` (refilled afresh when its `rate` changes):
        None when allowed, else the seconds until one is free."""
        with self._lock:
            now = self.clock()  # read under the lock so time never runs backwards for a bucket
            bucket = self._buckets.get(bucket_id)
            if bucket is None or bucket.rate != rate:
                bucket = self._buckets[bucket_id] = _Bucket(rate, float(capacity), now)
            bucket.tokens = min(float(capacity), bucket.tokens + (now - bucket.stamp) * per_second)
            bucket.stamp = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return None
            return (1.0 - bucket.tokens) / per_second

    def forget(self, bucket_id: object) -> None:
        """Drop a bucket (its next use starts full)."""
        with self._lock:
            self._buckets.pop(bucket_id, None)

    def __len__(self) -> int:
        return len(self._buckets)

    def oldest(self) -> object:
        """The id of the bucket made first."""
        with self._lock:
            return next(iter(self._buckets))
