"""The helpdesk loop, platform-neutral: escalate, claim, ask, answer, resolve, approve.

    helpdesk = Helpdesk(cases, channel, approvals)
    receipt = await helpdesk.escalate(stored_diagnosis, person)

`HelpdeskChannel` is the adapter's half (Slack, Teams, the console): post the case card to the
helpdesk channel, update a card in place, send the person a message. Everything else — who may
act, what changes, what is recorded — is decided here from the database, so any replica can
handle any click: the message ids of cards are stored, not kept in memory.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from cards.data import ResultsData
from checks.models import Finding, Remediation, Report, Status
from dialogs.approval import Actor, Approvals, DecideResult, record
from dialogs.cases import (
    Approval,
    Case,
    CaseState,
    CaseStore,
    Decision,
    NewCase,
    PatternAlert,
    Proposal,
    ProposalState,
)
from dialogs.intake import WHERE_LABELS, IntakeAnswers, check_answers
from dialogs.models import CardSpec, Person, Platform
from dialogs.store import StoredDiagnosis

# Re-run the named checks for the case's address and app; the new findings.
Recheck = Callable[[Case, list[str]], Awaitable[list[Finding]]]
# The case's diagnosis as the helpdesk reads it (every finding with evidence), when it is kept.
Details = Callable[[Case], Awaitable[ResultsData | None]]


@dataclass(frozen=True)
class Posted:
    """Where a card went. `where` is for people ("#it-helpdesk"); `ref` lets any replica
    update it later; `error` says in words why it could not be posted."""

    where: str
    ref: dict[str, Any] | None = None
    error: str | None = None


class HelpdeskChannel(Protocol):
    async def post(self, platform: Platform, card: CardSpec) -> Posted:
        """Post a new card to the helpdesk channel of `platform`."""
        ...

    async def update(self, ref: dict[str, Any], card: CardSpec) -> bool: ...

    async def tell(self, case: Case, text: str) -> None:
        """A message to the person the case is about (their chat with the bot)."""
        ...


@dataclass(frozen=True)
class Receipt:
    """What escalating really did, for the person's card."""

    case: Case
    posted: Posted


HEALTH_CHECK = "tenant.service_health"

_STATE_WORDS = {
    ProposalState.PROPOSED: "Waiting for approval",
    ProposalState.APPROVED: "Approved; applying",
    ProposalState.APPLYING: "Being applied",
    ProposalState.APPLIED: "Applied",
    ProposalState.FAILED: "Could not be applied",
    ProposalState.REJECTED: "Rejected",
    ProposalState.EXPIRED: "Expired without a decision",
}


def _case_key(number: int) -> str:
    return f"case:{number}:helpdesk"


def _alert_key(alert_id: int) -> str:
    return f"alert:{alert_id}:helpdesk"


def _time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%d %b %Y, %H:%M UTC")


