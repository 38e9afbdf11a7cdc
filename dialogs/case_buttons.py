"""The case card's buttons, platform-neutral: what a press does and what to tell the presser.

Every adapter (Slack, Teams, the console) turns a click into `press(helpdesk, action, payload,
inputs, actor)`: `action` is the button's `dialogs.cases.CaseAction` (Slack action id, Teams
verb), `payload` what the button carried — only `{"case": N}` or `{"proposal": id}` is read,
nothing else — `inputs` the card's inputs (the question), `actor` who the platform says clicked.
Who may do what is decided by `Helpdesk` / `Approvals` from stored state.

    pressed = await press(helpdesk, CaseAction.APPROVE, {"proposal": "…"}, {}, actor)
    # Slack: pressed.words as an ephemeral message; Teams: as the invoke's message answer

While a fix is applied, `current_case` holds the case it is for, so an executor that needs more
than the remediation (the demo's: which sandbox world) can read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from dialogs.approval import Actor
from dialogs.cases import (
    QUESTION_INPUT,
    Case,
    CaseAction,
    Decision,
    DecisionOutcome,
    ProposalState,
)
from dialogs.helpdesk import Helpdesk
from dialogs.models import CardSpec

MAX_QUESTION = 1000

current_case: ContextVar[Case | None] = ContextVar("mailfix_current_case", default=None)


@dataclass(frozen=True)
class Pressed:
    """What one press did: words for whoever pressed, whether it acted, the case it was on."""

    words: str | None
    ok: bool
    case: int | None = None


class BadPress(ValueError):
    """The press names no case or fix (a forged or broken payload); words for a 400."""


def case_number(value: Any) -> int | None:
    """A case number from a button payload (an int, or digits in Slack's string value)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and 0 < value < 2**31:
        return value
    if isinstance(value, str) and value.isdigit() and len(value) < 10:
        return int(value)
    return None


async def press(
    helpdesk: Helpdesk,
    action: CaseAction,
    payload: Mapping[str, Any],
    inputs: Mapping[str, Any],
    actor: Actor,
) -> Pressed:
    if action in (CaseAction.APPROVE, CaseAction.REJECT):
        proposal = payload.get("proposal")
        if not isinstance(proposal, str) or not 0 < len(proposal) <= 100:
            raise BadPress("This button names no fix.")
        return await _decide(helpdesk, proposal, actor, action)
    number = case_number(payload.get("case"))
    if number is None:
        raise BadPress("This button names no case.")
    words, ok = await _case(helpdesk, number, actor, action, inputs)
    return Pressed(words, ok, number)


async def card_for(helpdesk: Helpdesk, number: int, actor: Actor) -> CardSpec:
    """The case card as `actor` sees it: the approver's view (with Approve / Reject) for an
    approver, the card everyone gets otherwise. What a Teams client's refresh
    (`CaseAction.REFRESH`, sent for the users in `refresh.userIds`) is answered with."""
    approver = await helpdesk.approvals.approvers.is_approver(actor)
    return await helpdesk.case_card(number, approver_view=approver)


async def _case(
    desk: Helpdesk, number: int, actor: Actor, action: CaseAction, inputs: Mapping[str, Any]
) -> tuple[str | None, bool]:
    if await desk.cases.case(number) is None:
        return f"There is no case {number}.", False
    if action is CaseAction.CLAIM:
        if await desk.claim(number, actor) is None:
            return "Someone has already taken this case, or it is resolved.", False
        return "Taken: the person is told.", True
    if action is CaseAction.ASK:
        question = inputs.get(QUESTION_INPUT)
        question = question.strip() if isinstance(question, str) else ""
        if not question:
            return "Type the question for the person first.", False
        if len(question) > MAX_QUESTION:
            return f"Keep the question under {MAX_QUESTION} characters.", False
        if await desk.ask(number, actor, question) is None:
            return "This case is resolved: nobody to ask.", False
        return "Asked: the question is in the person's chat.", True
    if action is CaseAction.RESOLVE:
        if await desk.resolve(number, actor) is None:
            return "This case was already resolved.", False
        return "Resolved: the person is told.", True
    return None, True  # REFRESH: the adapter answers with the card for this viewer


_DECIDED = {
    DecisionOutcome.RECORDED: "Your approval is recorded; this fix needs another approver.",
    DecisionOutcome.REJECTED: "Rejected: nothing will be changed.",
    DecisionOutcome.DUPLICATE: "You have already decided on this fix.",
    DecisionOutcome.TOO_LATE: "This fix was already decided.",
    DecisionOutcome.EXPIRED: "This fix expired without a decision: nothing was changed.",
}


async def _decide(desk: Helpdesk, proposal_id: str, actor: Actor, action: CaseAction) -> Pressed:
    proposal = await desk.cases.proposal(proposal_id)
    if proposal is None:
        return Pressed("This fix is no longer on any case.", False)
    number = proposal.case_number
    decision = Decision.APPROVE if action is CaseAction.APPROVE else Decision.REJECT
    token = current_case.set(await desk.cases.case(number))
    try:
        result = await desk.decide(proposal_id, actor, decision)
    finally:
        current_case.reset(token)
    if result.refused:
        return Pressed(result.refused, False, number)
    applied = result.applied
    if applied is not None:
        detail = str((applied.result or {}).get("detail") or "")
        if applied.state is ProposalState.APPLIED:
            return Pressed(f"Applied. {detail}".strip(), True, number)
        return Pressed(f"Could not be applied. {detail}".strip(), False, number)
    ok = result.outcome in (DecisionOutcome.RECORDED, DecisionOutcome.REJECTED)
    words = _DECIDED.get(result.outcome) if result.outcome else None
    return Pressed(words, ok, number)
