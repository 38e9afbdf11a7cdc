"""The address guard: the table, and proof that a refused address is never connected to."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from checks.net.errors import BlockedAddress
from checks.net.guard import AddressGuard
from checks.net.seam import Network, Timeouts
from checks.settings import CheckSettings
from sandbox.dns_server import DnsServer, Zone

ALLOWED = "127.9.0.0/16"  # the test world's loopback range
BLOCKED_IP = "127.66.0.1"  # loopback, but NOT on the allowed list
TIMEOUTS = Timeouts(dns=1.0, connect=1.0, read=1.0, total=3.0)


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True),
        ("52.96.0.1", True),  # a Microsoft 365 address
        ("0.0.0.0", False),
        ("0.1.2.3", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("172.31.255.255", False),
        ("172.32.0.1", True),
        ("192.168.1.1", False),
        ("127.0.0.1", False),
        ("127.9.0.1", False),  # loopback: only allowed when listed
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # CGNAT
        ("100.127.255.255", False),
        ("100.128.0.1", True),
        ("192.0.0.8", False),
        ("192.0.2.1", False),
        ("198.18.0.1", False),
        ("198.51.100.7", False),
        ("203.0.113.9", False),
        ("224.0.0.251", False),  # multicast
        ("239.255.255.250", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),  # broadcast
        ("2606:4700::1111", True),
        ("2603:1036::1", True),  # Microsoft 365 IPv6
        ("::", False),
        ("::1", False),
        ("fc00::1", False),
        ("fd12:3456::1", False),
        ("fe80::1", False),
        ("fec0::1", False),
        ("ff02::1", False),
        ("2001:db8::1", False),
        ("3fff::1", False),
        ("2001::1", False),  # Teredo
        ("100::1", False),  # discard-only
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("::ffff:10.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
        ("2002:c0a8:0101::1", False),  # 6to4 of 192.168.1.1
        ("2002:7f00:0001::1", False),  # 6to4 of 127.0.0.1
        ("2002:0808:0808::1", True),  # 6to4 of 8.8.8.8
        ("::127.0.0.1", False),  # deprecated IPv4-compatible
    ],
)
def test_guard_table_without_allowed_networks(address: str, allowed: bool) -> None:
    assert AddressGuard([]).is_allowed(ip(address)) is allowed


def test_allowed_networks_open_exactly_their_range() -> None:
    guard = AddressGuard(
        [ipaddress.ip_network("127.9.0.0/16"), ipaddress.ip_network("fd00:1::/64")]
    )
    assert guard.is_allowed(ip("127.9.3.4"))
    assert guard.is_allowed(ip("::ffff:127.9.3.4"))  # the IPv4-mapped form matches too
    assert guard.is_allowed(ip("64:ff9b::7f09:304"))  # NAT64 judged as 127.9.3.4
    assert not guard.is_allowed(ip("127.10.0.1"))
    assert not guard.is_allowed(ip("::ffff:127.10.0.1"))
    assert guard.is_allowed(ip("fd00:1::5"))
    assert not guard.is_allowed(ip("fd00:2::5"))
    assert not guard.is_allowed(ip("::1"))


def test_check_returns_the_allowed_subset_in_order() -> None:
    guard = AddressGuard([ipaddress.ip_network(ALLOWED)])
    got = guard.check("mixed.test", [ip("10.0.0.1"), ip("127.9.0.2"), ip("8.8.8.8")])
    assert got == [ip("127.9.0.2"), ip("8.8.8.8")]


def test_check_names_every_refused_address() -> None:
    guard = AddressGuard([])
    with pytest.raises(BlockedAddress) as info:
        guard.check("evil.test", [ip("10.0.0.1"), ip("::1"), ip("10.0.0.1")])
    assert info.value.addresses == ["10.0.0.1", "::1"]
    assert info.value.host == "evil.test"
    assert "10.0.0.1" in str(info.value)
    assert info.value.kind == "blocked"


def test_settings_feed_the_guard() -> None:
    settings = CheckSettings(allowed_private_networks="127.9.0.0/16, fd00::/8")
    net = Network(settings)
    assert net.guard.is_allowed(ip("127.9.1.1"))
    assert net.guard.is_allowed(ip("fd00::1"))
    assert not net.guard.is_allowed(ip("127.0.0.1"))


# -- refusal happens before any connection -------------------------------------------------


@dataclass
class Counter:
    accepts: int = 0
    servers: list[asyncio.Server] = field(default_factory=list)


async def _counting_server(host: str, counter: Counter) -> int:
    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counter.accepts += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(on_connect, host, 0)
    counter.servers.append(server)
    port: int = server.sockets[0].getsockname()[1]
    return port


@pytest.fixture
async def trap() -> AsyncIterator[tuple[Counter, int]]:
    """A server on the blocked loopback address that counts every accepted connection."""
    counter = Counter()
    port = await _counting_server(BLOCKED_IP, counter)
    yield counter, port
    for server in counter.servers:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def dns() -> AsyncIterator[DnsServer]:
    zone = Zone()
    zone.add("blocked.sandbox.test", "A", BLOCKED_IP)
    zone.add("alias.sandbox.test", "CNAME", "blocked.sandbox.test.")
    zone.add("www.sandbox.test", "A", "127.9.0.30")
    async with DnsServer(zone) as server:
        yield server


def _settings(dns: DnsServer) -> CheckSettings:
    host, port = dns.address
    return CheckSettings(dns_servers=[f"{host}:{port}"], allowed_private_networks=[ALLOWED])


async def test_the_trap_does_count_connections(trap: tuple[Counter, int], dns: DnsServer) -> None:
    # Control: with the address allowed, the same call does connect (so 0 below means refused).
    counter, port = trap
    settings = CheckSettings(
        dns_servers=[f"{dns.address[0]}:{dns.address[1]}"],
        allowed_private_networks=[ALLOWED, f"{BLOCKED_IP}/32"],
    )
    async with Network(settings, timeouts=TIMEOUTS, port_map={(BLOCKED_IP, 80): port}) as net:
        conn = await net.open_tcp("blocked.sandbox.test", 80)
        await conn.aclose()
    assert counter.accepts == 1


async def test_blocked_literal_is_never_connected(
    trap: tuple[Counter, int], dns: DnsServer
) -> None:
    counter, port = trap
    async with Network(_settings(dns), timeouts=TIMEOUTS, port_map={(BLOCKED_IP, 80): port}) as net:
        with pytest.raises(BlockedAddress) as info:
            await net.open_tcp(BLOCKED_IP, 80)
        with pytest.raises(BlockedAddress):
            await net.request("GET", f"http://{BLOCKED_IP}/")
        with pytest.raises(BlockedAddress):
            await net.open_tcp(f"::ffff:{BLOCKED_IP}", 80)
    assert info.value.addresses == [BLOCKED_IP]
    assert counter.accepts == 0
    assert dns.queries == []  # literals are not looked up


async def test_blocked_name_and_cname_are_never_connected(
    trap: tuple[Counter, int], dns: DnsServer
) -> None:
    counter, port = trap
    async with Network(_settings(dns), timeouts=TIMEOUTS, port_map={(BLOCKED_IP, 80): port}) as net:
        with pytest.raises(BlockedAddress):
            await net.open_tcp("blocked.sandbox.test", 80)
        with pytest.raises(BlockedAddress) as info:
            await net.open_tcp("alias.sandbox.test", 80)
        with pytest.raises(BlockedAddress):
            await net.request("GET", "http://alias.sandbox.test/")
    assert info.value.addresses == [BLOCKED_IP]
    assert info.value.host == "alias.sandbox.test"
    assert counter.accepts == 0


async def test_redirect_hop_to_a_blocked_address_is_never_connected(
    trap: tuple[Counter, int], dns: DnsServer
) -> None:
    counter, trap_port = trap

    async def bounce(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://alias.sandbox.test/steal")

    app = web.Application()
    app.router.add_get("/", bounce)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.9.0.30", 0)
    await site.start()
    web_port = runner.addresses[0][1]
    try:
        port_map = {(BLOCKED_IP, 80): trap_port, ("127.9.0.30", 80): web_port}
        async with Network(_settings(dns), timeouts=TIMEOUTS, port_map=port_map) as net:
            with pytest.raises(BlockedAddress) as info:
                await net.request("GET", "http://www.sandbox.test/")
            # Without following, the redirect itself is an answer.
            first = await net.request("GET", "http://www.sandbox.test/", follow_redirects=False)
    finally:
        await runner.cleanup()
    assert info.value.addresses == [BLOCKED_IP]
    assert first.status == 302
    assert first.header("Location") == "http://alias.sandbox.test/steal"
    assert counter.accepts == 0
