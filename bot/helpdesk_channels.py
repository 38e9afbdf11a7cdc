"""Where the helpdesk loop's cards go: `dialogs.helpdesk.HelpdeskChannel` per platform.

A case opened from Slack is posted to the Slack helpdesk channel, one from Teams to the Teams
channel; the person is told on the platform they asked on. A card's reference carries its
platform, so whichever replica handles a later click can update it in place.
The Teams half lives in `bot/teams/helpdesk.py` (only `bot/teams/` imports botbuilder).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.doctor import slack_problem
from cards.render import Target, render
from dialogs.cases import Case
from dialogs.helpdesk import HelpdeskChannel, Posted
from dialogs.models import CardSpec, Platform

log = logging.getLogger(__name__)


def _message(card: CardSpec) -> dict[str, Any]:
    rendered = render(card, Target.SLACK_MESSAGE)
    return {"text": rendered.get("text", ""), "blocks": rendered.get("blocks", [])}


class SlackHelpdesk:
    """Case cards in one Slack channel; the person told in their DM with the bot."""

    def __init__(self, client: AsyncWebClient, channel: str | None) -> None:
        self.client = client
        self.channel = channel
        self._name: str | None = None

    async def where(self) -> str:
        """The channel as people know it ("#it-helpdesk"); its id when the name is hidden."""
        if self._name is None and self.channel:
            try:
                info = await self.client.conversations_info(channel=self.channel)
                name = (info.get("channel") or {}).get("name")
                self._name = f"#{name}" if name else self.channel
            except SlackApiError:  # no channels:read scope, or a private channel
                self._name = self.channel
        return self._name or "no helpdesk channel"

    async def post(self, platform: Platform, card: CardSpec) -> Posted:
        if not self.channel:
            return Posted(
                "no helpdesk channel",
                error="mailfix has no Slack helpdesk channel (MAILFIX_HELPDESK_SLACK_CHANNEL).",
            )
        where = await self.where()
        try:
            posted = await self.client.chat_postMessage(channel=self.channel, **_message(card))
        except SlackApiError as exc:
            data = exc.response.data if isinstance(exc.response.data, dict) else {}
            error = str(data.get("error", "error"))
            log.warning("posting to the helpdesk channel failed: %s", error)
            return Posted(where, error=slack_problem(error, data, self.channel))
        ref = {"platform": "slack", "channel": posted.get("channel"), "ts": posted.get("ts")}
        return Posted(where, ref=ref)

    async def update(self, ref: Mapping[str, Any], card: CardSpec) -> bool:
        try:
            await self.client.chat_update(channel=ref["channel"], ts=ref["ts"], **_message(card))
        except SlackApiError as exc:
            log.warning("updating a helpdesk card failed: %s", exc.response.get("error"))
            return False
        return True

    async def tell(self, case: Case, text: str) -> None:
        try:
            opened = await self.client.conversations_open(users=case.person_id)
            dm = str((opened.get("channel") or {})["id"])
            await self.client.chat_postMessage(channel=dm, text=text)
        except SlackApiError as exc:
            log.warning(
                "telling case %s's person failed: %s", case.number, exc.response.get("error")
            )


class Channels:
    """`HelpdeskChannel` over the configured platforms, chosen by the case's platform."""

    def __init__(self, by_platform: Mapping[Platform, HelpdeskChannel]) -> None:
        self.by_platform = dict(by_platform)

    async def post(self, platform: Platform, card: CardSpec) -> Posted:
        channel = self.by_platform.get(platform)
        if channel is None:
            return Posted("no helpdesk channel", error=f"No helpdesk channel for {platform.value}.")
        return await channel.post(platform, card)

    async def update(self, ref: dict[str, Any], card: CardSpec) -> bool:
        channel = self.by_platform.get(Platform(ref.get("platform", "")))
        return await channel.update(ref, card) if channel is not None else False

    async def tell(self, case: Case, text: str) -> None:
        channel = self.by_platform.get(case.platform)
        if channel is not None:
            await channel.tell(case, text)
