"""Slack side: a thin translator between slack-bolt payloads and our Turn / Reply models.

In: a slash command, the intake modal's submission, a button, `app_home_opened` -> `Turn`.
Out: `Reply` -> Web API calls (`send`, one small function). Everything after the ack runs on the
server's task supervisor, so Slack always gets its answer well inside 3 seconds
(reference/chat-platforms.md §A2) and no work is lost or left running at shutdown.

Where results go (`MAILFIX_SLACK_REPLY_MODE`):
- `dm` (default): a direct message (`conversations.open` + `chat.postMessage`); progress edits
  the same message in place (`chat.update`).
- `ephemeral`: only-visible-to-you messages in the channel where the person typed `/mailfix`.
  Ephemeral messages cannot be edited with `chat.update`, and a `response_url` takes only 5
  posts (§A4), so edits of an ephemeral message are held back and the last state is sent once,
  when the flow is done. If the bot cannot post in that channel, it falls back to a DM.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.runtime import Runtime
from bot.settings import ReplyMode
from cards import Target, render
from cards.data import ErrorData, NoticeData
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

log = logging.getLogger(__name__)

COMMAND = "/mailfix"
INTAKE = "mailfix.intake"
EMAIL_TTL = 3600.0  # seconds a users.info email stays cached
# Errors of chat.postEphemeral that mean "not here": fall back to a DM.
_NOT_HERE = {"channel_not_found", "not_in_channel", "user_not_in_channel", "is_archived"}


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
        return [o.get("value") for o in element.get("selected_options") or []]
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
    return Person(
        id=str(user.get("id", "")),
        name=user.get("name") or user.get("username") or user.get("user_name"),
        email=email,
        workspace=team,
    )


class SlackBot:
    """The bolt app, its Web API client, and the translation both ways."""

    def __init__(self, runtime: Runtime, *, client: AsyncWebClient | None = None) -> None:
        settings = runtime.settings
        if settings.slack_bot_token is None:
            raise ValueError("MAILFIX_SLACK_BOT_TOKEN is not set")
        self.runtime = runtime
        self.mode = settings.slack_reply_mode
        self.client = client or AsyncWebClient(
            token=settings.slack_bot_token.get_secret_value(),
            base_url=settings.slack_api_url,
            logger=logging.getLogger("slack_sdk.web"),
        )
        # Only connection errors are retried by default; 429 needs its own handler (§A11).
        self.client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=2))
        secret = settings.slack_signing_secret
        # The HTTP endpoint exists only with a signing secret (server.py); Socket Mode alone
        # (an xapp- token, no secret) receives over the websocket, which needs no signature.
        self.http_enabled = secret is not None
        self.app = AsyncApp(
            signing_secret=secret.get_secret_value() if secret is not None else "",
            client=self.client,
            process_before_response=False,
            request_verification_enabled=self.http_enabled,
            logger=logging.getLogger("slack_bolt.mailfix"),
        )
        self._emails: dict[str, tuple[float, str | None]] = {}
        self.app.use(self._dedupe)
        self.app.command(COMMAND)(self._on_command)
        self.app.view(INTAKE)(self._on_submit)
        for action in Action:
            self.app.action(action.value)(self._on_action)
        self.app.event("app_home_opened")(self._on_home)

    # --- HTTP ----------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        """`POST /slack/events`: bolt verifies the signature and dispatches."""
        bolt_request = await to_bolt_request(request)
        response = await self.app.async_dispatch(bolt_request)
        return await to_aiohttp_response(response)

    # --- listeners (each acks at once and hands the rest to the supervisor) --------------------

    async def _dedupe(self, req: AsyncBoltRequest, resp: BoltResponse, next: Any) -> Any:
        """Platform retries (`X-Slack-Retry-Num`) and duplicate deliveries: handle once."""
        body = req.body
        event_id = body.get("event_id") if isinstance(body, dict) else None
        if (
            isinstance(event_id, str)
            and event_id
            and not await self.runtime.events.first_time(f"slack:{event_id}")
        ):
            retry = (req.headers.get("x-slack-retry-num") or ["0"])[0]
            log.info("ignored duplicate Slack event %s (retry %s)", event_id, retry)
            return BoltResponse(status=200, body="")
        return await next()

    async def _on_command(self, ack: Any, body: dict[str, Any]) -> None:
        user = body.get("user_id", "")
        limit = self.runtime.limiter.peek(user)
        if not limit.allowed:
            # Only-you text as the ack itself: nothing to open, nothing to run.
            await ack(text=self.runtime.limiter.message(limit), response_type="ephemeral")
            return
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
        self._spawn(self._open_form(turn, target), target, "slack.open_form")

    async def _on_submit(self, ack: Any, body: dict[str, Any]) -> None:
        view = body.get("view") or {}
        try:
            meta = json.loads(view.get("private_metadata") or "{}")
        except ValueError:
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
        limit = self.runtime.limiter.take(user_id)
        if not limit.allowed:
            notice = Notice(text=self.runtime.limiter.message(limit))
            self._spawn(self.send(target, notice), target, "slack.rate_limited")
            return
        replies = self.runtime.conversation.run(turn, checked)
        self._spawn(self._stream(target, replies), target, "slack.diagnosis")

    async def _on_action(self, ack: Any, body: dict[str, Any]) -> None:
        await ack()
        action = (body.get("actions") or [{}])[0]
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
        if turn.action is Action.RUN_AGAIN:
            limit = self.runtime.limiter.take(user_id)
            if not limit.allowed:
                notice = Notice(text=self.runtime.limiter.message(limit))
                self._spawn(self.send(target, notice), target, "slack.rate_limited")
                return
        self._spawn(self._stream(target, self.runtime.conversation.act(turn)), target, "slack.act")

    async def _on_home(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        if event.get("tab", "home") != "home":  # the Messages tab sends this event too
            return
        user = str(event.get("user", ""))
        person = Person(id=user, workspace=_team(body), email=self._cached_email(user))
        self._spawn(self._publish_home(person), None, "slack.home")

    # --- background work -----------------------------------------------------------------------

    def _spawn(self, work: Any, target: Recipient | None, name: str) -> None:
        async def on_error(exc: BaseException) -> None:
            if target is not None:
                await self._report_crash(target)

        try:
            self.runtime.supervisor.spawn(work, name=name, on_error=on_error)
        except RuntimeError:  # shutting down: the request was acked, the work is dropped
            log.info("server shutting down: dropped %s", name)

    async def _open_form(self, turn: Turn, target: Recipient) -> None:
        settings = self.runtime.settings
        lookup = settings.slack_lookup_email and not address_from_text(turn.text)
        cached = self._emails.get(target.user)
        if lookup and cached is not None and cached[0] > time.monotonic():
            turn = turn.model_copy(update={"person": _with_email(turn.person, cached[1])})
            lookup = False
        if not lookup:
            await self.send(target, self.runtime.conversation.start(turn))
            return
        # The trigger id dies 3 s after the command (§A3): spend it on a loading view now,
        # then look the email up and swap the real form in.
        loading = render(_notice("Opening the form…"), Target.SLACK_MODAL)
        opened = await self.client.views_open(trigger_id=target.trigger_id or "", view=loading)
        view = opened.get("view") or {}
        email = await self._email_of(target.user)
        turn = turn.model_copy(update={"person": _with_email(turn.person, email)})
        form = render(self.runtime.conversation.start(turn).card, Target.SLACK_MODAL)
        await self.client.views_update(view_id=view.get("id"), hash=view.get("hash"), view=form)

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

    async def _publish_home(self, person: Person) -> None:
        spec = await self.runtime.conversation.home(person)
        await self.client.views_publish(user_id=person.id, view=render(spec, Target.SLACK_HOME))

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
    if isinstance(team, Mapping):
        return team.get("id")
    user = body.get("user")
    if isinstance(user, Mapping):
        return user.get("team_id")
    return body.get("team_id")


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
