"""Keep secrets and tokens out of the logs, whoever logs them.

Two layers: patterns for every token shape we know (Slack `xox?-` / `xapp-`, `Bearer …`,
`Authorization:` headers, `signing_secret=…`, passwords in database URLs), and the literal
values of the secrets in our settings. The redaction runs in the log *record factory*, so it
covers every logger (slack_sdk, slack_bolt, aiohttp, ours) and every handler, including ones
added later (pytest's caplog), before any handler formats the record.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

MASK = "[redacted]"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Slack bot/user/app-config/refresh tokens and app-level tokens.
    (re.compile(r"\bxox[abeoprs]-[A-Za-z0-9-]+"), MASK),
    (re.compile(r"\bxapp-[A-Za-z0-9-]+"), MASK),
    # An Authorization header in any of the shapes libraries print: dict repr, HTTP, kwargs.
    (
        re.compile(r"""(?i)(['"]?authorization['"]?\s*[:=]\s*['"]?)[^'",}\r\n]+"""),
        rf"\g<1>{MASK}",
    ),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), rf"\g<1> {MASK}"),
    # Named secrets in key=value / "key": "value" form.
    (
        re.compile(
            r"""(?i)(['"]?(?:signing[_-]?secret|client[_-]?secret|app[_-]?password|password|"""
            r"""token|secret)['"]?\s*[:=]\s*['"]?)[^'",}\s&]+"""
        ),
        rf"\g<1>{MASK}",
    ),
    # user:password@host in URLs (database URLs, proxies).
    (re.compile(r"(://[^/:@\s]+:)[^@/\s]+(@)"), rf"\g<1>{MASK}\g<2>"),
)

_lock = threading.Lock()
_secrets: set[str] = set()
_state = {"installed": False}


def add_secrets(values: Iterable[str]) -> None:
    """Also mask these literal values (e.g. a signing secret that has no recognisable shape)."""
    with _lock:
        # Very short values would mask ordinary words; real secrets are long.
        _secrets.update(v for v in values if v and len(v) >= 8)


def redact(text: str) -> str:
    """`text` with every known secret and token shape replaced by `[redacted]`."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _scrub(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: keep what we can show safely
        message = f"{record.msg!r} {record.args!r}"
    record.msg = redact(message)
    record.args = None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


class RedactingFilter(logging.Filter):
    """The same scrubbing as a filter, for handlers configured by hand."""

    def filter(self, record: logging.LogRecord) -> bool:
        _scrub(record)
        return True


def install_redaction(secrets: Iterable[str] = ()) -> None:
    """Scrub every log record from now on (idempotent; later calls only add secrets)."""
    add_secrets(secrets)
    with _lock:
        if _state["installed"]:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            _scrub(record)
            return record

        logging.setLogRecordFactory(factory)
        _state["installed"] = True
