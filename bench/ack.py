"""Benchmark: how fast the server acknowledges Slack slash commands and Teams activities.

DESIGN.md targets, with 100 concurrent requests: Slack ack p99 <= 50 ms and <= 1.3 x a bare
slack-bolt AsyncApp (on aiohttp) answering the same requests in the same run; Teams message
and invoke ack p99 <= 100 ms.

Every party runs in its own process on 127.0.0.1, so no server shares its interpreter with
the client that times it:
- `fakes`: Slack's Web API and the Bot Connector (the local fakes from the test suite);
- `mailfix`: the bot server (`bot.server.create_app`, SQLite, instant fake diagnoses — this
  measures the ack path and the work that follows it, not the engine);
- `bolt`: the peer, a bare slack-bolt AsyncApp served by its own aiohttp adapter, whose
  `/mailfix` listener only acks (signatures verified, as bolt does by default).
The driver fires ROUNDS bursts of CONCURRENCY requests at once per kind; the peer's and our
Slack bursts alternate within each round (who goes first alternates too). A request's latency
is from send to complete response. After each burst the driver waits until the bot's
background work (forms, card updates) is done, so bursts do not overlap; the CPU the server's
process spent on a burst, that work included, is printed per request (a figure that moves
less with other load on the machine than latency does).

    .venv/bin/python bench/ack.py [--concurrency 100] [--rounds 5]

This is a benchmark, not a test: it prints figures (record them in docs/benchmarks.md). It
stops by itself (bounded rounds, a time limit) and sends traffic only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from asyncio.subprocess import PIPE
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _slackfake import SECRET, TOKEN, FakeDiagnose, FakeSlack, SlackRequests
from _teamsfake import GOOD_ANSWERS, Activities, FakeConnector
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.gc_policy import tune_for_serving
from bot.server import RUNTIME, create_app
from bot.settings import Settings
from bot.teams import create_teams_handler

TIME_LIMIT = 600.0  # seconds: the whole run gives up after this
SLACK_TARGET_MS = 50.0
SLACK_PEER_RATIO = 1.3
TEAMS_TARGET_MS = 100.0


# --- the parties, each in its own process ---------------------------------------------------


async def _serve_until_stdin_closes(runner: web.AppRunner, info: dict[str, Any]) -> None:
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    info["url"] = f"http://127.0.0.1:{runner.addresses[0][1]}"
    print(json.dumps(info), flush=True)
    loop = asyncio.get_running_loop()
    # The driver holds our stdin; when it goes (normally or not), so do we.
    await loop.run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


async def serve_fakes() -> None:
    slack, connector = FakeSlack(), FakeConnector()
    await slack.start()
    await connector.start()
    info = {"slack": slack.url, "connector": connector.url}
    print(json.dumps(info), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await slack.close()
    await connector.close()


async def serve_mailfix(slack_url: str) -> None:
    with tempfile.TemporaryDirectory() as state:
        settings = Settings(
            slack_bot_token=TOKEN,
            slack_signing_secret=SECRET,
            slack_api_url=slack_url,
            slack_lookup_email=False,
            state_dir=Path(state),
            rate_limit_count=1_000_000,
        )
        app = create_app(settings, diagnose=FakeDiagnose(), teams=create_teams_handler)

        async def idle(request: web.Request) -> web.Response:
            # Bench only: answers once the background work (forms, card updates) is done.
            await request.app[RUNTIME].supervisor.wait_idle()
            return web.Response(text="idle")

        app.router.add_get("/_bench/idle", idle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        tune_for_serving()  # as `mailfix serve` does once it has started
        await _serve_until_stdin_closes(runner, {})


async def serve_bolt(slack_url: str) -> None:
    """The peer: what slack-bolt's own documentation builds, and nothing more."""
    bolt = AsyncApp(
        signing_secret=SECRET,
        client=AsyncWebClient(token=TOKEN, base_url=slack_url),
    )

    @bolt.command("/mailfix")
    async def command(ack: Any) -> None:
        await ack()

    runner = web.AppRunner(bolt.web_app(path="/slack/events"), access_log=None)
    await runner.setup()
    await _serve_until_stdin_closes(runner, {})


class Party:
    """One party in its own process (`bench/ack.py --serve ROLE`); gone when we close stdin."""

    def __init__(self, *args: str) -> None:
        self.args = [sys.executable, __file__, "--serve", *args]

    async def __aenter__(self) -> dict[str, Any]:
        self.proc = await asyncio.create_subprocess_exec(*self.args, stdin=PIPE, stdout=PIPE)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        if not line:
            raise SystemExit(f"{self.args[3]} did not start")
        info: dict[str, Any] = json.loads(line)
        info["pid"] = self.proc.pid
        return info

    async def __aexit__(self, *exc: object) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


# --- the driver -----------------------------------------------------------------------------


