"""Several Slack workspaces (OAuth installs in slack_sdk's SQLAlchemy installation store) and
what is said to a person outside their own turn: a diagnosis keeps the workspace it was asked
from, so when its lease lapses (its replica died) the person is told with that workspace's bot
token; a case's person is told of a helpdesk click with their case's workspace token.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from _slackfake import (
    ANA,
    GOOD_ANSWERS,
    Bot,
    FakeDiagnose,
    buttons,
)
from test_slack_oauth import oauth_bot, start_install

from bot.housekeeping import LAPSED_MESSAGE
from bot.storage import SqlStore
from checks.models import Client
from dialogs.cases import CaseAction, NewCase
from dialogs.models import Action, Platform
from dialogs.store import StoredDiagnosis, utc_now

FABRIKAM, FABRIKAM_TOKEN = "T0FABRIKAM", "xoxb-3333333333-4444444444-FAKEfabrikamTOKEN"
NORTHWIND, NORTHWIND_TOKEN = "T0NORTHWIND", "xoxb-5555555555-6666666666-FAKEnorthwindTOKEN"
BO = "U0BO"


@asynccontextmanager
async def two_workspaces(tmp_path: Path, **values: Any) -> AsyncIterator[Bot]:
    """The server with OAuth installs, mailfix added to Fabrikam's and Northwind's Slack."""
    async with oauth_bot(
        tmp_path, diagnose=FakeDiagnose(), housekeeping_every=0.1, **values
    ) as bot:
        for n, (team, token) in enumerate(
            ((FABRIKAM, FABRIKAM_TOKEN), (NORTHWIND, NORTHWIND_TOKEN))
        ):
            state, cookie = await start_install(bot)
            bot.slack.oauth_codes[f"code-{n}"] = {"team": team, "token": token}
            back = await bot.http.get(
                "/slack/oauth_redirect",
                params={"code": f"code-{n}", "state": state},
                headers={"Cookie": cookie},
            )
            assert back.status == 200, await back.text()
        yield bot
        await bot.runtime.supervisor.wait_idle()


def dead(id: str, person: str, workspace: str) -> StoredDiagnosis:
    """A diagnosis whose replica died: running, asked five minutes ago from `workspace`."""
    at = utc_now() - timedelta(minutes=5)
    return StoredDiagnosis(
        id=id,
        platform=Platform.SLACK,
        person_id=person,
        workspace=workspace,
        conversation=f"D{person}",
        address="ana@contoso.com",
        client=Client.ALL,
        app="outlook_windows",
        created_at=at,
        updated_at=at,
    )


async def test_a_lapsed_diagnosis_is_told_with_its_own_workspaces_token(tmp_path: Path) -> None:
    async with two_workspaces(tmp_path) as bot:
        store = bot.runtime.store
        assert isinstance(store, SqlStore)

        # A check asked from Northwind keeps its workspace, and its cards go out with its token.
        submitted = await bot.post(bot.sign.submission(GOOD_ANSWERS, team=NORTHWIND))
        assert submitted.status == 200
        await bot.slack.wait_for("chat.update")
        await bot.runtime.supervisor.wait_idle()
        [asked] = await store.recent(ANA)
        assert asked.workspace == NORTHWIND and asked.state == "done"
        tokens = {
            c.headers["Authorization"] for c in bot.slack.calls if c.method.startswith("chat.")
        }
        assert tokens == {f"Bearer {NORTHWIND_TOKEN}"}

        # Two checks whose replica died, one per workspace: each person told with their own.
        before = len(bot.slack.calls)
        for diagnosis, lease_owner in (
            (dead("dead-north", ANA, NORTHWIND), "a-replica-that-died"),
            (dead("dead-fab", BO, FABRIKAM), "another-that-died"),
        ):
            await store.create(diagnosis)
            assert await store.hold(diagnosis.id, lease_owner, 0.01)
        told = await bot.slack.wait_until(
            lambda: sum(LAPSED_MESSAGE in str(c.body) for c in bot.slack.calls) == 2,
            "both people told their check died",
        )
        sent = {
            c.body["channel"]: c.headers["Authorization"]
            for c in told[before:]
            if c.method == "chat.postMessage" and LAPSED_MESSAGE in str(c.body)
        }
        assert sent == {
            f"D{ANA}": f"Bearer {NORTHWIND_TOKEN}",
            f"D{BO}": f"Bearer {FABRIKAM_TOKEN}",
        }
        opened = {
            c.body["users"]: c.headers["Authorization"]
            for c in told[before:]
            if c.method == "conversations.open"
        }
        assert opened == {ANA: f"Bearer {NORTHWIND_TOKEN}", BO: f"Bearer {FABRIKAM_TOKEN}"}
        assert not [c for c in bot.slack.calls if "invalid_auth" in str(c.body)]
        for id in ("dead-north", "dead-fab"):
            failed = await store.get(id)
            assert failed is not None and failed.state == "failed"
        await asyncio.sleep(0.3)  # more sweeps: told once, not again
        assert sum(LAPSED_MESSAGE in str(c.body) for c in bot.slack.calls) == 2


async def test_a_helpdesk_click_in_one_workspace_tells_the_person_in_theirs(
    tmp_path: Path,
) -> None:
    async with two_workspaces(tmp_path) as bot:
        cases = bot.runtime.cases
        assert cases is not None
        case = await cases.open_case(
            NewCase(
                diagnosis_id=None,
                platform=Platform.SLACK,
                workspace=FABRIKAM,
                person_id=BO,
                person_name="Bo Chen",
                address="bo@fabrikam.com",
            )
        )
        # An agent in Northwind's Slack takes Bo's case (Bo is in Fabrikam's).
        before = len(bot.slack.calls)
        claim = bot.sign.action(
            CaseAction.CLAIM.value,
            str(case.number),
            user="U0AGENT",
            channel="C0DESK",
            team=NORTHWIND,
        )
        assert (await bot.post(claim)).status == 200
        await bot.slack.wait_until(
            lambda: any("Taken" in str(c.body) for c in bot.slack.calls), "the agent told"
        )
        await bot.runtime.supervisor.wait_idle()
        calls = bot.slack.calls[before:]
        [told_bo] = [c for c in calls if c.method == "conversations.open"]
        assert told_bo.body["users"] == BO
        assert told_bo.headers["Authorization"] == f"Bearer {FABRIKAM_TOKEN}"
        [to_bo] = [
            c for c in calls if c.method == "chat.postMessage" and c.body["channel"] == f"D{BO}"
        ]
        assert to_bo.headers["Authorization"] == f"Bearer {FABRIKAM_TOKEN}"
        [agent] = [c for c in calls if c.method == "chat.postEphemeral"]
        assert agent.body["user"] == "U0AGENT" and "Taken" in str(agent.body)
        assert agent.headers["Authorization"] == f"Bearer {NORTHWIND_TOKEN}"


async def test_case_cards_go_to_the_helpdesk_workspace_whoever_escalates(tmp_path: Path) -> None:
    """MAILFIX_HELPDESK_SLACK_TEAM names the workspace whose channel holds the case cards: a
    person in another workspace escalates, the card is posted and edited with the helpdesk
    workspace's token (the person's receipt with theirs)."""
    async with two_workspaces(
        tmp_path, helpdesk_slack_channel="C0DESK", helpdesk_slack_team=NORTHWIND
    ) as bot:
        assert (await bot.post(bot.sign.submission(GOOD_ANSWERS, team=FABRIKAM))).status == 200
        results = await bot.slack.wait_until(
            lambda: any(
                Action.ESCALATE.value in buttons(c.body.get("blocks") or [])
                for c in bot.slack.of("chat.update")
            ),
            "the results card",
        )
        diagnosis = next(
            buttons(c.body["blocks"])[Action.ESCALATE.value]
            for c in results
            if c.method == "chat.update" and Action.ESCALATE.value in buttons(c.body["blocks"])
        )
        await bot.post(bot.sign.action(Action.ESCALATE.value, diagnosis, team=FABRIKAM))
        await bot.slack.wait_until(
            lambda: any(
                c.body.get("channel") == "C0DESK" for c in bot.slack.of("chat.postMessage")
            ),
            "the case card",
        )
        # An agent in the helpdesk's workspace claims: the card is edited with its token too.
        claim = bot.sign.action(
            CaseAction.CLAIM.value, "1", user="U0AGENT", channel="C0DESK", team=NORTHWIND
        )
        assert (await bot.post(claim)).status == 200
        await bot.slack.wait_until(
            lambda: any(c.body.get("channel") == "C0DESK" for c in bot.slack.of("chat.update")),
            "the case card edited",
        )
        await bot.runtime.supervisor.wait_idle()
        desk = [
            c
            for c in bot.slack.calls
            if c.method in ("chat.postMessage", "chat.update") and c.body.get("channel") == "C0DESK"
        ]
        assert {c.method for c in desk} == {"chat.postMessage", "chat.update"}
        assert {c.headers["Authorization"] for c in desk} == {f"Bearer {NORTHWIND_TOKEN}"}
        receipt = [
            c
            for c in bot.slack.of("chat.postMessage")
            if c.body.get("channel") == f"D{ANA}" and "C0DESK" not in str(c.body.get("channel"))
        ]
        assert receipt
        assert {c.headers["Authorization"] for c in receipt} == {f"Bearer {FABRIKAM_TOKEN}"}
