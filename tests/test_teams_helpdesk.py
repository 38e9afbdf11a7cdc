"""The helpdesk loop in Teams, over real HTTP, against the fake Bot Connector and a sandbox tenant.

The server (`bot.server.create_app` with `bot.teams.create_teams_handler`, SQLite in tmp_path)
runs diagnoses in the sandbox world `imap-off` (IMAP switched off for the mailbox). The app is
installed in a team (a conversationUpdate); Ana checks her mailbox in her personal chat and
escalates; the case card starts a new thread in the helpdesk channel (POST /v3/conversations on
the stored service URL); Bo (helpdesk, not an approver) claims and asks; Ana answers from the card
in her chat; Teams refreshes the card for Cy (an approver: Approve / Reject) and not for Bo; Bo's
Approve is refused and audited; Cy's applies the fix to the sandbox tenant, the checks run again
and pass, the card is edited in place and Ana is told. Nothing is mocked; every Bot Connector
call lands on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from _checkworld import checked, scenario
from _teamsfake import (
    ANA_AAD,
    ANA_ID,
    BO_AAD,
    BO_ID,
    CY_AAD,
    CY_ID,
    GOOD_ANSWERS,
    HELPDESK_CHANNEL,
    PERSONAL,
    TEAM_ID,
    TENANT,
    Activities,
    Call,
    FakeConnector,
    TeamsBot,
    card_kind,
    verbs,
)
from aiohttp.test_utils import TestClient, TestServer

from bot.approvers import ApproverList
from bot.case_store import SqlCaseStore
from bot.demo import SandboxDiagnose, SandboxFixes, SandboxRecheck, WorldPool
from bot.helpdesk_channels import Channels
from bot.runtime import approver_list
from bot.server import create_app
from bot.settings import Settings
from bot.teams import (
    ALREADY,
    ANSWER,
    ANSWER_INPUT,
    HELP_TEXT,
    HELPDESK_TEAM_KEY,
    NO_HELPDESK,
    SERVICE_URL_KEY,
    STILL_WORKING,
    create_teams_handler,
)
from bot.teams import TeamsBot as Bot
from checks.cloud import hosts_for
from checks.models import Remediation
from checks.settings import Cloud
from dialogs.approval import ApplyFix, Approvals, ApproverDirectory
from dialogs.cases import QUESTION_INPUT, CaseAction, ProposalState
from dialogs.helpdesk import Helpdesk
from dialogs.models import CardSpec, Platform
from sandbox.tenant.build import person, tenant_data
from sandbox.tenant.models import Group

ADDRESS = "imap-off@contoso.com"
CARD = CardSpec(template="notice", data={"text": "A card"})
ANSWERS = {**GOOD_ANSWERS, "address": ADDRESS, "app": "imap-app", "where": ""}


@dataclass
class Desk:
    bot: TeamsBot
    teams: Bot
    cases: SqlCaseStore
    helpdesk: Helpdesk


@asynccontextmanager
async def helpdesk_server(
    tmp_path: Path,
    *,
    gate: asyncio.Event | None = None,
    pattern_threshold: int = 3,
    approvers: ApproverDirectory | None = None,
    approver_ids: list[str] | None = None,
    **settings: Any,
) -> AsyncIterator[Desk]:
    """The Teams server with the helpdesk loop wired as `mailfix serve` wires it (approvers:
    Cy by default, else `approvers` for clicks and `approver_ids` on the case card)."""
    connector = FakeConnector()
    await connector.start()
    pool = WorldPool()
    config = Settings(
        state_dir=tmp_path,
        helpdesk_teams_channel=HELPDESK_CHANNEL,
        approvers=[CY_AAD],
        **settings,
    )
    app = create_app(
        config, diagnose=SandboxDiagnose(pool, deadline=20.0), teams=create_teams_handler
    )
    # The team's roster, as the Bot Connector answers for a member named by Entra object id.
    connector.members[CY_AAD] = {"id": CY_ID, "name": "Cy Osei", "aadObjectId": CY_AAD}
    try:
        async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as http:
            bot = TeamsBot(http, connector, app, Activities(connector.url), None)  # type: ignore[arg-type]
            runtime = bot.runtime
            teams: Bot = runtime.extras["teams_bot"]
            cases = SqlCaseStore(runtime.store.engine)
            approvals = Approvals(
                cases,
                apply_fix=gated(SandboxFixes(pool), gate),
                approvers=approvers or ApproverList(config.approvers),
                owner="replica-1",
            )
            helpdesk = Helpdesk(
                cases,
                Channels({Platform.TEAMS: teams.helpdesk_channel()}),
                approvals,
                recheck=SandboxRecheck(pool),
                check_titles=dict(runtime.conversation.s.check_titles),
                # As the server wires it: approvers by Entra object id (MAILFIX_APPROVERS).
                approver_ids=approver_ids or [CY_AAD],
                pattern_threshold=pattern_threshold,
            )
            runtime.conversation.s = replace(runtime.conversation.s, escalate=helpdesk.escalate)
            teams.helpdesk = helpdesk
            yield Desk(bot, teams, cases, helpdesk)
            await bot.idle()
    finally:
        await connector.close()
        await pool.close()


def gated(apply_fix: ApplyFix, gate: asyncio.Event | None) -> ApplyFix:
    """The sandbox's executor, held until `gate` is set (a slow tenant)."""

    async def run(remediation: Remediation) -> tuple[bool, dict[str, Any]]:
        if gate is not None:
            await gate.wait()
        return await apply_fix(remediation)

    return run


