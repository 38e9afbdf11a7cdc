"""The Slack side, over real HTTP: signed requests in, Web API calls out to a local fake Slack.

Each test starts the whole server (aiohttp on 127.0.0.1:0, SQLite in tmp_path) and a fake Slack
Web API (another aiohttp server on port 0) that records every call; tests wait for calls with a
condition variable, never by sleeping.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from _slackfake import (
    ANA,
    ANA_EMAIL,
    BO,
    CHANNEL,
    GOOD_ANSWERS,
    Bot,
    FakeDiagnose,
    blocks_text,
    buttons,
    running_bot,
)

from bot.limits import RateLimiter
from dialogs.models import Post


async def open_and_submit(bot: Bot, answers: dict[str, Any] | None = None) -> None:
    response = await bot.post(bot.sign.submission(answers or GOOD_ANSWERS))
    assert response.status == 200
    assert await response.text() == ""  # a bare ack closes the modal


async def results_message(bot: Bot, updates: int = 1) -> dict[str, Any]:
    """The DM that ends up holding the results card (the last chat.update of it)."""
    await bot.slack.wait_until(
        lambda: any(
            "mailfix.fixed" in buttons(c.body.get("blocks") or [])
            for c in bot.slack.of("chat.update")
        ),
        "the results card",
    )
    return [c for c in bot.slack.of("chat.update") if buttons(c.body.get("blocks") or [])][-1].body


# --- the slash command -----------------------------------------------------------------------


async def test_slash_command_acks_before_slack_answers_and_opens_the_form_with_its_trigger(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as bot:
        # views.open will not answer until we say so: the ack must not wait for it.
        gate = asyncio.Event()
        bot.slack.gates["views.open"] = gate
        response = await bot.post(bot.sign.command("ana@contoso.com", trigger="13345.trig"))
        assert response.status == 200
        assert await response.text() == ""
        assert bot.slack.of("chat.postMessage") == []
        (call,) = await bot.slack.wait_for("views.open")
        gate.set()

        assert call.body["trigger_id"] == "13345.trig"
        view = call.body["view"]
        assert view["type"] == "modal"
        assert view["callback_id"] == "mailfix.intake"
        assert json.loads(view["private_metadata"])["conversation"] == CHANNEL
        address = next(b for b in view["blocks"] if b.get("block_id") == "address")
        assert address["element"]["initial_value"] == "ana@contoso.com"
        # The bot token went in the Authorization header, never in a body.
        assert call.headers["Authorization"].startswith("Bearer xoxb-")
        assert "xoxb-" not in json.dumps(call.body)
        await bot.runtime.supervisor.wait_idle()


async def test_without_an_address_a_loading_view_opens_first_then_the_form_with_the_email(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path, settings={"slack_lookup_email": True}) as bot:
        response = await bot.post(bot.sign.command("", trigger="999.trig"))
        assert response.status == 200
        (update,) = await bot.slack.wait_for("views.update")
        opened = bot.slack.of("views.open")[0]
        assert opened.body["trigger_id"] == "999.trig"
        assert "callback_id" not in opened.body["view"] or opened.body["view"]["callback_id"] == ""
        assert bot.slack.methods.index("views.open") < bot.slack.methods.index("users.info")
        assert bot.slack.of("users.info")[0].body["user"] == ANA
        # views.update names the view views.open returned, with its hash (race protection).
        assert update.body["view_id"].startswith("V")
        assert update.body["hash"]
        form = update.body["view"]
        assert form["callback_id"] == "mailfix.intake"
        address = next(b for b in form["blocks"] if b.get("block_id") == "address")
        assert address["element"]["initial_value"] == ANA_EMAIL

        # A second /mailfix uses the cached email: the form opens at once, no lookup.
        await bot.post(bot.sign.command("", trigger="1000.trig"))
        await bot.slack.wait_for("views.open", 2)
        assert len(bot.slack.of("users.info")) == 1
        assert bot.slack.of("views.open")[1].body["view"]["callback_id"] == "mailfix.intake"
        await bot.runtime.supervisor.wait_idle()


# --- the intake modal ------------------------------------------------------------------------


async def test_invalid_answers_come_back_as_response_action_errors(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as bot:
        answers = {**GOOD_ANSWERS, "address": "not-an-address", "app": None}
        response = await bot.post(bot.sign.submission(answers))
        assert response.status == 200
        body = await response.json()
        assert body["response_action"] == "errors"
        assert set(body["errors"]) == {"address", "app"}
        assert "mail app" in body["errors"]["app"]
        assert bot.diagnose.requests == []
        assert bot.slack.of("chat.postMessage") == []


async def test_full_story_from_slash_command_to_results_and_the_fixed_button(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as bot:
        await bot.post(bot.sign.command("ana@contoso.com"))
        await bot.slack.wait_for("views.open")
        await open_and_submit(bot)

        # Progress first, in a DM, then edited in place into the results.
        (opened,) = await bot.slack.wait_for("conversations.open")
        assert opened.body["users"] == ANA
        (progress,) = await bot.slack.wait_for("chat.postMessage")
        assert progress.body["channel"] == f"D{ANA}"
        assert "ana@contoso.com" in blocks_text(progress.body["blocks"])
        results = await results_message(bot)
        assert results["channel"] == f"D{ANA}"
        assert results["ts"].endswith(".000100")
        text = blocks_text(results["blocks"])
        assert "autodiscover record for contoso.com is missing" in text
        ids = buttons(results["blocks"])
        assert set(ids) >= {"mailfix.run_again", "mailfix.fixed", "mailfix.escalate"}
        diagnosis_id = ids["mailfix.fixed"]
        (request,) = bot.diagnose.requests
        assert request.address == "ana@contoso.com"
        assert request.diagnosis_id == diagnosis_id
        stored = await bot.runtime.store.get(diagnosis_id)
        assert stored is not None and stored.state == "done" and stored.person_id == ANA
        await bot.runtime.supervisor.wait_idle()

        # "That fixed it": the same message is updated, and a thank-you only Ana sees.
        before = len(bot.slack.of("chat.update"))
        response = await bot.post(
            bot.sign.action("mailfix.fixed", diagnosis_id, message_ts=results["ts"])
        )
        assert response.status == 200
        await bot.slack.wait_for("chat.postEphemeral")
        await bot.runtime.supervisor.wait_idle()
        update = bot.slack.of("chat.update")[before]
        assert update.body["ts"] == results["ts"]
        assert "Marked as fixed" in blocks_text(update.body["blocks"])
        assert "mailfix.fixed" not in buttons(update.body["blocks"])
        (thanks,) = bot.slack.of("chat.postEphemeral")
        assert thanks.body["user"] == ANA
        assert "glad your mail works" in thanks.body["text"]
        assert [f.kind for f in await bot.runtime.store.follow_ups(diagnosis_id)] == ["fixed"]

        # Bo cannot use Ana's buttons.
        await bot.post(bot.sign.action("mailfix.escalate", diagnosis_id, user=BO))
        await bot.slack.wait_for("chat.postEphemeral", 2)
        refused = bot.slack.of("chat.postEphemeral")[1].body
        assert refused["user"] == BO
        assert "Only the person who ran this check" in refused["text"]

        # App Home lists the diagnosis.
        home = bot.sign.home_opened(user=ANA)
        response = await bot.post(bot.sign.event(home))
        assert response.status == 200
        (published,) = await bot.slack.wait_for("views.publish")
        assert published.body["user_id"] == ANA
        assert published.body["view"]["type"] == "home"
        assert diagnosis_id in blocks_text(published.body["view"]["blocks"])


async def test_ephemeral_mode_posts_progress_and_results_only_to_the_person(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path, settings={"slack_reply_mode": "ephemeral"}) as bot:
        await open_and_submit(bot)
        await bot.slack.wait_for("chat.postEphemeral", 2)
        await bot.runtime.supervisor.wait_idle()
        progress, results = bot.slack.of("chat.postEphemeral")
        assert progress.body["channel"] == results.body["channel"] == CHANNEL
        assert progress.body["user"] == results.body["user"] == ANA
        assert "mailfix.fixed" in buttons(results.body["blocks"])
        # Ephemeral messages cannot be edited: no chat.update, no DM.
        assert bot.slack.of("chat.update") == []
        assert bot.slack.of("chat.postMessage") == []


async def test_ephemeral_mode_falls_back_to_a_dm_where_the_bot_cannot_post(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path, settings={"slack_reply_mode": "ephemeral"}) as bot:
        bot.slack.errors["chat.postEphemeral"] = "channel_not_found"
        await open_and_submit(bot)
        await results_message(bot)
        await bot.runtime.supervisor.wait_idle()
        assert bot.slack.of("chat.postMessage")[0].body["channel"] == f"D{ANA}"


async def test_a_button_on_an_ephemeral_message_replaces_it_through_response_url(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path, settings={"slack_reply_mode": "ephemeral"}) as bot:
        await open_and_submit(bot)
        await bot.slack.wait_for("chat.postEphemeral", 2)
        results = bot.slack.of("chat.postEphemeral")[1].body
        diagnosis_id = buttons(results["blocks"])["mailfix.fixed"]
        await bot.runtime.supervisor.wait_idle()

        hook = bot.slack.response_url("ephemeral-1")
        await bot.post(
            bot.sign.action(
                "mailfix.fixed", diagnosis_id, channel=CHANNEL, ephemeral=True, response_url=hook
            )
        )
        (replaced,) = await bot.slack.wait_for("response_url")
        assert replaced.body["replace_original"] is True
        assert "Marked as fixed" in blocks_text(replaced.body["blocks"])


# --- rate limit --------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_rate_limit_tells_the_person_how_long_to_wait(tmp_path: Path) -> None:
    clock = Clock()
    limiter = RateLimiter(2, 600.0, clock=clock)
    async with running_bot(tmp_path, limiter=limiter) as bot:
        await open_and_submit(bot)
        await results_message(bot)
        await bot.runtime.supervisor.wait_idle()
        clock.now = 60.0
        await open_and_submit(bot)
        await bot.slack.wait_for("chat.postMessage", 2)
        await bot.runtime.supervisor.wait_idle()
        assert len(bot.diagnose.requests) == 2

        # Third one within ten minutes: refused, with a friendly wait time.
        clock.now = 120.0
        await open_and_submit(bot)
        (notice,) = await bot.slack.wait_for("chat.postEphemeral")
        await bot.runtime.supervisor.wait_idle()
        text = notice.body["text"]
        assert "You've run 2 diagnoses in the last 10 minutes" in text
        assert "try again in 3 minutes" in text  # one token back 300 s after the bucket's start
        assert len(bot.diagnose.requests) == 2

        # /mailfix itself says so at once (only to them, just after its ack), without a form.
        opened = len(bot.slack.of("views.open"))
        response = await bot.post(bot.sign.command("ana@contoso.com"))
        assert response.status == 200
        _, notice = await bot.slack.wait_for("chat.postEphemeral", 2)
        assert "You've run 2 diagnoses" in notice.body["text"]
        await bot.runtime.supervisor.wait_idle()
        assert len(bot.slack.of("views.open")) == opened

        # Bo has his own bucket.
        await bot.post(bot.sign.submission(GOOD_ANSWERS, user=BO))
        await bot.slack.wait_until(lambda: len(bot.diagnose.requests) == 3, "Bo's diagnosis")
        await bot.runtime.supervisor.wait_idle()


# --- events ------------------------------------------------------------------------------------


async def test_url_verification_echoes_the_challenge(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as bot:
        payload = {
            "token": "x",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
            "type": "url_verification",
        }
        response = await bot.post(bot.sign.event(payload))
        assert response.status == 200
        assert (await response.json())["challenge"] == payload["challenge"]


async def test_app_home_messages_tab_publishes_nothing(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as bot:
        response = await bot.post(
            bot.sign.event(bot.sign.home_opened(tab="messages", event_id="Ev1"))
        )
        assert response.status == 200
        await bot.post(bot.sign.event(bot.sign.home_opened(user=BO, event_id="Ev2")))
        (published,) = await bot.slack.wait_for("views.publish")
        await bot.runtime.supervisor.wait_idle()
        assert published.body["user_id"] == BO
        assert len(bot.slack.of("views.publish")) == 1


async def test_slack_retries_of_an_event_are_handled_once(tmp_path: Path, caplog: Any) -> None:
    caplog.set_level("INFO", logger="bot.slack")
    async with running_bot(tmp_path) as bot:
        first = bot.sign.home_opened(user=ANA, event_id="Ev0RETRY")
        await bot.post(bot.sign.event(first))
        await bot.slack.wait_for("views.publish")
        retry = await bot.post(
            bot.sign.event(first),
            **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"},
        )
        assert retry.status == 200
        await bot.runtime.supervisor.wait_idle()  # acked first, deduplicated just after
        assert "ignored duplicate Slack event Ev0RETRY (retry 1)" in caplog.text
        await bot.post(bot.sign.event(bot.sign.home_opened(user=BO, event_id="Ev0OTHER")))
        await bot.slack.wait_for("views.publish", 2)
        await bot.runtime.supervisor.wait_idle()
        assert sorted(c.body["user_id"] for c in bot.slack.of("views.publish")) == [ANA, BO]


# --- failures become cards, not silence -----------------------------------------------------


class CrashingConversation:
    """Delegates to the real conversation, but `run` dies after its first reply."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def run(self, turn: Any, answers: Any) -> Any:
        async for reply in self.real.run(turn, answers):
            assert isinstance(reply, Post)
            yield reply
            raise RuntimeError("boom in the flow")


async def test_a_crash_in_background_work_is_logged_and_shown_as_an_error_card(
    tmp_path: Path, caplog: Any
) -> None:
    async with running_bot(tmp_path, diagnose=FakeDiagnose(gate=asyncio.Event())) as bot:
        runtime = bot.runtime
        runtime.conversation = CrashingConversation(runtime.conversation)
        await open_and_submit(bot)
        (update,) = await bot.slack.wait_for("chat.update")
        await runtime.supervisor.wait_idle()
        assert update.body["channel"] == f"D{ANA}"
        assert update.body["ts"]  # the progress message, replaced in place
        assert "Something went wrong" in blocks_text(update.body["blocks"])
        assert "background task slack.diagnosis failed" in caplog.text
        assert "boom in the flow" in caplog.text
