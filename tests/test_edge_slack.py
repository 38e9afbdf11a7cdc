"""Hostile requests to `POST /slack/events`, over real HTTP (issue 8, items 1, 2 and 7).

One table: each request, the status it must get, and what the log may hold afterwards — no
traceback, no 5xx, at most one warning line for it, and none of the body's content. The
signature is checked on the raw bytes before anything parses them, so unsigned garbage is a
401 however malformed; signed garbage is a 400 (or 413/415); signed payloads of a shape no
listener can read are refused with a 400 or acked and ignored, never a 500 or a missed ack.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from _slackfake import ANA, GOOD_ANSWERS, SECRET, Bot, SlackRequests, running_bot
from slack_sdk.signature import SignatureVerifier

from bot.slack import REPLAY_WINDOW, verify_signature

MARKER = "zz-body-content-marker-zz"  # put in bodies: must never reach the log
SIGN = SlackRequests()
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def _headers(extra: dict[str, str]) -> dict[str, str]:
    return {k.replace("_", "-"): v for k, v in extra.items()}


def signed(body: bytes, content_type: str, **headers: str) -> tuple[bytes, dict[str, str]]:
    """Signed as Slack signs (reference §A5), over the raw bytes whatever they hold."""
    ts = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256)
    base = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": "v0=" + digest.hexdigest(),
    }
    return body, {**base, **_headers(headers)}


def unsigned(body: bytes, content_type: str = JSON, **headers: str) -> tuple[bytes, dict[str, str]]:
    return body, {"Content-Type": content_type, **_headers(headers)}


def signed_with_timestamp(body: bytes, ts: str) -> tuple[bytes, dict[str, str]]:
    """A correct HMAC over a timestamp that is not a plain integer."""
    digest = hmac.new(SECRET.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256)
    return body, {
        "Content-Type": JSON,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": "v0=" + digest.hexdigest(),
    }


def payload(value: Any) -> bytes:
    return urlencode({"payload": json.dumps(value)}).encode()


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def interaction(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(
        dict(parse_qsl(SIGN.action("mailfix.fixed", "d1")[0]))["payload"]
    )
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def submission(**view_changes: Any) -> dict[str, Any]:
    form = dict(parse_qsl(SIGN.submission(GOOD_ANSWERS)[0]))
    body: dict[str, Any] = json.loads(form["payload"])
    body["view"].update(view_changes)
    body["view"] = {k: v for k, v in body["view"].items() if v is not None}
    return body


def home(**event_changes: Any) -> dict[str, Any]:
    body = SIGN.home_opened(event_id=f"Ev{time.monotonic_ns()}")
    body["event"].update(event_changes)
    return body


@dataclass(frozen=True)
class Case:
    request: Callable[[], tuple[bytes, dict[str, str]]]
    status: int


CASES: dict[str, Case] = {
    # --- no (good) signature: refused before any parsing ------------------------------------
    "unsigned {": Case(lambda: unsigned(b"{"), 401),
    "unsigned [1,2,3]": Case(lambda: unsigned(b"[1,2,3]"), 401),
    "unsigned null": Case(lambda: unsigned(b"null"), 401),
    "unsigned, nested 50 000 deep": Case(lambda: unsigned(nested(50_000)), 401),
    "unsigned invalid UTF-8": Case(lambda: unsigned(b'{"a": "\xff\xfe"}'), 401),
    "unsigned payload={not json": Case(lambda: unsigned(b"payload={not json", FORM), 401),
    "timestamp abc": Case(
        lambda: unsigned(
            b"{}", X_Slack_Request_Timestamp="abc", X_Slack_Signature="v0=" + "0" * 64
        ),
        401,
    ),
    "timestamp 1.7e9": Case(
        lambda: unsigned(
            b"{}", X_Slack_Request_Timestamp="1.7e9", X_Slack_Signature="v0=" + "0" * 64
        ),
        401,
    ),
    "timestamp ' 123' (signed as such)": Case(
        lambda: signed_with_timestamp(b"{}", " " + str(int(time.time()))), 401
    ),
    "timestamp -5": Case(
        lambda: unsigned(b"{}", X_Slack_Request_Timestamp="-5", X_Slack_Signature="v0=00"),
        401,
    ),
    "timestamp of 400 digits": Case(
        lambda: unsigned(b"{}", X_Slack_Request_Timestamp="9" * 400, X_Slack_Signature="v0=0"),
        401,
    ),
    "stale but correctly signed": Case(
        lambda: SIGN.event(
            {"type": "url_verification", "challenge": MARKER},
            timestamp=int(time.time()) - REPLAY_WINDOW - 5,
        ),
        401,
    ),
    "signed with another secret": Case(
        lambda: SlackRequests("another-secret-entirely-000000").command(MARKER), 401
    ),
    "empty body": Case(lambda: unsigned(b""), 401),
    # --- the wrong kind of request -------------------------------------------------------------
    "text/plain": Case(lambda: signed(b"hello " + MARKER.encode(), "text/plain"), 415),
    "no content type": Case(lambda: (b"{}", {}), 415),
    "multipart": Case(lambda: signed(b"--x--", "multipart/form-data; boundary=x"), 415),
    # --- signed, but not readable ---------------------------------------------------------------
    "signed {": Case(lambda: signed(b"{" + MARKER.encode(), JSON), 400),
    "signed [1,2,3]": Case(lambda: signed(b"[1,2,3]", JSON), 400),
    "signed null": Case(lambda: signed(b"null", JSON), 400),
    "signed string": Case(lambda: signed(b'"' + MARKER.encode() + b'"', JSON), 400),
    "signed, nested 50 000 deep": Case(lambda: signed(nested(50_000), JSON), 400),
    "signed, object nested 100 deep": Case(
        lambda: signed(b'{"a":' * 100 + b"1" + b"}" * 100, JSON), 400
    ),
    "signed invalid UTF-8 JSON": Case(lambda: signed(b'{"a": "\xff"}', JSON), 400),
    "signed invalid UTF-8 form": Case(lambda: signed(b"text=\xff\xfe", FORM), 400),
    "signed payload={not json": Case(lambda: signed(b"payload={not json", FORM), 400),
    "signed payload=[]": Case(lambda: signed(payload([]), FORM), 400),
    "signed payload nested deep": Case(
        lambda: signed(urlencode({"payload": "[" * 5000 + "]" * 5000}).encode(), FORM), 400
    ),
    "signed, 500 form fields": Case(
        lambda: signed(urlencode({f"f{n}": "x" for n in range(500)}).encode(), FORM), 400
    ),
    "signed huge integer": Case(lambda: signed(b'{"type": ' + b"9" * 5000 + b"}", JSON), 400),
    # --- signed, readable, but of a shape no listener can take (item 2) ------------------------
    "payload without type": Case(lambda: signed(payload({"user": {"id": ANA}}), FORM), 400),
    "payload type 5": Case(lambda: signed(payload({"type": 5}), FORM), 400),
    "actions: []": Case(lambda: signed(payload(interaction(actions=[])), FORM), 400),
    "actions: a string": Case(lambda: signed(payload(interaction(actions=MARKER)), FORM), 400),
    "actions: [1]": Case(lambda: signed(payload(interaction(actions=[1])), FORM), 400),
    "action id a number": Case(
        lambda: signed(payload(interaction(actions=[{"action_id": 7}])), FORM), 400
    ),
    "action value a list": Case(
        lambda: signed(
            payload(interaction(actions=[{"action_id": "mailfix.fixed", "value": [1]}])), FORM
        ),
        400,
    ),
    "user a string": Case(lambda: signed(payload(interaction(user=MARKER)), FORM), 400),
    "user without id": Case(lambda: signed(payload(interaction(user={"name": "x"})), FORM), 400),
    "team a list": Case(lambda: signed(payload(interaction(team=[1, 2])), FORM), 400),
    "container a string": Case(lambda: signed(payload(interaction(container="x")), FORM), 400),
    "channel id a dict": Case(
        lambda: signed(payload(interaction(channel={"id": {"a": 1}})), FORM), 400
    ),
    "view.state a list": Case(lambda: signed(payload(submission(state=[1])), FORM), 400),
    "view.state.values a string": Case(
        lambda: signed(payload(submission(state={"values": MARKER})), FORM), 400
    ),
    "view without callback id": Case(
        lambda: signed(payload(submission(callback_id=None)), FORM), 400
    ),
    "private_metadata a dict": Case(
        lambda: signed(payload(submission(private_metadata={"a": 1})), FORM), 400
    ),
    "view a string": Case(lambda: signed(payload({**submission(), "view": MARKER}), FORM), 400),
    "event a list": Case(lambda: signed(json.dumps({**home(), "event": [1]}).encode(), JSON), 400),
    "home opened by user 5": Case(lambda: signed(json.dumps(home(user=5)).encode(), JSON), 400),
    "event id a number": Case(
        lambda: signed(json.dumps({**home(), "event_id": 5}).encode(), JSON), 400
    ),
    "challenge a number": Case(
        lambda: signed(json.dumps({"type": "url_verification", "challenge": 1}).encode(), JSON),
        400,
    ),
    "another slash command": Case(
        lambda: signed(urlencode({"command": "/other", "user_id": ANA}).encode(), FORM), 400
    ),
    "command without user": Case(
        lambda: signed(urlencode({"command": "/mailfix", "text": MARKER}).encode(), FORM), 400
    ),
    # --- signed, readable, answers of the wrong types: the form comes back with errors -------
    "answers of the wrong types": Case(
        lambda: signed(
            SIGN.submission(
                {"address": ["a@b.c"], "app": 5, "symptom": {"x": 1}, "since": [], "where": 7}
            )[0].encode(),
            FORM,
        ),
        200,
    ),
    "an address with a right-to-left override": Case(
        lambda: signed(
            SIGN.submission({**GOOD_ANSWERS, "address": "ana\u202e@contoso.com"})[0].encode(),
            FORM,
        ),
        200,
    ),
    "elements that are not objects": Case(
        lambda: signed(
            payload(submission(state={"values": {"address": {"address": 5}, "app": {"x": [1]}}})),
            FORM,
        ),
        200,
    ),
    "selected option a string": Case(
        lambda: signed(
            payload(
                submission(
                    state={
                        "values": {
                            "app": {"app": {"type": "static_select", "selected_option": "x"}},
                            "since": {
                                "since": {"type": "checkboxes", "selected_options": [1, "a"]}
                            },
                        }
                    }
                )
            ),
            FORM,
        ),
        200,
    ),
    # --- signed, well formed, not for us: acked and ignored --------------------------------------
    "an event we do not handle": Case(
        lambda: signed(
            json.dumps({**home(), "event": {"type": "message", "text": MARKER}}).encode(), JSON
        ),
        200,
    ),
    "a button that is not ours": Case(
        lambda: signed(
            payload(interaction(actions=[{"action_id": "someone.else", "value": MARKER}])), FORM
        ),
        200,
    ),
    "view_closed": Case(
        lambda: signed(payload({**submission(), "type": "view_closed"}), FORM), 200
    ),
    "another modal submitted": Case(
        lambda: signed(payload(submission(callback_id="other.modal")), FORM), 200
    ),
    "a JSON type we do not know": Case(
        lambda: signed(json.dumps({"type": "app_rate_limited"}).encode(), JSON), 200
    ),
}


def problems_in_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    found = []
    for record in caplog.records:
        text = record.getMessage()
        if record.exc_info or record.exc_text or "Traceback" in text:
            found.append(f"traceback: {record.name}: {text[:200]}")
        if MARKER in text:
            found.append(f"body content logged: {record.name}: {text[:200]}")
    return found


@pytest.fixture
async def bot(tmp_path: Path) -> Any:
    async with running_bot(tmp_path, settings={"max_body_bytes": 1024 * 1024}) as running:
        yield running


@pytest.mark.parametrize("name", list(CASES))
async def test_hostile_request(name: str, bot: Bot, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    body, headers = CASES[name].request()
    caplog.clear()
    response = await bot.http.post("/slack/events", data=body, headers=headers)
    text = await response.text()
    await bot.runtime.supervisor.wait_idle()
    assert response.status == CASES[name].status, text
    if response.status == 200 and text:
        # A form sent back with its errors: words for a person, never a Python repr.
        errors = json.loads(text)["errors"]
        assert errors and all(isinstance(v, str) and "{" not in v for v in errors.values())
    if response.status >= 400:
        assert response.content_type == "application/json"
        answer = json.loads(text)
        assert set(answer) == {"error", "message"} and len(text) < 300
        assert MARKER not in text
    assert problems_in_log(caplog) == []
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) <= 1, [r.getMessage() for r in warnings]
    # Nothing ran: no form, no diagnosis, no message.
    assert [c.method for c in bot.slack.calls if c.method != "auth.test"] == []
    assert bot.diagnose.requests == []


async def test_the_same_server_still_serves_a_good_request_after_the_table(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for case in CASES.values():
        body, headers = case.request()
        response = await bot.http.post("/slack/events", data=body, headers=headers)
        assert response.status < 500
    response = await bot.post(bot.sign.command("ana@contoso.com"))
    assert response.status == 200
    await bot.slack.wait_for("views.open")
    await bot.runtime.supervisor.wait_idle()
    assert problems_in_log(caplog) == []


async def raw_request(bot: Bot, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Bytes the aiohttp client would refuse to send (non-ASCII headers), on a raw socket."""
    assert bot.http.server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", bot.http.server.port)
    try:
        writer.write(head + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()
    status = int(answer.split(b" ", 2)[1])
    return status, answer


@pytest.mark.parametrize(
    "signature",
    ["v0=ñ" + "a" * 63, "v0=" + "é" * 64, "v0=\u202e" + "0" * 63, "🙂"],
)
async def test_a_signature_with_non_ascii_characters_is_401(
    signature: str, bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = b'{"type": "url_verification", "challenge": "x"}'
    head = (
        "POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"X-Slack-Request-Timestamp: {int(time.time())}\r\nX-Slack-Signature: {signature}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    status, answer = await raw_request(bot, head, body)
    assert status == 401, answer[:300]
    assert problems_in_log(caplog) == []


def test_verify_signature_rules() -> None:
    """The rules on their own (reference §A5): integer timestamp within 300 s, bytes compared."""
    secret = SECRET.encode()
    now = 1_763_800_000.0
    body = b"token=x&command=%2Fmailfix"
    good = "v0=" + SignatureVerifier(SECRET).generate_signature(
        timestamp=str(int(now)), body=body.decode()
    ).removeprefix("v0=")

    def check(ts: str, sig: str, data: bytes = body, at: float = now) -> str | None:
        headers = {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig}
        return verify_signature(secret, headers, data, now=at)

    assert check(str(int(now)), good) is None
    assert check(str(int(now)), good, at=now + 300) is None
    assert check(str(int(now)), good, at=now + 301) == "a stale timestamp"
    assert check(str(int(now)), good, at=now - 301) == "a stale timestamp"
    assert check(str(int(now)), good, body + b"&x=1") == "a wrong signature"
    assert check(str(int(now)), good.upper()) == "a wrong signature"
    assert check("1.7e9", good) == "a timestamp that is not an integer"
    assert check("١٧٦٣٨٠٠٠٠٠", good) == "a timestamp that is not an integer"  # Arabic digits
    assert check(" " + str(int(now)), good) == "a timestamp that is not an integer"
    assert check(str(int(now)), "v0=ñ") == "a malformed signature"
    assert verify_signature(secret, {}, body, now=now) == "no signature"


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("ana\u202e@contoso.com", "text-direction character"),  # parse_address, by name
        ("ana@con\u2066toso.com", "text-direction character"),
        ("an\u200ba@contoso.com", "invisible character"),  # parse_address, by name
        ("ana@contoso\ufeff.com", "invisible character"),
        ("ana\u2060@contoso.com", "invisible character"),
    ],
)
async def test_the_form_refuses_hidden_characters_in_the_address(
    address: str, words: str, bot: Bot
) -> None:
    response = await bot.post(bot.sign.submission({**GOOD_ANSWERS, "address": address}))
    assert response.status == 200
    answer = json.loads(await response.text())
    assert answer["response_action"] == "errors"
    assert words in answer["errors"]["address"]
    assert not any(ch in answer["errors"]["address"] for ch in address if not ch.isascii())
    await bot.runtime.supervisor.wait_idle()
    assert bot.diagnose.requests == []


class FormCheckFails:
    """A conversation whose form check breaks (a bug, a dependency down): the listener fails
    before it could ack."""

    def __init__(self) -> None:
        self.checked = 0

    def check_form(self, turn: Any) -> Any:
        self.checked += 1
        raise RuntimeError(MARKER)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)


async def test_a_listener_that_fails_before_its_ack_still_acks_politely(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    conversation = FormCheckFails()
    async with running_bot(tmp_path, conversation=conversation) as bot:
        started = time.perf_counter()
        response = await bot.post(bot.sign.submission(GOOD_ANSWERS))
        took = time.perf_counter() - started
        assert response.status == 200
        answer = json.loads(await response.text())
        assert answer["response_action"] == "errors"
        assert "could not read" in answer["errors"]["address"]
        assert took < 2.0  # an ack, not Slack's 3-second timeout
        assert conversation.checked == 1
    assert problems_in_log(caplog) == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == ["Slack _on_submit could not be handled (RuntimeError)"]
