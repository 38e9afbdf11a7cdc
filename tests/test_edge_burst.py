"""Bounded work under a burst, over real HTTP (issue 8, items 3 and 7).

150 people submit the intake form at the same moment. Every submission is acked, every one
is stored and ends with its results card (none lost to "database is locked"), no more than
the configured number run at once, and the ones that wait are told how many are ahead.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest
from _slackfake import GOOD_ANSWERS, FakeDiagnose, buttons, running_bot

from bot.storage import SqlStore

BURST = 150
SLOTS = 20


class CountingDiagnose(FakeDiagnose):
    """FakeDiagnose that records how many diagnoses ran at the same time."""

    def __init__(self, gate: asyncio.Event) -> None:
        super().__init__(gate=gate)
        self.now = 0
        self.peak = 0

    async def __call__(self, request: Any, progress: Any) -> Any:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            return await super().__call__(request, progress)
        finally:
            self.now -= 1


class Answered:
    """The DM channels whose message now holds a results card (read incrementally: the
    predicate runs on every one of thousands of fake Slack calls)."""

    def __init__(self, bot: Any) -> None:
        self.bot = bot
        self.seen = 0
        self.channels: set[str] = set()

    def __call__(self) -> int:
        calls = self.bot.slack.calls
        for call in calls[self.seen :]:
            if call.method == "chat.update" and "mailfix.fixed" in buttons(
                call.body.get("blocks") or []
            ):
                self.channels.add(call.body["channel"])
        self.seen = len(calls)
        return len(self.channels)


async def until(bot: Any, predicate: Any, what: str, within: float = 120.0) -> None:
    """Wait for the fake Slack's state (it notifies on every call); a burst takes longer than
    the fake's usual 10 s on a busy 2-core machine."""
    try:
        async with asyncio.timeout(within), bot.slack._changed:
            await bot.slack._changed.wait_for(predicate)
    except TimeoutError:
        raise AssertionError(f"never got {what}") from None


def queued_ahead(text: str) -> int | None:
    """How many the message says are ahead (0: "next in line"), None when it is not queued."""
    if "are next in line" in text:
        return 0
    found = re.search(r"Queued, (\d+) checks? ahead", text)
    return int(found.group(1)) if found else None


@pytest.mark.timeout(300)
async def test_150_simultaneous_submissions_are_all_acked_stored_and_answered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    gate = asyncio.Event()
    diagnose = CountingDiagnose(gate)
    settings = {
        "max_concurrent_diagnoses": SLOTS,
        "rate_limit_count": 5,
        "slack_reply_mode": "dm",
    }
    async with running_bot(tmp_path, diagnose=diagnose, settings=settings) as bot:
        users = [f"U{n:05d}" for n in range(BURST)]
        started = time.perf_counter()
        responses = await asyncio.gather(
            *(bot.post(bot.sign.submission(GOOD_ANSWERS, user=user)) for user in users)
        )
        acked = time.perf_counter() - started
        assert [r.status for r in responses] == [200] * BURST
        # Everyone gets a message at once: SLOTS progress cards, the rest "queued, N ahead".
        await until(bot, lambda: len(bot.slack.of("chat.postMessage")) >= BURST, "a message each")
        first = {
            c.body["channel"]: c.body.get("text", "") for c in bot.slack.of("chat.postMessage")
        }
        waits = sorted(n for n in map(queued_ahead, first.values()) if n is not None)
        assert len(waits) == BURST - SLOTS
        assert waits == list(range(BURST - SLOTS))  # each place in the line told once
        assert diagnose.now == SLOTS
        gate.set()
        answered = Answered(bot)
        await until(bot, lambda: answered() == BURST, f"{BURST} results cards")
        finished = time.perf_counter() - started
        await bot.runtime.supervisor.wait_idle()
        assert diagnose.peak == SLOTS  # never more than the cap at once
        assert len(diagnose.requests) == BURST
    store = SqlStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'mailfix.db'}")
    try:
        states = [(d.state, d.report is not None) for u in users for d in await store.recent(u)]
    finally:
        await store.close()
    assert states == [("done", True)] * BURST
    text = caplog.text
    assert "could not start the checks" not in text
    assert "database is locked" not in text
    assert "Traceback" not in text
    print(f"\nburst of {BURST}: acked in {acked:.2f} s, all results in {finished:.2f} s")


async def test_queued_people_are_told_at_shutdown_and_running_ones_finish(
    tmp_path: Path,
) -> None:
    """Shutdown: a running diagnosis finishes within its deadline and posts its results; the
    queued one is told its checks did not start, and is stored as failed (not "running")."""
    gate = asyncio.Event()
    diagnose = FakeDiagnose(gate=gate)
    settings = {"max_concurrent_diagnoses": 1, "deadline": 5.0, "shutdown_grace": 0}
    async with running_bot(tmp_path, diagnose=diagnose, settings=settings) as bot:
        for user in ("U0ONE", "U0TWO"):
            response = await bot.post(bot.sign.submission(GOOD_ANSWERS, user=user))
            assert response.status == 200
        await bot.slack.wait_until(lambda: len(bot.slack.of("chat.postMessage")) == 2, "two")
        texts = {c.body["channel"]: c.body["text"] for c in bot.slack.of("chat.postMessage")}
        assert queued_ahead(texts["DU0TWO"]) == 0
        # The running one is released shortly after shutdown starts: it finishes.
        asyncio.get_running_loop().call_later(0.5, gate.set)
        slack = bot.slack
    # Leaving the block shut the server down.
    updates = {c.body["channel"]: c.body for c in slack.of("chat.update")}
    assert "mailfix.fixed" in buttons(updates["DU0ONE"]["blocks"])  # results, not an error
    assert "did not start" in updates["DU0TWO"]["text"] + str(updates["DU0TWO"]["blocks"])
    store = SqlStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'mailfix.db'}")
    try:
        (one,) = await store.recent("U0ONE")
        (two,) = await store.recent("U0TWO")
    finally:
        await store.close()
    assert one.state == "done"
    assert two.state == "failed"
    assert two.error is not None and "restarted" in two.error
