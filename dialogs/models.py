"""Our own turn and reply models: what `bot/` translates platform payloads into and out of.

No Slack or Teams type appears here. A platform adapter builds a `Turn` from a slash command,
a Teams message, a form submission or a button click; a flow answers with `Reply` objects the
adapter turns into platform calls (open a modal / send a card / update it in place / ...).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Platform(StrEnum):
    SLACK = "slack"
    TEAMS = "teams"
    CONSOLE = "console"  # the local web console of the demo, and the transcript harness


class Person(_Frozen):
    """Who is talking to the bot, as the platform knows them."""

    id: str  # Slack user id "U…", Teams AAD object id or "29:…" MRI
    name: str | None = None
    email: str | None = None  # prefills the intake address (Slack users:read.email, Teams UPN)
    workspace: str | None = None  # Slack team id / Teams tenant id


class TurnKind(StrEnum):
    START = "start"  # "/mailfix [address]" or "mailfix" / "@mailfix" in Teams
    SUBMIT = "submit"  # the intake form was submitted
    ACTION = "action"  # a button on a card was pressed


class Action(StrEnum):
    """Buttons on cards. Values are the action ids on both platforms."""

    RUN_AGAIN = "mailfix.run_again"
    FIXED = "mailfix.fixed"
    ESCALATE = "mailfix.escalate"
    DETAILS = "mailfix.details"  # Slack: open "Details for the helpdesk" in a modal


class Turn(_Frozen):
    platform: Platform
    kind: TurnKind
    person: Person
    conversation: str  # where replies go: channel / DM / Teams conversation id
    text: str = ""  # command arguments after "/mailfix" or "mailfix"
    action: Action | None = None  # for ACTION turns
    values: dict[str, Any] = Field(default_factory=dict)  # form inputs / button payload
    diagnosis_id: str | None = None  # the diagnosis a button refers to
    id: str | None = None  # platform's id for the incoming event (dedupe of retries)


class CardSpec(_Frozen):
    """A card to render: which template, with what data. `cards/` turns it into JSON."""

    template: Literal[
        "intake",
        "progress",
        "results",
        "escalation",
        "error",
        "notice",
        "home",
        "case",
        "alert",
        "answer",
    ]
    data: dict[str, Any] = Field(default_factory=dict)


class ShowForm(_Frozen):
    """Open the intake form (Slack: modal from the trigger id; Teams: a card)."""

    kind: Literal["show_form"] = "show_form"
    card: CardSpec


class FormErrors(_Frozen):
    """Field-level validation errors for the intake form; keys are the input ids."""

    kind: Literal["form_errors"] = "form_errors"
    errors: dict[str, str]


class Post(_Frozen):
    """Send a new message. `key` names it so a later `Update` can replace it in place."""

    kind: Literal["post"] = "post"
    card: CardSpec
    key: str


class Update(_Frozen):
    """Replace the message previously posted under `key`."""

    kind: Literal["update"] = "update"
    card: CardSpec
    key: str


class Notice(_Frozen):
    """A short text only the person sees (Slack ephemeral; Teams plain message)."""

    kind: Literal["notice"] = "notice"
    text: str


Reply = ShowForm | FormErrors | Post | Update | Notice
