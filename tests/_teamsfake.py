"""A local fake of the Bot Connector service, and Teams activities, for the Teams bot tests.

`FakeConnector` is a real aiohttp server on 127.0.0.1, port 0; activities name it as their
`serviceUrl`, so every reply (POST), in-place edit (PUT) and member lookup (GET) the bot makes
lands here (reference/chat-platforms.md §B10). It answers with the Bot Connector's shapes
(`{"id": ...}` resource responses, a `TeamsChannelAccount` for members), records every call and
lets a test wait for one deterministically (`await fake.wait_for(...)`), never by sleeping.

`Activities` builds what Teams sends the bot: personal and channel messages (with the mention
entity), `adaptiveCard/action` invokes (Action.Execute) and Action.Submit message activities.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

WAIT = 10.0  # seconds a test waits for an expected call before failing (never slept)
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
BOT_ID = "28:9e4cbd1c-6d2f-4f51-8b5a-7a0e1c4b2f11"
BOT_NAME = "mailfix"
ANA_ID = "29:1ana-teams-user-id"
ANA_AAD = "6a1c4e2f-0b9d-4c3e-8f7a-1234567890ab"
ANA_EMAIL = "ana@contoso.com"
BO_ID = "29:1bo-teams-user-id"
BO_AAD = "7b2d5f30-1cae-4d4f-9a8b-234567890abc"
CY_ID = "29:1cy-teams-user-id"
CY_AAD = "8c3e6a41-2dbf-4e5a-8b9c-34567890abcd"
USERS = {  # Teams user id -> (name, Entra object id)
    ANA_ID: ("Ana Silva", ANA_AAD),
    BO_ID: ("Bo Chen", BO_AAD),
    CY_ID: ("Cy Osei", CY_AAD),
}
TEAM_ID = "19:team-general@thread.tacv2"
HELPDESK_CHANNEL = "19:5d2a7b9e3c4f4e1a8b6c0d9e8f7a6b5c@thread.tacv2"
PERSONAL = "a:1personal-chat-with-ana"
CHANNEL = "19:8c1f0c4e0f2b4d5f9a1b2c3d4e5f6a7b@thread.tacv2;messageid=1763800000001"
ADAPTIVE = "application/vnd.microsoft.card.adaptive"


@dataclass
class Call:
    method: str  # "POST" | "PUT" | "GET" | "CREATE" (POST /v3/conversations)
    conversation: str
    activity_id: str | None  # the replied-to id (POST) or the edited id (PUT)
    body: dict[str, Any]
    answered_id: str | None = None
    authorization: str | None = None  # the bot's Authorization header, as sent

    @property
    def card(self) -> dict[str, Any] | None:
        body = self.body.get("activity") if self.method == "CREATE" else self.body
        for attachment in (body or {}).get("attachments") or []:
            if attachment.get("contentType") == ADAPTIVE:
                content: dict[str, Any] = attachment["content"]
                return content
        return None

    @property
    def text(self) -> str | None:
        return self.body.get("text")


@dataclass
class FakeConnector:
    calls: list[Call] = field(default_factory=list)
    members: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {
            ANA_ID: {
                "id": ANA_ID,
                "name": "Ana Silva",
                "aadObjectId": ANA_AAD,
                "email": ANA_EMAIL,
                "userPrincipalName": ANA_EMAIL,
                "tenantId": TENANT,
            }
        }
    )
    fail_puts: int = 0  # refuse this many PUTs (403), as the Bot Connector does
    # Refuse new conversations (POST /v3/conversations) with this status: 403 as when the app is
    # not installed in the team (BotNotInConversationRoster), 404 for an unknown channel id,
    # 401 for a token the service does not accept (§B5).
    refuse_create: int | None = None
    channels: set[str] = field(default_factory=lambda: {HELPDESK_CHANNEL})
    # GET /v3/teams/{id}/conversations: each team's channels (the General one has no name).
    team_channels: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {
            TEAM_ID: [{"id": TEAM_ID}, {"id": HELPDESK_CHANNEL, "name": "Helpdesk"}]
        }
    )
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _server: TestServer | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v3/conversations", self._create)
        app.router.add_post("/v3/conversations/{conv}/activities", self._send)
        app.router.add_post("/v3/conversations/{conv}/activities/{id}", self._send)
        app.router.add_put("/v3/conversations/{conv}/activities/{id}", self._update)
        app.router.add_get("/v3/conversations/{conv}/members/{member}", self._member)
        app.router.add_get("/v3/teams/{team}/conversations", self._team_channels)
        self._server = TestServer(app, host="127.0.0.1", port=0)
        await self._server.start_server()
        return self.url

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return str(self._server.make_url("/"))

    # --- what tests read -----------------------------------------------------------------------

    @property
    def posts(self) -> list[Call]:
        return [c for c in self.calls if c.method == "POST"]

    @property
    def puts(self) -> list[Call]:
        return [c for c in self.calls if c.method == "PUT"]

    async def wait_until(self, predicate: Callable[[], bool], what: str) -> list[Call]:
        try:
            async with asyncio.timeout(WAIT), self._changed:
                await self._changed.wait_for(predicate)
        except TimeoutError:
            seen = [(c.method, c.activity_id) for c in self.calls]
            raise AssertionError(f"the connector never got {what}; it got {seen}") from None
        return list(self.calls)

    # --- the API ---------------------------------------------------------------------------------

    async def _record(self, call: Call) -> None:
        async with self._changed:
            self.calls.append(call)
            self._changed.notify_all()

    async def _send(self, request: web.Request) -> web.Response:
        new_id = f"1763800{next(self._ids):06d}"
        call = Call(
            "POST",
            request.match_info["conv"],
            request.match_info.get("id"),
            await request.json(),
            answered_id=new_id,
            authorization=request.headers.get("Authorization"),
        )
        await self._record(call)
        return web.json_response({"id": new_id}, status=201)

    @property
    def created(self) -> list[Call]:
        """New conversations (a new thread in a channel): `conversation` is the channel id."""
        return [c for c in self.calls if c.method == "CREATE"]

    async def _create(self, request: web.Request) -> web.Response:
        """Create a conversation; in a Teams channel, a new thread whose first message is
        the parameters' activity. Answers `{"id": "<channel>;messageid=<id>", "activityId"}`."""
        body = await request.json()
        channel = ((body.get("channelData") or {}).get("channel") or {}).get("id", "")
        new_id = f"1763900{next(self._ids):06d}"
        call = Call(
            "CREATE",
            channel,
            None,
            body,
            answered_id=new_id,
            authorization=request.headers.get("Authorization"),
        )
        await self._record(call)
        status = self.refuse_create
        if status is None and channel not in self.channels:
            status = 404
        if status is not None:
            code = {
                401: "Unauthorized",
                403: "BotNotInConversationRoster",
                404: "ConversationNotFound",
            }.get(status, "ServiceError")
            return web.json_response({"error": {"code": code, "message": "refused"}}, status=status)
        return web.json_response(
            {"id": f"{channel};messageid={new_id}", "activityId": new_id}, status=201
        )

    async def _update(self, request: web.Request) -> web.Response:
        activity_id = request.match_info["id"]
        call = Call(
            "PUT",
            request.match_info["conv"],
            activity_id,
            await request.json(),
            authorization=request.headers.get("Authorization"),
        )
        if self.fail_puts > 0:
            self.fail_puts -= 1
            await self._record(call)
            # 403 as when the bot was removed from the chat (§B5); a 5xx would be retried.
            error = {"code": "BotNotInConversationRoster", "message": "The bot is not part"}
            return web.json_response({"error": error}, status=403)
        await self._record(call)
        return web.json_response({"id": activity_id})

    async def _team_channels(self, request: web.Request) -> web.Response:
        team = request.match_info["team"]
        call = Call("GET", team, "channels", {}, authorization=request.headers.get("Authorization"))
        await self._record(call)
        channels = self.team_channels.get(team)
        if channels is None:
            error = {"code": "NotFound", "message": "team not found"}
            return web.json_response({"error": error}, status=404)
        return web.json_response({"conversations": channels})

    async def _member(self, request: web.Request) -> web.Response:
        member = self.members.get(request.match_info["member"])
        call = Call(
            "GET",
            request.match_info["conv"],
            request.match_info["member"],
            {},
            authorization=request.headers.get("Authorization"),
        )
        await self._record(call)
        if member is None:
            return web.json_response(
                {"error": {"code": "MemberNotFoundInConversation", "message": "not found"}},
                status=404,
            )
        return web.json_response(member)


