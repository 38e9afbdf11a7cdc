"""The bot server: one aiohttp application for Slack, Teams, health and readiness.

Routes:
- `POST /slack/events`  Slack commands, interactivity and events (bolt verifies signatures);
- `GET  /slack/install`, `GET /slack/oauth_redirect`  "Add to Slack" for several workspaces
  (only with MAILFIX_SLACK_CLIENT_ID and _CLIENT_SECRET; each workspace's token in the database);
- `POST /api/messages`  Teams (Bot Framework); answers 501 until a Teams handler is plugged in;
- `GET  /healthz`       the process is alive;
- `GET  /readyz`        the database answers and its schema is at the newest migration.

Every request passes one guard: a body limit (`MAILFIX_MAX_BODY_BYTES`, a JSON 413), a body
read timeout (a JSON 408), JSON errors instead of HTML pages, and security headers on every
response. `serve` adds what only a listening socket has: a header read timeout and a cap on
open connections (`GuardedRunner`), and writes the access log after the acks (`AccessLines`).
Work that outlives a request runs on the `TaskSupervisor`, held back while Slack and Teams
requests are being answered; diagnoses wait their turn in one `RunQueue`. Shutdown tells queued
people their checks did not start, lets running diagnoses finish within their deadline, then
cancels what is left (the flow marks those failed).

The Teams side plugs in with a factory (see `TeamsFactory`): `create_app(settings,
teams=factory)`, or, when `teams` is not given and MAILFIX_TEAMS_APP_ID is set, the factory
`bot.teams.create_teams_handler` is used if that module exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any, Protocol, cast

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from bot.case_store import SqlCaseStore
from bot.gc_policy import tune_for_serving
from bot.housekeeping import LAPSED_MESSAGE, sweep
from bot.limits import RateLimiter
from bot.metrics import (
    PLATFORM_PATHS,
    REQUEST_ID,
    JsonFormatter,
    Metrics,
    RequestIdFilter,
    request_id_from,
)
from bot.redact import install_redaction
from bot.runtime import (
    ConversationLike,
    EventLedger,
    Handler,
    Runtime,
    SharedLimit,
    approver_list,
    build_helpdesk,
    replica_name,
    runner_diagnose,
)
from bot.settings import Settings
from bot.slack import INSTALL_PATH, REDIRECT_PATH, SlackBot
from bot.storage import SqlStore
from bot.storage import migrate as run_migrations
from bot.tasks import TaskSupervisor
from checks.cloud import hosts_for
from dialogs.cases import Case, CaseState
from dialogs.flow import Conversation, Services
from dialogs.models import Platform
from dialogs.queue import RunQueue
from dialogs.store import DiagnosisStore, StoredDiagnosis

log = logging.getLogger(__name__)


class SocketModeHandler(Protocol):
    """The part of bolt's AsyncSocketModeHandler the server uses."""

    async def connect_async(self) -> None: ...

    async def close_async(self) -> None: ...


TeamsFactory = Callable[[Runtime], Handler]
"""Builds the `POST /api/messages` handler from the shared runtime (called once, at create)."""

RUNTIME = web.AppKey("mailfix.runtime", Runtime)
METRICS = web.AppKey("mailfix.metrics", Metrics)
SLACK = web.AppKey("mailfix.slack", object)

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "Strict-Transport-Security": "max-age=31536000",
}
DIAGNOSIS_LEASE = 30.0  # seconds; a running diagnosis renews it every third of that
# A diagnosis never leased (it waited in line on a replica that died) is failed after this long.
UNLEASED_AFTER = 1800.0
EVENT_MEMORY = timedelta(hours=1)  # Slack retries for minutes; keep event ids an hour
DRAIN_MARGIN = 2.0  # seconds past a diagnosis's deadline for its results to be posted


