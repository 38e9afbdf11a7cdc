"""kill -9 in the middle of applying a fix, for real (issue 7 item 6): two `mailfix serve`
processes on one PostgreSQL, the sandbox tenant with ActiveSync off for Ana's mailbox, a fake
Slack Web API. Bo's signed Approve click goes to replica A; the sandbox holds back the answer to
one of A's Exchange requests, so A is caught mid-apply; the test kills A with SIGKILL. Replica
B's housekeeping takes the fix over once A's lease lapses and finishes it.

Both ways:
- killed before the write: A's read of the mailbox (Get-CASMailbox) is held, Set-CASMailbox
  never left A; B reads ActiveSync off and switches it on — one write;
- killed after the write landed: A's Set-CASMailbox ran in the tenant but its answer is held;
  B reads ActiveSync on and sends nothing — still one write.

Then: the proposal is applied, the tenant saw exactly one Set-CASMailbox for the setting, the
audit trail (`mailfix audit --case N --json`, a subprocess) has every step with the server that
took it, the case card was updated in place and Ana was told.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _db import reset_database
from _slackfake import SECRET, TEAM, TOKEN, FakeSlack, SlackRequests, blocks_text
from test_slack_helpdesk_loop import BOSS, ENABLE, HELPDESK, activesync_off, needs_ports
from test_slack_race import ROOT, deliver, replicas, serve_env, until_rechecked

from bot.case_store import SqlCaseStore
from bot.storage import create_engine, migrate
from checks.models import Remediation
from checks.remedies import propose
from dialogs.approval import Actor, Approvals
from dialogs.cases import Case, CaseAction, NewCase, Proposal, ProposalState
from dialogs.models import Platform
from sandbox.tenant.state import TenantState

pytestmark = [pytest.mark.postgres, needs_ports]

ANA = "ana@contoso.com"
LEASE = 3.0  # MAILFIX_APPLY_LEASE: A renews it every second while it applies
SWEEP = 0.5  # MAILFIX_HOUSEKEEPING_INTERVAL
HOLD = 45.0  # the held answer comes after the test is over: A dies waiting for it
CARD_TS = "1700000000.000100"
SETTING = ("Set-CASMailbox", ANA, "ActiveSyncEnabled")


class Nobody:
    async def is_approver(self, actor: Actor) -> bool:
        return False


async def never_applies(remediation: Remediation) -> tuple[bool, dict[str, Any]]:
    raise AssertionError("only the replicas apply fixes")


async def case_with_card(store: SqlCaseStore) -> tuple[Case, Proposal]:
    """Ana's case with the ActiveSync fix proposed, its card posted to the helpdesk channel
    before (any replica updates it from the stored reference)."""
    case = await store.open_case(
        NewCase(
            diagnosis_id=None,
            platform=Platform.SLACK,
            workspace=TEAM,
            person_id="U0ANA",
            person_name="Ana Silva",
            address=ANA,
        )
    )
    proposer = Approvals(store, apply_fix=never_applies, approvers=Nobody(), owner="test")
    proposal = await proposer.propose(
        case, "tenant.mailbox", propose.enable_protocol(ANA, "ActiveSync")
    )
    ref = {"platform": "slack", "channel": HELPDESK, "ts": CARD_TS}
    await store.save_message(f"case:{case.number}:helpdesk", Platform.SLACK, ref)
    return case, proposal


async def applying_on_a(store: SqlCaseStore, proposal_id: str, tenant: TenantState) -> Proposal:
    """The proposal once A holds its lease and A's request is waiting in the tenant."""
    async with asyncio.timeout(60):
        while True:
            proposal = await store.proposal(proposal_id)
            assert proposal is not None
            if proposal.state is ProposalState.APPLYING and tenant.held == 1:
                return proposal
            assert proposal.state in (
                ProposalState.PROPOSED,
                ProposalState.APPROVED,
                ProposalState.APPLYING,
            ), proposal
            await asyncio.sleep(0.02)


