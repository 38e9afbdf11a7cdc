"""Helpers for the network-check tests: small sandbox worlds, one check at a time.

`checked(scenario)` starts the world on loopback and a seam pointed at it; `probe.run(check)`
runs one check the way the runner would (its own context view) but lets a crash surface as a
test failure instead of an `error` finding. `custom_https()` serves an arbitrary aiohttp handler
behind a sandbox-CA certificate on a loopback address of the world's block, for answers no
sandbox role plays (a proxy rewriting OPTIONS, a captive portal).
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from checks.address import parse_address
from checks.cloud import hosts_for
from checks.models import Client, Finding, Status
from checks.net.seam import Network, Timeouts
from checks.settings import Cloud
from checks.spec import Check, CheckContext
from sandbox.scenario import DnsFault, Host, Record, Scenario, cloud_tenant, microsoft_hosts
from sandbox.services.configs import RealmInfo
from sandbox.world import World, shared_ca

MANAGED = RealmInfo()
FAST = Timeouts(dns=1.0, connect=1.0, read=1.0, total=3.0)


def scenario(
    domain: str = "contoso.com",
    *,
    cloud: Cloud = Cloud.GLOBAL,
    records: Iterable[Record] = (),
    hosts: Iterable[Host] = (),
    dns_faults: Iterable[DnsFault] = (),
    microsoft: Mapping[str, Any] | None = None,
    realm: RealmInfo | None = MANAGED,
    with_microsoft: bool = True,
    **tenant: Any,
) -> Scenario:
    """A healthy Microsoft 365 domain (DNS + website + Microsoft hosts), tweaked by the args.

    `tenant` goes to `cloud_tenant` (mx=, autodiscover=, spf=, website=, extra=); `microsoft`
    to `microsoft_hosts` as role overrides; `realm` is how Entra ID sees the domain.
    """
    parts = cloud_tenant(domain, cloud, **tenant)
    ms: tuple[Host, ...] = ()
    if with_microsoft:
        realms = {domain: realm} if realm is not None else {}
        ms = microsoft_hosts(cloud, realms=realms, **dict(microsoft or {}))
    return Scenario(
        id="test",
        title="test",
        description="a world for one check test",
        cloud=cloud,
        domain=domain,
        records=(*parts.records, *records),
        hosts=(*parts.hosts, *ms, *hosts),
        dns_faults=tuple(dns_faults),
    )


@dataclass
class Probe:
    world: World
    net: Network

    def context(self, *, client: Client = Client.ALL, address: str | None = None) -> CheckContext:
        sc = self.world.scenario
        return CheckContext(
            address=parse_address(address or sc.address),
            client=client,
            symptom=None,
            settings=self.net.settings,
            net=self.net,
            cloud=hosts_for(sc.cloud),
        )

    async def run(
        self,
        check: Check,
        *,
        client: Client = Client.ALL,
        address: str | None = None,
        ctx: CheckContext | None = None,
    ) -> Finding:
        assert check.run is not None
        ctx = ctx or self.context(client=client, address=address)
        finding = await check.run(ctx.view(check))
        assert finding.check == check.id
        assert_well_formed(finding)
        return finding


@asynccontextmanager
async def checked(
    sc: Scenario,
    *,
    timeouts: Timeouts | None = None,
    base: str | None = None,
    extra_ports: Mapping[tuple[str, int], int] | None = None,
    **settings: Any,
) -> AsyncIterator[Probe]:
    async with World(sc, base=base) as world:
        ports = {**world.port_map, **(extra_ports or {})}
        async with Network(world.settings(**settings), timeouts=timeouts, port_map=ports) as net:
            yield Probe(world, net)


def random_base() -> str:
    return f"127.{random.randint(100, 254)}.{random.randint(100, 254)}"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def custom_https(ip: str, names: list[str], handler: Handler) -> AsyncIterator[int]:
    """Serve `handler` over TLS (sandbox CA, `names`) on `ip`, an ephemeral port; yields it."""
    tls = shared_ca().issue(names).server_context()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, ip, 0, ssl_context=tls)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


def assert_well_formed(finding: Finding) -> None:
    """The contract every finding of these checks keeps, whatever its status."""
    json.dumps(finding.evidence)  # JSON-friendly evidence
    assert finding.summary.strip() == finding.summary and "\n" not in finding.summary
    assert finding.summary.endswith("."), finding.summary
    text = json.dumps(finding.model_dump(mode="json")).lower()
    assert "authorization:" not in text
    if finding.status in (Status.FAIL, Status.WARN):
        assert finding.evidence, f"{finding.check} {finding.status} without evidence"
        assert finding.next_steps, f"{finding.check} {finding.status} without next steps"
        assert all(s.strip() for s in finding.next_steps)
