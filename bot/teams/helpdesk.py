"""The helpdesk channel in Teams (reference/chat-platforms.md §B5), and `mailfix doctor`'s
Teams half.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
from botbuilder.core import TurnContext
from botbuilder.schema import (
    Activity,
    ChannelAccount,
    ConversationAccount,
    ConversationParameters,
    ConversationReference,
)

from bot.approvers import ApproverList
from bot.runtime import Runtime
from bot.settings import Settings
from bot.teams.auth import TEAMS_CHANNEL
from bot.teams.bot import (
    HELPDESK_TEAM_KEY,
    MEMBER_LOOKUP_TIMEOUT,
    PERSON_KEY,
    SERVICE_URL_KEY,
    USER_KEY,
    WAITING_KEY,
    Recipient,
    TeamsBot,
    card_activity,
)
from dialogs.cases import Case, CaseState
from dialogs.helpdesk import Posted
from dialogs.models import (
    CardSpec,
    Platform,
)

log = logging.getLogger(__name__)

NOT_IN_TEAM_TTL = 600.0  # seconds before the roster is asked again about an approver it lacked


# --- the helpdesk channel in Teams (reference/chat-platforms.md §B5) -------------------------


class PostFailed(Exception):
    """The Bot Connector refused a proactive call; the message says why, in words."""


class TeamsHelpdesk:
    """`dialogs.helpdesk.HelpdeskChannel` for Teams: case cards in MAILFIX_HELPDESK_TEAMS_CHANNEL.

    A case card starts a new thread in the channel (POST /v3/conversations with the channel id,
    on the service URL stored from the app's installation in the team), so no replica needs a
    message from the channel first; its ref (conversation, activity id, service URL) is stored by
    the Helpdesk and any replica edits the card in place (PUT). The person is told in their
    personal chat with the bot (`teams:person:{aadObjectId}`, saved on each of their messages).
    """

    def __init__(self, bot: TeamsBot, channel: str | None) -> None:
        self.bot = bot
        self.channel = channel
        # Approvers the team's roster did not know (Entra object id -> until when): a group of
        # 60 with people outside the team would otherwise cost 60 calls each time a card is drawn.
        self._not_in_team: dict[str, float] = {}

    async def _ref(self, key: str) -> dict[str, Any] | None:
        load = getattr(self.bot.runtime.store, "conversation_ref", None)
        return await load(key) if load is not None else None

    async def _installation(self) -> dict[str, Any] | None:
        """Where to post from: the installed team that holds the helpdesk channel, else the
        latest installation seen (the service URL is the organisation's either way)."""
        helpdesk = await self._ref(HELPDESK_TEAM_KEY)
        if helpdesk is not None and helpdesk.get("installed") is not False:
            return helpdesk
        return helpdesk or await self._ref(SERVICE_URL_KEY)

    async def where(self) -> str:
        installed = await self._installation()
        team = installed.get("team_name") if installed else None
        channel = installed.get("channel_name") if installed else None
        if team and channel:
            return f"the {channel} channel of {team}"
        return f"the Teams helpdesk channel of {team}" if team else "the Teams helpdesk channel"

    async def post(self, platform: Platform, card: CardSpec) -> Posted:
        if not self.channel:
            return Posted(
                "no helpdesk channel",
                error="mailfix has no Teams helpdesk channel (MAILFIX_HELPDESK_TEAMS_CHANNEL).",
            )
        where = await self.where()
        try:
            ref = await self.start_thread(card)
        except PostFailed as exc:
            log.warning("posting to the Teams helpdesk channel failed: %s", exc)
            return Posted(where, error=str(exc))
        return Posted(where, ref=ref)

    async def start_thread(self, card: CardSpec) -> dict[str, Any]:
        """Post `card` as a new thread in the helpdesk channel; its ref. PostFailed says why not."""
        channel = self.channel or ""
        installed = await self._installation()
        if not installed or not isinstance(installed.get("service_url"), str):
            raise PostFailed(NOT_INSTALLED)
        if installed.get("installed") is False:
            team = installed.get("team_name") or installed.get("team_id")
            which = (
                "which holds the helpdesk channel"
                if installed.get("channel_name")
                else "the last one mailfix saw it installed in"
            )
            raise PostFailed(
                f"the mailfix app was removed from the team {team}, {which}. Add it again to "
                "the team that holds the helpdesk channel (in Teams: the team's More options > "
                "Manage team > Apps)."
            )
        service_url: str = installed["service_url"]
        tenant = installed.get("tenant_id")
        reference = _reference(service_url, channel, tenant, installed.get("bot_id"))
        created: Any = None

        async def logic(ctx: TurnContext) -> None:
            nonlocal created
            client = ctx.turn_state.get(self.bot.adapter.BOT_CONNECTOR_CLIENT_KEY)
            parameters = ConversationParameters(
                is_group=True,
                bot=reference.bot,
                tenant_id=tenant,
                channel_data={"channel": {"id": channel}, "tenant": {"id": tenant}},
                activity=await self._activity(ctx, card, installed.get("team_id")),
            )
            created = await client.conversations.create_conversation(parameters)

        await self._proactive(reference, logic, channel)
        conversation = getattr(created, "id", None)
        activity_id = getattr(created, "activity_id", None)
        if not conversation:
            raise PostFailed("Teams did not say where the card was posted.")
        return {
            "platform": Platform.TEAMS.value,
            "conversation": conversation,
            # Teams names a channel thread "<channel>;messageid=<first message id>".
            "activity_id": activity_id or conversation.partition(";messageid=")[2] or None,
            "service_url": service_url,
            "tenant_id": tenant,
            "bot_id": installed.get("bot_id"),
            "team_id": installed.get("team_id"),
        }

    async def update(self, ref: dict[str, Any], card: CardSpec) -> bool:
        conversation, activity_id = ref.get("conversation"), ref.get("activity_id")
        service_url = ref.get("service_url")
        if not (
            isinstance(conversation, str)
            and isinstance(activity_id, str)
            and isinstance(service_url, str)
        ):
            return False
        reference = _reference(service_url, conversation, ref.get("tenant_id"), ref.get("bot_id"))

        async def logic(ctx: TurnContext) -> None:
            activity = await self._activity(ctx, card, ref.get("team_id"))
            activity.id = activity_id
            await ctx.update_activity(activity)

        try:
            await self._proactive(reference, logic, conversation)
        except PostFailed as exc:
            log.warning("updating a Teams helpdesk card failed: %s", exc)
            return False
        return True

    async def _activity(self, ctx: TurnContext, card: CardSpec, team: Any) -> Activity:
        """The card as a message; a case card's refresh.userIds as Teams user ids (§B4): an
        Entra group's members in its place, each by their Teams id; whoever has none (not in the
        team) is left out, as Teams could not use the id."""
        ids = card.data.get("approver_ids")
        if card.template == "case" and isinstance(ids, list) and ids:
            entries = await self._approver_users([str(i) for i in ids])
            found = await asyncio.gather(*(self._user_id(ctx, e, team) for e in entries))
            users = list(dict.fromkeys(u for u in found if u is not None))
            card = CardSpec(template=card.template, data={**card.data, "approver_ids": users})
        return card_activity(card)

    async def _approver_users(self, ids: list[str]) -> list[str]:
        """`ids` with each Entra group replaced by its users, through nested groups (at most
        60), when the helpdesk's approvers are the server's list (bot/approvers.py)."""
        helpdesk = self.bot.helpdesk
        approvers = helpdesk.approvals.approvers if helpdesk is not None else None
        if isinstance(approvers, ApproverList):
            return await approvers.users_of(ids)
        return ids

    async def _user_id(self, ctx: TurnContext, entry: str, team: Any) -> str | None:
        """The Teams user id (MRI, "29:…") of an approver named by Entra object id: remembered
        from their last activity, else asked of the team's roster (the Bot Connector takes the
        object id as member id). None when neither knows them."""
        if entry.startswith("29:"):
            return entry
        known = await self._ref(USER_KEY.format(entry.lower()))
        if known and isinstance(known.get("id"), str):
            return str(known["id"])
        if not isinstance(team, str) or not team:
            return None
        if self._not_in_team.get(entry, 0.0) > time.monotonic():
            return None
        try:
            client = ctx.turn_state.get(self.bot.adapter.BOT_CONNECTOR_CLIENT_KEY)
            async with asyncio.timeout(MEMBER_LOOKUP_TIMEOUT):
                member = await client.conversations.get_conversation_member(team, entry)
        except Exception as exc:  # not in the team: the refresh simply misses them
            log.info("Teams roster lookup for an approver failed: %s", type(exc).__name__)
            self._not_in_team[entry] = time.monotonic() + NOT_IN_TEAM_TTL
            return None
        found = getattr(member, "id", None)
        if not isinstance(found, str) or not found:
            return None
        save = getattr(self.bot.runtime.store, "save_conversation_ref", None)
        if save is not None:
            record = {"id": found, "aadObjectId": entry.lower()}
            await save(USER_KEY.format(entry.lower()), Platform.TEAMS, record)
        return found

    async def tell(self, case: Case, text: str) -> None:
        stored = await self._ref(PERSON_KEY.format(case.person_id))
        if stored is None:
            log.warning("case %s: no chat with its person in Teams to tell them", case.number)
            return
        reference = ConversationReference().deserialize(stored)
        question = case.question or ""
        asking = case.state is CaseState.WAITING and bool(question) and question in text

        save = getattr(self.bot.runtime.store, "save_conversation_ref", None)
        if asking and save is not None:  # their next message in that chat answers it
            await save(WAITING_KEY.format(case.person_id), Platform.TEAMS, {"case": case.number})

        async def logic(ctx: TurnContext) -> None:
            if asking:  # a question: with a box to answer it (cards/ "answer", verb ANSWER)
                answer = CardSpec(template="answer", data={"case": case.number, "text": text})
                await ctx.send_activity(card_activity(answer))
            else:
                await self.bot._text(ctx, text)

        try:
            await self._proactive(reference, logic, "the person's chat")
        except PostFailed as exc:
            log.warning("telling case %s's person failed: %s", case.number, exc)

    async def _proactive(self, reference: ConversationReference, logic: Any, where: str) -> None:
        try:
            await self.bot._continue(Recipient(reference=reference), logic)
        except PostFailed:
            raise
        except ConnectionError as exc:  # token_off_the_loop: no token for the bot
            raise PostFailed(NO_SIGN_IN) from exc
        except Exception as exc:
            raise PostFailed(connector_problem(exc, where)) from exc


NOT_INSTALLED = (
    "mailfix has not seen its installation in a team yet, so it does not know where Teams "
    "is for this organisation. Add the mailfix app to the team that holds the helpdesk "
    "channel (in Teams: the team's More options > Manage team > Apps), or re-add it there."
)
NO_SIGN_IN = (
    "mailfix could not sign in to the Bot Framework as the bot. Check MAILFIX_TEAMS_APP_ID, "
    "MAILFIX_TEAMS_APP_PASSWORD (the client secret may have expired) and "
    "MAILFIX_TEAMS_APP_TYPE / MAILFIX_TEAMS_APP_TENANT_ID."
)


def connector_problem(exc: BaseException, where: str) -> str:
    """Why the Bot Connector refused a call, in words for an admin (§B5's field failures)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None) or getattr(response, "status", None)
    error = getattr(getattr(exc, "error", None), "error", None)
    code = getattr(error, "code", None)
    said = f" (HTTP {status}{', ' + code if isinstance(code, str) and code else ''})"
    if status == 401:
        return "Teams does not accept the bot's credentials" + said + ". " + NO_SIGN_IN
    if status == 403:
        return (
            f"the bot is not allowed to post in {where}" + said + ": the mailfix app is not "
            "installed in the team that holds it. Add the app to that team (in Teams: the "
            "team's More options > Manage team > Apps), then try again."
        )
    if status == 404:
        return (
            f"Teams has no channel {where}" + said + ". Use the channel id from the channel's "
            "Get link to channel (it looks like 19:…@thread.tacv2), not its name."
        )
    if isinstance(status, int):
        return f"Teams refused the card{said}."
    if isinstance(exc, aiohttp.ClientError | OSError | TimeoutError):
        return f"Teams could not be reached ({type(exc).__name__})."
    return f"Teams refused the card ({type(exc).__name__})."


def _reference(
    service_url: str, conversation: str, tenant: Any, bot_id: Any
) -> ConversationReference:
    return ConversationReference(
        channel_id=TEAMS_CHANNEL,
        service_url=service_url,
        conversation=ConversationAccount(
            id=conversation,
            is_group=True,
            conversation_type="channel",
            tenant_id=tenant if isinstance(tenant, str) else None,
        ),
        bot=ChannelAccount(id=bot_id) if isinstance(bot_id, str) and bot_id else None,
    )


# --- `mailfix doctor`: the Teams half (bot/doctor.py calls this) -------------------------------

DOCTOR_TEXT = "mailfix test: escalations will be posted in this channel."


async def doctor_post(settings: Settings) -> tuple[bool, str]:
    """Post a test card to MAILFIX_HELPDESK_TEAMS_CHANNEL as the server would (from the stored
    installation, with the bot's credentials): (posted, what happened in words)."""
    # Late: the doctor needs the database only when Teams is configured.
    from bot.limits import RateLimiter  # noqa: PLC0415
    from bot.runtime import EventLedger  # noqa: PLC0415
    from bot.storage import SqlStore, migrate  # noqa: PLC0415
    from bot.tasks import TaskSupervisor  # noqa: PLC0415

    await migrate(settings.database_url)
    store: Any = SqlStore.from_url(settings.database_url)
    try:
        runtime = Runtime(
            settings=settings,
            conversation=None,  # type: ignore[arg-type]  # no turns: only proactive calls
            store=store,
            supervisor=TaskSupervisor(),
            limiter=RateLimiter(settings.rate_limit_count, settings.rate_limit_window),
            events=EventLedger(store),
        )
        channel = TeamsBot(runtime).helpdesk_channel()
        card = CardSpec(
            template="notice",
            data={"text": f"**{DOCTOR_TEXT}** Sent by `mailfix doctor`. Nothing to do."},
        )
        try:
            await channel.start_thread(card)
        except PostFailed as exc:
            return False, str(exc)
        return True, f"posted a test card to {await channel.where()}."
    finally:
        await store.close()
