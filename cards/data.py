"""What each card template needs: one small pydantic model per template.

`dialogs/` builds these and puts `model.model_dump(mode="json")` into a `CardSpec`;
`cards.render` validates the dict again with the same model before any template sees it.
Strings here are raw (as typed by a person or answered by a server): escaping is the
renderer's job, never the caller's.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from checks.models import Client, Report, Side, Status


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- intake form -----------------------------------------------------------------------------


class Choice(_Data):
    """One option of a `choice` field."""

    value: str
    title: str


class FormField(_Data):
    """One input of the intake form. `id` is the input id on both platforms (UI.md)."""

    id: str
    label: str
    kind: Literal["text", "email", "choice", "multiline"] = "text"
    choices: list[Choice] = Field(default_factory=list)  # only for kind == "choice"
    value: str | None = None  # initial value (a choice's `value` for kind == "choice")
    required: bool = False
    placeholder: str | None = None
    hint: str | None = None
    error: str | None = None  # shown under the field (Teams); Slack uses response_action=errors


class IntakeData(_Data):
    """The generic intake form (Slack modal / Teams card)."""

    title: str
    intro: str | None = None
    fields: list[FormField]
    submit_label: str = "Check"
    error: str | None = None  # form-level error shown above the fields
    # Slack only: the modal private_metadata, JSON {"conversation": ..., "diagnosis_id": null}.
    private_metadata: str = ""


# --- progress --------------------------------------------------------------------------------


class FindingLine(_Data):
    """One finished check as shown on the progress card."""

    check: str
    title: str
    status: Status
    summary: str = ""


class ProgressData(_Data):
    """The live card while checks run ("6 of 11 checks done")."""

    address: str
    client_label: str
    total: int = Field(ge=0)
    done: int = Field(ge=0)
    running: list[str] = Field(default_factory=list)  # titles of the checks still running
    finished: list[FindingLine] = Field(default_factory=list)


# --- results ---------------------------------------------------------------------------------


class ResultsData(_Data):
    """The results card: top cause, the person's next steps, findings by status, buttons."""

    diagnosis_id: str
    address: str
    client: Client
    client_label: str  # e.g. "Outlook for Windows"
    symptom_label: str | None = None  # what the person said was wrong
    report: Report
    next_steps: list[str] = Field(default_factory=list)  # for *their* app, top cause first
    check_titles: dict[str, str] = Field(default_factory=dict)  # check id -> title
    actions_enabled: bool = True  # False: no buttons (e.g. the helpdesk copy, a stale card)
    escalated: bool = False  # True: show the "Escalated" state instead of the button
    note: str | None = None  # one line above the buttons ("Checked again at 10:42")
    # "person": their card, the helpdesk details collapsed (Teams) or behind a button (Slack);
    # "helpdesk": the details open (the Slack details modal, a helpdesk copy of the card).
    audience: Literal["person", "helpdesk"] = "person"


# --- escalation receipt ----------------------------------------------------------------------


class EscalationData(_Data):
    """Receipt that a diagnosis went to the helpdesk (shown to the person and the helpdesk)."""

    diagnosis_id: str
    address: str
    requester: str  # display name or mention-free handle of the person
    top_cause_title: str | None = None
    side: Side | None = None
    summary: str  # one paragraph: what failed
    channel_label: str  # where it went, e.g. "#it-helpdesk"
    ticket: str | None = None  # helpdesk reference, if any
    failing_checks: list[str] = Field(default_factory=list)  # titles


# --- error, notice, home ---------------------------------------------------------------------


class ErrorData(_Data):
    """Something went wrong: say what, and what to try. Never silence."""

    title: str
    message: str
    try_next: list[str] = Field(default_factory=list)
    diagnosis_id: str | None = None
    retry: bool = False  # show a Run again button (needs diagnosis_id)


class NoticeData(_Data):
    """A short line of text as a card."""

    text: str


class RecentDiagnosis(_Data):
    """One line of the Slack App Home list."""

    diagnosis_id: str
    address: str
    client_label: str
    when: str  # already formatted for the person, e.g. "2026-11-22 10:42 UTC"
    top_cause_title: str | None = None
    status: Status | None = None  # worst finding status


class HomeData(_Data):
    """The Slack App Home tab."""

    recent: list[RecentDiagnosis] = Field(default_factory=list)
    intro: str | None = None


# The helpdesk loop's cards build on ResultsData (above).
from .case_data import AlertData, AnswerData, CaseData  # noqa: E402

TEMPLATE_MODELS: dict[str, type[BaseModel]] = {
    "intake": IntakeData,
    "progress": ProgressData,
    "results": ResultsData,
    "escalation": EscalationData,
    "error": ErrorData,
    "notice": NoticeData,
    "home": HomeData,
    "case": CaseData,
    "alert": AlertData,
    "answer": AnswerData,
}
