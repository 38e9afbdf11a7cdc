"""The runner: concurrency, per-check timeouts, the global deadline, dependencies, crashes."""

from __future__ import annotations

import asyncio
import time

import pytest

from checks.address import parse_address
from checks.cloud import hosts_for
from checks.models import Client, Side, Status
from checks.net.seam import Network
from checks.registry import CATALOGUE, CATALOGUE_IDS
from checks.runner import diagnose, run_checks
from checks.settings import CheckSettings, Cloud
from checks.spec import EVERY_CLIENT, Check, CheckContext, DependencyError

SETTINGS = CheckSettings(dns_servers=["127.0.0.1:9"])  # never used: these checks do no I/O


def make_ctx(net: Network, client: Client = Client.ALL) -> CheckContext:
    return CheckContext(
        address=parse_address("ana@contoso.com"),
        client=client,
        symptom=None,
        settings=SETTINGS,
        net=net,
        cloud=hosts_for(Cloud.GLOBAL),
    )


def sleeper(check_id: str, seconds: float, status: Status = Status.PASS, **kw: object) -> Check:
    async def run(ctx: CheckContext):  # type: ignore[no-untyped-def]
        await asyncio.sleep(seconds)
        return ctx.current.finding(status, f"slept {seconds}")  # type: ignore[union-attr]

    return Check(id=check_id, title=check_id, side=Side.DNS, clients=EVERY_CLIENT, run=run, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def net():
    async with Network(SETTINGS) as network:
        yield network


async def test_independent_checks_run_concurrently(net: Network) -> None:
    checks = [sleeper(f"t.{i}", 0.2) for i in range(8)]
    t0 = time.monotonic()
    findings = await run_checks(make_ctx(net), checks, deadline=5)
    elapsed = time.monotonic() - t0
    assert [f.status for f in findings] == [Status.PASS] * 8
    assert elapsed < 0.2 * 8 / 2, f"8 x 0.2 s checks took {elapsed:.2f} s: not concurrent"


async def test_crash_becomes_error_and_others_still_report(net: Network) -> None:
    async def boom(ctx: CheckContext):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("kaboom")

    crash = Check(id="t.crash", title="crash", side=Side.DNS, clients=EVERY_CLIENT, run=boom)
    findings = await run_checks(make_ctx(net), [crash, sleeper("t.ok", 0.01)], deadline=5)
    assert findings[0].status is Status.ERROR
    assert "ZeroDivisionError" in findings[0].detail
    assert findings[1].status is Status.PASS


async def test_per_check_timeout(net: Network) -> None:
    slow = sleeper("t.slow", 10, timeout=0.2)
    t0 = time.monotonic()
    findings = await run_checks(make_ctx(net), [slow, sleeper("t.fast", 0.01)], deadline=5)
    assert time.monotonic() - t0 < 2
    assert findings[0].status is Status.ERROR
    assert "time limit" in findings[0].summary
    assert findings[1].status is Status.PASS


async def test_global_deadline_stops_everything(net: Network) -> None:
    checks = [sleeper("t.a", 10), sleeper("t.b", 10), sleeper("t.c", 0.01)]
    t0 = time.monotonic()
    findings = await run_checks(make_ctx(net), checks, deadline=0.3)
    assert time.monotonic() - t0 < 1.5
    assert [f.status for f in findings] == [Status.ERROR, Status.ERROR, Status.PASS]
    assert "deadline" in findings[0].summary


async def test_dependency_waits_only_for_what_it_needs(net: Network) -> None:
    order: list[str] = []

    async def dependent(ctx: CheckContext):  # type: ignore[no-untyped-def]
        order.append("dependent-start")
        base = await ctx.result_of("t.base")
        order.append("dependent-end")
        return ctx.current.finding(base.status, "saw " + base.summary)  # type: ignore[union-attr]

    dep = Check(
        id="t.dep",
        title="dep",
        side=Side.DNS,
        clients=EVERY_CLIENT,
        run=dependent,
        depends_on=("t.base",),
    )
    t0 = time.monotonic()
    findings = await run_checks(
        make_ctx(net),
        [sleeper("t.base", 0.2, Status.WARN), dep, sleeper("t.other", 0.2)],
        deadline=5,
    )
    assert time.monotonic() - t0 < 0.35, "the independent check was serialised"
    assert findings[1].status is Status.WARN and findings[1].summary == "saw slept 0.2"
    assert order == ["dependent-start", "dependent-end"]


async def test_undeclared_dependency_is_an_error(net: Network) -> None:
    async def sneaky(ctx: CheckContext):  # type: ignore[no-untyped-def]
        await ctx.result_of("t.base")
        raise AssertionError("unreachable")

    bad = Check(id="t.bad", title="bad", side=Side.DNS, clients=EVERY_CLIENT, run=sneaky)
    findings = await run_checks(make_ctx(net), [sleeper("t.base", 0), bad], deadline=5)
    assert findings[1].status is Status.ERROR
    assert DependencyError.__name__ in findings[1].detail


async def test_not_applicable_and_progress(net: Network) -> None:
    seen: list[tuple[str, int, int]] = []
    only_mobile = Check(
        id="t.mobile",
        title="m",
        side=Side.NETWORK,
        clients=frozenset({Client.MOBILE}),
        run=sleeper("x", 0).run,
    )

    async def progress(finding, done, total):  # type: ignore[no-untyped-def]
        seen.append((finding.check, done, total))

    findings = await run_checks(
        make_ctx(net, Client.IMAP),
        [only_mobile, sleeper("t.any", 0)],
        deadline=5,
        on_progress=progress,
    )
    assert findings[0].status is Status.SKIP and "imap" in findings[0].summary
    assert sorted(seen) == [("t.any", 2, 2), ("t.mobile", 1, 2)]


async def test_catalogue_declares_tenant_checks_as_skip_without_credentials(net: Network) -> None:
    tenant = [c for c in CATALOGUE if c.needs_tenant]
    findings = await run_checks(make_ctx(net), tenant, deadline=5)
    assert findings and all(f.status is Status.SKIP for f in findings)
    assert all("MAILFIX_TENANT_ID" in f.summary for f in findings)


def test_catalogue_is_sorted_and_complete() -> None:
    assert list(CATALOGUE_IDS) == sorted(CATALOGUE_IDS)
    assert set(CATALOGUE_IDS) >= {
        "dns.mx",
        "dns.autodiscover",
        "dns.spf",
        "autodiscover.v1",
        "autodiscover.v2",
        "net.https",
        "net.imap",
        "net.pop",
        "net.smtp",
        "activesync.endpoint",
        "realm.federation",
        "tenant.account",
        "tenant.license",
        "tenant.mailbox",
        "tenant.devices",
        "tenant.client_access_rules",
        "tenant.conditional_access",
        "tenant.signins",
        "tenant.service_health",
    }


async def test_diagnose_rejects_bad_deadline() -> None:
    with pytest.raises(ValueError, match="deadline"):
        await diagnose("ana@contoso.com", Client.OUTLOOK, settings=SETTINGS, deadline=0)
