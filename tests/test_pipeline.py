"""The turn pipeline (dialogs/pipeline.py): dedupe -> rate limit -> authorise -> route, over the
real store on SQLite and PostgreSQL, with two replicas (two servers' runtimes) on one database.

Each step is proven through `Pipeline.handle` — what an adapter calls — not by re-testing the
store underneath: a duplicate delivery acts once, a person over the limit is refused in words,
a non-approver's case click changes nothing and is audited, four concurrent Run again presses
start one diagnosis.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from _db import reset_database
from _slackfake import GOOD_ANSWERS, FakeDiagnose
from test_approval import REMEDY, Directory, Executor

from bot.case_store import SqlCaseStore
from bot.runtime import Runtime
from bot.server import RUNTIME, create_app
from bot.settings import Settings
from bot.storage import SqlStore, migrate
from dialogs.approval import Actor
from dialogs.cases import CaseAction, NewCase, ProposalState
from dialogs.models import (
    Action,
    Notice,
    Person,
    Platform,
    Post,
    Reply,
    ShowForm,
    Turn,
    TurnKind,
    Update,
)
from dialogs.pipeline import (
    Arrival,
    CasePress,
    CasePressed,
    Duplicate,
    HomeCard,
    Outcome,
    Refused,
    Replies,
    Why,
)

ANA = Person(id="U0ANA", name="ana", workspace="T0CONTOSO")
BOSS = Actor("U0BOSS", "Bo Admin", Platform.SLACK.value, "T0CONTOSO")
AGENT = Actor("U0AGENT", "Sam Rivera", Platform.SLACK.value, "T0CONTOSO")


@asynccontextmanager
async def replicas(
    database_url: str, tmp_path: Path, diagnose: FakeDiagnose, *, limit: int = 5
) -> AsyncIterator[tuple[Runtime, Runtime, Executor]]:
    """Two servers' runtimes on one database, as two replicas (no platform attached)."""
    await migrate(database_url)
    settings = Settings(state_dir=tmp_path, database_url=database_url, rate_limit_count=limit)
    executor = Executor()
    stores = [SqlStore.from_url(database_url) for _ in range(2)]
    runtimes = [
        create_app(
            settings,
            store=store,
            diagnose=diagnose,
            migrate=False,
            apply_fix=executor,
            approvers=Directory(BOSS.id),
            recheck=_no_recheck,
        )[RUNTIME]
        for store in stores
    ]
    try:
        yield runtimes[0], runtimes[1], executor
    finally:
        for store in stores:
            await store.close()
        if database_url.startswith("postgresql"):
            await reset_database(database_url)


async def _no_recheck(case: Any, check_ids: list[str]) -> list[Any]:
    return []


def turn(kind: TurnKind, **fields: Any) -> Turn:
    return Turn(platform=Platform.SLACK, kind=kind, person=ANA, conversation="DANA", **fields)


def press(did: str, action: Action = Action.RUN_AGAIN) -> Arrival:
    return Arrival.of(
        turn(TurnKind.ACTION, action=action, diagnosis_id=did, values={"diagnosis_id": did})
    )


async def drained(outcome: Outcome) -> list[Reply]:
    assert isinstance(outcome, Replies), outcome
    return [reply async for reply in outcome.replies]


async def diagnosed(runtime: Runtime) -> str:
    """A finished diagnosis of Ana's, through the pipeline: its id."""
    replies = await drained(
        await runtime.pipeline.handle(Arrival.of(turn(TurnKind.SUBMIT, values=GOOD_ANSWERS)))
    )
    assert isinstance(replies[0], Post) and isinstance(replies[-1], Update)
    return replies[0].key


