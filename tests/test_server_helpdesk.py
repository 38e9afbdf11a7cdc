"""How `mailfix serve` wires the helpdesk loop: on the SQL store, with a Slack channel and the
Teams bot's channel when it offers one, Escalate hooked into the conversation; without a SQL
store there is no loop (Escalate only records the request)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _slackfake import SECRET, TOKEN, FakeDiagnose
from aiohttp import web

from bot.helpdesk_channels import Channels
from bot.server import RUNTIME, create_app
from bot.settings import Settings
from bot.slack import SlackCaseChannel
from checks.models import Client
from dialogs.models import Platform
from dialogs.store import MemoryStore, StoredDiagnosis, utc_now


class Told:
    """A helpdesk channel that notes what it was asked to tell whom."""

    def __init__(self) -> None:
        self.told: list[tuple[str, str]] = []

    async def tell(self, case: Any, text: str) -> None:
        self.told.append((case.person_id, text))


class TeamsLike:
    """A Teams bot as the server sees it: a handler, and a helpdesk channel on request."""

    def __init__(self) -> None:
        self.channel = Told()

    async def handle(self, request: web.Request) -> web.Response:
        return web.json_response({})

    def helpdesk_channel(self) -> Any:
        return self.channel


def settings(tmp_path: Path, **more: Any) -> Settings:
    return Settings(
        slack_bot_token=TOKEN,
        slack_signing_secret=SECRET,
        slack_api_url="http://127.0.0.1:9/api/",
        state_dir=tmp_path,
        database_url="",
        helpdesk_slack_channel="C0HELPDESK",
        approvers=["U0BOSS", "S0ADMINS"],
        **more,
    )


def test_the_loop_is_wired_with_both_platforms_channels(tmp_path: Path) -> None:
    teams = TeamsLike()
    app = create_app(settings(tmp_path), diagnose=FakeDiagnose(), teams=lambda rt: teams.handle)
    runtime = app[RUNTIME]
    helpdesk = runtime.helpdesk
    assert helpdesk is not None and runtime.cases is helpdesk.cases
    channels = helpdesk.channel
    assert isinstance(channels, Channels)
    slack = channels.by_platform[Platform.SLACK]
    assert isinstance(slack, SlackCaseChannel) and slack.channel == "C0HELPDESK"
    assert channels.by_platform[Platform.TEAMS] is teams.channel
    assert runtime.conversation.s.escalate == helpdesk.escalate  # type: ignore[attr-defined]
    assert Platform.SLACK in runtime.tellers
    assert runtime.shared_limit is not None  # the rate limit is counted in the database
    assert helpdesk.approvals.expiry.total_seconds() == 24 * 3600


async def test_a_teams_person_is_told_through_the_teams_channel(tmp_path: Path) -> None:
    """Housekeeping tells the person of a dead diagnosis on their platform: in Teams through
    the Teams bot's helpdesk channel (it reaches a person in their chat with the bot)."""
    teams = TeamsLike()
    app = create_app(settings(tmp_path), diagnose=FakeDiagnose(), teams=lambda rt: teams.handle)
    now = utc_now()
    stored = StoredDiagnosis(
        id="d1",
        platform=Platform.TEAMS,
        person_id="29:ana",
        conversation="a:1",
        address="ana@contoso.com",
        client=Client.ALL,
        app="outlook-windows",
        created_at=now,
        updated_at=now,
    )
    await app[RUNTIME].tellers[Platform.TEAMS](stored, "Your check stopped.")
    assert teams.channel.told == [("29:ana", "Your check stopped.")]


def test_settings_reach_the_loop(tmp_path: Path) -> None:
    app = create_app(
        settings(
            tmp_path,
            proposal_expiry_hours=2,
            two_approvers_for_hard_fixes=True,
            pattern_threshold=5,
            pattern_window_minutes=3,
        ),
        diagnose=FakeDiagnose(),
    )
    helpdesk = app[RUNTIME].helpdesk
    assert helpdesk is not None
    assert helpdesk.approvals.expiry.total_seconds() == 2 * 3600
    assert helpdesk.approvals.two_for_hard is True
    assert (helpdesk.pattern_threshold, helpdesk.pattern_window) == (5, 180.0)
    assert Platform.TEAMS not in helpdesk.channel.by_platform  # type: ignore[attr-defined]


def test_without_a_sql_store_there_is_no_loop(tmp_path: Path) -> None:
    app = create_app(settings(tmp_path), diagnose=FakeDiagnose(), store=MemoryStore())
    runtime = app[RUNTIME]
    assert runtime.helpdesk is None and runtime.cases is None and runtime.shared_limit is None
    assert runtime.conversation.s.escalate is None  # type: ignore[attr-defined]
