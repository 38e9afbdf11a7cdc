"""Speed on the request path (bench/ack.py): acknowledge first, everything else after.

Over real HTTP against the fake Bot Connector: a Teams message is answered before its turn
runs, the intake form's invoke before anything touches the database, and connector clients are
built once and shared between turns. And the supervisor holds
back new background work while requests are being answered, at most MAX_DEFER.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from _teamsfake import GOOD_ANSWERS, WAIT, card_kind
from test_bot_teams import intake_card_id, invoke, results_put, running_teams

from bot.runtime import EventLedger
from bot.tasks import MAX_DEFER, QUIET_AFTER, TaskSupervisor


async def test_background_work_waits_while_requests_are_answered() -> None:
    supervisor = TaskSupervisor()
    started: list[float] = []

    async def work() -> None:
        started.append(time.monotonic())

    with supervisor.serving():
        supervisor.spawn(work(), name="after the ack")
        await asyncio.sleep(0.05)
        assert started == []  # held back while the request is being answered
        answered = time.monotonic()
    await supervisor.wait_idle()
    assert len(started) == 1 and started[0] - answered >= QUIET_AFTER * 0.9
    # Without requests in flight, work starts at once.
    supervisor.spawn(work(), name="no request")
    await supervisor.wait_idle()
    assert len(started) == 2


async def test_a_request_that_never_ends_holds_background_work_at_most_max_defer() -> None:
    supervisor = TaskSupervisor()
    done = asyncio.Event()

    async def work() -> None:
        done.set()

    with supervisor.serving():
        spawned = time.monotonic()
        supervisor.spawn(work(), name="starved?")
        await asyncio.wait_for(done.wait(), MAX_DEFER + 2)
        assert time.monotonic() - spawned >= MAX_DEFER * 0.9
    await supervisor.close()


async def test_teams_message_turns_run_after_the_201_and_share_connector_clients(
    tmp_path: Path,
) -> None:
    async with running_teams(tmp_path) as bot:
        response = await bot.post(bot.teams.personal("help"))
        assert response.status == 201
        await bot.idle()  # the turn ran after the 201 and answered
        assert len(bot.connector.posts) == 1
        card_id = await intake_card_id(bot)
        body = await invoke(bot, bot.teams.execute("mailfix.intake", GOOD_ANSWERS, card_id=card_id))
        assert body["statusCode"] == 200
        await bot.idle()
        auth = bot.runtime.extras["teams_bot"].adapter.bot_framework_authentication
        clients = dict(auth._connectors)
        # One per audience (the turn's and the proactive one's) for this serviceUrl.
        assert 1 <= len(clients) <= 2
        assert all(key[3] == bot.teams.service_url for key in clients)
        for text in ("help", "hello"):
            assert (await bot.post(bot.teams.personal(text))).status == 201
        await bot.idle()
        assert len(bot.connector.posts) >= 3
        assert auth._connectors == clients  # the same clients, reused


class HeldLedger(EventLedger):
    """The server's own ledger, held shut until the test opens it: a request that waited for
    the database's dedupe would not be answered."""

    def __init__(self, ledger: EventLedger) -> None:
        self.ledger, self.open, self.asked = ledger, asyncio.Event(), asyncio.Event()

    async def first_time(self, event_id: str) -> bool:
        self.asked.set()
        await self.open.wait()
        return await self.ledger.first_time(event_id)


async def test_the_intake_invoke_is_answered_before_its_turn_touches_the_database(
    tmp_path: Path,
) -> None:
    async with running_teams(tmp_path) as bot:
        card_id = await intake_card_id(bot)
        held = HeldLedger(bot.runtime.events)
        bot.runtime.events = held
        activity = bot.teams.execute("mailfix.intake", GOOD_ANSWERS, card_id=card_id)
        async with asyncio.timeout(WAIT):  # a bound, not a measure: the ledger never opens
            body = await invoke(bot, activity)
        assert card_kind(body["value"]) == "checking"  # answered with the ledger shut
        await held.asked.wait()  # the turn runs after the answer, and dedupes first
        assert bot.diagnose.requests == []
        assert bot.connector.puts == []
        held.open.set()
        await results_put(bot, card_id)
        assert len(bot.diagnose.requests) == 1
