"""kill -9 in the middle of applying: the next replica takes the apply over, finds the fix
already in the tenant, sends nothing more, and the audit trail tells the whole story.

The store's half, on SQLite and PostgreSQL, with a stand-in process and executor;
tests/test_approval_kill9.py kills a real `mailfix serve` applying to the sandbox tenant."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _db import reset_database

from bot.case_store import SqlCaseStore
from bot.storage import create_engine, migrate
from checks.models import Remediation
from dialogs.approval import Actor, Approvals
from dialogs.cases import NewCase, ProposalState
from dialogs.models import Platform

HERE = Path(__file__).resolve().parent
KEY = "enable-protocol:ana@contoso.com:ActiveSync"


class Everyone:
    async def is_approver(self, actor: Actor) -> bool:
        return True


async def test_a_killed_replica_is_resumed_and_nothing_is_applied_twice(
    database_url: str, tmp_path: Path
) -> None:
    await migrate(database_url)
    engine = create_engine(database_url)
    store = SqlCaseStore(engine)
    tenant = tmp_path / "tenant.log"
    try:
        case = await store.open_case(
            NewCase(
                diagnosis_id=None,
                platform=Platform.SLACK,
                person_id="U0ANA",
                person_name="Ana",
                address="ana@contoso.com",
            )
        )
        proposal = await store.propose(
            case.number,
            check_id="tenant.mailbox",
            remediation={
                "id": "enable-protocol",
                "title": "Switch ActiveSync on for ana@contoso.com",
                "api": "exo",
                "action": "Set-CASMailbox",
                "idempotency_key": KEY,
            },
            idempotency_key=KEY,
            approvals_needed=1,
            expires_at=datetime.now(UTC) + timedelta(hours=1),
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE)])}
        doomed = await asyncio.create_subprocess_exec(
            sys.executable,
            str(HERE / "_crash_replica.py"),
            database_url,
            str(tenant),
            proposal.id,
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        assert doomed.stdout is not None
        line = await asyncio.wait_for(doomed.stdout.readline(), 60)
        assert line.strip() == b"applying"
        doomed.send_signal(signal.SIGKILL)
        await doomed.wait()
        assert doomed.returncode == -signal.SIGKILL

        stuck = await store.proposal(proposal.id)
        assert stuck is not None and stuck.state is ProposalState.APPLYING
        assert stuck.lease_owner == "replica-doomed"

        async def apply_fix(remediation: Remediation) -> tuple[bool, dict[str, Any]]:
            # The real executors read the tenant first and write only when needed.
            if f"write {remediation.idempotency_key}" in tenant.read_text().splitlines():
                return True, {"outcome": "already-done", "message": "Already switched on."}
            with tenant.open("a") as f:
                f.write(f"write {remediation.idempotency_key}\n")
            return True, {"outcome": "applied", "message": "Switched on."}

        survivor = Approvals(store, apply_fix=apply_fix, approvers=Everyone(), owner="replica-b")
        assert await survivor.resume_lapsed() == []  # the dead one's lease has not lapsed yet
        await asyncio.sleep(2.2)
        [done] = await survivor.resume_lapsed()
        assert done.state is ProposalState.APPLIED and done.attempts == 2
        assert tenant.read_text().splitlines() == [f"write {KEY}"]  # written once, ever
        trail = await store.trail(case_number=case.number)
        assert [(e.action, e.actor_id) for e in trail] == [
            ("proposal.approved", "U0BOSS"),
            ("fix.applying", "U0BOSS"),
            ("fix.resumed", "replica-b"),
            ("fix.already_done", "replica-b"),
        ]
    finally:
        await engine.dispose()
        if database_url.startswith("postgresql"):
            await reset_database(database_url)
