"""`mailfix demo`: the whole bot on the embedded default, against the sandbox, on loopback only.

1. Sample diagnoses: a few people in different states, each against its own sandbox world
   (`sandbox.catalogue`), printed like `mailfix diagnose` prints them.
2. Unless told not to: the bot server on 127.0.0.1 with SQLite in a temporary directory and the
   local web console (`bot.console_adapter`) at `/console`, diagnosing against the sandbox.

How an address picks its world (`scenario_for`): the local part names a catalogue scenario
(`adfs-metadata-503@contoso.com`); anything else (`ana@contoso.com`) gets the first scenario
whose domain matches, else `healthy`. Each world starts on first use, on its own 127.A.B.0/24
block, and runs until the demo stops. Every name resolves through that world's DNS server and
the address guard lets nothing but that block through, so nothing leaves the machine. The demo's
settings ignore the environment (`DemoSettings`): Slack, Teams or a PostgreSQL URL configured
for `mailfix serve` are never used here.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bot.console import print_report
from bot.console_adapter import attach_console
from bot.console_helpdesk import attach_helpdesk
from bot.server import create_app
from bot.settings import Settings
from checks.diagnosis import CAUSES
from checks.models import Client, Finding, Remediation, Report
from checks.registry import CATALOGUE as CHECKS
from checks.remedies import approval_executor
from checks.remedies.verify import with_dependencies
from checks.runner import diagnose
from dialogs.case_buttons import current_case
from dialogs.cases import Case
from dialogs.intake import IntakeAnswers, check_answers
from sandbox.catalogue import CATALOGUE
from sandbox.scenario import Scenario, a_label
from sandbox.world import World, WorldError

log = logging.getLogger(__name__)

FALLBACK_SCENARIO = "healthy"
# Served worlds answer after this many ms per round trip, so the progress card visibly fills
# in (a diagnosis then takes about two seconds, like a real one over the internet).
SERVED_LATENCY_MS = 250
SAMPLE_DEADLINE = 10.0  # seconds per sample diagnosis (they take well under one)
SHUTDOWN_TIMEOUT = 2.0  # seconds open requests get when the server stops


@dataclass(frozen=True)
class Sample:
    """One person of the printed tour: a scenario and the app family they use."""

    scenario: str
    client: Client

    def address(self) -> str:
        return address_for(self.scenario)


SAMPLES: tuple[Sample, ...] = (
    Sample("healthy", Client.OUTLOOK),
    Sample("autodiscover-cname-missing", Client.OUTLOOK),
    Sample("adfs-metadata-503", Client.MOBILE),
    Sample("imap-blocked", Client.IMAP),
    Sample("tls-inspection", Client.OUTLOOK),
    Sample("hybrid-onprem-mailbox", Client.OUTLOOK),
    # Inside the tenant (the sandbox's Graph and Exchange admin API):
    Sample("no-licence", Client.OUTLOOK),
    Sample("imap-off", Client.IMAP),
    Sample("device-quarantined-global", Client.MOBILE),
)


# --- which world an address lives in -----------------------------------------------------------


def scenario_for(address: str) -> Scenario:
    """The catalogue scenario for `address` (see the module docstring)."""
    local, _, domain = address.strip().rpartition("@")
    named = CATALOGUE.get(local.lower())
    if named is not None:
        return named
    try:
        wire = a_label(domain)
    except ValueError:  # not a domain IDNA accepts: nothing can match it
        return CATALOGUE[FALLBACK_SCENARIO]
    for scenario in CATALOGUE.values():
        if scenario.domain_idna == wire:
            return scenario
    return CATALOGUE[FALLBACK_SCENARIO]


def address_for(scenario_id: str) -> str:
    """An address that lands in `scenario_id`: its own user's when that already does (the
    first scenario of a domain), else "<scenario id>@<domain>"."""
    scenario = CATALOGUE[scenario_id]
    if scenario_for(scenario.address).id == scenario_id:
        return scenario.address
    return f"{scenario_id}@{scenario.domain}"


def demo_scenario(scenario: Scenario, *, latency_ms: int = 0) -> Scenario:
    """`scenario` as the demo runs it: "<scenario id>@domain" is a second person with the same
    mailbox as the scenario's own user (an on-premises mailbox stays on-premises), and every
    host answers after `latency_ms`."""
    hosts = []
    for host in scenario.hosts:
        listeners = []
        for listener in host.listeners:
            app = listener.app
            boxes = getattr(app, "mailboxes", None)
            if app is not None and boxes:
                twins = tuple(
                    box.model_copy(
                        update={"address": f"{scenario.id}@{box.domain}", "primary_smtp": None}
                    )
                    for box in boxes
                    if box.address.partition("@")[0] == scenario.user.lower()
                )
                app = app.model_copy(update={"mailboxes": (*boxes, *twins)})
            listeners.append(listener.model_copy(update={"app": app}))
        update: dict[str, Any] = {"listeners": tuple(listeners)}
        if latency_ms:
            update["latency_ms"] = latency_ms
        hosts.append(host.model_copy(update=update))
    update = {"hosts": tuple(hosts)}
    if scenario.tenant is not None:  # the twin is the same account, by a second address
        twin = f"{scenario.id}@{scenario.domain_idna}"
        update["tenant"] = scenario.tenant.with_alias(scenario.address_idna, twin)
    if latency_ms:
        update["dns_latency_ms"] = latency_ms
    return scenario.model_copy(update=update)


class WorldPool:
    """Sandbox worlds by scenario id, started on first use and stopped together by `close`."""

    def __init__(self, *, latency_ms: int = 0) -> None:
        self.latency_ms = latency_ms
        self._worlds: dict[str, World] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._closed = False

    @property
    def running(self) -> list[str]:
        """Scenario ids of the worlds running now."""
        return list(self._worlds)

    async def world(self, scenario_id: str) -> World:
        lock = self._locks.setdefault(scenario_id, asyncio.Lock())
        async with lock:
            if self._closed:
                raise RuntimeError("the sandbox is shutting down")
            world = self._worlds.get(scenario_id)
            if world is None:
                scenario = demo_scenario(CATALOGUE[scenario_id], latency_ms=self.latency_ms)
                world = World(scenario)
                await world.start()
                self._worlds[scenario_id] = world
                log.info("sandbox world %s on %s", scenario_id, world.network_cidr)
            return world

    async def close(self) -> None:
        """Stop every world (hangs up their connections). Safe to call twice."""
        self._closed = True
        worlds, self._worlds = list(self._worlds.values()), {}
        for world in worlds:
            await world.stop()


async def diagnose_in(
    pool: WorldPool,
    address: str,
    client: Client,
    *,
    symptom: str | None = None,
    deadline: float = SAMPLE_DEADLINE,
    on_progress: Any = None,
) -> Report:
    """Run the real engine for `address` inside its sandbox world."""
    world = await pool.world(scenario_for(address).id)
    async with world.network() as net:
        return await diagnose(
            address,
            client,
            settings=world.settings(),
            symptom=symptom,
            deadline=deadline,
            net=net,
            on_progress=on_progress,
        )


class SandboxDiagnose:
    """A `dialogs.flow.DiagnoseFn` that runs every diagnosis in the address's sandbox world."""

    def __init__(self, pool: WorldPool, *, deadline: float) -> None:
        self.pool = pool
        self.deadline = deadline

    async def __call__(self, request: Any, on_progress: Any) -> Report:
        return await diagnose_in(
            self.pool,
            request.address,
            request.client,
            symptom=request.symptom_text,
            deadline=self.deadline,
            on_progress=on_progress,
        )


