"""Slack side: a thin translator between slack-bolt payloads and our Turn / Reply models.

In: a slash command, the intake modal's submission, a button, `app_home_opened` -> `Turn`.
Out: `Reply` -> Web API calls (`send`, one small function). Everything after the ack runs on the
server's task supervisor, so Slack always gets its answer well inside 3 seconds
(reference/chat-platforms.md §A2) and no work is lost or left running at shutdown.

Over HTTP, `SlackBot.handle` checks every request's signature on the raw bytes, then parses it
and checks its shape, before bolt sees it. A slash command is then answered at once (its answer
is an empty 200 whatever happens next) and bolt — its middleware, the listener — runs after the
answer, as background work; interactivity and events stay in bolt on the request path, since
their answers carry content (a form's errors). Socket Mode envelopes all go through bolt.

Where results go (`MAILFIX_SLACK_REPLY_MODE`):
- `dm` (default): a direct message (`conversations.open` + `chat.postMessage`); progress edits
  the same message in place (`chat.update`).
- `ephemeral`: only-visible-to-you messages in the channel where the person typed `/mailfix`.
  Ephemeral messages cannot be edited with `chat.update`, and a `response_url` takes only 5
  posts (§A4), so edits of an ephemeral message are held back and the last state is sent once,
  when the flow is done. If the bot cannot post in that channel, it falls back to a DM.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.oauth.installation_store.sqlalchemy import AsyncSQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import AsyncSQLAlchemyOAuthStateStore
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.helpdesk_channels import SlackHelpdesk
from bot.limits import BadBody, parse_json_object, text_of
from bot.manifests import SLACK_SCOPES
from bot.runtime import Runtime
from bot.settings import ReplyMode
from cards import Target, render
from cards.data import ErrorData, NoticeData
from dialogs.approval import Actor
from dialogs.case_buttons import case_number
from dialogs.cases import (
    ANSWER_INPUT,
    ANSWER_VERB,
    MAX_ANSWER,
    QUESTION_INPUT,
    Case,
    CaseAction,
    CaseState,
)
from dialogs.helpdesk import Posted
from dialogs.intake import ADDRESS, address_from_text
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
    Arrival,
    CasePress,
    CasePressed,
    Duplicate,
    HomeCard,
    Replies,
)
from dialogs.pipeline import Refused as TurnRefused
from dialogs.store import StoredDiagnosis

log = logging.getLogger(__name__)

COMMAND = "/mailfix"
INTAKE = "mailfix.intake"
# The case card's buttons (Teams' refresh is no Slack button).
CASE_ACTIONS = frozenset(a.value for a in CaseAction if a is not CaseAction.REFRESH)
ACTION_IDS = frozenset({a.value for a in Action} | CASE_ACTIONS | {ANSWER_VERB})
EMAIL_TTL = 3600.0  # seconds a users.info email stays cached
# Errors of chat.postEphemeral that mean "not here": fall back to a DM.
_NOT_HERE = {"channel_not_found", "not_in_channel", "user_not_in_channel", "is_archived"}

# Request signatures (reference/chat-platforms.md §A5, Slack's "verifying requests"):
# "v0=" + hex HMAC-SHA256(signing secret, "v0:{timestamp}:{raw body}"), timestamps older or
# newer than 5 minutes refused, compared in constant time.
REPLAY_WINDOW = 300  # seconds
FORM = "application/x-www-form-urlencoded"
SLACK_HOOKS = "hooks.slack.com"  # a response_url's host: https://hooks.slack.com/commands/… (§A4)
JSON = "application/json"
MAX_FORM_FIELDS = 64  # a slash command has about 15


class Refused(Exception):
    """A Slack request answered with an error status before bolt sees it."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Ignored(Exception):
    """Signed and well-formed, but nothing this bot handles: a bare 200 so Slack stops retrying."""


