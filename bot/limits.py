"""Per-person rate limit on diagnoses: a token bucket per person.

Each person's bucket holds `count` tokens and refills continuously at `count / window` tokens per
second, so a burst of `count` diagnoses is fine and the long-run rate is `count` per `window`.
A diagnosis takes one token. When none is left, the person is told how long to wait.

The buckets live in this process. With several replicas behind a load balancer each replica
limits on its own, so the effective limit is at most `count × replicas` — enough to stop a
runaway loop, which is what this is for.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: float = 0.0  # seconds until one token is back (0 when allowed)


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    MAX_PEOPLE = 100_000  # forget full buckets beyond this many people (memory bound)

    def __init__(
        self,
        count: int,
        window: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if count < 1 or window <= 0:
            raise ValueError("rate limit needs count >= 1 and window > 0")
        self.count = count
        self.window = window
        self._rate = count / window
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def _refilled(self, key: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.count), stamp=now)
            if len(self._buckets) >= self.MAX_PEOPLE:
                self._prune(now)
            self._buckets[key] = bucket
        else:
            elapsed = max(0.0, now - bucket.stamp)
            bucket.tokens = min(float(self.count), bucket.tokens + elapsed * self._rate)
            bucket.stamp = now
        return bucket

    def _prune(self, now: float) -> None:
        full = [
            k
            for k, b in self._buckets.items()
            if b.tokens + (now - b.stamp) * self._rate >= self.count
        ]
        for k in full:
            del self._buckets[k]

    def peek(self, key: str) -> Verdict:
        """Would a diagnosis be allowed now? Takes nothing."""
        bucket = self._refilled(key)
        if bucket.tokens >= 1.0:
            return Verdict(True)
        return Verdict(False, (1.0 - bucket.tokens) / self._rate)

    def take(self, key: str) -> Verdict:
        """Take one token if there is one."""
        verdict = self.peek(key)
        if verdict.allowed:
            self._buckets[key].tokens -= 1.0
        return verdict

    def message(self, verdict: Verdict) -> str:
        """The friendly sentence for a refused diagnosis."""
        minutes = max(1, round(self.window / 60))
        return (
            f"You've run {self.count} diagnoses in the last {minutes} minute"
            f"{'s' if minutes != 1 else ''} — try again in {_human(verdict.retry_after)}."
        )


def _human(seconds: float) -> str:
    seconds = max(1, math.ceil(seconds - 1e-6))  # 180.0000001 s is "3 minutes", not 4
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
