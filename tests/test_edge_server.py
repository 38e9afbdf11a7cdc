"""The server's edge under slow and many clients, over real sockets on loopback (issue 8).

`bot.server.start` runs the app the way `mailfix serve` does (GuardedRunner): a header read
timeout, a body read timeout, a cap on open connections. Also: the Teams endpoint's refusals
without an app id, the SQLite file's mode, and the diagnosis queue on its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from _slackfake import FakeDiagnose
from _teamsfake import Activities, FakeConnector, GatedDiagnose

from bot.server import RUNTIME, create_app, start
from bot.settings import Settings
from bot.teams import create_teams_handler
from dialogs.queue import QueueClosed, QueueFull, RunQueue


@asynccontextmanager
async def serving(tmp_path: Path, **values: Any) -> AsyncIterator[int]:
    settings = Settings(state_dir=tmp_path, **values)
    app = create_app(settings, diagnose=FakeDiagnose())
    runner, port = await start(app, settings, host="127.0.0.1", port=0)
    try:
        yield port
    finally:
        await runner.cleanup()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """What the server sent before closing the connection (fails if it stays open)."""
    async with asyncio.timeout(seconds):
        return await reader.read()


async def get(port: int, path: str = "/healthz") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    answer = await closed_within(reader, 5)
    writer.close()
    return int(answer.split(b" ", 2)[1]), answer


# --- slow clients ------------------------------------------------------------------------------


async def test_a_client_that_never_finishes_its_headers_is_cut_off(tmp_path: Path) -> None:
    async with serving(tmp_path, header_timeout=1.0) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.perf_counter()
        writer.write(b"POST /slack/events HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
        for _ in range(20):  # one more header line every 0.2 s, never the blank line
            if reader.at_eof():
                break
            writer.write(b"X-Slow: 1\r\n")
            await writer.drain()
            await asyncio.sleep(0.2)
        await closed_within(reader, 3)
        assert 0.9 < time.perf_counter() - started < 3.5
        writer.close()
        # Meanwhile the server answers everyone else.
        assert (await get(port))[0] == 200


async def test_300_slow_connections_are_all_released_quickly(tmp_path: Path) -> None:
    async with serving(tmp_path, header_timeout=1.0) as port:
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(300)]
        for _, writer in conns:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and nothing more
        started = time.perf_counter()
        status, _ = await get(port)
        assert status == 200  # the slow ones do not hold up a fast one
        await asyncio.gather(*(closed_within(reader, 5) for reader, _ in conns))
        released = time.perf_counter() - started
        for _, writer in conns:
            writer.close()
        assert released < 5
    print(f"\n300 slow connections released in {released:.2f} s")


async def test_a_body_that_comes_too_slowly_is_a_json_408(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving(
        tmp_path,
        body_timeout=1.0,
        slack_bot_token="xoxb-1-2-x",
        slack_signing_secret="a-signing-secret-for-tests",
    ) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"a": '
        )
        await writer.drain()
        started = time.perf_counter()
        answer = await closed_within(reader, 8)  # the answer, then the close (lingering 2 s)
        writer.close()
        assert 0.9 < time.perf_counter() - started < 6
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert json.loads(body)["error"] == "request_timeout"
    assert not [r for r in caplog.records if r.exc_info]


async def test_connections_beyond_the_cap_are_closed_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with serving(tmp_path, max_connections=5, header_timeout=30.0) as port:
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
        extra = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
        for reader, _ in extra:
            assert await closed_within(reader, 2) == b""  # closed without a word
        for _, writer in held + extra:
            writer.close()
        await asyncio.sleep(0.2)  # the server notices the closed ones
        assert (await get(port))[0] == 200  # room again
    refusals = [r for r in caplog.records if "refusing connections" in r.getMessage()]
    assert len(refusals) == 1  # one line, however many were refused


# --- the Teams endpoint without an app id (development) ------------------------------------------


@asynccontextmanager
async def teams(
    tmp_path: Path, **values: Any
) -> AsyncIterator[tuple[Any, Activities, FakeConnector]]:
    from aiohttp.test_utils import TestClient, TestServer

    connector = FakeConnector()
    await connector.start()
    settings = Settings(state_dir=tmp_path, **values)
    app = create_app(settings, diagnose=GatedDiagnose(), teams=create_teams_handler)
    try:
        async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as http:
            yield http, Activities(connector.url), connector
    finally:
        await connector.close()


TEAMS_BODIES = {
    "nested 100 000 deep": (b"[" * 100_000 + b"]" * 100_000, 400),
    "invalid UTF-8": (b'{"type": "message", "text": "\xff"}', 400),
    "not JSON": (b"{", 400),
    "null": (b"null", 400),
    "a string": (b'"message"', 400),
    "huge number": (b'{"type": ' + b"1" * 5000 + b"}", 400),
}


@pytest.mark.parametrize("case", list(TEAMS_BODIES))
async def test_teams_hostile_bodies_are_4xx_without_a_traceback(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    body, status = TEAMS_BODIES[case]
    async with teams(tmp_path) as (http, _, connector):
        response = await http.post(
            "/api/messages", data=body, headers={"Content-Type": "application/json"}
        )
        assert response.status == status
        assert set(await response.json()) == {"error", "message"}
        assert connector.calls == []
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


async def test_teams_without_an_app_id_takes_msteams_only_and_no_token(tmp_path: Path) -> None:
    async with teams(tmp_path) as (http, activities, connector):
        for channel in ("webchat", "emulator", None, 7):
            activity = activities.personal("help")
            activity["channelId"] = channel
            response = await http.post("/api/messages", json=activity)
            assert response.status == 400, channel
        no_aad = activities.personal("help")
        del no_aad["from"]["aadObjectId"]
        assert (await http.post("/api/messages", json=no_aad)).status == 400
        # A token sent to a bot that has nothing to check it against is refused, not ignored.
        response = await http.post(
            "/api/messages",
            json=activities.personal("help"),
            headers={"Authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln"},
        )
        assert response.status == 401
        assert connector.calls == []
        assert (await http.post("/api/messages", json=activities.personal("help"))).status == 201


async def test_the_demo_takes_the_emulator_channel_and_its_ids(tmp_path: Path) -> None:
    async with teams(tmp_path, teams_emulator=True) as (http, activities, connector):
        activity = activities.personal("help")
        activity["channelId"] = "emulator"
        del activity["from"]["aadObjectId"]
        response = await http.post("/api/messages", json=activity)
        assert response.status == 201
        await connector.wait_until(lambda: len(connector.posts) == 1, "the help text")


# --- the SQLite file ---------------------------------------------------------------------------


async def test_the_sqlite_file_is_created_readable_by_its_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)  # a usual umask would leave it world-readable
    try:
        async with serving(tmp_path / "state") as port:
            assert (await get(port, "/readyz"))[0] == 200
    finally:
        os.umask(old)
    database = tmp_path / "state" / "mailfix.db"
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    for extra in ("mailfix.db-wal", "mailfix.db-shm"):
        path = tmp_path / "state" / extra
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, extra
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) & 0o077 == 0


# --- the queue on its own ----------------------------------------------------------------------


async def test_the_queue_is_first_come_first_served_and_counts_who_is_ahead() -> None:
    queue = RunQueue(2, max_waiting=3)
    a, b, c, d, e = (queue.join() for _ in range(5))
    assert (a.ready, b.ready, c.ready) == (True, True, False)
    assert (c.ahead, d.ahead, e.ahead) == (0, 1, 2)
    with pytest.raises(QueueFull):
        queue.join()
    assert not await c.wait(0.01)  # nothing moved: patience runs out
    d.release()  # someone gives up waiting
    assert e.ahead == 1
    a.release()
    assert await c.wait(0.01) and c.ready and e.ahead == 0
    assert queue.running == 2 and queue.waiting == 1
    newest = queue.latest_start()
    assert newest is not None and c.started == newest
    queue.close()
    with pytest.raises(QueueClosed):
        await e.wait(1)
    with pytest.raises(QueueClosed):
        queue.join()
    assert await b.wait(0) and await c.wait(0)  # running ones carry on
    b.release()
    c.release()
    assert queue.running == 0 and queue.latest_start() is None


def _odd(change: Any) -> Any:
    return change


def _set(path: str, value: Any) -> Any:
    def apply(activity: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = activity
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return apply


ODD_ACTIVITIES: dict[str, tuple[str, Any]] = {
    "text a number": ("personal", _set("text", 5)),
    "text a list": ("personal", _set("text", ["mailfix"])),
    "entities a string": ("channel", _set("entities", "mention")),
    "entities [1, null]": ("channel", _set("entities", [1, None])),
    "mention without text": ("channel", _set("entities", [{"type": "mention", "mentioned": 5}])),
    "from name a dict": ("personal", _set("from.name", {"a": 1})),
    "conversation type a number": ("personal", _set("conversation.conversationType", 3)),
    "channelData a string": ("personal", _set("channelData", "x")),
    "channelData tenant a list": ("personal", _set("channelData.tenant", [1])),
    "value a list": ("submit", _set("value", [1, 2])),
    "value a string": ("submit", _set("value", "mailfix.intake")),
    "verb a number": ("submit", _set("value", {"verb": 5})),
    "invoke value a list": ("execute", _set("value", [1])),
    "invoke action a string": ("execute", _set("value", {"action": "Action.Execute"})),
    "invoke data a list": (
        "execute",
        _set("value", {"action": {"type": "Action.Execute", "verb": "mailfix.intake", "data": []}}),
    ),
    "invoke verb a dict": (
        "execute",
        _set("value", {"action": {"type": "Action.Execute", "verb": {"a": 1}, "data": {}}}),
    ),
    "invoke answers of the wrong types": (
        "execute",
        _set(
            "value",
            {
                "action": {
                    "type": "Action.Execute",
                    "verb": "mailfix.intake",
                    "data": {"address": ["a"], "app": 5, "symptom": {"x": 1}, "where": None},
                }
            },
        ),
    ),
    "diagnosis id a dict": (
        "execute",
        _set(
            "value",
            {
                "action": {
                    "type": "Action.Execute",
                    "verb": "mailfix.fixed",
                    "data": {"diagnosis_id": {"a": 1}},
                }
            },
        ),
    ),
    "invoke name a number": ("execute", _set("name", 5)),
    "replyToId a number": ("execute", _set("replyToId", 5)),
    "timestamp not a date": ("personal", _set("timestamp", "yesterday")),
    "locale a number": ("personal", _set("locale", 5)),
    "recipient id a number": ("personal", _set("recipient.id", 5)),
}


@pytest.mark.parametrize("case", list(ODD_ACTIVITIES))
async def test_odd_teams_activities_get_an_answer_never_a_500(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    kind, change = ODD_ACTIVITIES[case]
    async with teams(tmp_path) as (http, activities, _):
        activity = {
            "personal": lambda: activities.personal("mailfix"),
            "channel": lambda: activities.channel("mailfix"),
            "submit": lambda: activities.submit({"verb": "mailfix.intake"}, card_id="1"),
            "execute": lambda: activities.execute("mailfix.intake", {}, card_id="1"),
        }[kind]()
        change(activity)
        response = await http.post("/api/messages", json=activity)
        assert response.status in (200, 201, 400), await response.text()
        if response.status == 400:
            answer = await response.json()
            # Ours ({"error", "message"}), or an invoke's error answer as Teams expects it.
            assert set(answer) in ({"error", "message"}, {"statusCode", "type", "value"})
        # What was accepted runs to its end without a crash in the background either.
        async with asyncio.timeout(10):
            await http.server.app[RUNTIME].supervisor.wait_idle()
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()], [
        r.getMessage() for r in caplog.records if r.exc_info
    ]


MALFORMED = {
    "a 20 kB header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
    "not HTTP": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    "a broken request line": b"GET\r\n\r\n",
    "a header without a colon": b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n",
    "a bad content length": b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Length: -4\r\n\r\n",
    "two content lengths": (
        b"POST /slack/events HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}"
    ),
    "a bad chunk": (
        b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_malformed_http_is_a_short_json_400_and_one_log_line(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with serving(
        tmp_path, slack_bot_token="xoxb-1-2-x", slack_signing_secret="a-signing-secret-for-tests"
    ) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(MALFORMED[case])
        await writer.drain()
        answer = await closed_within(reader, 5)
        writer.close()
        assert (await get(port))[0] == 200  # the server carries on
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"400", answer[:200]
    assert b"application/json" in head
    assert json.loads(body)["error"] == "bad_request"
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert b"aaaaaaaa" not in caplog.text.encode()
