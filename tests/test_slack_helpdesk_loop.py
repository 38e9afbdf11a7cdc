"""The helpdesk loop on Slack, whole: the server (`bot.server.create_app`, SQLite) with a fake
Slack Web API and a sandbox world whose tenant has ActiveSync switched off for Ana's mailbox.

Ana checks her phone mail and escalates; the case card lands in the helpdesk channel; Sam (a
helpdesk agent, not an approver) claims it, asks a question that Ana answers from a modal, and
clicks Approve — refused, only to him, nothing sent to the tenant, audited; Bo (an approver)
approves: the fix is applied to the sandbox tenant once, the checks run again and pass, the
case card shows it in place and Ana is told in plain words. A second click and a redelivered
click change nothing. Sam resolves the case; Ana is told.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from _checkworld import scenario
from _slackfake import (
    ANA,
    GOOD_ANSWERS,
    SECRET,
    TEAM,
    TOKEN,
    Bot,
    FakeSlack,
    SlackRequests,
    blocks_text,
    buttons,
)
from aiohttp.test_utils import TestClient, TestServer

from bot.server import create_app
from bot.settings import Settings
from checks.advice import App
from dialogs.cases import QUESTION_INPUT, CaseAction
from dialogs.models import Action
from sandbox.tenant.build import tenant_data
from sandbox.tenant.models import CasSettings
from sandbox.world import World

HELPDESK = "C0HELPDESK"
SAM = "U0SAM"  # helpdesk agent
BOSS = "U0BOSS"  # approver
ENABLE = "Set-CASMailbox ana@contoso.com ActiveSyncEnabled=True"

needs_ports = pytest.mark.skipif(
    os.geteuid() != 0 and not os.environ.get("CI"),
    reason="needs permission to bind ports 53/80/443 on loopback (run as root)",
)


def activesync_off() -> World:
    tenant = tenant_data(person_fields={"cas": CasSettings(active_sync_enabled=False)})
    return World(scenario().model_copy(update={"tenant": tenant}))


def server_settings(
    world: World, tmp_path: Path, fake: FakeSlack, monkeypatch: pytest.MonkeyPatch, **more: Any
) -> Settings:
    """The bot's settings: the world's (DNS, CA, tenant credentials) as MAILFIX_* variables,
    as a deployment has them, plus Slack's and the helpdesk's."""
    for name, value in world.env().items():
        monkeypatch.setenv(name, value)
    values: dict[str, Any] = {
        "slack_bot_token": TOKEN,
        "slack_signing_secret": SECRET,
        "slack_api_url": fake.url,
        "state_dir": tmp_path,
        "database_url": "",
        "slack_lookup_email": False,
        "helpdesk_slack_channel": HELPDESK,
        "approvers": [BOSS],
        "deadline": 20.0,
        **more,
    }
    return Settings(**values)


@asynccontextmanager
async def slack_server(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Bot]:
    fake = FakeSlack()
    fake.users[SAM] = {"name": "sam", "real_name": "Sam Rivera", "email": "sam@contoso.com"}
    fake.users[BOSS] = {"name": "bo.admin", "real_name": "Bo Admin", "email": "bo@contoso.com"}
    fake.channel_names[HELPDESK] = "it-helpdesk"
    await fake.start()
    app = create_app(server_settings(world, tmp_path, fake, monkeypatch))
    try:
        async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as http:
            yield Bot(http, fake, app, SlackRequests(), None)  # type: ignore[arg-type]
    finally:
        await fake.close()


def texts(calls: list[Any]) -> str:
    return " ".join(c.body.get("text", "") + blocks_text(c.body.get("blocks") or []) for c in calls)


async def dm_to(bot: Bot, user: str, words: str) -> None:
    await bot.slack.wait_until(
        lambda: any(
            c.body.get("channel") == f"D{user}" and words in texts([c])
            for c in bot.slack.of("chat.postMessage")
        ),
        f"a DM to {user} saying {words!r}",
    )


async def only_to(bot: Bot, user: str, words: str) -> None:
    await bot.slack.wait_until(
        lambda: any(
            c.body.get("user") == user and words in texts([c])
            for c in bot.slack.of("chat.postEphemeral")
        ),
        f"an ephemeral message to {user} saying {words!r}",
    )


async def card_says(bot: Bot, words: str) -> dict[str, Any]:
    await bot.slack.wait_until(
        lambda: any(
            c.body.get("channel") == HELPDESK and words in texts([c])
            for c in bot.slack.of("chat.update")
        ),
        f"the case card saying {words!r}",
    )
    return [c for c in bot.slack.of("chat.update") if c.body.get("channel") == HELPDESK][-1].body


def click(bot: Bot, action: str, value: str, user: str, **kw: Any) -> tuple[str, dict[str, str]]:
    return bot.sign.action(
        action, value, user=user, channel=HELPDESK, message_ts="1.000001", name=user, **kw
    )


async def audit(bot: Bot) -> list[tuple[str, str]]:
    runtime = bot.runtime
    assert runtime.cases is not None
    return [(e.actor_id, e.action) for e in await runtime.cases.trail(case_number=1)]


@needs_ports
async def test_escalate_claim_ask_answer_refuse_approve_applied_rechecked_person_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with activesync_off() as world, slack_server(world, tmp_path, monkeypatch) as bot:
        tenant = world.tenant
        assert tenant is not None
        # --- Ana checks her phone mail: ActiveSync is off for her mailbox --------------------
        answers = {**GOOD_ANSWERS, "app": App.PHONE_MAIL.value}
        assert (await bot.post(bot.sign.submission(answers))).status == 200
        await bot.slack.wait_until(
            lambda: any(
                Action.ESCALATE.value in buttons(c.body.get("blocks") or [])
                for c in bot.slack.of("chat.update")
            ),
            "the results card",
        )
        results = [c for c in bot.slack.of("chat.update") if buttons(c.body.get("blocks") or [])]
        diagnosis = buttons(results[-1].body["blocks"])[Action.ESCALATE.value]

        # --- Escalate: the case card in the helpdesk channel, the receipt names it ---------------
        await bot.post(bot.sign.action(Action.ESCALATE.value, diagnosis))
        await dm_to(bot, ANA, "#it-helpdesk")
        receipt = texts(
            [c for c in bot.slack.of("chat.postMessage") if c.body["channel"] == "DU0ANA"]
        )
        assert "1" in receipt and "#it-helpdesk" in receipt
        posted = next(c for c in bot.slack.of("chat.postMessage") if c.body["channel"] == HELPDESK)
        assert "Ana Silva" in texts([posted])  # her name as the helpdesk knows it
        card_buttons = buttons(posted.body["blocks"])
        assert card_buttons[CaseAction.CLAIM.value] == "1"
        proposal = card_buttons[CaseAction.APPROVE.value]
        assert "ActiveSync" in texts([posted])

        # --- Sam claims: the card changes in place, Ana is told -----------------------------
        await bot.post(click(bot, CaseAction.CLAIM.value, "1", SAM))
        await dm_to(bot, ANA, "Sam Rivera from the helpdesk has taken your case 1.")
        updated = await card_says(bot, "Sam Rivera")
        assert CaseAction.CLAIM.value not in buttons(updated["blocks"])
        # Updated in place from the stored reference (any replica could have done it).
        assert bot.runtime.cases is not None
        ref = await bot.runtime.cases.message("case:1:helpdesk")
        assert ref is not None and ref["channel"] == HELPDESK
        helpdesk_updates = [c for c in bot.slack.of("chat.update") if c.body["channel"] == HELPDESK]
        assert {c.body["ts"] for c in helpdesk_updates} == {ref["ts"]}

        # --- Sam asks; Ana answers from the modal; the answer is on the card ------------------
        question = {
            QUESTION_INPUT: {
                QUESTION_INPUT: {"type": "plain_text_input", "value": "Which phone do you use?"}
            }
        }
        await bot.post(click(bot, CaseAction.ASK.value, "1", SAM, state=question))
        await dm_to(bot, ANA, "Which phone do you use?")
        ask = [c for c in bot.slack.of("chat.postMessage") if "Which phone" in texts([c])][-1]
        assert buttons(ask.body["blocks"]) == {"mailfix.case.answer": "1"}
        await bot.post(bot.sign.action("mailfix.case.answer", "1"))
        (opened,) = await bot.slack.wait_for("views.open")
        assert opened.body["view"]["callback_id"] == "mailfix.case.answer"
        await bot.post(answer_submission(bot, 1, "An iPhone 15, the built-in Mail app."))
        await dm_to(bot, ANA, "Sent to the helpdesk with case 1.")
        await card_says(bot, "An iPhone 15")

        # --- Sam is no approver: refused, only to him; nothing reaches the tenant ------------
        await bot.post(click(bot, CaseAction.APPROVE.value, proposal, SAM))
        await only_to(bot, SAM, "Only approvers can approve")
        assert tenant.writes == []
        assert (SAM, "proposal.refused") in await audit(bot)

        # --- A click from another workspace is refused too -----------------------------------
        await bot.post(click(bot, CaseAction.APPROVE.value, proposal, BOSS, team="T0OTHER"))
        await only_to(bot, BOSS, "another workspace")
        assert tenant.writes == []

        # --- Bo approves: applied once, re-checked, the card shows it, Ana is told ------------
        signed = click(bot, CaseAction.APPROVE.value, proposal, BOSS, action_ts="1763800500.000001")
        await bot.post(signed)
        await only_to(bot, BOSS, "Applied.")
        assert tenant.writes == [ENABLE]
        await dm_to(bot, ANA, "ActiveSync is switched on for your mailbox")
        trail = await audit(bot)
        assert (BOSS, "proposal.approved") in trail and (BOSS, "fix.applied") in trail
        entries = await bot.runtime.cases.trail(case_number=1)  # type: ignore[union-attr]
        recheck = next(e for e in entries if e.action == "recheck.done")
        assert recheck.result == {"tenant.mailbox": "pass"}
        final = await card_says(bot, "Applied")
        assert CaseAction.APPROVE.value not in buttons(final["blocks"])

        # --- The same click again (a retry) and a second click: nothing more is sent ---------
        await bot.post(signed)
        await bot.post(click(bot, CaseAction.APPROVE.value, proposal, BOSS))
        await only_to(bot, BOSS, "already decided")
        await bot.runtime.supervisor.wait_idle()
        assert tenant.writes == [ENABLE]
        applied = [a for _, a in await audit(bot) if a == "fix.applied"]
        assert applied == ["fix.applied"]
        # --- Sam resolves: Ana is told, the card has no more case buttons -------------------
        await bot.post(click(bot, CaseAction.RESOLVE.value, "1", SAM))
        await dm_to(bot, ANA, "Sam Rivera from the helpdesk marked your case 1 as resolved.")
        await bot.runtime.supervisor.wait_idle()
        last = [c for c in bot.slack.of("chat.update") if c.body["channel"] == HELPDESK][-1]
        assert not {CaseAction.CLAIM.value, CaseAction.RESOLVE.value, CaseAction.ASK.value} & set(
            buttons(last.body["blocks"])
        )
        print("\naudit trail of case 1:")
        for entry in await bot.runtime.cases.trail(case_number=1):  # type: ignore[union-attr]
            print(f"  {entry.at:%H:%M:%S} {entry.actor_name:<10} {entry.action:<26} {entry.detail}")


def answer_submission(
    bot: Bot, number: int, text: str, user: str = ANA
) -> tuple[str, dict[str, str]]:
    payload = {
        "type": "view_submission",
        "team": {"id": TEAM, "domain": "contoso"},
        "user": {"id": user, "username": "ana", "name": "ana", "team_id": TEAM},
        "api_app_id": "A0MAILFIX",
        "trigger_id": "T-answer",
        "view": {
            "id": "V0ANSWER",
            "team_id": TEAM,
            "type": "modal",
            "callback_id": "mailfix.case.answer",
            "private_metadata": json.dumps({"case": number}),
            "blocks": [{"type": "input", "block_id": "answer"}],
            "state": {
                "values": {"answer": {"answer": {"type": "plain_text_input", "value": text}}}
            },
            "hash": "1763800000.abc",
        },
    }
    return bot.sign.form({"payload": json.dumps(payload)})