def verify_signature(
    secret: bytes, headers: Mapping[str, str], body: bytes, *, now: float | None = None
) -> str | None:
    """Why this request is not from Slack, or None when its signature is good.

    Runs on the raw bytes before anything parses them. The timestamp must be a plain integer
    (ASCII digits) within `REPLAY_WINDOW` seconds; the signature is compared as bytes.
    """
    timestamp = headers.get("X-Slack-Request-Timestamp")
    signature = headers.get("X-Slack-Signature")
    if not timestamp or not signature:
        return "no signature"
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return "a timestamp that is not an integer"
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > REPLAY_WINDOW:
        return "a stale timestamp"
    if not signature.isascii() or len(signature) > 128:
        return "a malformed signature"
    digest = hmac.new(secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
    expected = b"v0=" + digest.hexdigest().encode()
    if not hmac.compare_digest(expected, signature.encode("ascii")):
        return "a wrong signature"
    return None


def parse_request(body: bytes, content_type: str) -> dict[str, Any]:
    """The verified body as bolt will see it: form fields, or the JSON object. Raises BadBody."""
    text = text_of(body)
    if content_type == JSON:
        return parse_json_object(body)
    try:
        fields = parse_qs(
            text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS, errors="strict"
        )
    except (ValueError, UnicodeDecodeError):
        raise BadBody("The form is not readable.") from None
    flat = {k: v[0] for k, v in fields.items()}
    payload = flat.get("payload")
    if payload is not None:
        return {"payload": parse_json_object(payload)}
    return flat


def _is(value: Any, kind: type | tuple[type, ...], *, optional: bool = True) -> bool:
    return (optional and value is None) or isinstance(value, kind)


def check_shape(request: Mapping[str, Any]) -> None:
    """Raise Refused (400) for a payload our listeners could not read, Ignored for one they do
    not handle. What passes has every field a listener reads, of the type it expects."""
    payload = request.get("payload")
    if payload is None and "command" in request:
        if request.get("command") != COMMAND:
            raise Refused(400, "bad_request", "This app has no such command.")
        if not request.get("user_id"):
            raise Refused(400, "bad_request", "The command has no user.")
        return
    if payload is None and request.get("ssl_check"):
        raise Ignored
    if payload is None:
        _check_event(request)
        return
    kind = payload.get("type")
    if not isinstance(kind, str):
        raise Refused(400, "bad_request", "The payload has no type.")
    if kind not in ("block_actions", "view_submission"):
        raise Ignored
    user = payload.get("user")
    if not isinstance(user, dict) or not isinstance(user.get("id"), str) or not user["id"]:
        raise Refused(400, "bad_request", "The payload has no user.")
    if not _is(user.get("name"), str) or not _is(user.get("username"), str):
        raise Refused(400, "bad_request", "The payload's user is not readable.")
    team = payload.get("team")
    if not _is(team, dict) or (isinstance(team, dict) and not _is(team.get("id"), str)):
        raise Refused(400, "bad_request", "The payload's team is not readable.")
    if not _is(payload.get("trigger_id"), str):
        raise Refused(400, "bad_request", "The payload's trigger id is not readable.")
    if kind == "block_actions":
        _check_actions(payload)
    else:
        _check_view(payload)


def _check_actions(payload: Mapping[str, Any]) -> None:
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise Refused(400, "bad_request", "The payload has no action.")
    action = actions[0]
    if not isinstance(action.get("action_id"), str):
        raise Refused(400, "bad_request", "The action has no id.")
    if action["action_id"] not in ACTION_IDS:
        raise Ignored
    if not _is(action.get("value"), str) or not _is(action.get("action_ts"), str):
        raise Refused(400, "bad_request", "The action is not readable.")
    container = payload.get("container")
    channel = payload.get("channel")
    if not _is(container, dict) or not _is(channel, dict):
        raise Refused(400, "bad_request", "The action's message is not readable.")
    if isinstance(container, dict) and not (
        _is(container.get("channel_id"), str) and _is(container.get("message_ts"), str)
    ):
        raise Refused(400, "bad_request", "The action's message is not readable.")
    if isinstance(channel, dict) and not _is(channel.get("id"), str):
        raise Refused(400, "bad_request", "The action's channel is not readable.")
    if not _is(payload.get("response_url"), str):
        raise Refused(400, "bad_request", "The action's response URL is not readable.")
    state = payload.get("state")  # the message's inputs (the case card's question box)
    if not _is(state, dict) or (
        isinstance(state, dict)
        and not (
            _is(state.get("values"), dict)
            and all(isinstance(b, dict) for b in (state.get("values") or {}).values())
        )
    ):
        raise Refused(400, "bad_request", "The action's inputs are not readable.")


def _check_view(payload: Mapping[str, Any]) -> None:
    view = payload.get("view")
    if not isinstance(view, dict) or not isinstance(view.get("callback_id"), str):
        raise Refused(400, "bad_request", "The submission has no view.")
    if view["callback_id"] not in (INTAKE, ANSWER_VERB):
        raise Ignored
    state = view.get("state")
    values = state.get("values") if isinstance(state, dict) else None
    if not isinstance(values, dict) or not all(isinstance(b, dict) for b in values.values()):
        raise Refused(400, "bad_request", "The submission has no readable values.")
    if not _is(view.get("private_metadata"), str) or not _is(view.get("id"), str):
        raise Refused(400, "bad_request", "The submission's view is not readable.")
    if not _is(view.get("blocks"), list) or not _is(view.get("type"), str):
        raise Refused(400, "bad_request", "The submission's view is not readable.")


def _check_event(body: Mapping[str, Any]) -> None:
    kind = body.get("type")
    if kind == "url_verification":
        if not isinstance(body.get("challenge"), str):
            raise Refused(400, "bad_request", "The challenge is missing.")
        return
    if not isinstance(kind, str):
        raise Refused(400, "bad_request", "The body is neither a command nor an event.")
    if kind != "event_callback":
        raise Ignored
    event = body.get("event")
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise Refused(400, "bad_request", "The event has no type.")
    if not _is(body.get("event_id"), str) or not _is(body.get("team_id"), str):
        raise Refused(400, "bad_request", "The event is not readable.")
    if event["type"] != "app_home_opened":
        raise Ignored
    if not isinstance(event.get("user"), str) or not _is(event.get("tab"), str):
        raise Refused(400, "bad_request", "The event is not readable.")


def _refusal(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


Listener = Callable[..., Awaitable[None]]


def _acks_whatever_happens(listener: Listener, **fallback: Any) -> Listener:
    """A listener that fails still acks, with `fallback` (a polite line where Slack shows one):
    never a 500, never a 3-second wait. One warning line, no payload content."""

    @functools.wraps(listener)
    async def safe(ack: Any, **kwargs: Any) -> None:
        acked = False

        async def once(*args: Any, **kw: Any) -> None:
            nonlocal acked
            acked = True
            await ack(*args, **kw)

        try:
            await listener(once, **kwargs)
        except Exception as exc:
            log.warning("Slack %s could not be handled (%s)", listener.__name__, type(exc).__name__)
            if not acked:
                await ack(**fallback)

    return safe


UNREADABLE = "Sorry, I could not read that request. Please try again."


@dataclass(frozen=True)
class MessageRef:
    """Where a message we sent lives. Ephemeral messages have no `ts` we can edit."""

    channel: str
    ts: str | None = None
    ephemeral: bool = False
    response_url: str | None = None


@dataclass
class Recipient:
    """Everything `send` needs to know about one person's exchange with the bot."""

    user: str
    channel: str | None = None  # where they asked (ephemeral mode posts there)
    trigger_id: str | None = None
    source: MessageRef | None = None  # the message whose button was pressed
    posted: dict[str, MessageRef] = field(default_factory=dict)
    held: dict[str, CardSpec] = field(default_factory=dict)  # ephemeral edits sent at the end
    dm: str | None = None
    loading: dict[str, Any] | None = None  # a modal opened while the form is made: the form goes in


def normalise_values(state_values: Mapping[str, Any]) -> dict[str, Any]:
    """A modal's `view.state.values` -> `{field id: value}` (field id == action_id, UI.md)."""
    values: dict[str, Any] = {}
    for block in state_values.values():
        if not isinstance(block, Mapping):
            continue
        for action_id, element in block.items():
            if not isinstance(element, Mapping):
                continue
            values[action_id] = _element_value(element)
    return values


def _element_value(element: Mapping[str, Any]) -> Any:
    kind = element.get("type")
    if kind in ("static_select", "external_select", "radio_buttons"):
        selected = element.get("selected_option")
        return selected.get("value") if isinstance(selected, Mapping) else None
    if kind in ("checkboxes", "multi_static_select"):
        options = element.get("selected_options")
        options = options if isinstance(options, list) else []
        return [o.get("value") for o in options if isinstance(o, Mapping)]
    for key in (
        "value",
        "selected_date",
        "selected_time",
        "selected_user",
        "selected_conversation",
        "selected_channel",
    ):
        if key in element:
            return element[key]
    return None


def _person(user: Mapping[str, Any], team: str | None, email: str | None) -> Person:
    names = (user.get(k) for k in ("name", "username", "user_name"))
    return Person(
        id=str(user.get("id", "")),
        name=next((n for n in names if isinstance(n, str) and n), None),
        email=email,
        workspace=team,
    )


# The workspace (team id) of the turn being handled; background work started by the turn
# inherits it (tasks copy the context).
CURRENT_TEAM: ContextVar[str | None] = ContextVar("mailfix_slack_team", default=None)
INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
OAUTH_STATE_SECONDS = 600  # an "Add to Slack" click must come back within 10 minutes
TOKEN_TTL = 60.0  # seconds a workspace's bot token is cached (a reinstall changes it)


@contextlib.contextmanager
def in_workspace(team: str | None) -> Iterator[None]:
    """Web API calls inside use `team`'s bot token (OAuth installs), whatever turn runs: for
    what is said to a person outside their own turn (housekeeping, a helpdesk click)."""
    token = CURRENT_TEAM.set(team)
    try:
        yield
    finally:
        CURRENT_TEAM.reset(token)


class WorkspaceClient(AsyncWebClient):
    """The Web API client of a multi-workspace install: each call carries the bot token of
    the workspace the current turn came from (`CURRENT_TEAM`), read from the installation
    store (slack_sdk's `AsyncSQLAlchemyInstallationStore` on our `slack_bots` table)."""

    def __init__(self, installations: AsyncSQLAlchemyInstallationStore, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.installations = installations
        self._tokens: dict[str, tuple[float, str | None]] = {}

    async def api_call(
        self, api_method: str, *, params: dict[str, Any] | None = None, **kwargs: Any
    ) -> Any:
        team = CURRENT_TEAM.get()
        has_token = "token" in (params or {}) or "token" in (kwargs.get("json") or {})
        if team and not has_token and api_method != "oauth.v2.access":
            token = await self._token(team)
            if token:
                params = {**(params or {}), "token": token}
        return await super().api_call(api_method, params=params, **kwargs)

    async def _token(self, team: str) -> str | None:
        cached = self._tokens.get(team)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        bot = await self.installations.async_find_bot(enterprise_id=None, team_id=team)
        token = bot.bot_token if bot is not None else None
        self._tokens[team] = (time.monotonic() + TOKEN_TTL, token)
        return token


def _bolt_get(request: web.Request) -> AsyncBoltRequest:
    return AsyncBoltRequest(
        body="", query=request.query_string, headers={k: v for k, v in request.headers.items()}
    )


class SlackCaseChannel(SlackHelpdesk):
    """The Slack helpdesk channel (`bot.helpdesk_channels.SlackHelpdesk`), whose question to a
    person comes with an "Answer" button: it opens a small modal, and the answer goes back to
    the case (`Helpdesk.answer`). The person is reached in the workspace the case came from
    (with OAuth installs, its bot token), whoever clicked in whichever workspace. Case cards are
    posted and edited with the helpdesk workspace's token when MAILFIX_HELPDESK_SLACK_TEAM names
    it (several installed workspaces); else with the token of the turn that asks."""

    def __init__(self, client: AsyncWebClient, channel: str | None, *, team: str | None) -> None:
        super().__init__(client, channel)
        self.team = team

    async def where(self) -> str:
        with self._in_helpdesk():
            return await super().where()

    async def post(self, platform: Platform, card: CardSpec) -> Posted:
        with self._in_helpdesk():
            return await super().post(platform, card)

    async def update(self, ref: Mapping[str, Any], card: CardSpec) -> bool:
        with self._in_helpdesk():
            return await super().update(ref, card)

    def _in_helpdesk(self) -> contextlib.AbstractContextManager[None]:
        return in_workspace(self.team) if self.team else contextlib.nullcontext()

    async def tell(self, case: Case, text: str) -> None:
        with in_workspace(case.workspace):
            await self._tell(case, text)

    async def _tell(self, case: Case, text: str) -> None:
        if not (case.state is CaseState.WAITING and case.question and case.question in text):
            await super().tell(case, text)
            return
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "plain_text", "text": text, "emoji": False}},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": ANSWER_VERB,
                        "style": "primary",
                        "text": {"type": "plain_text", "text": "Answer", "emoji": False},
                        "value": str(case.number),
                    }
                ],
            },
        ]
        try:
            opened = await self.client.conversations_open(users=case.person_id)
            dm = str((opened.get("channel") or {})["id"])
            await self.client.chat_postMessage(channel=dm, text=text, blocks=blocks)
        except SlackApiError as exc:
            log.warning(
                "asking case %s's person failed: %s", case.number, exc.response.get("error")
            )


