"""The helpdesk loop in the local console (demo): the helpdesk channel as a second view.

The console page switches between three views of the same cases:

- **Person**: their chat with mailfix (`bot.console_adapter`). "Escalate to helpdesk" opens a
  real case (`dialogs.helpdesk.Helpdesk` on the demo's database); the helpdesk's news about it
  (taken, a question, a fix applied, resolved) arrives here as messages, and text typed while
  the helpdesk waits for an answer goes back to the case.
- **Helpdesk**: the helpdesk channel (`ConsoleChannel`, a `HelpdeskChannel`): case and alert
  cards, posted and updated in place. Its Teams cards are the ones everybody gets: no Approve /
  Reject (Teams shows those only to the approvers named in `refresh.userIds`); its Slack
  preview shows them to everyone, as Slack does, and the server refuses a non-approver.
- **Approver**: the same channel as an approver sees it in Teams (the refreshed card, with
  Approve / Reject). The console person is an approver in this view, and only in this view.

In (JSON, the console's own rules: session cookie, `X-Mailfix-Console`, no foreign origin):
- `GET  /console/api/board`: every card of the helpdesk channel (`{"items": [...]}`);
- `POST /console/api/helpdesk {"verb", "data", "inputs", "role"}`: a button on a case card —
  `verb` a `dialogs.cases.CaseAction`, `data` `{"case": N}` or `{"proposal": id}` (nothing
  else is read from it), `inputs` the card's inputs (the question), `role` "helpdesk" or
  "approver" (who pressed: the person in that view). Answers `{"message", "items"}`.
Board changes also reach every open page as a `board` event on the console's event stream.
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, cast

from aiohttp import web

from bot.case_store import SqlCaseStore
from bot.console_adapter import ConsoleBot, Item, Session, _error, _json, command_address
from bot.server import RUNTIME
from cards import CardError, Target, render
from dialogs.approval import Actor, ApplyFix, Approvals
from dialogs.cases import Case, CaseAction, CaseState
from dialogs.flow import Conversation
from dialogs.helpdesk import Helpdesk, Posted, Recheck
from dialogs.models import CardSpec, Platform
from dialogs.pipeline import Arrival, CasePress, CasePressed, Refused, Why

log = logging.getLogger(__name__)

WHERE = "the Helpdesk view of this console"
# Who the console person is in each view (the names the person's messages and the audit show).
ROLES = {"helpdesk": "Sam Rivera", "approver": "Jo Okafor"}
MAX_BOARD = 200  # cards kept on the board


@dataclass
class BoardItem:
    """One card in the helpdesk channel, drawn three ways."""

    key: str
    rev: int
    template: str
    case: int | None
    card: dict[str, Any]  # the Adaptive Card everyone gets (Teams)
    approver_card: dict[str, Any]  # what an approver sees in Teams (refreshed)
    slack: dict[str, Any] | None  # the Block Kit message (everyone sees the same)

    def wire(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "rev": self.rev,
            "kind": "card",
            "template": self.template,
            "case": self.case,
            "card": self.card,
            "approver_card": self.approver_card,
            "slack": self.slack,
        }


class ConsoleApprovers:
    """`ApproverDirectory` of the demo: the console person when they act as the approver."""

    async def is_approver(self, actor: Actor) -> bool:
        return actor.platform == Platform.CONSOLE.value and actor.id.endswith(":approver")


class ConsoleChannel:
    """`dialogs.helpdesk.HelpdeskChannel` for the console: the board, and the person's timeline."""

    def __init__(self, console: ConsoleBot) -> None:
        self.console = console
        self.items: OrderedDict[str, BoardItem] = OrderedDict()
        self.rev = 0
        self._keys = itertools.count(1)
        self.waiting: dict[str, int] = {}  # person id -> the case whose question they answer

    def board(self) -> list[dict[str, Any]]:
        return [i.wire() for i in self.items.values()]

    def _put(self, key: str, spec: CardSpec) -> BoardItem:
        approver = spec
        if spec.template == "case":
            approver = CardSpec(template="case", data={**spec.data, "approver_view": True})
        try:
            slack: dict[str, Any] | None = render(spec, Target.SLACK_MESSAGE)
        except CardError:
            log.warning("console: no Slack preview of a %s card", spec.template)
            slack = None
        self.rev += 1
        number = spec.data.get("number")
        item = BoardItem(
            key=key,
            rev=self.rev,
            template=spec.template,
            case=number if isinstance(number, int) else None,
            card=render(spec, Target.ADAPTIVE),
            approver_card=render(approver, Target.ADAPTIVE),
            slack=slack,
        )
        self.items[key] = item
        while len(self.items) > MAX_BOARD:
            self.items.popitem(last=False)
        self.console.broadcast("board", item.wire())
        return item

    async def post(self, platform: Platform, card: CardSpec) -> Posted:
        key = f"{card.template}-{next(self._keys)}"
        self._put(key, card)
        return Posted(WHERE, ref={"platform": Platform.CONSOLE.value, "key": key})

    async def update(self, ref: dict[str, Any], card: CardSpec) -> bool:
        key = ref.get("key")
        if not isinstance(key, str) or key not in self.items:
            return False
        self._put(key, card)
        return True

    async def tell(self, case: Case, text: str) -> None:
        session = self.console.session_of(case.person_id)
        if session is None:
            log.warning("console: the person of case %s has no session any more", case.number)
            return
        if case.state is CaseState.WAITING and case.question and case.question in text:
            self.waiting[case.person_id] = case.number
            text += " Type your answer below and press Send."
        self.console.tell(session, text)


