"""Who may approve fixes: MAILFIX_APPROVERS, with groups resolved on the platform that owns them.

Entries are Slack user ids (U…, W…), Slack user-group ids (S…, members read with
`usergroups.users.list`, scope usergroups:read), and Entra object ids — a user's, or a group's
whose members count transitively (Graph `GET /users/{id}/transitiveMemberOf`, permission
GroupMember.Read.All). A click is checked against this list every time, from what the platform
authenticated (the Slack user id; the Teams `aadObjectId`), never from the button's payload.
Group lookups are cached for a short while; a lookup that fails counts as "not an approver".
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from dialogs.approval import Actor

log = logging.getLogger(__name__)

_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
_SLACK_GROUP = re.compile(r"^S[A-Z0-9]{2,}$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")

# usergroups.users.list(usergroup) -> member ids
SlackGroupMembers = Callable[[str], Awaitable[list[str]]]
# (user object id, candidate group ids) -> the groups among them the user belongs to
EntraMemberGroups = Callable[[str, list[str]], Awaitable[list[str]]]


class ApproverError(ValueError):
    """An entry in MAILFIX_APPROVERS that is none of the accepted kinds."""


class ApproverList:
    def __init__(
        self,
        entries: Iterable[str],
        *,
        slack_group_members: SlackGroupMembers | None = None,
        entra_member_groups: EntraMemberGroups | None = None,
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
        self._ttl = ttl
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}

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

    async def _cached(
        self, key: str, load: Callable[[], Awaitable[Iterable[str]]]
    ) -> frozenset[str]:
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            value = frozenset(await load())
        except Exception as exc:  # a failed lookup must never make someone an approver
            log.warning("approver lookup %s failed: %s", key, type(exc).__name__)
            value = frozenset()
        self._cache[key] = (now + self._ttl, value)
        return value

    async def _slack_group_members(self) -> frozenset[str]:
        if not self.slack_groups or self._slack_members is None:
            return frozenset()
        members: set[str] = set()
        for group in self.slack_groups:
            load = functools.partial(self._slack_members, group)
            members |= await self._cached(f"slack:{group}", load)
        return frozenset(members)

    async def _entra_groups_of(self, object_id: str) -> frozenset[str]:
        if not self.entra_ids or self._entra_groups is None:
            return frozenset()
        load = functools.partial(self._entra_groups, object_id, list(self.entra_ids))
        return await self._cached(f"entra:{object_id}", load)


def slack_group_lookup(client: Any) -> SlackGroupMembers:
    """`usergroups.users.list` through a slack_sdk AsyncWebClient."""

    async def members(group: str) -> list[str]:
        response = await client.usergroups_users_list(usergroup=group)
        return [str(u) for u in response.get("users") or []]

    return members


GraphList = Callable[[str, dict[str, str]], Awaitable[list[dict[str, Any]]]]


def entra_group_lookup(graph_list: GraphList) -> EntraMemberGroups:
    """Graph `GET /users/{id}/transitiveMemberOf` (every group the user is in, through nested
    groups; paged): which of the candidate groups are among them."""

    async def groups(object_id: str, candidates: list[str]) -> list[str]:
        member_of = await graph_list(f"/users/{object_id}/transitiveMemberOf", {"$select": "id"})
        ids = {str(g.get("id", "")).lower() for g in member_of}
        return [c for c in candidates if c in ids]

    return groups
