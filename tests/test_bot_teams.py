"""The Teams side, over real HTTP: activities in, Bot Connector calls out to a local fake.

Each test starts the whole server (aiohttp on 127.0.0.1:0, SQLite in tmp_path) with the Teams
endpoint from `bot.teams.create_teams_handler`, and a fake Bot Connector (another aiohttp server
on port 0) that every activity names as its `serviceUrl`. Tests wait for connector calls with a
condition variable and for the server's background work with `TaskSupervisor.wait_idle`, never
by sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from _teamsfake import (
    ADAPTIVE,
    ANA_AAD,
    ANA_EMAIL,
    BO_ID,
    CHANNEL,
    GOOD_ANSWERS,
    PERSONAL,
    WAIT,
    Activities,
    FakeConnector,
    GatedDiagnose,
    TeamsBot,
    card_kind,
    verbs,
)
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.limits import RateLimiter
from bot.server import create_app
from bot.settings import Settings
from bot.teams import ALREADY, HELP_TEXT, create_teams_handler, well_formed_authorization

APP_ID = "9e4cbd1c-6d2f-4f51-8b5a-7a0e1c4b2f11"


@asynccontextmanager
async def running_teams(
    tmp_path: Path,
    *,
    diagnose: GatedDiagnose | None = None,
    settings: dict[str, Any] | None = None,
    **create: Any,
) -> AsyncIterator[TeamsBot]:
    connector = FakeConnector()
    await connector.start()
    diagnose = diagnose or GatedDiagnose()
    config = Settings(state_dir=tmp_path, **(settings or {}))
    app = create_app(config, diagnose=diagnose, teams=create_teams_handler, **create)
    try:
        async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as http:
            bot = TeamsBot(http, connector, app, Activities(connector.url), diagnose)
            yield bot
            await bot.idle()
    finally:
        await connector.close()


@dataclass
class StartedDiagnose(GatedDiagnose):
    """`GatedDiagnose` that says when the first diagnosis reached it."""

    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, request: Any, progress: Any) -> Any:
        self.started.set()
        return await super().__call__(request, progress)


async def intake_card_id(bot: TeamsBot, text: str = "mailfix") -> str:
    """Type `text` in the personal chat; the id the connector gave the intake card."""
    response = await bot.post(bot.teams.personal(text))
    assert response.status == 201
    await bot.connector.wait_until(
        lambda: any(card_kind(c.card) == "intake" for c in bot.connector.posts), "the form"
    )
    (call,) = [c for c in bot.connector.posts if card_kind(c.card) == "intake"]
    assert call.answered_id is not None
    return call.answered_id


async def invoke(bot: TeamsBot, activity: dict[str, Any]) -> dict[str, Any]:
    response = await bot.post(activity)
    assert response.status == 200, await response.text()
    assert response.content_type == "application/json"
    body: dict[str, Any] = await response.json()
    return body


async def finished_run(bot: TeamsBot) -> tuple[str, str]:
    """A complete diagnosis through Action.Execute: (card message id, diagnosis id)."""
    card_id = await intake_card_id(bot)
    body = await invoke(bot, bot.teams.execute("mailfix.intake", GOOD_ANSWERS, card_id=card_id))
    assert card_kind(body["value"]) == "checking"
    results = await results_put(bot, card_id)
    return card_id, verbs(results)["mailfix.run_again"]["diagnosis_id"]


async def results_put(bot: TeamsBot, activity_id: str) -> dict[str, Any]:
    await bot.connector.wait_until(
        lambda: any(
            c.activity_id == activity_id and card_kind(c.card) == "results"
            for c in bot.connector.puts
        ),
        f"the results card on {activity_id}",
    )
    card = [c for c in bot.connector.puts if c.activity_id == activity_id][-1].card
    assert card is not None
    return card


# --- starting: "mailfix" and "@mailfix" --------------------------------------------------------


async def test_personal_mailfix_posts_the_intake_card_prefilled_from_the_profile(
    tmp_path: Path,
) -> None:
    async with running_teams(tmp_path) as bot:
        response = await bot.post(bot.teams.personal("mailfix"))
        assert response.status == 201
        await bot.idle()

        (lookup,) = [c for c in bot.connector.calls if c.method == "GET"]
        assert lookup.conversation == PERSONAL
        (post,) = bot.connector.posts
        assert post.conversation == PERSONAL
        (attachment,) = post.body["attachments"]
        assert attachment["contentType"] == ADAPTIVE
        card = post.card
        assert card is not None and card["type"] == "AdaptiveCard" and card["version"] == "1.5"
        inputs = {e["id"]: e for e in card["body"] if e["type"].startswith("Input.")}
        assert set(inputs) >= {"address", "app", "symptom"}
        assert inputs["address"]["value"] == ANA_EMAIL
        submit = verbs(card)
        assert "mailfix.intake" in submit
        fallback = card["actions"][0]["fallback"]
        assert fallback == {
            "type": "Action.Submit",
            "title": card["actions"][0]["title"],
            "data": {"verb": "mailfix.intake"},
        }

        # The conversation reference is kept, as JSON, for proactive messages later.
        store = bot.runtime.store
        ref = await store.conversation_ref(f"teams:conversation:{PERSONAL}")
        assert ref["serviceUrl"] == bot.connector.url
        assert ref["conversation"]["id"] == PERSONAL
        assert ref["bot"]["id"].startswith("28:")
        assert await store.conversation_ref(f"teams:person:{ANA_AAD}") == ref


async def test_channel_mention_strips_the_mention_and_keeps_the_address(tmp_path: Path) -> None:
    async with running_teams(tmp_path) as bot:
        response = await bot.post(bot.teams.channel("mailfix ana@contoso.com"))
        assert response.status == 201
        # The bot's name inside the address survives (the SDK's remove_recipient_mention
        # would cut every "mailfix" out of the text).
        response = await bot.post(bot.teams.channel("mailfix-lab@contoso.com"))
        assert response.status == 201
        await bot.idle()

        posts = bot.connector.posts
        assert [card_kind(p.card) for p in posts] == ["intake", "intake"]
        assert {p.conversation for p in posts} == {CHANNEL}
        addresses = [
            next(e["value"] for e in p.card["body"] if e.get("id") == "address")  # type: ignore[index]
            for p in posts
        ]
        assert sorted(addresses) == ["ana@contoso.com", "mailfix-lab@contoso.com"]
        assert [c for c in bot.connector.calls if c.method == "GET"] == []  # no profile lookup


async def test_help_and_chatter_get_the_help_text_as_plain_text(tmp_path: Path) -> None:
    async with running_teams(tmp_path) as bot:
        for text in ("help", "hello there"):
            assert (await bot.post(bot.teams.personal(text))).status == 201
        await bot.idle()
        assert [(p.text, p.body.get("textFormat")) for p in bot.connector.posts] == [
            (HELP_TEXT, "plain"),
            (HELP_TEXT, "plain"),
        ]
        assert bot.diagnose.requests == []


# --- the intake form: Action.Execute, Action.Submit, field errors ------------------------------


async def test_execute_answers_with_a_checking_card_then_edits_that_message_to_results(
    tmp_path: Path,
) -> None:
    gate = asyncio.Event()
    diagnose = StartedDiagnose(gate=gate)
    async with running_teams(tmp_path, diagnose=diagnose) as bot:
        card_id = await intake_card_id(bot)
        activity = bot.teams.execute("mailfix.intake", GOOD_ANSWERS, card_id=card_id)

        # The engine is held: the invoke answer cannot be waiting for it. HTTP 200 with the
        # card as the invoke body is what the double-serialisation workaround buys (the SDK's
        # own path gives 500: see test_the_sdk_still_double_serialises_invoke_bodies).
        response = await bot.post(activity)
        assert response.status == 200
        assert response.headers["X-Content-Type-Options"] == "nosniff"  # written by the server
        body = await response.json()
        assert set(body) == {"statusCode", "type", "value"}
        assert body["statusCode"] == 200
        assert body["type"] == ADAPTIVE
        # A short card (the full progress card names every check: too slow to answer with).
        assert card_kind(body["value"]) == "checking"
        assert "Checking ana@contoso.com" in json.dumps(body["value"])
        # The turn after the answer reached the engine: the flow's first card (posted before
        # any check starts), the progress card, replaced it in place.
        async with asyncio.timeout(WAIT):
            await diagnose.started.wait()
        await bot.connector.wait_until(lambda: bool(bot.connector.puts), "the progress card")
        assert [card_kind(c.card) for c in bot.connector.puts] == ["progress"]
        assert bot.connector.puts[0].activity_id == card_id

        gate.set()
        results = await results_put(bot, card_id)
        await bot.idle()
        assert {c.activity_id for c in bot.connector.puts} == {card_id}
        assert card_kind(bot.connector.puts[-1].card) == "results"
        assert set(verbs(results)) == {"mailfix.run_again", "mailfix.fixed", "mailfix.escalate"}
        assert len(bot.connector.posts) == 1  # only the form: everything else edited in place
        (request,) = bot.diagnose.requests
        assert request.address == "ana@contoso.com"

        stored = await bot.runtime.store.get(request.diagnosis_id)
        assert stored.state == "done"
        assert stored.person_id == ANA_AAD
        assert stored.platform.value == "teams"


async def test_submit_fallback_edits_the_form_message_in_place(tmp_path: Path) -> None:
    async with running_teams(tmp_path) as bot:
        card_id = await intake_card_id(bot)
        response = await bot.post(
            bot.teams.submit({"verb": "mailfix.intake", **GOOD_ANSWERS}, card_id=card_id)
        )
        assert response.status == 201
        await results_put(bot, card_id)
        await bot.idle()

        kinds = [card_kind(c.card) for c in bot.connector.puts]
        assert kinds[0] == "progress" and kinds[-1] == "results"
        assert {c.activity_id for c in bot.connector.puts} == {card_id}
        assert len(bot.diagnose.requests) == 1


async def test_a_bad_address_redisplays_the_form_with_the_error_and_runs_nothing(
    tmp_path: Path,
) -> None:
    async with running_teams(tmp_path) as bot:
        card_id = await intake_card_id(bot)
        answers = {**GOOD_ANSWERS, "address": "ana at contoso"}
        body = await invoke(bot, bot.teams.execute("mailfix.intake", answers, card_id=card_id))
        assert body["type"] == ADAPTIVE
        card = body["value"]
        assert card_kind(card) == "intake"
        address = next(e for e in card["body"] if e.get("id") == "address")
        assert address["value"] == "ana at contoso"  # what they typed stays
        assert "Attention" in json.dumps(card)  # the error is shown on the card

        # The Submit path gets the same form, as an edit of the same message.
        response = await bot.post(
            bot.teams.submit({"verb": "mailfix.intake", **answers}, card_id=card_id)
        )
        assert response.status == 201
        await bot.idle()
        (put,) = bot.connector.puts
        assert put.activity_id == card_id
        assert put.card is not None
        assert put.card["body"] == card["body"]
        assert bot.diagnose.requests == []


# --- the results card's buttons ----------------------------------------------------------------


async def test_run_again_keeps_the_old_card_and_posts_a_new_run(tmp_path: Path) -> None:
    async with running_teams(tmp_path) as bot:
        card_id, did = await finished_run(bot)
        body = await invoke(
            bot, bot.teams.execute("mailfix.run_again", {"diagnosis_id": did}, card_id=card_id)
        )
        old = body["value"]
        assert card_kind(old) == "results"
        assert verbs(old) == {}  # the old results lose their buttons
        assert "Checked again" in json.dumps(old)

        await bot.connector.wait_until(
            lambda: any(card_kind(c.card) == "progress" for c in bot.connector.posts),
            "a new progress message",
        )
        (new,) = [c for c in bot.connector.posts if card_kind(c.card) == "progress"]
        assert new.answered_id is not None and new.answered_id != card_id
        await results_put(bot, new.answered_id)
        assert len(bot.diagnose.requests) == 2


async def test_four_concurrent_run_again_presses_start_one_diagnosis(tmp_path: Path) -> None:
    """Four clicks (four activities) at once: the turn pipeline lets one act (issue 7)."""
    async with running_teams(tmp_path) as bot:
        card_id, did = await finished_run(bot)
        presses = [
            bot.teams.execute("mailfix.run_again", {"diagnosis_id": did}, card_id=card_id)
            for _ in range(4)
        ]
        bodies = await asyncio.gather(*(invoke(bot, p) for p in presses))
        await bot.idle()
        cards = [b for b in bodies if b["type"] == ADAPTIVE]
        refused = [b["value"] for b in bodies if b["type"] != ADAPTIVE]
        assert len(cards) == 1 and "Checked again" in json.dumps(cards[0]["value"])
        assert refused == ["This check was already run again: see the newer results."] * 3
        assert len(bot.diagnose.requests) == 2  # the first run and one run again
        assert [card_kind(c.card) for c in bot.connector.posts].count("progress") == 1


async def test_fixed_and_escalate(tmp_path: Path) -> None:
    async with running_teams(tmp_path) as bot:
        card_id, did = await finished_run(bot)

        body = await invoke(
            bot, bot.teams.execute("mailfix.escalate", {"diagnosis_id": did}, card_id=card_id)
        )
        assert card_kind(body["value"]) == "results"
        assert "mailfix.escalate" not in verbs(body["value"])
        await bot.connector.wait_until(
            lambda: any(card_kind(c.card) == "escalation" for c in bot.connector.posts),
            "the escalation card",
        )

        # The Submit fallback of "That fixed it" works the same way.
        response = await bot.post(
            bot.teams.submit({"verb": "mailfix.fixed", "diagnosis_id": did}, card_id=card_id)
        )
        assert response.status == 201
        await bot.connector.wait_until(
            lambda: any("glad your mail works" in (c.text or "") for c in bot.connector.posts),
            "the thank-you",
        )
        await bot.idle()
        last = bot.connector.puts[-1]
        assert last.activity_id == card_id
        assert "Marked as fixed" in json.dumps(last.card)
        assert verbs(last.card) == {}
        assert len(bot.diagnose.requests) == 1


async def test_someone_else_cannot_use_the_buttons(tmp_path: Path) -> None:
    async with running_teams(tmp_path) as bot:
        card_id, did = await finished_run(bot)
        puts = len(bot.connector.puts)
        body = await invoke(
            bot,
            bot.teams.execute(
                "mailfix.run_again", {"diagnosis_id": did}, card_id=card_id, user=BO_ID
            ),
        )
        assert body["type"] == "application/vnd.microsoft.activity.message"
        assert body["value"].startswith("Only the person who ran this check")
        await bot.idle()
        assert len(bot.connector.puts) == puts
        assert len(bot.diagnose.requests) == 1


async def test_unknown_verbs_and_non_execute_actions(tmp_path: Path) -> None:
    async with running_teams(tmp_path) as bot:
        body = await invoke(bot, bot.teams.execute("mailfix.explode", {}, card_id="1"))
        assert body["type"] == "application/vnd.microsoft.activity.message"
        assert "don't know that button" in body["value"]

        activity = bot.teams.execute("mailfix.intake", GOOD_ANSWERS, card_id="1")
        activity["value"]["action"]["type"] = "Action.Submit"
        response = await bot.post(activity)
        assert response.status == 400
        body = await response.json()
        assert body["type"] == "application/vnd.microsoft.error"
        assert body["value"]["code"] == "BadRequest"
        assert bot.diagnose.requests == []


# --- retries, limits, failures -----------------------------------------------------------------


async def test_a_repeated_activity_runs_one_diagnosis(tmp_path: Path) -> None:
    gate = asyncio.Event()
    async with running_teams(tmp_path, diagnose=GatedDiagnose(gate=gate)) as bot:
        card_id = await intake_card_id(bot)
        activity = bot.teams.execute("mailfix.intake", GOOD_ANSWERS, card_id=card_id)
        first = await invoke(bot, activity)
        again = await invoke(bot, activity)  # Teams retried: same activity id
        assert card_kind(first["value"]) == "checking"
        assert again == {
            "statusCode": 200,
            "type": "application/vnd.microsoft.activity.message",
            "value": ALREADY,
        }
        submit = bot.teams.submit({"verb": "mailfix.intake", **GOOD_ANSWERS}, card_id=card_id)
        assert (await bot.post(submit)).status == 201
        assert (await bot.post(submit)).status == 201
        gate.set()
        await bot.idle()
        assert len(bot.diagnose.requests) == 2  # one per distinct activity

        # A repeated "mailfix" message does not post a second form.
        message = bot.teams.personal("mailfix")
        for _ in range(2):
            assert (await bot.post(message)).status == 201
        await bot.idle()
        assert [card_kind(p.card) for p in bot.connector.posts].count("intake") == 2


async def test_an_invoke_delivered_to_two_replicas_runs_once(tmp_path: Path) -> None:
    """Each replica answers the intake invoke at once (it cannot know about the other); the
    ledger in the shared database decides after the answers: one diagnosis, one card."""
    async with running_teams(tmp_path) as one, running_teams(tmp_path) as two:
        card_id = await intake_card_id(one)
        activity = one.teams.execute("mailfix.intake", GOOD_ANSWERS, card_id=card_id)
        answers = [await invoke(one, activity), await invoke(two, activity)]
        assert [card_kind(a["value"]) for a in answers] == ["checking", "checking"]
        await results_put(one, card_id)
        await one.idle()
        await two.idle()
        assert len(one.diagnose.requests) + len(two.diagnose.requests) == 1
        assert {c.activity_id for c in one.connector.puts} == {card_id}
        assert card_kind(one.connector.puts[-1].card) == "results"
        assert len(one.connector.posts) == 1  # the form; nothing else was posted


async def test_the_rate_limit_is_a_teams_message(tmp_path: Path) -> None:
    limiter = RateLimiter(1, 600.0)
    async with running_teams(tmp_path, limiter=limiter) as bot:
        card_id, _ = await finished_run(bot)
        puts = len(bot.connector.puts)
        # The invoke is answered before the limit is counted (no database on the request
        # path): the "checking" card, which then becomes the refusal, in place.
        body = await invoke(bot, bot.teams.execute("mailfix.intake", GOOD_ANSWERS, card_id=card_id))
        assert card_kind(body["value"]) == "checking"
        await bot.idle()
        (refusal,) = bot.connector.puts[puts:]
        assert refusal.activity_id == card_id
        assert "You've run 1 diagnoses" in json.dumps(refusal.card)
        assert verbs(refusal.card) == {}

        assert (await bot.post(bot.teams.personal("mailfix"))).status == 201
        await bot.idle()
        assert (bot.connector.posts[-1].text or "").startswith("You've run 1 diagnoses")
        assert len(bot.diagnose.requests) == 1


async def test_a_crashing_diagnosis_ends_in_the_error_card(tmp_path: Path) -> None:
    diagnose = GatedDiagnose(raise_exc=RuntimeError("engine blew up"))
    async with running_teams(tmp_path, diagnose=diagnose) as bot:
        card_id = await intake_card_id(bot)
        body = await invoke(bot, bot.teams.execute("mailfix.intake", GOOD_ANSWERS, card_id=card_id))
        assert card_kind(body["value"]) == "checking"
        await bot.idle()
        last = bot.connector.puts[-1]
        assert last.activity_id == card_id
        assert card_kind(last.card) == "error"
        assert "mailfix.run_again" in verbs(last.card)
        assert "engine blew up" not in json.dumps(last.card)  # no internals on the card


async def test_a_connector_failure_mid_run_still_ends_in_the_error_card(tmp_path: Path) -> None:
    async with running_teams(tmp_path) as bot:
        card_id = await intake_card_id(bot)
        bot.connector.fail_puts = 1  # the first edit (progress) fails: the stream crashes
        body = await invoke(bot, bot.teams.execute("mailfix.intake", GOOD_ANSWERS, card_id=card_id))
        assert card_kind(body["value"]) == "checking"
        await bot.idle()
        assert [c.activity_id for c in bot.connector.puts] == [card_id, card_id]
        assert card_kind(bot.connector.puts[-1].card) == "error"


# --- HTTP edges: authentication, size, shape ---------------------------------------------------


def _segment(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (None, True),
        ("Bearer " + _segment({"alg": "RS256"}) + "." + _segment({"iss": "x"}) + ".sig", True),
        ("Bearer not-a-jwt", False),
        ("Bearer a.b.c", False),
        ("Basic dXNlcjpwYXNz", False),
        ("Bearer", False),
        ("Bearer " + _segment({"alg": "RS256"}) + "." + _segment(["list"]) + ".sig", False),
    ],
)
def test_authorization_header_shape(header: str | None, ok: bool) -> None:
    assert well_formed_authorization(header) is ok


async def test_with_an_app_id_a_request_without_a_token_is_401(tmp_path: Path) -> None:
    async with running_teams(tmp_path, settings={"teams_app_id": APP_ID}) as bot:
        response = await bot.post(bot.teams.personal("mailfix"))
        assert response.status == 401
        assert response.content_type == "application/json"
        assert bot.connector.calls == []


@pytest.mark.parametrize("app_id", [APP_ID, None])
async def test_a_garbage_token_is_401_not_500(tmp_path: Path, app_id: str | None) -> None:
    async with running_teams(tmp_path, settings={"teams_app_id": app_id}) as bot:
        response = await bot.post(bot.teams.personal("mailfix"), Authorization="Bearer not-a-jwt")
        assert response.status == 401
        assert (await response.json())["error"] == "unauthorized"
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert bot.connector.calls == []


async def test_sdk_token_errors_are_mapped_to_permission_errors() -> None:
    import jwt
    from botbuilder.integration.aiohttp import CloudAdapter
    from botbuilder.schema import Activity

    from bot.teams import MappedAuthentication

    class Broken:
        async def authenticate_request(self, activity: Any, header: str) -> Any:
            raise jwt.DecodeError("Not enough segments")

    class Down:
        async def authenticate_request(self, activity: Any, header: str) -> Any:
            raise ConnectionRefusedError("login.botframework.com")

    with pytest.raises(PermissionError):
        await MappedAuthentication(Broken()).authenticate_request(Activity(), "Bearer x")
    with pytest.raises(ConnectionRefusedError):  # our outage, not the caller's fault
        await MappedAuthentication(Down()).authenticate_request(Activity(), "Bearer x")
    assert CloudAdapter  # the adapter the mapping plugs into


async def test_oversized_bodies_are_413_and_bad_shapes_are_4xx(tmp_path: Path) -> None:
    async with running_teams(tmp_path, settings={"max_body_bytes": 4096}) as bot:
        activity = bot.teams.personal("mailfix " + "x" * 8000)
        response = await bot.post(activity)
        assert response.status == 413
        assert (await response.json())["error"] == "payload_too_large"

        response = await bot.http.post(
            "/api/messages", data=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert response.status == 400
        response = await bot.http.post("/api/messages", data=b"hello")
        assert response.status == 415
        no_service = bot.teams.personal("mailfix")
        del no_service["serviceUrl"]
        assert (await bot.post(no_service)).status == 400
        assert (await bot.post(["not", "an", "activity"])).status == 400  # type: ignore[arg-type]
        await bot.idle()
        assert bot.connector.calls == []


# --- why the workaround exists ----------------------------------------------------------------


async def test_the_sdk_still_double_serialises_invoke_bodies() -> None:
    """The SDK's own Universal Action path answers 500 (headline finding 1).

    If this starts failing, botbuilder fixed the bug and `TeamsBot`'s `on_invoke_activity`
    override may return to the SDK's `on_adaptive_card_invoke`.
    """
    from botbuilder.core.teams import TeamsActivityHandler
    from botbuilder.integration.aiohttp import (
        CloudAdapter,
        ConfigurationBotFrameworkAuthentication,
    )
    from botbuilder.schema import AdaptiveCardInvokeResponse

    from bot.teams import AdapterConfig

    class Plain(TeamsActivityHandler):  # type: ignore[misc]
        async def on_adaptive_card_invoke(self, turn_context: Any, invoke_value: Any) -> Any:
            return AdaptiveCardInvokeResponse(
                status_code=200, type=ADAPTIVE, value={"type": "AdaptiveCard", "version": "1.5"}
            )

    adapter = CloudAdapter(
        ConfigurationBotFrameworkAuthentication(AdapterConfig("", "", "MultiTenant", ""))
    )
    handler = Plain()

    async def messages(request: web.Request) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await adapter.process(request, handler)
        except AttributeError:  # msrest: 'dict' object has no attribute 'is_xml_model'
            return web.Response(status=500)
        return response

    app = web.Application()
    app.router.add_post("/api/messages", messages)
    connector = FakeConnector()
    await connector.start()
    try:
        async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as http:
            activity = Activities(connector.url).execute("x", {}, card_id="1")
            response = await http.post("/api/messages", json=activity)
            assert response.status == 500
    finally:
        await connector.close()


async def test_the_server_finds_the_teams_endpoint_when_an_app_id_is_set(tmp_path: Path) -> None:
    """No `teams=` factory: with MAILFIX_TEAMS_APP_ID set, `create_app` plugs in `bot.teams`."""
    config = Settings(state_dir=tmp_path, teams_app_id=APP_ID)
    app = create_app(config, diagnose=GatedDiagnose())
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as http:
        # Refused before any call to its serviceUrl.
        activity = Activities("http://127.0.0.1:9/").personal("mailfix")
        response = await http.post("/api/messages", json=activity)
        assert response.status == 401  # the Teams endpoint (not 501), refusing an unsigned call