class SandboxFixes:
    """The approval flow's executor (`dialogs.approval.ApplyFix`) for the demo: an approved fix
    goes to the tenant of the case's sandbox world, through `checks.remedies.apply`."""

    def __init__(self, pool: WorldPool, *, timeout: float = 30.0) -> None:
        self.pool = pool
        self.timeout = timeout

    async def __call__(self, remediation: Remediation) -> tuple[bool, dict[str, Any]]:
        case = current_case.get()
        address = case.address if case is not None else remediation.target
        world = await self.pool.world(scenario_for(address).id)
        async with world.network() as net:
            run = approval_executor(world.settings(), net=net, timeout=self.timeout)
            return await run(remediation)


class SandboxRecheck:
    """Run the checks a fix names again, for the case's address and app, in its world."""

    def __init__(self, pool: WorldPool, *, deadline: float = SAMPLE_DEADLINE) -> None:
        self.pool = pool
        self.deadline = deadline

    async def __call__(self, case: Case, check_ids: list[str]) -> list[Finding]:
        answers = check_answers(dict(case.answers))
        client = answers.client if isinstance(answers, IntakeAnswers) else Client.ALL
        wanted = with_dependencies(check_ids)
        world = await self.pool.world(scenario_for(case.address).id)
        async with world.network() as net:
            report = await diagnose(
                case.address,
                client,
                settings=world.settings(),
                net=net,
                checks=[c for c in CHECKS if c.id in wanted],
                deadline=self.deadline,
            )
        return [report.finding(c) for c in check_ids if c in wanted]