async def test_a_duplicate_delivery_acts_once_across_replicas(
    database_url: str, tmp_path: Path
) -> None:
    diagnose = FakeDiagnose()
    async with replicas(database_url, tmp_path, diagnose) as (a, b, _):
        start = turn(TurnKind.START, text="ana@contoso.com")
        outcomes = await asyncio.gather(
            *(r.pipeline.handle(Arrival.of(start, delivery="Ev0SAME")) for r in (a, b, a, b))
        )
        assert sum(isinstance(o, Duplicate) for o in outcomes) == 3
        [forms] = [await drained(o) for o in outcomes if isinstance(o, Replies)]
        assert [type(r) for r in forms] == [ShowForm]
        # Another delivery is another arrival; the same home event twice shows the home once.
        assert isinstance(await a.pipeline.handle(Arrival.of(start, delivery="Ev0NEW")), Replies)
        home = [Arrival.home(Platform.SLACK, ANA, delivery="Ev0HOME") for _ in range(2)]
        shown = [await r.pipeline.handle(h) for r, h in zip((a, b), home, strict=True)]
        assert isinstance(shown[0], HomeCard) and isinstance(shown[1], Duplicate)
        # The dedupe step alone, for what is no turn (a Teams conversationUpdate).
        assert await a.pipeline.fresh(Platform.TEAMS, "19:conv:act-1")
        assert not await b.pipeline.fresh(Platform.TEAMS, "19:conv:act-1")
        assert await b.pipeline.fresh(Platform.TEAMS, None)  # nothing to dedupe on


async def test_a_person_over_the_limit_is_refused_in_words_on_every_replica(
    database_url: str, tmp_path: Path
) -> None:
    diagnose = FakeDiagnose()
    async with replicas(database_url, tmp_path, diagnose, limit=1) as (a, b, _):
        first = await diagnosed(a)
        for runtime, arrival in (
            (b, Arrival.of(turn(TurnKind.SUBMIT, values=GOOD_ANSWERS))),
            (b, Arrival.of(turn(TurnKind.START))),  # /mailfix: no form to fill in vain
            (a, press(first)),  # Run again is a diagnosis too
        ):
            refused = await runtime.pipeline.handle(arrival)
            assert isinstance(refused, Refused) and refused.why is Why.RATE_LIMIT
            assert "You've run 1 diagnoses in the last" in refused.words
        assert len(diagnose.requests) == 1
        # A form with errors comes back as it is, whatever the limit: nothing was counted.
        bad = await a.pipeline.handle(Arrival.of(turn(TurnKind.SUBMIT, values={"address": "x"})))
        [again] = await drained(bad)
        assert isinstance(again, ShowForm)
        # Someone else has their own limit.
        bo = Person(id="U0BO", workspace="T0CONTOSO")
        other = turn(TurnKind.SUBMIT, values=GOOD_ANSWERS).model_copy(update={"person": bo})
        await drained(await b.pipeline.handle(Arrival.of(other)))
        assert len(diagnose.requests) == 2


async def test_four_concurrent_run_again_presses_on_two_replicas_start_one_diagnosis(
    database_url: str, tmp_path: Path
) -> None:
    diagnose = FakeDiagnose()
    async with replicas(database_url, tmp_path, diagnose) as (a, b, _):
        first = await diagnosed(a)
        outcomes = await asyncio.gather(*(r.pipeline.handle(press(first)) for r in (a, b, a, b)))
        refused = [o for o in outcomes if isinstance(o, Refused)]
        assert [o.why for o in refused] == [Why.ALREADY] * 3
        assert refused[0].words == "This check was already run again: see the newer results."
        [won] = [o for o in outcomes if isinstance(o, Replies)]
        replies = await drained(won)
        assert any(isinstance(r, Post) for r in replies)  # the new check's card
        assert len(diagnose.requests) == 2  # the first check and one run again
        assert [f.kind for f in await a.store.follow_ups(first)] == ["run_again"]
        # Bo pressing Ana's button records nothing: the flow tells him it is not his.
        bo = Person(id="U0BO", workspace="T0CONTOSO")
        fixed = press(first, Action.FIXED).what
        assert isinstance(fixed, Turn)
        theirs = await drained(
            await b.pipeline.handle(Arrival.of(fixed.model_copy(update={"person": bo})))
        )
        assert isinstance(theirs[0], Notice) and "Only the person" in theirs[0].text
        # ... and Ana's own "That fixed it" still acts, once.
        mine = await drained(await a.pipeline.handle(press(first, Action.FIXED)))
        assert any(isinstance(r, Update) for r in mine)
        again = await b.pipeline.handle(press(first, Action.FIXED))
        assert isinstance(again, Refused) and again.why is Why.ALREADY


