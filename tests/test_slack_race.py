"""The race the helpdesk issue asks for: two `mailfix serve` processes on one PostgreSQL, the
same signed Slack Approve click delivered to both at once — and, at the same moment, the
approver's double click (a second click of the same button) to both as well — 100 times.
Every fix is applied to the sandbox tenant exactly once.

The replicas are real subprocesses configured only by MAILFIX_* variables (ports chosen by the
OS), talking to a fake Slack Web API and to a sandbox world whose tenant has ActiveSync off for
Ana's mailbox; between tries the test switches it off again, so every try needs one write.
Writes are counted in the tenant and in the audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _db import reset_database
from _slackfake import SECRET, TEAM, TOKEN, FakeSlack, SlackRequests
from test_slack_helpdesk_loop import BOSS, HELPDESK, activesync_off, needs_ports

from bot.case_store import SqlCaseStore
from bot.storage import create_engine, migrate
from checks.remedies import propose
from dialogs.cases import CaseAction, NewCase, ProposalState
from dialogs.models import Platform
from sandbox.world import World

TRIES = 100
ROOT = Path(__file__).resolve().parents[1]
ANA = "ana@contoso.com"
SERVING = re.compile(r"mailfix serving on 127\.0\.0\.1:(\d+)")

pytestmark = [pytest.mark.postgres, needs_ports]


class Replica:
    def __init__(self, name: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.name = name
        self.proc = proc
        self.log = log
        self.port = 0
        self.pid = proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_listening(self, http: aiohttp.ClientSession) -> None:
        async with asyncio.timeout(60):
            while not self.port:
                if self.proc.returncode is not None:
                    raise AssertionError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
                found = SERVING.search(self.log.read_text())
                if found:
                    self.port = int(found.group(1))
                else:
                    await asyncio.sleep(0.1)
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(self.url + "/readyz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.1)


def serve_env(world: World, url: str, fake: FakeSlack, **settings: str) -> dict[str, str]:
    """`mailfix serve`'s environment: the sandbox's world, the database, the fake Slack, the
    helpdesk channel and Bo as the approver; `settings` adds MAILFIX_* names."""
    return {
        **world.env(),
        "MAILFIX_DATABASE_URL": url,
        "MAILFIX_SLACK_BOT_TOKEN": TOKEN,
        "MAILFIX_SLACK_SIGNING_SECRET": SECRET,
        "MAILFIX_SLACK_API_URL": fake.url,
        "MAILFIX_SLACK_LOOKUP_EMAIL": "false",
        "MAILFIX_HELPDESK_SLACK_CHANNEL": HELPDESK,
        "MAILFIX_APPROVERS": BOSS,
        "MAILFIX_DEADLINE": "20",
        **settings,
    }


@contextlib.asynccontextmanager
async def replicas(env: dict[str, str], tmp_path: Path) -> AsyncIterator[list[Replica]]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MAILFIX_")}
    started = []
    try:
        for name in ("replica-a", "replica-b"):
            log = tmp_path / f"{name}.log"
            with log.open("wb") as out:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bot",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    cwd=ROOT,
                    env={**clean, **env},
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                )
            started.append(Replica(name, proc, log))
        yield started
    finally:
        for replica in started:
            if replica.proc.returncode is None:
                replica.proc.terminate()
        for replica in started:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(replica.proc.wait(), 30)
            if replica.proc.returncode is None:
                replica.proc.kill()
                await replica.proc.wait()


def switch_activesync_off(world: World) -> None:
    tenant = world.tenant
    assert tenant is not None
    for uid, user in list(tenant.users.items()):
        if user.upn == ANA:
            cas = user.cas.model_copy(update={"active_sync_enabled": False})
            tenant.users[uid] = user.model_copy(update={"cas": cas})


async def deliver(http: aiohttp.ClientSession, url: str, signed: tuple[str, dict[str, str]]) -> int:
    body, headers = signed
    async with http.post(url + "/slack/events", data=body.encode(), headers=headers) as response:
        await response.read()
        return response.status


async def test_the_same_slack_approve_on_two_serve_processes_applies_once_in_100_of_100(
    postgres_server: str, tmp_path: Path
) -> None:
    url = postgres_server
    await migrate(url)
    engine = create_engine(url)
    store = SqlCaseStore(engine)
    fake = FakeSlack()
    await fake.start()
    try:
        async with activesync_off() as world:
            tenant = world.tenant
            assert tenant is not None
            remediation = propose.enable_protocol(ANA, "ActiveSync").model_dump(mode="json")
            proposals = []
            for i in range(TRIES):
                case = await store.open_case(
                    NewCase(
                        diagnosis_id=None,
                        platform=Platform.SLACK,
                        workspace=TEAM,
                        person_id="U0ANA",
                        person_name="Ana",
                        address=ANA,
                    )
                )
                proposal = await store.propose(
                    case.number,
                    check_id="tenant.mailbox",
                    remediation=remediation,
                    idempotency_key=str(remediation["idempotency_key"]),
                    approvals_needed=1,
                    expires_at=datetime.now(UTC) + timedelta(hours=1),
                )
                # The case card was posted before: any replica updates it from this reference.
                ref = {"platform": "slack", "channel": HELPDESK, "ts": f"1700000000.{i:06d}"}
                await store.save_message(f"case:{case.number}:helpdesk", Platform.SLACK, ref)
                proposals.append(proposal)
            env = serve_env(world, url, fake)
            sign = SlackRequests()
            timings: list[float] = []
            async with (
                aiohttp.ClientSession() as http,
                replicas(env, tmp_path) as (a, b),
            ):
                await asyncio.gather(a.wait_listening(http), b.wait_listening(http))
                for i, proposal in enumerate(proposals):
                    switch_activesync_off(world)
                    before = len(tenant.writes)
                    click, double = (
                        sign.action(
                            CaseAction.APPROVE.value,
                            proposal.id,
                            user=BOSS,
                            name="bo.admin",
                            channel=HELPDESK,
                            message_ts=f"1700000000.{i:06d}",
                            action_ts=f"1763900000.{i:04d}{n}",
                        )
                        for n in (1, 2)
                    )
                    started = time.perf_counter()
                    statuses = await asyncio.gather(
                        deliver(http, a.url, click),
                        deliver(http, b.url, click),
                        deliver(http, b.url, double),
                        deliver(http, a.url, double),
                    )
                    assert statuses == [200, 200, 200, 200]
                    done = await until_rechecked(store, proposal.case_number, proposal.id)
                    timings.append(time.perf_counter() - started)
                    assert done.state is ProposalState.APPLIED, done.result
                    assert len(tenant.writes) == before + 1, (i, tenant.writes[before:])
                # Let the last replies and card updates land before counting them.
                await asyncio.sleep(0.5)
            logs = {r.name: r.log.read_text() for r in (a, b)}
            final = [await store.proposal(p.id) for p in proposals]
            assert all(p is not None and p.state is ProposalState.APPLIED for p in final)
            acted = re.compile(r"mailfix\.fix\.approve on case \d+ acted")
            wins = {name: len(acted.findall(log)) for name, log in logs.items()}
            assert sum(wins.values()) == TRIES
            trail = await store.trail()
            applied = Counter(e.proposal_id for e in trail if e.action == "fix.applied")
            writes = [w for w in tenant.writes if "ActiveSyncEnabled=True" in w]
            assert len(writes) == TRIES
            assert set(applied.values()) == {1} and len(applied) == TRIES
            duplicates = sum(log.count("ignored a second delivery") for log in logs.values())
            assert duplicates == 2 * TRIES  # of 4 deliveries, 2 were the same clicks again
            told = [c for c in fake.of("chat.postEphemeral") if c.body.get("user") == BOSS]
            said = Counter(
                "applied" if "Applied." in c.body.get("text", "") else "already decided"
                for c in told
                if "Applied." in c.body.get("text", "") or "already decided" in c.body["text"]
            )
            assert said["applied"] == TRIES
            updated = {
                c.body["ts"] for c in fake.of("chat.update") if c.body["channel"] == HELPDESK
            }
            assert len(updated) == TRIES  # every card updated in place, by either replica
            for log in logs.values():
                assert "Traceback" not in log, log[-3000:]
                assert SECRET not in log and TOKEN not in log
            timings.sort()
            print(
                f"\n{TRIES} tries, each the same Approve click to both replicas plus a double "
                f"click to both (4 deliveries at once): applied once in "
                f"{sum(1 for n in applied.values() if n == 1)} of {TRIES}; tenant writes "
                f"{len(writes)}; applies won per replica {dict(wins)}; second deliveries "
                f"ignored {duplicates}; approver told 'applied' {said['applied']}, 'already "
                f"decided' {said['already decided']}; click to re-checked: median "
                f"{timings[len(timings) // 2]:.2f} s, max {timings[-1]:.2f} s"
            )
    finally:
        await fake.close()
        await engine.dispose()
        await reset_database(url)


async def until_rechecked(store: SqlCaseStore, case_number: int, proposal_id: str) -> Any:
    """The proposal once applied and re-checked (the replica that applied it re-checks)."""
    async with asyncio.timeout(60):
        while True:
            trail = await store.trail(case_number=case_number)
            if any(e.action == "recheck.done" for e in trail) or any(
                e.action == "fix.failed" for e in trail
            ):
                return await store.proposal(proposal_id)
            await asyncio.sleep(0.02)