def answer_view(number: int, question: str | None) -> dict[str, Any]:
    """The modal the person answers the helpdesk's question in."""
    asked = question or "The helpdesk has a question about your case."
    return {
        "type": "modal",
        "callback_id": ANSWER_VERB,
        "private_metadata": json.dumps({"case": number}),
        "title": {"type": "plain_text", "text": f"Case {number}"[:24], "emoji": False},
        "submit": {"type": "plain_text", "text": "Send", "emoji": False},
        "close": {"type": "plain_text", "text": "Cancel", "emoji": False},
        "blocks": [
            {"type": "section", "text": {"type": "plain_text", "text": asked[:3000]}},
            {
                "type": "input",
                "block_id": ANSWER_INPUT,
                "label": {"type": "plain_text", "text": "Your answer", "emoji": False},
                "element": {
                    "type": "plain_text_input",
                    "action_id": ANSWER_INPUT,
                    "multiline": True,
                    "max_length": MAX_ANSWER,
                },
            },
        ],
    }


def _question_typed(body: Mapping[str, Any]) -> str | None:
    """What was typed into the case card's question box (the message's `state`)."""
    values = normalise_values(((body.get("state") or {}).get("values")) or {})
    typed = values.get(QUESTION_INPUT)
    return typed if isinstance(typed, str) else None


