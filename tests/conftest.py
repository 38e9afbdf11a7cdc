"""Fixtures shared by the storage tests: a throw-away PostgreSQL database, SQLite files.

PostgreSQL is the real server on 127.0.0.1:5432 (`MAILFIX_TEST_POSTGRES` to point elsewhere on
loopback). Outside CI a missing server skips its tests with the reason; with CI=true it fails.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from _db import ADMIN_DSN


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A fresh PostgreSQL database for this run (its async URL); dropped at the end."""
    name = f"mailfix_test_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(ADMIN_DSN, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        where = ADMIN_DSN.rsplit("@", 1)[-1]
        reason = f"PostgreSQL at {where} is not usable: {type(exc).__name__}: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + " (CI=true: PostgreSQL is required)")
        pytest.skip(reason)
    try:
        server = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
        yield f"{server}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'state' / 'mailfix.db'}"
    url: str = request.getfixturevalue("postgres_server")
    return url
