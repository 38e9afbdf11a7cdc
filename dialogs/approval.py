"""Approving a proposed fix and applying it exactly once, whichever replica gets the click.

    approvals = Approvals(store, apply_fix=…, approvers=…, owner="replica-7")
    result = await approvals.decide(proposal_id, actor, Decision.APPROVE)

Authorisation is decided here on every click from server-side state — the stored case and
proposal and the approver directory — never from what the button carried: the caller passes
only the proposal id it read from the payload and who clicked. A click from another Slack
workspace than the one holding the case card (the helpdesk's, when set; else the case's own) is
refused like a non-approver's, and both are audited.

Applying runs under a lease (`CaseStore.begin_apply`) renewed by a heartbeat while the executor
works. A replica that dies mid-apply stops renewing; `resume_lapsed` on any replica takes the
lease over and runs the executor again. Executors read the tenant before they write and send
nothing when the fix already holds, so a resumed apply never changes anything twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from checks.models import Remediation
from dialogs.cases import (
    AuditEntry,
    Case,
    CaseStore,
    Decision,
    DecisionOutcome,
    Proposal,
)
from dialogs.models import Platform
from dialogs.store import utc_now

log = logging.getLogger(__name__)

# What an executor reports: whether the fix now holds (applied, or found already in place),
# and a JSON-able account of it for the audit log and the card (requests sent, status, the
# words for the person).
ApplyFix = Callable[[Remediation], Awaitable[tuple[bool, dict[str, Any]]]]

DEFAULT_LEASE = 60.0  # seconds; renewed every third of it while the executor works
MAX_ATTEMPTS = 3  # an apply taken over this many times is marked failed, not tried again


@dataclass(frozen=True)
class Actor:
    """Who clicked, as the platform authenticated them."""

    id: str  # Slack user id / Entra object id
    name: str
    platform: str  # a Platform value
    workspace: str | None = None  # Slack team id / Teams tenant id the click came from


class ApproverDirectory(Protocol):
    async def is_approver(self, actor: Actor) -> bool:
        """True when `actor` is on MAILFIX_APPROVERS (directly or through a group)."""
        ...


@dataclass(frozen=True)
class DecideResult:
    outcome: DecisionOutcome | None  # None when the click was refused
    proposal: Proposal
    refused: str | None = None  # why, in words for the person who clicked
    applied: Proposal | None = None  # the proposal after applying, when this click applied it


class Approvals:
    def __init__(
        self,
        store: CaseStore,
        *,
        apply_fix: ApplyFix,
        approvers: ApproverDirectory,
        owner: str,
        lease: float = DEFAULT_LEASE,
        expiry: timedelta = timedelta(hours=24),
        two_approvers_for_hard_to_undo: bool = False,
        card_workspaces: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.apply_fix = apply_fix
        self.approvers = approvers
        self.owner = owner
        self.lease = lease
        self.expiry = expiry
        self.two_for_hard = two_approvers_for_hard_to_undo
        # platform -> the workspace whose channel holds the case cards (MAILFIX_HELPDESK_SLACK_TEAM)
        self.card_workspaces = dict(card_workspaces or {})

    async def propose(self, case: Case, check_id: str, remediation: Remediation) -> Proposal:
        needed = 2 if (remediation.hard_to_undo and self.two_for_hard) else 1
        proposal = await self.store.propose(
            case.number,
            check_id=check_id,
            remediation=remediation.model_dump(mode="json"),
            idempotency_key=remediation.idempotency_key,
            approvals_needed=needed,
            expires_at=utc_now() + self.expiry,
        )
        await self._audit(
            Actor("mailfix", "mailfix", "system"),
            "proposal.made",
            case.number,
            proposal.id,
            detail=remediation.title,
            request={"operation": remediation.operation or remediation.action},
        )
        return proposal

    async def decide(self, proposal_id: str, actor: Actor, decision: Decision) -> DecideResult:
        proposal = await self.store.proposal(proposal_id)
        if proposal is None:
            raise KeyError(proposal_id)
        case = await self.store.case(proposal.case_number)
        refused = await self._refusal(actor, case)
        if refused is not None:
            await self._audit(
                actor, "proposal.refused", proposal.case_number, proposal.id, detail=refused
            )
            return DecideResult(None, proposal, refused=refused)
        outcome, proposal = await self.store.decide(
            proposal_id,
            approver_id=actor.id,
            approver_name=actor.name,
            platform=Platform(actor.platform),
            decision=decision,
        )
        action = {
            DecisionOutcome.APPROVED: "proposal.approved",
            DecisionOutcome.RECORDED: "proposal.approval_recorded",
            DecisionOutcome.REJECTED: "proposal.rejected",
            DecisionOutcome.EXPIRED: "proposal.expired",
        }.get(outcome)
        if action is not None:
            title = str(proposal.remediation.get("title", ""))
            await self._audit(actor, action, proposal.case_number, proposal.id, detail=title)
        applied = None
        if outcome is DecisionOutcome.APPROVED:
            applied = await self.apply(proposal.id, actor)
        return DecideResult(outcome, proposal, applied=applied)

    async def _refusal(self, actor: Actor, case: Case | None) -> str | None:
        if case is None:
            return "This case no longer exists."
        home = self.card_workspaces.get(actor.platform)
        if home is None and actor.platform == case.platform.value:
            home = case.workspace
        if home and actor.workspace != home:
            return "This case belongs to another workspace."
        if not await self.approvers.is_approver(actor):
            return "Only approvers can approve or reject fixes. Ask one of them to look at this."
        return None

    async def apply(self, proposal_id: str, actor: Actor) -> Proposal | None:
        """Apply an approved proposal if this replica wins the lease; None if another has it."""
        proposal = await self.store.begin_apply(proposal_id, self.owner, self.lease)
        if proposal is None:
            return None
        await self._audit(
            actor, "fix.applying", proposal.case_number, proposal.id, detail=self._where(proposal)
        )
        return await self._run(proposal, actor)

    async def resume_lapsed(self) -> list[Proposal]:
        """Take over applies whose replica died and finish them (or give up after
        MAX_ATTEMPTS). Safe on every replica at once: each lapsed apply goes to one."""
        finished: list[Proposal] = []
        system = Actor(self.owner, "mailfix", "system")
        for proposal in await self.store.take_over_lapsed(self.owner, self.lease):
            if proposal.attempts > MAX_ATTEMPTS:
                result = {
                    "outcome": "failed",
                    "message": f"Gave up after {MAX_ATTEMPTS} attempts that did not finish.",
                }
                done = await self.store.finish_apply(
                    proposal.id, self.owner, applied=False, result=result
                )
                await self._audit(
                    system, "fix.failed", proposal.case_number, proposal.id, result=result
                )
            else:
                await self._audit(
                    system,
                    "fix.resumed",
                    proposal.case_number,
                    proposal.id,
                    detail=self._where(proposal),
                )
                done = await self._run(proposal, system)
            if done is not None:
                finished.append(done)
        return finished

    def _where(self, proposal: Proposal) -> str:
        """Which server applies it, for the audit trail (a takeover names the new one)."""
        return f"on server {self.owner}, attempt {proposal.attempts}"

    async def _run(self, proposal: Proposal, actor: Actor) -> Proposal | None:
        remediation = Remediation.model_validate(proposal.remediation)
        beat = asyncio.create_task(self._heartbeat(proposal.id))
        try:
            ok, result = await self.apply_fix(remediation)
        except Exception as exc:  # an executor bug must not leave the proposal applying
            log.exception("applying %s crashed", proposal.id)
            ok, result = False, {"outcome": "failed", "message": f"mailfix failed: {exc}"}
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        done = await self.store.finish_apply(proposal.id, self.owner, applied=ok, result=result)
        if done is None:  # our lease lapsed and someone else took over: they record it
            log.warning("lost the lease on %s while applying", proposal.id)
            return None
        outcome = result.get("outcome")
        action = "fix.already_done" if outcome == "already-done" else "fix.applied"
        await self._audit(
            actor,
            action if ok else "fix.failed",
            proposal.case_number,
            proposal.id,
            detail=str(result.get("message", "")),
            request=_first_request(result),
            result=result,
        )
        return done

    async def _heartbeat(self, proposal_id: str) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            if not await self.store.heartbeat(proposal_id, self.owner, self.lease):
                return

    async def _audit(
        self,
        actor: Actor,
        action: str,
        case_number: int | None,
        proposal_id: str | None,
        *,
        detail: str = "",
        request: dict[str, Any] | None = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        await record(
            self.store,
            actor,
            action,
            case_number,
            proposal_id=proposal_id,
            detail=detail,
            request=request,
            result=result,
        )


async def record(
    store: CaseStore,
    actor: Actor,
    action: str,
    case_number: int | None,
    *,
    proposal_id: str | None = None,
    detail: str = "",
    request: dict[str, Any] | None = None,
    result: dict[str, Any] | None = None,
) -> None:
    """Append one entry to the audit log: `actor` did `action`, now."""
    await store.audit(
        AuditEntry(
            at=utc_now(),
            actor_id=actor.id,
            actor_name=actor.name,
            platform=actor.platform,
            action=action,
            case_number=case_number,
            proposal_id=proposal_id,
            request=request,
            result=result,
            detail=detail,
        )
    )


def _first_request(result: dict[str, Any]) -> dict[str, Any] | None:
    sent = result.get("sent")
    if isinstance(sent, list) and sent and isinstance(sent[0], dict):
        return dict(sent[0])
    return None
