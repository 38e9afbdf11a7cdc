"""The sandbox's certificate authority and DNS server, checked with plain clients."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from sandbox.ca import CertKind, SandboxCA
from sandbox.dns_server import DnsFaultKind, DnsServer, Zone

# -- CA ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> SandboxCA:
    return SandboxCA()


def _load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_valid_certificate_fields(ca: SandboxCA) -> None:
    issued = ca.issue(
        ["outlook.office365.com", "*.outlook.com", "127.9.0.1"], org="Microsoft Corporation"
    )
    cert = _load(issued.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["outlook.office365.com", "*.outlook.com"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.9.0.1")]
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        "Microsoft Corporation"
    )
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "outlook.office365.com"
    )
    assert cert.issuer == _load(ca.ca_pem).subject
    now = datetime.now(UTC)
    assert issued.not_before < now - timedelta(hours=23)
    assert issued.not_after > now + timedelta(days=364)
    assert cert.not_valid_after_utc == issued.not_after
    assert issued.kind is CertKind.VALID
    assert b"PRIVATE KEY" in issued.key_pem


def test_issue_is_cached_per_arguments(ca: SandboxCA) -> None:
    first = ca.issue(["a.sandbox.test"])
    assert ca.issue(["a.sandbox.test"]) is first
    assert ca.issue(["a.sandbox.test"], org="X") is not first
    assert ca.issue(["a.sandbox.test"], kind=CertKind.EXPIRED) is not first


def test_bad_kinds(ca: SandboxCA) -> None:
    now = datetime.now(UTC)
    expired = ca.issue(["b.sandbox.test"], kind=CertKind.EXPIRED)
    future = ca.issue(["b.sandbox.test"], kind=CertKind.NOT_YET_VALID)
    wrong = ca.issue(["b.sandbox.test"], kind=CertKind.WRONG_NAME)
    rogue = ca.issue(["b.sandbox.test"], kind=CertKind.UNTRUSTED)
    assert expired.not_after < now - timedelta(days=9)
    assert future.not_before > now + timedelta(days=9)
    assert wrong.names == ("wrong-name.invalid",)
    assert _load(wrong.cert_pem).subject.rfc4514_string() == "CN=wrong-name.invalid"
    assert _load(rogue.cert_pem).issuer != _load(ca.ca_pem).subject
    assert _load(expired.cert_pem).issuer == _load(ca.ca_pem).subject


def test_bundle_and_server_context_make_a_working_handshake(ca: SandboxCA, tmp_path: Path) -> None:
    bundle = ca.write_bundle(tmp_path / "ca.pem")
    assert bundle.read_bytes() == ca.ca_pem
    server_ctx = ca.issue(["h.sandbox.test"]).server_context()
    client_ctx = ssl.create_default_context(cafile=str(bundle))
    left, right = socket.socketpair()
    with left, right:
        left.setblocking(False)
        right.setblocking(False)
        client = client_ctx.wrap_socket(
            left, server_hostname="h.sandbox.test", do_handshake_on_connect=False
        )
        server = server_ctx.wrap_socket(right, server_side=True, do_handshake_on_connect=False)
        done: set[str] = set()
        for _ in range(100):  # drive both ends of the handshake in memory
            for name, end in (("client", client), ("server", server)):
                if name in done:
                    continue
                try:
                    end.do_handshake()
                    done.add(name)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
            if len(done) == 2:
                break
        assert done == {"client", "server"}
        peer = client.getpeercert()
        assert peer is not None and peer["subjectAltName"] == (("DNS", "h.sandbox.test"),)


def test_signing_certificate(ca: SandboxCA) -> None:
    start = datetime(2020, 1, 1, tzinfo=UTC)
    der = ca.signing_certificate(
        "ADFS Signing - sts.contoso.test", not_before=start, not_after=start + timedelta(days=365)
    )
    cert = x509.load_der_x509_certificate(der)
    assert cert.subject == cert.issuer
    assert cert.subject.rfc4514_string() == "CN=ADFS Signing - sts.contoso.test"
    assert cert.not_valid_after_utc == start + timedelta(days=365)


# -- DNS server --------------------------------------------------------------------------


def zone() -> Zone:
    z = Zone()
    z.add("Contoso.Test", "MX", "10 mx.contoso.test.")
    z.add("contoso.test", "SOA", "ns1.contoso.test. admin.contoso.test. 7 3600 600 86400 60")
    z.add("www.contoso.test", "A", "127.9.0.10", ttl=60)
    z.add("alias.contoso.test", "CNAME", "www.contoso.test.")
    z.add("deep.sub.contoso.test", "TXT", '"deep"')
    for i in range(30):
        z.add("big.contoso.test", "TXT", f'"{i:02d}-' + "y" * 30 + '"')
    z.fault("sf.contoso.test", DnsFaultKind.SERVFAIL)
    z.fault("nx.contoso.test", DnsFaultKind.NXDOMAIN)
    z.fault("ref.contoso.test", DnsFaultKind.REFUSED)
    z.fault("quiet.contoso.test", DnsFaultKind.SILENT)
    z.fault("junk.contoso.test", DnsFaultKind.GARBAGE)
    z.add("tc.contoso.test", "A", "127.9.0.11")
    z.fault("tc.contoso.test", DnsFaultKind.TRUNCATE)
    z.add("half.contoso.test", "A", "127.9.0.12")
    z.fault("half.contoso.test", DnsFaultKind.SERVFAIL, "AAAA")
    return z


async def _udp(server: DnsServer, name: str, rdtype: str, **kw: object) -> dns.message.Message:
    host, port = server.address
    query = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    return await dns.asyncquery.udp(query, host, port=port, timeout=1.0)


async def _tcp(server: DnsServer, name: str, rdtype: str) -> dns.message.Message:
    host, port = server.address
    return await dns.asyncquery.tcp(
        dns.message.make_query(name, rdtype), host, port=port, timeout=1.0
    )


async def test_answers_over_udp_and_tcp_on_one_port() -> None:
    async with DnsServer(zone()) as server:
        udp = await _udp(server, "WWW.contoso.TEST", "A")
        tcp = await _tcp(server, "www.contoso.test", "A")
    for reply in (udp, tcp):
        assert reply.rcode() == dns.rcode.NOERROR
        assert [rd.address for rd in reply.answer[0]] == ["127.9.0.10"]
        assert reply.answer[0].ttl == 60
        assert reply.flags & dns.flags.RA
    assert server.queries == [("udp", "www.contoso.test", "A"), ("tcp", "www.contoso.test", "A")]


async def test_nxdomain_nodata_and_empty_non_terminals() -> None:
    async with DnsServer(zone()) as server:
        nx = await _udp(server, "nope.contoso.test", "A")
        nodata = await _udp(server, "www.contoso.test", "MX")
        ent = await _udp(server, "sub.contoso.test", "A")
        outside = await _udp(server, "nothing.example", "A")
    assert nx.rcode() == dns.rcode.NXDOMAIN
    assert nx.authority[0].rdtype == dns.rdatatype.SOA
    assert nx.authority[0].name.to_text() == "contoso.test."  # the zone's own SOA
    assert nodata.rcode() == dns.rcode.NOERROR and nodata.answer == []
    assert nodata.authority[0].rdtype == dns.rdatatype.SOA
    assert ent.rcode() == dns.rcode.NOERROR and ent.answer == []
    assert outside.rcode() == dns.rcode.NXDOMAIN
    assert outside.authority[0].rdtype == dns.rdatatype.SOA


async def test_cname_chain_is_returned_whole() -> None:
    async with DnsServer(zone()) as server:
        reply = await _udp(server, "alias.contoso.test", "A")
    types = [rrset.rdtype for rrset in reply.answer]
    assert types == [dns.rdatatype.CNAME, dns.rdatatype.A]
    assert isinstance(reply, dns.message.QueryMessage)
    assert reply.resolve_chaining().canonical_name.to_text() == "www.contoso.test."


@pytest.mark.parametrize(
    ("name", "rcode"),
    [
        ("sf.contoso.test", dns.rcode.SERVFAIL),
        ("nx.contoso.test", dns.rcode.NXDOMAIN),
        ("ref.contoso.test", dns.rcode.REFUSED),
    ],
)
async def test_rcode_faults(name: str, rcode: dns.rcode.Rcode) -> None:
    async with DnsServer(zone()) as server:
        reply = await _udp(server, name, "A")
    assert reply.rcode() == rcode


async def test_fault_per_type() -> None:
    async with DnsServer(zone()) as server:
        a = await _udp(server, "half.contoso.test", "A")
        aaaa = await _udp(server, "half.contoso.test", "AAAA")
    assert a.rcode() == dns.rcode.NOERROR and len(a.answer) == 1
    assert aaaa.rcode() == dns.rcode.SERVFAIL


async def test_silent_and_garbage() -> None:
    async with DnsServer(zone()) as server:
        with pytest.raises(dns.exception.Timeout):
            host, port = server.address
            await dns.asyncquery.udp(
                dns.message.make_query("quiet.contoso.test", "A"), host, port=port, timeout=0.3
            )
        with pytest.raises(dns.exception.FormError):
            await _udp(server, "junk.contoso.test", "A")
        with pytest.raises(dns.exception.FormError):
            await _tcp(server, "junk.contoso.test", "A")
        # and it still answers afterwards
        assert (await _udp(server, "www.contoso.test", "A")).rcode() == dns.rcode.NOERROR


async def test_truncation_over_udp_then_tcp() -> None:
    async with DnsServer(zone()) as server:
        plain = await _udp(server, "big.contoso.test", "TXT")  # no EDNS: 512 bytes
        edns = await _udp(server, "big.contoso.test", "TXT", use_edns=0, payload=4096)
        forced = await _udp(server, "tc.contoso.test", "A", use_edns=0, payload=4096)
        over_tcp = await _tcp(server, "tc.contoso.test", "A")
    assert plain.flags & dns.flags.TC and plain.answer == []
    assert not edns.flags & dns.flags.TC and len(edns.answer[0]) == 30
    assert forced.flags & dns.flags.TC
    assert not over_tcp.flags & dns.flags.TC and len(over_tcp.answer) == 1


async def test_garbage_queries_do_not_hurt_the_server() -> None:
    async with DnsServer(zone()) as server:
        host, port = server.address
        loop = asyncio.get_running_loop()
        replies: asyncio.Queue[bytes] = asyncio.Queue()

        class Collect(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                replies.put_nowait(data)

        transport, _ = await loop.create_datagram_endpoint(Collect, remote_addr=(host, port))
        try:
            transport.sendto(b"\x12\x34" + b"\xff" * 30)  # unparseable, but has an id
            formerr = await asyncio.wait_for(replies.get(), 1.0)
            transport.sendto(b"\x01")  # too short for anything
        finally:
            transport.close()
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"\x00\x05hello")  # garbage over TCP gets a FORMERR too
        await writer.drain()
        length = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), 1.0), "big")
        tcp_formerr = await asyncio.wait_for(reader.readexactly(length), 1.0)
        writer.close()
        await writer.wait_closed()
        good = await _udp(server, "www.contoso.test", "A")
    assert formerr[:2] == b"\x12\x34" and formerr[3] & 0x0F == dns.rcode.FORMERR
    assert tcp_formerr[:2] == b"he" and tcp_formerr[3] & 0x0F == dns.rcode.FORMERR
    assert good.rcode() == dns.rcode.NOERROR
    assert server.queries == [("udp", "www.contoso.test", "A")]


async def test_latency_delays_each_answer() -> None:
    async with DnsServer(zone(), latency_ms=150) as server:
        started = time.monotonic()
        replies = await asyncio.gather(
            _udp(server, "www.contoso.test", "A"), _udp(server, "contoso.test", "MX")
        )
        elapsed = time.monotonic() - started
    assert all(r.rcode() == dns.rcode.NOERROR for r in replies)
    assert 0.15 <= elapsed < 0.6  # concurrent, not serialised


async def test_restart_and_ipv6() -> None:
    server = DnsServer(zone())
    with pytest.raises(RuntimeError):
        _ = server.address
    await server.start()
    first = server.address
    await server.stop()
    assert first[0] == "127.0.0.1" and first[1] > 0
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    async with DnsServer(zone(), host="::1") as v6:
        reply = await _tcp(v6, "www.contoso.test", "A")
    assert reply.rcode() == dns.rcode.NOERROR


async def test_a_question_asked_again_is_answered_from_the_cache_until_the_zone_changes() -> None:
    z = zone()
    async with DnsServer(z) as server:
        first = await _udp(server, "www.contoso.test", "A")
        again = await _udp(server, "www.contoso.test", "A")
        z.add("www.contoso.test", "A", "127.9.0.99")
        changed = await _udp(server, "www.contoso.test", "A")
    # dns.asyncquery.udp accepts only a reply carrying its own query's id: each got its own.
    assert [r.to_text() for r in again.answer] == [r.to_text() for r in first.answer]
    assert len(changed.answer[0]) == len(first.answer[0]) + 1
    assert server.queries[-3:] == [("udp", "www.contoso.test", "A")] * 3  # all three seen
