"""The helpdesk loop in `mailfix demo`, over real HTTP against a real sandbox tenant.

The demo's server (`bot.demo.build_app`) on 127.0.0.1:0: a person in the `imap-off` world (IMAP
switched off for the mailbox) runs a check and escalates it; the case lands in the console's
helpdesk channel (`bot.console_helpdesk`), the helpdesk claims it and asks a question, the
person answers in their chat, an agent's Approve is refused, the approver's Approve applies the
fix to the sandbox tenant through `checks.remedies.apply`, the checks run again and pass, and
the person is told in plain words. Everything is read back from the HTTP answers, the event
stream and the audit trail in the demo's database.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from test_demo_console import (
    JSON_HEADERS,
    Events,
    actions,
    console_server,
    events,
    post,
    run_story,
    texts,
)

from bot.case_store import SqlCaseStore
from dialogs.cases import QUESTION_INPUT, CaseAction, ProposalState

ADDRESS = "imap-off@contoso.com"


async def act(http: Any, verb: CaseAction, data: dict[str, Any], role: str, **inputs: str) -> Any:
    body = {"verb": verb.value, "data": data, "inputs": inputs, "role": role}
    status, answer, _ = await post(http, "/console/api/helpdesk", body)
    assert status == 200, answer
    return answer


async def board(http: Any) -> list[dict[str, Any]]:
    response = await http.get("/console/api/board")
    assert response.status == 200
    items: list[dict[str, Any]] = (await response.json())["items"]
    return items


async def told(stream: Events) -> str:
    """The next message to the person in their timeline (a notice card)."""
    while True:
        name, data = await stream.next()
        if name == "item" and data.get("template") == "notice":
            return " ".join(texts(data["card"]))


def executes(card: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    stack = [card]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "Action.Execute":
                out.append(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return out


def all_text(card: Any) -> str:
    return "\n".join(texts(card))


async def escalated_case(http: Any, stream: Events) -> dict[str, Any]:
    """Run the check, press Escalate; return the person's receipt."""
    _, seen = await run_story(http, stream, ADDRESS, "imap-app")
    results = seen[-1]
    assert results["template"] == "results"
    escalate = actions(results["card"])["Escalate to helpdesk"]
    body = {"verb": escalate["verb"], "data": escalate["data"], "inputs": {}}
    status, _, _ = await post(http, "/console/api/execute", {**body, "message": results["key"]})
    assert status == 200
    receipt: dict[str, Any] = (await stream.until("escalation"))[-1]
    return receipt