# --- the server -------------------------------------------------------------------------------


class DemoSettings(Settings):
    """The bot's settings for the demo: from the arguments only, never the environment, so a
    shell set up for `mailfix serve` (Slack, Teams, PostgreSQL) cannot take the demo off
    loopback."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def demo_settings(state_dir: Path, **overrides: Any) -> DemoSettings:
    fields: dict[str, Any] = {
        "state_dir": state_dir,
        "host": "127.0.0.1",
        "deadline": 20.0,
        "rate_limit_count": 30,  # people try many addresses in a demo
        "shutdown_grace": 1.0,
        "teams_emulator": True,  # the Bot Framework Emulator's channel and issuers: demo only
    }
    fields.update(overrides)
    return DemoSettings(**fields)


def sample_addresses() -> list[tuple[str, str]]:
    """(address, what it shows) for the console's "try these" list and the instructions."""
    shown = [s.scenario for s in SAMPLES]
    shown += ["autodiscover-root-hijack", "domain-not-in-m365", "smtp-blocked"]
    return [(address_for(id), CATALOGUE[id].title) for id in shown]


def build_app(settings: Settings, pool: WorldPool) -> web.Application:
    """The bot server with the sandbox behind it and the console in front (not started)."""
    from bot.teams import create_teams_handler  # noqa: PLC0415 - botbuilder only when serving

    # Teams is on without authentication (no app id), which is what the Bot Framework
    # Emulator expects; the server listens on loopback only. Slack stays off: it needs a real
    # workspace's token and would call slack.com.
    app = create_app(
        settings,
        diagnose=SandboxDiagnose(pool, deadline=settings.deadline),
        teams=create_teams_handler,
    )
    console = attach_console(app, samples=sample_addresses())
    # The helpdesk loop inside the console: Escalate opens a case in the demo's database, the
    # console's Helpdesk and Approver views act on it, approved fixes go to the sandbox tenant.
    attach_helpdesk(
        app,
        console,
        apply_fix=SandboxFixes(pool),
        recheck=SandboxRecheck(pool),
        cause_titles={cause.id: cause.title for cause in CAUSES.values()},
    )
    return app


# --- running it -------------------------------------------------------------------------------


def _out(*, soft_wrap: bool = False) -> Console:
    return Console(file=sys.stdout, highlight=False, soft_wrap=soft_wrap)


async def print_samples(pool: WorldPool, samples: Sequence[Sample] = SAMPLES) -> list[Report]:
    """Diagnose each sample in its world and print the report under a one-line heading."""
    out = _out()
    out.print(
        Text.assemble(
            ("mailfix demo", "bold"),
            " — a simulated Microsoft 365 world on loopback: each scenario gets its own "
            "127.A.B.0/24 block with DNS, HTTPS and mail servers. Nothing leaves this machine.",
        )
    )
    reports: list[Report] = []
    for n, sample in enumerate(samples, 1):
        scenario = CATALOGUE[sample.scenario]
        address = sample.address()
        report = await diagnose_in(pool, address, sample.client)
        out.print()
        out.print(
            Text.assemble(
                (f"━━ {n}/{len(samples)} sandbox scenario ", "bold cyan"),
                (scenario.id, "bold"),
                (f" — {scenario.title}", "bold cyan"),
            )
        )
        print_report(report)
        reports.append(report)
    out.print()
    out.print(_summary(samples, reports))
    return reports


def _summary(samples: Sequence[Sample], reports: Sequence[Report]) -> Table:
    table = Table(
        title="What mailfix concluded", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False
    )
    for column in ("sandbox scenario", "client", "most likely cause", "expected"):
        table.add_column(column, no_wrap=True)
    for sample, report in zip(samples, reports, strict=True):
        scenario = CATALOGUE[sample.scenario]
        expected = next((e.top_cause for e in scenario.expect if e.client == sample.client), None)
        top = report.top_cause.id if report.top_cause else "-"
        verdict = "-" if expected is None else ("✔" if top == expected else f"✘ {expected}")
        table.add_row(scenario.id, sample.client.value, top, verdict)
    return table


