"""MemoryStore keeps the DiagnosisStore rules the SQL store must keep too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from dialogs_world import findings

from checks.models import Client, Report
from dialogs.models import Platform
from dialogs.store import DiagnosisStore, FollowUp, MemoryStore, StoredDiagnosis, UnknownDiagnosis

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def diagnosis(id: str, person: str = "U1", minutes: int = 0) -> StoredDiagnosis:
    at = T0 + timedelta(minutes=minutes)
    return StoredDiagnosis(
        id=id,
        platform=Platform.SLACK,
        person_id=person,
        conversation="C1",
        address="ana@contoso.com",
        client=Client.OUTLOOK,
        app="outlook_windows",
        symptom="cannot_connect",
        answers={"address": "ana@contoso.com"},
        created_at=at,
        updated_at=at,
    )


def report() -> Report:
    return Report(
        address="ana@contoso.com",
        client=Client.OUTLOOK,
        duration_ms=3,
        findings=findings(),
        causes=[],
    )


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore(clock=lambda: T0 + timedelta(hours=1))


def test_memory_store_is_a_diagnosis_store(store: MemoryStore) -> None:
    typed: DiagnosisStore = store  # mypy checks the protocol; this checks it at runtime too
    assert callable(typed.follow_ups)


async def test_create_get_finish(store: MemoryStore) -> None:
    await store.create(diagnosis("a"))
    with pytest.raises(ValueError, match="already exists"):
        await store.create(diagnosis("a"))
    done = await store.finish("a", report())
    assert done.state == "done" and done.report == report()
    assert done.updated_at == T0 + timedelta(hours=1) and done.created_at == T0
    assert await store.get("a") == done
    assert await store.get("missing") is None


async def test_first_outcome_wins(store: MemoryStore) -> None:
    await store.create(diagnosis("a"))
    failed = await store.fail("a", "The checks did not finish.")
    assert failed.state == "failed" and failed.error == "The checks did not finish."
    late = await store.finish("a", report())  # a report after the deadline failed it
    assert late.state == "failed" and late.report is None
    with pytest.raises(UnknownDiagnosis):
        await store.finish("zzz", report())


async def test_recent_is_per_person_newest_first(store: MemoryStore) -> None:
    for n in range(12):
        await store.create(diagnosis(f"a{n}", minutes=n))
    await store.create(diagnosis("b", person="U2", minutes=99))
    recent = await store.recent("U1")
    assert [d.id for d in recent] == [f"a{n}" for n in range(11, 1, -1)]
    assert [d.id for d in await store.recent("U1", limit=2)] == ["a11", "a10"]
    assert [d.id for d in await store.recent("U2")] == ["b"]


async def test_follow_ups(store: MemoryStore) -> None:
    await store.create(diagnosis("a"))
    first = FollowUp(kind="escalation_requested", diagnosis_id="a", person_id="U1", at=T0)
    second = FollowUp(kind="fixed", diagnosis_id="a", person_id="U1", at=T0)
    await store.record(first)
    await store.record(second)
    assert await store.follow_ups("a") == [first, second]
    assert await store.follow_ups("other") == []
    with pytest.raises(UnknownDiagnosis):
        await store.record(FollowUp(kind="fixed", diagnosis_id="x", person_id="U1", at=T0))


def test_stored_diagnosis_round_trips_as_json() -> None:
    d = diagnosis("a").model_copy(update={"state": "done", "report": report()})
    again = StoredDiagnosis.model_validate_json(d.model_dump_json(by_alias=True))
    assert again == d


def test_default_check_titles_are_the_catalogue() -> None:
    from checks.cloud import hosts_for
    from checks.registry import CATALOGUE
    from checks.settings import Cloud
    from dialogs.flow import Services

    async def never(request: object, progress: object) -> Report:
        raise AssertionError("not called")

    services = Services(store=MemoryStore(), diagnose=never, hosts=hosts_for(Cloud.GLOBAL))
    assert list(services.check_titles) == [c.id for c in CATALOGUE]
    assert services.check_titles["dns.mx"] == "MX records"
