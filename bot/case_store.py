"""`dialogs.cases.CaseStore` on SQL: the helpdesk loop's state, safe across replicas.

Each state change is one statement whose WHERE clause names the state it leaves, and the caller
acts only when the database says a row changed (`rowcount == 1`, or a row RETURNING). Nothing
is decided from memory, so any replica may receive any click.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, delete, func, insert, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.schema import (
    approvals,
    audit_log,
    button_presses,
    cases,
    message_refs,
    pattern_alerts,
    proposals,
)
from bot.storage import SqlBase, retry_when_busy
from dialogs.cases import (
    Approval,
    AuditEntry,
    Case,
    CaseState,
    Decision,
    DecisionOutcome,
    NewCase,
    PatternAlert,
    Proposal,
    ProposalState,
    UnknownCase,
)
from dialogs.models import Platform


def case_when_answered() -> Any:
    """The state a waiting case returns to: `claimed` if an agent has it, else `open`."""
    return case(
        (cases.c.claimed_by.is_not(None), CaseState.CLAIMED.value), else_=CaseState.OPEN.value
    )


def _case(row: Row[Any]) -> Case:
    m = dict(row._mapping)
    m.pop("organisation", None)
    return Case.model_validate(m)


def _proposal(row: Row[Any]) -> Proposal:
    return Proposal.model_validate(dict(row._mapping))


def _alert(row: Row[Any], *, new: bool) -> PatternAlert:
    return PatternAlert.model_validate({**row._mapping, "new": new})


def _entry(row: Row[Any]) -> AuditEntry:
    return AuditEntry.model_validate(dict(row._mapping))


class SqlCaseStore(SqlBase):
    """See the module docstring. `clock` is injectable so tests can move time."""

    # --- cases ---------------------------------------------------------------------------------

    @retry_when_busy
    async def open_case(self, new: NewCase) -> Case:
        now = self._clock()
        values = {
            **new.model_dump(mode="json"),
            "organisation": new.organisation,
            "state": CaseState.OPEN.value,
            "created_at": now,
            "updated_at": now,
        }
        async with self._write() as conn:
            row = (await conn.execute(insert(cases).values(**values).returning(*cases.c))).one()
        return _case(row)

    async def case(self, number: int) -> Case | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(cases).where(cases.c.number == number))).first()
        return _case(row) if row is not None else None

    @retry_when_busy
    async def _move_case(self, /, number: int, where: Any, **values: Any) -> Case | None:
        """One conditional UPDATE of a case; the case as it is now when it changed, else None."""
        async with self._write() as conn:
            row = (
                await conn.execute(
                    update(cases)
                    .where(cases.c.number == number, where)
                    .values(updated_at=self._clock(), **values)
                    .returning(*cases.c)
                )
            ).first()
            if (
                row is None
                and (
                    await conn.execute(select(cases.c.number).where(cases.c.number == number))
                ).first()
                is None
            ):
                raise UnknownCase(number)
        return _case(row) if row is not None else None

    async def claim(self, number: int, actor_id: str, actor_name: str) -> Case | None:
        return await self._move_case(
            number,
            and_(cases.c.claimed_by.is_(None), cases.c.state != CaseState.RESOLVED.value),
            claimed_by=actor_id,
            claimed_by_name=actor_name,
            state=CaseState.CLAIMED.value,
        )

    async def ask(self, number: int, question: str) -> Case | None:
        return await self._move_case(
            number,
            cases.c.state != CaseState.RESOLVED.value,
            state=CaseState.WAITING.value,
            question=question,
        )

    async def answered(self, number: int) -> Case | None:
        # Back to whoever had it: `claimed` when an agent took the case, else `open`.
        return await self._move_case(
            number,
            cases.c.state == CaseState.WAITING.value,
            state=case_when_answered(),
            question=None,
        )

    async def resolve(self, number: int) -> Case | None:
        now = self._clock()
        return await self._move_case(
            number,
            cases.c.state != CaseState.RESOLVED.value,
            state=CaseState.RESOLVED.value,
            resolved_at=now,
        )

    # --- proposals -----------------------------------------------------------------------------

    @retry_when_busy
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
        now = self._clock()
        values = {
            "id": uuid.uuid4().hex,
            "case_number": case_number,
            "check_id": check_id,
            "remediation": remediation,
            "idempotency_key": idempotency_key,
            "state": ProposalState.PROPOSED.value,
            "approvals_needed": max(1, approvals_needed),
            "expires_at": expires_at,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        stmt = self._insert_ignoring(proposals, values, ["case_number", "idempotency_key"])
        try:
            async with self._write() as conn:
                await conn.execute(stmt)
                row = (
                    await conn.execute(
                        select(proposals).where(
                            proposals.c.case_number == case_number,
                            proposals.c.idempotency_key == idempotency_key,
                        )
                    )
                ).one()
        except IntegrityError as exc:  # the foreign key: no such case
            raise UnknownCase(case_number) from exc
        return _proposal(row)

    async def proposal(self, proposal_id: str) -> Proposal | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(proposals).where(proposals.c.id == proposal_id))
            ).first()
        return _proposal(row) if row is not None else None

    async def proposals(self, case_number: int) -> list[Proposal]:
        query = (
            select(proposals)
            .where(proposals.c.case_number == case_number)
            .order_by(proposals.c.created_at, proposals.c.id)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_proposal(r) for r in rows]

    async def _step(
        self, conn: AsyncConnection, proposal_id: str, before: Any, **values: Any
    ) -> Proposal | None:
        """Move one proposal from a state matching `before`; None when it was not there."""
        row = (
            await conn.execute(
                update(proposals)
                .where(proposals.c.id == proposal_id, before)
                .values(updated_at=self._clock(), **values)
                .returning(*proposals.c)
            )
        ).first()
        return _proposal(row) if row is not None else None

    @retry_when_busy
    async def decide(
        self,
        proposal_id: str,
        *,
        approver_id: str,
        approver_name: str,
        platform: Platform,
        decision: Decision,
    ) -> tuple[DecisionOutcome, Proposal]:
        now = self._clock()
        record = self._insert_ignoring(
            approvals,
            {
                "proposal_id": proposal_id,
                "approver_id": approver_id,
                "approver_name": approver_name,
                "platform": platform.value,
                "decision": decision.value,
                "at": now,
            },
            ["proposal_id", "approver_id"],
        )
        async with self._write() as conn:
            # Deciders of one proposal take turns (a row lock on PostgreSQL; SQLite has one
            # writer at a time anyway), so two approvals counted at once cannot both fall short.
            locked = select(proposals).where(proposals.c.id == proposal_id)
            if self._dialect == "postgresql":
                locked = locked.with_for_update()
            row = (await conn.execute(locked)).first()
            if row is None:
                raise KeyError(proposal_id)
            current = _proposal(row)
            if current.state is not ProposalState.PROPOSED:
                return DecisionOutcome.TOO_LATE, current
            if current.expires_at <= now:
                expired = await self._step(
                    conn,
                    proposal_id,
                    proposals.c.state == current.state.value,
                    state=ProposalState.EXPIRED.value,
                )
                return DecisionOutcome.EXPIRED, expired or current
            try:
                counted = (await conn.execute(record)).rowcount == 1
            except IntegrityError:  # backends without ON CONFLICT
                counted = False
            if not counted:
                return DecisionOutcome.DUPLICATE, current
            open_ = proposals.c.state == ProposalState.PROPOSED.value
            if decision is Decision.REJECT:
                moved = await self._step(
                    conn, proposal_id, open_, state=ProposalState.REJECTED.value
                )
                return DecisionOutcome.REJECTED, moved or current
            approvals_so_far = (
                await conn.execute(
                    select(func.count())
                    .select_from(approvals)
                    .where(
                        approvals.c.proposal_id == proposal_id,
                        approvals.c.decision == Decision.APPROVE.value,
                    )
                )
            ).scalar_one()
            if approvals_so_far < current.approvals_needed:
                return DecisionOutcome.RECORDED, current
            moved = await self._step(conn, proposal_id, open_, state=ProposalState.APPROVED.value)
            if moved is None:
                return DecisionOutcome.TOO_LATE, current
            return DecisionOutcome.APPROVED, moved

    async def approvals(self, proposal_id: str) -> list[Approval]:
        query = (
            select(approvals)
            .where(approvals.c.proposal_id == proposal_id)
            .order_by(approvals.c.at, approvals.c.seq)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            Approval(
                proposal_id=r.proposal_id,
                approver_id=r.approver_id,
                approver_name=r.approver_name,
                platform=Platform(r.platform),
                decision=Decision(r.decision),
                at=r.at,
            )
            for r in rows
        ]

    @retry_when_busy
    async def begin_apply(self, proposal_id: str, owner: str, lease: float) -> Proposal | None:
        until = self._clock() + timedelta(seconds=lease)
        async with self._write() as conn:
            return await self._step(
                conn,
                proposal_id,
                proposals.c.state == ProposalState.APPROVED.value,
                state=ProposalState.APPLYING.value,
                lease_owner=owner,
                lease_until=until,
                attempts=proposals.c.attempts + 1,
            )

    @retry_when_busy
    async def heartbeat(self, proposal_id: str, owner: str, lease: float) -> bool:
        until = self._clock() + timedelta(seconds=lease)
        async with self._write() as conn:
            moved = await self._step(
                conn,
                proposal_id,
                and_(
                    proposals.c.state == ProposalState.APPLYING.value,
                    proposals.c.lease_owner == owner,
                ),
                lease_until=until,
            )
        return moved is not None

    @retry_when_busy
    async def finish_apply(
        self, proposal_id: str, owner: str, *, applied: bool, result: dict[str, Any]
    ) -> Proposal | None:
        state = ProposalState.APPLIED if applied else ProposalState.FAILED
        async with self._write() as conn:
            return await self._step(
                conn,
                proposal_id,
                and_(
                    proposals.c.state == ProposalState.APPLYING.value,
                    proposals.c.lease_owner == owner,
                ),
                state=state.value,
                result=result,
                lease_owner=None,
                lease_until=None,
            )

    async def take_over_lapsed(self, owner: str, lease: float) -> list[Proposal]:
        now = self._clock()
        async with self.engine.connect() as conn:
            ids = (
                await conn.execute(
                    select(proposals.c.id).where(
                        proposals.c.state == ProposalState.APPLYING.value,
                        or_(proposals.c.lease_until.is_(None), proposals.c.lease_until < now),
                    )
                )
            ).scalars()
            candidates = list(ids)
        taken: list[Proposal] = []
        for proposal_id in candidates:
            async with self._write() as conn:
                moved = await self._step(
                    conn,
                    proposal_id,
                    and_(
                        proposals.c.state == ProposalState.APPLYING.value,
                        or_(proposals.c.lease_until.is_(None), proposals.c.lease_until < now),
                    ),
                    lease_owner=owner,
                    lease_until=now + timedelta(seconds=lease),
                    attempts=proposals.c.attempts + 1,
                )
            if moved is not None:
                taken.append(moved)
        return taken

    @retry_when_busy
    async def expire_proposals(self) -> list[Proposal]:
        now = self._clock()
        async with self._write() as conn:
            rows = (
                await conn.execute(
                    update(proposals)
                    .where(
                        proposals.c.state == ProposalState.PROPOSED.value,
                        proposals.c.expires_at <= now,
                    )
                    .values(state=ProposalState.EXPIRED.value, updated_at=now)
                    .returning(*proposals.c)
                )
            ).all()
        return [_proposal(r) for r in rows]

    # --- presses and message references --------------------------------------------------------

    @retry_when_busy
    async def press(self, key: str, *, kind: str, actor: str, platform: Platform) -> bool:
        values = {
            "key": key[:512],
            "kind": kind,
            "actor": actor[:255],
            "platform": platform.value,
            "at": self._clock(),
        }
        stmt = self._insert_ignoring(button_presses, values, ["key"])
        try:
            async with self._write() as conn:
                result = await conn.execute(stmt)
        except IntegrityError:
            return False
        return bool(result.rowcount == 1)

    @retry_when_busy
    async def save_message(self, key: str, platform: Platform, ref: dict[str, Any]) -> None:
        values = {"key": key, "platform": platform.value, "ref": ref, "updated_at": self._clock()}
        async with self._write() as conn:
            await conn.execute(self._upsert(message_refs, values, ["key"]))

    async def message(self, key: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(message_refs.c.ref).where(message_refs.c.key == key))
            ).first()
        return dict(row.ref) if row is not None else None

    # --- pattern alerts ------------------------------------------------------------------------

    @retry_when_busy
    async def note_pattern(
        self, case: Case, *, window: float, threshold: int
    ) -> PatternAlert | None:
        if not case.top_cause:
            return None
        since = case.created_at - timedelta(seconds=window)
        same = and_(
            pattern_alerts.c.organisation == case.organisation,
            pattern_alerts.c.cause == case.top_cause,
        )
        async with self._write() as conn:
            # An alert still live (its last case inside the window) grows.
            row = (
                await conn.execute(
                    select(pattern_alerts)
                    .where(same, pattern_alerts.c.last_at >= since)
                    .order_by(pattern_alerts.c.last_at.desc())
                    .limit(1)
                )
            ).first()
            if row is not None:
                numbers = sorted({*row.case_numbers, case.number})
                grown = (
                    await conn.execute(
                        update(pattern_alerts)
                        .where(pattern_alerts.c.id == row.id)
                        .values(case_numbers=numbers, last_at=max(row.last_at, case.created_at))
                        .returning(*pattern_alerts.c)
                    )
                ).one()
                return _alert(grown, new=False)
            recent = (
                await conn.execute(
                    select(cases.c.number, cases.c.person_id, cases.c.created_at)
                    .where(
                        cases.c.organisation == case.organisation,
                        cases.c.top_cause == case.top_cause,
                        cases.c.created_at >= since,
                        cases.c.created_at <= case.created_at,
                    )
                    .order_by(cases.c.created_at, cases.c.number)
                )
            ).all()
            if len({r.person_id for r in recent}) < threshold:
                return None
            start = recent[0].created_at
            opened = await conn.execute(
                self._insert_ignoring(
                    pattern_alerts,
                    {
                        "organisation": case.organisation,
                        "cause": case.top_cause,
                        "first_at": start,
                        "last_at": case.created_at,
                        "case_numbers": sorted({r.number for r in recent}),
                        "window_start": start,
                    },
                    ["organisation", "cause", "window_start"],
                )
            )
            row = (
                await conn.execute(
                    select(pattern_alerts).where(same, pattern_alerts.c.window_start == start)
                )
            ).one()
            if opened.rowcount != 1 and case.number not in row.case_numbers:
                # Another replica opened it a moment ago: add this case to theirs.
                row = (
                    await conn.execute(
                        update(pattern_alerts)
                        .where(pattern_alerts.c.id == row.id)
                        .values(case_numbers=sorted({*row.case_numbers, case.number}))
                        .returning(*pattern_alerts.c)
                    )
                ).one()
        return _alert(row, new=opened.rowcount == 1)

    # --- the audit log -------------------------------------------------------------------------

    @retry_when_busy
    async def audit(self, entry: AuditEntry) -> AuditEntry:
        values = entry.model_dump(exclude={"seq"})
        async with self._write() as conn:
            row = (
                await conn.execute(insert(audit_log).values(**values).returning(*audit_log.c))
            ).one()
        return _entry(row)

    async def trail(
        self, *, case_number: int | None = None, since: datetime | None = None
    ) -> list[AuditEntry]:
        query = select(audit_log).order_by(audit_log.c.seq)
        if case_number is not None:
            query = query.where(audit_log.c.case_number == case_number)
        if since is not None:
            query = query.where(audit_log.c.at >= since)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_entry(r) for r in rows]

    # --- retention -----------------------------------------------------------------------------

    @retry_when_busy
    async def purge(self, older_than: timedelta) -> dict[str, int]:
        """Delete what is older than the retention period: resolved cases (their proposals and
        approvals go with them), audit entries and button presses. Open cases stay."""
        cutoff = self._clock() - older_than
        removed: dict[str, int] = {}
        async with self._write() as conn:
            for name, stmt in (
                (
                    "cases",
                    delete(cases).where(
                        cases.c.state == CaseState.RESOLVED.value, cases.c.updated_at < cutoff
                    ),
                ),
                ("audit entries", delete(audit_log).where(audit_log.c.at < cutoff)),
                ("button presses", delete(button_presses).where(button_presses.c.at < cutoff)),
            ):
                removed[name] = int((await conn.execute(stmt)).rowcount or 0)
        return removed
