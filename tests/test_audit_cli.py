"""`mailfix audit`: the trail in words, as JSON, filtered; bad input is one line, exit 2."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.audit_cli import AuditInputError, parse_since
from bot.case_store import SqlCaseStore
from bot.storage import create_engine, migrate
from dialogs.cases import AuditEntry

MAILFIX = [sys.executable, "-m", "bot"]
NOW = datetime.now(UTC).replace(microsecond=0)


async def _write_trail(url: str) -> None:
    await migrate(url)
    engine = create_engine(url)
    store = SqlCaseStore(engine)
    try:
        for minutes_ago, action, case, extra in (
            (600, "case.opened", 7, {}),
            (30, "case.opened", 8, {}),
            (
                20,
                "fix.applied",
                8,
                {
                    "request": {
                        "method": "POST",
                        "url": "https://outlook.office365.com/adminapi/beta/t/InvokeCommand",
                    },
                    "result": {"status": 200},
                    "detail": "Switch ActiveSync on for ana@contoso.com",
                },
            ),
        ):
            await store.audit(
                AuditEntry(
                    at=NOW - timedelta(minutes=minutes_ago),
                    actor_id="U0BOSS",
                    actor_name="Bo Admin",
                    platform="slack",
                    action=action,
                    case_number=case,
                    **extra,
                )
            )
    finally:
        await engine.dispose()


@pytest.fixture
def db_env(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'mailfix.db'}"
    asyncio.run(_write_trail(url))
    return {**os.environ, "MAILFIX_DATABASE_URL": url}


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MAILFIX, "audit", *args], check=False, env=env, capture_output=True, text=True, timeout=60
    )


def test_the_trail_of_one_case_reads_as_sentences(db_env: dict[str, str]) -> None:
    done = _run(db_env, "--case", "8")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "Bo Admin (slack) escalated to the helpdesk — case 8" in lines[0]
    assert "Bo Admin (slack) applied the fix — case 8: Switch ActiveSync on" in lines[1]
    assert "sent: POST https://outlook.office365.com/adminapi/beta/t/InvokeCommand" in lines[2]
    assert "answer: HTTP 200" in lines[3]
    assert "case 7" not in done.stdout
    assert "{" not in done.stdout and "fix.applied" not in done.stdout


def test_json_and_since_filter(db_env: dict[str, str]) -> None:
    done = _run(db_env, "--since", "1h", "--json")
    assert done.returncode == 0, done.stderr
    entries = json.loads(done.stdout)
    assert [(e["action"], e["case_number"]) for e in entries] == [
        ("case.opened", 8),
        ("fix.applied", 8),
    ]
    assert entries[1]["request"]["method"] == "POST"


def test_an_empty_trail_says_so(tmp_path: Path) -> None:
    env = {**os.environ, "MAILFIX_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"}
    done = _run(env, "--case", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "No audit entries match."


def test_a_bad_since_is_one_line_and_exit_2(db_env: dict[str, str]) -> None:
    done = _run(db_env, "--since", "last tuesday")
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "--since" in done.stderr
    assert "Traceback" not in done.stderr


def test_since_understands_ages_and_dates() -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert parse_since("24h", now=now) == now - timedelta(hours=24)
    assert parse_since("2w", now=now) == now - timedelta(weeks=2)
    assert parse_since("2026-12-01") == datetime(2026, 12, 1, tzinfo=UTC)
    with pytest.raises(AuditInputError):
        parse_since("soon")
