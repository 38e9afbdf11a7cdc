"""The supervisor's hold-back of background work while platform requests are answered
(bot/tasks.py; the speed it buys is measured in bench/ack.py, not here)."""

from __future__ import annotations

import asyncio

from bot.tasks import TaskSupervisor


async def test_work_waits_for_the_quiet_after_the_last_request_of_a_burst() -> None:
    """The event loop answers a burst one request after another, so none is being answered
    between any two of them. Work spawned by the first request waits until the quiet after
    the last one, not until a quiet counted from the first one's end."""
    quiet_after = 0.5
    supervisor = TaskSupervisor(quiet_after=quiet_after, max_defer=30.0)
    loop = asyncio.get_running_loop()
    started: list[float] = []

    async def work() -> None:
        started.append(loop.time())

    with supervisor.serving():
        supervisor.spawn(work(), name="the first request's form")
    first = loop.time()
    while loop.time() - first < 1.6 * quiet_after:  # requests 20 ms apart, past the quiet
        await asyncio.sleep(0.02)
        with supervisor.serving():
            pass
    last_answered = loop.time()
    assert started == []  # still held back: the requests kept coming
    await supervisor.wait_idle()
    assert started[0] >= last_answered + quiet_after * 0.9
    await supervisor.close()