@dataclass
class Activities:
    """Activities as Teams posts them to the bot (the fields botbuilder reads)."""

    service_url: str
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def _base(
        self, kind: str, conversation: str, conversation_type: str, user: str
    ) -> dict[str, Any]:
        name, aad = USERS[user]
        activity: dict[str, Any] = {
            "type": kind,
            "id": f"f:{next(self._ids)}",
            "timestamp": "2026-11-22T10:00:00.000Z",
            "serviceUrl": self.service_url,
            "channelId": "msteams",
            "from": {"id": user, "name": name, "aadObjectId": aad},
            "conversation": {
                "id": conversation,
                "conversationType": conversation_type,
                "tenantId": TENANT,
            },
            "recipient": {"id": BOT_ID, "name": BOT_NAME},
            "channelData": {"tenant": {"id": TENANT}},
            "locale": "en-US",
        }
        if conversation_type == "channel":
            activity["conversation"]["isGroup"] = True
            activity["channelData"].update(
                {
                    "teamsChannelId": CHANNEL.split(";", maxsplit=1)[0],
                    "teamsTeamId": TEAM_ID,
                    "channel": {"id": CHANNEL.split(";", maxsplit=1)[0]},
                    "team": {"id": TEAM_ID},
                }
            )
        return activity

    def personal(self, text: str, *, user: str = ANA_ID) -> dict[str, Any]:
        activity = self._base("message", PERSONAL, "personal", user)
        activity.update({"text": text, "textFormat": "plain"})
        return activity

    def channel(self, text_after_mention: str, *, user: str = ANA_ID) -> dict[str, Any]:
        activity = self._base("message", CHANNEL, "channel", user)
        mention = f"<at>{BOT_NAME}</at>"
        activity.update(
            {
                "text": f"{mention} {text_after_mention}".strip(),
                "textFormat": "plain",
                "entities": [
                    {
                        "type": "mention",
                        "text": mention,
                        "mentioned": {"id": BOT_ID, "name": BOT_NAME},
                    },
                    {"type": "clientInfo", "locale": "en-US", "platform": "Web"},
                ],
            }
        )
        return activity

    def execute(
        self,
        verb: str,
        data: dict[str, Any],
        *,
        card_id: str,
        user: str = ANA_ID,
        conversation: str = PERSONAL,
    ) -> dict[str, Any]:
        """Invoke `adaptiveCard/action`: the inputs are merged into `action.data` (§B4)."""
        kind = "personal" if conversation == PERSONAL else "channel"
        activity = self._base("invoke", conversation, kind, user)
        activity.update(
            {
                "name": "adaptiveCard/action",
                "replyToId": card_id,
                "value": {
                    "action": {"type": "Action.Execute", "verb": verb, "data": data},
                    "trigger": "manual",
                },
            }
        )
        return activity

    def installed(
        self,
        *,
        removed: bool = False,
        team: str = TEAM_ID,
        name: str = "IT Helpdesk",
        tenant: str = TENANT,
    ) -> dict[str, Any]:
        """The app added to (or removed from) a team: a conversationUpdate in its General
        channel naming the bot in membersAdded (membersRemoved), with the team in channelData."""
        activity = self._base("conversationUpdate", team, "channel", ANA_ID)
        activity["conversation"]["tenantId"] = tenant
        activity["channelData"] = {
            "tenant": {"id": tenant},
            "team": {"id": team, "name": name, "aadGroupId": "team-group"},
            "eventType": "teamMemberRemoved" if removed else "teamMemberAdded",
        }
        members = [{"id": BOT_ID}]
        activity["membersRemoved" if removed else "membersAdded"] = members
        return activity

    def in_thread(
        self,
        verb: str,
        data: dict[str, Any],
        *,
        thread: str,
        card_id: str,
        user: str,
        trigger: str = "manual",
    ) -> dict[str, Any]:
        """Action.Execute on a card in a channel thread (the helpdesk channel)."""
        activity = self.execute(verb, data, card_id=card_id, user=user, conversation=thread)
        activity["value"]["trigger"] = trigger
        activity["channelData"]["team"] = {"id": TEAM_ID}
        return activity

    def submit(self, data: dict[str, Any], *, card_id: str, user: str = ANA_ID) -> dict[str, Any]:
        """The Action.Submit fallback: a message with no text and the data in `value` (§B4)."""
        activity = self._base("message", PERSONAL, "personal", user)
        activity.update({"replyToId": card_id, "value": data})
        return activity