async def audit_cli(url: str, case_number: int, *options: str) -> str:
    """`mailfix audit --case N [options]`, as an operator runs it; what it printed."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MAILFIX_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "audit",
        "--case",
        str(case_number),
        *options,
        cwd=ROOT,
        env={**clean, "MAILFIX_DATABASE_URL": url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


def texts(calls: list[Any]) -> str:
    return " ".join(c.body.get("text", "") + blocks_text(c.body.get("blocks") or []) for c in calls)


@pytest.mark.parametrize(
    "landed", [False, True], ids=["killed-before-the-write", "killed-after-the-write-landed"]
)
async def test_kill_9_mid_apply_the_other_replica_finishes_and_nothing_is_written_twice(
    postgres_server: str, tmp_path: Path, landed: bool
) -> None:
    url = postgres_server
    await migrate(url)
    engine = create_engine(url)
    store = SqlCaseStore(engine)
    fake = FakeSlack()
    fake.users[BOSS] = {"name": "bo.admin", "real_name": "Bo Admin", "email": "bo@contoso.com"}
    await fake.start()
    try:
        async with activesync_off() as world:
            tenant = world.tenant
            assert tenant is not None
            case, proposal = await case_with_card(store)
            env = serve_env(
                world,
                url,
                fake,
                MAILFIX_APPLY_LEASE=str(LEASE),
                MAILFIX_HOUSEKEEPING_INTERVAL=str(SWEEP),
            )
            async with aiohttp.ClientSession() as http, replicas(env, tmp_path) as (a, b):
                await asyncio.gather(a.wait_listening(http), b.wait_listening(http))
                # A's executor reads the mailbox, then writes: the tenant holds one answer.
                tenant.hold("exo", "Set-CASMailbox" if landed else "Get-CASMailbox", HOLD)
                click = SlackRequests().action(
                    CaseAction.APPROVE.value,
                    proposal.id,
                    user=BOSS,
                    name="bo.admin",
                    channel=HELPDESK,
                    message_ts=CARD_TS,
                )
                clicked = time.monotonic()
                assert await deliver(http, a.url, click) == 200
                stuck = await applying_on_a(store, proposal.id, tenant)
                assert stuck.lease_owner is not None and f":{a.pid}:" in stuck.lease_owner
                owner_a = stuck.lease_owner
                assert tenant.write_requests[SETTING] == (1 if landed else 0)

                os.kill(a.pid, signal.SIGKILL)
                killed = datetime.now(UTC)
                assert await a.proc.wait() == -signal.SIGKILL
                # What A left behind: applying, under A's lease, until it lapses.
                left = await store.proposal(proposal.id)
                assert left is not None and left.state is ProposalState.APPLYING
                assert left.lease_owner == owner_a

                done = await until_rechecked(store, case.number, proposal.id)
                finished = time.monotonic()
                assert done.state is ProposalState.APPLIED, done.result
                assert done.attempts == 2
                expected = "already-done" if landed else "applied"
                assert done.result is not None and done.result["outcome"] == expected
                # The tenant: one Set-CASMailbox for the setting, ever; ActiveSync is on.
                assert tenant.write_requests[SETTING] == 1
                assert tenant.writes == [ENABLE]
                assert tenant.held == 1  # A's answer is still waiting: nobody asked again

                # The case card updated in place (by B) and Ana told.
                await fake.wait_until(
                    lambda: any(
                        c.body.get("channel") == HELPDESK
                        and c.body.get("ts") == CARD_TS
                        and "Applied" in texts([c])
                        for c in fake.of("chat.update")
                    ),
                    "the case card showing the fix applied",
                )
                await fake.wait_until(
                    lambda: any(
                        c.body.get("channel") == "DU0ANA"
                        and "ActiveSync is switched on for your mailbox" in texts([c])
                        for c in fake.of("chat.postMessage")
                    ),
                    "Ana told that ActiveSync is on",
                )
                b_log = b.log.read_text()
                assert "Traceback" not in b_log, b_log[-3000:]
                assert SECRET not in b_log and TOKEN not in b_log

            trail: list[dict[str, Any]] = json.loads(await audit_cli(url, case.number, "--json"))
            steps = [(e["action"], e["actor_id"]) for e in trail]
            resumed = next(e for e in trail if e["action"] == "fix.resumed")
            owner_b = resumed["actor_id"]
            assert f":{b.pid}:" in owner_b
            assert steps == [
                ("proposal.made", "mailfix"),
                ("proposal.approved", BOSS),
                ("fix.applying", BOSS),
                ("fix.resumed", owner_b),
                ("fix.already_done" if landed else "fix.applied", owner_b),
                ("recheck.done", "mailfix"),
            ]
            assert trail[2]["detail"] == f"on server {owner_a}, attempt 1"
            assert resumed["detail"] == f"on server {owner_b}, attempt 2"
            assert trail[-1]["result"] == {"tenant.mailbox": "pass"}
            took_over = datetime.fromisoformat(resumed["at"]) - killed
            print(
                f"\nkill -9 {'after the write landed' if landed else 'before the write'}: "
                f"lease {LEASE:g} s, sweep every {SWEEP:g} s; B took over "
                f"{took_over.total_seconds():.2f} s after the kill; click to applied "
                f"{finished - clicked:.2f} s; Set-CASMailbox requests in the tenant: "
                f"{tenant.write_requests[SETTING]}; changes: {len(tenant.writes)}\n"
                f"mailfix audit --case {case.number}:\n{await audit_cli(url, case.number)}"
            )
    finally:
        await fake.close()
        await engine.dispose()
        await reset_database(url)
