"""The local web console (demo): a thin translator between the console page and Turn / Reply.

The fourth front end beside Slack, Teams and the CLI (DESIGN.md). It has no login, so only the
demo attaches it (`attach_console`), on a server that listens on loopback.

In (JSON, under `/console/api/`):
- `POST start   {"text": "mailfix ana@contoso.com"}` -> `Turn(START)` -> the intake card;
- `POST execute {"verb", "data", "inputs", "message"}` - what an `Action.Execute` (or its
  `Action.Submit` fallback, verb inside `data`) on a card sends: verb `mailfix.intake` ->
  `Turn(SUBMIT)`, a button verb (`dialogs.models.Action`) -> `Turn(ACTION)`. `message` is the
  key of the card pressed: like Teams, the intake form is replaced in place by the progress card.
- `GET events` - Server-Sent Events: every change to this person's timeline as it happens (the
  progress card edited in place as checks finish, then turned into the results card). A
  reconnect with `Last-Event-ID` gets what it missed, else a snapshot of the whole timeline.
- `GET state`, `GET home` (the person's recent checks), `GET info` (sample addresses).
Out: each `Reply` becomes a timeline item `{"key", "rev", "kind", "template", "card", "slack",
"closed"}`: the Adaptive Card Teams would get (`cards.render(spec, Target.ADAPTIVE)`, drawn in the
page by Microsoft's official renderer, vendored under `static/vendor/`); what Slack would show
for the same reply (`Target.SLACK_MESSAGE`; a form the bot opens, like the helpdesk details, as
the Slack modal; null for the intake form, whose Slack modal has inputs the preview does not
take); and whether the card is closed (an intake form left unfinished when the person started
another check: it stays visible, disabled). What the person typed is `{"kind": "said", "text"}`.
`rev` orders every change of one timeline.

The helpdesk loop adds the page's Helpdesk and Approver views (`bot.console_helpdesk`): it
posts the helpdesk channel's cards as `board` events to every open page (`broadcast`), tells a
person news of their case in their timeline (`tell`), and takes what they type while the
helpdesk waits for their answer (`on_text`).

The composer checks an address the way the form does: `mailfix not-an-address` opens the form
with that text in the address field and the form's own words for what is wrong, never a silently
empty form, and never a value cut down to something else.

The person is a random token in an HttpOnly cookie set by `GET /console`; only its hash is ever
stored. A POST must carry `X-Mailfix-Console: 1` and JSON and no foreign `Origin`, so another
web page cannot drive the console (the custom header forces a CORS preflight nobody answers).
JSON is written with `<`, `>` and `&` as `\\u` escapes: cards carry hostile strings and a
response must never be readable as HTML.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import re
import secrets
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.runtime import Runtime
from bot.server import RUNTIME
from cards import CardError, Target, render
from cards.data import ErrorData, NoticeData
from checks.address import parse_address
from dialogs.intake import ADDRESS, check_answers
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
from dialogs.pipeline import Arrival, Refused, Replies

log = logging.getLogger(__name__)

INTAKE = "mailfix.intake"
COOKIE = "mailfix_console"
HEADER = "X-Mailfix-Console"
STATIC = Path(__file__).parent / "static"
# The official Adaptive Cards renderer (npm `adaptivecards`, pinned; see static/vendor/README.md).
ADAPTIVECARDS_VERSION = "3.0.6"
VENDOR = (
    f"vendor/adaptivecards-{ADAPTIVECARDS_VERSION}.min.js",
    f"vendor/adaptivecards-{ADAPTIVECARDS_VERSION}.css",
)
# The Trusted Types policies the renderer creates for itself (pass-through: the HTML it gets is
# what the page's own markdown processor serialised; see console.js). No other may exist.
TRUSTED_TYPES = (
    "adaptivecards#markdownPassthroughPolicy",
    "adaptivecards#restoreContentsPolicy",
    "adaptivecards#deprecatedExportedFunctionPolicy",
)
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
    "require-trusted-types-for 'script'; trusted-types " + " ".join(TRUSTED_TYPES)
)
# Every file the page may load, by URL path under /console/ -> (file under static/, type).
ASSETS: dict[str, str] = {
    "console.js": "text/javascript",
    "console.css": "text/css",
    "favicon.svg": "image/svg+xml",
    "hostconfig-teams.json": "application/json",
    VENDOR[0]: "text/javascript",
    VENDOR[1]: "text/css",
}
MAX_TEXT = 2000  # what one start message may hold
MAX_SESSIONS = 1000  # people remembered (least recently used go first)
MAX_ITEMS = 200  # timeline items per person
HISTORY = 500  # events kept for reconnects
QUEUE = 256  # events buffered for one slow reader before it must reconnect
KEEPALIVE = 15.0  # seconds between comments on an idle event stream
FIRST_REPLY_TIMEOUT = 10.0  # seconds the first reply of a flow may take inside the request
_TOKEN = re.compile(r"[A-Za-z0-9_-]{22,64}")
_COMMAND = re.compile(r"^\s*[/@]?mailfix\b", re.IGNORECASE)


def dumps(value: Any) -> str:
    """JSON that no browser can mistake for markup, whatever the strings hold."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _json(value: Any, status: int = 200) -> web.Response:
    return web.json_response(value, status=status, dumps=dumps)


