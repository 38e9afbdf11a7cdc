"""The Slack half of the helpdesk loop against the fake Web API: case cards posted to the
helpdesk channel and updated in place by reference, the person told in their DM, and a
posting problem said in words."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from _slackfake import TOKEN, FakeSlack
from slack_sdk.web.async_client import AsyncWebClient

from bot.helpdesk_channels import Channels, SlackHelpdesk
from cards.data import NoticeData
from dialogs.cases import Case, CaseState
from dialogs.models import CardSpec, Platform

CHANNEL = "C0HELPDESK"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


def case() -> Case:
    now = datetime.now(UTC)
    return Case(
        number=7,
        diagnosis_id=None,
        platform=Platform.SLACK,
        person_id="U0ANA",
        person_name="Ana",
        address="ana@contoso.com",
        state=CaseState.OPEN,
        created_at=now,
        updated_at=now,
    )


def card(text: str) -> CardSpec:
    return CardSpec(template="notice", data=NoticeData(text=text).model_dump(mode="json"))


async def test_post_update_and_tell(slack: FakeSlack) -> None:
    desk = SlackHelpdesk(AsyncWebClient(token=TOKEN, base_url=slack.url), CHANNEL)
    channels = Channels({Platform.SLACK: desk})
    posted = await channels.post(Platform.SLACK, card("Case 7 is open."))
    assert posted.error is None and posted.ref is not None
    assert posted.ref["platform"] == "slack" and posted.ref["channel"] == CHANNEL
    [sent] = slack.of("chat.postMessage")
    assert sent.body["channel"] == CHANNEL and "Case 7 is open." in sent.body["text"]
    assert await channels.update(posted.ref, card("Case 7 was taken by Sam."))
    [updated] = slack.of("chat.update")
    assert updated.body["ts"] == posted.ref["ts"]
    await channels.tell(case(), "Sam from the helpdesk has taken your case 7.")
    assert slack.of("conversations.open")[0].body["users"] == "U0ANA"
    assert slack.of("chat.postMessage")[-1].body["channel"] == "DU0ANA"


async def test_a_bot_outside_the_channel_is_said_plainly(slack: FakeSlack) -> None:
    slack.errors["chat.postMessage"] = "not_in_channel"
    desk = SlackHelpdesk(AsyncWebClient(token=TOKEN, base_url=slack.url), CHANNEL)
    posted = await desk.post(Platform.SLACK, card("Case 8 is open."))
    assert posted.ref is None
    assert posted.error is not None and "/invite @mailfix" in posted.error