async def test_a_non_approvers_case_click_changes_nothing_and_is_audited(
    database_url: str, tmp_path: Path
) -> None:
    diagnose = FakeDiagnose()
    async with replicas(database_url, tmp_path, diagnose) as (a, b, executor):
        assert a.helpdesk is not None and b.helpdesk is not None
        store = a.helpdesk.cases
        assert isinstance(store, SqlCaseStore)
        case = await store.open_case(
            NewCase(
                diagnosis_id=None,
                platform=Platform.SLACK,
                workspace=ANA.workspace,
                person_id=ANA.id,
                person_name="Ana Silva",
                address="ana@contoso.com",
                top_cause="protocol-disabled",
            )
        )
        proposal = await a.helpdesk.approvals.propose(case, "tenant.mailbox", REMEDY)

        def approve(actor: Actor, click: str) -> Arrival:
            pressed = CasePress(
                CaseAction.APPROVE, {"proposal": proposal.id}, {}, actor, click=click
            )
            return Arrival.click(Platform.SLACK, pressed)

        outcome = await b.pipeline.handle(approve(AGENT, "1763.0001"))
        assert isinstance(outcome, CasePressed) and not outcome.pressed.ok
        assert outcome.pressed.words and "approver" in outcome.pressed.words
        assert executor.calls == []
        still = await store.proposal(proposal.id)
        assert still is not None and still.state is ProposalState.PROPOSED
        trail = await store.trail(case_number=case.number)
        assert [(e.action, e.actor_id) for e in trail][-1] == ("proposal.refused", AGENT.id)

        # The approver's click, delivered to both replicas at once: applied once.
        both = await asyncio.gather(
            *(r.pipeline.handle(approve(BOSS, "1763.0002")) for r in (a, b))
        )
        assert sorted(type(o).__name__ for o in both) == ["CasePressed", "Duplicate"]
        [done] = [o for o in both if isinstance(o, CasePressed)]
        assert done.pressed.ok and done.pressed.words and done.pressed.words.startswith("Applied")
        assert len(executor.calls) == 1

        # A button naming no fix is refused in words; no helpdesk, no case press.
        forged = CasePress(CaseAction.APPROVE, {"proposal": ""}, {}, BOSS, click="1763.0003")
        bad = await a.pipeline.handle(Arrival.click(Platform.SLACK, forged))
        assert isinstance(bad, Refused) and bad.why is Why.BAD_PRESS
        a.helpdesk = None
        off = await a.pipeline.handle(approve(BOSS, "1763.0004"))
        assert isinstance(off, Refused) and off.why is Why.NO_HELPDESK


async def test_enrich_runs_only_for_what_is_routed(database_url: str, tmp_path: Path) -> None:
    diagnose = FakeDiagnose()
    async with replicas(database_url, tmp_path, diagnose, limit=1) as (a, _, _):
        asked: list[str] = []

        async def email(person: Person) -> Person:
            asked.append(person.id)
            return person.model_copy(update={"email": "ana@contoso.com"})

        start = turn(TurnKind.START)
        [form] = await drained(await a.pipeline.handle(Arrival.of(start, enrich=email)))
        assert isinstance(form, ShowForm) and "ana@contoso.com" in str(form.card.data)
        assert asked == [ANA.id]
        await diagnosed(a)  # the one diagnosis allowed
        refused = await a.pipeline.handle(Arrival.of(start, enrich=email))
        assert isinstance(refused, Refused)
        assert asked == [ANA.id]  # a refused arrival costs no platform call