async def install(bot: TeamsBot) -> None:
    response = await bot.post(bot.teams.installed())
    assert response.status == 201, await response.text()
    await bot.idle()


async def invoke(bot: TeamsBot, activity: dict[str, Any]) -> dict[str, Any]:
    response = await bot.post(activity)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


def text_of(card: Any) -> str:
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("text", "value", "title"):
                if isinstance(node.get(key), str):
                    out.append(node[key])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(card)
    return "\n".join(out).replace("**", "")


async def told(bot: TeamsBot, n: int) -> Call:
    """The `n`th message (from 1) the bot sent Ana's personal chat proactively, not a card of
    the diagnosis."""

    def mine() -> list[Call]:
        return [
            c
            for c in bot.connector.posts
            if c.conversation == PERSONAL and (c.text or ANSWER in verbs(c.card))
        ]

    await bot.connector.wait_until(lambda: len(mine()) >= n, f"message {n} to Ana")
    return mine()[n - 1]


async def escalate(bot: TeamsBot) -> tuple[Call | None, dict[str, Any]]:
    """Ana runs a check and presses Escalate: the case thread, and her receipt card."""
    response = await bot.post(bot.teams.personal(f"mailfix {ADDRESS}"))
    assert response.status == 201
    await bot.connector.wait_until(
        lambda: any(card_kind(c.card) == "intake" for c in bot.connector.posts), "the form"
    )
    (form,) = [c for c in bot.connector.posts if card_kind(c.card) == "intake"]
    assert form.answered_id is not None
    body = await invoke(bot, bot.teams.execute("mailfix.intake", ANSWERS, card_id=form.answered_id))
    assert card_kind(body["value"]) == "checking"
    await bot.connector.wait_until(
        lambda: any(card_kind(c.card) == "results" for c in bot.connector.puts), "the results"
    )
    results = [c for c in bot.connector.puts if card_kind(c.card) == "results"][-1]
    data = verbs(results.card)["mailfix.escalate"]
    await invoke(bot, bot.teams.execute("mailfix.escalate", data, card_id=form.answered_id))
    await bot.idle()
    # The receipt is a message of its own in Ana's chat.
    (receipt,) = [c.card for c in bot.connector.posts if card_kind(c.card) == "escalation"]
    assert receipt is not None
    created = bot.connector.created
    return (created[0] if created else None), receipt


