"""A slash command is acknowledged before bolt runs (bench/ack.py): its answer is an empty 200
whatever happens after, and what bolt would have answered instead reaches the person as an
only-you line. Over real HTTP against the fake Slack."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from _slackfake import ANA, running_bot
from slack_bolt.response import BoltResponse

from bot.server import SLACK


async def test_the_ack_does_not_wait_for_bolt(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as bot:
        entered, release = asyncio.Event(), asyncio.Event()

        async def held(req: Any, resp: Any, next: Any) -> Any:
            entered.set()
            await release.wait()
            return await next()

        bot.app[SLACK].app.use(held)  # type: ignore[attr-defined]
        response = await bot.post(bot.sign.command("ana@contoso.com"))
        assert response.status == 200
        assert await response.text() == ""
        await asyncio.wait_for(entered.wait(), 10)  # bolt runs after the answer
        assert not bot.slack.of("views.open")  # no form while bolt is held
        release.set()
        await bot.slack.wait_until(lambda: bool(bot.slack.of("views.open")), "the form")


async def test_what_bolt_answers_instead_reaches_the_person_only(tmp_path: Path) -> None:
    """Through the command's response_url when it is Slack's (here: the fake's host, the
    configured Web API's), else as an only-you message; never a form."""
    async with running_bot(tmp_path) as bot:

        async def refuse(req: Any, resp: Any, next: Any) -> Any:
            return BoltResponse(status=200, body="Please install this app first.")

        bot.app[SLACK].app.use(refuse)  # type: ignore[attr-defined]
        hook = bot.slack.response_url("cmd1")
        response = await bot.post(bot.sign.command("ana@contoso.com", response_url=hook))
        assert (response.status, await response.text()) == (200, "")
        await bot.slack.wait_until(lambda: bool(bot.slack.of("response_url")), "the line")
        [line] = bot.slack.of("response_url")
        assert line.body == {"text": "Please install this app first.", "response_type": "ephemeral"}
        # A response_url on a host that is not Slack's is not followed: an only-you message.
        elsewhere = "https://hooks.slack.invalid/commands/T0/1/abc"
        response = await bot.post(bot.sign.command("ana@contoso.com", response_url=elsewhere))
        assert (response.status, await response.text()) == (200, "")
        await bot.slack.wait_until(lambda: bool(bot.slack.of("chat.postEphemeral")), "the line")
        [line] = bot.slack.of("chat.postEphemeral")
        assert line.body["user"] == ANA
        assert "Please install this app first." in str(line.body)
        assert len(bot.slack.of("response_url")) == 1
        assert not bot.slack.of("views.open")
