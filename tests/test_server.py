"""The aiohttp server: refusals, limits, health, headers, shutdown, secrets in logs, settings.

Over real HTTP on 127.0.0.1:0 (aiohttp TestServer), with the fake Slack Web API of _slackfake.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from _slackfake import (
    APP_TOKEN,
    GOOD_ANSWERS,
    SECRET,
    TOKEN,
    FakeDiagnose,
    SlackRequests,
    running_bot,
)
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from bot.limits import RateLimiter
from bot.redact import MASK, install_redaction, redact
from bot.runtime import Runtime
from bot.server import SECURITY_HEADERS, create_app
from bot.settings import ReplyMode, Settings, TeamsAppType
from bot.storage import SqlStore, head_revision
from bot.tasks import TaskSupervisor


def plain_settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(state_dir=tmp_path, **kw)


# --- health and readiness ----------------------------------------------------------------------


async def test_healthz_and_readyz_with_migrations_applied(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as bot:
        alive = await bot.http.get("/healthz")
        assert alive.status == 200
        assert await alive.json() == {"status": "alive"}
        ready = await bot.http.get("/readyz")
        assert ready.status == 200
        assert await ready.json() == {"status": "ready"}
        for name, value in SECURITY_HEADERS.items():
            assert ready.headers[name] == value
    assert (tmp_path / "mailfix.db").is_file()


async def test_privacy_and_terms_pages_the_teams_manifest_links_to(tmp_path: Path) -> None:
    from urllib.parse import urlsplit

    from bot.manifests import teams_manifest

    developer = teams_manifest("https://bot.example.com", bot_id=str(uuid.uuid4()))["developer"]
    async with running_bot(tmp_path) as bot:
        for key in ("privacyUrl", "termsOfUseUrl"):
            path = urlsplit(developer[key]).path
            page = await bot.http.get(path)
            assert page.status == 200, path
            assert page.content_type == "text/plain"
            assert "mailfix" in await page.text()


async def test_readyz_is_503_before_migrations(tmp_path: Path) -> None:
    app = create_app(plain_settings(tmp_path), diagnose=FakeDiagnose(), migrate=False)
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as http:
        assert (await http.get("/healthz")).status == 200
        ready = await http.get("/readyz")
        assert ready.status == 503
        body = await ready.json()
        assert body["status"] == "not ready"
        assert f"expected {head_revision()}" in body["reason"]


async def test_readyz_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    url = "postgresql+asyncpg://postgres@127.0.0.1:1/mailfix"
    app = create_app(
        plain_settings(tmp_path, database_url=url), diagnose=FakeDiagnose(), migrate=False
    )
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as http:
        ready = await http.get("/readyz")
        assert ready.status == 503
        assert (await ready.json())["reason"].startswith("database unavailable")
        assert (await http.get("/healthz")).status == 200


# --- what the server refuses -----------------------------------------------------------------


async def test_unsigned_tampered_stale_and_wrongly_signed_requests_get_401(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as bot:
        body, headers = bot.sign.command("ana@contoso.com")

        unsigned = await bot.http.post(
            "/slack/events", data=body, headers={"Content-Type": headers["Content-Type"]}
        )
        only_ts = {k: v for k, v in headers.items() if k != "X-Slack-Signature"}
        missing_signature = await bot.http.post("/slack/events", data=body, headers=only_ts)
        only_sig = {k: v for k, v in headers.items() if k != "X-Slack-Request-Timestamp"}
        missing_timestamp = await bot.http.post("/slack/events", data=body, headers=only_sig)
        tampered = await bot.http.post(
            "/slack/events",
            data=body.replace("ana%40contoso.com", "bo%40contoso.com"),
            headers=headers,
        )
        wrong = SlackRequests("another-signing-secret-value")
        wrong_body, wrong_headers = wrong.command("ana@contoso.com")
        wrongly_signed = await bot.http.post(
            "/slack/events", data=wrong_body, headers=wrong_headers
        )
        stale_body, stale_headers = bot.sign.command(
            "ana@contoso.com", timestamp=int(time.time()) - 301
        )
        stale = await bot.http.post("/slack/events", data=stale_body, headers=stale_headers)

        for response in (
            unsigned,
            missing_signature,
            missing_timestamp,
            tampered,
            wrongly_signed,
            stale,
        ):
            assert response.status == 401, await response.text()
        # A request signed 299 s ago is still inside the window.
        fresh_body, fresh_headers = bot.sign.command(
            "ana@contoso.com", timestamp=int(time.time()) - 299
        )
        fresh = await bot.http.post("/slack/events", data=fresh_body, headers=fresh_headers)
        assert fresh.status == 200
        await bot.slack.wait_for("views.open")
        await bot.runtime.supervisor.wait_idle()
        assert len(bot.slack.of("views.open")) == 1  # only the fresh one opened a form


async def test_oversized_bodies_get_a_json_413_with_or_without_content_length(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path, settings={"max_body_bytes": 4096}) as bot:
        big = "payload=" + "x" * 5000
        declared = await bot.http.post(
            "/slack/events", data=big, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert declared.status == 413
        body = await declared.json()
        assert body["error"] == "payload_too_large"
        assert "4096" in body["message"]
        assert declared.headers["X-Content-Type-Options"] == "nosniff"

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b"x" * 1000

        streamed = await bot.http.post(
            "/slack/events",
            data=chunks(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert streamed.status == 413
        assert (await streamed.json())["error"] == "payload_too_large"
        teams = await bot.http.post("/api/messages", data=big)
        assert teams.status == 413
        assert bot.slack.calls == []


async def test_unknown_routes_and_methods_answer_json_with_security_headers(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as bot:
        missing = await bot.http.get("/nope")
        assert missing.status == 404
        assert (await missing.json())["error"] == "not_found"
        assert missing.headers["X-Frame-Options"] == "DENY"
        wrong_method = await bot.http.get("/slack/events")
        assert wrong_method.status == 405
        assert "POST" in wrong_method.headers["Allow"]
        assert (await wrong_method.json())["error"] == "method_not_allowed"


async def test_slack_endpoint_is_404_when_slack_is_not_configured(tmp_path: Path) -> None:
    app = create_app(plain_settings(tmp_path), diagnose=FakeDiagnose())
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as http:
        body, headers = SlackRequests().command("ana@contoso.com")
        response = await http.post("/slack/events", data=body, headers=headers)
        assert response.status == 404
        assert (await response.json())["error"] == "not_configured"


# --- the Teams hook --------------------------------------------------------------------------


async def test_teams_endpoint_is_501_until_a_handler_is_plugged_in(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as bot:
        response = await bot.http.post("/api/messages", json={"type": "message"})
        assert response.status == 501
        assert (await response.json())["error"] == "not_implemented"


async def test_a_teams_factory_gets_the_shared_runtime_and_serves_api_messages(
    tmp_path: Path,
) -> None:
    seen: list[Runtime] = []

    def factory(runtime: Runtime) -> Any:
        seen.append(runtime)

        async def handler(request: web.Request) -> web.Response:
            activity = await request.json()
            return web.json_response({"echo": activity["type"], "mode": runtime.settings.port})

        return handler

    async with running_bot(tmp_path, teams=factory) as bot:
        response = await bot.http.post("/api/messages", json={"type": "message"})
        assert response.status == 200
        assert (await response.json())["echo"] == "message"
        assert seen == [bot.runtime]
        assert response.headers["Cache-Control"] == "no-store"


# --- background work and shutdown ------------------------------------------------------------


async def test_shutdown_cancels_running_diagnoses_and_marks_them_failed(tmp_path: Path) -> None:
    diagnose = FakeDiagnose(gate=asyncio.Event())  # never released: hangs until cancelled
    # A diagnosis that ignores its deadline is cancelled once the deadline (0.5 s) has passed.
    settings = {"shutdown_grace": 0, "deadline": 0.5}
    async with running_bot(tmp_path, diagnose=diagnose, settings=settings) as bot:
        response = await bot.post(bot.sign.submission(GOOD_ANSWERS))
        assert response.status == 200
        await asyncio.wait_for(diagnose.started.wait(), 10)
        supervisor = bot.runtime.supervisor
        assert supervisor.running >= 1
        (diagnosis_id,) = [r.diagnosis_id for r in diagnose.requests]
    # Leaving the block shut the server down: the hung diagnosis was cancelled, not leaked.
    assert diagnose.cancelled.is_set()
    assert supervisor.running == 0
    store = SqlStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'mailfix.db'}")
    try:
        stored = await store.get(diagnosis_id)
    finally:
        await store.close()
    assert stored is not None
    assert stored.state == "failed"


async def test_supervisor_reports_crashes_and_refuses_work_after_close() -> None:
    supervisor = TaskSupervisor()
    errors: list[BaseException] = []

    async def crash() -> None:
        raise ValueError("nope")

    async def on_error(exc: BaseException) -> None:
        errors.append(exc)

    supervisor.spawn(crash(), name="crash", on_error=on_error)
    await supervisor.wait_idle()
    assert [str(e) for e in errors] == ["nope"]

    forever = supervisor.spawn(asyncio.Event().wait(), name="forever", housekeeping=True)
    await supervisor.wait_idle()  # housekeeping does not count as pending work
    await supervisor.close()
    assert forever.cancelled()
    with pytest.raises(RuntimeError, match="shutting down"):
        supervisor.spawn(asyncio.sleep(0), name="late")


# --- secrets never reach the logs ------------------------------------------------------------


async def test_a_full_run_never_logs_the_bot_token_or_signing_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, including slack_sdk's request dumps
    async with running_bot(tmp_path, settings={"slack_app_token": None}) as bot:
        await bot.post(bot.sign.command("ana@contoso.com"))
        await bot.slack.wait_for("views.open")
        await bot.post(bot.sign.submission(GOOD_ANSWERS))
        await bot.slack.wait_until(lambda: len(bot.diagnose.requests) == 1, "the diagnosis")
        await bot.runtime.supervisor.wait_idle()
        await bot.post(bot.sign.event(bot.sign.home_opened()))
        await bot.slack.wait_for("views.publish")
        await bot.runtime.supervisor.wait_idle()
        # The token was really used (so there was something to leak)...
        assert all(c.headers["Authorization"] == f"Bearer {TOKEN}" for c in bot.slack.calls)
        # ...and whoever logs it by mistake gets it masked too.
        log = logging.getLogger("mailfix.test")
        log.warning("token=%s secret=%s", TOKEN, SECRET)
        log.info("headers {'Authorization': 'Bearer %s'}", TOKEN)
        try:
            raise RuntimeError(f"call failed with {TOKEN} and {SECRET}")
        except RuntimeError:
            log.exception("oops")
    assert len(caplog.records) > 20  # the run really logged (bolt, slack_sdk, access log)
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "")
        assert TOKEN not in text
        assert SECRET not in text
    assert TOKEN not in caplog.text and SECRET not in caplog.text
    assert MASK in caplog.text
    assert "call failed with" in caplog.text  # the message survives, only the secret goes


def test_redact_masks_every_token_shape() -> None:
    install_redaction(["a-plain-long-signing-secret"])
    samples = {
        "xoxb-123-456-abcDEF": "xoxb-",
        "xoxp-1-2-3": "xoxp-",
        "xoxa-2-1-x": "xoxa-",
        "xoxr-refresh-1": "xoxr-",
        APP_TOKEN: "xapp-",
        "Authorization: Bearer abc.def.ghi": "abc.def",
        "{'authorization': 'Basic dXNlcjpwYXNz'}": "dXNlcjpw",
        "signing_secret=0123456789abcdef": "0123456789abcdef",
        'client_secret": "s3cr3t-value"': "s3cr3t",
        "postgresql+asyncpg://app:hunter22@db:5432/mailfix": "hunter22",
        "the value a-plain-long-signing-secret leaked": "a-plain-long-signing-secret",
    }
    for text, secret in samples.items():
        assert secret not in redact(text), text
        assert MASK in redact(text)
    assert redact("ana@contoso.com has 3 failing checks") == "ana@contoso.com has 3 failing checks"


# --- the rate limiter ------------------------------------------------------------------------


def test_token_bucket_refills_at_count_per_window() -> None:
    now = [0.0]
    limiter = RateLimiter(5, 600.0, clock=lambda: now[0])
    assert all(limiter.take("ana").allowed for _ in range(5))
    refused = limiter.take("ana")
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(120.0)
    assert limiter.message(refused) == (
        "You've run 5 diagnoses in the last 10 minutes — try again in 2 minutes."
    )
    assert limiter.take("bo").allowed  # buckets are per person
    now[0] = 119.0
    assert not limiter.peek("ana").allowed
    assert limiter.message(limiter.peek("ana")).endswith("try again in 1 second.")
    now[0] = 120.0
    assert limiter.take("ana").allowed
    assert not limiter.take("ana").allowed
    now[0] = 10_000.0  # a long pause refills to the burst size, not beyond
    assert sum(limiter.take("ana").allowed for _ in range(10)) == 5


# --- settings --------------------------------------------------------------------------------


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MAILFIX_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("MAILFIX_SLACK_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("MAILFIX_SLACK_SIGNING_SECRET", SECRET)
    monkeypatch.setenv("MAILFIX_SLACK_API_URL", "http://127.0.0.1:9/api")
    monkeypatch.setenv("MAILFIX_SLACK_REPLY_MODE", "ephemeral")
    monkeypatch.setenv("MAILFIX_TEAMS_APP_TYPE", "SingleTenant")
    monkeypatch.setenv("MAILFIX_APPROVERS", "U0ADMIN, U0BOSS;admin@contoso.com")
    monkeypatch.setenv("MAILFIX_DNS_SERVERS", "127.0.0.1:5353")
    settings = Settings()
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'state' / 'mailfix.db'}"
    assert isinstance(settings.slack_bot_token, SecretStr)
    assert TOKEN not in repr(settings) and SECRET not in str(settings.model_dump())
    assert settings.slack_api_url == "http://127.0.0.1:9/api/"
    assert settings.slack_reply_mode is ReplyMode.EPHEMERAL
    assert settings.teams_app_type is TeamsAppType.SINGLE_TENANT
    assert settings.approvers == ["U0ADMIN", "U0BOSS", "admin@contoso.com"]
    assert settings.dns_servers[0].port == 5353  # the checks' settings come along
    assert settings.deadline == 30.0 and settings.max_body_bytes == 1024 * 1024
    assert settings.slack_enabled
    assert set(settings.secret_values()) == {TOKEN, SECRET}

    monkeypatch.setenv("MAILFIX_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1/x")
    assert Settings().database_url == "postgresql+asyncpg://postgres@127.0.0.1/x"


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="slack_reply_mode"):
        Settings(state_dir=tmp_path, slack_reply_mode="shout")
    with pytest.raises(ValueError, match="teams_app_type"):
        Settings(state_dir=tmp_path, teams_app_type="Anything")
    with pytest.raises(ValueError, match="max_body_bytes"):
        Settings(state_dir=tmp_path, max_body_bytes=10)


# --- Socket Mode -----------------------------------------------------------------------------


async def test_socket_mode_receives_a_slash_command_over_the_websocket(tmp_path: Path) -> None:
    """`apps.connections.open` -> a websocket on the fake; the command arrives as an envelope,
    is acked on the socket, and the form opens through the Web API."""
    async with running_bot(
        tmp_path, settings={"slack_app_token": APP_TOKEN, "slack_signing_secret": None}
    ) as bot:
        socket = await bot.slack.connected()
        (connect,) = bot.slack.of("apps.connections.open")
        assert connect.headers["Authorization"] == f"Bearer {APP_TOKEN}"
        command = dict(parse_qsl(bot.sign.command("ana@contoso.com")[0]))
        ack = await socket.send_envelope("slash_commands", command)
        assert ack["envelope_id"]
        (opened,) = await bot.slack.wait_for("views.open")
        assert opened.body["view"]["callback_id"] == "mailfix.intake"
        await bot.runtime.supervisor.wait_idle()
        # No signing secret: the HTTP endpoint is closed, not open without verification.
        body, headers = bot.sign.command("ana@contoso.com")
        refused = await bot.http.post("/slack/events", data=body, headers=headers)
        assert refused.status == 404
        assert json.loads(await refused.text())["error"] == "not_configured"