def thread_of(thread: Call | None) -> tuple[str, str]:
    assert thread is not None and thread.answered_id is not None
    return f"{thread.conversation};messageid={thread.answered_id}", thread.answered_id


def latest_case_card(bot: TeamsBot, card_id: str) -> dict[str, Any]:
    edits = [c for c in bot.connector.puts if c.activity_id == card_id]
    card = edits[-1].card if edits else None
    assert card is not None
    return card


async def test_the_whole_teams_story(tmp_path: Path) -> None:
    async with helpdesk_server(tmp_path) as desk:
        bot = desk.bot
        await install(bot)
        installed = await bot.runtime.store.conversation_ref(f"teams:team:{TEAM_ID}")
        assert installed is not None and installed["installed"] is True
        assert installed["service_url"] == bot.connector.url
        assert installed["tenant_id"] == TENANT and installed["team_name"] == "IT Helpdesk"

        thread, receipt = await escalate(bot)
        assert thread is not None
        # The case card went to the helpdesk channel as a new thread, from the stored
        # installation (no message from that channel was ever seen).
        assert thread.conversation == HELPDESK_CHANNEL
        assert thread.body["isGroup"] is True
        case_card = thread.card
        # refresh.userIds are Teams user ids: Cy never wrote to the bot, so the team's roster
        # was asked (the Bot Connector takes the Entra object id as member id).
        assert case_card is not None and case_card["refresh"]["userIds"] == [CY_ID]
        lookups = [c for c in bot.connector.calls if c.method == "GET"]
        assert [(c.conversation, c.activity_id) for c in lookups][-1:] == [(TEAM_ID, CY_AAD)]
        shown = text_of(case_card)
        assert ADDRESS in shown and "Ana Silva" in shown
        assert "Switch IMAP on" in shown and "Waiting for approval" in shown
        assert CaseAction.APPROVE.value not in verbs(case_card)  # only approvers get Approve
        said = text_of(receipt)
        assert "Case 1" in said and "the Helpdesk channel of IT Helpdesk" in said
        ref = await desk.cases.message("case:1:helpdesk")
        conversation, card_id = thread_of(thread)
        assert ref is not None and ref["platform"] == "teams"
        assert (ref["conversation"], ref["activity_id"]) == (conversation, card_id)

        def on_card(verb: CaseAction | str, data: dict[str, Any], user: str, **kw: Any) -> Any:
            activity = bot.teams.in_thread(
                str(verb), data, thread=conversation, card_id=card_id, user=user, **kw
            )
            return invoke(bot, activity)

        # Bo claims: the card is edited in place, Bo's copy is his view, Ana is told.
        body = await on_card(CaseAction.CLAIM, {"case": 1}, BO_ID)
        assert body["type"] == "application/vnd.microsoft.card.adaptive"
        assert "Taken by Bo Chen" in text_of(body["value"])
        assert CaseAction.APPROVE.value not in verbs(body["value"])
        assert "Taken by Bo Chen" in text_of(latest_case_card(bot, card_id))
        assert (await told(bot, 1)).text == "Bo Chen from the helpdesk has taken your case 1."

        # Bo asks; the question reaches Ana with a box to answer it.
        question = "Which computer do you use?"
        body = await on_card(CaseAction.ASK, {"case": 1, QUESTION_INPUT: question}, BO_ID)
        assert "Waiting for Ana Silva to answer" in text_of(body["value"])
        asked = await told(bot, 2)
        assert asked.card is not None and question in text_of(asked.card)
        answer = verbs(asked.card)[ANSWER]
        assert answer == {"case": 1}
        # Ana answers from that card (her own chat; the token names her).
        assert asked.answered_id is not None
        reply = {**answer, ANSWER_INPUT: "The laptop at my desk"}
        body = await invoke(bot, bot.teams.execute(ANSWER, reply, card_id=asked.answered_id))
        assert "Sent to the helpdesk with case 1." in text_of(body["value"])
        await bot.idle()
        assert "Ana Silva: The laptop at my desk" in text_of(latest_case_card(bot, card_id))
        # Someone else cannot answer for her.
        body = await invoke(bot, bot.teams.execute(ANSWER, reply, card_id="x", user=BO_ID))
        assert body["value"] == "Case 1 is not waiting for an answer from you."

        # The automatic refresh: Cy (an approver) gets Approve / Reject, Bo does not.
        refresh = CaseAction.REFRESH
        cy_view = (await on_card(refresh, {"case": 1}, CY_ID, trigger="automatic"))["value"]
        bo_view = (await on_card(refresh, {"case": 1}, BO_ID, trigger="automatic"))["value"]
        assert CaseAction.APPROVE.value in verbs(cy_view)
        assert CaseAction.REJECT.value in verbs(cy_view)
        assert CaseAction.APPROVE.value not in verbs(bo_view)
        proposal = verbs(cy_view)[CaseAction.APPROVE.value]["proposal"]

        # Bo's Approve (a forged click: the payload even names Cy) changes nothing.
        forged = {"proposal": proposal, "approver": CY_AAD, "aadObjectId": CY_AAD}
        body = await on_card(CaseAction.APPROVE, forged, BO_ID)
        assert body["value"].startswith("Only approvers can approve")
        still = await desk.cases.proposal(proposal)
        assert still is not None and still.state is ProposalState.PROPOSED

        # Cy approves: applied to the tenant, checked again, the card edited, Ana told.
        approve = bot.teams.in_thread(
            CaseAction.APPROVE.value,
            {"proposal": proposal},
            thread=conversation,
            card_id=card_id,
            user=CY_ID,
        )
        body = await invoke(bot, approve)
        after = text_of(body["value"])
        assert "Approved by Cy Osei" in after and "(Set-CASMailbox)" in after
        assert "passes now" in after
        applied = await desk.cases.proposal(proposal)
        assert applied is not None and applied.state is ProposalState.APPLIED
        assert "Approved by Cy Osei" in text_of(latest_case_card(bot, card_id))
        fixed = await told(bot, 3)
        assert fixed.text == "IMAP is switched on for your mailbox — try your mail app again."
        # Teams redelivering the same click (§B6) and a double click apply nothing again.
        assert (await invoke(bot, approve))["value"] == ALREADY
        body = await on_card(CaseAction.APPROVE, {"proposal": proposal}, CY_ID)
        assert body["value"] == "This fix was already decided."

        body = await on_card(CaseAction.RESOLVE, {"case": 1}, BO_ID)
        assert "Resolved" in text_of(body["value"])
        resolved = await told(bot, 4)
        assert resolved.text == "Bo Chen from the helpdesk marked your case 1 as resolved."
        await bot.idle()

        trail = await desk.cases.trail(case_number=1)
        assert [e.action for e in trail] == [
            "case.opened",
            "proposal.made",
            "case.claimed",
            "case.asked",
            "case.answered",
            "proposal.refused",
            "proposal.approved",
            "fix.applying",
            "fix.applied",
            "recheck.done",
            "case.resolved",
        ]
        by = {e.action: e for e in trail}
        assert by["proposal.refused"].actor_id == BO_AAD
        assert by["proposal.refused"].platform == "teams"
        assert by["fix.applied"].actor_id == CY_AAD
        assert by["case.answered"].actor_id == ANA_AAD
        assert json.dumps(by["fix.applied"].request).count("Set-CASMailbox") == 1
        # Every card edit went to the one case message: none re-posted the case.
        assert len(bot.connector.created) == 1


