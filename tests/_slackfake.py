"""A local fake of the Slack Web API, and signed Slack requests, for the bot tests.

`FakeSlack` is a real aiohttp server on 127.0.0.1, port 0. The bot's `AsyncWebClient` is pointed
at it with `slack_api_url`. It answers the methods the bot uses with the shapes Slack documents,
records every call (method, decoded body, headers) and lets a test wait for a call
deterministically (`await fake.wait_for("chat.update", 2)`), never by sleeping.

`SlackRequests` builds what Slack sends the bot: slash commands (form-encoded), interactivity
(`payload=` JSON) and Events API callbacks, signed with `SignatureVerifier.generate_signature`.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from slack_sdk.signature import SignatureVerifier

from bot.runtime import Runtime
from bot.server import RUNTIME, create_app
from bot.settings import Settings
from checks.advice import App
from checks.models import Cause, Finding, Report, Side, Status
from checks.registry import CATALOGUE
from checks.symptoms import Symptom

TOKEN = "xoxb-1111111111-2222222222-FAKEbotTOKENvalue0000"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # the signing secret (no recognisable shape)
APP_TOKEN = "xapp-1-A0001-3333333333-FAKEappTOKEN"
TEAM = "T0CONTOSO"
BOT_USER = "U0MAILFIX"
ANA = "U0ANA"
ANA_EMAIL = "ana@contoso.com"
BO = "U0BO"
CHANNEL = "C0GENERAL"
WAIT = 10.0  # seconds a test waits for an expected call before failing (never slept)


@dataclass
class Call:
    method: str
    body: dict[str, Any]
    headers: dict[str, str]


class FakeSocket:
    """The Socket Mode websocket, server side: sends envelopes, returns the bot's acks."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)

    async def send_envelope(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        envelope_id = f"env-{next(self._ids)}"
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[envelope_id] = answer
        await self.ws.send_json(
            {
                "envelope_id": envelope_id,
                "type": kind,
                "payload": payload,
                "accepts_response_payload": kind != "events_api",
                "retry_attempt": 0,
                "retry_reason": "",
            }
        )
        async with asyncio.timeout(WAIT):
            return await answer


@dataclass
class FakeSlack:
    token: str = TOKEN
    app_token: str = APP_TOKEN
    socket: FakeSocket | None = None
    calls: list[Call] = field(default_factory=list)
    # method -> Slack error code to answer with (e.g. {"chat.postEphemeral": "channel_not_found"})
    errors: dict[str, str] = field(default_factory=dict)
    # method -> extra fields of that error answer (e.g. missing_scope's "needed" and "provided")
    error_fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    # method -> event the handler waits for before answering (to prove the bot does not wait)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {
            ANA: {"name": "ana", "real_name": "Ana Silva", "email": ANA_EMAIL},
            BO: {"name": "bo", "real_name": "Bo Chen", "email": "bo@contoso.com"},
        }
    )
    # user-group id (S…) -> member user ids (usergroups.users.list)
    usergroups: dict[str, list[str]] = field(default_factory=dict)
    # channel id -> name (conversations.info); other ids are channel_not_found
    channel_names: dict[str, str] = field(default_factory=dict)
    # OAuth installs (oauth.v2.access): the app's client id and secret, and code -> the
    # workspace that installed with it ({"team": "T…", "token": "xoxb-…"}); the bot tokens of
    # installed workspaces are accepted like `token`
    client_id: str = "1111111111.2222222222"
    client_secret: str = "fake0client0secret0value00000000"
    oauth_codes: dict[str, dict[str, str]] = field(default_factory=dict)
    installed: dict[str, str] = field(default_factory=dict)  # bot token -> team id
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _server: TestServer | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{hook}", self._response_url)
        app.router.add_get("/link", self._socket_mode)
        self._server = TestServer(app, host="127.0.0.1", port=0)
        await self._server.start_server()
        return self.url

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return str(self._server.make_url("/api/"))

    def response_url(self, hook: str = "hook1") -> str:
        assert self._server is not None
        return str(self._server.make_url(f"/response/{hook}"))

    # --- what tests read -----------------------------------------------------------------------

    def of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    @property
    def methods(self) -> list[str]:
        return [c.method for c in self.calls]

    async def wait_for(self, method: str, count: int = 1) -> list[Call]:
        """Wait until `method` was called at least `count` times; return those calls."""
        await self.wait_until(lambda: len(self.of(method)) >= count, f"{count}× {method}")
        return self.of(method)

    async def wait_until(self, predicate: Callable[[], bool], what: str = "a call") -> list[Call]:
        try:
            async with asyncio.timeout(WAIT), self._changed:
                await self._changed.wait_for(predicate)
        except TimeoutError:
            raise AssertionError(f"Slack never got {what}; it got {self.methods}") from None
        return list(self.calls)

    # --- the API ---------------------------------------------------------------------------------

    async def _record(self, call: Call) -> None:
        async with self._changed:
            self.calls.append(call)
            self._changed.notify_all()

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        body = await _decode(request)
        await self._record(Call(method, body, dict(request.headers)))
        gate = self.gates.get(method)
        if gate is not None:
            await gate.wait()
        # Socket Mode's connection call is the one method that takes the app-level token;
        # oauth.v2.access takes the app's client id and secret (HTTP Basic).
        given = request.headers.get("Authorization", "")
        if method == "oauth.v2.access":
            return web.json_response(self._oauth_v2_access(body, given))
        tokens = {self.app_token} if method == "apps.connections.open" else {self.token}
        if method != "apps.connections.open":
            tokens |= set(self.installed)
        if given not in {f"Bearer {t}" for t in tokens}:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if method == "auth.test":  # which workspace's token asks
            body = {**body, "token": given.removeprefix("Bearer ")}
        if method in self.errors:
            extra = self.error_fields.get(method, {})
            return web.json_response({"ok": False, "error": self.errors[method], **extra})
        answer = getattr(self, "_" + method.replace(".", "_"), None)
        if answer is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        return web.json_response({"ok": True, **answer(body)})  # an answer may set ok: False

    async def _socket_mode(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        socket = FakeSocket(ws)
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": 1,
                "debug_info": {"host": "applink-fake", "approximate_connection_time": 18060},
                "connection_info": {"app_id": "A0MAILFIX"},
            }
        )
        async with self._changed:
            self.socket = socket
            self._changed.notify_all()
        async for message in ws:
            if message.type != web.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            answer = socket.pending.pop(data.get("envelope_id", ""), None)
            if answer is not None and not answer.done():
                answer.set_result(data)
        return ws

    async def connected(self) -> FakeSocket:
        await self.wait_until(lambda: self.socket is not None, "a Socket Mode connection")
        assert self.socket is not None
        return self.socket

    def _apps_connections_open(self, body: dict[str, Any]) -> dict[str, Any]:
        assert self._server is not None
        url = self._server.make_url("/link").with_scheme("ws")
        return {"url": f"{url}?ticket=fake-ticket&app_id=A0MAILFIX"}

    async def _response_url(self, request: web.Request) -> web.Response:
        await self._record(Call("response_url", await request.json(), dict(request.headers)))
        return web.Response(text="ok")

    def _next_ts(self) -> str:
        return f"{1763800000 + next(self._ts)}.000100"

    def _oauth_v2_access(self, body: dict[str, Any], authorization: str) -> dict[str, Any]:
        """https://api.slack.com/methods/oauth.v2.access: the code of an "Add to Slack" click
        exchanged for the workspace's bot token (once)."""
        basic = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        posted = (body.get("client_id"), body.get("client_secret"))
        if authorization != f"Basic {basic}" and posted != (self.client_id, self.client_secret):
            return {"ok": False, "error": "invalid_client_id"}
        install = self.oauth_codes.pop(str(body.get("code", "")), None)
        if install is None:
            return {"ok": False, "error": "invalid_code"}
        self.installed[install["token"]] = install["team"]
        return {
            "ok": True,
            "access_token": install["token"],
            "token_type": "bot",
            "scope": "commands,chat:write,im:write",
            "bot_user_id": BOT_USER,
            "app_id": "A0MAILFIX",
            "team": {"id": install["team"], "name": install.get("name", "Fabrikam")},
            "enterprise": None,
            "authed_user": {"id": install.get("user", "U0INSTALLER")},
            "is_enterprise_install": False,
        }

    def _auth_test(self, body: dict[str, Any]) -> dict[str, Any]:
        token = str(body.get("token") or "")
        return {
            "url": "https://contoso.slack.com/",
            "team": "Contoso",
            "user": "mailfix",
            "team_id": self.installed.get(token, TEAM),
            "user_id": BOT_USER,
            "bot_id": "B0MAILFIX",
            "is_enterprise_install": False,
        }

    def _view(self, view: dict[str, Any], view_id: str) -> dict[str, Any]:
        return {
            "view": {
                "id": view_id,
                "team_id": TEAM,
                "hash": f"{int(time.time())}.{view_id}",
                "app_id": "A0MAILFIX",
                "bot_id": "B0MAILFIX",
                "state": {"values": {}},
                "private_metadata": "",
                "callback_id": "",
                **view,
            }
        }

    def _views_open(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._view(body.get("view") or {}, f"V{next(self._ts):04d}")

    def _views_update(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._view(body.get("view") or {}, body.get("view_id") or "V0000")

    def _views_publish(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._view(body.get("view") or {}, f"VH{next(self._ts):04d}")

    def _chat_postMessage(self, body: dict[str, Any]) -> dict[str, Any]:
        ts = self._next_ts()
        return {
            "channel": body.get("channel"),
            "ts": ts,
            "message": {
                "type": "message",
                "bot_id": "B0MAILFIX",
                "text": body.get("text"),
                "ts": ts,
                "blocks": body.get("blocks") or [],
            },
        }

    def _chat_update(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "channel": body.get("channel"),
            "ts": body.get("ts"),
            "text": body.get("text"),
            "message": {"text": body.get("text"), "blocks": body.get("blocks") or []},
        }

    def _chat_postEphemeral(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"message_ts": self._next_ts()}

    def _conversations_open(self, body: dict[str, Any]) -> dict[str, Any]:
        user = str(body.get("users", "")).split(",")[0]
        return {"channel": {"id": f"D{user}"}}

    def _conversations_info(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = str(body.get("channel", ""))
        if channel not in self.channel_names:
            return {"ok": False, "error": "channel_not_found"}
        return {"channel": {"id": channel, "name": self.channel_names[channel]}}

    def _usergroups_users_list(self, body: dict[str, Any]) -> dict[str, Any]:
        group = str(body.get("usergroup", ""))
        if group not in self.usergroups:
            return {"ok": False, "error": "no_such_subteam"}
        return {"users": list(self.usergroups[group])}

    def _users_info(self, body: dict[str, Any]) -> dict[str, Any]:
        uid = str(body.get("user", ""))
        user = self.users.get(uid)
        if user is None:
            return {"user": {"id": uid, "name": uid, "profile": {}}}
        return {
            "user": {
                "id": uid,
                "team_id": TEAM,
                "name": user["name"],
                "real_name": user["real_name"],
                "is_bot": False,
                "profile": {
                    "real_name": user["real_name"],
                    "display_name": user["name"],
                    "email": user["email"],
                },
            }
        }


async def _decode(request: web.Request) -> dict[str, Any]:
    """Arguments of a Web API call: query string, JSON or form body (slack_sdk uses all three,
    e.g. `users.info` is a GET). JSON-valued form fields are decoded."""
    body: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        data = await request.json()
        return {**body, **data} if isinstance(data, dict) else body
    form = await request.post()
    for key, value in form.items():
        text = str(value)
        if key in ("view", "blocks", "attachments") and text[:1] in "[{":
            body[key] = json.loads(text)
        else:
            body[key] = text
    return body


# --- what Slack sends the bot ----------------------------------------------------------------


class SlackRequests:
    """Signed requests as Slack builds them (https://api.slack.com/authentication/verifying-requests-from-slack)."""

    def __init__(self, secret: str = SECRET) -> None:
        self.verifier = SignatureVerifier(secret)

    def headers(
        self, body: str, *, timestamp: int | None = None, content_type: str
    ) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = self.verifier.generate_signature(timestamp=ts, body=body)
        assert signature is not None
        return {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature,
        }

    def form(self, fields: dict[str, Any], **kw: Any) -> tuple[str, dict[str, str]]:
        body = urlencode(fields)
        return body, self.headers(body, content_type="application/x-www-form-urlencoded", **kw)

    def event(self, payload: dict[str, Any], **kw: Any) -> tuple[str, dict[str, str]]:
        body = json.dumps(payload)
        return body, self.headers(body, content_type="application/json", **kw)

    def command(
        self,
        text: str = "",
        *,
        user: str = ANA,
        channel: str = CHANNEL,
        trigger: str = "T-1",
        timestamp: int | None = None,
        team: str = TEAM,
        response_url: str = "https://hooks.slack.invalid/commands/T0/1/abc",
    ) -> tuple[str, dict[str, str]]:
        return self.form(
            {
                "token": "legacy-verification-value",
                "team_id": team,
                "team_domain": "contoso",
                "channel_id": channel,
                "channel_name": "general",
                "user_id": user,
                "user_name": "ana" if user == ANA else "bo",
                "command": "/mailfix",
                "text": text,
                "api_app_id": "A0MAILFIX",
                "is_enterprise_install": "false",
                "response_url": response_url,
                "trigger_id": trigger,
            },
            timestamp=timestamp,
        )

    def submission(
        self,
        values: dict[str, Any],
        *,
        user: str = ANA,
        conversation: str = CHANNEL,
        view_id: str = "V0001",
        team: str = TEAM,
    ) -> tuple[str, dict[str, str]]:
        """A `view_submission` of the intake modal with `values` as the person typed them."""
        state: dict[str, Any] = {}
        blocks = []
        for field_id, value in values.items():
            blocks.append({"type": "input", "block_id": field_id})
            if field_id in ("app", "symptom", "since", "where"):
                element = {
                    "type": "static_select",
                    "selected_option": (
                        {"text": {"type": "plain_text", "text": value}, "value": value}
                        if value is not None
                        else None
                    ),
                }
            else:
                element = {"type": "plain_text_input", "value": value}
            state[field_id] = {field_id: element}
        payload = {
            "type": "view_submission",
            "team": {"id": team, "domain": "contoso"},
            "user": {"id": user, "username": "ana", "name": "ana", "team_id": team},
            "api_app_id": "A0MAILFIX",
            "token": "legacy-verification-value",
            "trigger_id": "T-submit",
            "view": {
                "id": view_id,
                "team_id": team,
                "type": "modal",  # bolt's matcher needs it (reference §A8)
                "callback_id": "mailfix.intake",
                "private_metadata": json.dumps(
                    {"conversation": conversation, "diagnosis_id": None}
                ),
                "blocks": blocks,
                "state": {"values": state},
                "hash": "1763800000.abc",
                "title": {"type": "plain_text", "text": "Mail connection check"},
            },
            "response_urls": [],
            "is_enterprise_install": False,
        }
        return self.form({"payload": json.dumps(payload)})

    def action(
        self,
        action_id: str,
        value: str,
        *,
        user: str = ANA,
        channel: str = f"D{ANA}",
        message_ts: str = "1763800001.000100",
        ephemeral: bool = False,
        response_url: str = "https://hooks.slack.invalid/actions/T0/1/xyz",
        team: str = TEAM,
        name: str = "ana",
        action_ts: str | None = None,
        state: dict[str, Any] | None = None,
        timestamp: int | None = None,
    ) -> tuple[str, dict[str, str]]:
        """A `block_actions` click. `state`: the message's inputs ({block: {action: element}})
        as Slack sends them with a click; `action_ts` names the click (a retry repeats it)."""
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {"id": user, "username": name, "name": name, "team_id": team},
            "api_app_id": "A0MAILFIX",
            "token": "legacy-verification-value",
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel,
                "is_ephemeral": ephemeral,
            },
            "trigger_id": "T-action",
            "team": {"id": team, "domain": "contoso"},
            "channel": {"id": channel, "name": "directmessage"},
            "message": {"type": "message", "ts": message_ts, "text": "results"},
            "response_url": response_url,
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": "buttons",
                    "value": value,
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Button"},
                    "action_ts": action_ts or f"{time.time():.6f}",
                }
            ],
        }
        if state is not None:
            payload["state"] = {"values": state}
        return self.form({"payload": json.dumps(payload)}, timestamp=timestamp)

    def home_opened(
        self, *, user: str = ANA, event_id: str = "Ev01HOME", tab: str = "home"
    ) -> dict[str, Any]:
        return {
            "token": "legacy-verification-value",
            "team_id": TEAM,
            "api_app_id": "A0MAILFIX",
            "event": {
                "type": "app_home_opened",
                "user": user,
                "channel": f"D{user}",
                "tab": tab,
                "event_ts": f"{time.time():.6f}",
            },
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "team_id": TEAM,
                    "user_id": BOT_USER,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
        }


