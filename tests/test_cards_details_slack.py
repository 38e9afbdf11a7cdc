"""Slack: "Details for the helpdesk" on the results message opens the helpdesk view in a modal,
over real HTTP to a local fake Slack (the same harness as tests/test_bot_slack.py)."""

from __future__ import annotations

from pathlib import Path

from _slackfake import GOOD_ANSWERS, blocks_text, buttons, running_bot
from cards_helpers import all_texts, validate_slack


async def test_the_details_button_opens_the_helpdesk_view_in_a_modal(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as bot:
        await bot.post(bot.sign.command("ana@contoso.com"))
        await bot.slack.wait_for("views.open")
        response = await bot.post(bot.sign.submission(GOOD_ANSWERS))
        assert response.status == 200
        await bot.slack.wait_until(
            lambda: any(
                "mailfix.details" in buttons(c.body.get("blocks") or [])
                for c in bot.slack.of("chat.update")
            ),
            "the results card with its details button",
        )
        results = [c for c in bot.slack.of("chat.update") if buttons(c.body.get("blocks") or [])]
        ids = buttons(results[-1].body["blocks"])
        diagnosis_id = ids["mailfix.details"]
        assert "Steps" not in blocks_text(results[-1].body["blocks"])  # details are not inline
        await bot.runtime.supervisor.wait_idle()

        opened_before = len(bot.slack.of("views.open"))
        response = await bot.post(
            bot.sign.action("mailfix.details", diagnosis_id, message_ts=results[-1].body["ts"])
        )
        assert response.status == 200
        await bot.slack.wait_for("views.open", opened_before + 1)
        call = bot.slack.of("views.open")[opened_before]
        assert call.body["trigger_id"] == "T-action"
        view = call.body["view"]
        validate_slack(view, "modal")
        assert view["title"]["text"] == "Helpdesk details"
        text = blocks_text(view["blocks"])
        assert "Details for the helpdesk" in text and "Most likely:" in text
        shown = "\n".join(all_texts(view["blocks"]))
        assert "None" not in shown and '{"' not in shown
        # the message itself is left as it was: pressing it records nothing
        assert await bot.runtime.store.follow_ups(diagnosis_id) == []