def _error(status: int, code: str, message: str) -> web.Response:
    return _json({"error": code, "message": message}, status)


def command_text(text: str) -> str:
    """ "/mailfix ana@contoso.com", "@mailfix …" or just "ana@contoso.com" -> the arguments."""
    return _COMMAND.sub("", text, count=1).strip()


# --- one person's timeline ---------------------------------------------------------------------


@dataclass
class Item:
    key: str
    rev: int
    kind: str  # "card" | "said"
    template: str | None = None
    card: dict[str, Any] | None = None
    text: str | None = None
    slack: dict[str, Any] | None = None  # the Block Kit message Slack would show, if any
    closed: bool = False  # an intake form superseded by a newer one

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "rev": self.rev, "kind": self.kind}
        if self.kind == "card":
            out.update(template=self.template, card=self.card, slack=self.slack, closed=self.closed)
        else:
            out["text"] = self.text
        return out


class _Reader:
    """One open event stream."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE)

    def push(self, event: bytes | None) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:  # too slow: end the stream; the reconnect catches up
            self.close()

    def close(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


@dataclass
class Session:
    """The console's state for one person: their timeline, and who is watching it."""

    person: Person
    conversation: str
    rev: int = 0
    items: OrderedDict[str, Item] = field(default_factory=OrderedDict)
    history: deque[tuple[int, bytes]] = field(default_factory=lambda: deque(maxlen=HISTORY))
    readers: set[_Reader] = field(default_factory=set)
    aliases: dict[str, str] = field(default_factory=dict)  # flow message key -> item key
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def new_key(self, prefix: str) -> str:
        return f"{prefix}-{next(self.counter)}"

    def resolve(self, key: str) -> str:
        return self.aliases.get(key, key)

    def said(self, text: str) -> Item:
        return self._put(Item(self.new_key("said"), 0, "said", text=text))

    def card(self, key: str, spec: CardSpec, *, modal: bool = False) -> Item:
        card = render(spec, Target.ADAPTIVE)
        slack = _slack_view(spec, modal=modal)
        return self._put(Item(key, 0, "card", template=spec.template, card=card, slack=slack))

    def close_forms(self) -> None:
        """Close every intake form still open: a new start supersedes them."""
        for item in list(self.items.values()):
            if item.template == "intake" and not item.closed:
                self._put(
                    Item(
                        item.key,
                        0,
                        "card",
                        template=item.template,
                        card=item.card,
                        slack=item.slack,
                        closed=True,
                    )
                )

    def is_closed(self, key: str | None) -> bool:
        item = self.items.get(key) if key else None
        return item is not None and item.closed

    def _put(self, item: Item) -> Item:
        self.rev += 1
        item.rev = self.rev
        self.items[item.key] = item  # an edit keeps its place in the timeline
        while len(self.items) > MAX_ITEMS:
            self.items.popitem(last=False)
        event = _event("item", item.wire(), item.rev)
        self.history.append((item.rev, event))
        for reader in list(self.readers):
            reader.push(event)
        return item

    def snapshot(self) -> dict[str, Any]:
        return {"rev": self.rev, "items": [i.wire() for i in self.items.values()]}

    def since(self, rev: int) -> list[bytes] | None:
        """Events after `rev`, or None when they are no longer all known (send a snapshot)."""
        if rev == self.rev:
            return []
        if rev > self.rev or not self.history or self.history[0][0] > rev + 1:
            return None
        return [event for r, event in self.history if r > rev]