# --- a running bot against the fake ----------------------------------------------------------

CAUSE = Cause(
    id="autodiscover-dns-missing",
    title="The autodiscover record for contoso.com is missing",
    confidence=0.9,
    checks=["dns.autodiscover", "autodiscover.v1"],
    side=Side.DNS,
)


@dataclass
class FakeDiagnose:
    """Stands in for the engine behind `Services.diagnose`: a real Report, real progress calls.

    `gate` holds the diagnosis until the test sets it; `cancelled` is set if it is cancelled.
    """

    gate: asyncio.Event | None = None
    failing: tuple[str, ...] = ("dns.autodiscover", "autodiscover.v1")
    requests: list[Any] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, request: Any, progress: Any) -> Report:
        self.requests.append(request)
        self.started.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        found = [
            Finding(
                check=check.id,
                status=Status.FAIL if check.id in self.failing else Status.PASS,
                summary=f"{check.title}: {'broken' if check.id in self.failing else 'fine'}",
            )
            for check in CATALOGUE
        ]
        for n, finding in enumerate(found, 1):
            outcome = progress(finding, n, len(found))
            if inspect.isawaitable(outcome):
                await outcome
        return Report(
            address=request.address,
            client=request.client,
            duration_ms=42,
            findings=found,
            causes=[CAUSE],
        )