async def test_the_whole_loop_from_escalation_to_the_fix_and_the_person_told(
    tmp_path: Path,
) -> None:
    async with console_server(tmp_path) as (http, console), events(http) as stream:
        receipt = await escalated_case(http, stream)
        # The receipt says what happened: the case number and where it was posted.
        said = all_text(receipt["card"])
        assert "Case 1" in said and "the Helpdesk view of this console" in said
        assert "a helpdesk agent will pick it up" not in said

        [posted] = await board(http)
        assert posted["template"] == "case" and posted["case"] == 1
        card, approver, slack = posted["card"], posted["approver_card"], posted["slack"]
        shown = all_text(card)
        assert ADDRESS in shown and "Console user" in shown
        assert "Switch IMAP on for ana@contoso.com" in shown
        assert "Waiting for approval" in shown
        # Teams: everyone gets the card without Approve; approvers are refreshed to theirs.
        assert card["refresh"]["userIds"]
        verbs = {a["verb"] for a in executes(card)}
        assert CaseAction.APPROVE.value not in verbs and CaseAction.CLAIM.value in verbs
        [approve] = [a for a in executes(approver) if a["verb"] == CaseAction.APPROVE.value]
        proposal = approve["data"]["proposal"]
        assert approve["data"] == {"proposal": proposal}
        # Slack: everyone sees Approve; the server decides.
        slack_ids = {b.get("action_id") for blk in slack["blocks"] for b in blk.get("elements", [])}
        assert CaseAction.APPROVE.value in slack_ids

        # The helpdesk claims it; a second claim changes nothing.
        answer = await act(http, CaseAction.CLAIM, {"case": 1}, "helpdesk")
        assert answer["ok"] and "Taken by Sam Rivera" in all_text(answer["items"][0]["card"])
        assert await told(stream) == "Sam Rivera from the helpdesk has taken your case 1."
        again = await act(http, CaseAction.CLAIM, {"case": 1}, "approver")
        assert not again["ok"] and "already taken" in again["message"]

        # Ask: an empty question is refused; a real one reaches the person's chat.
        empty = await act(http, CaseAction.ASK, {"case": 1}, "helpdesk", **{QUESTION_INPUT: " "})
        assert not empty["ok"]
        question = "Which computer do you use?"
        asked = await act(http, CaseAction.ASK, {"case": 1}, "helpdesk", question=question)
        assert "Waiting for Console user to answer" in all_text(asked["items"][0]["card"])
        assert question in await told(stream)

        # The person answers in their chat; the answer returns to the case.
        status, answer, _ = await post(http, "/console/api/start", {"text": "The laptop"})
        assert status == 200
        said_item, ack = answer["items"]
        assert said_item["text"] == "The laptop"
        assert "Sent to the helpdesk with case 1." in all_text(ack["card"])
        assert await told(stream) == "Sent to the helpdesk with case 1."  # the same, as an event
        [posted] = await board(http)
        assert "Console user: The laptop" in all_text(posted["card"]).replace("**", "")

        # An agent's Approve (Slack shows them the button) is refused and changes nothing.
        refused = await act(http, CaseAction.APPROVE, {"proposal": proposal}, "helpdesk")
        assert not refused["ok"] and refused["message"].startswith("Only approvers")
        cases = SqlCaseStore(console.runtime.store.engine)  # type: ignore[attr-defined]
        still = await cases.proposal(proposal)
        assert still is not None and still.state is ProposalState.PROPOSED

        # The approver's Approve: applied to the tenant, checked again, the person told.
        done = await act(http, CaseAction.APPROVE, {"proposal": proposal}, "approver")
        assert done["ok"] and done["message"].startswith("Applied.")
        after = all_text(done["items"][0]["card"])
        assert "Approved by Jo Okafor" in after
        assert "(Set-CASMailbox)" in after  # what was sent
        assert "Mailbox and protocols: passes now" in after  # the re-check, on the tenant
        assert (
            await told(stream) == "IMAP is switched on for your mailbox — try your mail app again."
        )
        applied = await cases.proposal(proposal)
        assert applied is not None and applied.state is ProposalState.APPLIED
        # A second click (a double click, a retry) applies nothing again.
        twice = await act(http, CaseAction.APPROVE, {"proposal": proposal}, "approver")
        assert not twice["ok"] and twice["message"] == "This fix was already decided."

        resolved = await act(http, CaseAction.RESOLVE, {"case": 1}, "helpdesk")
        assert resolved["ok"] and "Resolved" in all_text(resolved["items"][0]["card"])
        assert await told(stream) == "Sam Rivera from the helpdesk marked your case 1 as resolved."

        trail = await cases.trail(case_number=1)
        assert [e.action for e in trail] == [
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
        fix = next(e for e in trail if e.action == "fix.applied")
        assert fix.actor_name == "Jo Okafor" and fix.platform == "console"
        assert fix.request is not None and "InvokeCommand" in fix.request["url"]
        assert json.dumps(fix.request).count("Set-CASMailbox") == 1
        refusal = next(e for e in trail if e.action == "proposal.refused")
        assert refusal.actor_name == "Sam Rivera"


async def test_every_board_change_reaches_open_pages(tmp_path: Path) -> None:
    async with console_server(tmp_path) as (http, _), events(http) as stream:
        await escalated_case(http, stream)
        assert b"event: board\n" in stream.raw  # the case was posted while the person waited
        posted = stream.raw.count(b"event: board\n")
        await act(http, CaseAction.CLAIM, {"case": 1}, "helpdesk")
        while True:
            name, data = await stream.next()
            if name == "board":
                break
        assert stream.raw.count(b"event: board\n") == posted + 1
        assert data["key"] == "case-1" and data["rev"] > 1
        assert "Taken by Sam Rivera" in all_text(data["card"])


async def test_a_composer_message_without_a_question_waiting_is_an_ordinary_start(
    tmp_path: Path,
) -> None:
    async with console_server(tmp_path) as (http, _):
        status, answer, _ = await post(http, "/console/api/start", {"text": "hello there"})
        assert status == 200
        assert [i.get("template") for i in answer["items"]] == [None, "intake"]


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        ({"verb": "mailfix.case.claim", "data": {"case": 1}, "role": "admin"}, JSON_HEADERS, 400),
        ({"verb": "mailfix.nope", "data": {"case": 1}, "role": "helpdesk"}, JSON_HEADERS, 400),
        (
            {"verb": "mailfix.case.claim", "data": {"case": "x"}, "role": "helpdesk"},
            JSON_HEADERS,
            400,
        ),
        ({"verb": "mailfix.fix.approve", "data": {}, "role": "approver"}, JSON_HEADERS, 400),
        (
            {"verb": "mailfix.case.claim", "data": {"case": 1}, "role": "helpdesk"},
            {"Content-Type": "application/json"},
            403,
        ),
    ],
)
async def test_bad_helpdesk_requests_are_refused(
    tmp_path: Path, body: dict[str, Any], headers: dict[str, str], status: int
) -> None:
    async with console_server(tmp_path) as (http, _):
        response = await http.post("/console/api/helpdesk", data=json.dumps(body), headers=headers)
        assert response.status == status
        assert "message" in await response.json()


async def test_a_case_that_does_not_exist_is_said_in_words(tmp_path: Path) -> None:
    async with console_server(tmp_path) as (http, _):
        answer = await act(http, CaseAction.RESOLVE, {"case": 99}, "helpdesk")
        assert answer == {"message": "There is no case 99.", "ok": False, "items": []}


async def test_three_people_with_one_cause_make_one_alert_on_the_board(tmp_path: Path) -> None:
    async with console_server(tmp_path) as (first, _):
        people = [first]
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(2):  # two more people: their own browsers, their own cookies
                other = await stack.enter_async_context(
                    aiohttp.ClientSession(
                        base_url=str(first.make_url("/")),
                        cookie_jar=aiohttp.CookieJar(unsafe=True),  # an IP address host
                    )
                )
                assert (await other.get("/console")).status == 200
                people.append(other)
            for http in people:
                async with events(http) as stream:
                    await escalated_case(http, stream)
        items = await board(first)
        assert [i["template"] for i in items] == ["case", "case", "case", "alert"]
        alert = all_text(items[-1]["card"])
        assert "3 people" in alert and "contoso.com" in alert
        assert "1, 2, 3" in alert
        assert "Console user (case 1), Console user (case 2)" in alert  # three people, one name
        assert "IMAP is switched off" in alert  # what their checks share