class Helpdesk:
    def __init__(
        self,
        cases: CaseStore,
        channel: HelpdeskChannel,
        approvals: Approvals,
        *,
        recheck: Recheck | None = None,
        cause_titles: Mapping[str, str] | None = None,
        check_titles: Mapping[str, str] | None = None,
        details: Details | None = None,
        approver_ids: Sequence[str] = (),
        pattern_window: float = 600.0,
        pattern_threshold: int = 3,
    ) -> None:
        self.cases = cases
        self.channel = channel
        self.approvals = approvals
        self.recheck = recheck
        self.cause_titles = dict(cause_titles or {})
        self.check_titles = dict(check_titles or {})
        self.details = details
        # Teams: the users whose client fetches the approver's view of a case card
        # (refresh.userIds, at most 60; reference/chat-platforms.md §B4).
        self.approver_ids = list(approver_ids)
        self.pattern_window = pattern_window
        self.pattern_threshold = pattern_threshold

    # --- escalation --------------------------------------------------------------------------

    async def escalate(self, stored: StoredDiagnosis, person: Person) -> Receipt:
        report = stored.report
        top = report.top_cause if report else None
        case = await self.cases.open_case(
            NewCase(
                diagnosis_id=stored.id,
                platform=stored.platform,
                workspace=person.workspace,
                person_id=person.id,
                person_name=person.name or person.email or person.id,
                person_email=person.email,
                address=stored.address,
                answers=stored.answers,
                top_cause=top.id if top else None,
            )
        )
        actor = Actor(person.id, case.person_name, stored.platform.value, person.workspace)
        await self._audit(actor, "case.opened", case, detail=top.title if top else "")
        for finding in report.findings if report else []:
            if finding.remediation is not None:
                await self.approvals.propose(case, finding.check, finding.remediation)
        posted = await self.channel.post(case.platform, await self.case_card(case.number))
        if posted.ref is not None:
            await self.cases.save_message(_case_key(case.number), case.platform, posted.ref)
        await self._pattern(case)
        return Receipt(case, posted)

    async def _pattern(self, case: Case) -> None:
        alert = await self.cases.note_pattern(
            case, window=self.pattern_window, threshold=self.pattern_threshold
        )
        if alert is None:
            return
        card = await self.alert_card(alert)
        key = _alert_key(alert.id)
        ref = await self.cases.message(key)
        if ref is not None:
            await self.channel.update(ref, card)
            return
        if alert.new:
            posted = await self.channel.post(case.platform, card)
            if posted.ref is not None:
                await self.cases.save_message(key, case.platform, posted.ref)
            await self._audit(
                Actor("mailfix", "mailfix", "system"),
                "alert.posted",
                case,
                detail=f"{len(alert.case_numbers)} people in {alert.organisation}",
            )

    # --- the helpdesk's buttons --------------------------------------------------------------

    async def claim(self, number: int, actor: Actor) -> Case | None:
        case = await self.cases.claim(number, actor.id, actor.name)
        if case is None:
            return None
        await self._audit(actor, "case.claimed", case)
        await self._refresh(case)
        await self.channel.tell(
            case, f"{actor.name} from the helpdesk has taken your case {number}."
        )
        return case

    async def ask(self, number: int, actor: Actor, question: str) -> Case | None:
        question = " ".join(question.split())
        if not question:
            return None
        case = await self.cases.ask(number, question)
        if case is None:
            return None
        await self._audit(actor, "case.asked", case, detail=question)
        await self._refresh(case)
        await self.channel.tell(
            case, f"{actor.name} from the helpdesk asks about case {number}: {question}"
        )
        return case

    async def answer(self, number: int, person_id: str, text: str) -> Case | None:
        """The person's answer to the helpdesk's question (only the case's own person)."""
        text = " ".join(text.split())
        current = await self.cases.case(number)
        if current is None or current.person_id != person_id or not text:
            return None
        case = await self.cases.answered(number)
        if case is None:
            return None
        actor = Actor(person_id, case.person_name, case.platform.value, case.workspace)
        await self._audit(actor, "case.answered", case, detail=text)
        await self._refresh(case)
        return case

    async def resolve(self, number: int, actor: Actor) -> Case | None:
        case = await self.cases.resolve(number)
        if case is None:
            return None
        await self._audit(actor, "case.resolved", case)
        await self._refresh(case)
        await self.channel.tell(
            case, f"{actor.name} from the helpdesk marked your case {number} as resolved."
        )
        return case

    async def decide(self, proposal_id: str, actor: Actor, decision: Decision) -> DecideResult:
        result = await self.approvals.decide(proposal_id, actor, decision)
        case = await self.cases.case(result.proposal.case_number)
        if case is None or result.refused:
            return result
        applied = result.applied
        if applied is not None:
            await self._after_apply(case, applied)
        await self._refresh(case)
        return result

    async def resume_lapsed(self) -> list[Proposal]:
        """Take over the fixes whose server died while applying them
        (`Approvals.resume_lapsed`) and follow each up as the click that approved it would
        have: re-check, tell the person, update the case card. Housekeeping calls this."""
        finished = await self.approvals.resume_lapsed()
        for proposal in finished:
            case = await self.cases.case(proposal.case_number)
            if case is None:
                continue
            await self._after_apply(case, proposal)
            await self._refresh(case)
        return finished

    async def _after_apply(self, case: Case, proposal: Proposal) -> None:
        outcome = proposal.result or {}
        if proposal.state is ProposalState.APPLIED:
            remediation = Remediation.model_validate(proposal.remediation)
            if self.recheck is not None and remediation.verify:
                findings = await self.recheck(case, remediation.verify)
                await self._audit(
                    Actor("mailfix", "mailfix", "system"),
                    "recheck.done",
                    case,
                    proposal_id=proposal.id,
                    result={f.check: f.status.value for f in findings},
                    detail=", ".join(f"{f.check}: {f.status.value}" for f in findings),
                )
            message = str(outcome.get("message") or "The helpdesk applied a fix for you.")
            await self.channel.tell(case, message)

    async def _refresh(self, case: Case) -> None:
        ref = await self.cases.message(_case_key(case.number))
        if ref is not None:
            await self.channel.update(ref, await self.case_card(case.number))

    # --- what the cards show -----------------------------------------------------------------

    async def case_card(self, number: int, *, approver_view: bool = False) -> CardSpec:
        """The case card everyone sees; `approver_view`: the one an approver sees, with
        Approve / Reject on open proposals (Teams sends it to approvers on refresh; Slack shows
        the buttons to everyone and the server refuses non-approvers)."""
        case = await self.cases.case(number)
        if case is None:
            raise KeyError(number)
        proposals = await self.cases.proposals(number)
        trail = await self.cases.trail(case_number=number)
        rechecks = {e.proposal_id: e.result or {} for e in trail if e.action == "recheck.done"}
        data: dict[str, Any] = {
            "number": case.number,
            "title": f"Case {case.number}: {self._cause(case.top_cause)}",
            "person": [
                ("Person", case.person_name),
                ("Address", case.address),
                ("Asked in", case.platform.value.title()),
                ("Opened", _time(case.created_at)),
            ],
            "answers": _answer_lines(case.answers),
            "state": self._state_line(case),
            "questions": [
                (e.actor_name, e.detail)
                for e in trail
                if e.action in ("case.asked", "case.answered")
            ],
            "proposals": [await self._proposal_view(p, rechecks.get(p.id)) for p in proposals],
            "can_claim": case.claimed_by is None and case.state is not CaseState.RESOLVED,
            "can_resolve": case.state is not CaseState.RESOLVED,
            "can_ask": case.state is not CaseState.RESOLVED,
            "diagnosis_id": case.diagnosis_id,
            "approver_ids": self.approver_ids[:60],
            "approver_view": approver_view,
            "details": await self._details(case),
        }
        return CardSpec(template="case", data=data)

    async def _details(self, case: Case) -> dict[str, Any] | None:
        if self.details is None:
            return None
        details = await self.details(case)
        return details.model_dump(mode="json") if details is not None else None

    async def _proposal_view(
        self, proposal: Proposal, recheck: dict[str, Any] | None
    ) -> dict[str, Any]:
        remediation = Remediation.model_validate(proposal.remediation)
        decisions = await self.cases.approvals(proposal.id)
        outcome = proposal.result or {}
        sent = outcome.get("sent") or []
        return {
            "id": proposal.id,
            "title": remediation.title,
            "operation": remediation.operation or remediation.action,
            "state": _STATE_WORDS[proposal.state],
            "status": proposal.state.value,
            "decisions": [_decision_line(a) for a in decisions],
            "needs": proposal.approvals_needed,
            "result": str(outcome.get("message") or ""),
            "sent": [_sent_line(r) for r in sent if isinstance(r, dict)],
            "recheck": [
                (self.check_titles.get(check, check), _RECHECK_WORDS.get(status, str(status)))
                for check, status in (recheck or {}).items()
            ],
            "open": proposal.state is ProposalState.PROPOSED,
            "expires": _time(proposal.expires_at),
        }

    async def alert_card(self, alert: PatternAlert) -> CardSpec:
        persons: dict[str, Case] = {}  # one entry per person (by id), their first case
        reports: list[Report] = []
        for number in alert.case_numbers:
            case = await self.cases.case(number)
            if case is None:
                continue
            persons.setdefault(case.person_id, case)
            details = await self.details(case) if self.details else None
            if details is not None:
                reports.append(details.report)
        names = [c.person_name for c in persons.values()]
        people = [  # two people of the same name are told apart by their case
            n if names.count(n) == 1 else f"{n} (case {c.number})"
            for n, c in zip(names, persons.values(), strict=True)
        ]
        evidence, incident = self._shared(alert.cause, reports)
        data = {
            "title": "Possible outage or misconfiguration",
            "cause": self._cause(alert.cause),
            "organisation": alert.organisation,
            "count": len(people),
            "people": people,
            "since": _time(alert.first_at),
            "latest": _time(alert.last_at),
            "cases": list(alert.case_numbers),
            "evidence": evidence,
            "incident": incident,
        }
        return CardSpec(template="alert", data=data)

    def _shared(
        self, cause: str, reports: Sequence[Report]
    ) -> tuple[list[tuple[str, str]], str | None]:
        """What the cases' checks for `cause` found alike (check title, summary), and the open
        Exchange Online incident the service-health check reported, if any."""
        shared: list[tuple[str, str]] | None = None
        incident = None
        for report in reports:
            checks = next((c.checks for c in report.causes if c.id == cause), [])
            found = [
                (self.check_titles.get(f.check, f.check), f.summary)
                for f in report.findings
                if f.check in checks and f.status in (Status.FAIL, Status.WARN)
            ]
            shared = found if shared is None else [p for p in shared if p in found]
            for finding in report.findings:
                issues = finding.evidence.get("issues") if finding.check == HEALTH_CHECK else None
                if incident is None and isinstance(issues, list) and issues:
                    first = issues[0]
                    if isinstance(first, dict) and first.get("id"):
                        incident = f"{first['id']}: {first.get('title') or ''}".rstrip(": ")
        return shared or [], incident

    def _cause(self, cause_id: str | None) -> str:
        if not cause_id:
            return "no single cause found"
        return self.cause_titles.get(cause_id, cause_id.replace("-", " ").capitalize())

    @staticmethod
    def _state_line(case: Case) -> str:
        if case.state is CaseState.RESOLVED:
            who = f" ({case.claimed_by_name})" if case.claimed_by_name else ""
            return f"Resolved{who}"
        if case.state is CaseState.WAITING:
            return f"Waiting for {case.person_name} to answer: {case.question}"
        if case.claimed_by_name:
            return f"Taken by {case.claimed_by_name}"
        return "Open: nobody has taken it yet"

    async def _audit(
        self,
        actor: Actor,
        action: str,
        case: Case,
        *,
        proposal_id: str | None = None,
        detail: str = "",
        result: dict[str, Any] | None = None,
    ) -> None:
        await record(
            self.cases,
            actor,
            action,
            case.number,
            proposal_id=proposal_id,
            detail=detail,
            result=result,
        )


