"""Alembic environment for mailfix.

Two ways in:
- `bot.storage.migrate()` (what the server does at start-up) opens an async connection and hands
  its synchronous face in `config.attributes["connection"]`; we migrate on that connection.
- `alembic -c bot/alembic.ini upgrade head` by hand: the URL comes from the settings
  (MAILFIX_DATABASE_URL, else the default SQLite file) and we open our own async engine.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection

from bot.schema import METADATA
from bot.settings import Settings
from bot.storage import create_engine

config = context.config


def _metadata() -> MetaData:
    metadata: MetaData = config.attributes.get("target_metadata") or METADATA
    return metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=_metadata(),
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    return Settings().database_url


async def _run_own_engine() -> None:
    engine = create_engine(_url())
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=_metadata(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (shared := config.attributes.get("connection")) is not None:
    _run(shared)
else:
    asyncio.run(_run_own_engine())
