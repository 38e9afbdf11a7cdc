"""Benchmark: how fast the server acknowledges Slack slash commands and Teams invokes.

DESIGN.md target: ack p99 <= 50 ms with 100 concurrent requests. The bot server runs here
on 127.0.0.1 with SQLite; Slack's Web API and the Bot Connector are the local fakes from the
test suite; diagnoses are instant fakes (this measures the ack path, not the engine).
ROUNDS bursts of CONCURRENCY requests are fired at once, per platform; the latency of each
request is measured from send to the complete response.

    .venv/bin/python bench/ack.py [--concurrency 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _slackfake import SECRET, TOKEN, FakeDiagnose, FakeSlack, SlackRequests
from _teamsfake import GOOD_ANSWERS, Activities, FakeConnector

from bot.server import RUNTIME, create_app
from bot.settings import Settings
from bot.teams import create_teams_handler


async def burst(send: Callable[[int], Awaitable[int]], n: int) -> list[float]:
    async def one(i: int) -> float:
        t0 = time.perf_counter()
        status = await send(i)
        if status not in (200, 201):
            raise SystemExit(f"request {i} answered HTTP {status}")
        return (time.perf_counter() - t0) * 1000

    return list(await asyncio.gather(*(one(i) for i in range(n))))


def summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return (
        f"{name}: {len(samples)} requests, p50 {statistics.median(ordered):.1f} ms, "
        f"p99 {p(0.99):.1f} ms, max {ordered[-1]:.1f} ms "
        f"(target p99 <= 50 ms: {'met' if p(0.99) <= 50 else 'NOT met'})"
    )


async def main(concurrency: int, rounds: int) -> None:
    slack, connector = FakeSlack(), FakeConnector()
    await slack.start()
    await connector.start()
    with tempfile.TemporaryDirectory() as state:
        settings = Settings(
            slack_bot_token=TOKEN,
            slack_signing_secret=SECRET,
            slack_api_url=slack.url,
            slack_lookup_email=False,
            state_dir=Path(state),
            rate_limit_count=1_000_000,
        )
        app = create_app(settings, diagnose=FakeDiagnose(), teams=create_teams_handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        base = f"http://127.0.0.1:{port}"
        sign = SlackRequests()
        teams = Activities(connector.url)
        limits = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=limits) as http:

            async def slash(i: int) -> int:
                body, headers = sign.command("ana@contoso.com", user=f"U{i:05d}", trigger=f"T{i}")
                async with http.post(f"{base}/slack/events", data=body, headers=headers) as r:
                    await r.read()
                    return r.status

            async def invoke(i: int) -> int:
                activity: dict[str, Any] = teams.execute(
                    "mailfix.intake", GOOD_ANSWERS, card_id=f"card-{i}"
                )
                async with http.post(f"{base}/api/messages", json=activity) as r:
                    await r.read()
                    return r.status

            for name, send in (("Slack /mailfix ack", slash), ("Teams invoke ack", invoke)):
                await burst(send, 10)  # warm-up
                samples: list[float] = []
                for _ in range(rounds):
                    samples += await burst(send, concurrency)
                    await app[RUNTIME].supervisor.wait_idle()  # background work done
                print(summary(name, samples))
        await runner.cleanup()
    await slack.close()
    await connector.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.concurrency, args.rounds))
