"""One turn pipeline for every adapter: dedupe -> rate limit -> authorise -> route.

Slack, Teams and the console translate what arrived into an `Arrival` and what comes back (an
`Outcome`) into platform calls; the policy between the two lives here, once, and knows only
`Turn`, `Reply` and `Actor`:

1. **dedupe** — a delivery the platform sent before (a retry, or the same event delivered to
   two replicas) is handled once: `events.first_time("{platform}:{delivery}")`, one INSERT on a
   unique key. A case-card click is also recorded as one press (`dialogs.presses.click_key`,
   `CaseStore.press`): the same click acts once, on one replica.
2. **rate limit** — a diagnosis (a submitted form, "Run again") is within the person's limit,
   counted in the database across replicas (`take`); "/mailfix" only looks (`peek`), so nobody
   fills in a form in vain.
3. **authorise** — a follow-up button (Run again, That fixed it, Escalate) on the person's own
   finished check acts once per check and person, whichever replica and however many presses
   (`dialogs.presses.follow_up_key`); a press that lost is told so. Whose check it is, and what
   a case click may do, are decided from stored state — the flow (`Conversation.act`) and the
   helpdesk (`dialogs.case_buttons.press` -> `dialogs.approval.Approvals`, which audits a
   refusal) — never from what the button carried.
4. **route** — the flow's replies (`Conversation.start/run/act/home`) or the case press.

What the platform knows about the person that costs a call (Slack: the email, the name the
helpdesk sees) is filled in by `Arrival.enrich` just before routing, so a duplicate or a
refused arrival costs no platform call.

    pipeline = runtime.pipeline
    outcome = await pipeline.handle(Arrival.of(turn, delivery=event_id))
    match outcome:
        case Duplicate():            # nothing: Slack already acked; Teams answers `ALREADY`
            ...
        case Refused(words=words):   # only the person sees the words
            ...
        case Replies(replies=replies):
            async for reply in replies: ...   # send each, in order (close when done)
        case CasePressed(pressed=pressed):
            ...  # pressed.words for whoever clicked; pressed.case: the case card to show

Acks stay in the adapters, before any of this: the pipeline touches the database.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from dialogs.approval import Actor
from dialogs.case_buttons import BadPress, Pressed, press
from dialogs.cases import CaseAction, CaseStore
from dialogs.intake import IntakeAnswers
from dialogs.models import (
    Action,
    CardSpec,
    FormErrors,
    Person,
    Platform,
    Reply,
    ShowForm,
    Turn,
    TurnKind,
)
from dialogs.presses import ALREADY, click_key, follow_up_key
from dialogs.store import DiagnosisStore

if TYPE_CHECKING:
    from dialogs.helpdesk import Helpdesk

log = logging.getLogger(__name__)

NO_HELPDESK = "The helpdesk is not set up on this server, so this button does nothing here."


# --- what arrived -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CasePress:
    """A click on a case card (Claim, Ask, Resolve, Approve, Reject, Refresh).

    `payload` is what the button carried (only `{"case": N}` or `{"proposal": id}` is read),
    `inputs` the card's inputs (the question), `actor` who the platform says clicked, `click`
    the platform's id of this one click (Slack `action_ts`, Teams activity id): None records no
    press (a platform that gives none)."""

    action: CaseAction
    payload: Mapping[str, Any]
    inputs: Mapping[str, Any]
    actor: Actor
    click: str | None = None
    # Complete the actor just before routing (Slack: the name people know, from users.info).
    enrich: Callable[[Actor], Awaitable[Actor]] | None = None


@dataclass(frozen=True)
class HomeVisit:
    """The person opened their home (Slack App Home): their recent checks."""

    person: Person


@dataclass(frozen=True)
class Arrival:
    """What arrived from a platform: a person's turn, a case-card click, or a home visit.

    `delivery` is the platform's id of this delivery (Slack `event_id`, Teams
    `{conversation}:{activity id}`): a second arrival with the same one is a `Duplicate`. None
    when the platform gives nothing to dedupe on. `answers`: a SUBMIT turn's form as the
    adapter already checked it (Slack must, to answer errors in its ack); None to check it here.
    """

    platform: Platform
    what: Turn | CasePress | HomeVisit
    delivery: str | None = None
    answers: IntakeAnswers | None = None
    # Complete the turn's person just before routing (Slack: the email, the real name).
    enrich: Callable[[Person], Awaitable[Person]] | None = None

    @classmethod
    def of(
        cls,
        turn: Turn,
        *,
        delivery: str | None = None,
        answers: IntakeAnswers | None = None,
        enrich: Callable[[Person], Awaitable[Person]] | None = None,
    ) -> Arrival:
        return cls(turn.platform, turn, delivery, answers, enrich)

    @classmethod
    def click(
        cls, platform: Platform, pressed: CasePress, *, delivery: str | None = None
    ) -> Arrival:
        return cls(platform, pressed, delivery)

    @classmethod
    def home(cls, platform: Platform, person: Person, *, delivery: str | None = None) -> Arrival:
        return cls(platform, HomeVisit(person), delivery)

    @property
    def person_id(self) -> str:
        match self.what:
            case Turn(person=person) | HomeVisit(person=person):
                return person.id
            case CasePress(actor=actor):
                return actor.id
        raise TypeError(self.what)  # pragma: no cover


# --- what to do -----------------------------------------------------------------------------------


class Why(StrEnum):
    """Why an arrival was refused (adapters may answer some differently, e.g. a 400)."""

    RATE_LIMIT = "rate_limit"  # too many diagnoses lately
    ALREADY = "already"  # a follow-up that already happened (another press won)
    BAD_PRESS = "bad_press"  # a case button naming no case or fix (forged or broken)
    NO_HELPDESK = "no_helpdesk"  # a case button on a server without the helpdesk loop


@dataclass(frozen=True)
class Duplicate:
    """The same delivery (or click) was handled already: do nothing more."""


@dataclass(frozen=True)
class Refused:
    """Not done; `words` are for the person alone."""

    words: str
    why: Why


@dataclass(frozen=True)
class Replies:
    """The flow's replies, to send in order. The adapter closes the iterator when it stops
    early (its cleanup marks an interrupted diagnosis as failed)."""

    replies: AsyncIterator[Reply]


@dataclass(frozen=True)
class CasePressed:
    """What a case click did (`pressed.words` for whoever clicked, `pressed.case` its case)."""

    pressed: Pressed
    actor: Actor


@dataclass(frozen=True)
class HomeCard:
    card: CardSpec


Outcome = Duplicate | Refused | Replies | CasePressed | HomeCard


# --- what the pipeline needs from the server ------------------------------------------------------


class Allowance(Protocol):
    @property
    def allowed(self) -> bool: ...


class Ledger(Protocol):
    async def first_time(self, event_id: str) -> bool: ...


class Wording(Protocol):
    def message(self, verdict: Any) -> str: ...


class Flow(Protocol):
    def start(self, turn: Turn) -> ShowForm: ...

    def check_form(self, turn: Turn) -> FormErrors | IntakeAnswers: ...

    def form_again(self, turn: Turn, errors: FormErrors) -> ShowForm: ...

    def run(self, turn: Turn, answers: IntakeAnswers) -> AsyncIterator[Reply]: ...

    def act(self, turn: Turn) -> AsyncIterator[Reply]: ...

    async def home(self, person: Person, platform: Platform = ...) -> CardSpec: ...


class Host(Protocol):
    """The server's shared state the steps use (`bot.runtime.Runtime` is one). Read on every
    arrival: the helpdesk is wired after the host is built."""

    @property
    def conversation(self) -> Flow: ...

    @property
    def store(self) -> DiagnosisStore: ...

    @property
    def events(self) -> Ledger: ...

    @property
    def limiter(self) -> Wording: ...

    @property
    def cases(self) -> CaseStore | None: ...

    @property
    def helpdesk(self) -> Helpdesk | None: ...

    async def peek(self, person_id: str) -> Allowance: ...

    async def take(self, person_id: str) -> Allowance: ...


# --- the pipeline ---------------------------------------------------------------------------------


class Pipeline:
    """The four steps, in order, for any platform's arrival."""

    def __init__(self, host: Host) -> None:
        self.host = host

    async def handle(self, arrival: Arrival) -> Outcome:
        what = arrival.what
        if isinstance(what, Turn) and what.kind is TurnKind.SUBMIT and arrival.answers is None:
            # Reading the form is translation, not policy: a form with errors comes back to
            # the person as it is, before anything is counted.
            checked = self.host.conversation.check_form(what)
            if isinstance(checked, FormErrors):
                return Replies(_one(self.host.conversation.form_again(what, checked)))
            arrival = Arrival.of(
                what, delivery=arrival.delivery, answers=checked, enrich=arrival.enrich
            )
        if not await self._first_time(arrival):
            return Duplicate()
        refused = await self._within_limit(arrival)
        if refused is not None:
            return refused
        refused = await self._authorise(arrival)
        if refused is not None:
            return refused
        return await self._route(arrival)

    # 1. dedupe

    async def fresh(self, platform: Platform, delivery: str | None) -> bool:
        """The dedupe step alone: False when this delivery was handled before (on any replica).
        For what arrives that is no turn (Teams `conversationUpdate`, a typed answer)."""
        if delivery and not await self.host.events.first_time(f"{platform.value}:{delivery}"):
            log.info("ignored a repeated %s delivery %s", platform.value, delivery)
            return False
        return True

    async def _first_time(self, arrival: Arrival) -> bool:
        if not await self.fresh(arrival.platform, arrival.delivery):
            return False
        what = arrival.what
        cases = self.host.cases
        if not isinstance(what, CasePress) or what.click is None or cases is None:
            return True
        value = str(what.payload.get("proposal") or what.payload.get("case") or "")
        actor = what.actor
        key = click_key(
            arrival.platform, actor.workspace, actor.id, what.action.value, value, what.click
        )
        won = await cases.press(
            key, kind=what.action.value, actor=actor.id, platform=arrival.platform
        )
        if not won:
            log.info("ignored a second delivery of a %s click", what.action.value)
        return won

    # 2. rate limit

    async def _within_limit(self, arrival: Arrival) -> Refused | None:
        turn = arrival.what
        if not isinstance(turn, Turn):
            return None
        if turn.kind is TurnKind.START:
            verdict = await self.host.peek(turn.person.id)  # nothing taken: only a form opens
        elif turn.kind is TurnKind.SUBMIT or turn.action is Action.RUN_AGAIN:
            verdict = await self.host.take(turn.person.id)
        else:
            return None
        if verdict.allowed:
            return None
        return Refused(self.host.limiter.message(verdict), Why.RATE_LIMIT)

    # 3. authorise

    async def _authorise(self, arrival: Arrival) -> Refused | None:
        what = arrival.what
        if isinstance(what, CasePress):
            if self.host.helpdesk is None:
                return Refused(NO_HELPDESK, Why.NO_HELPDESK)
            return None  # what the click may do: the helpdesk decides from stored state
        if not isinstance(what, Turn) or what.kind is not TurnKind.ACTION:
            return None
        person = what.person.id
        key = follow_up_key(arrival.platform, what.action, what.diagnosis_id, person)
        cases = self.host.cases
        if key is None or cases is None or what.action is None:
            return None
        stored = await self.host.store.get(what.diagnosis_id or "")
        # Only a press that can act is recorded: the flow explains the others (not yours,
        # still running, no results yet).
        ready = ("done", "failed") if what.action is Action.RUN_AGAIN else ("done",)
        if (
            stored is None
            or stored.platform != arrival.platform
            or stored.person_id != person
            or stored.state not in ready
        ):
            return None
        won = await cases.press(
            key, kind=what.action.value, actor=person, platform=arrival.platform
        )
        if won:
            return None
        return Refused(ALREADY[what.action], Why.ALREADY)

    # 4. route

    async def _route(self, arrival: Arrival) -> Outcome:
        what = arrival.what
        flow = self.host.conversation
        if isinstance(what, CasePress):
            helpdesk = self.host.helpdesk
            assert helpdesk is not None  # authorised above
            actor = await what.enrich(what.actor) if what.enrich else what.actor
            try:
                pressed = await press(helpdesk, what.action, what.payload, what.inputs, actor)
            except BadPress as exc:
                return Refused(str(exc), Why.BAD_PRESS)
            if what.action is not CaseAction.REFRESH:  # Teams refreshes by itself: no news
                outcome = "acted" if pressed.ok else "did nothing"
                log.info("%s on case %s %s", what.action.value, pressed.case, outcome)
            return CasePressed(pressed, actor)
        if isinstance(what, HomeVisit):
            return HomeCard(await flow.home(what.person, arrival.platform))
        turn = what
        if arrival.enrich is not None:
            turn = turn.model_copy(update={"person": await arrival.enrich(turn.person)})
        if turn.kind is TurnKind.START:
            return Replies(_one(flow.start(turn)))
        if turn.kind is TurnKind.SUBMIT:
            assert arrival.answers is not None  # checked in `handle`
            return Replies(flow.run(turn, arrival.answers))
        return Replies(flow.act(turn))


async def _one(reply: Reply) -> AsyncIterator[Reply]:
    yield reply