# --- a fake engine and the running server ---------------------------------------------------


@dataclass
class GatedDiagnose:
    """Stands in for `checks.runner.diagnose`: real `Report`s over the real catalogue.

    `gate` holds every diagnosis until the test sets it (to prove the HTTP answer does not wait);
    `raise_exc` makes it fail like a crashed engine.
    """

    failing: tuple[str, ...] = ("dns.autodiscover", "autodiscover.v1")
    gate: asyncio.Event | None = None
    raise_exc: BaseException | None = None
    requests: list[Any] = field(default_factory=list)

    async def __call__(self, request: Any, progress: Any) -> Any:
        from checks.models import Cause, Finding, Report, Side, Status
        from checks.registry import CATALOGUE

        self.requests.append(request)
        if self.gate is not None:
            await self.gate.wait()
        if self.raise_exc is not None:
            raise self.raise_exc
        found = [
            Finding(
                check=check.id,
                status=Status.FAIL if check.id in self.failing else Status.PASS,
                summary=f"{check.title}: {'broken' if check.id in self.failing else 'fine'}",
            )
            for check in CATALOGUE
        ]
        for n, finding in enumerate(found, 1):
            progress(finding, n, len(found))
        cause = Cause(
            id="autodiscover-dns-missing",
            title="The autodiscover record is missing",
            confidence=0.9,
            checks=["dns.autodiscover", "autodiscover.v1"],
            side=Side.DNS,
        )
        return Report(
            address=request.address,
            client=request.client,
            duration_ms=42,
            findings=found,
            causes=[cause],
        )


