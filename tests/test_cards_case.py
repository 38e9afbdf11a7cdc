"""The helpdesk loop's cards (case, possible-outage alert) on both platforms: the official
Adaptive Card 1.5 schema and slack_sdk's validators, the documented limits, stable action ids
that carry only a case number or a proposal id, Approve / Reject only in the approver's view
on Teams (refresh.userIds), hostile and huge text kept literal and within bounds."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from cards_helpers import (
    HOSTILE,
    LONG_LINE,
    all_texts,
    nodes,
    sample_report,
    validate_adaptive,
    validate_slack,
)
from pydantic import ValidationError

from cards import Target, render
from cards.case_data import AlertData, CaseData, ProposalLine
from cards.data import ResultsData
from checks.models import Client
from dialogs.cases import QUESTION_INPUT, CaseAction
from dialogs.models import CardSpec

BAD = " | ".join(HOSTILE.values())
APPROVERS = ["29:1abcApprover", "29:2defApprover"]
TITLES = {
    "dns.mx": "MX records",
    "dns.autodiscover": "Autodiscover DNS",
    "autodiscover.v1": "Autodiscover (Outlook)",
    "net.smtp": "SMTP submission",
}


def details(**kw: Any) -> ResultsData:
    report = kw.pop("report", None) or sample_report()
    base: dict[str, Any] = {
        "diagnosis_id": "d-42",
        "address": report.address,
        "client": Client.OUTLOOK,
        "client_label": "Outlook for Windows",
        "report": report,
        "next_steps": ["Helpdesk: Add the CNAME record autodiscover -> autodiscover.outlook.com."],
        "check_titles": TITLES,
        "actions_enabled": False,
        "audience": "helpdesk",
    }
    base.update(kw)
    return ResultsData(**base)


OPEN = ProposalLine(
    id="p-open-1",
    title="Switch IMAP on for ana@contoso.com",
    operation='Set-CASMailbox -Identity "ana@contoso.com" -ImapEnabled $true',
    state="Waiting for approval",
    status="proposed",
    open=True,
    expires="03 Dec 2026, 14:00 UTC",
)
APPLIED = ProposalLine(
    id="p-done-2",
    title="Assign a licence that includes an Exchange Online mailbox",
    operation='POST /v1.0/users/5d92/assignLicense {"addLicenses": [{"skuId": "6fd2", '
    '"disabledPlans": []}], "removeLicenses": []}',
    state="Applied",
    status="applied",
    decisions=["Approved by Bo Admin, 02 Dec 2026, 14:10 UTC"],
    result="Your mailbox has a licence now: sign in again in a few minutes.",
    sent=["POST https://graph.microsoft.com/v1.0/users/5d92/assignLicense"],
    recheck=[("Licence", "passes now"), ("Mailbox", "still fails")],
)


def case(**kw: Any) -> CaseData:
    base: dict[str, Any] = {
        "number": 12,
        "title": "Case 12: IMAP is switched off for the mailbox",
        "person": [
            ("Person", "Ana Lima"),
            ("Address", "ana@contoso.com"),
            ("Asked in", "Teams"),
            ("Opened", "02 Dec 2026, 14:00 UTC"),
        ],
        "answers": [("Mail app", "Thunderbird"), ("What happens", "Cannot sign in")],
        "state": "Taken by Sam Agent",
        "questions": [("Sam Agent", "Which computer?"), ("Ana Lima", "The laptop.")],
        "proposals": [OPEN, APPLIED],
        "can_claim": False,
        "diagnosis_id": "d-42",
        "approver_ids": APPROVERS,
        "details": details(),
    }
    base.update(kw)
    return CaseData(**base)


def spec(data: CaseData | AlertData) -> CardSpec:
    template = "case" if isinstance(data, CaseData) else "alert"
    return CardSpec(template=template, data=data.model_dump(mode="json"))


def executes(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [n for n in nodes(card) if n.get("type") == "Action.Execute"]


def mrkdwn(message: dict[str, Any]) -> list[str]:
    """What Slack parses for mentions and links: mrkdwn texts and the fallback text
    (plain_text shows `<!channel>` as the characters it is)."""
    found = [str(n["text"]) for n in nodes(message) if n.get("type") == "mrkdwn"]
    return [str(message.get("text", "")), *found]


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [n for n in nodes(message) if n.get("type") == "button"]


def verbs(card: dict[str, Any]) -> list[str]:
    return sorted(str(a["verb"]) for a in executes(card))


# --- Adaptive Card (Teams, the console) --------------------------------------------------------


def test_everyone_gets_the_base_card_and_approvers_are_refreshed_to_their_view() -> None:
    base = render(spec(case()), Target.ADAPTIVE)
    validate_adaptive(base)
    assert base["version"] == "1.5"
    refresh = base["refresh"]
    assert refresh["userIds"] == APPROVERS
    assert refresh["action"]["verb"] == CaseAction.REFRESH.value
    assert refresh["action"]["data"] == {"case": 12}
    # no Approve / Reject for those who are not approvers: the card says who can
    assert CaseAction.APPROVE.value not in verbs(base)
    assert "Approvers see Approve and Reject here." in all_texts(base)

    mine = render(spec(case(approver_view=True)), Target.ADAPTIVE)
    validate_adaptive(mine)
    fix = [a for a in executes(mine) if a["verb"] in (CaseAction.APPROVE, CaseAction.REJECT)]
    assert sorted(a["title"] for a in fix) == ["Approve", "Reject"]  # the open proposal only
    assert all(a["data"] == {"proposal": "p-open-1"} for a in fix)


def test_buttons_have_stable_ids_and_carry_only_the_case_or_the_proposal() -> None:
    card = render(spec(case(approver_view=True, can_claim=True)), Target.ADAPTIVE)
    assert verbs(card) == sorted(
        [
            CaseAction.REFRESH.value,
            CaseAction.APPROVE.value,
            CaseAction.REJECT.value,
            CaseAction.ASK.value,
            CaseAction.CLAIM.value,
            CaseAction.RESOLVE.value,
        ]
    )
    assert {a.value for a in CaseAction} == {
        "mailfix.case.claim",
        "mailfix.case.ask",
        "mailfix.case.resolve",
        "mailfix.case.refresh",
        "mailfix.fix.approve",
        "mailfix.fix.reject",
    }
    for action in executes(card):
        assert set(action["data"]) <= {"case", "proposal"}, action
        assert set(action["fallback"]["data"]) <= {"case", "proposal", "verb"}
    [question] = [n for n in nodes(card) if n.get("type") == "Input.Text"]
    assert question["id"] == QUESTION_INPUT and question["label"] == "Question for the person"


def test_the_card_shows_the_person_their_answers_the_qa_and_what_became_of_each_fix() -> None:
    card = render(spec(case()), Target.ADAPTIVE)
    facts = {
        (f["title"], f["value"])
        for n in nodes(card)
        if n.get("type") == "FactSet"
        for f in n["facts"]
    }
    assert ("Person", "Ana Lima") in facts and ("Asked in", "Teams") in facts
    assert ("Mail app", "Thunderbird") in facts
    assert ("Decision", "Approved by Bo Admin, 02 Dec 2026, 14:10 UTC") in facts
    assert ("Sent", "POST https://graph.microsoft.com/v1.0/users/5d92/assignLicense") in facts
    assert ("Checked again", "Licence: passes now") in facts
    assert ("Checked again", "Mailbox: still fails") in facts
    # a request body is told in words, never as JSON
    runs = [v for t, v in facts if t == "It runs"]
    assert runs and not any("{" in v or '":' in v for v in runs)
    texts = "\n".join(all_texts(card))
    assert "Taken by Sam Agent" in texts
    assert "**Sam Agent:** Which computer?" in texts
    assert "Most likely:** Autodiscover DNS record missing" in texts
    # the findings for the helpdesk are there, collapsed behind a toggle
    [box] = [n for n in nodes(card) if n.get("id") == "case-details"]
    assert box["isVisible"] is False
    assert any(f.get("title") == "DNS answers" for f in nodes(box))


def test_a_resolved_case_has_no_buttons_and_a_case_without_approvers_no_refresh() -> None:
    done = case(
        state="Resolved (Sam Agent)",
        can_claim=False,
        can_resolve=False,
        can_ask=False,
        proposals=[APPLIED],
        approver_ids=[],
    )
    for target in (Target.ADAPTIVE, Target.SLACK_MESSAGE):
        out = render(spec(done), target)
        if target is Target.ADAPTIVE:
            validate_adaptive(out)
            assert "refresh" not in out and "actions" not in out
            assert executes(out) == []
        else:
            validate_slack(out, "message")
            assert buttons(out) == []
            assert not any(n.get("type") == "input" for n in nodes(out))


def test_without_the_diagnosis_the_card_says_so() -> None:
    gone = case(details=None, diagnosis_id=None)
    a = render(spec(gone), Target.ADAPTIVE)
    s = render(spec(gone), Target.SLACK_MESSAGE)
    validate_adaptive(a)
    validate_slack(s, "message")
    for out in (a, s):
        assert any("no longer kept" in t for t in all_texts(out))


def test_more_than_sixty_approver_ids_are_refused() -> None:
    with pytest.raises(ValidationError):
        case(approver_ids=[f"29:{i}" for i in range(61)])


# --- Slack -----------------------------------------------------------------------------------


def test_slack_shows_approve_and_reject_to_everyone_and_ask_claim_resolve() -> None:
    message = render(spec(case(can_claim=True)), Target.SLACK_MESSAGE)
    validate_slack(message, "message")
    pressed = {(b["action_id"], b["value"]) for b in buttons(message)}
    assert pressed == {
        (CaseAction.APPROVE.value, "p-open-1"),
        (CaseAction.REJECT.value, "p-open-1"),
        (CaseAction.ASK.value, "12"),
        (CaseAction.CLAIM.value, "12"),
        (CaseAction.RESOLVE.value, "12"),
    }
    [question] = [b for b in message["blocks"] if b["type"] == "input"]
    assert question["block_id"] == QUESTION_INPUT
    assert question["element"]["action_id"] == QUESTION_INPUT
    assert message["text"] == "Case 12: IMAP is switched off for the mailbox"
    text = "\n".join(all_texts(message))
    assert "*Checked again:* Licence: passes now" in text
    assert "*Sent:* POST https://graph.microsoft.com/v1.0/users/5d92/assignLicense" in text
    # A channel message: what went wrong with its evidence, what passed in one line.
    assert "❌ *Autodiscover DNS* (failed)" in text and "*DNS answers:*" in text
    assert "✅ *MX records*" not in text
    [passed] = [t for t in mrkdwn(message) if " passed: " in t]
    assert "MX records" in passed


# --- hostile, huge ------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [Target.ADAPTIVE, Target.SLACK_MESSAGE])
def test_hostile_text_stays_literal(target: Target) -> None:
    evil = case(
        title=f"Case 12: {BAD}",
        person=[("Person", BAD), ("Address", "ana@contoso.com")],
        answers=[("Error message", BAD)],
        state=f"Waiting for Ana to answer: {BAD}",
        questions=[(BAD, BAD)],
        proposals=[OPEN.model_copy(update={"title": BAD, "result": BAD, "sent": [BAD]})],
        details=details(report=sample_report(hostile=True)),
        approver_view=True,
    )
    out = render(spec(evil), target)
    if target is Target.ADAPTIVE:
        validate_adaptive(out)
    else:
        validate_slack(out, "message")
        joined = "\n".join(mrkdwn(out))
        assert "<!channel>" not in joined and "<@U123>" not in joined
        assert "<http://evil.example|click here>" not in joined
    # the hostile JSON fragment did not break out of its string
    assert json.loads(json.dumps(out)) == out
    assert all(b.get("type") != "section" or "x" not in b for b in out.get("blocks", []))


@pytest.mark.parametrize("target", [Target.ADAPTIVE, Target.SLACK_MESSAGE])
def test_a_huge_case_fits_and_cuts_words_only_at_boundaries(target: Target) -> None:
    words = " ".join(f"word{i}" for i in range(2000))
    big = case(
        title=f"Case 12: {words}",
        state=words,
        questions=[("Sam Agent", words)] * 6,
        answers=[("Error message", words)],
        proposals=[OPEN, APPLIED, OPEN.model_copy(update={"id": "p-3", "result": LONG_LINE})],
        details=details(report=sample_report(huge=True)),
    )
    out = render(spec(big), target)
    if target is Target.ADAPTIVE:
        validate_adaptive(out)
    else:
        validate_slack(out, "message")
    texts = all_texts(out)
    # every shortened run of words ends on a whole word
    for text in texts:
        for cut in re.findall(r"(word\d+)…", text):
            assert re.fullmatch(r"word\d+", cut)
        assert not re.search(r"word\d*[^\d\s…*_,.)]", text.replace("words", "")), text[:200]
    assert any("…" in t for t in texts)


def test_nothing_people_read_is_json_a_field_path_or_a_python_value() -> None:
    for target in (Target.ADAPTIVE, Target.SLACK_MESSAGE):
        out = render(spec(case(approver_view=True)), target)
        shown = [
            t
            for n in nodes(out)
            for k, t in n.items()
            if k in ("text", "title", "value", "fallbackText") and isinstance(t, str)
        ]
        for text in shown:
            assert "None" not in text and "True" not in text and "False" not in text, text
            assert not re.search(r"[\[{]\s*['\"]", text), text
            assert "remediation." not in text and "evidence." not in text, text


# --- the possible-outage alert --------------------------------------------------------------


def alert(**kw: Any) -> AlertData:
    base: dict[str, Any] = {
        "title": "Possible outage or misconfiguration",
        "cause": "IMAP is switched off for the mailbox",
        "organisation": "contoso.com",
        "count": 3,
        "people": ["Ana", "Bo", "Cy"],
        "since": "02 Dec 2026, 14:00 UTC",
        "latest": "02 Dec 2026, 14:06 UTC",
        "cases": [12, 13, 14],
        "evidence": [("Server", "outlook.office365.com")],
        "incident": "EX912345 — Users can't access mail with IMAP",
    }
    base.update(kw)
    return AlertData(**base)


def test_the_alert_says_how_many_people_what_cause_and_since_when() -> None:
    a = render(spec(alert()), Target.ADAPTIVE)
    s = render(spec(alert()), Target.SLACK_MESSAGE)
    validate_adaptive(a)
    validate_slack(s, "message")
    for out in (a, s):
        text = "\n".join(all_texts(out))
        assert "3 people" in text and "contoso.com" in text
        assert "IMAP is switched off for the mailbox" in text
        assert "Ana, Bo, Cy" in text and "12, 13, 14" in text
        assert "EX912345" in text
    one = render(spec(alert(count=1, people=["Ana"], cases=[12])), Target.SLACK_MESSAGE)
    assert "1 person" in one["text"]


@pytest.mark.parametrize("target", [Target.ADAPTIVE, Target.SLACK_MESSAGE])
def test_a_hostile_alert_stays_literal_and_fits(target: Target) -> None:
    out = render(
        spec(
            alert(
                cause=BAD,
                organisation=BAD,
                people=[BAD] * 50,
                evidence=[(BAD, BAD)] * 30,
                incident=LONG_LINE,
            )
        ),
        target,
    )
    if target is Target.ADAPTIVE:
        validate_adaptive(out)
    else:
        validate_slack(out, "message")
        assert "<!channel>" not in "\n".join(mrkdwn(out))