@dataclass
class Bot:
    """The server under test (over real HTTP), the fake Slack it talks to, and helpers."""

    http: TestClient[web.Request, web.Application]
    slack: FakeSlack
    app: web.Application
    sign: SlackRequests
    diagnose: FakeDiagnose

    @property
    def runtime(self) -> Runtime:
        return self.app[RUNTIME]

    async def post(self, signed: tuple[str, dict[str, str]], **headers: str) -> ClientResponse:
        body, signed_headers = signed
        return await self.http.post(
            "/slack/events", data=body.encode(), headers={**signed_headers, **headers}
        )


GOOD_ANSWERS = {
    "address": "ana@contoso.com",
    "app": App.OUTLOOK_WINDOWS.value,
    "symptom": Symptom.CANNOT_CONNECT.value,
    "error_text": None,
    "since": "before",
    "since_when": None,
    "where": "office",
}


@asynccontextmanager
async def running_bot(
    tmp_path: Path,
    *,
    diagnose: FakeDiagnose | None = None,
    settings: dict[str, Any] | None = None,
    **create: Any,
) -> AsyncIterator[Bot]:
    """The whole server on 127.0.0.1:0 with SQLite in `tmp_path`, Slack faked on another port."""
    fake = FakeSlack()
    await fake.start()
    diagnose = diagnose or FakeDiagnose()
    values: dict[str, Any] = {
        "slack_bot_token": TOKEN,
        "slack_signing_secret": SECRET,
        "slack_api_url": fake.url,
        "state_dir": tmp_path,
        "slack_lookup_email": False,
        **(settings or {}),
    }
    config = Settings(**values)
    app = create_app(config, diagnose=diagnose, **create)
    try:
        async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as http:
            yield Bot(http, fake, app, SlackRequests(), diagnose)
    finally:
        await fake.close()


def blocks_text(blocks: list[dict[str, Any]]) -> str:
    """All text in Block Kit blocks, for assertions."""
    return json.dumps(blocks, ensure_ascii=False)


def buttons(blocks: list[dict[str, Any]]) -> dict[str, str]:
    """action_id -> value of every button in `blocks`."""
    found: dict[str, str] = {}
    for block in blocks:
        for element in block.get("elements") or []:
            if element.get("type") == "button" and "action_id" in element:
                found[element["action_id"]] = element.get("value", "")
    return found
