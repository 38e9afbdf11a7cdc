"""Approving and applying fixes: authorisation from stored state, exactly once, resumable.

The executor here is a small recording function standing in for `checks.remedies` (whose own
tests drive the sandbox tenant); what is under test is the orchestration on a real database:
who may act, that a fix runs once however many clicks and replicas, and that a dead replica's
apply is taken over and finished.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from _db import reset_database

from bot.case_store import SqlCaseStore
from bot.storage import create_engine, migrate
from checks.models import Remediation
from dialogs.approval import Actor, Approvals
from dialogs.cases import Case, Decision, DecisionOutcome, NewCase, ProposalState
from dialogs.models import Platform

BOSS = Actor("U0BOSS", "Bo Admin", "slack", "T0001")
SECOND = Actor("U0SECOND", "Cy Admin", "slack", "T0001")
PERSON = Actor("U0PERSON", "Ana Lima", "slack", "T0001")
STRANGER = Actor("U0BOSS", "Bo Admin", "slack", "T0OTHER")  # an approver's id, another workspace


class Directory:
    def __init__(self, *ids: str) -> None:
        self.ids = set(ids)

    async def is_approver(self, actor: Actor) -> bool:
        return actor.id in self.ids


class Executor:
    """Counts applies; idempotent like the real ones (a second apply finds it done)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[str] = []
        self.done: set[str] = set()
        self.delay = delay
        self.started = asyncio.Event()

    async def __call__(self, remediation: Remediation) -> tuple[bool, dict[str, Any]]:
        self.calls.append(remediation.idempotency_key)
        self.started.set()
        await asyncio.sleep(self.delay)
        if remediation.idempotency_key in self.done:
            return True, {"outcome": "already-done", "message": "It was already switched on."}
        self.done.add(remediation.idempotency_key)
        return True, {
            "outcome": "applied",
            "message": "ActiveSync is switched on for your mailbox.",
            "sent": [{"method": "POST", "url": "https://outlook.office365.com/adminapi/x"}],
        }


REMEDY = Remediation(
    id="enable-protocol",
    title="Switch ActiveSync on for ana@contoso.com",
    api="exo",
    action="Set-CASMailbox",
    params={"Identity": "ana@contoso.com", "ActiveSyncEnabled": True},
    target="ana@contoso.com",
    idempotency_key="enable-protocol:ana@contoso.com:ActiveSync",
)


@pytest.fixture
async def engines(database_url: str) -> AsyncIterator[list[Any]]:
    await migrate(database_url)
    made = [create_engine(database_url), create_engine(database_url)]
    try:
        yield made
    finally:
        for engine in made:
            await engine.dispose()
        if database_url.startswith("postgresql"):
            await reset_database(database_url)


async def open_case(store: SqlCaseStore) -> Case:
    return await store.open_case(
        NewCase(
            diagnosis_id=None,
            platform=Platform.SLACK,
            workspace="T0001",
            person_id=PERSON.id,
            person_name=PERSON.name,
            address="ana@contoso.com",
            top_cause="protocol-disabled",
        )
    )


def approvals(engine: Any, executor: Executor, owner: str, **kw: Any) -> Approvals:
    return Approvals(
        SqlCaseStore(engine),
        apply_fix=executor,
        approvers=Directory(BOSS.id, SECOND.id),
        owner=owner,
        **kw,
    )


async def test_a_person_who_is_not_an_approver_changes_nothing_and_is_audited(
    engines: list[Any],
) -> None:
    executor = Executor()
    a = approvals(engines[0], executor, "replica-a")
    case = await open_case(a.store)
    p = await a.propose(case, "tenant.mailbox", REMEDY)
    for who in (PERSON, STRANGER):
        result = await a.decide(p.id, who, Decision.APPROVE)
        assert result.outcome is None and result.refused
    assert executor.calls == []
    now = await a.store.proposal(p.id)
    assert now is not None and now.state is ProposalState.PROPOSED
    trail = await a.store.trail(case_number=case.number)
    assert [e.action for e in trail] == ["proposal.made", "proposal.refused", "proposal.refused"]
    assert trail[2].detail == "This case belongs to another workspace."


async def test_with_a_helpdesk_workspace_only_its_clicks_act_on_any_workspaces_case(
    engines: list[Any],
) -> None:
    """MAILFIX_HELPDESK_SLACK_TEAM: the case card lives in the helpdesk's workspace, so clicks
    count from there, whichever workspace the person's case came from."""
    executor = Executor()
    desk = Actor(BOSS.id, BOSS.name, "slack", "T0DESK")
    a = approvals(engines[0], executor, "replica-a", card_workspaces={"slack": "T0DESK"})
    case = await open_case(a.store)  # Ana's case, from workspace T0001
    p = await a.propose(case, "tenant.mailbox", REMEDY)
    refused = await a.decide(p.id, BOSS, Decision.APPROVE)  # the case's own workspace
    assert refused.outcome is None and refused.refused == "This case belongs to another workspace."
    assert executor.calls == []
    approved = await a.decide(p.id, desk, Decision.APPROVE)
    assert approved.outcome is DecisionOutcome.APPROVED
    assert executor.calls == [REMEDY.idempotency_key]


