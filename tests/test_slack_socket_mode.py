"""Socket Mode gets the HTTP endpoint's shape check: odd payloads over the websocket (the fake
Slack's own Socket Mode server, a real websocket on loopback) are acked and refused politely —
never an exception, never a listener reading a field of the wrong type, never a missed ack.
(A payload that is not an object never reaches the app: slack_sdk's socket client refuses it
while reading the envelope.)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from _slackfake import ANA, APP_TOKEN, running_bot

from bot.slack import UNREADABLE

ODD: list[tuple[str, Any]] = [
    ("interactive", {"type": "block_actions", "user": "U0ANA", "actions": []}),
    ("interactive", {"type": "block_actions", "user": {"id": ANA}, "actions": [{}]}),
    (  # bolt itself cannot build a request from this one (its context reader raises)
        "interactive",
        {
            "type": "block_actions",
            "user": {"id": 5},
            "team": {"id": [1]},
            "channel": 7,
            "container": [],
            "actions": [{"action_id": "mailfix.run_again"}],
        },
    ),
    (
        "interactive",
        {
            "type": "block_actions",
            "user": {"id": ANA},
            "actions": [{"action_id": "mailfix.run_again", "value": 5}],
        },
    ),
    (
        "interactive",
        {
            "type": "view_submission",
            "user": {"id": ANA},
            "view": {"callback_id": "mailfix.intake", "state": []},
        },
    ),
    ("interactive", {"user": {"id": ANA}}),  # no type
    ("interactive", "payload={not json"),  # slack_sdk reads a string as {"text": ...}
    ("events_api", {"type": "event_callback", "event": "app_home_opened"}),
    ("events_api", {"type": "event_callback", "event": {"type": "app_home_opened", "user": 7}}),
    ("events_api", {"type": ["event_callback"]}),
    ("slash_commands", {"command": "/mailfix"}),  # no user
    ("slash_commands", {"user_id": ANA, "text": "ana@contoso.com"}),  # no command
]


@pytest.mark.parametrize(("kind", "payload"), ODD)
async def test_an_odd_socket_mode_payload_is_acked_and_refused_politely(
    tmp_path: Path, caplog: Any, kind: str, payload: Any
) -> None:
    caplog.set_level(logging.INFO)
    async with running_bot(
        tmp_path, settings={"slack_app_token": APP_TOKEN, "slack_signing_secret": None}
    ) as bot:
        socket = await bot.slack.connected()
        ack = await socket.send_envelope(kind, payload)
        assert ack["envelope_id"]  # acked: Slack does not send it again
        if kind == "slash_commands":
            assert ack["payload"] == {"response_type": "ephemeral", "text": UNREADABLE}
        else:
            assert "payload" not in ack
        await bot.runtime.supervisor.wait_idle()
        assert "Slack Socket Mode request refused" in caplog.text
        assert "Traceback" not in caplog.text and "Failed to run" not in caplog.text
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        # Nothing ran: no form, no message, no home.
        assert bot.slack.methods == ["apps.connections.open"]
        assert bot.diagnose.requests == []

        # The same socket still serves a well-formed command.
        command = dict(parse_qsl(bot.sign.command("ana@contoso.com")[0]))
        assert "payload" not in await socket.send_envelope("slash_commands", command)
        (opened,) = await bot.slack.wait_for("views.open")
        assert opened.body["view"]["callback_id"] == "mailfix.intake"
        await bot.runtime.supervisor.wait_idle()


async def test_a_socket_mode_event_we_do_not_handle_is_acked_quietly(
    tmp_path: Path, caplog: Any
) -> None:
    caplog.set_level(logging.INFO)
    async with running_bot(
        tmp_path, settings={"slack_app_token": APP_TOKEN, "slack_signing_secret": None}
    ) as bot:
        socket = await bot.slack.connected()
        event = {"type": "event_callback", "event": {"type": "reaction_added", "user": ANA}}
        ack = await socket.send_envelope("events_api", event)
        assert ack["envelope_id"] and "payload" not in ack
        await bot.runtime.supervisor.wait_idle()
        assert "refused" not in caplog.text  # well-formed, just not ours
        assert bot.slack.methods == ["apps.connections.open"]
