"""What operators need (issue 8, item 6): /metrics in Prometheus format, a request id per turn
in structured JSON logs. Over real HTTP with the fake Slack."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

from _slackfake import GOOD_ANSWERS, buttons, running_bot
from prometheus_client.parser import text_string_to_metric_families

from bot.metrics import JsonFormatter, RequestIdFilter


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_metrics_count_diagnoses_checks_acks_refusals_and_follow_ups(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as bot:
        assert (await bot.post(bot.sign.submission(GOOD_ANSWERS))).status == 200
        await bot.slack.wait_until(
            lambda: any(
                "mailfix.fixed" in buttons(c.body.get("blocks") or [])
                for c in bot.slack.of("chat.update")
            ),
            "the results card",
        )
        await bot.runtime.supervisor.wait_idle()
        (request,) = bot.diagnose.requests
        fixed = await bot.post(bot.sign.action("mailfix.fixed", request.diagnosis_id))
        assert fixed.status == 200
        await bot.slack.wait_for("chat.postEphemeral")  # the thanks, only to the person
        await bot.runtime.supervisor.wait_idle()
        refused = await bot.http.post(
            "/slack/events", data=b"{", headers={"Content-Type": "application/json"}
        )
        assert refused.status == 401

        response = await bot.http.get("/metrics")
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    found = samples(text)
    cause = (("cause", "autodiscover-dns-missing"), ("client", "outlook"))
    assert found[("mailfix_diagnoses_total", cause)] == 1
    assert (
        found[("mailfix_check_outcomes_total", (("check", "dns.autodiscover"), ("status", "fail")))]
        == 1
    )
    assert found[("mailfix_check_outcomes_total", (("check", "dns.mx"), ("status", "pass")))] == 1
    assert found[("mailfix_ack_seconds_count", (("platform", "slack"),))] == 3
    assert (
        found[("mailfix_requests_refused_total", (("platform", "slack"), ("status", "401")))] == 1
    )
    assert found[("mailfix_follow_ups_total", (("kind", "fixed"),))] == 1
    assert found[("mailfix_queue_waiting", ())] == 0
    assert found[("mailfix_diagnoses_running", ())] == 0
    assert ("mailfix_escalations_total", ()) in found
    # Labels are bounded sets: no address or person ever becomes a label value.
    assert "ana@contoso.com" not in text and "U0ANA" not in text


async def test_every_log_line_of_a_turn_names_its_request_id_in_json(tmp_path: Path) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        async with running_bot(tmp_path) as bot:
            response = await bot.post(
                bot.sign.command("ana@contoso.com"), **{"X-Request-Id": "proxy-abc.123"}
            )
            assert response.headers["X-Request-Id"] == "proxy-abc.123"
            await bot.slack.wait_for("views.open")
            await bot.runtime.supervisor.wait_idle()
            mine = await bot.post(bot.sign.event(bot.sign.home_opened()))
            own_id = mine.headers["X-Request-Id"]
            assert re.fullmatch(r"[0-9a-f]{16}", own_id)  # made up when none came in
            await bot.slack.wait_for("views.publish")
            await bot.runtime.supervisor.wait_idle()
            hostile = await bot.post(
                bot.sign.command("x"), **{"X-Request-Id": "bad id with spaces\u202e"}
            )
            assert re.fullmatch(r"[0-9a-f]{16}", hostile.headers["X-Request-Id"])
            await bot.runtime.supervisor.wait_idle()
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines and all(
        set(e) >= {"time", "level", "logger", "message", "request_id"} for e in lines
    )
    # The background work of a turn (Slack Web API calls logged by slack_sdk) carries its id.
    tagged = [e for e in lines if e["request_id"] == "proxy-abc.123"]
    assert any(e["logger"].startswith("slack_sdk") for e in tagged), lines[:5]
    assert any(e["request_id"] == own_id for e in lines)
