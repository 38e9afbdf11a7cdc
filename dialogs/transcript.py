"""A transcript harness: drive a `Conversation` the way a person would, on either platform.

Like botbuilder's TestFlow ("send, then assert the reply"), but for our own Turn/Reply models:

    t = Transcript(conversation, platform=Platform.SLACK, person=Person(id="U1"))
    await t.command("/mailfix ana@contoso.com")
    t.expect_form(address="ana@contoso.com")
    await t.submit({"app": "outlook_windows", "symptom": "cannot_connect"})
    t.expect_post("progress")
    t.expect_update("results", top_cause="autodiscover-dns-missing")
    await t.press(Action.ESCALATE)

Every card in every reply is rendered with `cards.render` for the platform's real target
(Teams: Adaptive Card; Slack: a modal for the form, a message otherwise), so a template that
cannot show what the flow produced fails the transcript. Expectations consume replies in order;
progress edits in between are skipped unless a progress card is what you expect, since how many
there are depends on timing (see the throttling in `dialogs.flow`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from cards import Target, render
from dialogs.flow import Conversation
from dialogs.intake import FIELDS, IntakeAnswers
from dialogs.models import (
    Action,
    CardSpec,
    FormErrors,
    Notice,
    Person,
    Platform,
    Post,
    Reply,
    ShowForm,
    Turn,
    TurnKind,
    Update,
)


class TranscriptMismatch(AssertionError):
    """The conversation did not say what the transcript expected."""


def _lookup(data: dict[str, Any], key: str) -> Any:
    """A card field by name; `top_cause` reads the results card's first cause id."""
    if key == "top_cause":
        causes = data.get("report", {}).get("causes", [])
        return causes[0]["id"] if causes else None
    if key not in data:
        raise TranscriptMismatch(f"card has no field {key!r} (fields: {sorted(data)})")
    return data[key]


def _match(data: dict[str, Any], expected: dict[str, Any], what: str) -> None:
    for key, want in expected.items():
        got = _lookup(data, key)
        ok = want(got) if callable(want) else got == want
        if not ok:
            raise TranscriptMismatch(f"{what}: {key} = {got!r}, expected {want!r}")


