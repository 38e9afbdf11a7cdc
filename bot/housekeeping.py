"""Housekeeping that any replica may run, as often as it likes: every step is one conditional
statement, so two replicas running it at once do each piece of work once.

- proposals nobody decided on in time expire;
- applies whose replica died (lease lapsed) are taken over and finished (given the helpdesk,
  each is then followed up as its click would have been: re-check, person told, card updated);
- diagnoses whose replica died are failed (the caller tells the people);
- what is older than the retention period is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from bot.case_store import SqlCaseStore
from bot.storage import SqlStore
from dialogs.cases import AuditEntry, Proposal
from dialogs.store import StoredDiagnosis, utc_now

LAPSED_MESSAGE = (
    "The server running your check stopped before it finished. Press Run again to start it anew."
)
PLATFORM_RETRY_WINDOW = timedelta(hours=1)  # dedupe rows outlive every platform retry


class Resumer(Protocol):
    """`dialogs.helpdesk.Helpdesk` (or a bare `dialogs.approval.Approvals`)."""

    async def resume_lapsed(self) -> list[Proposal]: ...


@dataclass
class Swept:
    expired_proposals: int = 0
    resumed_fixes: int = 0
    failed_diagnoses: list[StoredDiagnosis] = field(default_factory=list)
    deleted: dict[str, int] = field(default_factory=dict)


async def sweep(
    diagnoses: SqlStore,
    cases: SqlCaseStore,
    fixes: Resumer,
    *,
    retention: timedelta,
    unleased_after: float,
) -> Swept:
    swept = Swept()
    for proposal in await cases.expire_proposals():
        swept.expired_proposals += 1
        await cases.audit(
            AuditEntry(
                at=utc_now(),
                actor_id="mailfix",
                actor_name="mailfix",
                platform="system",
                action="proposal.expired",
                case_number=proposal.case_number,
                proposal_id=proposal.id,
                detail=str(proposal.remediation.get("title", "")),
            )
        )
    swept.resumed_fixes = len(await fixes.resume_lapsed())
    swept.failed_diagnoses = await diagnoses.fail_lapsed(
        LAPSED_MESSAGE, unleased_after=unleased_after
    )
    swept.deleted = {
        "diagnoses": await diagnoses.forget_diagnoses(retention),
        "processed events": await diagnoses.forget_events(PLATFORM_RETRY_WINDOW),
        **await cases.purge(retention),
    }
    return swept
