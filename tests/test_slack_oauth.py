"""Installing mailfix in several Slack workspaces (OAuth v2) with slack_sdk's SQLAlchemy
installation and state stores on our own tables (migration 0002), against the fake Slack.

"Add to Slack" (`GET /slack/install`) sets a state cookie and links to Slack; Slack sends the
installer back (`GET /slack/oauth_redirect?code&state`); the code is exchanged with
`oauth.v2.access` and the workspace's bot token stored. A replayed or forged state installs
nothing. Afterwards a command from that workspace is answered with that workspace's token, and
a workspace that never installed gets nothing.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from _slackfake import SECRET, Bot, FakeSlack, SlackRequests, running_bot
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bot.schema import slack_bots, slack_installations
from bot.server import create_app
from bot.settings import Settings
from bot.storage import SqlStore

FABRIKAM = "T0FABRIKAM"
FABRIKAM_TOKEN = "xoxb-3333333333-4444444444-FAKEfabrikamTOKEN"


@asynccontextmanager
async def oauth_bot(
    tmp_path: Path, *, diagnose: Any = None, housekeeping_every: float | None = None, **values: Any
) -> AsyncIterator[Bot]:
    """The server with OAuth installs (client id and secret, no bot token) on the fake Slack;
    `values`: more settings."""
    fake = FakeSlack()
    await fake.start()
    settings = Settings(
        slack_client_id=fake.client_id,
        slack_client_secret=fake.client_secret,
        slack_signing_secret=SECRET,
        slack_api_url=fake.url,
        state_dir=tmp_path,
        database_url="",
        slack_lookup_email=False,
        **values,
    )
    assert settings.slack_bot_token is None and settings.slack_enabled
    app = create_app(settings, diagnose=diagnose, housekeeping_every=housekeeping_every)
    try:
        async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as http:
            yield Bot(http, fake, app, SlackRequests(), diagnose)
    finally:
        await fake.close()


async def start_install(bot: Bot) -> tuple[str, str]:
    """The state in the link to Slack's authorize page, and the state cookie as set."""
    response = await bot.http.get("/slack/install", allow_redirects=False)
    assert response.status in (200, 302)
    page = await response.text()
    found = re.search(r"https://slack\.com/oauth/v2/authorize[^\"' <]+", page)
    link = response.headers.get("Location") or (found.group(0) if found else "")
    query = parse_qs(urlsplit(link.replace("&amp;", "&")).query)
    assert urlsplit(link).path == "/oauth/v2/authorize"
    assert query["client_id"] == [bot.slack.client_id]
    scopes = query["scope"][0].split(",")
    assert "chat:write" in scopes and "usergroups:read" not in scopes  # no S… approvers here
    assert bot.slack.client_secret not in page + link
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie
    return query["state"][0], cookie.split(";", 1)[0]


async def installs(bot: Bot) -> list[Any]:
    store = bot.runtime.store
    assert isinstance(store, SqlStore)
    async with store.engine.connect() as conn:
        return list((await conn.execute(select(slack_bots))).all())


async def test_add_to_slack_stores_the_workspace_and_its_token_answers_its_commands(
    tmp_path: Path,
) -> None:
    async with oauth_bot(tmp_path) as bot:
        state, cookie = await start_install(bot)
        bot.slack.oauth_codes["code-1"] = {"team": FABRIKAM, "token": FABRIKAM_TOKEN}
        back = await bot.http.get(
            "/slack/oauth_redirect",
            params={"code": "code-1", "state": state},
            headers={"Cookie": cookie},
        )
        assert back.status == 200, await back.text()
        (exchange,) = bot.slack.of("oauth.v2.access")
        assert exchange.body["code"] == "code-1"
        [row] = await installs(bot)
        assert row.team_id == FABRIKAM and row.bot_token == FABRIKAM_TOKEN
        store = bot.runtime.store
        assert isinstance(store, SqlStore)
        async with store.engine.connect() as conn:
            assert len((await conn.execute(select(slack_installations))).all()) == 1

        # The same redirect again (the state is used up), and a forged state: nothing more.
        bot.slack.oauth_codes["code-2"] = {"team": "T0EVIL", "token": "xoxb-5-6-FAKEevil"}
        again = await bot.http.get(
            "/slack/oauth_redirect",
            params={"code": "code-2", "state": state},
            headers={"Cookie": cookie},
        )
        forged = await bot.http.get(
            "/slack/oauth_redirect",
            params={"code": "code-2", "state": "made-up"},
            headers={"Cookie": "slack-app-oauth-state=made-up"},
        )
        assert again.status >= 400 and forged.status >= 400
        assert len(await installs(bot)) == 1
        assert len(bot.slack.of("oauth.v2.access")) == 1

        # /mailfix from the installed workspace: the form opens with that workspace's token.
        response = await bot.post(bot.sign.command("ana@fabrikam.com", team=FABRIKAM))
        assert response.status == 200
        (opened,) = await bot.slack.wait_for("views.open")
        assert opened.headers["Authorization"] == f"Bearer {FABRIKAM_TOKEN}"

        # A workspace that never installed mailfix: no token, nothing opens.
        await bot.post(bot.sign.command("ana@contoso.com", trigger="T-2"))
        await bot.runtime.supervisor.wait_idle()
        assert len(bot.slack.of("views.open")) == 1


async def test_without_client_id_the_install_routes_do_not_exist(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as bot:
        response = await bot.http.get("/slack/install")
        assert response.status in (404, 405)
