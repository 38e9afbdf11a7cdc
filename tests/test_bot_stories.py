"""The person's whole story on both platforms against REAL sandbox worlds.

`/mailfix` (Slack) or `mailfix` (Teams) → the intake form → submit → a progress message →
the results card, with the real engine (`bot.runtime.runner_diagnose`) diagnosing a sandbox
tenant over loopback. Each story asserts the top cause the card shows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _slackfake import ANA, blocks_text, buttons, running_bot
from _slackfake import GOOD_ANSWERS as SLACK_ANSWERS
from _teamsfake import ANA_AAD, card_kind
from _teamsfake import GOOD_ANSWERS as TEAMS_ANSWERS
from test_bot_teams import intake_card_id, invoke, results_put, running_teams

from bot.runtime import runner_diagnose
from bot.settings import Settings
from checks.advice import App
from checks.diagnosis import CAUSES
from checks.models import Client
from sandbox.catalogue import get
from sandbox.world import World

# scenario, the app the person picks, the client that maps to, the cause the card must lead with
STORIES = [
    ("healthy", App.OUTLOOK_WINDOWS, Client.OUTLOOK, "device-or-app"),
    ("autodiscover-cname-missing", App.OUTLOOK_WINDOWS, Client.OUTLOOK, "autodiscover-dns-missing"),
    ("adfs-metadata-503", App.PHONE_MAIL, Client.MOBILE, "adfs-unreachable"),
    ("tls-inspection", App.OUTLOOK_WEB, Client.WEB, "tls-inspection"),
    ("domain-not-in-m365", App.OUTLOOK_MAC, Client.OUTLOOK, "domain-not-in-m365"),
    ("autodiscover-cname-stale", App.PHONE_MAIL, Client.MOBILE, "autodiscover-dns-elsewhere"),
    ("imap-blocked", App.IMAP_APP, Client.IMAP, "imap-blocked"),
]


def test_stories_match_the_catalogue() -> None:
    """The expected causes are the catalogue's own, so the sandbox and these tests agree."""
    for scenario_id, _, client, cause in STORIES:
        expectation = get(scenario_id).expectation(client)
        assert expectation is not None and expectation.top_cause == cause, scenario_id


def plain(text: str) -> str:
    """Card text without the escapes the renderers add (backslashes, zero-width spaces)."""
    return text.replace("\\", "").replace("\u200b", "")


async def assert_stored_top_cause(store: Any, person_id: str, cause: str) -> None:
    """The real engine ran: the stored report's top cause is the scenario's."""
    (stored,) = await store.recent(person_id)
    assert stored.state == "done", stored.error
    assert stored.report is not None
    assert stored.report.causes[0].id == cause, [c.id for c in stored.report.causes[:3]]


def world_settings(world: World) -> dict[str, Any]:
    s = world.settings()
    return {
        "dns_servers": [f"{d.host}:{d.port}" for d in s.dns_servers],
        "ca_bundle": s.ca_bundle,
        "allowed_private_networks": [str(n) for n in s.allowed_private_networks],
        "cloud": s.cloud,
        "deadline": 20,
    }


@pytest.mark.parametrize(("scenario_id", "app", "client", "cause"), STORIES)
async def test_slack_story(
    tmp_path: Path, scenario_id: str, app: App, client: Client, cause: str
) -> None:
    scenario = get(scenario_id)
    async with World(scenario) as world:
        settings = world_settings(world)
        engine = runner_diagnose(Settings(**settings))
        async with running_bot(tmp_path, settings=settings, diagnose=engine) as bot:  # type: ignore[arg-type]
            response = await bot.post(bot.sign.command(scenario.address))
            assert response.status == 200
            (opened,) = await bot.slack.wait_for("views.open")
            assert scenario.address in json.dumps(opened.body, ensure_ascii=False)
            answers = {**SLACK_ANSWERS, "address": scenario.address, "app": app.value}
            response = await bot.post(bot.sign.submission(answers))
            assert response.status == 200 and await response.text() == ""
            await bot.slack.wait_for("chat.postMessage")  # the progress message
            await bot.slack.wait_until(
                lambda: any(
                    "mailfix.fixed" in buttons(c.body.get("blocks") or [])
                    for c in bot.slack.of("chat.update")
                ),
                "the results card",
            )
            await bot.runtime.supervisor.wait_idle()
            await assert_stored_top_cause(bot.runtime.store, ANA, cause)
    results = [c for c in bot.slack.of("chat.update") if buttons(c.body.get("blocks") or [])][-1]
    text = plain(blocks_text(results.body["blocks"]) + results.body.get("text", ""))
    assert CAUSES[cause].title in text, f"top cause {cause!r} not shown on the Slack card"


@pytest.mark.parametrize(("scenario_id", "app", "client", "cause"), STORIES)
async def test_teams_story(
    tmp_path: Path, scenario_id: str, app: App, client: Client, cause: str
) -> None:
    scenario = get(scenario_id)
    async with World(scenario) as world:
        settings = world_settings(world)
        engine = runner_diagnose(Settings(**settings))
        async with running_teams(tmp_path, settings=settings, diagnose=engine) as bot:  # type: ignore[arg-type]
            card_id = await intake_card_id(bot, f"mailfix {scenario.address}")
            answers = {**TEAMS_ANSWERS, "address": scenario.address, "app": app.value}
            body = await invoke(bot, bot.teams.execute("mailfix.intake", answers, card_id=card_id))
            assert card_kind(body["value"]) == "checking"
            card = await results_put(bot, card_id)
            await bot.idle()
            await assert_stored_top_cause(bot.runtime.store, ANA_AAD, cause)
    text = plain(json.dumps(card, ensure_ascii=False))
    assert CAUSES[cause].title in text, f"top cause {cause!r} not shown on the Teams card"
