"""Helpdesk cases, fix proposals, approvals and the audit trail: the data and its rules.

`CaseStore` is the contract; `bot/case_store.py` implements it on SQL (SQLite or PostgreSQL).
The rules that keep several replicas honest are single conditional statements:

- a proposal moves `proposed -> approved -> applying -> applied | failed` (or `rejected`,
  `expired`), each step one `UPDATE … WHERE state = <the state before>`: of two replicas
  handling the same click, one sees a row changed and acts, the other sees none and does not;
- `applying` is held under a lease the applying replica renews (heartbeat). A lapsed lease means
  that replica died: whoever notices takes the lease over (again one conditional UPDATE) and
  re-runs the executor, which reads the tenant first and sends nothing when the fix already holds
  — so a crash between "sent" and "recorded" never applies a fix twice;
- every button press that acts is one INSERT on a primary key (`press`): double clicks,
  platform retries and a second replica lose the race and change nothing;
- the audit log is append-only: who, what, when, from which platform, the request sent and the
  result. Only the retention job ever deletes from it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from dialogs.models import Platform


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CaseState(StrEnum):
    OPEN = "open"  # posted to the helpdesk, nobody has taken it
    CLAIMED = "claimed"  # a helpdesk agent took it
    WAITING = "waiting"  # the agent asked the person something
    RESOLVED = "resolved"


class CaseAction(StrEnum):
    """Buttons on the case card: the action id (Slack) and the verb (Teams, the console).
    A button carries only the case number or the proposal id; who may act is decided on the
    server from the stored case, proposal and approver list."""

    CLAIM = "mailfix.case.claim"
    ASK = "mailfix.case.ask"  # with the question typed into the card's QUESTION input
    RESOLVE = "mailfix.case.resolve"
    REFRESH = "mailfix.case.refresh"  # Teams: the user-specific view (refresh.userIds)
    APPROVE = "mailfix.fix.approve"
    REJECT = "mailfix.fix.reject"


QUESTION_INPUT = "question"  # the id of the "Ask the person" input on the case card
# The person's answer to the helpdesk's question: the answer card's verb (Teams) / the answer
# modal's callback id (Slack), its input's id, and how long an answer may be.
ANSWER_VERB = "mailfix.case.answer"
ANSWER_INPUT = "answer"
MAX_ANSWER = 2000


class ProposalState(StrEnum):
    PROPOSED = "proposed"
    APPROVED = "approved"
    APPLYING = "applying"
    APPLIED = "applied"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"


class NewCase(_Frozen):
    """What escalation knows when it opens a case."""

    diagnosis_id: str | None
    platform: Platform
    workspace: str | None = None  # Slack team id / Teams tenant id: clicks must come from it
    person_id: str
    person_name: str
    person_email: str | None = None
    address: str
    answers: dict[str, Any] = Field(default_factory=dict)
    top_cause: str | None = None

    @property
    def organisation(self) -> str:
        return self.address.rpartition("@")[2].lower()


class Case(NewCase):
    number: int
    state: CaseState
    claimed_by: str | None = None
    claimed_by_name: str | None = None
    question: str | None = None
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None = None


class Proposal(_Frozen):
    id: str
    case_number: int
    check_id: str
    remediation: dict[str, Any]  # checks.models.Remediation as JSON
    idempotency_key: str
    state: ProposalState
    approvals_needed: int
    expires_at: datetime
    lease_owner: str | None = None
    lease_until: datetime | None = None
    attempts: int = 0
    result: dict[str, Any] | None = None
    created_at: datetime
    updated_at: datetime


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class Approval(_Frozen):
    proposal_id: str
    approver_id: str
    approver_name: str
    platform: Platform
    decision: Decision
    at: datetime


class DecisionOutcome(StrEnum):
    """What one approver's click did."""

    APPROVED = "approved"  # this click completed the approvals: the caller applies the fix
    RECORDED = "recorded"  # counted; more approvers are needed
    REJECTED = "rejected"  # this click rejected the proposal
    DUPLICATE = "duplicate"  # this approver had already decided: nothing changed
    TOO_LATE = "too-late"  # the proposal is no longer open (decided, applied, expired)
    EXPIRED = "expired"  # the proposal had run out of time; now marked expired


