"""What operators watch: Prometheus metrics (`GET /metrics`) and a request id per turn in logs.

One `Metrics` per application, on its own registry (several apps in one process, as in the
tests, do not share counters). Names follow Prometheus conventions: `_total` counters,
`_seconds` histograms. Label values are bounded sets (clients, check ids, cause ids, platforms,
statuses, follow-up kinds), never addresses or people.

The request id: every request gets one (a sane `X-Request-Id` from the proxy, else a new one),
answered in the `X-Request-Id` header and carried by a context variable, so every log line of
that turn — the background work it starts included, since asyncio tasks copy the context —
names it. `JsonFormatter` writes one JSON object per line with it.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

REQUEST_ID: ContextVar[str | None] = ContextVar("mailfix_request_id", default=None)
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0)
CHECK_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
PLATFORM_PATHS = {"/slack/events": "slack", "/api/messages": "teams"}


class Metrics:
    """The counters, histograms and gauges of one server."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.diagnoses = Counter(
            "mailfix_diagnoses_total",
            "Diagnoses finished, by mail client and most likely cause ('none': nothing found).",
            ["client", "cause"],
            registry=r,
        )
        self.check_outcomes = Counter(
            "mailfix_check_outcomes_total",
            "Check results, by check and status (pass, warn, fail, error, skip).",
            ["check", "status"],
            registry=r,
        )
        self.check_seconds = Histogram(
            "mailfix_check_duration_seconds",
            "How long each check took.",
            ["check"],
            buckets=CHECK_BUCKETS,
            registry=r,
        )
        self.ack_seconds = Histogram(
            "mailfix_ack_seconds",
            "Time to answer a chat platform's request (the ack), by platform.",
            ["platform"],
            buckets=ACK_BUCKETS,
            registry=r,
        )
        self.refused = Counter(
            "mailfix_requests_refused_total",
            "Platform requests answered with an error status, by platform and status.",
            ["platform", "status"],
            registry=r,
        )
        self.queue_waiting = Gauge(
            "mailfix_queue_waiting", "Diagnoses waiting for a free slot.", registry=r
        )
        self.queue_running = Gauge(
            "mailfix_diagnoses_running", "Diagnoses running now.", registry=r
        )
        self.follow_ups = Counter(
            "mailfix_follow_ups_total",
            "Follow-ups recorded, by kind (run_again, fixed, escalation_requested, approvals and "
            "fixes applied or failed, as the helpdesk records them).",
            ["kind"],
            registry=r,
        )
        self.escalations = Counter(
            "mailfix_escalations_total", "Diagnoses escalated to the helpdesk.", registry=r
        )
        self.approvals = Counter(
            "mailfix_approvals_total", "Approval decisions, by decision.", ["decision"], registry=r
        )
        self.fixes = Counter(
            "mailfix_fixes_total",
            "Fixes run, by outcome (applied, failed).",
            ["outcome"],
            registry=r,
        )

    def watch_queue(self, waiting: Callable[[], int], running: Callable[[], int]) -> None:
        self.queue_waiting.set_function(lambda: float(waiting()))
        self.queue_running.set_function(lambda: float(running()))

    def report(self, report: Any) -> None:
        """Count a finished diagnosis (a `checks.models.Report`)."""
        top = report.top_cause
        self.diagnoses.labels(str(report.client.value), top.id if top else "none").inc()
        for finding in report.findings:
            self.check_outcomes.labels(finding.check, str(finding.status.value)).inc()
            self.check_seconds.labels(finding.check).observe(finding.duration_ms / 1000)

    def follow_up(self, kind: str) -> None:
        """Count a recorded follow-up; the helpdesk's kinds feed the named counters too."""
        self.follow_ups.labels(kind).inc()
        if kind.startswith("escalat"):
            self.escalations.inc()
        elif kind.startswith(("approv", "reject", "declin")):
            self.approvals.labels(kind).inc()
        elif kind.startswith("fix_"):  # fix_applied, fix_failed
            self.fixes.labels(kind.removeprefix("fix_")).inc()

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


# --- request ids and JSON logs -----------------------------------------------------------------


def request_id_from(header: str | None) -> str:
    """The proxy's request id when it looks like one, else a new one."""
    if header and _SANE_ID.match(header):
        return header
    return uuid.uuid4().hex[:16]


class RequestIdFilter(logging.Filter):
    """Puts the current turn's request id on every record (`record.request_id`, or "-")."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id (and exception)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or REQUEST_ID.get() or None,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)