class ConsoleHelpdesk:
    """The routes of the helpdesk and approver views, on one `Helpdesk`."""

    def __init__(self, console: ConsoleBot, channel: ConsoleChannel, helpdesk: Helpdesk) -> None:
        self.console = console
        self.channel = channel
        self.helpdesk = helpdesk
        console.on_text = self.answer

    def register(self, app: web.Application) -> None:
        app.router.add_route("GET", "/console/api/board", self.board)
        app.router.add_route("POST", "/console/api/helpdesk", self.act)

    async def board(self, request: web.Request) -> web.Response:
        session = self.console.caller(request)
        if isinstance(session, web.Response):
            return session
        return _json({"items": self.channel.board(), "roles": ROLES})

    # --- the person answers the helpdesk's question --------------------------------------------

    async def answer(self, session: Session, text: str) -> list[Item] | None:
        number = self.channel.waiting.get(session.person.id)
        if number is None:
            return None
        address, problem = command_address(text)
        if address is not None and problem is None and address == text:
            return None  # a bare address: a new check, as always
        case = await self.helpdesk.answer(number, session.person.id, text)
        self.channel.waiting.pop(session.person.id, None)
        if case is None:  # resolved meanwhile, or no longer waiting: an ordinary message
            return None
        said = session.said(text)
        return [said, self.console.tell(session, f"Sent to the helpdesk with case {number}.")]

    # --- the helpdesk's and the approver's buttons ----------------------------------------------

    async def act(self, request: web.Request) -> web.Response:
        session = self.console.writer(request)
        if isinstance(session, web.Response):
            return session
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            return _error(400, "bad_request", "Send a JSON object.")
        data, inputs, role = body.get("data") or {}, body.get("inputs") or {}, body.get("role")
        if not isinstance(data, dict) or not isinstance(inputs, dict) or role not in ROLES:
            return _error(400, "bad_request", 'Send "data", "inputs" and a "role".')
        try:
            verb = CaseAction(str(body.get("verb") or data.get("verb")))
        except ValueError:
            return _error(400, "unknown_verb", "This button is not one mailfix knows.")
        actor = Actor(
            id=f"{session.person.id}:{role}",
            name=ROLES[str(role)],
            platform=Platform.CONSOLE.value,
            workspace=session.person.workspace,
        )
        # Answered inside the request: the words for the presser come with the answer (the
        # page shows them under the card); the board's other pages get the card as an event.
        arrival = Arrival.click(Platform.CONSOLE, CasePress(verb, data, inputs, actor))
        match await self.console.runtime.pipeline.handle(arrival):
            case Refused(words=words, why=Why.BAD_PRESS):
                return _error(400, "bad_request", words)
            case Refused(words=words):
                return _json({"message": words, "ok": False, "items": []})
            case CasePressed(pressed=pressed):
                key = _case_key(self.channel, pressed.case) if pressed.case else None
                item = self.channel.items.get(key) if key else None
                items = [item.wire()] if item else []
                return _json({"message": pressed.words, "ok": pressed.ok, "items": items})
        return _json({"message": None, "ok": False, "items": []})


def _case_key(channel: ConsoleChannel, number: int) -> str | None:
    for key, item in channel.items.items():
        if item.case == number:
            return key
    return None


def attach_helpdesk(
    app: web.Application,
    console: ConsoleBot,
    *,
    apply_fix: ApplyFix,
    recheck: Recheck | None = None,
    cause_titles: dict[str, str] | None = None,
) -> ConsoleHelpdesk:
    """The helpdesk loop for the console: cases in the server's own database (the diagnoses'
    engine), the helpdesk channel as the console's second view, Escalate wired to it."""
    runtime = app[RUNTIME]
    engine = getattr(runtime.store, "engine", None)
    if engine is None:
        raise RuntimeError("the console's helpdesk needs the SQL store (bot.storage.SqlStore)")
    cases = SqlCaseStore(engine)
    channel = ConsoleChannel(console)
    approvals = Approvals(cases, apply_fix=apply_fix, approvers=ConsoleApprovers(), owner="console")
    conversation = cast(Conversation, runtime.conversation)

    async def details(case: Case) -> Any:
        if case.diagnosis_id is None:
            return None
        return await conversation.helpdesk_details(case.diagnosis_id)

    helpdesk = Helpdesk(
        cases,
        channel,
        approvals,
        recheck=recheck,
        cause_titles=cause_titles,
        check_titles=dict(conversation.s.check_titles),
        details=details,
        # In Teams these would be the approvers' user ids; the console draws both views itself.
        approver_ids=["console-approver"],
    )
    # The conversation's services are frozen: the one field the console adds is the escalation.
    conversation.s = replace(conversation.s, escalate=helpdesk.escalate)
    # The server's helpdesk loop is the console's: its clicks go through the turn pipeline,
    # and housekeeping sweeps its proposals.
    runtime.helpdesk, runtime.cases = helpdesk, helpdesk.cases
    routes = ConsoleHelpdesk(console, channel, helpdesk)
    routes.register(app)
    return routes