def _slack_view(spec: CardSpec, *, modal: bool = False) -> dict[str, Any] | None:
    """What Slack shows for `spec`: a Block Kit message, or for `modal` (a form the bot opens,
    e.g. "Details for the helpdesk") the modal view when Slack has one. None for the intake form
    (a modal with inputs: the console keeps its Teams form) and the home tab."""
    if spec.template in ("intake", "home"):
        return None
    targets = (Target.SLACK_MODAL, Target.SLACK_MESSAGE) if modal else (Target.SLACK_MESSAGE,)
    for target in targets:
        try:
            return render(spec, target)
        except CardError:
            continue
    log.warning("console: no Slack preview for template %r", spec.template)
    return None


def command_address(args: str) -> tuple[str | None, str | None]:
    """(what to put in the form's address field, what is wrong with it) for command arguments.

    The form's own check decides (`dialogs.intake.check_answers`), so the composer and the form
    never disagree. Text that is not a valid address is kept exactly as typed, so the person sees
    what they wrote next to what is wrong with it. "check ana@contoso.com" and
    "<ana@contoso.com>" find the one address inside.
    """
    args = args.strip()
    if not args:
        return None, None
    candidates = [args]
    words = [w for w in args.split() if "@" in w]
    if len(words) == 1:
        candidates.append(words[0])
    for candidate in list(candidates):
        inner = candidate.removeprefix("<").removesuffix(">")
        inner = inner[7:] if inner.lower().startswith("mailto:") else inner
        if inner != candidate:
            candidates.append(inner)
    for candidate in candidates:
        if _address_problem(candidate) is None:
            return parse_address(candidate).display, None  # as the form will show it
    return args, _address_problem(args)


def _address_problem(text: str) -> str | None:
    result = check_answers({ADDRESS: text})
    return result.get(ADDRESS) if isinstance(result, dict) else None


def _event(name: str, data: Any, rev: int) -> bytes:
    return f"id: {rev}\nevent: {name}\ndata: {dumps(data)}\n\n".encode()


@dataclass
class _FlowState:
    """Where one flow's replies go: the pressed card takes the first new message."""

    replace: str | None = None
    last: str | None = None


# --- the adapter --------------------------------------------------------------------------------


