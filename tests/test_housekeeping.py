"""Housekeeping on two replicas at once: each piece of work is done once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from _db import reset_database

from bot.case_store import SqlCaseStore
from bot.housekeeping import LAPSED_MESSAGE, sweep
from bot.storage import SqlStore, create_engine, migrate
from checks.models import Client
from dialogs.approval import Actor, Approvals
from dialogs.cases import Decision, NewCase
from dialogs.models import Platform
from dialogs.store import StoredDiagnosis

T0 = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class Everyone:
    async def is_approver(self, actor: Actor) -> bool:
        return True


async def already_done(remediation: Any) -> tuple[bool, dict[str, Any]]:
    return True, {"outcome": "already-done", "message": "It was already in place."}


def stored(id: str, at: datetime, state: str = "done") -> StoredDiagnosis:
    return StoredDiagnosis(
        id=id,
        platform=Platform.SLACK,
        person_id="U0ANA",
        conversation="D0ANA",
        address="ana@contoso.com",
        client=Client.MOBILE,
        app="iphone_mail",
        state=state,  # type: ignore[arg-type]
        created_at=at,
        updated_at=at,
    )


async def test_two_replicas_sweeping_at_once_do_each_thing_once(database_url: str) -> None:
    await migrate(database_url)
    clock = Clock()
    started = asyncio.Event()

    async def never_finishes(remediation: Any) -> tuple[bool, dict[str, Any]]:
        started.set()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    engines = [create_engine(database_url), create_engine(database_url)]
    try:
        diagnoses = [SqlStore(e, clock=clock) for e in engines]
        cases = [SqlCaseStore(e, clock=clock) for e in engines]
        await diagnoses[0].create(stored("old", T0))
        await diagnoses[0].create(stored("stuck", T0, state="running"))
        case = await cases[0].open_case(
            NewCase(
                diagnosis_id=None,
                platform=Platform.SLACK,
                person_id="U0ANA",
                person_name="Ana",
                address="ana@contoso.com",
            )
        )
        remediation = {
            "id": "enable-protocol",
            "title": "Switch IMAP on",
            "api": "exo",
            "action": "Set-CASMailbox",
            "idempotency_key": "k-imap",
        }
        lapsed = await cases[0].propose(
            case.number,
            check_id="tenant.mailbox",
            remediation=remediation,
            idempotency_key="k-imap",
            approvals_needed=1,
            expires_at=T0 + timedelta(days=1),
        )
        await cases[0].propose(
            case.number,
            check_id="tenant.mailbox",
            remediation={**remediation, "idempotency_key": "k-pop"},
            idempotency_key="k-pop",
            approvals_needed=1,
            expires_at=T0 + timedelta(hours=1),
        )
        dying = Approvals(
            cases[0], apply_fix=never_finishes, approvers=Everyone(), owner="dead", lease=30
        )
        task = asyncio.create_task(
            dying.decide(lapsed.id, Actor("U0B", "Bo", "slack"), Decision.APPROVE)
        )
        await asyncio.wait_for(started.wait(), 10)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

        clock.now = T0 + timedelta(days=2)
        replicas = [
            Approvals(c, apply_fix=already_done, approvers=Everyone(), owner=f"r{i}", lease=30)
            for i, c in enumerate(cases)
        ]
        results = await asyncio.gather(
            *(
                sweep(d, c, a, retention=timedelta(days=1), unleased_after=300)
                for d, c, a in zip(diagnoses, cases, replicas, strict=True)
            )
        )
        assert sum(r.expired_proposals for r in results) == 1
        assert sum(r.resumed_fixes for r in results) == 1
        failed = [d for r in results for d in r.failed_diagnoses]
        assert [(d.id, d.error) for d in failed] == [("stuck", LAPSED_MESSAGE)]
        assert sum(r.deleted["diagnoses"] for r in results) == 1  # "old"; "stuck" just changed
        done = await cases[0].proposal(lapsed.id)
        assert done is not None and done.state.value == "applied"
        assert await diagnoses[0].get("old") is None
    finally:
        for engine in engines:
            await engine.dispose()
        if database_url.startswith("postgresql"):
            await reset_database(database_url)
