"""The server-wide line of diagnoses: at most N run at once, the rest wait their turn.

Pure asyncio, no I/O: `dialogs.flow.Conversation` takes a ticket before a diagnosis runs and,
while it waits, tells the person how many are ahead ("queued, 3 ahead"). Shutdown closes the
line: waiters are told at once (`QueueClosed`), running diagnoses carry on to their deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


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
    _woken: asyncio.Event = field(default_factory=asyncio.Event)  # ready, or the line closed

    @property
    def ahead(self) -> int:
        return 0 if self.ready else self.queue.position(self)

    async def wait(self, patience: float | None = None) -> bool:
        """Until this ticket may run (True) or `patience` seconds passed (False); the caller
        looks at `ahead` in between, so a long line is not re-announced at every move.
        Raises QueueClosed when the server shuts down first."""
        if not self.ready and not self.queue.closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(patience):
                    await self._woken.wait()
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
    `QueueClosed`; `latest_start` tells shutdown how long the running ones may still take.
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

    def latest_start(self) -> float | None:
        """When the newest running diagnosis started (monotonic), None when none runs."""
        starts = [t.started for t in self._running if t.started is not None]
        return max(starts) if starts else None

    def close(self) -> None:
        """Refuse new work; every waiter gets `QueueClosed`. Running ones carry on."""
        self.closed = True
        waiting, self._waiting = list(self._waiting), deque()
        for ticket in waiting:
            ticket._woken.set()

    def _start(self, ticket: Ticket) -> None:
        ticket.ready = True
        ticket.started = self._clock()
        self._running.add(ticket)
        ticket._woken.set()

    def _release(self, ticket: Ticket) -> None:
        if ticket in self._running:
            self._running.discard(ticket)
        else:
            try:
                self._waiting.remove(ticket)
            except ValueError:
                return
        while self._waiting and len(self._running) < self.limit and not self.closed:
            self._start(self._waiting.popleft())