async def test_an_approver_only_in_a_nested_entra_group_sees_the_buttons(tmp_path: Path) -> None:
    """MAILFIX_APPROVERS names an Entra group; Cy is in a group nested in it and named nowhere
    else. The case card's refresh.userIds holds Cy's Teams id — the group's users read from the
    tenant's Graph, Cy's id from the team's roster — and Cy's automatic refresh has Approve."""
    outer = "0a0a0a0a-0000-4000-8000-00000000a001"
    nested = "0b0b0b0b-0000-4000-8000-00000000a002"
    people = (
        person(user="cy", id=CY_AAD, display_name="Cy Osei", devices=()),
        person(user="bo", id=BO_AAD, display_name="Bo Chen", devices=()),
    )
    groups = (
        Group(id=outer, display_name="Mail approvers", members=(nested,)),
        Group(id=nested, display_name="Helpdesk leads", members=(CY_AAD,)),
    )
    tenant = tenant_data(others=people, groups=groups)
    async with checked(scenario().model_copy(update={"tenant": tenant})) as probe:
        world = probe.world
        dns_ip, dns_port = world.dns_address
        config = Settings(  # the organisation's tenant, as MAILFIX_* would name it
            state_dir=tmp_path,
            approvers=[outer],
            dns_servers=[f"{dns_ip}:{dns_port}"],
            ca_bundle=world.ca_path,
            allowed_private_networks=[world.network_cidr],
            **world.tenant_credentials(),
        )
        async with helpdesk_server(
            tmp_path, approvers=approver_list(config), approver_ids=[outer]
        ) as desk:
            bot = desk.bot
            await install(bot)
            thread, _ = await escalate(bot)
            assert thread is not None and thread.card is not None
            assert thread.card["refresh"]["userIds"] == [CY_ID]
            lookups = [(c.conversation, c.activity_id) for c in bot.connector.calls]
            assert (TEAM_ID, CY_AAD) in lookups  # Cy's Teams id from the roster
            assert (TEAM_ID, outer) not in lookups  # the group id is never taken for a user
            graph = {r.path.split("?", 1)[0] for r in world.requests(hosts_for(Cloud.GLOBAL).graph)}
            assert f"/v1.0/groups/{outer}/transitiveMembers/microsoft.graph.user" in graph

            conversation, card_id = thread_of(thread)

            async def view(user: str) -> Any:
                activity = bot.teams.in_thread(
                    CaseAction.REFRESH.value,
                    {"case": 1},
                    thread=conversation,
                    card_id=card_id,
                    user=user,
                    trigger="automatic",
                )
                return (await invoke(bot, activity))["value"]

            assert CaseAction.APPROVE.value in verbs(await view(CY_ID))
            assert CaseAction.APPROVE.value not in verbs(await view(BO_ID))
            assert f"/v1.0/users/{CY_AAD}/transitiveMemberOf" in {
                r.path.split("?", 1)[0] for r in world.requests(hosts_for(Cloud.GLOBAL).graph)
            }


