"""Teams side: a thin translator between Bot Framework activities and our Turn / Reply models.

In (POST /api/messages, `CloudAdapter`):
- a message "mailfix [address]" in a personal chat, or "@mailfix …" in a channel or group chat
  -> `Turn(START)` -> the intake card, sent as a new message;
- the intake card's `Action.Execute` (invoke `adaptiveCard/action`, verb `mailfix.intake`) or its
  `Action.Submit` fallback (a message activity whose `value` holds the data) -> `Turn(SUBMIT)`;
- a results card button (verbs `mailfix.run_again|fixed|escalate`, both paths) -> `Turn(ACTION)`.
Each goes through the turn pipeline (`runtime.pipeline`, dialogs/pipeline.py: dedupe -> rate
limit -> authorise -> route) as an `Arrival` whose delivery id is the activity's; this module
only translates its `Outcome` (the flow's replies, a refusal in words, a case press, a
duplicate) into Teams answers and Bot Connector calls.
Out: `Reply` -> Bot Connector calls (`send`, one function): a new message (POST) or the same
message edited in place (PUT, `update_activity`).

The helpdesk loop (dialogs/helpdesk.py decides everything; this only translates):
- the app added to a team (`conversationUpdate`, the bot in membersAdded, channelData.team) ->
  the team's reference and service URL in the database (`teams:team:{id}`, `teams:service_url`),
  so any replica can post proactively; removal is recorded too;
- `helpdesk_channel()` -> `TeamsHelpdesk`, the Teams `HelpdeskChannel`: a case card starts a new
  thread in MAILFIX_HELPDESK_TEAMS_CHANNEL (§B5), its ref stored by the Helpdesk so any replica
  edits it in place; the person is told in their personal chat, a question with a box to answer;
  a refusal (403 not installed, 404 wrong channel id, 401 credentials) becomes words;
- case card buttons (verbs `dialogs.cases.CaseAction`, both paths) -> the pipeline's
  `CasePress`, the click being the activity (recorded once), with the token-verified
  `aadObjectId` as the actor, never the card's data; `runtime.helpdesk` decides; answered with
  the card as that user sees it; Teams' automatic refresh (refresh.userIds: the approvers) is a
  read (no press recorded) and gets the approver's view, everyone else the card without
  Approve / Reject;
- `doctor_post` -> `mailfix doctor`'s Teams half: a test card, or what is wrong in words.

How a card action is answered (reference/chat-platforms.md §B4-§B6):
- a message is answered 201 and the intake form's `Action.Execute` from what was submitted
  alone, both before the SDK's Activity is read, any SDK turn or any database call
  (`_intake_invoke`): the form again with its errors
  (`check_form` is pure), or a short "checking …" card built from the answers, which
  replaces the card the person pressed (small on purpose: rendering and writing the full
  progress card was half of the answer's CPU). Its turn runs after the answer is written (the
  pipeline: dedupe, the rate limit, then the checks) and edits that same message
  (`update_activity` on the activity's `replyToId`): first to the progress card, then the
  results; a refusal (over the limit) replaces it. A redelivery to this process is answered
  "already on it" from memory; on another replica, the pipeline's dedupe lets one delivery
  act, after the answers;
- every other `Action.Execute` (the results card's and the case card's buttons, Universal
  Actions' `refresh`) is answered from stored state, so it is decided in the request: whose
  check it is, whether the press won, the approver's view of a case card; and a refusal is an
  invoke message only the presser sees. The flow's first reply (at most a store write before
  it) becomes the invoke response (the pressed card replaced in place); a case press waits at
  most `case_action_timeout`, then answers "working on it" and edits the card when done;
- for `Action.Submit` (a message, answered 201 before its turn) the same card is edited with
  `update_activity`;
- what follows an answer (the checks, then results) runs on the runtime's task supervisor,
  after the HTTP response has been written: Teams waits at most 15 s (§B6), and an edit must
  not overtake the invoke response it follows;
- a crash edits the card to the error card, never silence. Teams retries deliveries (§B6): an
  activity id seen before is acted on once (the pipeline's dedupe, any replica).

Two SDK bugs are worked around here:
- `ActivityHandler` serialises invoke bodies to dicts and `CloudAdapter.process` serialises them
  again, which fails (HTTP 500; headline finding 1): `on_invoke_activity` returns msrest models;
- a malformed `Authorization` header raises `jwt.DecodeError` -> HTTP 500 (§B2): it is refused
  with 401 before the adapter sees it, and token errors inside the SDK are mapped to 401 as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

from aiohttp import web
from botbuilder.core import CardFactory, InvokeResponse, MessageFactory, TurnContext
from botbuilder.core.serializer_helper import serializer_helper
from botbuilder.core.teams import TeamsActivityHandler
from botbuilder.integration.aiohttp import (
    CloudAdapter,
    ConfigurationBotFrameworkAuthentication,
)
from botbuilder.schema import (
    Activity,
    ActivityTypes,
    AdaptiveCardInvokeResponse,
    ConversationReference,
)
from botframework.connector.auth import (
    AuthenticateRequestResult,
)
from botframework.connector.teams import TeamsConnectorClient
from msrest.serialization import Deserializer

from bot.limits import BadBody, parse_json_object
from bot.runtime import EventLedger, Handler, Runtime
from bot.teams.auth import (
    EMULATOR_CHANNEL,
    AdapterConfig,
    KeysUnavailable,
    MappedAuthentication,
    TokenVerifier,
    Verified,
    token_off_the_loop,
    well_formed_authorization,
)
from cards import Target, render
from cards.data import ErrorData, NoticeData
from dialogs.approval import Actor
from dialogs.case_buttons import card_for, case_number
from dialogs.cases import ANSWER_INPUT, ANSWER_VERB, MAX_ANSWER, CaseAction
from dialogs.helpdesk import Helpdesk
from dialogs.intake import address_from_text
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
from dialogs.pipeline import (
    NO_HELPDESK,
    Arrival,
    CasePress,
    CasePressed,
    Duplicate,
    Outcome,
    Refused,
    Replies,
    Why,
)

if TYPE_CHECKING:
    from bot.teams.helpdesk import TeamsHelpdesk

log = logging.getLogger(__name__)

COMMAND = "mailfix"
HELP = "help"  # with COMMAND, the manifest's command menu (bot/manifests.py TEAMS_COMMANDS)
INTAKE = "mailfix.intake"
CARD_ACTION = "adaptiveCard/action"
ADAPTIVE = "application/vnd.microsoft.card.adaptive"
MESSAGE = "application/vnd.microsoft.activity.message"
ERROR = "application/vnd.microsoft.error"

FIRST_REPLY_TIMEOUT = 8.0  # seconds; the invoke answer must beat Teams' 15 s (§B6)
EMAIL_LOOKUP_TIMEOUT = 3.0
EMAIL_CACHE = 10_000

HELP_TEXT = (
    "I find out why Outlook, a phone or another mail app cannot reach an Exchange Online "
    "mailbox. Type mailfix (or mailfix name@contoso.com) here, or @mention me with mailfix in "
    "a channel, and fill in the short form. I never ask for a password."
)
UNKNOWN_BUTTON = "I don't know that button. Please use the buttons on the card."
STILL_WORKING = "Working on it: this card updates when it is done."

# The helpdesk loop (dialogs/helpdesk.py): the person's answer to a helpdesk question comes
# back from a small card in their chat (the "answer" card), verb ANSWER, text in ANSWER_INPUT.
ANSWER = ANSWER_VERB
# conversation_refs keys: what any replica needs to post proactively (§B5).
TEAM_KEY = "teams:team:{}"  # a team the app is installed in: its reference and details
SERVICE_URL_KEY = "teams:service_url"  # the latest installation's service URL and tenant
HELPDESK_TEAM_KEY = "teams:helpdesk_team"  # the installed team that holds the helpdesk channel
CHANNELS_TIMEOUT = 10.0
PERSON_KEY = "teams:person:{}"  # a person's personal chat with the bot (by Entra object id)
WAITING_KEY = "teams:waiting:{}"  # the case whose question a person (Entra id) may answer
USER_KEY = "teams:user:{}"  # an Entra object id's Teams user id (MRI, "29:…")
MEMBER_LOOKUP_TIMEOUT = 3.0
ALREADY = "Already on it: this card updates when the checks finish."

# msrest's deserialiser for the schema's models (what `Activity().deserialize` builds per call).
_ACTIVITIES = Deserializer(Activity._infer_class_models())  # type: ignore[no-untyped-call]
_MENTION = re.compile(r"<at\b[^>]*>.*?</at>", re.IGNORECASE | re.DOTALL)
# Work to start once the HTTP response is written, collected per request (see `TeamsBot.handle`):
# (the work, whom to show the error card if it fails, its name).
Queued: TypeAlias = tuple[Coroutine[Any, Any, None], "Recipient | None", str]
_AFTER: ContextVar[list[Queued] | None] = ContextVar("mailfix_teams_after", default=None)


# --- invoke bodies (msrest models, never dicts: headline finding 1) --------------------------


class _TextInvokeResponse(AdaptiveCardInvokeResponse):  # type: ignore[misc]
    """The same wire shape with a string `value` (the SDK's model types `value` as a dict)."""

    _attribute_map: ClassVar[dict[str, dict[str, str]]] = {
        **AdaptiveCardInvokeResponse._attribute_map,
        "value": {"key": "value", "type": "object"},
    }


def card_response(card: dict[str, Any]) -> InvokeResponse:
    body = AdaptiveCardInvokeResponse(status_code=200, type=ADAPTIVE, value=card)
    return InvokeResponse(status=int(HTTPStatus.OK), body=body)


def text_response(text: str) -> InvokeResponse:
    """A message Teams shows on the card; the card itself stays as it is."""
    body = _TextInvokeResponse(status_code=200, type=MESSAGE, value=text)
    return InvokeResponse(status=int(HTTPStatus.OK), body=body)


def _invoke_answer(kind: str, value: Any) -> web.Response:
    """An invoke response written by us, not through the SDK's turn (the same wire shape)."""
    return web.json_response({"statusCode": 200, "type": kind, "value": value})


def error_response(status: HTTPStatus, code: str, message: str) -> InvokeResponse:
    body = AdaptiveCardInvokeResponse(
        status_code=int(status), type=ERROR, value={"code": code, "message": message}
    )
    return InvokeResponse(status=int(status), body=body)


# --- translation in --------------------------------------------------------------------------


@dataclass
class Recipient:
    """One exchange with a person: where to write, and which messages carry which card."""

    reference: ConversationReference
    card_id: str | None = None  # the message whose card was used (edited in place)
    adopt: bool = False  # the next form or first post replaces that card (intake submissions)
    posted: dict[str, str | None] = field(default_factory=dict)  # Reply key -> activity id
    shown: CardSpec | None = None  # what `card_id` shows now (an edit to the same is skipped)


def person_of(activity: Activity, email: str | None = None) -> Person:
    user = activity.from_property
    return _person(
        user.id,
        aad=getattr(user, "aad_object_id", None),
        name=user.name,
        tenant=getattr(activity.conversation, "tenant_id", None),
        channel_data=activity.channel_data,
        email=email,
    )


def person_in(body: Mapping[str, Any], email: str | None = None) -> Person:
    """`person_of` on the activity's JSON (`handle` checked its shape), before it is read."""
    user = body["from"]
    return _person(
        user["id"],
        aad=user.get("aadObjectId"),
        name=user.get("name"),
        tenant=body["conversation"].get("tenantId"),
        channel_data=body.get("channelData"),
        email=email,
    )


def _person(
    user_id: str, *, aad: Any, name: Any, tenant: Any, channel_data: Any, email: str | None
) -> Person:
    if not tenant and isinstance(channel_data, dict):
        found = channel_data.get("tenant")
        tenant = found.get("id") if isinstance(found, dict) else None
    return Person(
        # The Entra object id is the same in every chat and is what approvals check (§B4).
        # `handle` refuses activities without one, except the Emulator's in `mailfix demo`
        # (its "from.id" is all it has).
        id=aad if isinstance(aad, str) and aad else f"emulator:{user_id}",
        name=name if isinstance(name, str) and name else None,
        email=email,
        workspace=tenant if isinstance(tenant, str) and tenant else None,
    )


def command_of(activity: Activity) -> tuple[str, str] | None:
    """("start", arguments) / ("help", "") for a typed message, None when it is not for us.

    The bot's own @mention is cut out by the exact text of its mention entity. The SDK's
    `TurnContext.remove_recipient_mention` is not used: it regex-replaces *every* occurrence of
    the bot's name, so "@mailfix mailfix-lab@contoso.com" would lose part of the address.
    """
    text = activity.text or ""
    recipient = getattr(activity.recipient, "id", None)
    for entity in activity.entities or []:
        props = getattr(entity, "additional_properties", None)
        if str(getattr(entity, "type", "")).lower() != "mention" or not isinstance(props, dict):
            continue
        mentioned, said = props.get("mentioned"), props.get("text")
        if isinstance(mentioned, dict) and mentioned.get("id") == recipient and said:
            text = text.replace(str(said), " ", 1)
    text = _MENTION.sub(" ", text)  # other people's mentions are not arguments
    words = html.unescape(text).replace("\xa0", " ").split()
    first = words[0].lower().lstrip("/@") if words else ""
    if first == HELP and len(words) == 1:
        return HELP, ""
    if first == COMMAND:
        return "start", " ".join(words[1:])
    personal = getattr(activity.conversation, "conversation_type", None) == "personal"
    if not personal:
        # Channels and group chats deliver only messages that @mention the bot: any is for us.
        return "start", " ".join(words)
    if address_from_text(" ".join(words)):
        return "start", " ".join(words)
    return None


# --- the bot ---------------------------------------------------------------------------------


class _Handler(TeamsActivityHandler):  # type: ignore[misc]
    """Routes the SDK's callbacks to `TeamsBot`; everything else keeps the SDK's defaults."""

    def __init__(self, bot: TeamsBot) -> None:
        super().__init__()
        self.bot = bot

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        await self.bot.on_message(turn_context)

    async def on_conversation_update_activity(self, turn_context: TurnContext) -> None:
        # Not the SDK's: for every member added other than the bot it fetches the member (a
        # network call per event) and we need none of it.
        await self.bot.on_conversation_update(turn_context)

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse:
        # Not `on_adaptive_card_invoke`: its answer goes through `_create_invoke_response`,
        # which serialises it once too often (headline finding 1).
        if turn_context.activity.name == CARD_ACTION:
            return await self.bot.on_card_action(turn_context)
        return await super().on_invoke_activity(turn_context)


class TeamsBot:
    """The adapter, the activity handler, and the translation both ways."""

    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.app_id = settings.teams_app_id or ""
        password = settings.teams_app_password
        config = AdapterConfig(
            APP_ID=self.app_id,
            APP_PASSWORD=password.get_secret_value() if password is not None else "",
            APP_TYPE=settings.teams_app_type.value,
            APP_TENANTID=settings.teams_app_tenant_id or "",
        )
        if settings.teams_openid_metadata_url:
            config = config.with_openid_metadata(settings.teams_openid_metadata_url)
        if not self.app_id:
            log.warning(
                "MAILFIX_TEAMS_APP_ID is empty: Teams requests are NOT authenticated and the "
                "bot talks to any serviceUrl a request names. For local development only."
            )
        try:
            auth = ConfigurationBotFrameworkAuthentication(config)
        except Exception as exc:  # the SDK raises bare Exceptions for missing settings
            raise ValueError(f"Teams settings: {exc}") from exc
        self.verifier = TokenVerifier(
            self.app_id,
            channel_metadata_url=settings.teams_openid_metadata_url,
            app_type=settings.teams_app_type,
            tenant_id=settings.teams_app_tenant_id,
            emulator=settings.teams_emulator,
            timeout=settings.teams_keys_timeout,
        )
        self.emulator = settings.teams_emulator
        self.adapter = CloudAdapter(MappedAuthentication(auth, self.verifier))
        self.handler = _Handler(self)
        self._emails: dict[str, str | None] = {}
        self._channel: TeamsHelpdesk | None = None
        self._service_url_saved: tuple[str, str | None] | None = None
        self._mris: dict[str, str] = {}  # Entra object id -> Teams user id, saved already
        # Intake invokes this process answered (a redelivery is told so without the database;
        # the ledger in `runtime.events` decides across replicas, after the answer).
        self._answered = EventLedger(None)
        self.case_action_timeout = FIRST_REPLY_TIMEOUT  # seconds a case button's answer waits

    # --- the helpdesk loop -----------------------------------------------------------------------

    @property
    def helpdesk(self) -> Helpdesk | None:
        """The server's helpdesk loop (`runtime.helpdesk`: what the turn pipeline hands case
        clicks to), once the server wired one."""
        return self.runtime.helpdesk

    @helpdesk.setter
    def helpdesk(self, value: Helpdesk | None) -> None:
        self.runtime.helpdesk = value

    def helpdesk_channel(self) -> TeamsHelpdesk:
        """The Teams half of `dialogs.helpdesk.HelpdeskChannel` (one per bot)."""
        if self._channel is None:
            from bot.teams.helpdesk import TeamsHelpdesk  # noqa: PLC0415 - it builds on this module

            self._channel = TeamsHelpdesk(self, self.runtime.settings.helpdesk_teams_channel)
        return self._channel

    # --- HTTP ----------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """`POST /api/messages`: the token first, then the body, then botbuilder.

        With an app id, nothing from the body is parsed before the token's signature, issuer,
        audience and expiry are checked; then the activity must match the token (channel,
        service URL, endorsements) and name its sender by Entra object id.
        """
        if self.runtime.closing:
            return _problem(503, "shutting_down", "The server is shutting down; retry shortly.")
        if request.content_type != "application/json":
            return _problem(415, "unsupported_media_type", "Send the activity as JSON.")
        header = request.headers.get("Authorization")
        if not well_formed_authorization(header):
            return _unauthorized("The Authorization header is not a bearer token.")
        verified: Verified | None = None
        if self.app_id:
            if header is None:
                return _unauthorized("A bearer token is required.")
            try:
                verified = await self.verifier.verify(header)
            except PermissionError as exc:
                log.warning("Teams request refused: %s", exc)
                return _unauthorized("The token is not valid for this bot.")
            except KeysUnavailable as exc:
                return _problem(
                    503,
                    "unavailable",
                    "The keys to check this token cannot be fetched right now; retry shortly.",
                    headers={"Retry-After": str(max(1, math.ceil(exc.retry_after)))},
                )
        elif header is not None:
            # No app id: nothing to check a token against, so none is taken (the Emulator
            # sends none when it has no app id either).
            log.warning("Teams request refused: a token sent to a bot without an app id")
            return _unauthorized("This bot has no app id; send no token.")
        try:
            body = parse_json_object(await request.read())
        except BadBody as exc:
            log.warning("Teams request refused: %s", exc)
            return _problem(exc.status, exc.code, str(exc))
        problem = _activity_problem(body) or self._sender_problem(body)
        if problem is not None:
            log.warning("Teams request refused: %s", problem)
            return _problem(400, "bad_request", problem)
        if verified is not None:
            why = self.verifier.admits(verified, body)
            if why is not None:
                log.warning("Teams request refused: %s", why)
                return _unauthorized("The token does not cover this activity.")
        elif body.get("channelId") not in self.verifier.channels:
            log.warning("Teams request refused: channel not accepted")
            return _problem(400, "bad_request", "The activity is not from Microsoft Teams.")
        # A message needs only its 201, and the intake form's answer only the submitted values:
        # the SDK's Activity (msrest's deserialisation was ~40 % of an invoke's answer,
        # bench/ack.py) and the turn are made after the answer, off the request path.
        if body["type"] == ActivityTypes.message:
            self._spawn(self._message_turn(body, verified), None, "teams.message")
            return web.Response(status=201)
        execute = _execute(body.get("type"), body.get("name"), body.get("value"))
        if execute is not None and execute[0] == INTAKE:
            return await self._intake_invoke(request, body, execute[1])
        activity = _read_activity(body)
        if activity is None:
            problem = "The activity does not have the Bot Framework shape."
            log.warning("Teams request refused: %s", problem)
            return _problem(400, "bad_request", problem)
        try:
            auth = await self._authenticated(activity, verified)
        except PermissionError as exc:
            log.warning("Teams request refused: %s", exc)
            return _unauthorized("The token is not valid for this bot.")
        return await self._process(request, activity, auth)

    def _sender_problem(self, body: Mapping[str, Any]) -> str | None:
        """Identity is the Entra object id (`aadObjectId`) alone; only the Emulator has none."""
        if body.get("type") not in (ActivityTypes.message, ActivityTypes.invoke):
            return None
        sender = body.get("from") or {}
        aad = sender.get("aadObjectId")
        if isinstance(aad, str) and aad:
            return None
        if self.emulator and body.get("channelId") == EMULATOR_CHANNEL:
            return None
        return "The activity does not name its sender's Entra object id."

    async def _authenticated(
        self, activity: Activity, verified: Verified | None
    ) -> AuthenticateRequestResult:
        if verified is None:  # no app id: the SDK's anonymous claims (no network)
            result: AuthenticateRequestResult = (
                await self.adapter.bot_framework_authentication.authenticate_request(activity, "")
            )
            return result
        auth = self.adapter.bot_framework_authentication
        assert isinstance(auth, MappedAuthentication)
        return auth.result_for(verified)

    async def _process(
        self, request: web.Request, activity: Activity, auth: AuthenticateRequestResult
    ) -> web.StreamResponse:
        """What `CloudAdapter.process` does, on the activity we already read and checked."""
        try:
            invoke, after = await self._turn_of(activity, auth)
        except PermissionError as exc:
            log.warning("Teams request refused: %s", exc)
            return _unauthorized("The token is not valid for this bot.")
        response: web.StreamResponse
        if invoke:
            body = serializer_helper(invoke.body)
            response = web.json_response(data=body, status=invoke.status)
        else:
            response = web.Response(status=201)
        if after:
            await self._answer_first(request, response, after)
        return response

    async def _turn_of(
        self, activity: Activity, auth: AuthenticateRequestResult
    ) -> tuple[InvokeResponse | None, list[Queued]]:
        """The SDK's turn, and the work it queued to start after the answer (`_after`); if the
        turn fails, that work is dropped (closed, never started)."""
        after: list[Queued] = []
        token = _AFTER.set(after)
        try:
            invoke = await self.adapter.process_activity(auth, activity, self.handler.on_turn)
        except BaseException:
            for work, _, _ in after:
                work.close()
            raise
        finally:
            _AFTER.reset(token)
        return invoke, after

    async def _answer_first(
        self,
        request: web.Request,
        response: web.StreamResponse,
        after: list[Queued],
    ) -> None:
        """Send the answer, then start the work: an edit must never reach Teams before the
        invoke response whose card it edits."""
        try:
            await response.prepare(request)
            await response.write_eof()
        finally:
            for work, target, name in after:
                self._spawn(work, target, name)

    async def _message_turn(self, body: dict[str, Any], verified: Verified | None) -> None:
        """A message's turn, after its 201; the work it queues starts when the turn is done."""
        activity = _read_after_answer(body)
        if activity is None:
            return
        try:
            auth = await self._authenticated(activity, verified)
        except PermissionError as exc:
            log.warning("Teams message dropped: %s", exc)
            return
        _, after = await self._turn_of(activity, auth)
        for work, target, name in after:
            self._spawn(work, target, name)

    # --- activities ----------------------------------------------------------------------------

    async def on_message(self, ctx: TurnContext) -> None:
        """A message (after its 201): a typed command, or a card's Action.Submit fallback."""
        activity = ctx.activity
        self._remember(activity)
        target = Recipient(reference=TurnContext.get_conversation_reference(activity))
        if isinstance(activity.value, dict):  # an Action.Submit fallback (§B4)
            data = dict(activity.value)
            verb = data.pop("verb", None)
            await self._submitted(activity, target, verb, data)
            return
        command = command_of(activity)
        if command is not None and command[0] != HELP:
            turn = self._turn(activity, TurnKind.START, text=command[1])
            enrich = self._prefill(ctx, command[1])
            arrival = Arrival.of(turn, delivery=_delivery(activity), enrich=enrich)
            self._send_outcome(target, await self.runtime.pipeline.handle(arrival), "teams.start")
            return
        if not await self.runtime.pipeline.fresh(Platform.TEAMS, _delivery(activity)):
            return
        answered = await self._typed_answer(activity) if command is None else None
        words = answered if answered is not None else HELP_TEXT
        self._after(self._stream(target, Notice(text=words), None), target, "teams.help")

    async def _submitted(
        self, activity: Activity, target: Recipient, verb: Any, data: dict[str, Any]
    ) -> None:
        """A card's Action.Submit: its outcome as messages and edits of that card."""
        pipeline = self.runtime.pipeline
        action = _case_action(verb)
        if action is not None and action is not CaseAction.REFRESH:
            arrival = self._click(activity, action, data)
            self._send_outcome(target, await pipeline.handle(arrival), "teams.case")
            return
        turn = self._button_turn(activity, verb, data)
        if turn is not None:
            target.card_id = activity.reply_to_id or None  # the card used: edited in place
            target.adopt = turn.kind is TurnKind.SUBMIT  # the form becomes the progress card
            arrival = Arrival.of(turn, delivery=_delivery(activity))
            self._send_outcome(target, await pipeline.handle(arrival), "teams.card_submit")
            return
        if not await pipeline.fresh(Platform.TEAMS, _delivery(activity)):
            return
        if verb == ANSWER:
            words = await self._answer_words(activity, data)
        elif action is CaseAction.REFRESH:
            words = "This card is up to date."
        else:
            words = UNKNOWN_BUTTON
        self._after(self._stream(target, Notice(text=words), None), target, "teams.case")

    def _send_outcome(self, target: Recipient, outcome: Outcome, name: str) -> None:
        """What the pipeline decided, sent after the turn: the flow's replies in order, a
        refusal or a case press in words; a delivery handled before, nothing."""
        match outcome:
            case Replies(replies=replies):
                self._after(self._stream(target, None, replies), target, name)
            case Refused(words=words):
                self._after(self._stream(target, Notice(text=words), None), target, name)
            case CasePressed(pressed=pressed):
                notice = Notice(text=pressed.words or "Done.")
                self._after(self._stream(target, notice, None), target, name)

    async def on_conversation_update(self, ctx: TurnContext) -> None:
        """The app added to (or removed from) a team: remember where to post (§B5)."""
        activity = ctx.activity
        if not await self.runtime.pipeline.fresh(Platform.TEAMS, _delivery(activity)):
            return
        bot_id = getattr(activity.recipient, "id", None)
        added = any(m.id == bot_id for m in activity.members_added or [])
        removed = any(m.id == bot_id for m in activity.members_removed or [])
        team = team_of(activity)
        if team is None:
            if added:  # a personal chat or group chat: proactive messages to it
                self._remember(activity)
            return
        if removed:
            self._after(self._save_team(activity, team, installed=False), None, "teams.team")
        elif added or isinstance(activity.service_url, str):
            work = self._save_team(activity, team, installed=True, channels=True)
            self._after(work, None, "teams.team")

    async def _save_team(
        self, activity: Activity, team: dict[str, Any], *, installed: bool, channels: bool = False
    ) -> None:
        """Store the team's installation; `channels`: also read its channels (installation
        events only, not every message from a team)."""
        save = getattr(self.runtime.store, "save_conversation_ref", None)
        service_url = activity.service_url
        if save is None or not isinstance(service_url, str):
            return
        tenant = person_of(activity).workspace
        reference = TurnContext.get_conversation_reference(activity).serialize()
        record = {
            "reference": reference,
            "team_id": team["id"],
            "team_name": team.get("name") or None,
            "tenant_id": tenant,
            "service_url": service_url,
            "bot_id": getattr(activity.recipient, "id", None),
            "installed": installed,
        }
        await save(TEAM_KEY.format(team["id"]), Platform.TEAMS, record)
        load = getattr(self.runtime.store, "conversation_ref", None)
        for key in (SERVICE_URL_KEY, HELPDESK_TEAM_KEY):
            latest = await load(key) if load is not None and not installed else None
            if latest is not None and latest.get("team_id") == team["id"]:
                # The team we post with has removed the app: say so on posting.
                await save(key, Platform.TEAMS, {**latest, "installed": False})
                self._service_url_saved = None
        log.info("Teams: the app is %s team %s", "in" if installed else "no longer in", team["id"])
        if not installed:
            return
        summary = {k: v for k, v in record.items() if k != "reference"}
        await save(SERVICE_URL_KEY, Platform.TEAMS, summary)
        self._service_url_saved = (service_url, tenant)
        listed = await self._channels_of(record) if channels else None
        if listed is None:
            return
        await save(TEAM_KEY.format(team["id"]), Platform.TEAMS, {**record, "channels": listed})
        wanted = self.runtime.settings.helpdesk_teams_channel
        named = next((c for c in listed if c["id"] == wanted), None)
        if named is not None:
            # This team holds the helpdesk channel: post with it, whoever installs the app
            # elsewhere later (another team, another tenant).
            helpdesk = {**summary, "channel_name": named["name"] or "General"}
            await save(HELPDESK_TEAM_KEY, Platform.TEAMS, helpdesk)

    async def _channels_of(self, record: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The team's channels (GET /v3/teams/{id}/conversations), or None when not to be had."""
        reference = ConversationReference().deserialize(record["reference"])
        found: list[dict[str, Any]] = []

        async def logic(ctx: TurnContext) -> None:
            client = ctx.turn_state.get(self.adapter.BOT_CONNECTOR_CLIENT_KEY)
            teams = TeamsConnectorClient(client.config.credentials, record["service_url"])
            # The SDK's Teams client is synchronous (requests): off the event loop.
            async with asyncio.timeout(CHANNELS_TIMEOUT):
                listed = await asyncio.to_thread(teams.teams.get_teams_channels, record["team_id"])
            for channel in listed.conversations or []:
                if isinstance(channel.id, str) and channel.id:
                    found.append({"id": channel.id, "name": channel.name or None})

        try:
            await self._continue(Recipient(reference=reference), logic)
        except Exception as exc:  # a nicety: posting still works from the service URL
            log.info("the channels of Teams team %s: %s", record["team_id"], type(exc).__name__)
            return None
        return found

    async def on_card_action(self, ctx: TurnContext) -> InvokeResponse:
        """Any other card's Action.Execute (the intake's never gets here: `_intake_invoke`),
        answered from stored state in the request: see the module's docstring."""
        activity = ctx.activity
        execute = _execute(activity.type, activity.name, activity.value)
        if execute is None:
            return error_response(
                HTTPStatus.BAD_REQUEST, "BadRequest", "Only Action.Execute is supported."
            )
        verb, data = execute
        self._remember(activity)
        action = _case_action(verb)
        if action is not None:
            return await self._case_invoke(activity, action, data)
        if verb == ANSWER:
            helpdesk = self.helpdesk
            if helpdesk is None:
                return text_response(NO_HELPDESK)
            if not await self.runtime.pipeline.fresh(Platform.TEAMS, _delivery(activity)):
                return text_response(ALREADY)
            words, card = await self._answer_case(helpdesk, self._actor(activity), data)
            return card_response(_adaptive(card)) if card is not None else text_response(words)
        turn = self._button_turn(activity, verb, data)
        if turn is None:
            return text_response(UNKNOWN_BUTTON)
        target = Recipient(
            reference=TurnContext.get_conversation_reference(activity),
            card_id=activity.reply_to_id or None,
            adopt=turn.kind is TurnKind.SUBMIT,
        )
        outcome = await self.runtime.pipeline.handle(Arrival.of(turn, delivery=_delivery(activity)))
        match outcome:
            case Duplicate():
                return text_response(ALREADY)
            case Refused(words=words):
                return text_response(words)
            case Replies(replies=replies):
                first, rest = await self._first(replies)
                response, leftover = self._answer(target, first)
                if leftover is not None or rest is not None:
                    self._after(self._stream(target, leftover, rest), target, "teams.card_action")
                return response
        return text_response("Done.")

    async def _intake_invoke(
        self, request: web.Request, body: dict[str, Any], data: dict[str, Any]
    ) -> web.StreamResponse:
        """The intake form's Action.Execute, answered from its JSON alone (no SDK Activity,
        no turn, no database): the form with its errors, or a short "checking …" card, which
        the turn that follows the answer (`_intake_turn`) then edits in place."""
        delivery = f"{body['conversation']['id']}:{body['id']}" if body.get("id") else None
        if delivery and not await self._answered.first_time(f"teams:{delivery}"):
            return _invoke_answer(MESSAGE, ALREADY)  # redelivered to this process (§B6)
        turn = Turn(
            platform=Platform.TEAMS,
            kind=TurnKind.SUBMIT,
            person=person_in(body, self._emails.get(body["from"]["id"])),
            conversation=body["conversation"]["id"],
            id=body.get("id"),
            values=data,
        )
        conversation = self.runtime.conversation
        checked = conversation.check_form(turn)
        if isinstance(checked, FormErrors):
            return _invoke_answer(ADAPTIVE, _adaptive(conversation.form_again(turn, checked).card))
        checking = conversation.checking_card(checked)
        arrival = Arrival.of(turn, delivery=delivery, answers=checked)
        response = _invoke_answer(ADAPTIVE, _adaptive(checking))
        await self._answer_first(
            request, response, [(self._intake_turn(body, checking, arrival), None, "teams.intake")]
        )
        return response

    async def _intake_turn(
        self, body: dict[str, Any], checking: CardSpec, arrival: Arrival
    ) -> None:
        """After the invoke answer, through the pipeline (dedupe, the rate limit, the checks):
        the cards edit the message the person pressed, which shows the "checking …" card."""
        activity = _read_after_answer(body)
        if activity is None:
            return
        self._remember(activity)
        target = Recipient(
            reference=TurnContext.get_conversation_reference(activity),
            card_id=activity.reply_to_id or None,
            adopt=True,
            shown=checking,
        )
        try:
            # A Duplicate (another replica answered it too) does nothing: that one edits it.
            match await self.runtime.pipeline.handle(arrival):
                case Refused(words=words):  # "Checking …" becomes the refusal
                    refusal = Update(card=notice_card(words), key="refused")
                    await self._stream(target, refusal, None)
                case Replies(replies=replies):
                    await self._stream(target, None, replies)
        except Exception:
            await self._report_crash(target)
            raise

    def _turn(self, activity: Activity, kind: TurnKind, **fields: Any) -> Turn:
        return Turn(
            platform=Platform.TEAMS,
            kind=kind,
            person=person_of(activity, self._emails.get(activity.from_property.id)),
            conversation=activity.conversation.id,
            id=activity.id,
            **fields,
        )

    def _button_turn(self, activity: Activity, verb: Any, data: dict[str, Any]) -> Turn | None:
        """The turn of a form or results card button (either path), None for a verb we do
        not have."""
        if verb == INTAKE:
            return self._turn(activity, TurnKind.SUBMIT, values=data)
        try:
            action = Action(verb)
        except ValueError:
            return None
        did = data.get("diagnosis_id")
        return self._turn(
            activity,
            TurnKind.ACTION,
            action=action,
            diagnosis_id=did if isinstance(did, str) and did else None,
            values=data,
        )

    def _prefill(
        self, ctx: TurnContext, arguments: str
    ) -> Callable[[Person], Awaitable[Person]] | None:
        """For a form opened in a personal or group chat without an address: the person's
        mail address from their Teams profile (the pipeline asks just before the form)."""
        activity = ctx.activity
        if getattr(activity.conversation, "conversation_type", None) == "channel":
            return None
        if address_from_text(arguments):
            return None

        async def with_email(person: Person) -> Person:
            if person.email is not None:
                return person
            try:
                await token_off_the_loop(ctx, self.adapter.BOT_CONNECTOR_CLIENT_KEY)
            except ConnectionError:  # a prefill is a nicety: the person can type the address
                return person
            email = await self._email_of(ctx, activity.from_property.id)
            return person.model_copy(update={"email": email}) if email else person

        return with_email

    async def _first(
        self, replies: AsyncIterator[Reply]
    ) -> tuple[Reply | None, AsyncIterator[Reply] | None]:
        """The flow's first reply (no check runs before it), bounded in time."""
        try:
            async with asyncio.timeout(FIRST_REPLY_TIMEOUT):
                return await anext(replies), replies
        except StopAsyncIteration:
            return None, None
        except Exception:
            log.exception("a Teams card action failed before its first reply")
            await _close(replies)
            return Update(card=crash_card(), key="error"), None

    def _answer(
        self, target: Recipient, first: Reply | None
    ) -> tuple[InvokeResponse, Reply | None]:
        """The invoke response for the first reply, and what is left to send another way."""
        match first:
            case ShowForm(card=card):
                target.adopt = False
                return card_response(_adaptive(card)), None
            case Post(card=card, key=key) if target.adopt:
                target.adopt = False
                target.posted[key] = target.card_id
                return card_response(_adaptive(card)), None
            case Update(card=card, key=key):
                target.posted[key] = target.posted.get(key) or target.card_id
                return card_response(_adaptive(card)), None
            case Notice(text=text):
                return text_response(text), None
            case FormErrors(errors=errors):
                return text_response("Please check: " + "; ".join(errors.values())), None
            case None:
                return text_response("Done."), None
            case _:  # a new message, not a change of this card: send it, keep the card
                return text_response("Working on it…"), first

    # --- the case card's buttons (dialogs.case_buttons decides; this translates) -----------------

    def _actor(self, activity: Activity) -> Actor:
        """Who clicked, as the token-verified activity says: the Entra object id, never the
        card's data (§B4: the refresh only decides what each user sees)."""
        person = person_of(activity)
        return Actor(
            id=person.id,
            name=person.name or "A Teams user",
            platform=Platform.TEAMS.value,
            workspace=person.workspace,
        )

    def _click(self, activity: Activity, action: CaseAction, data: dict[str, Any]) -> Arrival:
        """A case card button as the pipeline takes it: the click is the activity (§B6: Teams
        redelivers with the same id). A refresh is a read, sent whenever an approver views the
        card: nothing to dedupe, no press recorded."""
        refresh = action is CaseAction.REFRESH
        press = CasePress(
            action, data, data, self._actor(activity), click=None if refresh else activity.id
        )
        delivery = None if refresh else _delivery(activity)
        return Arrival.click(Platform.TEAMS, press, delivery=delivery)

    async def _case_invoke(
        self, activity: Activity, action: CaseAction, data: dict[str, Any]
    ) -> InvokeResponse:
        """An Action.Execute on a case card: answered with the card as this user sees it."""
        # Approving applies the fix and re-runs checks: it may outlast Teams' 15 s (§B6). The
        # answer waits a bounded time; past it the work goes on in the background and the
        # card is edited in place when it is done (Helpdesk -> TeamsHelpdesk.update).
        work = asyncio.ensure_future(
            self.runtime.pipeline.handle(self._click(activity, action, data))
        )
        try:
            async with asyncio.timeout(self.case_action_timeout):
                outcome = await asyncio.shield(work)
        except TimeoutError:
            self._after(_finish(work), None, "teams.case_action")
            return text_response(STILL_WORKING)
        match outcome:
            case Duplicate():
                return text_response(ALREADY)
            case Refused(words=words, why=Why.BAD_PRESS):
                return error_response(HTTPStatus.BAD_REQUEST, "BadRequest", words)
            case Refused(words=words):
                return text_response(words)
            case CasePressed(pressed=pressed, actor=actor):
                helpdesk = self.helpdesk
                if pressed.ok and pressed.case is not None and helpdesk is not None:
                    # Teams asks for (refresh) or gets back the card as this user sees it: the
                    # approver's view has Approve / Reject (§B4). The card everyone gets was
                    # edited in place already (Helpdesk -> TeamsHelpdesk.update).
                    return card_response(_adaptive(await card_for(helpdesk, pressed.case, actor)))
                if action is CaseAction.REFRESH:
                    return error_response(HTTPStatus.BAD_REQUEST, "BadRequest", "No such case.")
                return text_response(pressed.words or "Nothing changed.")
        return text_response("Nothing changed.")

    async def _answer_words(self, activity: Activity, data: Mapping[str, Any]) -> str:
        """The answer card's button (either path): the words for the person."""
        helpdesk = self.helpdesk
        if helpdesk is None:
            return NO_HELPDESK
        return (await self._answer_case(helpdesk, self._actor(activity), data))[0]

    async def _typed_answer(self, activity: Activity) -> str | None:
        """A message in the personal chat while the helpdesk waits for this person's answer
        (`TeamsHelpdesk.tell` noted the case): the answer, sent to the case. None otherwise."""
        helpdesk = self.helpdesk
        load = getattr(self.runtime.store, "conversation_ref", None)
        personal = getattr(activity.conversation, "conversation_type", None) == "personal"
        if helpdesk is None or load is None or not personal or not (activity.text or "").strip():
            return None
        actor = self._actor(activity)
        waiting = await load(WAITING_KEY.format(actor.id))
        number = case_number((waiting or {}).get("case"))
        if number is None:
            return None
        words, card = await self._answer_case(
            helpdesk, actor, {"case": number, ANSWER_INPUT: activity.text}
        )
        return words if card is not None else None

    async def _answer_case(
        self, helpdesk: Helpdesk, actor: Actor, data: Mapping[str, Any]
    ) -> tuple[str, CardSpec | None]:
        """The person answers the helpdesk's question: (words, the card that replaces theirs)."""
        number = case_number(data.get("case"))
        text = data.get(ANSWER_INPUT)
        text = " ".join(text.split()) if isinstance(text, str) else ""
        if number is None:
            return "This card names no case.", None
        if not text:
            return "Type your answer first.", None
        if len(text) > MAX_ANSWER:
            return f"Keep the answer under {MAX_ANSWER} characters.", None
        case = await helpdesk.answer(number, actor.id, text)
        if case is None:
            return f"Case {number} is not waiting for an answer from you.", None
        save = getattr(self.runtime.store, "save_conversation_ref", None)
        if save is not None:  # answered: later messages are not answers any more
            await save(WAITING_KEY.format(actor.id), Platform.TEAMS, {"case": None})
        words = f"Sent to the helpdesk with case {number}."
        return words, notice_card(f"{words} You said: {text}")

    # --- background work -----------------------------------------------------------------------

    def _after(self, work: Coroutine[Any, Any, None], target: Recipient | None, name: str) -> None:
        """Run `work` once the HTTP response is written (at once outside a request)."""
        pending = _AFTER.get()
        if pending is not None:
            pending.append((work, target, name))
        else:
            self._spawn(work, target, name)

    def _spawn(self, work: Coroutine[Any, Any, None], target: Recipient | None, name: str) -> None:
        async def on_error(exc: BaseException) -> None:
            if target is not None:
                await self._report_crash(target)

        try:
            self.runtime.supervisor.spawn(work, name=name, on_error=on_error)
        except RuntimeError:  # shutting down: the supervisor closed the coroutine
            log.warning("Teams work %s dropped: the server is shutting down", name)

    async def _continue(self, target: Recipient, logic: Any) -> None:
        """Run `logic(ctx)` in a proactive turn on the stored conversation reference (§B5)."""
        key = self.adapter.BOT_CONNECTOR_CLIENT_KEY

        async def warmed(ctx: TurnContext) -> None:
            await token_off_the_loop(ctx, key)
            await logic(ctx)

        await self.adapter.continue_conversation(target.reference, warmed, self.app_id)

    async def _stream(
        self, target: Recipient, first: Reply | None, rest: AsyncIterator[Reply] | None
    ) -> None:
        async def logic(ctx: TurnContext) -> None:
            if first is not None:
                await self.send(ctx, target, first)
            if rest is not None:
                async for reply in rest:
                    await self.send(ctx, target, reply)

        try:
            await self._continue(target, logic)
        finally:
            # Close the flow now, not at garbage collection: its cleanup marks an interrupted
            # diagnosis as failed (on shutdown this runs inside the cancellation).
            if rest is not None:
                await _close(rest)

    async def _email_of(self, ctx: TurnContext, user_id: str) -> str | None:
        """The person's mail address from their Teams profile (prefills the form), or None."""
        if user_id in self._emails:
            return self._emails[user_id]
        email: str | None = None
        try:
            # GET /v3/conversations/{id}/members/{user}. Not `TeamsInfo.get_member`: it needs
            # the incoming activity's channelData, which a proactive turn does not have.
            client = ctx.turn_state.get(self.adapter.BOT_CONNECTOR_CLIENT_KEY)
            async with asyncio.timeout(EMAIL_LOOKUP_TIMEOUT):
                member = await client.conversations.get_conversation_member(
                    ctx.activity.conversation.id, user_id
                )
            found = {**member.serialize(), **(member.additional_properties or {})}
            email = found.get("email") or found.get("userPrincipalName") or None
        except Exception as exc:  # a prefill is a nicety: the person can type the address
            log.info("Teams member lookup failed: %s", type(exc).__name__)
        if len(self._emails) >= EMAIL_CACHE:
            self._emails.clear()
        self._emails[user_id] = email
        return email

    async def _report_crash(self, target: Recipient) -> None:
        """Turn a crashed background task into the error card, on the card it was changing."""
        activity_id = next(reversed(target.posted.values()), None) or target.card_id

        async def logic(ctx: TurnContext) -> None:
            card = crash_card()
            if activity_id:
                await self._update(ctx, activity_id, card)
            else:
                await self._post(ctx, card)

        await self._continue(target, logic)

    def _remember(self, activity: Activity) -> None:
        """Keep the conversation reference (JSON) for later proactive messages. All of it,
        the reference's serialisation included, runs after the answer (bench/ack.py)."""
        save = getattr(self.runtime.store, "save_conversation_ref", None)
        if save is not None:
            self._after(self._save_references(activity, save), None, "teams.remember")

    async def _save_references(self, activity: Activity, save: Any) -> None:
        reference = TurnContext.get_conversation_reference(activity).serialize()
        keys = [f"teams:conversation:{activity.conversation.id}"]
        if getattr(activity.conversation, "conversation_type", None) == "personal":
            keys.append(f"teams:person:{person_of(activity).id}")
        for key in keys:
            await save(key, Platform.TEAMS, reference)
        sender = activity.from_property
        aad = str(getattr(sender, "aad_object_id", None) or "").lower()
        if aad and sender.id and self._mris.get(aad) != sender.id:
            # Who this Entra user is in Teams (their MRI, "29:…"): what refresh.userIds names.
            if len(self._mris) >= EMAIL_CACHE:
                self._mris.clear()
            self._mris[aad] = sender.id
            await save(USER_KEY.format(aad), Platform.TEAMS, {"id": sender.id, "aadObjectId": aad})
        team = team_of(activity)
        fresh = (activity.service_url, person_of(activity).workspace) != self._service_url_saved
        if team is not None and fresh:  # a message from a team: the app is installed there
            await self._save_team(activity, team, installed=True)

    # --- Reply -> Bot Connector ----------------------------------------------------------------

    async def send(self, ctx: TurnContext, target: Recipient, reply: Reply) -> None:
        """One reply, one Bot Connector call: POST a new message or PUT an edit."""
        match reply:
            case ShowForm(card=card):
                if target.adopt and target.card_id:
                    target.adopt = False
                    await self._edit(ctx, target, target.card_id, card)
                else:
                    await self._post(ctx, card)
            case FormErrors(errors=errors):
                await self._text(ctx, "Please check: " + "; ".join(errors.values()))
            case Post(card=card, key=key):
                if target.adopt and target.card_id:
                    target.adopt = False
                    await self._edit(ctx, target, target.card_id, card)
                    target.posted[key] = target.card_id
                else:
                    target.posted[key] = await self._post(ctx, card)
            case Update(card=card, key=key):
                activity_id = target.posted.get(key) or target.card_id
                if activity_id:
                    await self._edit(ctx, target, activity_id, card)
                    target.posted[key] = activity_id
                else:
                    target.posted[key] = await self._post(ctx, card)
            case Notice(text=text):
                await self._text(ctx, text)

    async def _post(self, ctx: TurnContext, card: CardSpec) -> str | None:
        sent = await ctx.send_activity(card_activity(card))
        return getattr(sent, "id", None) or None

    async def _edit(
        self, ctx: TurnContext, target: Recipient, activity_id: str, card: CardSpec
    ) -> None:
        """Edit a message of this exchange, unless the card it shows is this one already (the
        progress card an intake invoke was answered with)."""
        if activity_id == target.card_id:
            if card == target.shown:
                return
            target.shown = card
        await self._update(ctx, activity_id, card)

    async def _update(self, ctx: TurnContext, activity_id: str, card: CardSpec) -> None:
        activity = card_activity(card)
        activity.id = activity_id
        await ctx.update_activity(activity)

    async def _text(self, ctx: TurnContext, text: str) -> None:
        message = MessageFactory.text(text)
        message.text_format = "plain"  # our sentences may quote what people typed
        await ctx.send_activity(message)


def create_teams_handler(runtime: Runtime) -> Handler:
    """The `POST /api/messages` handler (`bot.server.TeamsFactory`). The bot itself stays on
    the runtime (`extras["teams_bot"]`) for whoever wires the helpdesk loop
    (`teams_bot.helpdesk_channel()`, `teams_bot.helpdesk = …`)."""
    bot = TeamsBot(runtime)
    runtime.extras["teams_bot"] = bot
    return bot.handle


# --- helpers ---------------------------------------------------------------------------------


def team_of(activity: Activity) -> dict[str, Any] | None:
    """The team an activity comes from (channelData.team), or None outside teams."""
    data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
    team = data.get("team")
    if isinstance(team, dict) and isinstance(team.get("id"), str) and team["id"]:
        return team
    return None


def notice_card(text: str) -> CardSpec:
    return CardSpec(template="notice", data=NoticeData(text=text).model_dump(mode="json"))


def crash_card() -> CardSpec:
    return CardSpec(
        template="error",
        data=ErrorData(
            title="Something went wrong",
            message="mailfix hit an unexpected problem and stopped. Nothing was changed.",
            try_next=[f"Type {COMMAND} to try again in a minute."],
        ).model_dump(mode="json"),
    )


def _adaptive(card: CardSpec) -> dict[str, Any]:
    return render(card, Target.ADAPTIVE)


def card_activity(card: CardSpec) -> Activity:
    return MessageFactory.attachment(CardFactory.adaptive_card(_adaptive(card)))


async def _finish(work: asyncio.Future[Any]) -> None:
    """Wait for a case button's work the invoke answer stopped waiting for."""
    try:
        await work
    except asyncio.CancelledError:
        work.cancel()  # shutting down: an applying fix's lease lapses and a replica resumes it
        raise


async def _close(replies: AsyncIterator[Reply]) -> None:
    aclose = getattr(replies, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(RuntimeError):  # "already running": its own task closes it
            await aclose()


def _delivery(activity: Activity) -> str | None:
    """The pipeline's delivery id of an activity: Teams redelivers with the same id (§B6)."""
    return f"{activity.conversation.id}:{activity.id}" if activity.id else None


def _case_action(verb: Any) -> CaseAction | None:
    try:
        return CaseAction(verb)
    except ValueError:
        return None


def _execute(kind: Any, name: Any, value: Any) -> tuple[Any, dict[str, Any]] | None:
    """(verb, data) of a card's Action.Execute (invoke `adaptiveCard/action`) from an activity's
    type, name and value, None otherwise."""
    if kind != ActivityTypes.invoke or name != CARD_ACTION:
        return None
    value = value if isinstance(value, dict) else {}
    action = value.get("action")
    if not isinstance(action, dict) or action.get("type") != "Action.Execute":
        return None
    data = action.get("data")
    data = dict(data) if isinstance(data, dict) else {}
    data.pop("verb", None)
    return action.get("verb"), data


def _activity_problem(body: Any) -> str | None:
    """Why this JSON is not an activity we can answer (the SDK would crash on it), or None."""
    if not isinstance(body, dict):
        return "The body is not an activity object."
    if not isinstance(body.get("type"), str) or not body["type"]:
        return "The activity has no type."
    if body["type"] not in (ActivityTypes.message, ActivityTypes.invoke):
        return None  # conversation updates and the like: the SDK's defaults ignore them
    service = body.get("serviceUrl")
    if not isinstance(service, str) or not service.startswith(("https://", "http://")):
        return "The activity has no serviceUrl."
    for key in ("conversation", "from", "recipient"):
        value = body.get(key)
        if not isinstance(value, dict) or not isinstance(value.get("id"), str):
            return f"The activity has no {key} id."
    if body["type"] == ActivityTypes.invoke and not isinstance(body.get("name"), str):
        return "The invoke has no name."
    return None


def _read_after_answer(body: dict[str, Any]) -> Activity | None:
    """`_read_activity` for an activity already answered: one warning line when unreadable."""
    activity = _read_activity(body)
    if activity is None:
        log.warning("Teams activity dropped: it does not have the Bot Framework shape")
    return activity


def _read_activity(body: dict[str, Any]) -> Activity | None:
    """The SDK's Activity, or None when the JSON does not have its shape. Read once per
    request: msrest's deserialisation is a large part of a turn's CPU (bench/ack.py), and
    its deserialiser is built once (`Activity().deserialize` builds one per call)."""
    try:
        activity: Activity = _ACTIVITIES("Activity", body)
    except Exception:  # msrest's DeserializationError and friends
        return None
    return activity


def _problem(
    status: int, error: str, message: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response({"error": error, "message": message}, status=status, headers=headers)


def _unauthorized(message: str) -> web.Response:
    return _problem(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})
