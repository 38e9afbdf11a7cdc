"""SqlStore against SQLite and the real PostgreSQL (127.0.0.1:5432, trust auth, user postgres).

Every contract test runs on both backends. PostgreSQL gets a fresh database per test run,
dropped afterwards. Locally a PostgreSQL that is down skips those tests with the reason; in CI
(`CI=true`) it fails them, because a green run without PostgreSQL would prove nothing about it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from _db import reset_database
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect as sa_inspect

from bot.storage import METADATA, SqlStore, alembic_config, create_engine, head_revision, migrate
from checks.models import Cause, Client, Finding, Report, Side, Status
from dialogs.models import Platform
from dialogs.store import FollowUp, FollowUpKind, StoredDiagnosis, UnknownDiagnosis

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


class StepClock:
    """Moves one second per reading, so `updated_at` stamps are predictable and distinct."""

    def __init__(self) -> None:
        self.now = T0 + timedelta(hours=1)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    await migrate(database_url)
    s = SqlStore.from_url(database_url, clock=StepClock())
    try:
        yield s
    finally:
        await s.close()
        if database_url.startswith("postgresql"):
            await reset_database(database_url)


def diagnosis(id: str = "d1", person: str = "U-ANA", minute: int = 0) -> StoredDiagnosis:
    at = T0 + timedelta(minutes=minute)
    return StoredDiagnosis(
        id=id,
        platform=Platform.SLACK,
        person_id=person,
        person_email="ana@contoso.com",
        workspace="T0CONTOSO",
        conversation="C0GENERAL",
        address="ana@xn--bcher-kva.example",
        client=Client.OUTLOOK,
        app="outlook-windows",
        symptom="cannot_connect",
        answers={"address": "ana@bücher.example", "app": "outlook-windows", "note": "ünïcödé"},
        created_at=at,
        updated_at=at,
    )


def report(address: str = "ana@bücher.example") -> Report:
    return Report(
        address=address,
        client=Client.OUTLOOK,
        duration_ms=812,
        findings=[
            Finding(
                check="dns.autodiscover",
                status=Status.FAIL,
                summary="No autodiscover record",
                evidence={"queried": "autodiscover.bücher.example", "answers": []},
                next_steps=["Add a CNAME"],
            )
        ],
        causes=[
            Cause(
                id="autodiscover-dns-missing",
                title="Missing record",
                confidence=0.9,
                checks=["dns.autodiscover"],
                side=Side.DNS,
            )
        ],
    )


# --- migrations ------------------------------------------------------------------------------


async def test_migrations_are_idempotent_and_match_the_tables_in_code(database_url: str) -> None:
    await migrate(database_url)
    await migrate(database_url)  # a second start-up changes nothing
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(sa_inspect(c).get_table_names()))
            diff = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c), METADATA)
            )
        store = SqlStore(engine)
        assert await store.ready() == (True, "ok")
    finally:
        await engine.dispose()
        if database_url.startswith("postgresql"):
            await reset_database(database_url)
    assert {"diagnoses", "follow_ups", "processed_events", "conversation_refs"} <= tables
    assert "alembic_version" in tables
    assert diff == []  # bot/schema.py and the migrations describe the same schema
    assert head_revision() == "0003"


async def test_each_migration_downgrades_and_upgrades_again(database_url: str) -> None:
    engine = create_engine(database_url)

    async def tables() -> set[str]:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda c: set(sa_inspect(c).get_table_names()))

    async def alembic(step: str, target: str) -> None:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: getattr(command, step)(alembic_config(c), target))

    async def diagnosis_columns() -> set[str]:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda c: {col["name"] for col in sa_inspect(c).get_columns("diagnoses")}
            )

    try:
        await alembic("upgrade", "head")
        assert {"cases", "proposals", "audit_log", "slack_installations"} <= await tables()
        assert "workspace" in await diagnosis_columns()
        await alembic("downgrade", "0002")
        at_0002 = await diagnosis_columns()
        assert "workspace" not in at_0002 and "lease_owner" in at_0002
        assert "cases" in await tables()
        await alembic("upgrade", "0003")
        assert "workspace" in await diagnosis_columns()
        await alembic("downgrade", "0001")
        at_0001 = await tables()
        assert "cases" not in at_0001 and "audit_log" not in at_0001
        assert {"diagnoses", "follow_ups"} <= at_0001
        async with engine.connect() as conn:
            columns = await conn.run_sync(
                lambda c: {col["name"] for col in sa_inspect(c).get_columns("diagnoses")}
            )
        assert "lease_owner" not in columns
        await alembic("upgrade", "head")
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c), METADATA)
            )
        assert diff == []
        await alembic("downgrade", "base")
        assert await tables() <= {"alembic_version"}
    finally:
        await engine.dispose()


async def test_an_unmigrated_database_is_not_ready(tmp_path: Path) -> None:
    store = SqlStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    try:
        ok, reason = await store.ready()
    finally:
        await store.close()
    assert not ok
    assert reason == "schema at nothing, expected 0003"


# --- diagnoses -------------------------------------------------------------------------------


async def test_a_diagnosis_round_trips_with_its_report(store: SqlStore) -> None:
    await store.create(diagnosis())
    got = await store.get("d1")
    assert got == diagnosis()
    assert got is not None and got.created_at.tzinfo is not None
    done = await store.finish("d1", report())
    assert done.state == "done"
    assert done.report == report()
    assert done.updated_at > done.created_at
    assert done.updated_at.utcoffset() == timedelta(0)
    assert await store.get("d1") == done
    assert await store.get("nope") is None


async def test_a_duplicate_id_is_refused(store: SqlStore) -> None:
    await store.create(diagnosis())
    with pytest.raises(ValueError, match="already exists"):
        await store.create(diagnosis(person="U-BO"))
    stored = await store.get("d1")
    assert stored is not None and stored.person_id == "U-ANA"


async def test_the_first_outcome_wins(store: SqlStore) -> None:
    await store.create(diagnosis())
    failed = await store.fail("d1", "The checks did not finish within 30 seconds.")
    assert failed.state == "failed" and failed.report is None
    late = await store.finish("d1", report())  # a late report does not overwrite the failure
    assert late == failed
    with pytest.raises(UnknownDiagnosis):
        await store.finish("nope", report())
    with pytest.raises(UnknownDiagnosis):
        await store.fail("nope", "x")


async def test_two_replicas_racing_to_end_a_diagnosis_agree_on_one_outcome(
    store: SqlStore, database_url: str
) -> None:
    other = SqlStore.from_url(database_url)  # a second replica: its own engine and pool
    try:
        for n in range(5):
            await store.create(diagnosis(id=f"race{n}"))
            a, b = await asyncio.gather(
                store.finish(f"race{n}", report()), other.fail(f"race{n}", "deadline")
            )
            final = await store.get(f"race{n}")
            assert final is not None and final.state in ("done", "failed")
            # Whatever each replica saw afterwards is what is stored: nobody overwrote anyone.
            assert {a.state, b.state} == {final.state}
    finally:
        await other.close()


async def test_recent_is_newest_first_per_person_with_ties_to_the_later_insert(
    store: SqlStore,
) -> None:
    await store.create(diagnosis("a", minute=1))
    await store.create(diagnosis("b", minute=3))
    await store.create(diagnosis("c", minute=2))
    await store.create(diagnosis("d", minute=3))  # same created_at as "b", inserted later
    await store.create(diagnosis("x", person="U-BO", minute=9))
    assert [d.id for d in await store.recent("U-ANA")] == ["d", "b", "c", "a"]
    assert [d.id for d in await store.recent("U-ANA", limit=2)] == ["d", "b"]
    assert await store.recent("U-ANA", limit=0) == []
    assert [d.id for d in await store.recent("U-BO")] == ["x"]
    assert await store.recent("U-NOBODY") == []


# --- follow-ups ------------------------------------------------------------------------------


async def test_follow_ups_are_appended_and_read_oldest_first(store: SqlStore) -> None:
    await store.create(diagnosis())
    kinds: list[FollowUpKind] = ["run_again", "escalation_requested", "fixed"]
    for n, kind in enumerate(kinds):
        await store.record(
            FollowUp(kind=kind, diagnosis_id="d1", person_id="U-ANA", at=T0 + timedelta(minutes=n))
        )
    got = await store.follow_ups("d1")
    assert [f.kind for f in got] == kinds
    assert got[0].at == T0
    assert await store.follow_ups("nope") == []
    with pytest.raises(UnknownDiagnosis):
        await store.record(FollowUp(kind="fixed", diagnosis_id="nope", person_id="U-ANA", at=T0))


# --- platform event dedupe -------------------------------------------------------------------


async def test_first_time_is_true_exactly_once_even_across_replicas(
    store: SqlStore, database_url: str
) -> None:
    assert await store.first_time("slack:Ev01") is True
    assert await store.first_time("slack:Ev01") is False
    assert await store.first_time("slack:Ev02") is True
    replicas = [SqlStore.from_url(database_url) for _ in range(3)]
    try:
        answers = await asyncio.gather(
            *(r.first_time("teams:activity-7") for r in replicas for _ in range(4))
        )
    finally:
        for r in replicas:
            await r.close()
    assert sorted(answers) == [False] * 11 + [True]


async def test_old_event_ids_are_forgotten(store: SqlStore) -> None:
    assert await store.first_time("old")
    store._clock = lambda: T0 + timedelta(days=2)  # two days later
    assert await store.first_time("new")
    assert await store.forget_events(timedelta(hours=1)) == 1
    assert await store.first_time("old") is True  # forgotten, so new again
    assert await store.first_time("new") is False


# --- conversation references -----------------------------------------------------------------


async def test_conversation_refs_are_upserted(store: SqlStore) -> None:
    assert await store.conversation_ref("teams:29:abc") is None
    ref = {"conversation": {"id": "19:abc@thread.tacv2"}, "serviceUrl": "https://smba.example/"}
    await store.save_conversation_ref("teams:29:abc", Platform.TEAMS, ref)
    assert await store.conversation_ref("teams:29:abc") == ref
    newer = {**ref, "serviceUrl": "https://smba.example/emea/"}
    await store.save_conversation_ref("teams:29:abc", Platform.TEAMS, newer)
    assert await store.conversation_ref("teams:29:abc") == newer


@pytest.mark.postgres
async def test_replicas_starting_together_migrate_once(postgres_server: str) -> None:
    # Four start-ups at once on one PostgreSQL: the advisory lock serialises them.
    await asyncio.gather(*(migrate(postgres_server) for _ in range(4)))
    store = SqlStore.from_url(postgres_server)
    try:
        assert await store.ready() == (True, "ok")
    finally:
        await store.close()
        await reset_database(postgres_server)


# --- leases on running diagnoses ---------------------------------------------------------------


class HandClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


async def test_a_replica_that_dies_mid_diagnosis_has_it_failed_once(database_url: str) -> None:
    await migrate(database_url)
    clock = HandClock()
    a = SqlStore.from_url(database_url, clock=clock)
    b = SqlStore.from_url(database_url, clock=clock)
    try:
        await a.create(diagnosis("alive"))
        await a.create(diagnosis("dead", person="U-BO"))
        await a.create(diagnosis("never-leased", person="U-CY"))
        assert await a.hold("alive", "replica-a", lease=30)
        assert await a.hold("dead", "replica-a", lease=30)
        assert not await b.hold("alive", "replica-b", lease=30)  # a still holds it
        clock.now += timedelta(seconds=20)
        assert await a.hold("alive", "replica-a", lease=30)  # heartbeat
        clock.now += timedelta(seconds=15)  # "dead" was last renewed 35 s ago
        failed = await asyncio.gather(
            a.fail_lapsed("The server stopped; run it again.", unleased_after=300),
            b.fail_lapsed("The server stopped; run it again.", unleased_after=300),
        )
        assert sorted(d.id for batch in failed for d in batch) == ["dead"]
        dead = await a.get("dead")
        assert dead is not None and dead.state == "failed"
        assert dead.error == "The server stopped; run it again."
        assert not await a.hold("dead", "replica-a", lease=30)  # ended: nothing to hold
        clock.now = T0 + timedelta(seconds=290)
        assert await a.hold("alive", "replica-a", lease=30)  # still renewed
        clock.now = T0 + timedelta(seconds=301)
        late = await b.fail_lapsed("stopped", unleased_after=300)
        assert [d.id for d in late] == ["never-leased"]
        alive = await a.get("alive")
        assert alive is not None and alive.state == "running"
    finally:
        await a.close()
        await b.close()
        if database_url.startswith("postgresql"):
            await reset_database(database_url)