_RECHECK_WORDS = {
    Status.PASS.value: "passes now",
    Status.WARN.value: "passes with a warning",
    Status.FAIL.value: "still fails",
    Status.ERROR.value: "could not be checked",
    Status.SKIP.value: "was not checked",
}


def _sent_line(request: Mapping[str, Any]) -> str:
    """One request as sent, for the helpdesk: method and URL, and the Exchange cmdlet."""
    line = f"{request.get('method', '')} {request.get('url', '')}".strip()
    body = request.get("body")
    cmdlet = body.get("CmdletInput", {}).get("CmdletName") if isinstance(body, dict) else None
    return f"{line} ({cmdlet})" if isinstance(cmdlet, str) and cmdlet else line


def _decision_line(approval: Approval) -> str:
    verb = "Approved" if approval.decision is Decision.APPROVE else "Rejected"
    return f"{verb} by {approval.approver_name}, {_time(approval.at)}"


def _answer_lines(answers: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The person's intake answers as labelled lines for the helpdesk."""
    parsed = check_answers(dict(answers))
    if not isinstance(parsed, IntakeAnswers):
        return []
    lines = [("Mail app", parsed.app_label), ("What happens", parsed.symptom_label)]
    if parsed.error_text:
        lines.append(("Error message", parsed.error_text))
    if parsed.since == "never":
        lines.append(("Since when", "It never worked"))
    elif parsed.since == "before" or parsed.since_when:
        lines.append(("Since when", parsed.since_when or "It worked before"))
    if parsed.where:
        lines.append(("Where", WHERE_LABELS[parsed.where]))
    return lines
