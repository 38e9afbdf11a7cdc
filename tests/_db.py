"""PostgreSQL helpers for the storage tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import os

from alembic import command

from bot.storage import alembic_config, create_engine

# The admin connection (creates and drops the per-run database); loopback only.
ADMIN_DSN = os.environ.get("MAILFIX_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


async def reset_database(url: str) -> None:
    """Empty schema for the next test: downgrade to nothing (also exercises the downgrade)."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "base"))
    finally:
        await engine.dispose()