class Transcript:
    """One person talking to mailfix in one conversation."""

    def __init__(
        self,
        conversation: Conversation,
        *,
        platform: Platform,
        person: Person,
        conversation_id: str = "C-transcript",
    ) -> None:
        self.conversation = conversation
        self.platform = platform
        self.person = person
        self.conversation_id = conversation_id
        self.replies: list[Reply] = []  # everything said so far, in order
        self.messages: dict[str, CardSpec] = {}  # key -> the card the message shows now
        self.rendered: list[dict[str, Any]] = []  # platform payloads, in order
        self.form: CardSpec | None = None  # the intake form currently open
        self._typed: dict[str, Any] = {}  # what its inputs hold now
        self._cursor = 0
        self._ids = itertools.count(1)

    # --- what the person does --------------------------------------------------------------

    async def command(self, text: str = "/mailfix") -> None:
        """Slack's "/mailfix [args]" (on Teams the same words arrive as a message)."""
        await self._start(text.removeprefix("/mailfix"))

    async def message(self, text: str = "mailfix") -> None:
        """Teams' "mailfix [args]" or "@mailfix [args]"."""
        words = text.strip()
        for prefix in ("@mailfix", "mailfix", "/mailfix"):
            if words.lower().startswith(prefix):
                words = words[len(prefix) :]
                break
        await self._start(words)

    async def submit(self, values: dict[str, Any]) -> None:
        """Submit the open form: its prefilled values, overridden by `values` (None clears)."""
        if self.form is None:
            raise TranscriptMismatch("no form is open to submit")
        merged = dict(self._typed)
        merged.update(values)
        sent = {k: v for k, v in merged.items() if v is not None}
        turn = self._turn(TurnKind.SUBMIT, values=sent)
        result = self.conversation.check_form(turn)
        if isinstance(result, FormErrors):
            unknown = set(result.errors) - set(FIELDS)
            if unknown and self.platform is Platform.SLACK:
                # Slack rejects response_action=errors naming a block the modal does not have.
                raise TranscriptMismatch(f"errors for unknown fields {sorted(unknown)}")
            self._typed = sent  # the form stays open with what the person typed
            self._said(result)
            if self.platform is not Platform.SLACK:  # Teams replaces the card with this one
                again = self.conversation.form_again(turn, result)
                self._render(again.card, self._form_target())
                self.form = again.card
            return
        if not isinstance(result, IntakeAnswers):
            raise TranscriptMismatch(f"check_form returned {result!r}")
        self.form = None
        async for reply in self.conversation.run(turn, result):
            self._said(reply)

    async def press(
        self,
        action: Action,
        *,
        diagnosis_id: str | None = None,
        person: Person | None = None,
    ) -> None:
        """Press a button; by default on the latest results or error card, as this person."""
        turn = self._turn(
            TurnKind.ACTION,
            action=action,
            diagnosis_id=diagnosis_id or self.latest_diagnosis_id(),
            person=person,
        )
        async for reply in self.conversation.act(turn):
            self._said(reply)

    async def open_home(self) -> dict[str, Any]:
        """Slack's App Home tab for this person; returns the home card's data."""
        spec = await self.conversation.home(self.person, self.platform)
        if self.platform is Platform.SLACK:
            self._render(spec, Target.SLACK_HOME)
        return spec.data

    # --- what we expect ----------------------------------------------------------------------

    def expect_form(self, **fields: Any) -> dict[str, Any]:
        """The next reply opens the form; `fields` are expected field values by id."""
        reply = self._next(lambda r: True)
        if not isinstance(reply, ShowForm):
            raise TranscriptMismatch(f"expected the form, got {reply!r}")
        values = {f["id"]: f["value"] for f in reply.card.data["fields"]}
        _match(values, fields, "form")
        return reply.card.data

    def expect_errors(self, errors: dict[str, str]) -> dict[str, str]:
        """The next reply is field errors on exactly these fields; each expected text must
        appear in the message (case-insensitive)."""
        reply = self._next(lambda r: True)
        if not isinstance(reply, FormErrors):
            raise TranscriptMismatch(f"expected form errors, got {reply!r}")
        if set(reply.errors) != set(errors):
            raise TranscriptMismatch(f"errors on {sorted(reply.errors)}, expected {sorted(errors)}")
        for key, text in errors.items():
            if text.lower() not in reply.errors[key].lower():
                raise TranscriptMismatch(f"{key}: {reply.errors[key]!r} lacks {text!r}")
        return reply.errors

    def expect_post(self, template: str, **fields: Any) -> dict[str, Any]:
        return self._expect_card(Post, template, fields)

    def expect_update(self, template: str, **fields: Any) -> dict[str, Any]:
        return self._expect_card(Update, template, fields)

    def expect_notice(self, contains: str = "") -> str:
        reply = self._next(_not_progress_edit)
        if not isinstance(reply, Notice):
            raise TranscriptMismatch(f"expected a notice, got {reply!r}")
        if contains.lower() not in reply.text.lower():
            raise TranscriptMismatch(f"notice {reply.text!r} lacks {contains!r}")
        return reply.text

    def expect_end(self) -> None:
        """Nothing else was said (progress edits aside)."""
        rest = [r for r in self.replies[self._cursor :] if _not_progress_edit(r)]
        self._cursor = len(self.replies)
        if rest:
            raise TranscriptMismatch(f"unexpected replies: {rest!r}")

    # --- inspection -------------------------------------------------------------------------

    def latest_diagnosis_id(self) -> str | None:
        """The key of the latest results or error message (the card with the buttons)."""
        for key, spec in reversed(self.messages.items()):
            if spec.template in ("results", "error") and ":" not in key:
                return key
        return None

    # --- plumbing ---------------------------------------------------------------------------

    async def _start(self, text: str) -> None:
        reply = self.conversation.start(self._turn(TurnKind.START, text=text.strip()))
        self.form = reply.card
        self._typed = {f["id"]: f["value"] for f in reply.card.data["fields"] if f.get("value")}
        self._said(reply)

    def _turn(self, kind: TurnKind, *, person: Person | None = None, **fields: Any) -> Turn:
        return Turn(
            platform=self.platform,
            kind=kind,
            person=person or self.person,
            conversation=self.conversation_id,
            id=f"evt-{next(self._ids)}",
            **fields,
        )

    def _said(self, reply: Reply) -> None:
        if isinstance(reply, ShowForm):
            self._render(reply.card, self._form_target())
        elif isinstance(reply, Post):
            if reply.key in self.messages:
                raise TranscriptMismatch(f"posted twice under key {reply.key!r}")
            self._render(reply.card, self._message_target())
            self.messages[reply.key] = reply.card
        elif isinstance(reply, Update):
            if reply.key not in self.messages:
                raise TranscriptMismatch(f"update of a message never posted: {reply.key!r}")
            self._render(reply.card, self._message_target())
            # Re-insert so the latest-touched message is last (latest_diagnosis_id).
            del self.messages[reply.key]
            self.messages[reply.key] = reply.card
        self.replies.append(reply)

    def _render(self, spec: CardSpec, target: Target) -> None:
        self.rendered.append(render(spec, target))

    def _form_target(self) -> Target:
        return Target.SLACK_MODAL if self.platform is Platform.SLACK else Target.ADAPTIVE

    def _message_target(self) -> Target:
        return Target.SLACK_MESSAGE if self.platform is Platform.SLACK else Target.ADAPTIVE

    def _next(self, wanted: Callable[[Reply], bool]) -> Reply:
        while self._cursor < len(self.replies):
            reply = self.replies[self._cursor]
            self._cursor += 1
            if wanted(reply):
                return reply
        raise TranscriptMismatch("expected another reply, but the conversation said nothing more")

    def _expect_card(
        self, kind: type[Post] | type[Update], template: str, fields: dict[str, Any]
    ) -> dict[str, Any]:
        skip_progress = template != "progress"
        reply = self._next(lambda r: not (skip_progress and _is_progress_edit(r)))
        if not isinstance(reply, kind) or reply.card.template != template:
            raise TranscriptMismatch(f"expected {kind.__name__}({template}), got {reply!r}")
        _match(reply.card.data, fields, template)
        return reply.card.data


def _is_progress_edit(reply: Reply) -> bool:
    return isinstance(reply, Update) and reply.card.template == "progress"


def _not_progress_edit(reply: Reply) -> bool:
    return not _is_progress_edit(reply)
