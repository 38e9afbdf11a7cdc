"""Entra approver groups against the sandbox tenant's Graph, over real HTTP (issue 7, item 2).

MAILFIX_APPROVERS may name an Entra group. Clicks are checked through the person's groups
(`/users/{id}/transitiveMemberOf`); who gets the approver's view in Teams (refresh.userIds) needs
the group's users: `GET /groups/{id}/transitiveMembers/microsoft.graph.user` — an OData cast, so
an advanced query (`ConsistencyLevel: eventual`, `$count=true`), paged with @odata.nextLink,
application permission GroupMember.Read.All (Graph v1.0 "List group transitive members"). The
sandbox tenant pages at 2 items, so every lookup here follows next links.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from _checkworld import Probe, checked, scenario

from bot.approvers import ApproverList
from bot.runtime import approver_list
from bot.settings import Settings
from checks.cloud import hosts_for
from checks.settings import Cloud
from checks.tenant import PermissionMissing, TenantClient, TenantError, TenantNotFound
from dialogs.approval import Actor
from sandbox.tenant.build import person, tenant_data
from sandbox.tenant.models import Group

GRAPH_HOST = hosts_for(Cloud.GLOBAL).graph
OUTER = "0a0a0a0a-0000-4000-8000-00000000a001"  # "Mail approvers": holds INNER and Eve
INNER = "0b0b0b0b-0000-4000-8000-00000000a002"  # "Helpdesk leads": Cy, Dee, Fay
BIG = "0c0c0c0c-0000-4000-8000-00000000a003"  # 70 people
CY = "8c3e6a41-2dbf-4e5a-8b9c-34567890abcd"
DEE = "9d4f7b52-3ec0-4f6b-9cad-4567890abcde"
EVE = "ae508c63-4fd1-4a7c-8dbe-567890abcdef"
FAY = "bf619d74-50e2-4b8d-9ecf-67890abcdef0"
BO = "7b2d5f30-1cae-4d4f-9a8b-234567890abc"  # in no group
DIRECT = "c0720e85-61f3-4c9e-afd0-7890abcdef01"  # an approver named by their own object id
MEMBERS_PATH = "/groups/{}/transitiveMembers/microsoft.graph.user"


def _person(name: str, object_id: str) -> Any:
    return person(user=name, id=object_id, display_name=f"{name.title()} Test", devices=())


def tenant(**fields: Any) -> Any:
    crowd = [_person(f"crowd{i}", f"d{i:07d}-0000-4000-8000-000000000000") for i in range(70)]
    people = [
        _person(n, i) for n, i in (("cy", CY), ("dee", DEE), ("eve", EVE), ("fay", FAY), ("bo", BO))
    ]
    groups = (
        Group(id=OUTER, display_name="Mail approvers", members=(INNER, EVE)),
        Group(id=INNER, display_name="Helpdesk leads", members=(CY, DEE, FAY)),
        Group(id=BIG, display_name="Everyone", members=tuple(p.id for p in crowd)),
    )
    return tenant_data(others=(*people, *crowd), groups=groups, **fields)


@asynccontextmanager
async def world(**fields: Any) -> AsyncIterator[Probe]:
    sc = scenario().model_copy(update={"tenant": tenant(**fields)})
    async with checked(sc) as probe:
        yield probe


def client_of(probe: Probe) -> TenantClient:
    return TenantClient(probe.net.settings, probe.net, hosts_for(Cloud.GLOBAL))


def settings_of(
    probe: Probe, tmp_path: Path, approvers: list[str], monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The bot's settings pointing at this world's tenant (its MAILFIX_* variables), as
    `mailfix serve` would run."""
    assert not probe.world.port_map  # the runtime's Graph client uses the real ports
    for name, value in probe.world.env().items():
        monkeypatch.setenv(name, value)
    return Settings(state_dir=tmp_path, approvers=approvers)


def member_requests(probe: Probe, group: str) -> list[Any]:
    path = f"/v1.0{MEMBERS_PATH.format(group)}"
    return [r for r in probe.world.requests(GRAPH_HOST) if r.path.split("?", 1)[0] == path]


ADVANCED = {"ConsistencyLevel": "eventual"}