async def burst(send: Callable[[int], Awaitable[int]], n: int) -> list[float]:
    async def one(i: int) -> float:
        t0 = time.perf_counter()
        status = await send(i)
        if status not in (200, 201):
            raise SystemExit(f"request {i} answered HTTP {status}")
        return (time.perf_counter() - t0) * 1000

    # The driver's own collector must not pause the clock mid-burst (it did: a full
    # collection landed in the same burst run after run); it collects between bursts.
    gc.collect()
    gc.disable()
    try:
        return list(await asyncio.gather(*(one(i) for i in range(n))))
    finally:
        gc.enable()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a party's process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def summary(name: str, samples: list[float], cpu: float) -> str:
    ordered = sorted(samples)
    return (
        f"{name:<28} {len(samples):4d} requests  p50 {statistics.median(ordered):7.1f} ms  "
        f"p99 {p99(ordered):7.1f} ms  max {ordered[-1]:7.1f} ms  "
        f"server CPU {cpu / len(samples) * 1000:5.2f} ms/request"
    )


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


async def drive(concurrency: int, rounds: int) -> None:
    async with Party("fakes") as fakes:
        slack_url, connector_url = fakes["slack"], fakes["connector"]
        async with Party("mailfix", slack_url) as ours, Party("bolt", slack_url) as peer:
            sign = SlackRequests()
            teams = Activities(connector_url)
            limits = aiohttp.TCPConnector(limit=concurrency, force_close=True)
            timeout = aiohttp.ClientTimeout(total=30)
            async with aiohttp.ClientSession(connector=limits, timeout=timeout) as http:

                async def post(url: str, body: Any, headers: dict[str, str]) -> int:
                    async with http.post(url, data=body, headers=headers) as r:
                        await r.read()
                        return r.status

                def slash(base: str) -> Callable[[int], Awaitable[int]]:
                    def send(i: int) -> Awaitable[int]:
                        body, headers = sign.command(
                            "ana@contoso.com", user=f"U{i:05d}", trigger=f"T{i}"
                        )
                        return post(f"{base}/slack/events", body, headers)

                    return send

                def activity(build: Callable[[int], dict[str, Any]]) -> Any:
                    def send(i: int) -> Awaitable[int]:
                        body = json.dumps(build(i))
                        headers = {"Content-Type": "application/json"}
                        return post(f"{ours['url']}/api/messages", body, headers)

                    return send

                async def idle() -> None:
                    async with http.get(f"{ours['url']}/_bench/idle") as r:
                        await r.read()

                kinds: dict[str, Callable[[int], Awaitable[int]]] = {
                    "Slack /mailfix, bare bolt": slash(peer["url"]),
                    "Slack /mailfix, mailfix": slash(ours["url"]),
                    "Teams message, mailfix": activity(lambda i: teams.personal("hi")),
                    "Teams invoke, mailfix": activity(
                        lambda i: teams.execute("mailfix.intake", GOOD_ANSWERS, card_id=f"card-{i}")
                    ),
                }
                samples: dict[str, list[float]] = {k: [] for k in kinds}
                cpu: dict[str, float] = dict.fromkeys(kinds, 0.0)
                for send in kinds.values():  # warm-up: imports, first connections, caches
                    await burst(send, 10)
                    await idle()
                slack_pair = list(kinds)[:2]
                for n in range(rounds):
                    order = slack_pair if n % 2 == 0 else slack_pair[::-1]
                    for name in (*order, *list(kinds)[2:]):
                        pid = peer["pid"] if "bolt" in name else ours["pid"]
                        before = cpu_seconds(pid)
                        samples[name] += await burst(kinds[name], concurrency)
                        await idle()  # the work after the acks counts too
                        cpu[name] += cpu_seconds(pid) - before
    print(f"{rounds} bursts of {concurrency} concurrent requests per kind, one process per party")
    for name, values in samples.items():
        print(summary(name, values, cpu[name]))
    bolt_p99 = p99(samples["Slack /mailfix, bare bolt"])
    slack_p99 = p99(samples["Slack /mailfix, mailfix"])
    teams_p99 = max(p99(samples["Teams message, mailfix"]), p99(samples["Teams invoke, mailfix"]))
    print(
        f"Slack: p99 {slack_p99:.1f} ms (target <= {SLACK_TARGET_MS:g}: "
        f"{verdict(slack_p99 <= SLACK_TARGET_MS)}); {slack_p99 / bolt_p99:.2f} x bare bolt's "
        f"{bolt_p99:.1f} ms (target <= {SLACK_PEER_RATIO}: "
        f"{verdict(slack_p99 <= SLACK_PEER_RATIO * bolt_p99)})"
    )
    print(
        f"Teams: p99 {teams_p99:.1f} ms, the slower of message and invoke "
        f"(target <= {TEAMS_TARGET_MS:g}: {verdict(teams_p99 <= TEAMS_TARGET_MS)})"
    )


async def main(args: argparse.Namespace) -> None:
    if args.serve == "fakes":
        await serve_fakes()
    elif args.serve == "mailfix":
        await serve_mailfix(args.slack_url)
    elif args.serve == "bolt":
        await serve_bolt(args.slack_url)
    else:
        async with asyncio.timeout(TIME_LIMIT):
            await drive(args.concurrency, args.rounds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve", choices=("fakes", "mailfix", "bolt"), help=argparse.SUPPRESS)
    parser.add_argument("slack_url", nargs="?", help=argparse.SUPPRESS)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(parser.parse_args()))
