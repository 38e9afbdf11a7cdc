"""`mailfix doctor`, the Teams half, against the fake Bot Connector: a test card posted to the
helpdesk channel from the stored installation, or what is wrong in words.

The bot runs with an app id, as a managed identity (APP_TYPE UserAssignedMSI): msal reads its
token endpoint from IDENTITY_ENDPOINT / IDENTITY_HEADER, answered here by a local aiohttp
server (a password bot's msal would ask login.microsoftonline.com first: not offline). The
installation the server would have stored from a conversationUpdate is written to the database
the doctor reads. Every call goes to 127.0.0.1.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from _teamsfake import BOT_ID, HELPDESK_CHANNEL, TEAM_ID, TENANT, FakeConnector
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.doctor import check_teams, run_doctor
from bot.settings import Settings
from bot.storage import SqlStore, migrate
from bot.teams import DOCTOR_TEXT, SERVICE_URL_KEY
from dialogs.models import Platform

APP_ID = "9e4cbd1c-6d2f-4f51-8b5a-7a0e1c4b2f11"
IDENTITY_HEADER = "mailfix-doctor-identity-header"


class TokenServer:
    """Azure App Service's managed-identity endpoint (what msal asks for UserAssignedMSI)."""

    def __init__(self) -> None:
        self.requests = 0
        app = web.Application()
        app.router.add_get("/msi/token", self._token)
        self.server = TestServer(app, host="127.0.0.1", port=0)

    async def _token(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.headers.get("X-IDENTITY-HEADER") != IDENTITY_HEADER:
            return web.json_response({"statusCode": 401, "message": "no header"}, status=401)
        return web.json_response(
            {
                # The token test_bot_teams_auth.py serves: msal caches managed-identity tokens
                # process-wide, so whichever test asks first serves the others.
                "access_token": "mailfix-test-managed-identity-token",
                "expires_on": str(int(time.time()) + 3600),
                "resource": request.query.get("resource"),
                "token_type": "Bearer",
                "client_id": request.query.get("client_id"),
            }
        )


@pytest.fixture
async def connector() -> AsyncIterator[FakeConnector]:
    fake = FakeConnector()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


@pytest.fixture
async def identity(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TokenServer]:
    tokens = TokenServer()
    await tokens.server.start_server()
    for name in ("IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT", "MSI_ENDPOINT", "MSI_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", str(tokens.server.make_url("/msi/token")))
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    try:
        yield tokens
    finally:
        await tokens.server.close()


def settings(tmp_path: Path, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "state_dir": tmp_path,
        "teams_app_id": APP_ID,
        "teams_app_type": "UserAssignedMSI",
        "teams_app_tenant_id": TENANT,
        "helpdesk_teams_channel": HELPDESK_CHANNEL,
    }
    return Settings(**{**values, **changes})


async def installed(config: Settings, connector: FakeConnector, **changes: Any) -> None:
    """What the server stores when the app is added to a team (bot.teams, conversationUpdate)."""
    await migrate(config.database_url)
    store = SqlStore.from_url(config.database_url)
    record = {
        "team_id": TEAM_ID,
        "team_name": "IT Helpdesk",
        "tenant_id": TENANT,
        "service_url": connector.url,
        "bot_id": BOT_ID,
        "installed": True,
        **changes,
    }
    try:
        await store.save_conversation_ref(SERVICE_URL_KEY, Platform.TEAMS, record)
    finally:
        await store.close()


async def test_a_test_card_reaches_the_teams_helpdesk_channel(
    tmp_path: Path, connector: FakeConnector, identity: TokenServer
) -> None:
    config = settings(tmp_path)
    await installed(config, connector)
    [finding] = await check_teams(config)
    assert finding.ok is True, finding.text
    assert finding.line() == (
        "ok   Teams helpdesk channel: posted a test card to the Teams helpdesk channel of "
        "IT Helpdesk."
    )
    [created] = connector.created
    assert created.conversation == HELPDESK_CHANNEL
    assert created.body["isGroup"] is True
    assert created.card is not None and DOCTOR_TEXT in str(created.card)
    # Signed as the bot, with the managed identity's token.
    assert created.authorization is not None and created.authorization.startswith("Bearer ")


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (403, "the mailfix app is not installed in the team that holds it"),
        (404, "Teams has no channel"),
        (401, "Teams does not accept the bot's credentials (HTTP 401"),
    ],
)
async def test_each_posting_problem_is_said_plainly(
    tmp_path: Path, connector: FakeConnector, identity: TokenServer, status: int, says: str
) -> None:
    config = settings(tmp_path)
    await installed(config, connector)
    connector.refuse_create = status
    [finding] = await check_teams(config)
    assert finding.ok is False
    assert finding.line().startswith("FAIL Teams helpdesk channel: ")
    assert says in finding.text
    assert "Traceback" not in finding.text and "{" not in finding.text
    assert len(connector.created) == 1


async def test_a_wrong_channel_id_is_a_404_in_words(
    tmp_path: Path, connector: FakeConnector, identity: TokenServer
) -> None:
    config = settings(tmp_path, helpdesk_teams_channel="19:no-such-channel@thread.tacv2")
    await installed(config, connector)
    [finding] = await check_teams(config)
    assert finding.ok is False
    assert "Teams has no channel 19:no-such-channel@thread.tacv2 (HTTP 404" in finding.text
    assert "Get link to channel" in finding.text


async def test_no_installation_seen_or_the_app_removed(
    tmp_path: Path, connector: FakeConnector, identity: TokenServer
) -> None:
    config = settings(tmp_path)
    [finding] = await check_teams(config)
    assert finding.ok is False
    assert "has not seen its installation in a team yet" in finding.text
    assert "Manage team > Apps" in finding.text
    assert connector.calls == []  # nothing to post with: nothing sent

    await installed(config, connector, installed=False)
    [finding] = await check_teams(config)
    assert finding.ok is False
    assert "the mailfix app was removed from the team IT Helpdesk" in finding.text
    assert connector.calls == []


async def test_unconfigured_teams_says_so(tmp_path: Path) -> None:
    unset = Settings(state_dir=tmp_path)
    [finding] = await check_teams(unset)
    assert finding.ok is None and "MAILFIX_TEAMS_APP_ID is not set" in finding.text
    no_channel = settings(tmp_path, helpdesk_teams_channel=None)
    [finding] = await check_teams(no_channel)
    assert finding.ok is False and "MAILFIX_HELPDESK_TEAMS_CHANNEL is not set" in finding.text
    both = await run_doctor(no_channel)
    assert any("Slack" in f.what for f in both)  # the Slack half still reports