async def test_the_sandbox_lists_a_groups_users_as_graph_does() -> None:
    async with world() as probe:
        client = client_of(probe)
        params = {"$select": "id", "$count": "true"}
        page = await client.graph_get(MEMBERS_PATH.format(OUTER), params, headers=ADVANCED)
        # The cast's shape: users, as selected, the count, and an absolute next link.
        assert page["@odata.context"].endswith("/v1.0/$metadata#users(id)")
        assert page["@odata.count"] == 4  # Eve, and Cy, Dee, Fay through the nested group
        assert all(set(row) == {"id"} for row in page["value"])
        assert page["@odata.nextLink"].startswith(f"https://{GRAPH_HOST}/v1.0/groups/{OUTER}/")
        rows = await client.graph_list(MEMBERS_PATH.format(OUTER), params, headers=ADVANCED)
        assert sorted(r["id"] for r in rows) == sorted([CY, DEE, EVE, FAY])  # no group rows
        assert len(member_requests(probe, OUTER)) == 1 + 2  # that page, then two of 2 items
        cut = await client.graph_list(MEMBERS_PATH.format(BIG), params, headers=ADVANCED, limit=5)
        assert len(cut) == 6 and len(member_requests(probe, BIG)) == 3  # stopped paging at 5
        # Without the advanced query parameters the cast is refused, as the docs say.
        with pytest.raises(TenantError) as refused:
            await client.graph_list(MEMBERS_PATH.format(OUTER), {"$select": "id"})
        assert refused.value.code == "Request_UnsupportedQuery"
        # A group that does not exist (or a user's id): 404.
        for missing in ("ffffffff-0000-4000-8000-000000000000", DEE):
            with pytest.raises(TenantNotFound):
                await client.graph_list(MEMBERS_PATH.format(missing), params, headers=ADVANCED)


async def test_the_sandbox_wants_group_member_read_all() -> None:
    async with world(app={"graph_permissions": ("User.Read.All",)}) as probe:
        with pytest.raises(PermissionMissing) as denied:
            await client_of(probe).graph_list(
                MEMBERS_PATH.format(OUTER), {"$count": "true"}, headers=ADVANCED
            )
        assert denied.value.permission == "GroupMember.Read.All"
    # GroupMember.Read.All alone lists them, with the id only (no permission to read users).
    async with world(app={"graph_permissions": ("GroupMember.Read.All",)}) as probe:
        rows = await client_of(probe).graph_list(
            MEMBERS_PATH.format(INNER),
            {"$select": "id,displayName", "$count": "true"},
            headers=ADVANCED,
        )
        assert {r["id"] for r in rows} == {CY, DEE, FAY}
        assert {r["displayName"] for r in rows} == {None}


async def test_approver_groups_become_their_users_through_nesting_and_are_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with world() as probe:
        approvers = approver_list(settings_of(probe, tmp_path, [OUTER, DIRECT], monkeypatch))
        assert isinstance(approvers, ApproverList)
        users = await approvers.users_of([OUTER, DIRECT.upper(), "29:already-a-teams-id"])
        assert sorted(users[:4]) == sorted([CY, DEE, EVE, FAY])  # the group's, nested too
        assert users[4:] == [DIRECT, "29:already-a-teams-id"]  # a user's id stands for them
        # Asked as an advanced query (the sandbox refuses the cast without its header, above).
        (asked, *_) = member_requests(probe, OUTER)
        assert "%24count=true" in asked.path or "$count=true" in asked.path
        seen = len(probe.world.requests(GRAPH_HOST))
        assert await approvers.users_of([OUTER, DIRECT]) == users[:5]
        assert len(probe.world.requests(GRAPH_HOST)) == seen  # cached, as the other lookups
        # Clicks: a member of the nested group is an approver, someone in no group is not.
        assert await approvers.is_approver(Actor(DEE, "Dee Test", "teams"))
        assert not await approvers.is_approver(Actor(BO, "Bo Test", "teams"))


async def test_more_than_sixty_users_are_cut_to_sixty_and_the_log_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with world() as probe:
        approvers = approver_list(settings_of(probe, tmp_path, [BIG, OUTER], monkeypatch))
        assert isinstance(approvers, ApproverList)
        with caplog.at_level(logging.WARNING, logger="bot.approvers"):
            users = await approvers.users_of([BIG, OUTER])
        assert len(users) == 60 and CY not in users  # first come first
        said = [r.getMessage() for r in caplog.records if "more than 60" in r.getMessage()]
        assert len(said) == 1 and "refresh.userIds" in said[0]
        # Paging stops once 61 users are in (pages of 2), not after all 70.
        assert len(member_requests(probe, BIG)) == 31


async def test_without_the_permission_a_group_stays_as_it_is_and_the_log_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with world(app={"graph_permissions": ("User.Read.All",)}) as probe:
        approvers = approver_list(settings_of(probe, tmp_path, [OUTER], monkeypatch))
        assert isinstance(approvers, ApproverList)
        with caplog.at_level(logging.WARNING, logger="bot.approvers"):
            assert await approvers.users_of([OUTER]) == [OUTER]
        assert "the app lacks GroupMember.Read.All" in caplog.text
        assert not await approvers.is_approver(Actor(DEE, "Dee Test", "teams"))