class ConsoleBot:
    """Routes of the console, and the translation both ways."""

    def __init__(self, runtime: Runtime, *, samples: Sequence[tuple[str, str]] = ()) -> None:
        self.runtime = runtime
        self.samples = [{"address": a, "title": t} for a, t in samples]
        self.sessions: OrderedDict[str, Session] = OrderedDict()
        self.closing = False
        self._page = (STATIC / "console.html").read_bytes()
        self._assets = {name: (STATIC / name).read_bytes() for name in ASSETS}
        # Text typed into the composer that is not a command may be meant for someone else
        # (the helpdesk loop: the answer to the helpdesk's question). The hook returns the
        # timeline items it made, or None to treat the text as usual.
        self.on_text: Callable[[Session, str], Awaitable[list[Item] | None]] | None = None

    def register(self, app: web.Application) -> None:
        add = app.router.add_route
        add("GET", "/", self.root)
        add("GET", "/console", self.page)
        add("GET", "/console/", self.page)
        for name in ASSETS:
            add("GET", f"/console/{name}", self.asset)
        add("GET", "/console/api/info", self.info)
        add("GET", "/console/api/state", self.state)
        add("GET", "/console/api/home", self.home)
        add("GET", "/console/api/events", self.events)
        add("POST", "/console/api/start", self.start)
        add("POST", "/console/api/execute", self.execute)
        app.on_shutdown.append(self._shutdown)

    # --- who is this ----------------------------------------------------------------------------

    def _session(self, token: str) -> Session:
        digest = hashlib.sha256(token.encode()).hexdigest()[:20]
        session = self.sessions.get(digest)
        if session is None:
            person = Person(id=f"console-{digest}", name="Console user", workspace="console")
            session = Session(person=person, conversation=f"console:{digest}")
            self.sessions[digest] = session
            while len(self.sessions) > MAX_SESSIONS:
                _, old = self.sessions.popitem(last=False)
                for reader in old.readers:
                    reader.close()
        self.sessions.move_to_end(digest)
        return session

    def session_of(self, person_id: str) -> Session | None:
        """The session of a console person (their id is "console-<digest>"), if remembered."""
        return self.sessions.get(person_id.removeprefix("console-"))

    def tell(self, session: Session, text: str) -> Item:
        """A message from the bot in the person's timeline (e.g. from the helpdesk)."""
        return self._notice(session, text)

    def broadcast(self, name: str, data: Any) -> None:
        """An event for every open console page (no id: it is not part of any timeline)."""
        event = f"event: {name}\ndata: {dumps(data)}\n\n".encode()
        for session in self.sessions.values():
            for reader in list(session.readers):
                reader.push(event)

    def caller(self, request: web.Request) -> Session | web.Response:
        return self._caller(request)

    def writer(self, request: web.Request) -> Session | web.Response:
        return self._writer(request)

    def _caller(self, request: web.Request) -> Session | web.Response:
        token = request.cookies.get(COOKIE, "")
        if not _TOKEN.fullmatch(token):
            return _error(401, "no_session", "Open /console first: it starts your session.")
        return self._session(token)

    def _writer(self, request: web.Request) -> Session | web.Response:
        """The caller of a POST, after the checks that keep other web pages out."""
        if request.headers.get(HEADER) != "1":
            return _error(403, "forbidden", f"Console requests carry the {HEADER} header.")
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            return _error(403, "forbidden", "Requests from other sites are refused.")
        if request.content_type != "application/json":
            return _error(415, "unsupported_media_type", "Send JSON.")
        if self.closing or self.runtime.closing:
            return _error(503, "shutting_down", "mailfix is shutting down.")
        return self._caller(request)

    # --- the page -------------------------------------------------------------------------------

    async def root(self, request: web.Request) -> web.Response:
        """The demo's address alone leads to the console."""
        raise web.HTTPFound("/console")

    async def page(self, request: web.Request) -> web.Response:
        response = web.Response(
            body=self._page,
            content_type="text/html",
            charset="utf-8",
            headers={"Content-Security-Policy": PAGE_CSP},
        )
        if not _TOKEN.fullmatch(request.cookies.get(COOKIE, "")):
            response.set_cookie(
                COOKIE,
                secrets.token_urlsafe(24),
                path="/console",
                httponly=True,
                samesite="Strict",
                max_age=30 * 24 * 3600,
            )
        return response

    async def asset(self, request: web.Request) -> web.Response:
        name = request.path.removeprefix("/console/")
        return web.Response(
            body=self._assets[name],
            content_type=ASSETS[name],
            charset="utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    async def info(self, request: web.Request) -> web.Response:
        session = self._caller(request)
        if isinstance(session, web.Response):
            return session
        person = {"id": session.person.id, "name": session.person.name}
        return _json(
            {"platform": Platform.CONSOLE.value, "person": person, "samples": self.samples}
        )

    async def state(self, request: web.Request) -> web.Response:
        session = self._caller(request)
        if isinstance(session, web.Response):
            return session
        return _json(session.snapshot())

    async def home(self, request: web.Request) -> web.Response:
        session = self._caller(request)
        if isinstance(session, web.Response):
            return session
        spec = await self.runtime.conversation.home(session.person, Platform.CONSOLE)
        return _json({"card": render(spec, Target.ADAPTIVE)})

    # --- in: start, execute ---------------------------------------------------------------------

    async def start(self, request: web.Request) -> web.Response:
        session = self._writer(request)
        if isinstance(session, web.Response):
            return session
        body = await _body(request)
        text = body.get("text", "") if isinstance(body, dict) else None
        if not isinstance(text, str) or len(text) > MAX_TEXT:
            return _error(400, "bad_request", f'Send {{"text": "…"}}, at most {MAX_TEXT} chars.')
        if self.on_text is not None and text.strip() and not _COMMAND.match(text):
            handled = await self.on_text(session, text.strip())
            if handled is not None:
                return _items(handled)
        # Like the form: what was typed, prefilled, and what is wrong with it if anything.
        address, _ = command_address(command_text(text))
        values = {ADDRESS: address} if address is not None else {}
        turn = self._turn(session, TurnKind.START, text=address or "", values=values)
        session.close_forms()  # a new start supersedes every form left unfinished
        items = [session.said(text.strip())] if text.strip() else []
        items += await self._through(session, Arrival.of(turn), _FlowState(), "console.start")
        return _items(items)

    async def execute(self, request: web.Request) -> web.Response:
        session = self._writer(request)
        if isinstance(session, web.Response):
            return session
        body = await _body(request)
        if not isinstance(body, dict):
            return _error(400, "bad_request", "Send a JSON object.")
        data = body.get("data") or {}
        inputs = body.get("inputs") or {}
        message = body.get("message")
        if not isinstance(data, dict) or not isinstance(inputs, dict):
            return _error(400, "bad_request", '"data" and "inputs" must be objects.')
        if message is not None and (not isinstance(message, str) or len(message) > 100):
            return _error(400, "bad_request", '"message" must be the key of a card.')
        verb = body.get("verb") or data.get("verb")  # Action.Submit keeps it inside data
        if verb == INTAKE:
            return await self._submit(session, inputs, message)
        try:
            action = Action(str(verb))
        except ValueError:
            return _error(400, "unknown_verb", "This button is not one mailfix knows.")
        return await self._act(session, action, data, message)

    async def _submit(
        self, session: Session, inputs: dict[str, Any], message: str | None
    ) -> web.Response:
        if message is not None and message not in session.items:
            message = None
        if session.is_closed(message):
            return _items(
                [
                    self._notice(
                        session,
                        "That form was closed when you started a newer check. "
                        "Use the newest form, or type mailfix to start again.",
                    )
                ]
            )
        turn = self._turn(session, TurnKind.SUBMIT, values=inputs)
        conversation = self.runtime.conversation
        checked = conversation.check_form(turn)
        if isinstance(checked, FormErrors):  # like Teams: the form again, with the errors
            again = conversation.form_again(turn, checked)
            return _items([session.card(message or session.new_key("form"), again.card)])
        arrival = Arrival.of(turn, answers=checked)
        flow = _FlowState(replace=message)
        return _items(await self._through(session, arrival, flow, "console.diagnosis"))

    async def _act(
        self, session: Session, action: Action, data: dict[str, Any], message: str | None
    ) -> web.Response:
        did = data.get("diagnosis_id")
        did = did if isinstance(did, str) and did else None
        turn = self._turn(
            session,
            TurnKind.ACTION,
            action=action,
            diagnosis_id=did,
            values={"diagnosis_id": did} if did else {},
        )
        flow = _FlowState(last=message)
        return _items(await self._through(session, Arrival.of(turn), flow, "console.act"))

    def _turn(self, session: Session, kind: TurnKind, **fields: Any) -> Turn:
        return Turn(
            platform=Platform.CONSOLE,
            kind=kind,
            person=session.person,
            conversation=session.conversation,
            id=uuid.uuid4().hex,
            **fields,
        )

    # --- out: replies -> timeline items ---------------------------------------------------------

    async def _through(
        self, session: Session, arrival: Arrival, flow: _FlowState, name: str
    ) -> list[Item]:
        """What arrived, through the turn pipeline (dedupe -> rate limit -> authorise -> route,
        `dialogs.pipeline`); its outcome as timeline items."""
        match await self.runtime.pipeline.handle(arrival):
            case Refused(words=words):
                return [self._notice(session, words)]
            case Replies(replies=replies):
                return await self._run(session, replies, flow, name)
        return []  # handled before: nothing more

    async def _run(
        self, session: Session, replies: AsyncIterator[Reply], flow: _FlowState, name: str
    ) -> list[Item]:
        """The first reply answers the request; the rest (checks, results) follows as events."""
        try:
            first = await asyncio.wait_for(anext(replies), FIRST_REPLY_TIMEOUT)
        except StopAsyncIteration:
            return []
        except Exception:
            log.exception("console flow %s failed before its first reply", name)
            await _close(replies)
            return [self._crash(session, flow)]
        items = [self.send(session, first, flow)]

        async def rest() -> None:
            try:
                async for reply in replies:
                    self.send(session, reply, flow)
            finally:
                await _close(replies)

        async def on_error(exc: BaseException) -> None:
            self._crash(session, flow)

        try:
            self.runtime.supervisor.spawn(rest(), name=name, on_error=on_error)
        except RuntimeError:  # shutting down: what was answered stands, the rest is dropped
            await _close(replies)
        return [i for i in items if i is not None]

    def send(self, session: Session, reply: Reply, flow: _FlowState) -> Item | None:
        """One reply, one timeline change."""
        match reply:
            case ShowForm(card=card):
                item = session.card(session.new_key("form"), card, modal=True)
            case Post(card=card, key=key):
                if flow.replace is not None:  # the pressed form becomes this message
                    session.aliases[key] = flow.replace
                    flow.replace = None
                item = session.card(session.resolve(key), card)
            case Update(card=card, key=key):
                item = session.card(session.resolve(key), card)
            case Notice(text=text):
                item = self._notice(session, text)
            case FormErrors(errors=errors):
                item = self._notice(session, "Please check: " + "; ".join(errors.values()))
            case _:
                log.warning("console: unknown reply %r", reply)
                return None
        if item.template != "notice":
            flow.last = item.key
        return item

    def _notice(self, session: Session, text: str) -> Item:
        spec = CardSpec(template="notice", data=NoticeData(text=text).model_dump(mode="json"))
        return session.card(session.new_key("notice"), spec)

    def _crash(self, session: Session, flow: _FlowState) -> Item:
        """A crashed flow ends in an error card (on the card it was editing), never silence."""
        spec = CardSpec(
            template="error",
            data=ErrorData(
                title="Something went wrong",
                message="mailfix hit an unexpected problem and stopped. Nothing was changed.",
                try_next=["Type mailfix and an address to try again in a minute."],
            ).model_dump(mode="json"),
        )
        key = flow.last or flow.replace or session.new_key("error")
        return session.card(key, spec)

    # --- the event stream -----------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.StreamResponse:
        session = self._caller(request)
        if isinstance(session, web.Response):
            return session
        if self.closing:
            return _error(503, "shutting_down", "mailfix is shutting down.")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream; charset=utf-8", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        reader = _Reader()
        session.readers.add(reader)  # before the snapshot: nothing can fall in between
        try:
            await response.write(b"retry: 2000\n\n")
            missed = _last_event_id(request)
            replay = session.since(missed) if missed is not None else None
            if replay is None:
                await response.write(_event("snapshot", session.snapshot(), session.rev))
            else:
                for event in replay:
                    await response.write(event)
            while True:
                try:
                    news = await asyncio.wait_for(reader.queue.get(), KEEPALIVE)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                if news is None:
                    break
                await response.write(news)
        except ConnectionResetError:
            pass  # the page went away: nothing to tell anyone
        finally:
            session.readers.discard(reader)
        return response

    async def _shutdown(self, app: web.Application) -> None:
        """End every event stream, or the server would wait for them to time out."""
        self.closing = True
        for session in self.sessions.values():
            for reader in list(session.readers):
                reader.close()


def _items(items: list[Item]) -> web.Response:
    return _json({"items": [i.wire() for i in items]})


async def _body(request: web.Request) -> Any:
    try:
        return await request.json()
    except (ValueError, UnicodeDecodeError):
        return None


async def _close(replies: AsyncIterator[Reply]) -> None:
    aclose = getattr(replies, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


def _last_event_id(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID", "")
    return int(raw) if raw.isdigit() and len(raw) < 12 else None


CONSOLE = web.AppKey("mailfix.console", ConsoleBot)


def attach_console(app: web.Application, *, samples: Sequence[tuple[str, str]] = ()) -> ConsoleBot:
    """Add the console to a server built by `bot.server.create_app` (before it starts)."""
    console = ConsoleBot(app[RUNTIME], samples=samples)
    console.register(app)
    app[CONSOLE] = console
    return console
