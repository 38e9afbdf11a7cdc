"""Two OS processes, one PostgreSQL (and SQLite), the same approval delivered to both at the
same moment, 100 times: every fix is applied exactly once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _db import reset_database

from bot.case_store import SqlCaseStore
from bot.storage import create_engine, migrate
from dialogs.cases import NewCase, ProposalState
from dialogs.models import Platform

TRIES = 100
HERE = Path(__file__).resolve().parent


async def test_the_same_approval_on_two_processes_applies_once_in_100_of_100(
    database_url: str, tmp_path: Path
) -> None:
    await migrate(database_url)
    engine = create_engine(database_url)
    store = SqlCaseStore(engine)
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
        ids = []
        for i in range(TRIES):
            key = f"enable-protocol:ana@contoso.com:try{i}"
            p = await store.propose(
                case.number,
                check_id="tenant.mailbox",
                remediation={
                    "id": "enable-protocol",
                    "title": "Switch IMAP on",
                    "api": "exo",
                    "action": "Set-CASMailbox",
                    "idempotency_key": key,
                },
                idempotency_key=key,
                approvals_needed=1,
                expires_at=datetime.now(UTC) + timedelta(hours=1),
            )
            ids.append(p.id)
        log = tmp_path / "applied.log"
        start = time.time() + 3.0  # both processes are up and connected by then
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE)])}
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                str(HERE / "_race_replica.py"),
                database_url,
                owner,
                str(log),
                str(start),
                *ids,
                env=env,
                stderr=subprocess.PIPE,
            )
            for owner in ("replica-a", "replica-b")
        ]
        for proc in procs:
            _, err = await asyncio.wait_for(proc.communicate(), 120)
            assert proc.returncode == 0, err.decode()[-2000:]
        lines = log.read_text().splitlines()
        applied = Counter(line.split()[1] for line in lines)
        assert len(applied) == TRIES
        assert set(applied.values()) == {1}, [k for k, n in applied.items() if n != 1]
        by_replica = Counter(line.split()[0] for line in lines)
        assert set(by_replica) <= {"replica-a", "replica-b"}
        states = {p.state for p in await store.proposals(case.number)}
        assert states == {ProposalState.APPLIED}
        print(f"\napplied once in {TRIES} of {TRIES} races; wins per replica: {dict(by_replica)}")
    finally:
        await engine.dispose()
        if database_url.startswith("postgresql"):
            await reset_database(database_url)
