"""Benchmark: how fast the server acknowledges Slack slash commands and Teams activities.

DESIGN.md targets, with 100 concurrent requests: Slack ack p99 <= 50 ms and <= 1.3 x a bare
slack-bolt AsyncApp (on aiohttp) answering the same requests in the same run; Teams message
and invoke ack p99 <= 100 ms.

Every party runs in its own process on 127.0.0.1, so no server shares its interpreter with
the client that times it:
- `fakes`: Slack's Web API and the Bot Connector (the local fakes from the test suite);
- `mailfix`: the bot server as `mailfix serve` runs it (`bot.server.start`: its runner, limits
  and collector tuning; its log configured as `serve` does, written to a file), on SQLite,
  with instant fake diagnoses — this measures the ack path and the work that follows it, not
  the engine. Teams requests are not authenticated here (no MAILFIX_TEAMS_APP_ID);
- `bolt`: the peer, a bare slack-bolt AsyncApp served by its own aiohttp adapter, whose
  `/mailfix` listener only acks (signatures verified, as bolt does by default).

The driver first sends one burst of each kind, not counted (imports, caches). Then each round
fires CONCURRENCY requests at once of each kind: the peer's Slack burst and ours (who goes
first alternates from round to round), a Teams message burst (`hi` in a personal chat) and a
Teams invoke burst (`adaptiveCard/action`, verb `mailfix.intake`: the intake form submitted).
Requests are built and signed before the clock starts and sent as raw HTTP/1.1, one new
connection each, so the driver's own CPU stays out of the figures as far as it can. A
request's latency runs from its connect to its complete answer. After each burst the driver
waits until the bot's background work (forms, card updates) is done, so bursts never overlap.
The CPU the answering process spent (all its threads: `/_bench/cpu`) is reported per request,
until the burst's last answer (the ack path: held-back work starts 50 ms after it) and in all,
with the work after the acks: figures that move less with other load than latencies do.

Other jobs on the machine move latencies a lot, so every round reports the 1-minute load
average as it began and the cores other processes used during it, and each target is judged
on its worst round, the ratio to bare bolt on the two bursts of the same round. Progress goes
to stderr, round by round; the summary at the end (stdout) is Markdown for docs/benchmarks.md.

    .venv/bin/python bench/ack.py [--concurrency 100] [--rounds 5]

This is a benchmark, not a test: it prints figures. It stops by itself (bounded rounds, a time
limit) and sends traffic only to 127.0.0.1.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _slackfake import SECRET, TOKEN, FakeDiagnose, FakeSlack, SlackRequests
from _teamsfake import GOOD_ANSWERS, Activities, FakeConnector
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.gc_policy import tune_for_serving
from bot.server import RUNTIME, configure_logging, create_app, start
from bot.settings import Settings
from bot.teams import create_teams_handler

TIME_LIMIT = 900.0  # seconds: the whole run gives up after this
SLACK_TARGET_MS = 50.0
SLACK_PEER_RATIO = 1.3
TEAMS_TARGET_MS = 100.0
TARGET_CONCURRENCY = 100  # the targets' burst size


# --- the parties, each in its own process ---------------------------------------------------


async def _until_stdin_closes() -> None:
    # The driver holds our stdin; when it goes (normally or not), so do we.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def serve_fakes() -> None:
    slack, connector = FakeSlack(), FakeConnector()
    await slack.start()
    await connector.start()
    print(json.dumps({"slack": slack.url, "connector": connector.url}), flush=True)
    await _until_stdin_closes()
    await slack.close()
    await connector.close()


async def cpu_used(request: web.Request) -> web.Response:
    """Bench only: the CPU this process has used so far, every thread's, ended ones included
    (aiosqlite's threads come and go; /proc's per-thread figures lose those)."""
    return web.Response(text=repr(time.process_time()))


async def serve_mailfix(slack_url: str) -> None:
    """As `bot.server.serve` runs the server; stderr (its log) goes where the driver says."""
    with tempfile.TemporaryDirectory() as state:
        settings = Settings(
            slack_bot_token=TOKEN,
            slack_signing_secret=SECRET,
            slack_api_url=slack_url,
            slack_lookup_email=False,
            state_dir=Path(state),
            rate_limit_count=1_000_000,
        )
        configure_logging(settings)
        app = create_app(settings, diagnose=FakeDiagnose(), teams=create_teams_handler)

        async def idle(request: web.Request) -> web.Response:
            # Bench only: answers once the background work (forms, card updates) is done.
            await request.app[RUNTIME].supervisor.wait_idle()
            return web.Response(text="idle")

        app.router.add_get("/_bench/idle", idle)
        app.router.add_get("/_bench/cpu", cpu_used)
        runner, port = await start(app, settings, host="127.0.0.1", port=0)
        tune_for_serving()  # as `mailfix serve` does once it has started
        print(json.dumps({"url": f"http://127.0.0.1:{port}"}), flush=True)
        await _until_stdin_closes()
        await runner.cleanup()


async def serve_bolt(slack_url: str) -> None:
    """The peer: what slack-bolt's own documentation builds, and nothing more."""
    bolt = AsyncApp(
        signing_secret=SECRET,
        client=AsyncWebClient(token=TOKEN, base_url=slack_url),
    )

    @bolt.command("/mailfix")
    async def command(ack: Any) -> None:
        await ack()

    app = bolt.web_app(path="/slack/events")
    app.router.add_get("/_bench/cpu", cpu_used)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(json.dumps({"url": f"http://127.0.0.1:{runner.addresses[0][1]}"}), flush=True)
    await _until_stdin_closes()
    await runner.cleanup()


