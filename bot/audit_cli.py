"""`mailfix audit`: the helpdesk loop's trail, for people or (with --json) for programs.

    mailfix audit --case 12
    mailfix audit --since 7d --json

Reads the database the server writes (MAILFIX_DATABASE_URL, else the default SQLite file)
and changes nothing in it.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

from bot.case_store import SqlCaseStore
from bot.settings import Settings
from bot.storage import create_engine, migrate
from dialogs.cases import AuditEntry

# What each recorded action means, in words.
ACTIONS: dict[str, str] = {
    "case.opened": "escalated to the helpdesk",
    "case.claimed": "took the case",
    "case.asked": "asked the person a question",
    "case.answered": "answered the helpdesk's question",
    "case.resolved": "resolved the case",
    "proposal.made": "proposed a fix",
    "proposal.approved": "approved the fix",
    "proposal.approval_recorded": "approved the fix (another approval is needed)",
    "proposal.rejected": "rejected the fix",
    "proposal.refused": "tried to act on the fix without being an approver",
    "proposal.expired": "let the fix proposal expire",
    "fix.applying": "started applying the fix",
    "fix.applied": "applied the fix",
    "fix.already_done": "found the fix already in place",
    "fix.failed": "could not apply the fix",
    "fix.resumed": "took over a fix another server had started",
    "recheck.done": "checked again after the fix",
    "alert.posted": "posted a possible-outage alert",
}

_RELATIVE = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class AuditInputError(ValueError):
    """A --since value we cannot read."""


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """`7d`, `24h`, `30m`, `2w`, or an ISO date / date-time (UTC unless it says otherwise)."""
    text = text.strip()
    match = _RELATIVE.match(text.lower())
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise AuditInputError(
            f"--since {text!r} is neither a date (2026-12-01), a date and time, nor an age "
            "like 24h or 7d"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def describe(entry: AuditEntry) -> str:
    """One line a person can read: when, who (from where), what, on which case."""
    when = entry.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    what = ACTIONS.get(entry.action, entry.action.replace(".", " ").replace("_", " "))
    line = f"{when}  {entry.actor_name} ({entry.platform}) {what}"
    if entry.case_number is not None:
        line += f" — case {entry.case_number}"
    if entry.detail:
        line += f": {entry.detail}"
    sent = entry.request or {}
    if sent.get("method") and sent.get("url"):
        line += f"\n    sent: {sent['method']} {sent['url']}"
    status = (entry.result or {}).get("status")
    if status is not None:
        line += f"\n    answer: HTTP {status}"
    return line


async def read_trail(
    settings: Settings, *, case_number: int | None, since: datetime | None
) -> list[AuditEntry]:
    await migrate(settings.database_url)  # an empty or older database reads as empty, not an error
    engine = create_engine(settings.database_url)
    try:
        return await SqlCaseStore(engine).trail(case_number=case_number, since=since)
    finally:
        await engine.dispose()


def render(entries: list[AuditEntry], *, as_json: bool) -> str:
    if as_json:
        return json.dumps([e.model_dump(mode="json") for e in entries], indent=2)
    if not entries:
        return "No audit entries match."
    return "\n".join(describe(e) for e in entries)
