"""The seam's DNS: real queries over UDP and TCP to the sandbox DNS server on loopback."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from checks.net.errors import BlockedAddress, DnsError
from checks.net.resolver import _read_reply, _Unusual
from checks.net.seam import Network, Timeouts
from checks.settings import CheckSettings
from sandbox.dns_server import DnsFaultKind, DnsServer, Zone

FAST = Timeouts(dns=0.5, connect=1.0, read=1.0, total=3.0)


def contoso() -> Zone:
    zone = Zone()
    zone.add("contoso.test", "MX", "10 contoso-test.mail.protection.outlook.com.")
    zone.add("contoso.test", "MX", "20 backup.contoso.test.")
    zone.add("contoso.test", "TXT", '"v=spf1 include:spf.protection.outlook.com" " -all"')
    zone.add("contoso.test", "TXT", '"google-site-verification=abc"')
    zone.add("www.contoso.test", "A", "127.9.0.10")
    zone.add("www.contoso.test", "A", "127.9.0.11")
    zone.add("www.contoso.test", "AAAA", "::1")
    zone.add("v4only.contoso.test", "A", "127.9.0.12")
    zone.add("autodiscover.contoso.test", "CNAME", "autodiscover.outlook.test.")
    zone.add("autodiscover.outlook.test", "CNAME", "autod.ms-acdc.office.test.")
    zone.add("autod.ms-acdc.office.test", "A", "127.9.0.20")
    zone.add("_autodiscover._tcp.contoso.test", "SRV", "0 5 443 mail.contoso.test.")
    zone.add("dangling.contoso.test", "CNAME", "gone.contoso.test.")
    zone.add("loop1.contoso.test", "CNAME", "loop2.contoso.test.")
    zone.add("loop2.contoso.test", "CNAME", "loop1.contoso.test.")
    zone.add("textonly.contoso.test", "TXT", '"hello"')
    zone.add("private.contoso.test", "A", "10.1.2.3")
    for i in range(40):  # more than fits 512 bytes or the EDNS payload: TC, then TCP
        zone.add("big.contoso.test", "TXT", f'"{i:02d}-' + "x" * 40 + '"')
    zone.fault("broken.contoso.test", DnsFaultKind.SERVFAIL)
    zone.fault("refused.contoso.test", DnsFaultKind.REFUSED)
    zone.fault("silent.contoso.test", DnsFaultKind.SILENT)
    zone.fault("garbage.contoso.test", DnsFaultKind.GARBAGE)
    zone.fault("tcponly.contoso.test", DnsFaultKind.TRUNCATE)
    zone.add("tcponly.contoso.test", "A", "127.9.0.13")
    zone.add("slow6.contoso.test", "A", "127.9.0.14")
    zone.fault("slow6.contoso.test", DnsFaultKind.SILENT, "AAAA")
    return zone


@pytest.fixture
async def server() -> AsyncIterator[DnsServer]:
    async with DnsServer(contoso()) as dns:
        yield dns


def settings_for(*servers: DnsServer, allowed: str = "127.9.0.0/16") -> CheckSettings:
    entries = []
    for s in servers:
        host, port = s.address
        entries.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return CheckSettings(dns_servers=entries, allowed_private_networks=[allowed, "::1/128"])


@pytest.fixture
async def net(server: DnsServer) -> AsyncIterator[Network]:
    async with Network(settings_for(server), timeouts=FAST) as network:
        yield network


async def test_a_and_aaaa(net: Network, server: DnsServer) -> None:
    a = await net.query("www.contoso.test", "A")
    aaaa = await net.query("WWW.Contoso.Test.", "AAAA")
    assert a.exists and sorted(a.records) == ["127.9.0.10", "127.9.0.11"]
    assert a.ttl == 300
    assert aaaa.records == ["::1"]
    assert aaaa.name == "www.contoso.test"
    assert server.address[1] != 53  # a non-53 port works
    assert ("udp", "www.contoso.test", "A") in server.queries


async def test_mx_txt_srv_presentation(net: Network) -> None:
    mx = await net.query("contoso.test", "MX")
    txt = await net.query("contoso.test", "TXT")
    srv = await net.query("_autodiscover._tcp.contoso.test", "SRV")
    assert sorted(mx.records) == [
        "10 contoso-test.mail.protection.outlook.com.",
        "20 backup.contoso.test.",
    ]
    # strings of one TXT record are joined; quotes are gone
    assert sorted(txt.records) == [
        "google-site-verification=abc",
        "v=spf1 include:spf.protection.outlook.com -all",
    ]
    assert srv.records == ["0 5 443 mail.contoso.test."]


async def test_cname_chain_in_one_answer(net: Network, server: DnsServer) -> None:
    answer = await net.query("autodiscover.contoso.test", "A")
    assert answer.records == ["127.9.0.20"]
    assert answer.cname_chain == ["autodiscover.outlook.test", "autod.ms-acdc.office.test"]
    assert len(server.queries) == 1
    cname = await net.query("autodiscover.contoso.test", "CNAME")
    assert cname.records == ["autodiscover.outlook.test."]
    assert cname.cname_chain == []


async def test_cname_only_answers_are_followed_by_asking_again() -> None:
    zone = contoso()
    zone.follow_cnames = False  # an authoritative-style server: only the alias comes back
    async with DnsServer(zone) as dns, Network(settings_for(dns), timeouts=FAST) as net:
        answer = await net.query("autodiscover.contoso.test", "A")
        ips = await net.resolve("autodiscover.contoso.test")
    assert answer.records == ["127.9.0.20"]
    assert answer.cname_chain == ["autodiscover.outlook.test", "autod.ms-acdc.office.test"]
    asked = [name for _, name, rdtype in dns.queries if rdtype == "A"]
    assert asked == [
        "autodiscover.contoso.test",
        "autodiscover.outlook.test",
        "autod.ms-acdc.office.test",
    ]
    assert ips == [ipaddress.ip_address("127.9.0.20")]


class _AliasWithSoa(DnsServer):
    """An authoritative server for contoso.test only: an alias comes back alone, with the SOA
    of the zone it is in (what a minimal authoritative server sends), never chased."""

    def _resolve(
        self,
        response: dns.message.Message,
        qname: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
    ) -> DnsFaultKind | None:
        fault = super()._resolve(response, qname, rdtype)
        aliases_only = all(rrs.rdtype == dns.rdatatype.CNAME for rrs in response.answer)
        if response.answer and aliases_only and not response.authority:
            self._add_soa(response, qname)
        return fault


async def test_an_alias_into_another_zone_is_asked_again_despite_the_soa() -> None:
    zone = contoso()
    zone.follow_cnames = False
    zone.add(
        "contoso.test", "SOA", "ns1.contoso.test. hostmaster.contoso.test. 1 3600 600 86400 300"
    )
    zone.add("alias.contoso.test", "CNAME", "textonly.contoso.test.")
    async with _AliasWithSoa(zone) as server, Network(settings_for(server), timeouts=FAST) as net:
        answer = await net.query("autodiscover.contoso.test", "A")
        ips = await net.resolve("autodiscover.contoso.test")
        server.queries.clear()
        # ... but the SOA of the zone the final name is in does prove "no data" there.
        nodata = await net.query("alias.contoso.test", "A")
    assert answer.records == ["127.9.0.20"]
    assert answer.cname_chain == ["autodiscover.outlook.test", "autod.ms-acdc.office.test"]
    assert ips == [ipaddress.ip_address("127.9.0.20")]
    assert (
        nodata.exists and nodata.records == [] and nodata.cname_chain == ["textonly.contoso.test"]
    )
    assert server.queries == [("udp", "alias.contoso.test", "A")]


async def test_no_data_at_the_end_of_a_chain_is_not_asked_again(server: DnsServer) -> None:
    # A recursive-style answer: the whole chain, then NOERROR/no data with the SOA of the
    # target's zone. One query, no re-ask.
    server.zone.add("alias.contoso.test", "CNAME", "textonly.contoso.test.")
    server.zone.add("away.contoso.test", "CNAME", "txt.elsewhere.test.")
    server.zone.add("txt.elsewhere.test", "TXT", '"hello"')
    async with Network(settings_for(server), timeouts=FAST) as net:
        inside = await net.query("alias.contoso.test", "A")
        away = await net.query("away.contoso.test", "A")
    assert inside.records == [] and inside.cname_chain == ["textonly.contoso.test"]
    assert away.records == [] and away.cname_chain == ["txt.elsewhere.test"]
    assert [q for q in server.queries if q[2] == "A"] == [
        ("udp", "alias.contoso.test", "A"),
        ("udp", "away.contoso.test", "A"),
    ]


async def test_cname_loop_is_an_error_not_a_hang() -> None:
    zone = contoso()
    zone.follow_cnames = False
    async with DnsServer(zone) as dns, Network(settings_for(dns), timeouts=FAST) as net:
        with pytest.raises(DnsError) as info:
            await net.query("loop1.contoso.test", "A")
    assert info.value.reason == "malformed"
    assert len(dns.queries) <= 9


async def test_nxdomain_and_nodata_are_answers(net: Network) -> None:
    missing = await net.query("nope.contoso.test", "A")
    nodata = await net.query("textonly.contoso.test", "MX")
    dangling = await net.query("dangling.contoso.test", "A")
    assert missing.rcode == "NXDOMAIN" and not missing.exists and missing.records == []
    assert nodata.rcode == "NOERROR" and nodata.exists and nodata.records == []
    assert dangling.rcode == "NXDOMAIN"
    assert dangling.cname_chain == ["gone.contoso.test"]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("broken.contoso.test", "servfail"),
        ("refused.contoso.test", "refused"),
        ("garbage.contoso.test", "malformed"),
        ("silent.contoso.test", "timeout"),
    ],
)
async def test_failures_raise_dns_error(net: Network, name: str, reason: str) -> None:
    started = time.monotonic()
    with pytest.raises(DnsError) as info:
        await net.query(name, "A")
    assert info.value.reason == reason
    assert info.value.name == name
    assert info.value.kind == "dns"
    assert time.monotonic() - started < FAST.dns * 2 + 0.5  # bounded, even when silent


async def test_truncation_falls_back_to_tcp(net: Network, server: DnsServer) -> None:
    big = await net.query("big.contoso.test", "TXT")
    forced = await net.query("tcponly.contoso.test", "A")
    assert len(big.records) == 40
    assert forced.records == ["127.9.0.13"]
    assert ("udp", "big.contoso.test", "TXT") in server.queries
    assert ("tcp", "big.contoso.test", "TXT") in server.queries
    assert ("tcp", "tcponly.contoso.test", "A") in server.queries


async def test_a_closed_server_port_fails_fast() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    slow = Timeouts(dns=3.0, connect=1.0, read=1.0, total=5.0)
    settings = CheckSettings(dns_servers=[f"127.0.0.1:{port}"])
    async with Network(settings, timeouts=slow) as net:
        started = time.monotonic()
        with pytest.raises(DnsError) as info:
            await net.query("www.contoso.test", "A")
    assert info.value.reason == "timeout"  # no answer from that server
    assert time.monotonic() - started < 1.0  # the ICMP "port unreachable", not the 3 s wait


async def test_second_server_answers_when_the_first_refuses() -> None:
    bad = Zone()
    bad.fault("www.contoso.test", DnsFaultKind.REFUSED)
    async with (
        DnsServer(bad) as first,
        DnsServer(contoso()) as second,
        Network(settings_for(first, second), timeouts=FAST) as net,
    ):
        answer = await net.query("www.contoso.test", "A")
    assert len(answer.records) == 2
    assert len(first.queries) == 1 and len(second.queries) == 1


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
async def test_ipv6_dns_server() -> None:
    async with (
        DnsServer(contoso(), host="::1") as dns,
        Network(settings_for(dns), timeouts=FAST) as net,
    ):
        answer = await net.query("www.contoso.test", "A")
    assert len(answer.records) == 2
    assert dns.address[0] == "::1"


async def test_cache_dedupes_concurrent_identical_queries(net: Network, server: DnsServer) -> None:
    answers = await asyncio.gather(*(net.query("contoso.test", "MX") for _ in range(5)))
    again = await net.query("CONTOSO.test.", "MX")
    assert all(a == answers[0] for a in answers) and again == answers[0]
    assert server.queries.count(("udp", "contoso.test", "MX")) == 1


async def test_failures_are_not_cached(server: DnsServer) -> None:
    zone = contoso()
    async with DnsServer(zone) as dns, Network(settings_for(dns), timeouts=FAST) as net:
        zone.fault("later.contoso.test", DnsFaultKind.SERVFAIL)
        with pytest.raises(DnsError):
            await net.query("later.contoso.test", "A")
        zone.add("fixed.contoso.test", "A", "127.9.0.99")
        zone.fault("fixed.contoso.test", DnsFaultKind.SERVFAIL)
        with pytest.raises(DnsError):
            await net.query("fixed.contoso.test", "A")
        zone.fault("fixed.contoso.test", DnsFaultKind.TRUNCATE)  # replace the fault
        answer = await net.query("fixed.contoso.test", "A")
    assert answer.records == ["127.9.0.99"]


# -- resolve(): A + AAAA, guarded --------------------------------------------------------


async def test_resolve_returns_a_then_aaaa(net: Network) -> None:
    ips = await net.resolve("www.contoso.test")
    assert sorted(map(str, ips[:2])) == ["127.9.0.10", "127.9.0.11"]  # RRset order is free
    assert ips[2:] == [ipaddress.ip_address("::1")]


async def test_resolve_ip_literal_passes_straight_through(net: Network, server: DnsServer) -> None:
    assert await net.resolve("127.9.0.5") == [ipaddress.ip_address("127.9.0.5")]
    assert await net.resolve("[::1]") == [ipaddress.ip_address("::1")]
    assert server.queries == []


async def test_resolve_reasons(net: Network) -> None:
    with pytest.raises(DnsError) as missing:
        await net.resolve("nope.contoso.test")
    with pytest.raises(DnsError) as nodata:
        await net.resolve("textonly.contoso.test")
    with pytest.raises(DnsError) as broken:
        await net.resolve("broken.contoso.test")
    with pytest.raises(BlockedAddress) as private:
        await net.resolve("private.contoso.test")
    assert missing.value.reason == "nxdomain"
    assert nodata.value.reason == "nodata"
    assert broken.value.reason == "servfail"
    assert private.value.addresses == ["10.1.2.3"]


async def test_silent_aaaa_does_not_hold_up_a_good_a(server: DnsServer) -> None:
    slow = Timeouts(dns=3.0, connect=1.0, read=1.0, total=5.0)
    async with Network(settings_for(server), timeouts=slow) as net:
        started = time.monotonic()
        ips = await net.resolve("slow6.contoso.test")
        elapsed = time.monotonic() - started
    assert ips == [ipaddress.ip_address("127.9.0.14")]
    assert elapsed < 0.8  # ~250 ms grace, not the 3 s DNS timeout


async def test_system_resolver_is_not_used_when_servers_are_set(server: DnsServer) -> None:
    # "localhost" would resolve from /etc/hosts or the system resolver; ours says NXDOMAIN.
    async with Network(settings_for(server), timeouts=FAST) as net:
        answer = await net.query("localhost", "A")
    assert answer.rcode == "NXDOMAIN"
    assert ("udp", "localhost", "A") in server.queries


async def test_invalid_names_do_not_exist(net: Network, server: DnsServer) -> None:
    answer = await net.query("a" * 64 + ".contoso.test", "A")
    assert answer.rcode == "NXDOMAIN"
    assert server.queries == []


# -- the fast reader of A/AAAA replies: it agrees with dnspython or declines ---------------------


def _reply(qname: str, rdtype: str, *answers: str, authority: str = "") -> tuple[bytes, int]:
    query = dns.message.make_query(qname, rdtype, use_edns=0, payload=1232)
    response = dns.message.make_response(query)
    for line in answers:
        response.answer.append(_rrset(line))
    if authority:
        response.authority.append(_rrset(authority))
    return response.to_wire(), query.id


def _rrset(line: str) -> dns.rrset.RRset:
    name, ttl, rdtype, text = line.split(maxsplit=3)
    return dns.rrset.from_text(name, int(ttl), "IN", rdtype, text)


def _asked(name: str) -> tuple[bytes, ...]:
    return tuple(label.lower() for label in dns.name.from_text(name).labels[:-1])


def test_fast_reader_agrees_with_dnspython() -> None:
    wire, qid = _reply(
        "Auto.Contoso.test.",
        "A",
        "auto.contoso.test. 300 CNAME Edge.Example.test.",
        "edge.example.test. 60 A 127.0.0.7",
        "edge.example.test. 90 A 127.0.0.8",
        "edge.example.test. 90 A 127.0.0.7",
    )
    rcode, records, ttl, cnames, canonical, soa = _read_reply(
        wire, qid, _asked("auto.contoso.test."), dns.rdatatype.A
    )
    message = dns.message.from_wire(wire)
    assert isinstance(message, dns.message.QueryMessage)
    chaining = message.resolve_chaining()
    assert chaining.answer is not None
    assert records == [rd.address for rd in chaining.answer] == ["127.0.0.7", "127.0.0.8"]
    assert ttl == chaining.answer.ttl == 60
    assert (
        [b".".join(c).decode() for c in cnames]
        == [c[0].target.to_text(omit_final_dot=True) for c in chaining.cnames]
        == ["Edge.Example.test"]
    )
    assert rcode == "NOERROR" and canonical == _asked("edge.example.test.") and not soa


def test_fast_reader_no_data_and_nxdomain() -> None:
    soa = "contoso.test. 60 SOA ns.contoso.test. admin.contoso.test. 1 60 60 60 60"
    wire, qid = _reply("www.contoso.test.", "AAAA", authority=soa)
    read = _read_reply(wire, qid, _asked("www.contoso.test."), dns.rdatatype.AAAA)
    assert read == ("NOERROR", [], None, [], _asked("www.contoso.test."), True)
    # An alias into a zone this server's SOA does not cover proves nothing about the target.
    wire, qid = _reply(
        "a.contoso.test.", "A", "a.contoso.test. 60 CNAME b.other.test.", authority=soa
    )
    rcode, records, _, _, canonical, proof = _read_reply(
        wire, qid, _asked("a.contoso.test."), dns.rdatatype.A
    )
    assert (rcode, records, canonical, proof) == ("NOERROR", [], _asked("b.other.test."), False)
    message = dns.message.make_response(dns.message.make_query("gone.contoso.test.", "A"))
    message.set_rcode(dns.rcode.NXDOMAIN)
    read = _read_reply(message.to_wire(), message.id, _asked("gone.contoso.test."), dns.rdatatype.A)
    assert read[0] == "NXDOMAIN" and read[1] == []


def _header(wire: bytes, *, flags: int | None = None, qid: int | None = None) -> bytes:
    old_id, old_flags = struct.unpack_from("!HH", wire)
    new = struct.pack("!HH", old_id if qid is None else qid, old_flags if flags is None else flags)
    return new + wire[4:]


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda w: w + b"\x00", id="trailing-byte"),
        pytest.param(lambda w: w[:-3], id="cut-short"),
        pytest.param(
            lambda w: _header(w, qid=(struct.unpack_from("!H", w)[0] + 1) % 65536), id="other-id"
        ),
        pytest.param(
            lambda w: _header(w, flags=struct.unpack_from("!H", w, 2)[0] | 0x0200), id="truncated"
        ),
        pytest.param(
            lambda w: _header(w, flags=(struct.unpack_from("!H", w, 2)[0] & ~0xF) | 2),
            id="servfail",
        ),
        pytest.param(
            lambda w: _header(w, flags=struct.unpack_from("!H", w, 2)[0] & 0x7FFF),
            id="not-a-response",
        ),
        # The answer's owner: a pointer to itself (a loop), then a pointer forward.
        pytest.param(
            lambda w: w.replace(b"\xc0\x0c", b"\xc0" + bytes([w.index(b"\xc0\x0c") & 0xFF]), 1),
            id="pointer-loop",
        ),
        pytest.param(lambda w: w.replace(b"\xc0\x0c", b"\xc0\xff", 1), id="pointer-forward"),
    ],
)
def test_fast_reader_declines_what_it_does_not_read(mangle: Callable[[bytes], bytes]) -> None:
    wire, qid = _reply("www.contoso.test.", "A", "www.contoso.test. 60 A 127.0.0.9")
    assert _read_reply(wire, qid, _asked("www.contoso.test."), 1)[1] == ["127.0.0.9"]
    with pytest.raises(_Unusual):
        _read_reply(mangle(wire), qid, _asked("www.contoso.test."), dns.rdatatype.A)


def test_fast_reader_declines_other_records_and_escaped_names() -> None:
    wire, qid = _reply("www.contoso.test.", "A", "www.contoso.test. 60 TXT hello")
    with pytest.raises(_Unusual):
        _read_reply(wire, qid, _asked("www.contoso.test."), dns.rdatatype.A)
    wire, qid = _reply("www.contoso.test.", "A", r"www.contoso.test. 60 CNAME odd\032name.test.")
    with pytest.raises(_Unusual):  # dnspython would present it escaped; it decides
        _read_reply(wire, qid, _asked("www.contoso.test."), dns.rdatatype.A)
