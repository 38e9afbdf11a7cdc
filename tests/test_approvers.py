"""MAILFIX_APPROVERS: user ids, Slack user groups over the (fake) Web API, Entra groups."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from _slackfake import ANA, BO, TOKEN, FakeSlack
from slack_sdk.web.async_client import AsyncWebClient

from bot.approvers import ApproverError, ApproverList, entra_group_lookup, slack_group_lookup
from dialogs.approval import Actor

GROUP = "S0HELPDESK"
ENTRA_GROUP = "6f1c1f5e-0000-4000-8000-00000000a001"
ENTRA_USER = "0b7e3c2a-0000-4000-8000-00000000b002"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(usergroups={GROUP: [BO]})
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


def slack_actor(user: str) -> Actor:
    return Actor(user, user, "slack", "T0CONTOSO")


async def test_a_slack_user_group_is_resolved_and_cached(slack: FakeSlack) -> None:
    client = AsyncWebClient(token=TOKEN, base_url=slack.url)
    approvers = ApproverList(["U0DIRECT", GROUP], slack_group_members=slack_group_lookup(client))
    assert await approvers.is_approver(slack_actor("U0DIRECT"))
    assert await approvers.is_approver(slack_actor(BO))
    assert not await approvers.is_approver(slack_actor(ANA))
    assert [c.body.get("usergroup") for c in slack.of("usergroups.users.list")] == [GROUP]


async def test_a_failed_group_lookup_makes_nobody_an_approver(slack: FakeSlack) -> None:
    client = AsyncWebClient(token=TOKEN, base_url=slack.url)
    approvers = ApproverList(["S0UNKNOWN"], slack_group_members=slack_group_lookup(client))
    assert not await approvers.is_approver(slack_actor(BO))


async def test_entra_ids_match_users_and_transitive_groups() -> None:
    asked: list[str] = []

    async def graph_list(path: str, params: dict[str, str]) -> list[dict[str, object]]:
        asked.append(path)
        if path == f"/users/{ENTRA_USER}/transitiveMemberOf":
            return [{"id": "11111111-0000-4000-8000-000000000000"}, {"id": ENTRA_GROUP.upper()}]
        return []

    direct = "2a2a2a2a-0000-4000-8000-000000000003"
    approvers = ApproverList(
        [direct, ENTRA_GROUP], entra_member_groups=entra_group_lookup(graph_list)
    )
    assert await approvers.is_approver(Actor(direct.upper(), "Direct", "teams"))
    assert await approvers.is_approver(Actor(ENTRA_USER, "In the group", "teams"))
    assert not await approvers.is_approver(Actor(ENTRA_USER, "Same id, Slack", "slack"))
    assert not await approvers.is_approver(
        Actor("33333333-0000-4000-8000-000000000004", "No", "teams")
    )
    assert asked.count(f"/users/{ENTRA_USER}/transitiveMemberOf") == 1  # cached


def test_an_entry_of_no_known_kind_is_refused_by_name() -> None:
    with pytest.raises(ApproverError, match="not-an-id"):
        ApproverList(["U0OK", "not-an-id"])
