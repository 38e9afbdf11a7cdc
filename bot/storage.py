"""SQL storage: diagnoses, follow-ups, processed platform events, conversation references.

`SqlStore` implements `dialogs.store.DiagnosisStore` on SQLAlchemy 2 async. SQLite
(`sqlite+aiosqlite://`) is the embedded default; PostgreSQL (`postgresql+asyncpg://`) is for
several replicas (DESIGN.md, "Scale"). The rules that make replicas safe are single statements:

- a diagnosis ends with one conditional `UPDATE … WHERE state = 'running'` — the first outcome
  wins, a second replica's late answer changes nothing;
- a platform event is handled once: `first_time(event_id)` is one `INSERT … ON CONFLICT DO
  NOTHING` on a primary key, so exactly one replica sees `True` for a retried delivery.

The schema is owned by the Alembic migrations shipped in `bot/migrations/`; `migrate()` runs
them at start-up. `METADATA` (bot/schema.py) mirrors them (tests compare the two).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Table,
    and_,
    delete,
    event,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bot.schema import METADATA, conversation_refs, diagnoses, follow_ups, processed_events
from checks.models import Client, Report
from dialogs.models import Platform
from dialogs.store import FollowUp, StoredDiagnosis, UnknownDiagnosis, utc_now

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_MS = 30_000  # SQLite waits this long for another writer (another process)
BUSY_ATTEMPTS = 5  # ... and a write still refused as busy is tried again this many times

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S", bound="SqlBase")


# --- engine and migrations --------------------------------------------------------------------


def create_engine(database_url: str) -> AsyncEngine:
    """An async engine for `database_url`, with the per-backend details right."""
    url = make_url(database_url)
    options: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            _private_file(Path(database).expanduser())
    else:
        options["pool_pre_ping"] = True
    engine = create_async_engine(url, **options)
    if url.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _private_file(path: Path) -> None:
    """Create the SQLite file readable by its owner only (0600; SQLite gives its -wal and -shm
    files the same mode). The file holds addresses and reports: no one else's business."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")  # off by default in SQLite
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    # WAL: readers (App Home, /readyz) never wait for a writer, and a commit appends to the
    # log instead of rewriting pages. Durability is unchanged (synchronous stays FULL).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic config pointing at the migrations inside the installed package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["target_metadata"] = METADATA
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS}")
    return head


_MIGRATE_LOCK = 0x6D61696C66697801  # "mailfix" + 1: the advisory lock around migrations


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


async def migrate(database_url: str, *, engine: AsyncEngine | None = None) -> None:
    """`alembic upgrade head` on `database_url` (idempotent; safe to run at every start)."""
    own = engine is None
    engine = engine or create_engine(database_url)
    try:
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Replicas start together: one migrates while the others wait for the lock
                # (released at commit), then find the schema at head and do nothing.
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATE_LOCK}
                )
            # Alembic is synchronous: hand it the sync face of our async connection.
            await conn.run_sync(_upgrade)
    finally:
        if own:
            await engine.dispose()


# --- the store --------------------------------------------------------------------------------


def _to_row(d: StoredDiagnosis) -> dict[str, Any]:
    return {
        "id": d.id,
        "platform": d.platform.value,
        "person_id": d.person_id,
        "person_email": d.person_email,
        "workspace": d.workspace,
        "conversation": d.conversation,
        "address": d.address,
        "client": d.client.value,
        "app": d.app,
        "symptom": d.symptom,
        "answers": d.answers,
        "state": d.state,
        "report": d.report.to_dict() if d.report is not None else None,
        "error": d.error,
        "created_at": d.created_at,
        "updated_at": d.updated_at,
    }


