"""Per-device token buckets (sans-IO: the time is passed in by whoever holds the clock).

A device may send ``burst`` alerts at once, then one every ``1 / rate`` seconds. A panic app
sends a handful of alerts in an emergency; a device sending hundreds is broken or stolen, and
must not starve the center's database or its operators.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["RateLimiter"]


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets by key. ``take(key, now)`` returns 0 when allowed, else the seconds to wait.

    Idle buckets that have refilled are forgotten (``max_keys`` bounds the memory even when
    they have not).
    """

    def __init__(self, burst: float, rate: float, max_keys: int = 100_000) -> None:
        if burst < 1 or rate <= 0:
            raise ValueError("burst must be >= 1 and rate > 0")
        self.burst = float(burst)
        self.rate = float(rate)
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, now: float) -> float:
        """Spend one token of ``key``'s bucket at time ``now``; 0.0 if allowed, else retry-after."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        else:
            # A clock that steps back never refills (nor drains) a bucket.
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
            bucket.updated = max(bucket.updated, now)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def wait(self, key: str, now: float) -> float:
        """What ``take`` would answer, without spending a token (0.0: a token is there)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        tokens = min(self.burst, bucket.tokens + max(0.0, now - bucket.updated) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def retry_after(self, wait: float) -> int:
        """Whole seconds to wait before trying again (at least 1) for a wait."""
        return max(1, math.ceil(wait))

    def _prune(self, now: float) -> None:
        full = [k for k, b in self._buckets.items()
                if b.tokens + (now - b.updated) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:
            # Still full of busy buckets: forget the oldest half rather than grow without bound.
            for key in sorted(self._buckets, key=lambda k: self._buckets[k].updated)[
                    : self.max_keys // 2]:
                del self._buckets[key]