async def test_an_approver_outside_the_team_is_asked_of_the_roster_once(tmp_path: Path) -> None:
    """An approver the team's roster does not know (404) is left out of refresh.userIds, and the
    roster is not asked about them again each time the card is drawn."""
    outsider = "9d4f7b52-3ec0-4f6b-9cad-4567890abcde"
    async with helpdesk_server(tmp_path, approver_ids=[CY_AAD, outsider]) as desk:
        bot = desk.bot
        await install(bot)
        thread, _ = await escalate(bot)
        assert thread is not None and thread.card is not None
        assert thread.card["refresh"]["userIds"] == [CY_ID]
        conversation, card_id = thread_of(thread)
        claim = bot.teams.in_thread(
            CaseAction.CLAIM.value, {"case": 1}, thread=conversation, card_id=card_id, user=BO_ID
        )
        await invoke(bot, claim)
        await bot.idle()
        edited = latest_case_card(bot, card_id)  # the card drawn again, for everyone
        assert "Taken by Bo Chen" in text_of(edited)
        assert edited["refresh"]["userIds"] == [CY_ID]
        asked = [c for c in bot.connector.calls if c.method == "GET" and c.activity_id == outsider]
        assert len(asked) == 1


async def test_a_refused_post_is_said_in_the_receipt_and_nothing_is_lost(tmp_path: Path) -> None:
    async with helpdesk_server(tmp_path) as desk:
        bot = desk.bot
        # No installation seen yet: nowhere to post, and the person is told so.
        _, receipt = await escalate(bot)
        said = text_of(receipt)
        assert "Case 1" in said and "has not seen its installation in a team yet" in said
        assert bot.connector.created == []  # nothing to post with: nothing sent
        assert await desk.cases.case(1) is not None  # the case is kept all the same

        await install(bot)
        bot.connector.refuse_create = 403  # the app is not in the team that holds the channel
        bot.connector.calls.clear()
        response = await bot.post(bot.teams.personal("mailfix"))
        assert response.status == 201
        await bot.idle()
        form = [c for c in bot.connector.posts if card_kind(c.card) == "intake"][-1]
        assert form.answered_id is not None
        body = await invoke(
            bot, bot.teams.execute("mailfix.intake", ANSWERS, card_id=form.answered_id)
        )
        assert card_kind(body["value"]) == "checking"
        await bot.connector.wait_until(
            lambda: any(card_kind(c.card) == "results" for c in bot.connector.puts), "results"
        )
        results = [c for c in bot.connector.puts if card_kind(c.card) == "results"][-1]
        data = verbs(results.card)["mailfix.escalate"]
        await invoke(bot, bot.teams.execute("mailfix.escalate", data, card_id=form.answered_id))
        await bot.idle()
        (receipt,) = [c.card for c in bot.connector.posts if card_kind(c.card) == "escalation"]
        said = text_of(receipt)
        assert "Case 2" in said
        assert "the mailfix app is not installed in the team that holds it" in said
        assert "BotNotInConversationRoster" in said and "Traceback" not in said
        assert await desk.cases.message("case:2:helpdesk") is None


