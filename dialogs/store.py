"""Where diagnoses and what people did with them are kept.

`DiagnosisStore` is the contract; `bot/` implements it with SQLAlchemy (SQLite by default,
PostgreSQL for several replicas). `MemoryStore` is the in-process version the tests and the
transcript harness use. Both keep the same rules:

- a diagnosis is created `running` and moves once, to `done` (with its report) or `failed`
  (with a message for the person). The first outcome wins: a late report arriving after the
  deadline already failed the diagnosis does not overwrite the failure (in SQL: one conditional
  `UPDATE ... WHERE state = 'running'`, so two replicas cannot both finish it);
- `updated_at` is stamped by the store, `created_at` by whoever builds the diagnosis;
- follow-ups are append-only events, returned oldest first.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from checks.models import Client, Report
from dialogs.models import Platform

DiagnosisState = Literal["running", "done", "failed"]
FollowUpKind = Literal["run_again", "fixed", "escalation_requested"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StoredDiagnosis(_Frozen):
    """One diagnosis: who asked, for what, and how it ended."""

    id: str
    platform: Platform
    person_id: str
    person_email: str | None = None
    workspace: str | None = None  # Slack team id / Teams tenant id the person asked from
    conversation: str
    address: str  # as sent on the wire (IDNA domain)
    client: Client
    app: str  # the intake `app` choice, e.g. "outlook_windows" (finer than `client`)
    symptom: str | None = None  # `checks.symptoms.Symptom` value, None when not given
    # The validated intake values keyed by field id (UI.md); `dialogs.intake.check_answers`
    # turns them back into the same request, which is how "Run again" works.
    answers: dict[str, Any] = Field(default_factory=dict)
    state: DiagnosisState = "running"
    report: Report | None = None
    error: str | None = None  # for the person; never a traceback
    created_at: datetime
    updated_at: datetime


class FollowUp(_Frozen):
    """Something a person did with a finished diagnosis (the buttons on the results card)."""

    kind: FollowUpKind
    diagnosis_id: str
    person_id: str
    at: datetime


class UnknownDiagnosis(KeyError):
    """No diagnosis with that id (never stored, or expired)."""


class DiagnosisStore(Protocol):
    async def create(self, d: StoredDiagnosis) -> None:
        """Store a new diagnosis. The id must be new (ValueError otherwise)."""
        ...

    async def finish(self, id: str, report: Report) -> StoredDiagnosis:
        """`running` -> `done` with the report. Returns the diagnosis as stored after the call
        (unchanged if it had already ended). Raises UnknownDiagnosis."""
        ...

    async def fail(self, id: str, message: str) -> StoredDiagnosis:
        """`running` -> `failed` with a message for the person. Same rules as `finish`."""
        ...

    async def get(self, id: str) -> StoredDiagnosis | None: ...

    async def recent(self, person_id: str, limit: int = 10) -> list[StoredDiagnosis]:
        """The person's latest diagnoses, newest first (by `created_at`)."""
        ...

    async def record(self, follow_up: FollowUp) -> None:
        """Append a follow-up event. Raises UnknownDiagnosis for an unknown diagnosis id."""
        ...

    async def follow_ups(self, diagnosis_id: str) -> list[FollowUp]:
        """The diagnosis's follow-ups, oldest first (empty for an unknown id)."""
        ...


def utc_now() -> datetime:
    return datetime.now(UTC)


class MemoryStore:
    """`DiagnosisStore` in a dict. One event loop, no persistence: tests and the demo."""

    def __init__(self, *, clock: Callable[[], datetime] = utc_now) -> None:
        self._clock = clock
        self._diagnoses: dict[str, StoredDiagnosis] = {}
        self._follow_ups: list[FollowUp] = []

    async def create(self, d: StoredDiagnosis) -> None:
        if d.id in self._diagnoses:
            raise ValueError(f"diagnosis {d.id!r} already exists")
        self._diagnoses[d.id] = d

    async def finish(self, id: str, report: Report) -> StoredDiagnosis:
        return self._end(id, state="done", report=report, error=None)

    async def fail(self, id: str, message: str) -> StoredDiagnosis:
        return self._end(id, state="failed", report=None, error=message)

    def _end(
        self, id: str, *, state: DiagnosisState, report: Report | None, error: str | None
    ) -> StoredDiagnosis:
        current = self._diagnoses.get(id)
        if current is None:
            raise UnknownDiagnosis(id)
        if current.state != "running":
            return current
        ended = current.model_copy(
            update={"state": state, "report": report, "error": error, "updated_at": self._clock()}
        )
        self._diagnoses[id] = ended
        return ended

    async def get(self, id: str) -> StoredDiagnosis | None:
        return self._diagnoses.get(id)

    async def recent(self, person_id: str, limit: int = 10) -> list[StoredDiagnosis]:
        # Ties on created_at (a coarse clock) go to the later insertion.
        mine = [(d.created_at, n, d) for n, d in enumerate(self._diagnoses.values())]
        mine.sort(key=lambda t: (t[0], t[1]), reverse=True)
        return [d for _, _, d in mine if d.person_id == person_id][: max(limit, 0)]

    async def record(self, follow_up: FollowUp) -> None:
        if follow_up.diagnosis_id not in self._diagnoses:
            raise UnknownDiagnosis(follow_up.diagnosis_id)
        self._follow_ups.append(follow_up)

    async def follow_ups(self, diagnosis_id: str) -> list[FollowUp]:
        return [f for f in self._follow_ups if f.diagnosis_id == diagnosis_id]