def create_app(
    settings: Settings,
    *,
    conversation: ConversationLike | None = None,
    diagnose: Any = None,
    store: Any = None,
    limiter: RateLimiter | None = None,
    teams: TeamsFactory | None = None,
    slack_client: Any = None,
    migrate: bool = True,
    apply_fix: Any = None,
    approvers: Any = None,
    recheck: Any = None,
    housekeeping_every: float | None = None,
) -> web.Application:
    """The whole server as an aiohttp application (not started).

    - `conversation`: a ready `dialogs.flow.Conversation`; default: one built on `store` and
      `diagnose`.
    - `diagnose`: a `dialogs.flow.DiagnoseFn`; default: `checks.runner.diagnose` with these
      settings (`bot.runtime.runner_diagnose(settings, net=...)` builds one for a sandbox).
    - `store`: a `DiagnosisStore`; default: `SqlStore` on `settings.database_url`, migrated at
      start-up (`migrate=False` skips that) and closed at cleanup.
    - `teams`: the Teams endpoint factory (see module docstring).
    - `slack_client`: an `AsyncWebClient` to use instead of one built from the settings.
    - `apply_fix`, `approvers`, `recheck`: the helpdesk loop's executor, approver directory and
      re-check (defaults: `bot.runtime.build_helpdesk`'s, from the settings).
    - `housekeeping_every`: seconds between two housekeeping sweeps (`bot.housekeeping`);
      default: MAILFIX_HOUSEKEEPING_INTERVAL.

    With the SQL store the helpdesk loop is wired (`bot.runtime.build_helpdesk`): "Escalate to
    helpdesk" posts the case card to the helpdesk channel of the person's platform, running
    diagnoses hold a lease, the per-person rate limit is counted in the database (unless a
    `limiter` is given), and a housekeeping task sweeps periodically.
    """
    install_redaction(settings.secret_values())
    quiet_malformed_http()
    own_store = store is None
    if store is None:
        store = SqlStore.from_url(settings.database_url)
    queue = RunQueue(settings.max_concurrent_diagnoses, max_waiting=settings.max_queued_diagnoses)
    metrics = Metrics()
    metrics.watch_queue(lambda: queue.waiting, lambda: queue.running)
    owner = replica_name()
    if conversation is None:
        conversation = _conversation(settings, store, diagnose, queue, metrics, owner=owner)
    engine = getattr(store, "engine", None) if isinstance(store, SqlStore) else None
    base_limiter = limiter or RateLimiter(settings.rate_limit_count, settings.rate_limit_window)
    runtime = Runtime(
        settings=settings,
        conversation=conversation,
        store=store,
        supervisor=TaskSupervisor(),
        limiter=base_limiter,
        events=EventLedger(store),
        queue=queue,
        owner=owner,
        shared_limit=SharedLimit(base_limiter, engine) if engine and limiter is None else None,
    )

    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[
            _guard(settings.max_body_bytes, settings.body_timeout, metrics, runtime.supervisor)
        ],
    )
    app[RUNTIME] = runtime
    app[METRICS] = metrics
    app.on_response_prepare.append(_security_headers)

    slack = None
    if settings.slack_enabled:
        slack = SlackBot(runtime, client=slack_client, engine=engine)
        app[SLACK] = slack
    slack_handler: Handler = (
        slack.handle if slack is not None and slack.http_enabled else _not_configured("Slack")
    )

    if teams is None and settings.teams_app_id:
        teams = _installed_teams_factory()
    teams_handler: Handler = teams(runtime) if teams is not None else _teams_missing

    if engine is not None:
        channels: dict[Platform, Any] = {}
        if slack is not None:
            channels[Platform.SLACK] = slack.helpdesk_channel()
            runtime.tellers[Platform.SLACK] = slack.tell_person
        teams_channel = _teams_channel(runtime.extras.get("teams_bot") or teams_handler)
        if teams_channel is not None:
            channels[Platform.TEAMS] = teams_channel
            runtime.tellers.setdefault(Platform.TEAMS, _teller_via(teams_channel))
        build_helpdesk(
            runtime,
            engine,
            channels,
            apply_fix=apply_fix,
            approvers=approvers or approver_list(settings, slack.client if slack else None),
            recheck=recheck,
        )

    app.router.add_post("/slack/events", slack_handler)
    if slack is not None and slack.oauth:
        # "Add to Slack" for any workspace (MAILFIX_SLACK_CLIENT_ID / _CLIENT_SECRET).
        app.router.add_get(INSTALL_PATH, slack.install)
        app.router.add_get(REDIRECT_PATH, slack.oauth_redirect)
    app.router.add_post("/api/messages", teams_handler)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    # The Teams app manifest links here (privacyUrl, termsOfUseUrl: both required).
    app.router.add_get("/privacy", _page(PRIVACY))
    app.router.add_get("/terms", _page(TERMS))

    async def startup(app: web.Application) -> None:
        if migrate and own_store:
            await run_migrations(settings.database_url, engine=store.engine)
        if runtime.helpdesk is not None and isinstance(store, SqlStore):
            runtime.supervisor.spawn(
                _housekeeping(runtime, store, housekeeping_every or settings.housekeeping_interval),
                name="housekeeping.sweep",
                housekeeping=True,
            )
        elif hasattr(store, "forget_events"):
            runtime.supervisor.spawn(
                _forget_events(store), name="storage.forget_events", housekeeping=True
            )
        if slack is not None and settings.slack_app_token is not None:
            await _start_socket_mode(app, slack, settings)

    async def shutdown(app: web.Application) -> None:
        runtime.closing = True
        socket = app.get(_SOCKET)
        if socket is not None:
            await socket.close_async()
        # Queued diagnoses will not start: their people are told so at once. Running ones
        # may finish within their own deadline (plus a moment to post the results).
        queue.close()
        grace = settings.shutdown_grace
        newest = queue.latest_start()
        if newest is not None:
            grace = max(grace, newest + settings.deadline + DRAIN_MARGIN - time.monotonic())
        if runtime.supervisor.running:
            log.info("shutting down: waiting up to %.1f s for running diagnoses", grace)
        await runtime.supervisor.close(grace=grace)

    async def cleanup(app: web.Application) -> None:
        if own_store:
            await store.close()

    app.on_startup.append(startup)
    app.on_shutdown.append(shutdown)
    app.on_cleanup.append(cleanup)
    return app