async def test_installation_and_removal_are_stored_for_every_replica(tmp_path: Path) -> None:
    async with helpdesk_server(tmp_path) as desk:
        bot = desk.bot
        store = bot.runtime.store
        assert await store.conversation_ref(SERVICE_URL_KEY) is None
        await install(bot)
        latest = await store.conversation_ref(SERVICE_URL_KEY)
        assert latest is not None and latest["installed"] is True
        assert (latest["team_id"], latest["service_url"]) == (TEAM_ID, bot.connector.url)
        team = await store.conversation_ref(f"teams:team:{TEAM_ID}")
        assert team is not None and team["reference"]["serviceUrl"] == bot.connector.url
        # The team's channels were read once: this team holds the helpdesk channel.
        helpdesk_team = await store.conversation_ref(HELPDESK_TEAM_KEY)
        assert helpdesk_team is not None and helpdesk_team["channel_name"] == "Helpdesk"
        assert [(c.method, c.conversation, c.activity_id) for c in bot.connector.calls] == [
            ("GET", TEAM_ID, "channels")
        ]
        bot.connector.calls.clear()
        # A stranger's installation (another team, another tenant) does not move the posts.
        stranger = bot.teams.installed(team="19:other@thread.tacv2", tenant="other-tenant")
        assert (await bot.post(stranger)).status == 201
        # Teams redelivering that event (the same activity id) changes nothing.
        assert (await bot.post(stranger)).status == 201
        await bot.idle()
        assert [(c.method, c.conversation) for c in bot.connector.calls] == [
            ("GET", "19:other@thread.tacv2")  # 404 in the fake: not a team we know of
        ]
        posted = await desk.teams.helpdesk_channel().post(Platform.TEAMS, CARD)
        assert posted.where == "the Helpdesk channel of IT Helpdesk" and posted.ref is not None
        assert posted.ref["tenant_id"] == TENANT
        assert bot.connector.created[-1].body["channelData"]["tenant"] == {"id": TENANT}
        bot.connector.calls.clear()
        response = await bot.post(bot.teams.installed(removed=True))
        assert response.status == 201
        await bot.idle()
        gone = await store.conversation_ref(HELPDESK_TEAM_KEY)
        assert gone is not None and gone["installed"] is False
        posted = await desk.teams.helpdesk_channel().post(Platform.TEAMS, CARD)
        assert posted.ref is None and posted.error is not None
        assert "was removed from the team IT Helpdesk, which holds the helpdesk" in posted.error
        assert bot.connector.calls == []


