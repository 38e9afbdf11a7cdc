"""Bounded work at the edge: JSON parsing with a depth limit, the per-person rate limit, and
the server-wide queue of diagnoses.

Per-person rate limit on diagnoses: a token bucket per person.

Each person's bucket holds `count` tokens and refills continuously at `count / window` tokens per
second, so a burst of `count` diagnoses is fine and the long-run rate is `count` per `window`.
A diagnosis takes one token. When none is left, the person is told how long to wait.

The buckets live in this process. With several replicas behind a load balancer each replica
limits on its own, so the effective limit is at most `count × replicas` — enough to stop a
runaway loop, which is what this is for.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
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


# --- the server-wide queue of diagnoses -------------------------------------------------------


class QueueClosed(Exception):
    """The server is shutting down: a queued diagnosis will not start."""


class QueueFull(Exception):
    """Too many diagnoses are waiting already."""


@dataclass(eq=False)
class Ticket:
    """One diagnosis's place: `ahead` is how many wait before it (0 and `ready`: it runs)."""

    queue: RunQueue
    ready: bool = False
    started: float | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def ahead(self) -> int:
        return 0 if self.ready else self.queue.position(self)

    async def wait(self, patience: float | None = None) -> bool:
        """Until this ticket may run (True), its position changed, or `patience` s (False)."""
        if self.ready:
            return True
        if self.queue.closed:
            raise QueueClosed
        self._changed.clear()
        try:
            async with asyncio.timeout(patience):
                await self._changed.wait()
        except TimeoutError:
            pass
        if self.queue.closed and not self.ready:
            raise QueueClosed
        return self.ready

    def release(self) -> None:
        """Done (or gave up waiting): free the slot or the place in the line."""
        self.queue._release(self)


class RunQueue:
    """At most `limit` diagnoses run at once in this process; the rest wait in line (FIFO).

    A diagnosis takes a `Ticket` (`join`); when no slot is free it waits and can tell the
    person how many are ahead. `close` (shutdown) refuses new work and wakes every waiter with
    `QueueClosed`; `drain_by` says when the running ones must be done by their deadline.
    """

    def __init__(
        self, limit: int, *, max_waiting: int = 1000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if limit < 1:
            raise ValueError("the queue needs at least one slot")
        self.limit = limit
        self.max_waiting = max_waiting
        self.closed = False
        self._clock = clock
        self._running: set[Ticket] = set()
        self._waiting: deque[Ticket] = deque()

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def join(self) -> Ticket:
        if self.closed:
            raise QueueClosed
        ticket = Ticket(self)
        if len(self._running) < self.limit and not self._waiting:
            self._start(ticket)
        elif len(self._waiting) >= self.max_waiting:
            raise QueueFull
        else:
            self._waiting.append(ticket)
        return ticket

    def position(self, ticket: Ticket) -> int:
        try:
            return self._waiting.index(ticket)
        except ValueError:
            return 0

    def earliest_start(self) -> float | None:
        """When the oldest running diagnosis started (monotonic), None when none runs."""
        starts = [t.started for t in self._running if t.started is not None]
        return min(starts) if starts else None

    def close(self) -> None:
        """Refuse new work; every waiter gets `QueueClosed`. Running ones carry on."""
        self.closed = True
        waiting, self._waiting = list(self._waiting), deque()
        for ticket in waiting:
            ticket._changed.set()

    def _start(self, ticket: Ticket) -> None:
        ticket.ready = True
        ticket.started = self._clock()
        self._running.add(ticket)
        ticket._changed.set()

    def _release(self, ticket: Ticket) -> None:
        if ticket in self._running:
            self._running.discard(ticket)
        else:
            try:
                self._waiting.remove(ticket)
            except ValueError:
                return
        moved = False
        while self._waiting and len(self._running) < self.limit and not self.closed:
            self._start(self._waiting.popleft())
            moved = True
        if moved or ticket.ready is False:
            for waiter in self._waiting:  # everyone behind moved up
                waiter._changed.set()