def _conversation(
    settings: Settings,
    store: Any,
    diagnose: Any,
    queue: RunQueue,
    metrics: Metrics,
    *,
    owner: str,
) -> ConversationLike:
    run = diagnose or runner_diagnose(settings)
    hold = getattr(store, "hold", None)

    async def metered(request: Any, on_progress: Any) -> Any:
        async with _leased(hold, request.diagnosis_id, owner):
            report = await run(request, on_progress)
        metrics.report(report)
        return report

    services = Services(
        store=cast(DiagnosisStore, _MeteredStore(store, metrics)),
        diagnose=metered,
        hosts=hosts_for(settings.cloud),
        new_id=lambda: uuid.uuid4().hex,
        # The runner stops at the deadline; this stops a diagnose that ignores it.
        run_timeout=settings.deadline + 30.0,
        queue=queue,
    )
    return Conversation(services)


class _MeteredStore:
    """The store, with every recorded follow-up counted (`mailfix_follow_ups_total`)."""

    def __init__(self, store: Any, metrics: Metrics) -> None:
        self._store = store
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def record(self, follow_up: Any) -> None:
        await self._store.record(follow_up)
        self._metrics.follow_up(str(follow_up.kind))


@contextlib.asynccontextmanager
async def _leased(hold: Any, diagnosis_id: str, owner: str) -> AsyncIterator[None]:
    """A running diagnosis holds a lease on its row, renewed every third of it while it runs:
    when this replica dies, the lease lapses and housekeeping on any replica fails it and tells
    the person (`bot.housekeeping.sweep`)."""
    if hold is None:
        yield
        return

    async def renew() -> None:
        # Taken at once and renewed beside the work: the checks never wait for the database.
        while True:
            try:
                if not await hold(diagnosis_id, owner, DIAGNOSIS_LEASE):
                    return  # ended, or failed by housekeeping meanwhile
            except Exception:  # a database hiccup: the next beat tries again
                log.warning("could not renew the lease on diagnosis %s", diagnosis_id)
            await asyncio.sleep(DIAGNOSIS_LEASE / 3)

    beat = asyncio.create_task(renew(), name=f"lease:{diagnosis_id}")
    try:
        yield
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat


async def _housekeeping(runtime: Runtime, store: SqlStore, every: float) -> None:
    """`bot.housekeeping.sweep` every `every` seconds: proposals expire, lapsed applies are
    resumed, diagnoses whose replica died are failed and their people told, old rows go."""
    helpdesk = runtime.helpdesk
    assert helpdesk is not None
    cases = cast(SqlCaseStore, helpdesk.cases)
    retention = timedelta(days=runtime.settings.retention_days)
    while True:
        await asyncio.sleep(every)
        try:
            swept = await sweep(
                store,
                cases,
                helpdesk,
                retention=retention,
                unleased_after=UNLEASED_AFTER,
            )
        except Exception:  # the next round retries
            log.exception("housekeeping failed")
            continue
        for diagnosis in swept.failed_diagnoses:
            teller = runtime.tellers.get(diagnosis.platform)
            if teller is None:
                continue
            try:
                await teller(diagnosis, f"Your check of {diagnosis.address}: {LAPSED_MESSAGE}")
            except Exception:
                log.warning("could not tell the person of diagnosis %s", diagnosis.id)


def _teller_via(channel: Any) -> Any:
    """Tell the person of a diagnosis through a helpdesk channel's `tell` (which reaches a
    case's person in their chat with the bot): for platforms whose adapter registered no
    teller of its own. The diagnosis stands in as a case with no number."""

    async def tell(stored: StoredDiagnosis, text: str) -> None:
        standin = Case(
            number=0,
            state=CaseState.OPEN,
            diagnosis_id=stored.id,
            platform=stored.platform,
            workspace=stored.workspace,
            person_id=stored.person_id,
            person_name=stored.person_id,
            address=stored.address,
            created_at=stored.created_at,
            updated_at=stored.updated_at,
        )
        await channel.tell(standin, text)

    return tell


def _teams_channel(found: Any) -> Any:
    """The Teams bot's helpdesk channel (`helpdesk_channel()`), when it provides one. `found`:
    the bot (`runtime.extras["teams_bot"]`) or its bound handler."""
    bot = getattr(found, "__self__", found)
    make = getattr(bot, "helpdesk_channel", None)
    if not callable(make):
        return None
    try:
        return make()
    except Exception:
        log.exception("the Teams helpdesk channel could not be set up")
        return None


def _installed_teams_factory() -> TeamsFactory | None:
    if importlib.util.find_spec("bot.teams") is None:
        log.warning("MAILFIX_TEAMS_APP_ID is set but bot.teams is not installed")
        return None
    from bot import teams as teams_module  # noqa: PLC0415

    factory: TeamsFactory = teams_module.create_teams_handler
    return factory


# --- Socket Mode ----------------------------------------------------------------------------

_SOCKET = web.AppKey("mailfix.socket_mode", SocketModeHandler)


async def _start_socket_mode(app: web.Application, slack: Any, settings: Settings) -> None:
    assert settings.slack_app_token is not None
    # Every envelope shape-checked before bolt reads it (SlackBot.socket_mode_refusal).
    handler: SocketModeHandler = slack.socket_mode(settings.slack_app_token.get_secret_value())
    await handler.connect_async()
    app[_SOCKET] = handler
    log.info("Slack Socket Mode connected")