def _instructions(url: str, state_dir: Path, note: str | None) -> Text:
    parts: list[tuple[str, str] | str] = [
        ("\nmailfix demo is serving on ", "bold"),
        (url, "bold green"),
        (" (loopback only; Ctrl-C stops it)\n", "bold"),
    ]
    if note:
        parts.append((note + "\n", "yellow"))
    parts += [
        "\n  Web console  ",
        (f"{url}/console\n", "bold underline"),
        "               open it in a browser: the intake form, live progress, results;\n",
        "               Escalate, then the Helpdesk and Approver views: claim, ask, approve a\n",
        "               fix (imap-off@contoso.com has one) and watch it reach the sandbox tenant\n",
        f"  Slack        POST {url}/slack/events\n",
        "               off here: needs MAILFIX_SLACK_* credentials and a public HTTPS tunnel\n",
        f"  Teams        POST {url}/api/messages\n",
        "               on, without authentication: point the Bot Framework Emulator here\n",
        f"  Health       GET  {url}/healthz, {url}/readyz\n",
        "\nTry these addresses (the part before the @ picks the sandbox scenario):\n",
    ]
    width = max(len(a) for a, _ in sample_addresses())
    for address, title in sample_addresses():
        parts += ["  ", (address.ljust(width), "cyan"), f"  {title}\n"]
    parts += [
        "  Every scenario: .venv/bin/python -m sandbox --list\n",
        (
            f"\nEach sandbox host answers after {SERVED_LATENCY_MS} ms, so the progress card "
            "fills in visibly.\n"
            f"Diagnoses are kept in SQLite under {state_dir} (removed on exit).",
            "dim",
        ),
    ]
    return Text.assemble(*parts)


def _interactive() -> bool:
    return not os.environ.get("CI") and sys.stdin.isatty()


def _install_stop(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> list[signal.Signals]:
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread / Windows
            continue
        installed.append(sig)
    return installed


async def _until(work: asyncio.Future[Any], stop: asyncio.Event) -> bool:
    """Wait for `work` or `stop`; True when `work` finished. On stop, `work` is cancelled."""
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if work.done():
        work.result()  # a crash surfaces here
        return True
    work.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await work
    return False


class DemoError(Exception):
    """The demo cannot run here (a port it may not use, a world that cannot start)."""


async def _start_site(runner: web.AppRunner, port: int) -> tuple[int, str | None]:
    """Listen on 127.0.0.1:port, or on any free port when that one is taken."""
    try:
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise DemoError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from exc
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        bound = _port_of(runner)
        return bound, f"Port {port} is in use, so the demo took port {bound} instead."
    return _port_of(runner), None


def _port_of(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        return int(address[1])
    raise RuntimeError("the server is not listening")


async def _serve(port: int, stop: asyncio.Event) -> None:
    pool = WorldPool(latency_ms=SERVED_LATENCY_MS)
    with tempfile.TemporaryDirectory(prefix="mailfix-demo-") as state:
        settings = demo_settings(Path(state))
        runner = web.AppRunner(
            build_app(settings, pool), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        try:
            bound, note = await _start_site(runner, port)
            url = f"http://127.0.0.1:{bound}"
            _out(soft_wrap=True).print(_instructions(url, Path(state), note))
            sys.stdout.flush()
            await stop.wait()
            _out().print(Text("\nStopping: finishing open requests, then the sandbox …", "dim"))
        finally:
            await runner.cleanup()  # the bot first: its diagnoses still need the worlds
            await pool.close()


async def _demo(serve: bool, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = _install_stop(loop, stop)
    try:
        pool = WorldPool()
        try:
            finished = await _until(asyncio.ensure_future(print_samples(pool)), stop)
        finally:
            await pool.close()
        if not finished:
            _out().print(Text("Stopped.", "dim"))
            return
        if not serve:
            _out().print(
                Text(
                    "\nNot serving the console (`--no-serve`, or not an interactive terminal). "
                    "Run `make demo` or `.venv/bin/mailfix demo --serve` to try it in a browser.",
                    "dim",
                )
            )
            return
        await _serve(port, stop)
        _out().print(Text("Stopped. The sandbox is down and the demo database is gone.", "dim"))
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def run_demo(serve: bool | None = None, port: int = 3978) -> None:
    """`mailfix demo`: sample reports, then (when `serve`) the bot and console until Ctrl-C.

    `serve=None` decides by itself: serve on a person's terminal, not when `CI` is set or stdin
    is not a terminal (a scripted run then ends after the reports instead of waiting forever).
    """
    if serve is None:
        serve = _interactive()
    if not 0 <= port <= 65535:
        sys.stderr.write(f"mailfix: error: --port must be 0..65535, not {port}\n")
        raise SystemExit(2)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_demo(serve, port))
    except KeyboardInterrupt:  # before the signal handlers were in place
        pass
    except (DemoError, WorldError) as exc:
        sys.stderr.write(f"mailfix: error: {' '.join(str(exc).split())}\n")
        raise SystemExit(1) from None
