"""The helpdesk loop, platform-neutral, on a real database: the story from escalation to the
person being told, and the possible-outage alert.

The channel is a recorder standing in for Slack/Teams (their adapters have their own tests over
the fake Web API and Bot Connector); the executor stands in for `checks.remedies`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from _db import reset_database
from cards_helpers import validate_adaptive, validate_slack
from dialogs_world import ANA as WORLD_ANA
from dialogs_world import OUTLOOK_PROBLEM, make_world

from bot.case_store import SqlCaseStore
from bot.storage import SqlStore, create_engine, migrate
from cards import Target, render
from cards.data import ResultsData
from checks.models import Cause, Client, Finding, Remediation, Report, Side, Status
from dialogs.approval import Actor, Approvals
from dialogs.case_buttons import BadPress, Pressed, card_for, press
from dialogs.cases import (
    QUESTION_INPUT,
    Case,
    CaseAction,
    CaseState,
    Decision,
    DecisionOutcome,
    ProposalState,
)
from dialogs.helpdesk import Helpdesk, Posted, Receipt
from dialogs.models import Action, CardSpec, Person, Platform
from dialogs.store import StoredDiagnosis

ANA = Person(id="U0ANA", name="Ana Lima", email="ana@contoso.com", workspace="T0001")
AGENT = Actor("U0AGENT", "Sam Agent", "slack", "T0001")
BOSS = Actor("U0BOSS", "Bo Admin", "slack", "T0001")

FIX = Remediation(
    id="enable-protocol",
    title="Switch ActiveSync on for ana@contoso.com",
    api="exo",
    action="Set-CASMailbox",
    params={"Identity": "ana@contoso.com", "ActiveSyncEnabled": True},
    target="ana@contoso.com",
    operation="Set-CASMailbox -Identity ana@contoso.com -ActiveSyncEnabled $true",
    idempotency_key="enable-protocol:ana@contoso.com:ActiveSync",
    verify=["tenant.mailbox"],
)


class Channel:
    """Records what the adapter would have sent."""

    def __init__(self) -> None:
        self.posts: list[CardSpec] = []
        self.updates: list[tuple[dict[str, Any], CardSpec]] = []
        self.told: list[tuple[int, str]] = []

    async def post(self, platform: Platform, card: CardSpec) -> Posted:
        self.posts.append(card)
        return Posted("#it-helpdesk", ref={"channel": "C0HELP", "ts": f"{len(self.posts)}.0"})

    async def update(self, ref: dict[str, Any], card: CardSpec) -> bool:
        self.updates.append((ref, card))
        return True

    async def tell(self, case: Case, text: str) -> None:
        self.told.append((case.number, text))


class Directory:
    async def is_approver(self, actor: Actor) -> bool:
        return actor.id == BOSS.id


async def apply_fix(remediation: Remediation) -> tuple[bool, dict[str, Any]]:
    return True, {
        "outcome": "applied",
        "message": "ActiveSync is switched on for your mailbox — add the account again on "
        "your phone.",
        "sent": [{"method": "POST", "url": "https://outlook.office365.com/adminapi/beta/t/x"}],
    }


async def recheck(case: Case, checks: list[str]) -> list[Finding]:
    return [Finding(check=c, status=Status.PASS, summary="ActiveSync is on.") for c in checks]


@pytest.fixture
async def helpdesk(database_url: str) -> AsyncIterator[tuple[Helpdesk, Channel, SqlStore]]:
    await migrate(database_url)
    engine = create_engine(database_url)
    store = SqlCaseStore(engine)
    channel = Channel()
    approvals = Approvals(store, apply_fix=apply_fix, approvers=Directory(), owner="r1")
    desk = Helpdesk(store, channel, approvals, recheck=recheck)
    try:
        yield desk, channel, SqlStore(engine)
    finally:
        await engine.dispose()
        if database_url.startswith("postgresql"):
            await reset_database(database_url)


def diagnosis(person: Person = ANA, n: int = 1) -> StoredDiagnosis:
    at = datetime.now(UTC)
    report = Report(
        address="ana@contoso.com",
        client=Client.MOBILE,
        duration_ms=900,
        findings=[
            Finding(
                check="tenant.mailbox",
                status=Status.FAIL,
                summary="ActiveSync is switched off for this mailbox.",
                remediation=FIX,
            ),
            Finding(check="dns.mx", status=Status.PASS, summary="MX points to Exchange Online."),
        ],
        causes=[
            Cause(
                id="protocol-disabled",
                title="ActiveSync is switched off for the mailbox",
                confidence=0.95,
                checks=["tenant.mailbox"],
                side=Side.ADMIN,
            )
        ],
    )
    return StoredDiagnosis(
        id=f"d{n}",
        platform=Platform.SLACK,
        person_id=person.id,
        conversation="D0ANA",
        address="ana@contoso.com",
        client=Client.MOBILE,
        app="iphone_mail",
        symptom="password_prompt",
        answers={"address": "ana@contoso.com", "app": "iphone_mail", "symptom": "password_prompt"},
        state="done",
        report=report,
        created_at=at,
        updated_at=at,
    )


async def escalate(
    desk: Helpdesk, diagnoses: SqlStore, stored: StoredDiagnosis, person: Person
) -> Receipt:
    await diagnoses.create(stored)  # as the run did, before anyone could escalate it
    return await desk.escalate(stored, person)


def fact(card: CardSpec, label: str) -> str:
    return str(dict(card.data["person"])[label])


async def test_the_whole_loop_from_escalation_to_the_person_being_told(
    helpdesk: tuple[Helpdesk, Channel, SqlStore],
) -> None:
    desk, channel, diagnoses = helpdesk
    receipt = await escalate(desk, diagnoses, diagnosis(), ANA)
    number = receipt.case.number
    assert receipt.posted.where == "#it-helpdesk"
    card = channel.posts[0]
    assert card.template == "case"
    assert card.data["title"] == f"Case {number}: Protocol disabled"
    assert fact(card, "Person") == "Ana Lima" and fact(card, "Address") == "ana@contoso.com"
    assert card.data["state"] == "Open: nobody has taken it yet"
    [proposal] = card.data["proposals"]
    assert proposal["title"] == FIX.title and proposal["open"]
    assert proposal["state"] == "Waiting for approval"

    assert await desk.claim(number, AGENT) is not None
    assert await desk.claim(number, BOSS) is None  # taken already
    assert channel.updates[-1][1].data["state"] == "Taken by Sam Agent"
    assert channel.told[-1] == (
        number,
        f"Sam Agent from the helpdesk has taken your case {number}.",
    )

    await desk.ask(number, AGENT, "  Which phone   do you use? ")
    assert channel.told[-1][1].endswith("Which phone do you use?")
    assert await desk.answer(number, "U0SOMEONE-ELSE", "not me") is None
    answered = await desk.answer(number, ANA.id, "An iPhone 15")
    assert answered is not None and answered.state is CaseState.CLAIMED
    assert channel.updates[-1][1].data["questions"] == [
        ("Sam Agent", "Which phone do you use?"),
        ("Ana Lima", "An iPhone 15"),
    ]

    refused = await desk.decide(proposal["id"], AGENT, Decision.APPROVE)
    assert refused.refused and refused.outcome is None
    approved = await desk.decide(proposal["id"], BOSS, Decision.APPROVE)
    assert approved.outcome is DecisionOutcome.APPROVED
    assert approved.applied is not None and approved.applied.state is ProposalState.APPLIED
    assert channel.told[-1][1].startswith("ActiveSync is switched on for your mailbox")
    shown = channel.updates[-1][1].data["proposals"][0]
    assert shown["state"] == "Applied"
    assert shown["decisions"][0].startswith("Approved by Bo Admin, ")
    assert shown["sent"] == ["POST https://outlook.office365.com/adminapi/beta/t/x"]
    assert shown["recheck"] == [("tenant.mailbox", "passes now")]

    assert await desk.resolve(number, AGENT) is not None
    assert channel.updates[-1][1].data["state"] == "Resolved (Sam Agent)"
    trail = [e.action for e in await desk.cases.trail(case_number=number)]
    assert trail == [
        "case.opened",
        "proposal.made",
        "case.claimed",
        "case.asked",
        "case.answered",
        "proposal.refused",
        "proposal.approved",
        "fix.applying",
        "fix.applied",
        "recheck.done",
        "case.resolved",
    ]


async def test_three_people_with_one_cause_make_one_alert_that_grows(
    helpdesk: tuple[Helpdesk, Channel, SqlStore],
) -> None:
    desk, channel, diagnoses = helpdesk
    for n, name in enumerate(("Ana", "Bo", "Cy", "Di"), start=1):
        person = Person(id=f"U0{name.upper()}", name=name, workspace="T0001")
        await escalate(desk, diagnoses, diagnosis(person, n), person)
    alerts = [c for c in channel.posts if c.template == "alert"]
    assert len(alerts) == 1
    assert alerts[0].data["count"] == 3 and alerts[0].data["people"] == ["Ana", "Bo", "Cy"]
    grown = [card for _, card in channel.updates if card.template == "alert"]
    assert grown and grown[-1].data["count"] == 4


async def test_every_card_the_loop_sends_renders_on_both_platforms(
    helpdesk: tuple[Helpdesk, Channel, SqlStore],
) -> None:
    desk, channel, diagnoses = helpdesk
    desk.approver_ids = ["29:boss"]
    for n, name in enumerate(("Ana", "Bo", "Cy"), start=1):
        person = Person(id=f"U0{name.upper()}", name=name, workspace="T0001")
        await escalate(desk, diagnoses, diagnosis(person, n), person)
    number = 1
    await desk.claim(number, AGENT)
    await desk.ask(number, AGENT, "Which phone?")
    [proposal] = channel.posts[0].data["proposals"]
    await desk.decide(proposal["id"], BOSS, Decision.APPROVE)
    await desk.resolve(number, AGENT)
    cards = [*channel.posts, *(card for _, card in channel.updates)]
    cards.append(await desk.case_card(number, approver_view=True))
    assert {c.template for c in cards} == {"case", "alert"}
    for card in cards:
        validate_adaptive(render(card, Target.ADAPTIVE))
        validate_slack(render(card, Target.SLACK_MESSAGE), "message")
    done = render(cards[-1], Target.ADAPTIVE)
    assert done["refresh"]["userIds"] == ["29:boss"]
    assert "actions" not in done  # resolved: no Claim, no Resolve


async def test_the_alert_shows_what_the_cases_share_and_the_open_incident(
    helpdesk: tuple[Helpdesk, Channel, SqlStore],
) -> None:
    desk, channel, diagnoses = helpdesk
    health = Finding(
        check="tenant.service_health",
        status=Status.FAIL,
        summary="Microsoft reports an open Exchange Online incident.",
        evidence={"issues": [{"id": "EX912345", "title": "Users can't sync with ActiveSync"}]},
    )
    stored: dict[str, StoredDiagnosis] = {}

    async def details(case: Case) -> ResultsData | None:
        d = stored[case.diagnosis_id or ""]
        assert d.report is not None
        return ResultsData(
            diagnosis_id=d.id,
            address=d.address,
            client=d.client,
            client_label="iPhone Mail",
            report=d.report,
            audience="helpdesk",
        )

    desk.details = details
    desk.check_titles = {"tenant.mailbox": "Mailbox and protocols"}
    for n, name in enumerate(("Ana", "Bo", "Cy"), start=1):
        person = Person(id=f"U0{name.upper()}", name=name, workspace="T0001")
        d = diagnosis(person, n)
        assert d.report is not None
        report = d.report.model_copy(update={"findings": [*d.report.findings, health]})
        d = d.model_copy(update={"report": report})
        stored[d.id] = d
        await escalate(desk, diagnoses, d, person)
    [alert] = [c for c in channel.posts if c.template == "alert"]
    assert alert.data["evidence"] == [
        ("Mailbox and protocols", "ActiveSync is switched off for this mailbox.")
    ]
    assert alert.data["incident"] == "EX912345: Users can't sync with ActiveSync"
    for target in (Target.ADAPTIVE, Target.SLACK_MESSAGE):
        out = render(alert, target)
        assert "EX912345" in json.dumps(out)


@pytest.mark.parametrize(
    ("posted", "words"),
    [
        (Posted("#it-helpdesk", ref={"ts": "1.0"}), "Case 7 is posted to #it-helpdesk."),
        (
            Posted("#it-helpdesk", error="mailfix is not a member of #it-helpdesk."),
            "recorded as case 7, but it could not be posted to the helpdesk: mailfix is not a "
            "member of #it-helpdesk. Quote case 7",
        ),
        (None, "Your request is recorded; a helpdesk agent will pick it up."),
    ],
)
async def test_the_persons_receipt_says_what_escalating_really_did(
    posted: Posted | None, words: str
) -> None:
    world = make_world()
    opened: list[str] = []

    async def escalate(stored: StoredDiagnosis, person: Person) -> Receipt:
        opened.append(stored.id)
        if posted is None:
            raise RuntimeError("the helpdesk is down")
        at = datetime.now(UTC)
        case = Case(
            number=7,
            state=CaseState.OPEN,
            diagnosis_id=stored.id,
            platform=stored.platform,
            person_id=person.id,
            person_name=person.name or person.id,
            address=stored.address,
            created_at=at,
            updated_at=at,
        )
        return Receipt(case, posted)

    world.conversation.s = replace(world.services, escalate=escalate)
    t = world.transcript(Platform.SLACK, WORLD_ANA)
    await t.command("/mailfix")
    t.expect_form()
    await t.submit(OUTLOOK_PROBLEM)
    t.expect_post("progress")
    t.expect_update("results")
    await t.press(Action.ESCALATE)
    t.expect_update("results", escalated=True)
    receipt = t.expect_post("escalation", diagnosis_id="d1")
    assert opened == ["d1"]
    assert words in receipt["summary"]
    if posted is not None:
        assert receipt["ticket"] == "Case 7" and receipt["channel_label"] == "#it-helpdesk"


async def test_buttons_act_on_the_case_or_fix_they_name_and_say_what_happened(
    helpdesk: tuple[Helpdesk, Channel, SqlStore],
) -> None:
    desk, channel, diagnoses = helpdesk
    number = (await escalate(desk, diagnoses, diagnosis(), ANA)).case.number
    [proposal] = channel.posts[0].data["proposals"]
    with pytest.raises(BadPress):
        await press(desk, CaseAction.CLAIM, {"case": "one"}, {}, AGENT)
    with pytest.raises(BadPress):
        await press(desk, CaseAction.APPROVE, {"case": number}, {}, BOSS)
    claimed = await press(desk, CaseAction.CLAIM, {"case": str(number)}, {}, AGENT)
    assert claimed == Pressed("Taken: the person is told.", True, number)
    again = await press(desk, CaseAction.CLAIM, {"case": number}, {}, BOSS)
    assert not again.ok
    empty = await press(desk, CaseAction.ASK, {"case": number}, {QUESTION_INPUT: "  "}, AGENT)
    assert empty.words == "Type the question for the person first." and not empty.ok
    refused = await press(desk, CaseAction.REJECT, {"proposal": proposal["id"]}, {}, AGENT)
    assert not refused.ok and (refused.words or "").startswith("Only approvers")
    rejected = await press(desk, CaseAction.REJECT, {"proposal": proposal["id"]}, {}, BOSS)
    assert rejected == Pressed("Rejected: nothing will be changed.", True, number)
    late = await press(desk, CaseAction.APPROVE, {"proposal": proposal["id"]}, {}, BOSS)
    assert late == Pressed("This fix was already decided.", False, number)
    stored = await desk.cases.proposal(proposal["id"])
    assert stored is not None and stored.state is ProposalState.REJECTED
    assert "fix.applying" not in [e.action for e in await desk.cases.trail(case_number=number)]
    missing = await press(desk, CaseAction.RESOLVE, {"case": 999}, {}, AGENT)
    assert missing == Pressed("There is no case 999.", False, 999)


async def test_a_refresh_answers_each_viewer_with_their_view(
    helpdesk: tuple[Helpdesk, Channel, SqlStore],
) -> None:
    desk, _, diagnoses = helpdesk
    number = (await escalate(desk, diagnoses, diagnosis(), ANA)).case.number
    agents = await card_for(desk, number, AGENT)
    bosses = await card_for(desk, number, BOSS)
    assert agents.data["approver_view"] is False and bosses.data["approver_view"] is True
    verbs = [a["verb"] for a in _executes(render(bosses, Target.ADAPTIVE))]
    assert CaseAction.APPROVE.value in verbs
    assert CaseAction.APPROVE.value not in [
        a["verb"] for a in _executes(render(agents, Target.ADAPTIVE))
    ]


def _executes(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        found = [node] if node.get("type") == "Action.Execute" else []
        return found + [a for v in node.values() for a in _executes(v)]
    if isinstance(node, list):
        return [a for v in node for a in _executes(v)]
    return []
