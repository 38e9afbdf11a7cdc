"""Background work after an ack: tracked, logged, and cancelled cleanly on shutdown.

A chat platform wants its answer in seconds (Slack: 3 s), a diagnosis takes up to the deadline.
Every piece of work that outlives a request goes through `TaskSupervisor.spawn`, never a bare
`create_task`: the supervisor keeps a strong reference (the event loop keeps only a weak one),
logs a crash with its name, calls `on_error` so the person sees an error card instead of
silence, and on shutdown cancels what is left and waits for it.

Acknowledge first, everything else after: while the server is answering Slack or Teams
(`serving`), new background work waits to start until no such request has come for
`QUIET_AFTER`, or at most `MAX_DEFER`, so a steady stream of requests cannot starve it. A burst
of commands is then acknowledged before the forms and cards it asked for take the event loop
(bench/ack.py).
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
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._work: set[asyncio.Task[Any]] = set()  # the tasks `wait_idle` waits for
        self._coros: dict[asyncio.Task[Any], Coroutine[Any, Any, Any]] = {}
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._serving = 0  # platform requests being answered now
        self._quiet: asyncio.Event | None = None  # set once none has come for QUIET_AFTER

    @property
    def running(self) -> int:
        """Tasks still running, housekeeping included."""
        return len(self._tasks)

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
            if not self._serving:
                # A burst arrives over some milliseconds: its later requests must not wait
                # behind the work its earlier ones started.
                asyncio.get_running_loop().call_later(QUIET_AFTER, self._maybe_quiet)

    def _maybe_quiet(self) -> None:
        if not self._serving and self._quiet is not None:
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
                    async with asyncio.timeout(MAX_DEFER):
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
        if grace > 0 and self._work:
            await asyncio.wait(set(self._work), timeout=grace)
        pending = set(self._tasks)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
