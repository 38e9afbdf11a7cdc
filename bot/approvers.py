"""Who may approve fixes: MAILFIX_APPROVERS, with groups resolved on the platform that owns them.

Entries are Slack user ids (U…, W…), Slack user-group ids (S…, members read with
`usergroups.users.list`, scope usergroups:read), and Entra object ids — a user's, or a group's
whose members count transitively (Graph `GET /users/{id}/transitiveMemberOf`, permission
GroupMember.Read.All). A click is checked against this list every time, from what the platform
authenticated (the Slack user id; the Teams `aadObjectId`), never from the button's payload.
Group lookups are cached for a short while; a lookup that fails counts as "not an approver".

Teams shows Approve / Reject only to the users a case card's `refresh.userIds` names (at most
60, reference/chat-platforms.md §B4): `users_of` turns the Entra entries into those users, an
Entra group into its members through nested groups (Graph `GET /groups/{id}/transitiveMembers/
microsoft.graph.user`).
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

from checks.tenant import TenantNotFound
from dialogs.approval import Actor

log = logging.getLogger(__name__)

_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
_SLACK_GROUP = re.compile(r"^S[A-Z0-9]{2,}$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")

# usergroups.users.list(usergroup) -> member ids
SlackGroupMembers = Callable[[str], Awaitable[list[str]]]
# (user object id, candidate group ids) -> the groups among them the user belongs to
EntraMemberGroups = Callable[[str, list[str]], Awaitable[list[str]]]
# (group object id, how many at most) -> its users' object ids through nested groups; None when
# the id is not a group's (a user's object id)
EntraGroupUsers = Callable[[str, int], Awaitable[list[str] | None]]

MAX_REFRESH_USERS = 60  # Teams' refresh.userIds holds at most 60 (reference/chat-platforms.md §B4)


class ApproverError(ValueError):
    """An entry in MAILFIX_APPROVERS that is none of the accepted kinds."""


class ApproverList:
    def __init__(
        self,
        entries: Iterable[str],
        *,
        slack_group_members: SlackGroupMembers | None = None,
        entra_member_groups: EntraMemberGroups | None = None,
        entra_group_users: EntraGroupUsers | None = None,
        ttl: float = 300.0,
    ) -> None:
        self.slack_users: set[str] = set()
        self.slack_groups: list[str] = []
        self.entra_ids: list[str] = []
        for raw in entries:
            entry = raw.strip()
            if _SLACK_USER.match(entry):
                self.slack_users.add(entry)
            elif _SLACK_GROUP.match(entry):
                self.slack_groups.append(entry)
            elif _GUID.match(entry):
                self.entra_ids.append(entry.lower())
            elif entry:
                raise ApproverError(
                    f"MAILFIX_APPROVERS: {entry!r} is not a Slack user or user-group id "
                    "(U…, W…, S…) or an Entra object id"
                )
        self._slack_members = slack_group_members
        self._entra_groups = entra_member_groups
        self._entra_users = entra_group_users
        self._ttl = ttl
        self._cache: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._cut_said = -1e18  # when the log last said the 60-user cap cut the list

    def __bool__(self) -> bool:
        return bool(self.slack_users or self.slack_groups or self.entra_ids)

    async def is_approver(self, actor: Actor) -> bool:
        if actor.platform == "slack":
            return actor.id in self.slack_users or actor.id in await self._slack_group_members()
        if actor.platform == "teams":
            object_id = actor.id.lower()
            if object_id in self.entra_ids:
                return True
            return bool(await self._entra_groups_of(object_id))
        return False

    async def users_of(self, entries: Iterable[str], limit: int = MAX_REFRESH_USERS) -> list[str]:
        """Who gets the approver's view of a case card in Teams: `entries` (a case card's
        approver ids) with every Entra group among them replaced by its users, through nested
        groups; first come first, at most `limit`. An entry that is not an Entra object id is
        kept as it is; so is one whose lookup failed (it may be a user's)."""
        users: list[str] = []
        for entry in entries:
            found = await self._users_of(entry.lower(), limit + 1) if _GUID.match(entry) else None
            for user in (entry,) if found is None else found:
                if user not in users:
                    users.append(user)
        if len(users) > limit:
            now = time.monotonic()
            if now - self._cut_said >= self._ttl:
                self._cut_said = now
                log.warning(
                    "MAILFIX_APPROVERS stands for more than %d Entra users (its groups' members "
                    "counted): Teams shows Approve / Reject on case cards automatically to the "
                    "first %d only (refresh.userIds holds at most %d); the others are still "
                    "approvers when they click",
                    limit,
                    limit,
                    limit,
                )
        return users[:limit]

    async def _users_of(self, entry: str, limit: int) -> tuple[str, ...]:
        lookup = self._entra_users
        if lookup is None:
            return (entry,)

        async def load() -> list[str]:
            found = await lookup(entry, limit)
            return [entry] if found is None else found  # None: not a group, a user's id

        return await self._cached(f"entra-users:{entry}", load, fallback=(entry,))

    async def _cached(
        self,
        key: str,
        load: Callable[[], Awaitable[Iterable[str]]],
        fallback: tuple[str, ...] = (),
    ) -> tuple[str, ...]:
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            value = tuple(await load())
        except Exception as exc:  # a failed lookup must never make someone an approver
            missing = getattr(exc, "permission", None)
            why = f" (the app lacks {missing})" if isinstance(missing, str) else ""
            log.warning("approver lookup %s failed: %s%s", key, type(exc).__name__, why)
            value = fallback
        self._cache[key] = (now + self._ttl, value)
        return value

    async def _slack_group_members(self) -> frozenset[str]:
        if not self.slack_groups or self._slack_members is None:
            return frozenset()
        members: set[str] = set()
        for group in self.slack_groups:
            load = functools.partial(self._slack_members, group)
            members.update(await self._cached(f"slack:{group}", load))
        return frozenset(members)

    async def _entra_groups_of(self, object_id: str) -> frozenset[str]:
        if not self.entra_ids or self._entra_groups is None:
            return frozenset()
        load = functools.partial(self._entra_groups, object_id, list(self.entra_ids))
        return frozenset(await self._cached(f"entra:{object_id}", load))


def slack_group_lookup(client: Any) -> SlackGroupMembers:
    """`usergroups.users.list` through a slack_sdk AsyncWebClient."""

    async def members(group: str) -> list[str]:
        response = await client.usergroups_users_list(usergroup=group)
        return [str(u) for u in response.get("users") or []]

    return members


class GraphList(Protocol):
    """`TenantClient.graph_list`: a Graph collection, every page (`limit`: stop paging there)."""

    def __call__(
        self,
        path: str,
        params: dict[str, str],
        *,
        headers: Mapping[str, str] | None = None,
        limit: int | None = None,
    ) -> Awaitable[list[dict[str, Any]]]: ...


def entra_group_lookup(graph_list: GraphList) -> EntraMemberGroups:
    """Graph `GET /users/{id}/transitiveMemberOf` (every group the user is in, through nested
    groups; paged): which of the candidate groups are among them."""

    async def groups(object_id: str, candidates: list[str]) -> list[str]:
        member_of = await graph_list(f"/users/{object_id}/transitiveMemberOf", {"$select": "id"})
        ids = {str(g.get("id", "")).lower() for g in member_of}
        return [c for c in candidates if c in ids]

    return groups


def entra_group_users_lookup(graph_list: GraphList) -> EntraGroupUsers:
    """Graph `GET /groups/{id}/transitiveMembers/microsoft.graph.user?$select=id`: the group's
    users, through nested groups, paged with @odata.nextLink (application permission
    GroupMember.Read.All). The OData cast is an advanced query: it needs `ConsistencyLevel:
    eventual` and `$count=true` (microsoft-graph-docs-contrib api-reference/v1.0/api/
    group-list-transitivemembers.md; concepts/aad-advanced-queries.md). A 404 means the id is
    not a group's: None."""

    async def users(group: str, limit: int) -> list[str] | None:
        try:
            rows = await graph_list(
                f"/groups/{group}/transitiveMembers/microsoft.graph.user",
                {"$select": "id", "$count": "true", "$top": "999"},
                headers={"ConsistencyLevel": "eventual"},
                limit=limit,
            )
        except TenantNotFound:
            return None
        return [r["id"].lower() for r in rows if isinstance(r.get("id"), str)][:limit]

    return users