async def test_approving_applies_once_and_the_trail_tells_the_story(engines: list[Any]) -> None:
    executor = Executor()
    a = approvals(engines[0], executor, "replica-a")
    case = await open_case(a.store)
    p = await a.propose(case, "tenant.mailbox", REMEDY)
    result = await a.decide(p.id, BOSS, Decision.APPROVE)
    assert result.outcome is DecisionOutcome.APPROVED
    assert result.applied is not None and result.applied.state is ProposalState.APPLIED
    assert result.applied.result is not None
    assert result.applied.result["message"] == "ActiveSync is switched on for your mailbox."
    assert executor.calls == [REMEDY.idempotency_key]
    trail = await a.store.trail(case_number=case.number)
    assert [(e.action, e.actor_name) for e in trail] == [
        ("proposal.made", "mailfix"),
        ("proposal.approved", "Bo Admin"),
        ("fix.applying", "Bo Admin"),
        ("fix.applied", "Bo Admin"),
    ]
    assert trail[-1].request == {
        "method": "POST",
        "url": "https://outlook.office365.com/adminapi/x",
    }


async def test_double_clicks_on_two_replicas_apply_once(engines: list[Any]) -> None:
    executor = Executor(delay=0.05)
    a = approvals(engines[0], executor, "replica-a")
    b = approvals(engines[1], executor, "replica-b")
    for _ in range(5):
        executor.done.clear()
        case = await open_case(a.store)
        p = await a.propose(case, "tenant.mailbox", REMEDY)
        calls_before = len(executor.calls)
        results = await asyncio.gather(
            *(r.decide(p.id, BOSS, Decision.APPROVE) for r in (a, b, a, b, a, b))
        )
        assert len(executor.calls) - calls_before == 1
        assert [r.outcome for r in results].count(DecisionOutcome.APPROVED) == 1
        assert sum(r.applied is not None for r in results) == 1


async def test_hard_to_undo_fixes_can_need_two_different_approvers(engines: list[Any]) -> None:
    executor = Executor()
    a = approvals(engines[0], executor, "replica-a", two_approvers_for_hard_to_undo=True)
    case = await open_case(a.store)
    restore = REMEDY.model_copy(
        update={"id": "restore-user", "hard_to_undo": True, "idempotency_key": "restore:1"}
    )
    p = await a.propose(case, "tenant.account", restore)
    assert (await a.decide(p.id, BOSS, Decision.APPROVE)).outcome is DecisionOutcome.RECORDED
    assert (await a.decide(p.id, BOSS, Decision.APPROVE)).outcome is DecisionOutcome.DUPLICATE
    assert executor.calls == []
    second = await a.decide(p.id, SECOND, Decision.APPROVE)
    assert second.outcome is DecisionOutcome.APPROVED and executor.calls == ["restore:1"]


async def test_a_replica_that_dies_while_applying_is_taken_over_and_nothing_runs_twice(
    engines: list[Any],
) -> None:
    executor = Executor(delay=30)  # replica A "dies" inside the executor
    a = approvals(engines[0], executor, "replica-a", lease=0.3)
    case = await open_case(a.store)
    p = await a.propose(case, "tenant.mailbox", REMEDY)
    dying = asyncio.create_task(a.decide(p.id, BOSS, Decision.APPROVE))
    await asyncio.wait_for(executor.started.wait(), 10)
    # The executor had already written (a fix that landed just before the crash).
    executor.done.add(REMEDY.idempotency_key)
    dying.cancel()  # the process is gone: no finish, no more heartbeats
    with pytest.raises(asyncio.CancelledError):
        await dying
    await asyncio.sleep(0.5)  # the lease lapses
    fast = Executor()
    fast.done = executor.done
    b = approvals(engines[1], fast, "replica-b", lease=5)
    finished = await asyncio.gather(b.resume_lapsed(), b.resume_lapsed())
    done = [p for batch in finished for p in batch]
    assert len(done) == 1 and done[0].state is ProposalState.APPLIED
    assert done[0].result is not None and done[0].result["outcome"] == "already-done"
    assert fast.calls == [REMEDY.idempotency_key]
    actions = [e.action for e in await b.store.trail(case_number=case.number)]
    assert actions == [
        "proposal.made",
        "proposal.approved",
        "fix.applying",
        "fix.resumed",
        "fix.already_done",
    ]
