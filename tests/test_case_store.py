"""The helpdesk loop's state on SQLite and the real PostgreSQL: every transition, every race.

Races are real: many coroutines on separate connections hit the same row at once, and the
database — not the code's memory — must let exactly one through.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from _db import reset_database

from bot.case_store import SqlCaseStore
from bot.storage import create_engine, migrate
from dialogs.cases import (
    AuditEntry,
    CaseState,
    Decision,
    DecisionOutcome,
    NewCase,
    ProposalState,
    UnknownCase,
)
from dialogs.models import Platform

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(database_url: str, clock: Clock) -> AsyncIterator[SqlCaseStore]:
    await migrate(database_url)
    engine = create_engine(database_url)
    try:
        yield SqlCaseStore(engine, clock=clock)
    finally:
        await engine.dispose()
        if database_url.startswith("postgresql"):
            await reset_database(database_url)


def new_case(**changes: object) -> NewCase:
    values: dict[str, object] = {
        "diagnosis_id": None,
        "platform": Platform.SLACK,
        "workspace": "T0001",
        "person_id": "U0PERSON",
        "person_name": "Ana Lima",
        "address": "ana@Contoso.com",
        "answers": {"app": "iphone_mail", "symptom": "password_prompt"},
        "top_cause": "protocol-disabled",
    }
    values.update(changes)
    return NewCase.model_validate(values)


async def proposal_for(store: SqlCaseStore, clock: Clock, *, needed: int = 1) -> str:
    case = await store.open_case(new_case())
    p = await store.propose(
        case.number,
        check_id="tenant.mailbox",
        remediation={"id": "enable-protocol", "title": "Switch ActiveSync on"},
        idempotency_key="enable-protocol:ana@contoso.com:ActiveSync",
        approvals_needed=needed,
        expires_at=clock.now + timedelta(hours=24),
    )
    return p.id


async def approve(store: SqlCaseStore, proposal_id: str, who: str) -> DecisionOutcome:
    outcome, _ = await store.decide(
        proposal_id,
        approver_id=who,
        approver_name=who.title(),
        platform=Platform.SLACK,
        decision=Decision.APPROVE,
    )
    return outcome


# --- cases ------------------------------------------------------------------------------------


async def test_cases_are_numbered_and_remember_the_organisation(store: SqlCaseStore) -> None:
    first = await store.open_case(new_case())
    second = await store.open_case(new_case(person_id="U0OTHER"))
    assert second.number == first.number + 1
    assert first.state is CaseState.OPEN
    assert first.organisation == "contoso.com"
    assert await store.case(first.number) == first


async def test_two_agents_claiming_at_once_one_gets_it(store: SqlCaseStore) -> None:
    case = await store.open_case(new_case())
    results = await asyncio.gather(
        *(store.claim(case.number, f"U0AGENT{i}", f"Agent {i}") for i in range(8))
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    now = await store.case(case.number)
    assert now is not None and now.state is CaseState.CLAIMED
    assert now.claimed_by == winners[0].claimed_by


async def test_asking_waits_for_the_person_and_the_answer_returns_to_the_agent(
    store: SqlCaseStore,
) -> None:
    case = await store.open_case(new_case())
    asked = await store.ask(case.number, "Which phone do you use?")
    assert asked is not None and asked.state is CaseState.WAITING
    assert asked.question == "Which phone do you use?"
    back = await store.answered(case.number)
    assert back is not None and back.state is CaseState.OPEN and back.question is None
    await store.claim(case.number, "U0AGENT", "Agent")
    await store.ask(case.number, "And the app?")
    back = await store.answered(case.number)
    assert back is not None and back.state is CaseState.CLAIMED
    assert await store.answered(case.number) is None  # nothing is waiting any more


async def test_resolving_is_once_and_closes_the_case_to_claims(store: SqlCaseStore) -> None:
    case = await store.open_case(new_case())
    resolved = await store.resolve(case.number)
    assert resolved is not None and resolved.resolved_at is not None
    assert await store.resolve(case.number) is None
    assert await store.claim(case.number, "U0AGENT", "Agent") is None


async def test_an_unknown_case_is_an_error_not_a_silent_none(store: SqlCaseStore) -> None:
    with pytest.raises(UnknownCase):
        await store.claim(999, "U0AGENT", "Agent")
    with pytest.raises(UnknownCase):
        await store.propose(
            999,
            check_id="tenant.mailbox",
            remediation={},
            idempotency_key="k",
            approvals_needed=1,
            expires_at=T0,
        )


# --- proposals and approvals ------------------------------------------------------------------


async def test_the_same_proposal_twice_is_one_proposal(store: SqlCaseStore, clock: Clock) -> None:
    case = await store.open_case(new_case())
    made = [
        await store.propose(
            case.number,
            check_id="tenant.devices",
            remediation={"id": "release-device"},
            idempotency_key="release-device:ana:ABC123",
            approvals_needed=1,
            expires_at=clock.now + timedelta(hours=1),
        )
        for _ in range(3)
    ]
    assert {p.id for p in made} == {made[0].id}
    assert [p.id for p in await store.proposals(case.number)] == [made[0].id]


async def test_one_approval_approves_and_a_second_click_changes_nothing(
    store: SqlCaseStore, clock: Clock
) -> None:
    pid = await proposal_for(store, clock)
    assert await approve(store, pid, "u0boss") is DecisionOutcome.APPROVED
    assert await approve(store, pid, "u0boss") is DecisionOutcome.TOO_LATE
    p = await store.proposal(pid)
    assert p is not None and p.state is ProposalState.APPROVED
    assert [a.approver_id for a in await store.approvals(pid)] == ["u0boss"]


async def test_two_approvers_are_needed_when_the_proposal_says_so(
    store: SqlCaseStore, clock: Clock
) -> None:
    pid = await proposal_for(store, clock, needed=2)
    assert await approve(store, pid, "u0first") is DecisionOutcome.RECORDED
    assert await approve(store, pid, "u0first") is DecisionOutcome.DUPLICATE
    p = await store.proposal(pid)
    assert p is not None and p.state is ProposalState.PROPOSED
    assert await approve(store, pid, "u0second") is DecisionOutcome.APPROVED


async def test_two_different_approvers_at_once_still_approve(
    store: SqlCaseStore, clock: Clock
) -> None:
    # Both clicks count: neither may read "1 of 2" and leave the proposal stuck.
    for _ in range(10):
        pid = await proposal_for(store, clock, needed=2)
        outcomes = await asyncio.gather(approve(store, pid, "u0a"), approve(store, pid, "u0b"))
        assert sorted(outcomes) == sorted([DecisionOutcome.APPROVED, DecisionOutcome.RECORDED])
        p = await store.proposal(pid)
        assert p is not None and p.state is ProposalState.APPROVED


async def test_the_same_click_delivered_many_times_at_once_approves_once(
    store: SqlCaseStore, clock: Clock
) -> None:
    pid = await proposal_for(store, clock)
    outcomes = await asyncio.gather(*(approve(store, pid, "u0boss") for _ in range(12)))
    assert outcomes.count(DecisionOutcome.APPROVED) == 1
    assert set(outcomes) - {DecisionOutcome.APPROVED} <= {
        DecisionOutcome.DUPLICATE,
        DecisionOutcome.TOO_LATE,
    }


async def test_a_rejection_closes_the_proposal(store: SqlCaseStore, clock: Clock) -> None:
    pid = await proposal_for(store, clock, needed=2)
    outcome, p = await store.decide(
        pid,
        approver_id="u0no",
        approver_name="No",
        platform=Platform.TEAMS,
        decision=Decision.REJECT,
    )
    assert outcome is DecisionOutcome.REJECTED and p.state is ProposalState.REJECTED
    assert await approve(store, pid, "u0yes") is DecisionOutcome.TOO_LATE


async def test_a_proposal_expires(store: SqlCaseStore, clock: Clock) -> None:
    pid = await proposal_for(store, clock)
    other = await proposal_for(store, clock)
    clock.advance(hours=24)
    assert await approve(store, pid, "u0late") is DecisionOutcome.EXPIRED
    p = await store.proposal(pid)
    assert p is not None and p.state is ProposalState.EXPIRED
    assert [e.id for e in await store.expire_proposals()] == [other]
    assert await store.expire_proposals() == []


# --- applying under a lease -------------------------------------------------------------------


async def test_only_one_replica_begins_applying(store: SqlCaseStore, clock: Clock) -> None:
    pid = await proposal_for(store, clock)
    await approve(store, pid, "u0boss")
    started = await asyncio.gather(
        *(store.begin_apply(pid, f"replica-{i}", lease=30) for i in range(10))
    )
    holders = [p for p in started if p is not None]
    assert len(holders) == 1
    assert holders[0].state is ProposalState.APPLYING and holders[0].attempts == 1
    owner = holders[0].lease_owner
    assert owner is not None
    assert await store.finish_apply(pid, "someone-else", applied=True, result={}) is None
    done = await store.finish_apply(pid, owner, applied=True, result={"outcome": "applied"})
    assert done is not None and done.state is ProposalState.APPLIED
    assert done.lease_owner is None and done.result == {"outcome": "applied"}


async def test_a_lapsed_lease_is_taken_over_once(store: SqlCaseStore, clock: Clock) -> None:
    pid = await proposal_for(store, clock)
    await approve(store, pid, "u0boss")
    assert await store.begin_apply(pid, "replica-dead", lease=30) is not None
    clock.advance(seconds=10)
    assert await store.heartbeat(pid, "replica-dead", lease=30)
    assert await store.take_over_lapsed("replica-b", lease=30) == []  # still renewed
    clock.advance(seconds=31)
    taken = await asyncio.gather(*(store.take_over_lapsed(f"r{i}", lease=30) for i in range(6)))
    winners = [p for batch in taken for p in batch]
    assert len(winners) == 1 and winners[0].attempts == 2
    assert not await store.heartbeat(pid, "replica-dead", lease=30)  # the dead one lost it
    assert await store.finish_apply(pid, "replica-dead", applied=True, result={}) is None


# --- presses, message references, audit -------------------------------------------------------


async def test_a_button_acts_for_the_first_press_only(store: SqlCaseStore) -> None:
    results = await asyncio.gather(
        *(
            store.press("run_again:diag-1", kind="run_again", actor="U0P", platform=Platform.SLACK)
            for _ in range(4)
        )
    )
    assert results.count(True) == 1


async def test_message_references_are_kept_for_any_replica(store: SqlCaseStore) -> None:
    await store.save_message("case:1:helpdesk", Platform.SLACK, {"channel": "C1", "ts": "1.0"})
    await store.save_message("case:1:helpdesk", Platform.SLACK, {"channel": "C1", "ts": "2.0"})
    assert await store.message("case:1:helpdesk") == {"channel": "C1", "ts": "2.0"}
    assert await store.message("case:2:helpdesk") is None


async def test_the_audit_trail_is_in_order_and_filters(store: SqlCaseStore, clock: Clock) -> None:
    for action, case_number in (("case.opened", 1), ("case.opened", 2), ("fix.applied", 1)):
        clock.advance(minutes=1)
        await store.audit(
            AuditEntry(
                at=clock.now,
                actor_id="U0BOSS",
                actor_name="Boss",
                platform="slack",
                action=action,
                case_number=case_number,
                request={"method": "POST", "url": "https://example.invalid/x"},
                result={"status": 200},
            )
        )
    trail = await store.trail(case_number=1)
    assert [e.action for e in trail] == ["case.opened", "fix.applied"]
    assert trail[0].seq is not None and trail[1].seq is not None and trail[0].seq < trail[1].seq
    assert [e.case_number for e in await store.trail(since=T0 + timedelta(minutes=2))] == [2, 1]


async def test_retention_removes_old_resolved_cases_and_audit_but_not_open_cases(
    store: SqlCaseStore, clock: Clock
) -> None:
    old_open = await store.open_case(new_case())
    old_done = await store.open_case(new_case())
    await store.resolve(old_done.number)
    await store.audit(
        AuditEntry(at=clock.now, actor_id="s", actor_name="s", platform="system", action="x")
    )
    clock.advance(days=100)
    fresh = await store.open_case(new_case())
    removed = await store.purge(timedelta(days=90))
    assert removed == {"cases": 1, "audit entries": 1, "button presses": 0}
    assert await store.case(old_done.number) is None
    assert await store.case(old_open.number) is not None
    assert await store.case(fresh.number) is not None


# --- pattern alerts ---------------------------------------------------------------------------


async def test_three_people_with_one_cause_in_ten_minutes_raise_one_alert(
    store: SqlCaseStore, clock: Clock
) -> None:
    async def escalate(person: str, **changes: object) -> object:
        clock.advance(minutes=2)
        case = await store.open_case(new_case(person_id=person, **changes))
        return await store.note_pattern(case, window=600, threshold=3)

    assert await escalate("U1") is None
    assert await escalate("U1") is None  # the same person twice is one person
    assert await escalate("U2", address="bo@fabrikam.com") is None  # another organisation
    assert await escalate("U3", top_cause="device-quarantined") is None  # another cause
    assert await escalate("U4") is None
    alert = await escalate("U5")
    assert alert is not None and alert.new
    assert alert.organisation == "contoso.com" and alert.cause == "protocol-disabled"
    assert len(alert.case_numbers) == 4  # U1 twice, U4, U5
    grown = await escalate("U6")
    assert grown is not None and not grown.new and grown.id == alert.id
    assert len(grown.case_numbers) == 5
    clock.advance(minutes=30)
    assert await escalate("U7") is None  # the window has passed; the count starts again