# --- routes ---------------------------------------------------------------------------------


PRIVACY = """mailfix privacy statement

mailfix diagnoses why a mail app cannot reach an Exchange Online mailbox. It stores, in this
organisation's own database: the address that was diagnosed, the mail app and symptom chosen,
the diagnosis report, who asked for it and the follow-ups (run again, fixed, escalated), and
the chat conversation reference needed to update its cards. It never asks for or stores a
password. Nothing is sent to anyone but the chat platform and Microsoft's own endpoints that
are being tested. Ask your helpdesk to delete your data.
"""

TERMS = """mailfix terms of use

mailfix is an internal helpdesk tool run by your organisation. Its diagnoses are best
efforts: they test Microsoft 365 endpoints from the server mailfix runs on, which may not be
the network you are on. Use it to diagnose mailboxes you are responsible for.
"""


def _page(text: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    return handler


async def _metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[METRICS].exposition()
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def _readyz(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    if runtime.closing:
        return web.json_response({"status": "not ready", "reason": "shutting down"}, status=503)
    check = getattr(runtime.store, "ready", None)
    if check is not None:
        ok, reason = await check()
        if not ok:
            log.warning("not ready: %s", reason)
            return web.json_response({"status": "not ready", "reason": reason}, status=503)
    return web.json_response({"status": "ready"})


async def _teams_missing(request: web.Request) -> web.Response:
    return web.json_response(
        {"error": "not_implemented", "message": "The Teams endpoint is not enabled here."},
        status=501,
    )


def _not_configured(platform: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(
            {"error": "not_configured", "message": f"{platform} is not configured here."},
            status=404,
        )

    return handler


async def _forget_events(store: Any) -> None:
    while True:
        await asyncio.sleep(600)
        try:
            await store.forget_events(EVENT_MEMORY)
        except Exception:  # the next round retries; dedupe still works meanwhile
            log.exception("could not purge old event ids")


# --- the guard: body limit, JSON errors, security headers ------------------------------------


def _too_large(limit: int) -> web.Response:
    return web.json_response(
        {"error": "payload_too_large", "message": f"The request body is over {limit} bytes."},
        status=413,
    )


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _guard(
    limit: int,
    body_timeout: float = 15.0,
    metrics: Metrics | None = None,
    supervisor: TaskSupervisor | None = None,
) -> Any:
    # Each platform's histogram child, looked up once, not on every ack.
    ack_seconds = (
        {p: metrics.ack_seconds.labels(p) for p in PLATFORM_PATHS.values()} if metrics else {}
    )

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        # One id per turn: every log line of this request, and of the work it starts, names it.
        request_id = request_id_from(request.headers.get("X-Request-Id"))
        REQUEST_ID.set(request_id)
        platform = PLATFORM_PATHS.get(request.path)
        started = time.perf_counter()
        if supervisor is None or platform is None:
            response = await _guarded(request, handler)
        else:
            with supervisor.serving():  # acknowledge first: background work waits
                response = await _guarded(request, handler)
        if platform is not None and metrics is not None:
            ack_seconds[platform].observe(time.perf_counter() - started)
            if response.status >= 400:
                metrics.refused.labels(platform, str(response.status)).inc()
        return response

    async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > limit:
            log.warning("refused %s %s: body over %d bytes", request.method, request.path, limit)
            return _too_large(limit)
        try:
            if request.method in _BODY_METHODS and request.can_read_body:
                # The whole body, within the limit and in time, before any handler sees it (no
                # timer when it all came with the head, as a chat platform's usually does).
                async with asyncio.timeout(None if request.content.is_eof() else body_timeout):
                    await request.read()
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            log.warning("refused %s %s: body over %d bytes", request.method, request.path, limit)
            return _too_large(limit)
        except TimeoutError:
            log.warning("refused %s %s: body not sent in time", request.method, request.path)
            response = web.json_response(
                {"error": "request_timeout", "message": "The request body came too slowly."},
                status=408,
            )
            response.force_close()
            return response
        except web.HTTPException as exc:
            if exc.status >= 400 and exc.content_type != "application/json":
                return web.json_response(
                    {"error": exc.reason.lower().replace(" ", "_"), "message": exc.reason},
                    status=exc.status,
                    headers={k: v for k, v in exc.headers.items() if k.lower() == "allow"},
                )
            raise
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            return web.json_response(
                {"error": "internal_error", "message": "Something went wrong on our side."},
                status=500,
            )

    return guard


class _MalformedHttp(logging.Filter):
    """aiohttp logs a client's malformed HTTP (a 20 kB header, a bad request line) with a
    traceback, and the exception message quotes the request's own bytes. Make it one warning
    line naming the kind of problem: it is the client's fault, and its content is not ours to
    log."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg = "refused a malformed HTTP request from %s (%s, status %s)"
            record.args = (remote, type(exc).__name__, exc.code)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = None
            record.exc_text = None
        return True


_MALFORMED = _MalformedHttp()


def quiet_malformed_http() -> None:
    """Install the filter on aiohttp's server logger (once)."""
    logger = logging.getLogger("aiohttp.server")
    if _MALFORMED not in logger.filters:
        logger.addFilter(_MALFORMED)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    request_id = REQUEST_ID.get()
    if request_id is not None:
        response.headers.setdefault("X-Request-Id", request_id)


# --- running it -----------------------------------------------------------------------------


def configure_logging(settings: Settings, level: int = logging.INFO) -> None:
    """Log lines on stderr — plain, or one JSON object per line (`MAILFIX_LOG_FORMAT=json`) —
    each naming its turn's request id, with secrets and tokens scrubbed from every record."""
    install_redaction(settings.secret_values())
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s")
        )
    logging.basicConfig(level=level, handlers=[handler], force=True)


AccessEntry = tuple[float, str | None, str]  # when (time.time()), request id, the line


class AccessLines:
    """The access log's lines of one server, each written as soon as no platform request holds
    background work back (`TaskSupervisor.holding_back`), else kept until the held-back work
    starts: a line cost the event loop about 60 µs (the record, the redaction, the format, the
    write), an eighth of a Slack ack, and a burst's acks waited for the lines of the requests
    answered before them (bench/ack.py). Each line keeps its own time and request id."""

    def __init__(self, supervisor: TaskSupervisor) -> None:
        self.supervisor = supervisor
        self.pending: list[AccessEntry] = []
        self.logger = logging.getLogger("aiohttp.access")

    def add(self, line: str) -> None:
        entry = (time.time(), REQUEST_ID.get(), line)
        if not self.supervisor.holding_back:
            self._write(entry)
            return
        self.pending.append(entry)
        if len(self.pending) == 1:
            try:
                self.supervisor.spawn(self._later(), name="access log")
            except RuntimeError:  # shutting down: no more background work
                self.flush()

    async def _later(self) -> None:
        self.flush()

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        for entry in pending:
            self._write(entry)

    def _write(self, entry: AccessEntry) -> None:
        created, request_id, line = entry
        record = self.logger.makeRecord(
            self.logger.name, logging.INFO, __file__, 0, "%s", (line,), None
        )
        record.created, record.msecs = created, (created % 1) * 1000
        record.request_id = request_id or "-"
        self.logger.handle(record)


class AfterAcksAccessLog(AbstractAccessLogger):
    """aiohttp's access log in the format `mailfix serve` has always written
    (`%a "%r" %s %b %Tfs`), through the server's `AccessLines`."""

    lines: AccessLines  # set on the subclass each GuardedRunner makes (`writing_to`)

    @classmethod
    def writing_to(cls, lines: AccessLines) -> type[AfterAcksAccessLog]:
        return type("RunnerAccessLog", (cls,), {"lines": lines})

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        version = request.version
        self.lines.add(
            f'{request.remote or "-"} "{request.method} {request.path_qs} '
            f'HTTP/{version.major}.{version.minor}" {response.status} '
            f"{response.body_length} {time:.6f}s"
        )


class GuardedRunner(web.AppRunner):
    """An AppRunner whose server closes connections beyond `max_connections` at once.

    The header read timeout is aiohttp's keep-alive timer, which runs from the moment a
    connection opens and again after each response, and closes a connection that has not
    delivered a complete request head by then (`keepalive_timeout=header_timeout`).
    """

    def __init__(self, app: web.Application, settings: Settings, **kwargs: Any) -> None:
        kwargs.setdefault("keepalive_timeout", settings.header_timeout)
        # After an early answer (413, 408), aiohttp reads what is left of the body for up to
        # this long before closing: short, or a slow sender holds the connection on.
        kwargs.setdefault("lingering_time", 2.0)
        kwargs.setdefault("access_log_format", '%a "%r" %s %b %Tfs')
        runtime = app.get(RUNTIME)
        self.access_lines: AccessLines | None = None
        if runtime is not None and "access_log_class" not in kwargs:
            # The same lines, written after the acks (`AccessLines`).
            self.access_lines = AccessLines(runtime.supervisor)
            kwargs["access_log_class"] = AfterAcksAccessLog.writing_to(self.access_lines)
        super().__init__(app, **kwargs)
        self.max_connections = settings.max_connections
        self.refused = 0
        self._warned = 0.0

    async def cleanup(self) -> None:
        await super().cleanup()
        if self.access_lines is not None:
            self.access_lines.flush()  # what shutdown left unwritten

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorServer  # its connections answer malformed HTTP in JSON
        made = server.connection_made

        def connection_made(handler: Any, transport: asyncio.Transport) -> None:
            made(handler, transport)
            if len(server.connections) > self.max_connections:
                self.refused += 1
                now = time.monotonic()
                if now - self._warned > 10:  # one line per 10 s, however many are refused
                    self._warned = now
                    log.warning(
                        "refusing connections: %d open is the limit (%d refused so far)",
                        self.max_connections,
                        self.refused,
                    )
                transport.abort()

        server.connection_made = connection_made  # type: ignore[method-assign]
        return server


class _JsonErrorHandler(RequestHandler):
    """aiohttp's connection handler, answering a client's malformed HTTP (a 20 kB header, a
    broken request line) with a short JSON body like every other refusal, not plain text."""

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        response = super().handle_error(request, status, exc, message)
        if 400 <= status < 500:
            answer = web.json_response(
                {"error": "bad_request", "message": "The HTTP request is malformed."},
                status=status,
            )
            answer.force_close()
            return answer
        return response


class _JsonErrorServer(Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)


async def start(
    app: web.Application, settings: Settings, *, host: str, port: int
) -> tuple[GuardedRunner, int]:
    """Start `app` on host:port (0: any free port); returns the runner and the bound port."""
    runner = GuardedRunner(app, settings)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    bound = port
    for address in runner.addresses:
        if isinstance(address, tuple):
            bound = int(address[1])
            break
    return runner, bound


async def _serve(settings: Settings, host: str, port: int) -> None:
    app = create_app(settings)
    runner, bound = await start(app, settings, host=host, port=port)
    tune_for_serving()  # bot/gc_policy.py: startup objects frozen, young collected less often
    log.info("mailfix serving on %s:%d", host, bound)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("mailfix stopping")
        await runner.cleanup()


def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    """`mailfix serve`: run the server until SIGINT/SIGTERM (Socket Mode too, when configured)."""
    configure_logging(settings)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            _serve(settings, host or settings.host, port if port is not None else settings.port)
        )