class AuditEntry(_Frozen):
    seq: int | None = None  # set by the store
    at: datetime
    actor_id: str
    actor_name: str
    platform: str  # a Platform value, or "cli" / "system"
    action: str  # e.g. "case.opened", "proposal.approved", "fix.applied"
    case_number: int | None = None
    proposal_id: str | None = None
    request: dict[str, Any] | None = None  # what was sent (never a token)
    result: dict[str, Any] | None = None
    detail: str = ""


class PatternAlert(_Frozen):
    """Several people in one organisation hit the same cause within a short window."""

    id: int
    organisation: str
    cause: str
    first_at: datetime
    last_at: datetime
    case_numbers: list[int]
    window_start: datetime
    new: bool = False  # this call opened it (post a card) rather than grew it (update the card)


class UnknownCase(KeyError):
    """No case with that number."""


class CaseStore(Protocol):
    """The helpdesk loop's durable state. Every method is safe to call from any replica."""

    async def open_case(self, new: NewCase) -> Case: ...

    async def case(self, number: int) -> Case | None: ...

    async def claim(self, number: int, actor_id: str, actor_name: str) -> Case | None:
        """Take an unclaimed, unresolved case. None when someone else has it (or it is done)."""
        ...

    async def ask(self, number: int, question: str) -> Case | None:
        """The agent asked the person something: `waiting` until the person answers."""
        ...

    async def answered(self, number: int) -> Case | None:
        """The person answered: back to `claimed` (or `open` if nobody has it)."""
        ...

    async def resolve(self, number: int) -> Case | None:
        """Mark resolved. None when it already was."""
        ...

    async def propose(
        self,
        case_number: int,
        *,
        check_id: str,
        remediation: dict[str, Any],
        idempotency_key: str,
        approvals_needed: int,
        expires_at: datetime,
    ) -> Proposal:
        """Add a proposal to a case (the same idempotency key twice returns the first)."""
        ...

    async def proposal(self, proposal_id: str) -> Proposal | None: ...

    async def proposals(self, case_number: int) -> list[Proposal]: ...

    async def decide(
        self,
        proposal_id: str,
        *,
        approver_id: str,
        approver_name: str,
        platform: Platform,
        decision: Decision,
    ) -> tuple[DecisionOutcome, Proposal]:
        """One approver's Approve or Reject. Authorisation is the caller's job; this records
        the decision once per approver and moves the proposal at most one step."""
        ...

    async def approvals(self, proposal_id: str) -> list[Approval]: ...

    async def begin_apply(self, proposal_id: str, owner: str, lease: float) -> Proposal | None:
        """`approved -> applying` under `owner`'s lease. None: another replica has it."""
        ...

    async def heartbeat(self, proposal_id: str, owner: str, lease: float) -> bool:
        """Renew the lease; False when `owner` no longer holds it."""
        ...

    async def finish_apply(
        self, proposal_id: str, owner: str, *, applied: bool, result: dict[str, Any]
    ) -> Proposal | None:
        """`applying -> applied | failed`, only by the lease holder."""
        ...

    async def take_over_lapsed(self, owner: str, lease: float) -> list[Proposal]:
        """Proposals whose applying replica stopped renewing: now leased to `owner`."""
        ...

    async def expire_proposals(self) -> list[Proposal]:
        """`proposed` past its expiry -> `expired`; returns the ones this call expired."""
        ...

    async def press(self, key: str, *, kind: str, actor: str, platform: Platform) -> bool:
        """True for the first press with this key, False for every repeat."""
        ...

    async def save_message(self, key: str, platform: Platform, ref: dict[str, Any]) -> None: ...

    async def message(self, key: str) -> dict[str, Any] | None: ...

    async def note_pattern(
        self, case: Case, *, window: float, threshold: int
    ) -> PatternAlert | None:
        """Count `case` towards a possible-outage alert for its organisation and top cause.
        Returns the alert once `threshold` different people hit the cause within `window`
        seconds (new on the call that opened it); None below the threshold."""
        ...

    async def audit(self, entry: AuditEntry) -> AuditEntry: ...

    async def trail(
        self, *, case_number: int | None = None, since: datetime | None = None
    ) -> list[AuditEntry]:
        """Audit entries, oldest first."""
        ...
