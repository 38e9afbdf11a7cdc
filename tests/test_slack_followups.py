"""Follow-ups across replicas: two servers (`create_app`) on one database — SQLite and
PostgreSQL — behind one fake Slack, as two replicas behind a load balancer.

- four concurrent "Run again" presses, two on each replica, start one diagnosis;
- the per-person rate limit is counted in the database, so it holds across replicas;
- a running diagnosis holds a lease; one whose replica died (lease lapsed) is failed by the
  housekeeping task of another replica, and the person is told.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from _db import reset_database
from _slackfake import (
    ANA,
    GOOD_ANSWERS,
    SECRET,
    TOKEN,
    Bot,
    FakeDiagnose,
    FakeSlack,
    SlackRequests,
    buttons,
)
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bot.schema import diagnoses
from bot.server import create_app
from bot.settings import Settings
from bot.storage import SqlStore
from checks.models import Client
from dialogs.models import Action, Platform
from dialogs.store import StoredDiagnosis, utc_now


@asynccontextmanager
async def two_replicas(
    database_url: str,
    tmp_path: Path,
    diagnose: FakeDiagnose,
    **create: Any,
) -> AsyncIterator[tuple[Bot, Bot]]:
    fake = FakeSlack()
    await fake.start()
    settings = Settings(
        slack_bot_token=TOKEN,
        slack_signing_secret=SECRET,
        slack_api_url=fake.url,
        state_dir=tmp_path,
        database_url=database_url,
        slack_lookup_email=False,
        rate_limit_count=create.pop("rate_limit_count", 5),
    )
    try:
        async with AsyncExitStack() as stack:
            bots = []
            for _ in range(2):  # one after the other: each migrates at start-up
                app = create_app(settings, diagnose=diagnose, **create)
                http = await stack.enter_async_context(
                    TestClient(TestServer(app, host="127.0.0.1", port=0))
                )
                bots.append(Bot(http, fake, app, SlackRequests(), diagnose))
            yield bots[0], bots[1]
            for bot in bots:
                await bot.runtime.supervisor.wait_idle()
    finally:
        await fake.close()
        if database_url.startswith("postgresql"):
            await reset_database(database_url)


async def results(bot: Bot, count: int = 1) -> list[str]:
    """Diagnosis ids of the results cards shown so far (waits for `count` of them)."""

    def shown() -> list[str]:
        return [
            buttons(c.body.get("blocks") or [])[Action.RUN_AGAIN.value]
            for c in bot.slack.of("chat.update")
            if Action.FIXED.value in buttons(c.body.get("blocks") or [])
        ]

    await bot.slack.wait_until(lambda: len(set(shown())) >= count, f"{count} results cards")
    return list(dict.fromkeys(shown()))


def said(bot: Bot, words: str) -> int:
    return sum(
        words in str(c.body)
        for c in bot.slack.of("chat.postEphemeral") + bot.slack.of("chat.postMessage")
    )


async def test_four_concurrent_run_again_presses_on_two_replicas_start_one_diagnosis(
    database_url: str, tmp_path: Path
) -> None:
    diagnose = FakeDiagnose()
    async with two_replicas(database_url, tmp_path, diagnose) as (a, b):
        assert (await a.post(a.sign.submission(GOOD_ANSWERS))).status == 200
        [first] = await results(a)
        presses = [
            bot.post(bot.sign.action(Action.RUN_AGAIN.value, first, action_ts=f"17639.00{n}"))
            for n, bot in enumerate((a, b, a, b))
        ]
        assert [r.status for r in await asyncio.gather(*presses)] == [200] * 4
        await a.slack.wait_until(
            lambda: said(a, "already run again") == 3, "three presses told they lost"
        )
        await results(a, 2)
        for bot in (a, b):
            await bot.runtime.supervisor.wait_idle()
        assert len(diagnose.requests) == 2  # the first check and one run again
        store = a.runtime.store
        assert [f.kind for f in await store.follow_ups(first)] == ["run_again"]


async def test_the_rate_limit_holds_across_replicas(database_url: str, tmp_path: Path) -> None:
    diagnose = FakeDiagnose()
    async with two_replicas(database_url, tmp_path, diagnose, rate_limit_count=2) as (a, b):
        await a.post(a.sign.submission(GOOD_ANSWERS))
        await results(a, 1)
        await b.post(b.sign.submission(GOOD_ANSWERS))
        await results(a, 2)
        await a.post(a.sign.submission(GOOD_ANSWERS))
        await a.slack.wait_until(lambda: said(a, "run 2 diagnoses") == 1, "the refusal")
        assert len(diagnose.requests) == 2
        # /mailfix on the other replica is refused (just after its ack): no form to fill in vain.
        response = await b.post(b.sign.command("ana@contoso.com"))
        assert response.status == 200
        await b.slack.wait_until(lambda: said(b, "run 2 diagnoses") == 1, "the refusal")
        await b.runtime.supervisor.wait_idle()
        assert b.slack.of("views.open") == []
        # Bo is someone else: his own limit.
        await b.post(b.sign.submission(GOOD_ANSWERS, user="U0BO"))
        await a.slack.wait_until(lambda: len(diagnose.requests) == 3, "Bo's diagnosis")


async def test_a_running_diagnosis_holds_a_lease_and_a_dead_replicas_is_failed_and_told(
    database_url: str, tmp_path: Path
) -> None:
    diagnose = FakeDiagnose(gate=asyncio.Event())
    async with two_replicas(database_url, tmp_path, diagnose, housekeeping_every=0.2) as (a, _b):
        await a.post(a.sign.submission(GOOD_ANSWERS))
        await asyncio.wait_for(diagnose.started.wait(), 10)
        store = a.runtime.store
        assert isinstance(store, SqlStore)
        query = select(diagnoses.c.lease_owner, diagnoses.c.state)
        async with asyncio.timeout(10):  # the lease is taken beside the work, at once
            while True:
                async with store.engine.connect() as conn:
                    row = (await conn.execute(query)).one()
                if row.lease_owner is not None:
                    break
                await asyncio.sleep(0.02)
        assert row.lease_owner == a.runtime.owner and row.state == "running"
        diagnose.gate.set()  # type: ignore[union-attr]
        await results(a)

        # A diagnosis whose replica died: running, its lease lapsed a while ago.
        now = utc_now()
        dead = StoredDiagnosis(
            id="dead0001",
            platform=Platform.SLACK,
            person_id=ANA,
            conversation=f"D{ANA}",
            address="ana@contoso.com",
            client=Client.ALL,
            app="outlook-windows",
            created_at=now - timedelta(minutes=5),
            updated_at=now - timedelta(minutes=5),
        )
        await store.create(dead)
        assert await store.hold(dead.id, "a-replica-that-died", 0.01)
        await a.slack.wait_until(
            lambda: said(a, "The server running your check stopped") == 1,
            "the person told their check died",
        )
        failed = await store.get(dead.id)
        assert failed is not None and failed.state == "failed"
        await asyncio.sleep(0.5)  # two more sweeps on each replica: told once, not again
        assert said(a, "The server running your check stopped") == 1