class SlackBot:
    """The bolt app, its Web API client, and the translation both ways."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        client: AsyncWebClient | None = None,
        engine: AsyncEngine | None = None,
    ) -> None:
        """`engine`: the server's database, where OAuth installs keep each workspace's bot
        token (MAILFIX_SLACK_CLIENT_ID / _CLIENT_SECRET; tables of migration 0002)."""
        settings = runtime.settings
        self.oauth = settings.slack_oauth
        if settings.slack_bot_token is None and not self.oauth:
            raise ValueError("MAILFIX_SLACK_BOT_TOKEN is not set")
        if self.oauth and engine is None:
            raise ValueError("installing in several workspaces needs the SQL database")
        self.runtime = runtime
        self.mode = settings.slack_reply_mode
        installations = None
        oauth_settings = None
        if self.oauth:
            assert settings.slack_client_id and settings.slack_client_secret and engine
            installations = AsyncSQLAlchemyInstallationStore(
                client_id=settings.slack_client_id,
                engine=engine,
                logger=logging.getLogger("slack_sdk.oauth"),
            )
            oauth_settings = AsyncOAuthSettings(
                client_id=settings.slack_client_id,
                client_secret=settings.slack_client_secret.get_secret_value(),
                # usergroups:read only when approvers are given as Slack user groups (S…).
                scopes=[
                    *SLACK_SCOPES,
                    *(["usergroups:read"] if any(a[:1] == "S" for a in settings.approvers) else []),
                ],
                redirect_uri=settings.slack_redirect_uri,
                install_path=INSTALL_PATH,
                redirect_uri_path=REDIRECT_PATH,
                installation_store=installations,
                state_store=AsyncSQLAlchemyOAuthStateStore(
                    expiration_seconds=OAUTH_STATE_SECONDS,
                    engine=engine,
                    logger=logging.getLogger("slack_sdk.oauth"),
                ),
            )
        if client is None and installations is not None:
            client = WorkspaceClient(
                installations,
                base_url=settings.slack_api_url,
                logger=logging.getLogger("slack_sdk.web"),
            )
        elif client is None:
            assert settings.slack_bot_token is not None
            client = AsyncWebClient(
                token=settings.slack_bot_token.get_secret_value(),
                base_url=settings.slack_api_url,
                logger=logging.getLogger("slack_sdk.web"),
            )
        self.client = client
        # Only connection errors are retried by default; 429 needs its own handler (§A11).
        self.client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=2))
        secret = settings.slack_signing_secret
        # The HTTP endpoint exists only with a signing secret (server.py); Socket Mode alone
        # (an xapp- token, no secret) receives over the websocket, which needs no signature.
        self.http_enabled = secret is not None
        self._secret = secret.get_secret_value().encode() if secret is not None else b""
        self.app = AsyncApp(
            signing_secret=secret.get_secret_value() if secret is not None else "",
            client=self.client,
            # Every listener acks and hands the rest to the supervisor before it returns, so
            # bolt may wait for the listener itself: with False it polls for the ack every
            # 10 ms per request (its floor on every answer, and the CPU of a burst).
            process_before_response=True,
            # `handle` verifies every HTTP request on its raw bytes before anything parses it;
            # Socket Mode needs no signature.
            request_verification_enabled=False,
            logger=logging.getLogger("slack_bolt.mailfix"),
            oauth_settings=oauth_settings,
        )
        self._emails: dict[str, tuple[float, str | None]] = {}
        self.app.use(self._workspace)
        # If a listener fails before its ack, Slack still gets one: the command's person reads
        # a line, the form stays open with the line under its first field, a button just acks.
        self.app.command(COMMAND)(
            _acks_whatever_happens(self._on_command, text=UNREADABLE, response_type="ephemeral")
        )
        self.app.view(INTAKE)(
            _acks_whatever_happens(
                self._on_submit, response_action="errors", errors={ADDRESS: UNREADABLE}
            )
        )
        for action in Action:
            self.app.action(action.value)(_acks_whatever_happens(self._on_action))
        # The helpdesk loop: the case card's buttons, the person's Answer button and modal.
        for case_action in sorted(CASE_ACTIONS):
            self.app.action(case_action)(_acks_whatever_happens(self._on_case_action))
        self.app.action(ANSWER_VERB)(_acks_whatever_happens(self._on_answer_button))
        self.app.view(ANSWER_VERB)(
            _acks_whatever_happens(
                self._on_answer, response_action="errors", errors={ANSWER_INPUT: UNREADABLE}
            )
        )
        self._names: dict[str, tuple[float, str]] = {}
        self.app.event("app_home_opened")(self._on_home)

    # --- HTTP ----------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        """`POST /slack/events`: the signature over the raw bytes first, then parse, then check
        the shape, then bolt. Anything wrong is a short JSON 4xx and one log line."""
        if request.content_type not in (FORM, JSON):
            return _refusal(415, "unsupported_media_type", "Send a Slack request.")
        body = await request.read()
        why = verify_signature(self._secret, request.headers, body)
        if why is not None:
            log.warning("Slack request refused: %s", why)
            return _refusal(401, "invalid_request", "The request signature is not valid.")
        try:
            parsed = parse_request(body, request.content_type)
            check_shape(parsed)
        except BadBody as exc:
            log.warning("signed Slack request refused: %s", exc)
            return _refusal(exc.status, exc.code, str(exc))
        except Refused as exc:
            log.warning("signed Slack request refused: %s", exc.message)
            return _refusal(exc.status, exc.code, exc.message)
        except Ignored:
            return web.Response(status=200)
        bolt_request = functools.partial(
            AsyncBoltRequest,
            body=body.decode("utf-8"),
            query=request.query_string,
            headers={k: v for k, v in request.headers.items()},
        )
        if "command" in parsed:  # a slash command (check_shape: ours, with a user)
            # Signed (checked above on the raw bytes), parsed and shape-checked. Acknowledge
            # first: a command's answer is an empty 200 whatever its listener does after
            # `ack()`, so it goes now and bolt (authorisation, middleware, the listener) runs
            # after it (bench/ack.py: bolt's dispatch was ~0.15-0.2 ms of a ~0.5 ms ack, and a
            # burst's last ack waits for every earlier one's).
            target = Recipient(user=str(parsed["user_id"]), channel=parsed.get("channel_id"))
            hook = self._command_hook(parsed.get("response_url"))
            self._spawn(self._command(bolt_request, target, hook), target, "slack.command")
            return web.Response(status=200)
        response = await self.app.async_dispatch(bolt_request())
        return await to_aiohttp_response(response)

    async def _command(
        self, request: Callable[[], AsyncBoltRequest], target: Recipient, hook: str | None
    ) -> None:
        """A slash command, after its ack: what bolt answers besides an empty 200 (the polite
        line of a listener that failed, bolt's "install this app first") reaches the person
        only: through the command's `response_url` — where Slack shows an ack's words, and
        with no token needed — or else as an only-you message."""
        response = await self.app.async_dispatch(request())
        if response.status == 200 and not response.body:
            return
        try:
            answer = json.loads(response.body)
            words = answer.get("text") if isinstance(answer, dict) else None
        except ValueError:
            words = response.body
        text = words if isinstance(words, str) and words else UNREADABLE
        if hook is not None:
            await AsyncWebhookClient(hook).send(text=text, response_type="ephemeral")
        else:
            await self.send(target, Notice(text=text))

    def _command_hook(self, url: Any) -> str | None:
        """A command's `response_url` if it is Slack's (https on hooks.slack.com, or the host
        of the configured Web API: a sandbox's), else None — a signed payload still does not
        choose where the server sends requests."""
        if not isinstance(url, str):
            return None
        parts = urlsplit(url)
        api = urlsplit(self.runtime.settings.slack_api_url)
        if parts.scheme == "https" and parts.hostname == SLACK_HOOKS:
            return url
        if (parts.scheme, parts.netloc) == (api.scheme, api.netloc):
            return url
        return None

    # --- Socket Mode ---------------------------------------------------------------------------

    def socket_mode(self, app_token: str) -> Any:
        """The Socket Mode handler of this app (bolt's `AsyncSocketModeHandler`: `connect_async`,
        `close_async`), every envelope checked by `socket_mode_refusal` before bolt reads it."""
        # Socket Mode only: keep its websocket machinery out of HTTP-only servers.
        from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler  # noqa: PLC0415
        from slack_bolt.adapter.socket_mode.async_internals import (  # noqa: PLC0415
            run_async_bolt_app,
            send_async_response,
        )

        refusal = self.socket_mode_refusal

        class Checked(AsyncSocketModeHandler):
            async def handle(self, client: Any, req: Any) -> None:
                start = time.time()
                response = refusal(req.type, req.payload) or await run_async_bolt_app(self.app, req)
                await send_async_response(client, req, response, start)

        return Checked(self.app, app_token, web_client=self.client)

    def socket_mode_refusal(self, kind: str, payload: Any) -> BoltResponse | None:
        """Socket Mode's half of `handle`: an envelope's payload (`kind`: slash_commands,
        interactive, events_api) gets the same shape check as an HTTP body (`check_shape`), so
        an odd one never reaches bolt or a listener. The websocket needs no signature. A refused
        payload is still acked (else Slack sends it again), with a polite line for a command;
        None: hand it to bolt."""
        try:
            if not isinstance(payload, dict):
                raise Refused(400, "bad_request", "The payload is not an object.")
            check_shape({"payload": payload} if kind == "interactive" else payload)
            return None
        except Refused as exc:
            log.warning("Slack Socket Mode request refused: %s", exc.message)
        except Ignored:
            return BoltResponse(status=200, body="")
        if kind != "slash_commands":
            return BoltResponse(status=200, body="")
        return BoltResponse(
            status=200,
            body=json.dumps({"response_type": "ephemeral", "text": UNREADABLE}),
            headers={"content-type": "application/json"},
        )

    async def install(self, request: web.Request) -> web.Response:
        """`GET /slack/install`: the "Add to Slack" page (OAuth installs only)."""
        flow = self.app.oauth_flow
        if flow is None:
            return _refusal(404, "not_configured", "Installing in several workspaces is off.")
        response = await flow.handle_installation(_bolt_get(request))
        return await to_aiohttp_response(response)

    async def oauth_redirect(self, request: web.Request) -> web.Response:
        """`GET /slack/oauth_redirect`: Slack sends the installer back here with a code; the
        state is checked (cookie and database, once), the code exchanged (`oauth.v2.access`)
        and the workspace's installation stored."""
        flow = self.app.oauth_flow
        if flow is None:
            return _refusal(404, "not_configured", "Installing in several workspaces is off.")
        response = await flow.handle_callback(_bolt_get(request))
        return await to_aiohttp_response(response)

    # --- listeners (each acks at once and hands the rest to the supervisor) --------------------

    async def _workspace(self, req: AsyncBoltRequest, resp: BoltResponse, next: Any) -> Any:
        """Notes the workspace this turn came from: with OAuth installs, every Web API call the
        turn makes (its background work included) uses that workspace's bot token."""
        CURRENT_TEAM.set(req.context.team_id)
        return await next()

    async def _on_command(self, ack: Any, body: dict[str, Any]) -> None:
        user = body.get("user_id", "")
        # Acknowledge first: the person's limit is counted in the database just after, before
        # any form opens (bench/ack.py: the count in the ack held a burst of commands in the
        # database's line).
        await ack()
        turn = Turn(
            platform=Platform.SLACK,
            kind=TurnKind.START,
            person=_person({"id": user, "name": body.get("user_name")}, body.get("team_id"), None),
            conversation=body.get("channel_id") or user,
            text=body.get("text") or "",
            id=body.get("trigger_id"),
        )
        target = Recipient(
            user=user,
            channel=body.get("channel_id"),
            trigger_id=body.get("trigger_id"),
        )
        self._spawn(
            self._through(self._form_arrival(turn, target), target), target, "slack.open_form"
        )

    async def _on_submit(self, ack: Any, body: dict[str, Any]) -> None:
        view = body.get("view") or {}
        try:
            meta = parse_json_object(view.get("private_metadata") or "{}")
        except BadBody:
            meta = {}
        meta = meta if isinstance(meta, dict) else {}
        user = body.get("user") or {}
        user_id = str(user.get("id", ""))
        values = normalise_values((view.get("state") or {}).get("values") or {})
        channel = meta.get("conversation") if isinstance(meta.get("conversation"), str) else None
        turn = Turn(
            platform=Platform.SLACK,
            kind=TurnKind.SUBMIT,
            person=_person(user, _team(body), self._cached_email(user_id)),
            conversation=channel or user_id,
            values=values,
            id=view.get("id"),
        )
        checked = self.runtime.conversation.check_form(turn)
        if isinstance(checked, FormErrors):
            await ack(response_action="errors", errors=_errors_for(view, checked.errors))
            return
        await ack()  # closes the modal
        target = Recipient(user=user_id, channel=channel)
        arrival = Arrival.of(turn, answers=checked)
        self._spawn(self._through(arrival, target), target, "slack.diagnosis")

    async def _on_action(self, ack: Any, body: dict[str, Any]) -> None:
        await ack()
        action = body["actions"][0]  # check_shape: a dict with one of our action ids
        user = body.get("user") or {}
        user_id = str(user.get("id", ""))
        container = body.get("container") or {}
        channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
        ephemeral = bool(container.get("is_ephemeral"))
        source = None
        if channel:
            source = MessageRef(
                channel=channel,
                ts=None if ephemeral else container.get("message_ts"),
                ephemeral=ephemeral,
                response_url=body.get("response_url"),
            )
        target = Recipient(
            user=user_id,
            channel=channel,
            trigger_id=body.get("trigger_id"),
            source=source,
        )
        turn = Turn(
            platform=Platform.SLACK,
            kind=TurnKind.ACTION,
            person=_person(user, _team(body), self._cached_email(user_id)),
            conversation=channel or user_id,
            action=Action(action.get("action_id")),
            diagnosis_id=action.get("value") or None,
            values={"diagnosis_id": action.get("value")} if action.get("value") else {},
            id=action.get("action_ts"),
        )
        # An escalation names the person as the helpdesk knows them (users.info).
        enrich = self._known_person if turn.action is Action.ESCALATE else None
        self._spawn(self._through(Arrival.of(turn, enrich=enrich), target), target, "slack.act")

    async def _through(self, arrival: Arrival, target: Recipient, *, retry: str = "0") -> None:
        """What arrived, through the turn pipeline (dedupe -> rate limit -> authorise -> route,
        `dialogs.pipeline`); its outcome as Web API calls. Runs after the ack."""
        match await self.runtime.pipeline.handle(arrival):
            case Duplicate():
                if arrival.delivery:
                    log.info("ignored duplicate Slack event %s (retry %s)", arrival.delivery, retry)
            case TurnRefused(words=words):
                await self.send(target, Notice(text=words))
            case Replies(replies=replies):
                await self._stream(target, replies)
            case CasePressed(pressed=pressed):
                if pressed.words:
                    await self.send(target, Notice(text=pressed.words))
            case HomeCard(card=card):
                view = render(card, Target.SLACK_HOME)
                await self.client.views_publish(user_id=arrival.person_id, view=view)

    async def _known_person(self, person: Person) -> Person:
        name = await self._name_of(person.id, person.name or person.id)
        email = person.email or self._cached_email(person.id)
        return person.model_copy(update={"name": name, "email": email})

    async def _known_actor(self, actor: Actor) -> Actor:
        return replace(actor, name=await self._name_of(actor.id, actor.name))

    # --- the helpdesk loop -----------------------------------------------------------------------

    def helpdesk_channel(self) -> SlackCaseChannel:
        """Where this bot posts case cards (MAILFIX_HELPDESK_SLACK_CHANNEL) and tells people."""
        settings = self.runtime.settings
        return SlackCaseChannel(
            self.client, settings.helpdesk_slack_channel, team=settings.helpdesk_slack_team
        )

    async def tell_person(self, stored: StoredDiagnosis, text: str) -> None:
        """A message to the person a diagnosis is for, in their DM with the bot. Outside any
        turn (housekeeping): with OAuth installs, the workspace the diagnosis was asked from
        gives the bot token."""
        with in_workspace(stored.workspace):
            opened = await self.client.conversations_open(users=stored.person_id)
            dm = str((opened.get("channel") or {})["id"])
            await self.client.chat_postMessage(channel=dm, **_message(_notice(text)))

    async def _on_case_action(self, ack: Any, body: dict[str, Any]) -> None:
        """Claim / Ask / Resolve / Approve / Reject on a case card. Who clicked is
        `body.user.id` in workspace `body.team.id`; what they may do is decided from stored
        state (`dialogs.case_buttons.press`). One click acts once, on one replica."""
        await ack()
        action = body["actions"][0]  # check_shape: a dict with one of our action ids
        user = body.get("user") or {}
        user_id = str(user.get("id", ""))
        verb = CaseAction(action["action_id"])
        value = str(action.get("value") or "")
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
            "channel_id"
        )
        actor = Actor(
            id=user_id,
            name=_person(user, None, None).name or user_id,
            platform=Platform.SLACK.value,
            workspace=_team(body),
        )
        payload = {"proposal": value} if verb in (CaseAction.APPROVE, CaseAction.REJECT) else {}
        payload = payload or {"case": value}
        inputs = {QUESTION_INPUT: _question_typed(body)}
        pressed = CasePress(
            verb,
            payload,
            inputs,
            actor,
            click=str(action.get("action_ts")),
            enrich=self._known_actor,
        )
        target = Recipient(user=user_id, channel=channel)  # words only the clicker sees
        self._spawn(
            self._through(Arrival.click(Platform.SLACK, pressed), target), None, "slack.case"
        )

    async def _on_answer_button(self, ack: Any, body: dict[str, Any]) -> None:
        """The person's Answer button under a question: acked, then the answer modal opened at
        once (the trigger id lives 3 s, §A3) when the case waits for this person's answer."""
        await ack()
        action = body["actions"][0]
        number = case_number(action.get("value"))
        trigger = body.get("trigger_id")
        user_id = str((body.get("user") or {}).get("id", ""))
        if number is not None and trigger:
            target = Recipient(user=user_id, trigger_id=trigger)
            self._spawn(self._open_answer(number, target), target, "slack.answer")

    async def _open_answer(self, number: int, target: Recipient) -> None:
        helpdesk = self.runtime.helpdesk
        case = await helpdesk.cases.case(number) if helpdesk is not None else None
        if case is None or case.person_id != target.user or case.state is not CaseState.WAITING:
            text = f"Case {number} is not waiting for an answer from you."
            await self.send(target, Notice(text=text))
            return
        view = answer_view(number, case.question)
        await self.client.views_open(trigger_id=target.trigger_id or "", view=view)

    async def _on_answer(self, ack: Any, body: dict[str, Any]) -> None:
        """The answer modal's submission: back to the case (only the case's own person)."""
        view = body.get("view") or {}
        try:
            meta = parse_json_object(view.get("private_metadata") or "{}")
        except BadBody:
            meta = {}
        number = case_number(meta.get("case")) if isinstance(meta, dict) else None
        values = normalise_values((view.get("state") or {}).get("values") or {})
        text = values.get(ANSWER_INPUT)
        text = text.strip() if isinstance(text, str) else ""
        if not text or len(text) > MAX_ANSWER:
            why = (
                "Type your answer first." if not text else f"Keep it under {MAX_ANSWER} characters."
            )
            await ack(response_action="errors", errors={ANSWER_INPUT: why})
            return
        await ack()
        user_id = str((body.get("user") or {}).get("id", ""))
        target = Recipient(user=user_id)
        if number is not None:
            self._spawn(self._answer(number, target, text), target, "slack.answer")

    async def _answer(self, number: int, target: Recipient, text: str) -> None:
        helpdesk = self.runtime.helpdesk
        case = await helpdesk.answer(number, target.user, text) if helpdesk else None
        if case is None:
            words = f"Case {number} is no longer waiting for an answer: nothing was sent."
        else:
            words = f"Sent to the helpdesk with case {number}."
        await self.send(target, Notice(text=words))

    async def _name_of(self, user: str, fallback: str) -> str:
        """The clicker's name as people know it (users.info real name), cached a while."""
        cached = self._names.get(user)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        name = fallback
        try:
            info = await self.client.users_info(user=user)
            found = info.get("user") or {}
            profile = found.get("profile") or {}
            name = profile.get("real_name") or found.get("real_name") or fallback
            self._emails[user] = (time.monotonic() + EMAIL_TTL, profile.get("email") or None)
        except SlackApiError as exc:
            log.info("users.info failed for %s: %s", user, exc.response.get("error"))
        self._names[user] = (time.monotonic() + EMAIL_TTL, str(name))
        return str(name)

    async def _on_home(
        self, event: dict[str, Any], body: dict[str, Any], request: AsyncBoltRequest
    ) -> None:
        if event.get("tab", "home") != "home":  # the Messages tab sends this event too
            return
        user = str(event.get("user", ""))
        person = Person(id=user, workspace=_team(body), email=self._cached_email(user))
        # Platform retries (`X-Slack-Retry-Num`) and duplicate deliveries: shown once.
        retry = (request.headers.get("x-slack-retry-num") or ["0"])[0]
        arrival = Arrival.home(Platform.SLACK, person, delivery=body.get("event_id"))
        self._spawn(self._through(arrival, Recipient(user=user), retry=retry), None, "slack.home")

    # --- background work -----------------------------------------------------------------------

    def _spawn(self, work: Any, target: Recipient | None, name: str) -> None:
        async def on_error(exc: BaseException) -> None:
            if target is not None:
                await self._report_crash(target)

        try:
            self.runtime.supervisor.spawn(work, name=name, on_error=on_error)
        except RuntimeError:  # shutting down: the request was acked, the work is dropped
            log.info("server shutting down: dropped %s", name)

    def _form_arrival(self, turn: Turn, target: Recipient) -> Arrival:
        """/mailfix: the form, prefilled with the person's email when we know it or may look
        it up (an only-you line instead, when the person's limit is used up: nothing opens)."""
        settings = self.runtime.settings
        lookup = settings.slack_lookup_email and not address_from_text(turn.text)
        cached = self._emails.get(target.user)
        if lookup and cached is not None and cached[0] > time.monotonic():
            turn = turn.model_copy(update={"person": _with_email(turn.person, cached[1])})
            lookup = False
        if not lookup:
            return Arrival.of(turn)

        async def with_email(person: Person) -> Person:
            # The trigger id dies 3 s after the command (§A3): spend it on a loading view now,
            # then look the email up; `send` swaps the real form in.
            loading = render(_notice("Opening the form…"), Target.SLACK_MODAL)
            opened = await self.client.views_open(trigger_id=target.trigger_id or "", view=loading)
            target.loading = opened.get("view") or {}
            return _with_email(person, await self._email_of(person.id))

        return Arrival.of(turn, enrich=with_email)

    async def _email_of(self, user: str) -> str | None:
        """The person's email from their profile (users:read.email), or None."""
        email: str | None = None
        try:
            info = await self.client.users_info(user=user)
            profile = (info.get("user") or {}).get("profile") or {}
            email = profile.get("email") or None
        except SlackApiError as exc:
            log.info("users.info failed for %s: %s", user, exc.response.get("error"))
        self._emails[user] = (time.monotonic() + EMAIL_TTL, email)
        return email

    def _cached_email(self, user: str) -> str | None:
        cached = self._emails.get(user)
        return cached[1] if cached is not None and cached[0] > time.monotonic() else None

    async def _stream(self, target: Recipient, replies: AsyncIterator[Reply]) -> None:
        try:
            async for reply in replies:
                await self.send(target, reply)
        finally:
            # Close the flow now, not at garbage collection: its cleanup marks an interrupted
            # diagnosis as failed (on shutdown this runs inside the cancellation).
            aclose = getattr(replies, "aclose", None)
            if aclose is not None:
                await aclose()
        await self._flush(target)

    async def _report_crash(self, target: Recipient) -> None:
        """Turn a crashed background task into an error card, never silence."""
        card = CardSpec(
            template="error",
            data=ErrorData(
                title="Something went wrong",
                message="mailfix hit an unexpected problem and stopped. Nothing was changed.",
                try_next=[f"Type {COMMAND} to try again in a minute."],
            ).model_dump(mode="json"),
        )
        last = next(reversed(target.posted), None)
        target.held.clear()
        reply: Reply = Update(card=card, key=last) if last else Post(card=card, key="error")
        await self.send(target, reply)
        await self._flush(target)

    # --- Reply -> Web API ----------------------------------------------------------------------

    async def send(self, target: Recipient, reply: Reply) -> None:
        """One reply, one (or two) Web API calls."""
        match reply:
            case ShowForm(card=card) if target.loading is not None:
                view, target.loading = target.loading, None
                await self.client.views_update(
                    view_id=view.get("id"),
                    hash=view.get("hash"),
                    view=render(card, Target.SLACK_MODAL),
                )
            case ShowForm(card=card):
                if target.trigger_id:
                    await self.client.views_open(
                        trigger_id=target.trigger_id, view=render(card, Target.SLACK_MODAL)
                    )
                else:  # no trigger id (e.g. a retry): a modal cannot open; say how to start
                    await self.send(target, Notice(text=f"Type {COMMAND} to open the form."))
            case FormErrors(errors=errors):
                text = "Please check: " + "; ".join(errors.values())
                await self.send(target, Notice(text=text))
            case Post(card=card, key=key):
                target.posted[key] = await self._post(target, _message(card))
            case Update(card=card, key=key):
                ref = target.posted.get(key) or target.source
                if ref is None:
                    target.posted[key] = await self._post(target, _message(card))
                elif ref.ephemeral or ref.ts is None:
                    target.held[key] = card  # sent once, by _flush
                else:
                    await self.client.chat_update(channel=ref.channel, ts=ref.ts, **_message(card))
            case Notice(text=text):
                await self._post(target, _message(_notice(text)), prefer_ephemeral=True)

    async def _flush(self, target: Recipient) -> None:
        """Send the held (last) state of every ephemeral message that changed."""
        held, target.held = target.held, {}
        for key, card in held.items():
            ref = target.posted.get(key) or target.source
            message = _message(card)
            if ref is not None and ref.response_url:
                await AsyncWebhookClient(ref.response_url).send(
                    **message, replace_original=True, response_type="ephemeral"
                )
            else:
                await self._post(target, message)

    async def _post(
        self, target: Recipient, message: dict[str, Any], *, prefer_ephemeral: bool = False
    ) -> MessageRef:
        ephemeral = self.mode is ReplyMode.EPHEMERAL or prefer_ephemeral
        if ephemeral and target.channel:
            try:
                await self.client.chat_postEphemeral(
                    channel=target.channel, user=target.user, **message
                )
                return MessageRef(channel=target.channel, ephemeral=True)
            except SlackApiError as exc:
                if exc.response.get("error") not in _NOT_HERE:
                    raise
                error = exc.response.get("error")
                log.info("cannot post in %s (%s): using a DM", target.channel, error)
        if target.dm is None:
            opened = await self.client.conversations_open(users=target.user)
            target.dm = str((opened.get("channel") or {})["id"])
        posted = await self.client.chat_postMessage(channel=target.dm, **message)
        return MessageRef(channel=str(posted.get("channel") or target.dm), ts=posted.get("ts"))


def _message(card: CardSpec) -> dict[str, Any]:
    rendered = render(card, Target.SLACK_MESSAGE)
    return {"text": rendered.get("text", ""), "blocks": rendered.get("blocks", [])}


def _notice(text: str) -> CardSpec:
    return CardSpec(template="notice", data=NoticeData(text=text).model_dump(mode="json"))


def _with_email(person: Person, email: str | None) -> Person:
    return person.model_copy(update={"email": email}) if email else person


def _team(body: Mapping[str, Any]) -> str | None:
    team = body.get("team")
    found = team.get("id") if isinstance(team, Mapping) else None
    user = body.get("user")
    if found is None and isinstance(user, Mapping):
        found = user.get("team_id")
    if found is None:
        found = body.get("team_id")
    return found if isinstance(found, str) else None


def _errors_for(view: Mapping[str, Any], errors: Mapping[str, str]) -> dict[str, str]:
    """Slack accepts errors only for input block ids in the view; put the rest on the first."""
    inputs = [
        str(b["block_id"])
        for b in view.get("blocks") or []
        if isinstance(b, Mapping) and b.get("type") == "input" and b.get("block_id")
    ]
    known = {k: v for k, v in errors.items() if k in inputs}
    rest = [v for k, v in errors.items() if k not in inputs]
    if rest and inputs:
        first = inputs[0]
        known[first] = "; ".join([known[first], *rest] if first in known else rest)
    return known
