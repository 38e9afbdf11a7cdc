"""One "replica" of the approval race (run as a separate OS process by test_approval_race.py).

    python tests/_race_replica.py DATABASE_URL OWNER APPLIED_LOG START_AT PROPOSAL_ID…

At START_AT + i × STEP (wall clock, shared by both processes) it approves proposal i, as a
click delivered to this replica would. The executor appends "OWNER PROPOSAL_ID" to APPLIED_LOG
every time it runs, so the test can count applies across processes.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

from bot.case_store import SqlCaseStore
from bot.storage import create_engine
from checks.models import Remediation
from dialogs.approval import Actor, Approvals
from dialogs.cases import Decision

STEP = 0.05
BOSS = Actor("U0BOSS", "Bo Admin", "slack", "T0001")


class Everyone:
    async def is_approver(self, actor: Actor) -> bool:
        return True


async def main(url: str, owner: str, log_path: str, start_at: float, ids: list[str]) -> None:
    engine = create_engine(url)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    async def apply_fix(remediation: Remediation) -> tuple[bool, dict[str, Any]]:
        os.write(fd, f"{owner} {remediation.idempotency_key}\n".encode())
        await asyncio.sleep(0.01)  # the tenant call
        return True, {"outcome": "applied", "message": "done"}

    approvals = Approvals(
        SqlCaseStore(engine), apply_fix=apply_fix, approvers=Everyone(), owner=owner
    )
    try:
        for i, proposal_id in enumerate(ids):
            delay = start_at + i * STEP - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await approvals.decide(proposal_id, BOSS, Decision.APPROVE)
    finally:
        os.close(fd)
        await engine.dispose()


if __name__ == "__main__":
    url, owner, log_path, start = sys.argv[1:5]
    asyncio.run(main(url, owner, log_path, float(start), sys.argv[5:]))