async def test_older_clients_press_case_buttons_through_action_submit(tmp_path: Path) -> None:
    async with helpdesk_server(tmp_path) as desk:
        bot = desk.bot
        await install(bot)
        thread, _ = await escalate(bot)
        conversation, card_id = thread_of(thread)
        activity = bot.teams.in_thread(
            CaseAction.CLAIM.value, {}, thread=conversation, card_id=card_id, user=BO_ID
        )
        # Action.Submit: a message activity, the button's data (with its verb) in `value`.
        activity.update({"type": "message", "value": {"verb": CaseAction.CLAIM.value, "case": 1}})
        del activity["name"]
        assert (await bot.post(activity)).status == 201
        await bot.idle()
        answer = [c for c in bot.connector.posts if c.conversation == conversation][-1]
        assert answer.text == "Taken: the person is told."
        case = await desk.cases.case(1)
        assert case is not None and case.claimed_by == BO_AAD
        assert "Taken by Bo Chen" in text_of(latest_case_card(bot, card_id))


async def test_without_a_helpdesk_case_buttons_say_so(tmp_path: Path) -> None:
    async with helpdesk_server(tmp_path) as desk:
        bot = desk.bot
        desk.teams.helpdesk = None
        bot.runtime.helpdesk = None
        activity = bot.teams.in_thread(
            CaseAction.CLAIM.value, {"case": 1}, thread="19:x@thread.tacv2", card_id="1", user=BO_ID
        )
        body = await invoke(bot, activity)
        assert body["value"] == NO_HELPDESK


async def test_a_slow_fix_answers_in_time_and_edits_the_card_when_done(tmp_path: Path) -> None:
    """Teams waits 15 s for the invoke answer (§B6): an apply that takes longer goes on in the
    background, and the card is edited in place when it is done."""
    gate = asyncio.Event()
    async with helpdesk_server(tmp_path, gate=gate) as desk:
        bot = desk.bot
        desk.teams.case_action_timeout = 0.2
        await install(bot)
        thread, _ = await escalate(bot)
        conversation, card_id = thread_of(thread)
        refresh = bot.teams.in_thread(
            CaseAction.REFRESH.value, {"case": 1}, thread=conversation, card_id=card_id, user=CY_ID
        )
        cy_view = (await invoke(bot, refresh))["value"]
        proposal = verbs(cy_view)[CaseAction.APPROVE.value]["proposal"]
        approve = bot.teams.in_thread(
            CaseAction.APPROVE.value,
            {"proposal": proposal},
            thread=conversation,
            card_id=card_id,
            user=CY_ID,
        )
        body = await invoke(bot, approve)
        assert body["value"] == STILL_WORKING
        waiting = await desk.cases.proposal(proposal)
        assert waiting is not None and waiting.state is ProposalState.APPLYING
        gate.set()
        await bot.idle()
        done = await desk.cases.proposal(proposal)
        assert done is not None and done.state is ProposalState.APPLIED
        assert "Approved by Cy Osei" in text_of(latest_case_card(bot, card_id))
        told_ana = [c.text for c in bot.connector.posts if c.conversation == PERSONAL and c.text]
        assert "IMAP is switched on for your mailbox — try your mail app again." in told_ana


async def test_the_person_may_simply_type_the_answer(tmp_path: Path) -> None:
    async with helpdesk_server(tmp_path) as desk:
        bot = desk.bot
        await install(bot)
        thread, _ = await escalate(bot)
        conversation, card_id = thread_of(thread)
        ask = bot.teams.in_thread(
            CaseAction.ASK.value,
            {"case": 1, QUESTION_INPUT: "Which phone?"},
            thread=conversation,
            card_id=card_id,
            user=BO_ID,
        )
        await invoke(bot, ask)
        asked = await told(bot, 1)
        assert asked.card is not None and "Which phone?" in text_of(asked.card)

        assert (await bot.post(bot.teams.personal("An iPhone 15"))).status == 201
        await bot.idle()
        assert (await told(bot, 2)).text == "Sent to the helpdesk with case 1."
        assert "Ana Silva: An iPhone 15" in text_of(latest_case_card(bot, card_id))
        # Answered: the next message is an ordinary one again (the help).
        assert (await bot.post(bot.teams.personal("thanks"))).status == 201
        await bot.idle()
        assert (await told(bot, 3)).text == HELP_TEXT
        trail = [e.action for e in await desk.cases.trail(case_number=1)]
        assert trail.count("case.answered") == 1


