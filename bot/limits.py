"""Bounded work at the edge: JSON parsing with a depth limit, and the per-person rate limit.
(The server-wide queue of diagnoses is `dialogs.queue`.)

Per-person rate limit on diagnoses: a token bucket per person.

Each person's bucket holds `count` tokens and refills continuously at `count / window` tokens per
second, so a burst of `count` diagnoses is fine and the long-run rate is `count` per `window`.
A diagnosis takes one token. When none is left, the person is told how long to wait.

The buckets live in this process. With several replicas behind a load balancer each replica
limits on its own, so the effective limit is at most `count × replicas` — enough to stop a
runaway loop, which is what this is for.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# --- JSON from strangers ----------------------------------------------------------------------

MAX_JSON_DEPTH = 64  # Slack views and Teams activities nest about 10 deep; 64 is generous
# A string runs to its closing quote, or to the end when there is none (the parser stops
# there too), so each byte is looked at once: linear time whatever the input.
_JSON_STRING = re.compile(rb'"(?>[^"\\]+|\\.|\\\Z)*+(?:"|\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_DELTA = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class BadBody(ValueError):
    """A request body we refuse; `status` and `code` are for the JSON answer."""

    def __init__(self, message: str, *, status: int = 400, code: str = "bad_request") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def json_depth(data: bytes) -> int:
    """How deep arrays and objects nest in `data`, without parsing it (linear time).

    Brackets inside strings do not count. Sound for the parser that reads the same bytes: a
    bracket the parser would reach before any syntax error is counted.
    """
    brackets = _NOT_BRACKET.sub(b"", _JSON_STRING.sub(b"", data))
    if not brackets:
        return 0
    return max(itertools.accumulate(map(_DELTA.__getitem__, brackets)))


def text_of(data: bytes) -> str:
    """The body as text: strict UTF-8, or a 400."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadBody("The body is not UTF-8 text.") from None


def parse_json_object(data: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """A JSON object from untrusted bytes: not UTF-8, not JSON, too deep or not an object -> 400.

    The depth is bounded *before* parsing, so a body nested 100 000 deep never reaches the
    recursive parser (RecursionError would otherwise escape as a 500).
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    text = text_of(raw) if isinstance(data, bytes) else data
    if json_depth(raw) > max_depth:
        raise BadBody(f"The JSON nests deeper than {max_depth} levels.")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise BadBody("The body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise BadBody("The JSON body is not an object.")
    return value


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