def card_kind(card: dict[str, Any] | None) -> str:
    """intake | checking | progress | results | error | escalation | other, from the rendered
    card ("checking": the short card an intake invoke is answered with)."""
    if card is None:
        return "none"
    text = json.dumps(card.get("body") or [])
    fallback = str(card.get("fallbackText", ""))
    if '"Input.' in text:
        return "intake"
    if fallback.startswith("mailfix is checking"):
        return "progress"
    if fallback.startswith("⏳ Checking"):
        return "checking"
    if fallback.startswith("mailfix: most likely"):
        return "results"
    if fallback.startswith("Escalation requested"):
        return "escalation"
    if fallback.startswith("mailfix: "):
        return "error"
    return "other"


def verbs(card: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """verb -> data of every Action.Execute on the card (actions and action sets)."""
    found: dict[str, dict[str, Any]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "Action.Execute":
                found[node["verb"]] = node.get("data") or {}
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(card)
    return found


@dataclass
class TeamsBot:
    """The server under test (over real HTTP), the fake connector, and helpers."""

    http: Any  # aiohttp TestClient
    connector: FakeConnector
    app: web.Application
    teams: Activities
    diagnose: GatedDiagnose

    @property
    def runtime(self) -> Any:
        from bot.server import RUNTIME

        return self.app[RUNTIME]

    async def post(self, activity: dict[str, Any], **headers: str) -> Any:
        return await self.http.post("/api/messages", json=activity, headers=headers)

    async def idle(self) -> None:
        """Every background task of the server has finished."""
        async with asyncio.timeout(WAIT):
            await self.runtime.supervisor.wait_idle()


GOOD_ANSWERS: dict[str, Any] = {
    "address": "ana@contoso.com",
    "app": "outlook-windows",
    "symptom": "cannot_connect",
    "error_text": "",
    "since": "before",
    "since_when": "",
    "where": "office",
}