async def test_odd_case_button_data_gets_an_answer_never_a_500(tmp_path: Path) -> None:
    async with helpdesk_server(tmp_path) as desk:
        bot = desk.bot
        odd: list[tuple[str, dict[str, Any]]] = [
            (CaseAction.CLAIM.value, {"case": {"number": 1}}),
            (CaseAction.CLAIM.value, {"case": True}),
            (CaseAction.APPROVE.value, {"proposal": ["x"]}),
            (CaseAction.APPROVE.value, {"proposal": "no-such-fix"}),
            (CaseAction.REFRESH.value, {"case": "99"}),
            (CaseAction.ASK.value, {"case": 1, QUESTION_INPUT: {"a": 1}}),
            (ANSWER, {"case": 1, ANSWER_INPUT: ["x"]}),
        ]
        for verb, data in odd:
            activity = bot.teams.in_thread(
                verb, data, thread="19:x@thread.tacv2", card_id="1", user=BO_ID
            )
            response = await bot.post(activity)
            assert response.status in (200, 400), (verb, data, await response.text())
        assert await desk.cases.case(1) is None
        assert bot.connector.created == []


async def escalate_as(bot: TeamsBot, user: str) -> None:
    """`user` checks ADDRESS in their personal chat and presses Escalate."""
    before = len([c for c in bot.connector.posts if card_kind(c.card) == "intake"])
    assert (await bot.post(bot.teams.personal(f"mailfix {ADDRESS}", user=user))).status == 201

    def forms() -> list[Call]:
        return [c for c in bot.connector.posts if card_kind(c.card) == "intake"]

    await bot.connector.wait_until(lambda: len(forms()) > before, "the form")
    form_id = forms()[-1].answered_id
    assert form_id is not None
    run = bot.teams.execute("mailfix.intake", ANSWERS, card_id=form_id, user=user)
    assert card_kind((await invoke(bot, run))["value"]) == "checking"

    def results() -> list[Call]:
        return [
            c
            for c in bot.connector.puts
            if c.activity_id == form_id and card_kind(c.card) == "results"
        ]

    await bot.connector.wait_until(lambda: bool(results()), "the results")
    data = verbs(results()[-1].card)["mailfix.escalate"]
    await invoke(bot, bot.teams.execute("mailfix.escalate", data, card_id=form_id, user=user))
    await bot.idle()


async def test_a_pattern_alert_reaches_the_teams_channel_and_grows_in_place(
    tmp_path: Path,
) -> None:
    async with helpdesk_server(tmp_path, pattern_threshold=2) as desk:
        bot = desk.bot
        await install(bot)
        await escalate_as(bot, ANA_ID)
        await escalate_as(bot, BO_ID)
        # Two case threads and one alert thread, all in the helpdesk channel.
        created = bot.connector.created
        assert [c.conversation for c in created] == [HELPDESK_CHANNEL] * 3
        alert = bot.connector.created[-1]
        assert alert.card is not None
        shown = text_of(alert.card)
        assert "Possible outage or misconfiguration" in shown
        assert "Ana Silva" in shown and "Bo Chen" in shown
        assert await desk.cases.message("alert:1:helpdesk") is not None
        # A third person: the same alert card is edited in place, no new thread.
        await escalate_as(bot, CY_ID)
        assert len(bot.connector.created) == 4  # Cy's case only
        assert alert.answered_id is not None
        grown = latest_case_card(bot, alert.answered_id)
        assert "Cy Osei" in text_of(grown)
