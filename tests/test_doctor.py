"""`mailfix doctor` against the fake Slack Web API: a test card posted, or the problem in words."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
from _slackfake import TOKEN, FakeSlack

MAILFIX = [sys.executable, "-m", "bot"]
CHANNEL = "C0HELPDESK"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


async def doctor(slack: FakeSlack, **env: str) -> subprocess.CompletedProcess[str]:

    environment = {
        **os.environ,
        "MAILFIX_SLACK_BOT_TOKEN": TOKEN,
        "MAILFIX_SLACK_API_URL": slack.url,
        "MAILFIX_HELPDESK_SLACK_CHANNEL": CHANNEL,
        **env,
    }
    # The fake answers on this loop, so the subprocess runs in a thread.
    return await asyncio.to_thread(
        subprocess.run,
        [*MAILFIX, "doctor"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_a_test_card_reaches_the_helpdesk_channel(slack: FakeSlack) -> None:
    done = await doctor(slack)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok   Slack sign-in: signed in as @mailfix in Contoso." in done.stdout
    assert f"ok   Slack helpdesk channel: posted a test card to {CHANNEL}." in done.stdout
    posted = slack.of("chat.postMessage")
    assert len(posted) == 1 and posted[0].body["channel"] == CHANNEL


@pytest.mark.parametrize(
    ("error", "extra", "says"),
    [
        ("not_in_channel", {}, "Type /invite @mailfix in that channel"),
        ("channel_not_found", {}, "Use the channel id (C…"),
        ("missing_scope", {"needed": "chat:write"}, "lacks the chat:write scope"),
        ("is_archived", {}, "is archived"),
    ],
)
async def test_each_posting_problem_is_said_plainly(
    slack: FakeSlack, error: str, extra: dict[str, str], says: str
) -> None:
    slack.errors["chat.postMessage"] = error
    slack.error_fields["chat.postMessage"] = extra
    done = await doctor(slack)
    assert done.returncode == 1
    line = next(li for li in done.stdout.splitlines() if "helpdesk channel" in li)
    assert line.startswith("FAIL") and says in line
    assert "Traceback" not in done.stderr


async def test_a_bad_token_and_a_missing_channel(slack: FakeSlack) -> None:
    done = await doctor(slack, MAILFIX_SLACK_BOT_TOKEN="xoxb-0-0-wrong")
    assert done.returncode == 1
    assert "Slack does not accept the bot token (invalid_auth)" in done.stdout
    assert "xoxb-0-0-wrong" not in done.stdout + done.stderr
    done = await doctor(slack, MAILFIX_HELPDESK_SLACK_CHANNEL="")
    assert done.returncode == 1
    assert "MAILFIX_HELPDESK_SLACK_CHANNEL is not set" in done.stdout
