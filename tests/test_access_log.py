"""The access log as `mailfix serve` writes it (bot/server.py `AccessLines`), over real HTTP on
loopback: one line per request in aiohttp's format, with its own time and request id; while
platform requests are being answered the lines wait and are written with the work held back
after the acks (bench/ack.py measures why), or at shutdown at the latest."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path

import pytest
from _slackfake import FakeDiagnose

from bot.server import RUNTIME, create_app, start
from bot.settings import Settings

LINE = re.compile(r'^127\.0\.0\.1 "(GET|POST) (/\S*) HTTP/1\.1" (\d{3}) \d+ \d+\.\d{6}s$')


async def request(port: int, head: str) -> int:
    """Send one request; its status once the server has closed the connection (after it wrote,
    or held back, the request's access line)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{head}\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return int(answer.split(b" ", 2)[1])


def access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "aiohttp.access"]


async def test_lines_wait_while_platform_requests_are_answered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    settings = Settings(state_dir=tmp_path, shutdown_grace=0.0)
    app = create_app(settings, diagnose=FakeDiagnose())
    supervisor = app[RUNTIME].supervisor
    runner, port = await start(app, settings, host="127.0.0.1", port=0)
    try:
        assert await request(port, "GET /healthz HTTP/1.1") == 200
        # Nothing being answered: the line is written at once.
        [first] = access_lines(caplog)
        assert (match := LINE.match(first.getMessage())) and match.groups() == (
            "GET",
            "/healthz",
            "200",
        )
        supervisor.quiet_after = supervisor.max_defer = 60.0  # the burst never ends, here
        sent = time.time()
        status = await request(port, "POST /slack/events HTTP/1.1\r\nX-Request-Id: burst-1")
        assert status == 404  # Slack is not configured; still a platform request
        assert await request(port, "GET /healthz HTTP/1.1") == 200
        assert len(access_lines(caplog)) == 1  # both lines held back
        stopped = time.time()
    finally:
        await runner.cleanup()  # shutdown: what is held back is written
    _, slack, health = access_lines(caplog)
    assert (match := LINE.match(slack.getMessage())) and match.groups() == (
        "POST",
        "/slack/events",
        "404",
    )
    assert getattr(slack, "request_id", None) == "burst-1"
    assert sent <= slack.created <= health.created <= stopped  # their own times, in order
    assert LINE.match(health.getMessage())


async def test_held_back_lines_are_written_with_the_work_after_the_acks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    settings = Settings(state_dir=tmp_path)
    app = create_app(settings, diagnose=FakeDiagnose())
    runner, port = await start(app, settings, host="127.0.0.1", port=0)
    try:
        statuses = await asyncio.gather(
            *(request(port, "POST /api/messages HTTP/1.1") for _ in range(5))
        )
        assert statuses == [501] * 5  # Teams is not plugged in; still platform requests
        await app[RUNTIME].supervisor.wait_idle()  # the quiet came, the held-back work ran
        lines = [LINE.match(r.getMessage()) for r in access_lines(caplog)]
        assert [m.groups() if m else None for m in lines] == [("POST", "/api/messages", "501")] * 5
    finally:
        await runner.cleanup()
