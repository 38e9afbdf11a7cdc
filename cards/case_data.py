"""What the helpdesk loop's cards need: the case card, the possible-outage alert, and the card
that brings the helpdesk's question to the person.

`dialogs.helpdesk.Helpdesk.case_card()` / `alert_card()` build these dicts, the Teams adapter the
answer card's; `cards.render` validates them here before a template sees them. Strings are raw,
as everywhere in `cards/`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .data import ResultsData


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ProposalLine(_Data):
    """One proposed fix on a case card, with what became of it."""

    id: str  # the proposal id: the only thing Approve / Reject carry
    title: str
    operation: str = ""  # what it runs, e.g. "Set-CASMailbox -Identity … -ImapEnabled $true"
    state: str  # in words: "Waiting for approval", "Applied", …
    status: str = "proposed"  # dialogs.cases.ProposalState value (styling only, never shown)
    decisions: list[str] = Field(default_factory=list)  # "Approved by Bo Admin, 2 Dec 2026, …"
    needs: int = 1  # approvals needed
    result: str = ""  # what the person was told (or why it failed)
    sent: list[str] = Field(default_factory=list)  # "POST https://… (Set-CASMailbox)"
    recheck: list[tuple[str, str]] = Field(default_factory=list)  # (check title, "passes now")
    open: bool = False  # still waiting for a decision: Approve / Reject apply
    expires: str = ""  # when an open proposal runs out, in words


class CaseData(_Data):
    """The case card in the helpdesk channel."""

    number: int
    title: str  # "Case 12: IMAP is switched off for the mailbox"
    person: list[tuple[str, str]]  # (label, value): person, address, platform, opened
    answers: list[tuple[str, str]] = Field(default_factory=list)  # the intake answers
    state: str  # "Taken by Sam Agent", "Waiting for Ana Lima to answer: …"
    questions: list[tuple[str, str]] = Field(default_factory=list)  # (who, what) in order
    proposals: list[ProposalLine] = Field(default_factory=list)
    can_claim: bool = True
    can_resolve: bool = True
    can_ask: bool = True
    diagnosis_id: str | None = None
    # Teams: who gets the approver's view (refresh.userIds; at most 60, §B4). Everyone else
    # sees the card without Approve / Reject.
    approver_ids: list[str] = Field(default_factory=list, max_length=60)
    approver_view: bool = False  # this card is the approver's view (with Approve / Reject)
    details: ResultsData | None = None  # the diagnosis for the helpdesk, when it is kept


class AlertData(_Data):
    """Several people in one organisation hit the same cause within a short window."""

    title: str
    cause: str
    organisation: str
    count: int
    people: list[str] = Field(default_factory=list)
    since: str
    latest: str
    cases: list[int] = Field(default_factory=list)
    evidence: list[tuple[str, str]] = Field(default_factory=list)  # what the cases share
    incident: str | None = None  # the open Microsoft 365 incident, for service causes


class AnswerData(_Data):
    """The helpdesk's question in the person's chat, with a box to answer it (Teams; Slack
    answers in a modal of its own)."""

    case: int  # the case number: all the answer's button carries
    text: str  # what the person is told, the question included
