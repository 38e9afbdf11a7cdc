"""A replica that dies mid-apply (run by test_approval_crash.py, then killed with SIGKILL).

    python tests/_crash_replica.py DATABASE_URL TENANT_FILE PROPOSAL_ID

It approves the proposal; its executor "writes to the tenant" (appends to TENANT_FILE, as the
real one sends Set-CASMailbox), prints "applying" and then hangs, as a process would when the
machine dies before the answer is recorded.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from bot.case_store import SqlCaseStore
from bot.storage import create_engine
from checks.models import Remediation
from dialogs.approval import Actor, Approvals
from dialogs.cases import Decision


class Everyone:
    async def is_approver(self, actor: Actor) -> bool:
        return True


async def main(url: str, tenant: Path, proposal_id: str) -> None:
    async def apply_fix(remediation: Remediation) -> tuple[bool, dict[str, Any]]:
        with tenant.open("a") as f:
            f.write(f"write {remediation.idempotency_key}\n")
        print("applying", flush=True)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    approvals = Approvals(
        SqlCaseStore(create_engine(url)),
        apply_fix=apply_fix,
        approvers=Everyone(),
        owner="replica-doomed",
        lease=2.0,
    )
    await approvals.decide(proposal_id, Actor("U0BOSS", "Bo Admin", "slack"), Decision.APPROVE)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), sys.argv[3]))