def _from_row(row: Any) -> StoredDiagnosis:
    m = row._mapping
    return StoredDiagnosis(
        id=m["id"],
        platform=Platform(m["platform"]),
        person_id=m["person_id"],
        person_email=m["person_email"],
        workspace=m["workspace"],
        conversation=m["conversation"],
        address=m["address"],
        client=Client(m["client"]),
        app=m["app"],
        symptom=m["symptom"],
        answers=m["answers"] or {},
        state=m["state"],
        report=Report.model_validate(m["report"]) if m["report"] is not None else None,
        error=m["error"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def _busy(exc: OperationalError) -> bool:
    message = str(exc.orig if exc.orig is not None else exc).lower()
    return "locked" in message or "busy" in message


def retry_when_busy(
    method: Callable[Concatenate[S, P], Awaitable[T]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """Run a write again when SQLite still says "database is locked" after its busy timeout
    (a burst, another process). Safe: a refused transaction was rolled back whole."""

    async def retrying(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        for attempt in range(1, BUSY_ATTEMPTS + 1):
            try:
                return await method(self, *args, **kwargs)
            except OperationalError as exc:
                if not _busy(exc) or attempt == BUSY_ATTEMPTS:
                    raise
                delay = min(2.0, 0.05 * 2**attempt) * (0.5 + random.random())  # noqa: S311
                log.warning("database busy: %s again in %.2f s", method.__name__, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    functools.update_wrapper(retrying, method)
    return retrying


# SQLite has one writer at a time. In one process writers take turns on a lock per database
# (every store on the same engine shares it), first come first served, instead of racing in
# SQLite's busy handler (which is not fair: under a burst of 150 one writer could wait past any
# timeout). PostgreSQL needs no turns.
_WRITERS: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()


class SqlBase:
    """What every store on our database shares: the engine, the clock, writes that take turns
    (with `@retry_when_busy`), and the two upserts every backend spells differently."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.engine = engine
        self._clock = clock
        self._dialect = engine.dialect.name
        self._writer: contextlib.AbstractAsyncContextManager[Any] = contextlib.nullcontext()
        if self._dialect == "sqlite":
            self._writer = _WRITERS.setdefault(engine.sync_engine, asyncio.Lock())

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (use with `@retry_when_busy` on the method)."""
        async with self._writer, self.engine.begin() as conn:
            yield conn

    def _insert_ignoring(self, table: Table, values: dict[str, Any], keys: list[str]) -> Any:
        """`INSERT … ON CONFLICT (keys) DO NOTHING`: rowcount 1 for the first, 0 after."""
        if self._dialect == "postgresql":
            stmt: Any = postgresql.insert(table)
        elif self._dialect == "sqlite":
            stmt = sqlite.insert(table)
        else:  # backends without ON CONFLICT raise IntegrityError instead
            return insert(table).values(**values)
        return stmt.values(**values).on_conflict_do_nothing(index_elements=keys)

    def _upsert(self, table: Table, values: dict[str, Any], keys: list[str]) -> Any:
        """`INSERT … ON CONFLICT (keys) DO UPDATE` the other columns."""
        dialect: Any = postgresql if self._dialect == "postgresql" else sqlite
        changes = {k: v for k, v in values.items() if k not in keys}
        return (
            dialect.insert(table)
            .values(**values)
            .on_conflict_do_update(index_elements=keys, set_=changes)
        )


class SqlStore(SqlBase):
    """`DiagnosisStore` on SQL, plus event dedupe and conversation references."""

    @classmethod
    def from_url(cls, database_url: str, **kwargs: Any) -> SqlStore:
        return cls(create_engine(database_url), **kwargs)

    async def close(self) -> None:
        await self.engine.dispose()

    # --- diagnoses ---------------------------------------------------------------------------

    @retry_when_busy
    async def create(self, d: StoredDiagnosis) -> None:
        try:
            async with self._write() as conn:
                await conn.execute(insert(diagnoses).values(**_to_row(d)))
        except IntegrityError as exc:
            raise ValueError(f"diagnosis {d.id!r} already exists") from exc

    async def finish(self, id: str, report: Report) -> StoredDiagnosis:
        return await self._end(id, state="done", report=report.to_dict(), error=None)

    async def fail(self, id: str, message: str) -> StoredDiagnosis:
        return await self._end(id, state="failed", report=None, error=message)

    @retry_when_busy
    async def _end(
        self, id: str, *, state: str, report: dict[str, Any] | None, error: str | None
    ) -> StoredDiagnosis:
        async with self._write() as conn:
            await conn.execute(
                update(diagnoses)
                .where(diagnoses.c.id == id, diagnoses.c.state == "running")
                .values(state=state, report=report, error=error, updated_at=self._clock())
            )
            row = (await conn.execute(select(diagnoses).where(diagnoses.c.id == id))).first()
        if row is None:
            raise UnknownDiagnosis(id)
        return _from_row(row)

    async def get(self, id: str) -> StoredDiagnosis | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(diagnoses).where(diagnoses.c.id == id))).first()
        return _from_row(row) if row is not None else None

    async def recent(self, person_id: str, limit: int = 10) -> list[StoredDiagnosis]:
        if limit <= 0:
            return []
        query = (
            select(diagnoses)
            .where(diagnoses.c.person_id == person_id)
            .order_by(diagnoses.c.created_at.desc(), diagnoses.c.seq.desc())
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_from_row(r) for r in rows]

    # --- leases on running diagnoses ----------------------------------------------------------

    @retry_when_busy
    async def hold(self, id: str, owner: str, lease: float) -> bool:
        """Take or renew the lease on a running diagnosis. False once it has ended (or when
        another replica holds a lease that has not lapsed)."""
        now = self._clock()
        mine_or_free = or_(
            diagnoses.c.lease_owner.is_(None),
            diagnoses.c.lease_owner == owner,
            diagnoses.c.lease_until < now,
        )
        async with self._write() as conn:
            result = await conn.execute(
                update(diagnoses)
                .where(diagnoses.c.id == id, diagnoses.c.state == "running", mine_or_free)
                .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease))
            )
        return bool(result.rowcount == 1)

    @retry_when_busy
    async def fail_lapsed(self, message: str, *, unleased_after: float) -> list[StoredDiagnosis]:
        """Fail running diagnoses whose replica stopped renewing its lease (it died), and those
        never leased that are older than `unleased_after` seconds. One conditional UPDATE: the
        replica that fails a diagnosis is the one that tells the person."""
        now = self._clock()
        lapsed = or_(
            diagnoses.c.lease_until < now,
            and_(
                diagnoses.c.lease_until.is_(None),
                diagnoses.c.created_at < now - timedelta(seconds=unleased_after),
            ),
        )
        async with self._write() as conn:
            rows = (
                await conn.execute(
                    update(diagnoses)
                    .where(diagnoses.c.state == "running", lapsed)
                    .values(state="failed", error=message, updated_at=now, lease_owner=None)
                    .returning(*diagnoses.c)
                )
            ).all()
        return [_from_row(r) for r in rows]

    # --- follow-ups --------------------------------------------------------------------------

    @retry_when_busy
    async def record(self, follow_up: FollowUp) -> None:
        try:
            async with self._write() as conn:
                await conn.execute(
                    insert(follow_ups).values(
                        diagnosis_id=follow_up.diagnosis_id,
                        kind=follow_up.kind,
                        person_id=follow_up.person_id,
                        at=follow_up.at,
                    )
                )
        except IntegrityError as exc:  # the foreign key: no such diagnosis
            raise UnknownDiagnosis(follow_up.diagnosis_id) from exc

    async def follow_ups(self, diagnosis_id: str) -> list[FollowUp]:
        query = (
            select(follow_ups)
            .where(follow_ups.c.diagnosis_id == diagnosis_id)
            .order_by(follow_ups.c.at, follow_ups.c.seq)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            FollowUp(kind=r.kind, diagnosis_id=r.diagnosis_id, person_id=r.person_id, at=r.at)
            for r in rows
        ]

    # --- platform event dedupe ---------------------------------------------------------------

    @retry_when_busy
    async def first_time(self, event_id: str) -> bool:
        """True exactly once per `event_id`, across every replica sharing the database."""
        values = {"event_id": event_id[:255], "seen_at": self._clock()}
        stmt = self._insert_ignoring(processed_events, values, ["event_id"])
        try:
            async with self._write() as conn:
                result = await conn.execute(stmt)
        except IntegrityError:  # backends without ON CONFLICT
            return False
        return bool(result.rowcount == 1)

    @retry_when_busy
    async def forget_events(self, older_than: timedelta) -> int:
        """Drop dedupe rows older than `older_than` (platforms retry for minutes, not days)."""
        async with self._write() as conn:
            result = await conn.execute(
                delete(processed_events).where(
                    processed_events.c.seen_at < self._clock() - older_than
                )
            )
        return int(result.rowcount or 0)

    @retry_when_busy
    async def forget_diagnoses(self, older_than: timedelta) -> int:
        """Retention: delete ended diagnoses (and their follow-ups) untouched for `older_than`.
        A case keeps its own copy of what the helpdesk needs; its link is cleared."""
        cutoff = self._clock() - older_than
        async with self._write() as conn:
            result = await conn.execute(
                delete(diagnoses).where(
                    diagnoses.c.updated_at < cutoff, diagnoses.c.state != "running"
                )
            )
        return int(result.rowcount or 0)

    # --- conversation references (Teams proactive messages) ----------------------------------

    @retry_when_busy
    async def save_conversation_ref(
        self, key: str, platform: Platform, ref: dict[str, Any]
    ) -> None:
        values = {"key": key, "platform": platform.value, "ref": ref, "updated_at": self._clock()}
        async with self._write() as conn:
            await conn.execute(self._upsert(conversation_refs, values, ["key"]))

    async def conversation_ref(self, key: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(conversation_refs.c.ref).where(conversation_refs.c.key == key)
                )
            ).first()
        return dict(row.ref) if row is not None else None

    # --- health ------------------------------------------------------------------------------

    async def ready(self, *, within: float = 2.0) -> tuple[bool, str]:
        """(True, "ok") when the database answers and the schema is at the newest migration."""
        try:
            async with asyncio.timeout(within), self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
                try:
                    version = (
                        await conn.execute(text("SELECT version_num FROM alembic_version"))
                    ).scalar()
                except Exception:  # no version table: never migrated
                    version = None
        except TimeoutError:
            return False, "database did not answer in time"
        except Exception as exc:  # any driver error means "not ready"; the reason is logged
            return False, f"database unavailable ({type(exc).__name__})"
        head = head_revision()
        if version != head:
            return False, f"schema at {version or 'nothing'}, expected {head}"
        return True, "ok"
