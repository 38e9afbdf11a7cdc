"""Background work after an ack: tracked, logged, and cancelled cleanly on shutdown.

A chat platform wants its answer in seconds (Slack: 3 s), a diagnosis takes up to the deadline.
Every piece of work that outlives a request goes through `TaskSupervisor.spawn`, never a bare
`create_task`: the supervisor keeps a strong reference (the event loop keeps only a weak one),
logs a crash with its name, calls `on_error` so the person sees an error card instead of
silence, and on shutdown cancels what is left and waits for it.

Acknowledge first, everything else after: while the server is answering Slack or Teams
(`serving`), new background work waits to start until no such request has been answered for
`QUIET_AFTER`, or at most `MAX_DEFER`, so a steady stream of requests cannot starve it. A burst
of commands is then acknowledged before the forms and cards it asked for take the event loop
(bench/ack.py). The quiet is counted from the end of the latest request: the event loop
answers a burst's requests one after another, so the count of requests being answered drops
to none between every two of them, and a timer counted from any earlier drop would let the
work in while the burst's last requests still wait (it did whenever a burst took longer than
`QUIET_AFTER` to answer, as on a loaded machine: in bench/ack.py its last acks came up to 5 x
later than bare slack-bolt's).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

log = logging.getLogger(__name__)

ErrorHook = Callable[[BaseException], Awaitable[None]]

QUIET_AFTER = 0.05  # seconds without a platform request before held-back work starts
MAX_DEFER = 0.5  # seconds new background work waits at most


class TaskSupervisor:
    def __init__(self, *, quiet_after: float = QUIET_AFTER, max_defer: float = MAX_DEFER) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._work: set[asyncio.Task[Any]] = set()  # the tasks `wait_idle` waits for
        self._coros: dict[asyncio.Task[Any], Coroutine[Any, Any, Any]] = {}
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.quiet_after = quiet_after
        self.max_defer = max_defer
        self._serving = 0  # platform requests being answered now
        self._quiet: asyncio.Event | None = None  # set once none has been answered for a while
        self._answered = 0.0  # loop time the latest platform request was answered
        self._timer: asyncio.TimerHandle | None = None  # the one pending quiet check

    @property
    def running(self) -> int:
        """Tasks still running, housekeeping included."""
        return len(self._tasks)

    @property
    def holding_back(self) -> bool:
        """Whether new background work waits now: a platform request is being answered, or
        one was within the last `quiet_after`."""
        return self._quiet is not None and not self._quiet.is_set()

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Around answering one platform request: new background work holds back."""
        if self._quiet is None:
            self._quiet = asyncio.Event()
        self._serving += 1
        self._quiet.clear()
        try:
            yield
        finally:
            self._serving -= 1
            loop = asyncio.get_running_loop()
            self._answered = loop.time()
            if not self._serving and self._timer is None:
                self._timer = loop.call_at(self._answered + self.quiet_after, self._maybe_quiet)

    def _maybe_quiet(self) -> None:
        """Quiet once no request is being answered and the latest ended `quiet_after` ago;
        otherwise look again then (a request still being answered re-arms it as it ends)."""
        self._timer = None
        if self._serving or self._quiet is None:
            return
        loop = asyncio.get_running_loop()
        due = self._answered + self.quiet_after
        if loop.time() < due:
            self._timer = loop.call_at(due, self._maybe_quiet)
        else:
            self._quiet.set()

    def spawn(
        self,
        work: Coroutine[Any, Any, Any],
        *,
        name: str,
        on_error: ErrorHook | None = None,
        housekeeping: bool = False,
    ) -> asyncio.Task[Any]:
        """Run `work` in the background. A crash is logged, then `on_error(exc)` is awaited.

        `housekeeping` marks a loop that runs for the server's life (e.g. purging old rows):
        cancelled at shutdown like the rest, but `wait_idle` does not wait for it.
        """
        if self._closing:
            work.close()
            raise RuntimeError("the server is shutting down")
        task = asyncio.get_running_loop().create_task(self._guard(work, name, on_error), name=name)
        self._tasks.add(task)
        self._coros[task] = work
        if not housekeeping:
            self._work.add(task)
            self._idle.clear()
        task.add_done_callback(self._forget)
        return task

    async def _guard(
        self, work: Coroutine[Any, Any, Any], name: str, on_error: ErrorHook | None
    ) -> None:
        try:
            quiet = self._quiet
            if quiet is not None and not quiet.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.max_defer):
                        await quiet.wait()
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("background task %s failed", name)
            if on_error is not None:
                try:
                    await on_error(exc)
                except Exception:
                    log.exception("error handler of background task %s failed too", name)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._work.discard(task)
        work = self._coros.pop(task, None)
        if work is not None and inspect.getcoroutinestate(work) == inspect.CORO_CREATED:
            work.close()  # cancelled before it ever ran: close it, or Python warns
        if not self._work:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no background work is left (tests and graceful drains)."""
        await self._idle.wait()

    async def close(self, *, grace: float = 0.0) -> None:
        """Refuse new work, give running work `grace` seconds, then cancel and await the rest."""
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._quiet is not None:
            self._quiet.set()  # nothing more to answer first: held-back work may use the grace
        if grace > 0 and self._work:
            await asyncio.wait(set(self._work), timeout=grace)
        pending = set(self._tasks)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