class Party:
    """One party in its own process (`bench/ack.py --serve ROLE`); gone when we close stdin."""

    def __init__(self, *args: str, stderr: IO[str] | None = None) -> None:
        self.args = [sys.executable, __file__, "--serve", *args]
        self.stderr = stderr

    async def __aenter__(self) -> dict[str, Any]:
        self.proc = await asyncio.create_subprocess_exec(
            *self.args, stdin=PIPE, stdout=PIPE, stderr=self.stderr
        )
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


Build = Callable[[int], tuple[bytes, dict[str, str]]]  # request i -> its body and headers


@dataclass
class Kind:
    """One kind of request, and the party that answers it."""

    name: str
    url: str  # where the requests go
    build: Build
    server: str  # the answering party's base URL (its CPU is counted: `/_bench/cpu`)
    samples: list[list[float]] = field(default_factory=list)  # one list per round
    cpu: float = 0.0  # the answering process's CPU over the counted bursts and their work
    ack_cpu: float = 0.0  # the same until the burst's last answer (held-back work not begun)


def raw_request(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    """An HTTP/1.1 POST as bytes, one connection per request (as the old aiohttp driver's
    `force_close`), so a burst's requests cost the driver almost nothing to send."""
    parts = urlsplit(url)
    head = [
        f"POST {parts.path} HTTP/1.1",
        f"Host: {parts.netloc}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def exchange(url: str, request: bytes) -> tuple[int, bytes]:
    """Send one request on a new connection; the status and body of the complete answer."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await (reader.read() if length is None else reader.readexactly(length))
        return status, body
    finally:
        writer.close()


async def burst(kind: Kind, n: int) -> list[float]:
    """`n` requests at once; each one's latency (ms) from its connect to its complete answer.
    Built and signed before the clock starts (Slack's timestamp is then seconds old at most)."""
    requests = [raw_request(kind.url, *kind.build(i)) for i in range(n)]

    async def one(request: bytes) -> float:
        t0 = time.perf_counter()
        status, body = await exchange(kind.url, request)
        elapsed = (time.perf_counter() - t0) * 1000
        if status not in (200, 201):
            raise SystemExit(f"{kind.name}: HTTP {status}: {body[:200]!r}")
        return elapsed

    # The driver's own collector must not pause the clock mid-burst (it did: a full
    # collection landed in the same burst run after run); it collects between bursts.
    gc.collect()
    gc.disable()
    try:
        return list(await asyncio.gather(*(one(r) for r in requests)))
    finally:
        gc.enable()


def ticks_cpu(pid: int) -> float:
    """User + system CPU of a process so far, in clock ticks (10 ms; Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds all processes on the machine have used so far (Linux /proc/stat)."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def load_average() -> float:
    with open("/proc/loadavg", encoding="ascii") as loadavg:
        return float(loadavg.read().split()[0])


def p99(samples: list[float]) -> float:
    """The 99th percentile as this bench has always taken it: of 100 samples, the largest."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def p50(samples: list[float]) -> float:
    return statistics.median(samples)


@dataclass
class Round:
    load: float  # the 1-minute load average as the round began (our processes included)
    others: float  # cores the machine's other processes used during the round, on average


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(kinds: dict[str, Kind], rounds: list[Round], concurrency: int, log: Path) -> str:
    """The run as a block of Markdown for docs/benchmarks.md: every round, then the verdicts,
    each target judged on its worst round."""
    bolt, ours = kinds[BOLT], kinds[OURS]
    message, invoke = kinds[TEAMS_MESSAGE], kinds[TEAMS_INVOKE]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    loads = [r.load for r in rounds]
    lines = [
        f"bench/ack.py, {when}: {len(rounds)} rounds of {concurrency} concurrent requests per "
        f"kind; {os.cpu_count()} cores, Python {sys.version.split()[0]}; 1-minute load average "
        f"{min(loads):.2f}–{max(loads):.2f} (this run's own processes included); other "
        f"processes used {statistics.mean(r.others for r in rounds):.2f} cores on average "
        f"(at most {max(r.others for r in rounds):.2f} in one round).",
        "",
        "| round | load | others' cores | bare bolt p50 / p99 | mailfix p50 / p99 | ratio "
        "| Teams message p50 / p99 | Teams invoke p50 / p99 |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def cell(values: list[float]) -> str:
        return f"{p50(values):.1f} / {p99(values):.1f}"

    ratios = [p99(o) / p99(b) for o, b in zip(ours.samples, bolt.samples, strict=True)]
    for n, r in enumerate(rounds):
        lines.append(
            f"| {n + 1} | {r.load:.2f} | {r.others:.2f} | {cell(bolt.samples[n])} "
            f"| {cell(ours.samples[n])} | {ratios[n]:.2f} | {cell(message.samples[n])} "
            f"| {cell(invoke.samples[n])} |"
        )
    pooled = {name: [v for s in kind.samples for v in s] for name, kind in kinds.items()}
    lines.append(
        f"| all | | | {cell(pooled[BOLT])} | {cell(pooled[OURS])} "
        f"| {p99(pooled[OURS]) / p99(pooled[BOLT]):.2f} | {cell(pooled[TEAMS_MESSAGE])} "
        f"| {cell(pooled[TEAMS_INVOKE])} |"
    )
    total = len(pooled[OURS])
    cpu = "; ".join(
        f"{k.name} {k.ack_cpu / len(pooled[k.name]) * 1000:.2f} until the last answer, "
        f"{k.cpu / len(pooled[k.name]) * 1000:.2f} in all"
        for k in kinds.values()
    )
    worst = max(range(len(rounds)), key=lambda n: ratios[n])
    slack_worst = max(p99(s) for s in ours.samples)
    within = sum(p99(s) <= SLACK_TARGET_MS for s in ours.samples)
    under_ratio = sum(r <= SLACK_PEER_RATIO for r in ratios)
    teams_worst = {k.name: max(p99(s) for s in k.samples) for k in (message, invoke)}
    written = log.read_text(encoding="utf-8", errors="replace").splitlines()
    warnings = sum(" WARNING " in x or " ERROR " in x or " CRITICAL " in x for x in written)
    lines += [
        "",
        f"Times in ms, from a request's connect to its complete answer; p99 of a round's "
        f"{concurrency} is its largest (of all {total}: the {int(0.99 * total) + 1}th)."
        + ("" if concurrency == TARGET_CONCURRENCY else " The targets are for bursts of 100."),
        f"- Slack p99 <= {SLACK_TARGET_MS:g} ms: **{verdict(within == len(rounds))}** — "
        f"{within} of {len(rounds)} rounds; worst round {slack_worst:.1f} ms "
        f"(bare bolt's worst {max(p99(s) for s in bolt.samples):.1f} ms).",
        f"- Slack p99 <= {SLACK_PEER_RATIO} x bare bolt's in the same round: "
        f"**{verdict(under_ratio == len(rounds))}** — {under_ratio} of {len(rounds)} rounds; "
        f"worst ratio {ratios[worst]:.2f} (round {worst + 1}: {p99(ours.samples[worst]):.1f} "
        f"against {p99(bolt.samples[worst]):.1f} ms), best {min(ratios):.2f}.",
        *(
            f"- {name} p99 <= {TEAMS_TARGET_MS:g} ms: **{verdict(value <= TEAMS_TARGET_MS)}** — "
            f"worst round {value:.1f} ms."
            for name, value in teams_worst.items()
        ),
        f"- Server CPU per request (ms), the answering process's threads: {cpu} (with the "
        f"work after the acks).",
        f"- The bot's log (as `mailfix serve` writes it): {len(written)} lines, {warnings} "
        f"warnings or errors.",
    ]
    return "\n".join(lines)


BOLT = "Slack /mailfix, bare bolt"
OURS = "Slack /mailfix, mailfix"
TEAMS_MESSAGE = "Teams message, mailfix"
TEAMS_INVOKE = "Teams invoke, mailfix"


async def drive(concurrency: int, rounds: int) -> None:
    with tempfile.NamedTemporaryFile("w+", prefix="mailfix-bench-", suffix=".log") as log:
        async with Party("fakes") as fakes:
            slack_url = fakes["slack"]
            async with (
                Party("mailfix", slack_url, stderr=log) as ours,
                Party("bolt", slack_url) as peer,
            ):
                text = await run_rounds(
                    ours=ours,
                    peer=peer,
                    fakes=fakes,
                    concurrency=concurrency,
                    rounds=rounds,
                    log=Path(log.name),
                )
        print(text)


async def run_rounds(
    *,
    ours: dict[str, Any],
    peer: dict[str, Any],
    fakes: dict[str, Any],
    concurrency: int,
    rounds: int,
    log: Path,
) -> str:
    sign = SlackRequests()
    teams = Activities(fakes["connector"])

    def slash(i: int) -> tuple[bytes, dict[str, str]]:
        body, headers = sign.command("ana@contoso.com", user=f"U{i:05d}", trigger=f"T{i}")
        return body.encode(), headers

    def activity(build: Callable[[int], dict[str, Any]]) -> Build:
        return lambda i: (json.dumps(build(i)).encode(), {"Content-Type": "application/json"})

    kinds = {
        BOLT: Kind(BOLT, f"{peer['url']}/slack/events", slash, peer["url"]),
        OURS: Kind(OURS, f"{ours['url']}/slack/events", slash, ours["url"]),
        TEAMS_MESSAGE: Kind(
            TEAMS_MESSAGE,
            f"{ours['url']}/api/messages",
            activity(lambda i: teams.personal("hi")),
            ours["url"],
        ),
        TEAMS_INVOKE: Kind(
            TEAMS_INVOKE,
            f"{ours['url']}/api/messages",
            activity(lambda i: teams.execute("mailfix.intake", GOOD_ANSWERS, card_id=f"card-{i}")),
            ours["url"],
        ),
    }

    async def get(base: str, path: str) -> bytes:
        status, body = await exchange(base, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert status == 200, (path, status)
        return body

    async def settle() -> None:
        # The bot's background work (forms, card updates) is done: bursts never overlap.
        await get(ours["url"], "/_bench/idle")

    async def cpu(base: str) -> float:
        return float(await get(base, "/_bench/cpu"))

    async def our_cpu() -> float:
        """The CPU all of this run's processes have used so far (to tell others' from ours)."""
        servers = [await cpu(ours["url"]), await cpu(peer["url"])]
        return sum(servers) + ticks_cpu(fakes["pid"]) + time.process_time()

    for kind in kinds.values():  # warm-up, not counted: imports, first connections, caches
        await burst(kind, concurrency)
        await settle()
    measured: list[Round] = []
    for n in range(rounds):
        load = load_average()
        wall, busy, ours_before = time.monotonic(), machine_busy(), await our_cpu()
        # The peer and we take turns going first; the Teams bursts follow.
        order = [BOLT, OURS] if n % 2 == 0 else [OURS, BOLT]
        for name in (*order, TEAMS_MESSAGE, TEAMS_INVOKE):
            kind = kinds[name]
            before = await cpu(kind.server)
            kind.samples.append(await burst(kind, concurrency))
            # Held-back work starts QUIET_AFTER (50 ms) after the last answer: not yet begun.
            kind.ack_cpu += await cpu(kind.server) - before
            await settle()  # the work after the acks counts too
            kind.cpu += await cpu(kind.server) - before
        others = machine_busy() - busy - (await our_cpu() - ours_before)
        measured.append(Round(load, max(0.0, others) / (time.monotonic() - wall)))
        b, o = kinds[BOLT].samples[-1], kinds[OURS].samples[-1]
        print(
            f"round {n + 1}/{rounds}: load {load:.2f}, others {measured[-1].others:.2f} cores; "
            f"Slack p99 bolt {p99(b):.1f} ms, mailfix {p99(o):.1f} ms ({p99(o) / p99(b):.2f} x); "
            f"Teams p99 message {p99(kinds[TEAMS_MESSAGE].samples[-1]):.1f} ms, "
            f"invoke {p99(kinds[TEAMS_INVOKE].samples[-1]):.1f} ms",
            file=sys.stderr,
            flush=True,
        )
    return report(kinds, measured, concurrency, log)


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
    parser.add_argument("--concurrency", type=int, default=TARGET_CONCURRENCY)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve", choices=("fakes", "mailfix", "bolt"), help=argparse.SUPPRESS)
    parser.add_argument("slack_url", nargs="?", help=argparse.SUPPRESS)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(parser.parse_args()))
