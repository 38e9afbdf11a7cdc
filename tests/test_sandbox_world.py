"""The sandbox world, proved with raw clients: DNS answers, certificates, ports, latency, faults,
the mail protocols, concurrency and a clean stop. No mocks: real sockets on the world's own
loopback block, asyncio streams + ssl with the world's CA, dnspython against its DNS server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from checks.models import Client, Status
from checks.settings import Cloud
from sandbox.catalogue import CATALOGUE, get
from sandbox.scenario import (
    CAUSE_IDS,
    CHECK_IDS,
    Fault,
    Scenario,
    a_label,
    change,
    microsoft_hosts,
)
from sandbox.world import World, WorldError, _prefix

OUTLOOK = "outlook.office365.com"
SMTP_HOST = "smtp.office365.com"


# ---- helpers -------------------------------------------------------------------------------


async def ask(world: World, name: str, rdtype: str, *, tcp: bool = False) -> dns.message.Message:
    ip, port = world.dns_address
    query = dns.message.make_query(a_label(name), rdtype)
    if tcp:
        return await dns.asyncquery.tcp(query, ip, port=port, timeout=2)
    return await dns.asyncquery.udp(query, ip, port=port, timeout=2)


def answers(message: dns.message.Message, rdtype: str) -> list[str]:
    wanted = dns.rdatatype.from_text(rdtype)
    return [rd.to_text() for rrset in message.answer if rrset.rdtype == wanted for rd in rrset]


def client_tls(world: World) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(world.ca_path))


async def open_tls(
    world: World, host: str, port: int, *, verify: bool = True
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    ctx = client_tls(world)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return await asyncio.wait_for(
        asyncio.open_connection(
            world.ip_of(host), world.port_of(host, port), ssl=ctx, server_hostname=a_label(host)
        ),
        5,
    )


async def peer_cert(world: World, host: str, port: int = 443) -> x509.Certificate:
    _reader, writer = await open_tls(world, host, port, verify=False)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    return x509.load_der_x509_certificate(der)


async def verify_error(world: World, host: str, port: int = 443) -> ssl.SSLCertVerificationError:
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        await open_tls(world, host, port)
    return info.value


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await writer.wait_closed()


async def line(reader: asyncio.StreamReader) -> str:
    return (await asyncio.wait_for(reader.readline(), 5)).decode()


async def lines_until(reader: asyncio.StreamReader, last: re.Pattern[str]) -> list[str]:
    out = []
    while True:
        text = await line(reader)
        assert text, f"connection closed after {out}"
        out.append(text.rstrip("\r\n"))
        if last.match(out[-1]):
            return out


@pytest.fixture
async def healthy() -> AsyncIterator[World]:
    async with World(get("healthy")) as world:
        yield world


# ---- the catalogue -------------------------------------------------------------------------


def test_catalogue_covers_the_required_worlds() -> None:
    required = {
        "healthy",
        "autodiscover-cname-missing",
        "autodiscover-cname-stale",
        "autodiscover-root-hijack",
        "root-blackhole",
        "autodiscover-cert-expired",
        "domain-not-in-m365",
        "domain-not-found",
        "mx-third-party",
        "spf-duplicate",
        "federated-healthy",
        "adfs-metadata-503",
        "adfs-tls-expired",
        "adfs-token-signing-expired",
        "adfs-token-signing-expiring",
        "hybrid-onprem-mailbox",
        "imap-blocked",
        "pop-blocked",
        "smtp-starttls-stripped",
        "tls-inspection",
        "exo-https-blackhole",
        "activesync-503",
        "dns-servfail",
        "dns-silent",
        "autodiscover-v2-garbage",
        "gcchigh-healthy",
        "idn-healthy",
    }
    assert required <= set(CATALOGUE)
    assert len(CATALOGUE) >= 24
    for sid, sc in CATALOGUE.items():
        assert sc.id == sid and sc.expect, sid
        for exp in sc.expect:
            assert set(exp.statuses) <= CHECK_IDS and exp.top_cause in CAUSE_IDS
    with pytest.raises(KeyError, match="known: "):
        get("no-such-world")


def test_catalogue_expectations_follow_the_design() -> None:
    # The normal Office 365 path passes autodiscover.v1 via the HTTP redirect (DESIGN.md).
    outlook = get("healthy").expectation(Client.OUTLOOK)
    assert outlook is not None and outlook.statuses["autodiscover.v1"] is Status.PASS
    assert outlook.top_cause == "device-or-app"
    # A warning alone on MX leaves the device on top; two SPF records fail but are not top.
    mx = get("mx-third-party").expectation(Client.OUTLOOK)
    assert mx is not None and mx.statuses["dns.mx"] is Status.WARN
    assert mx.top_cause == "device-or-app"
    spf = get("spf-duplicate").expectation(Client.OUTLOOK)
    assert spf is not None and spf.statuses["dns.spf"] is Status.FAIL
    assert spf.top_cause == "device-or-app"


def test_microsoft_certificates_never_carry_the_customer_name() -> None:
    for sc in CATALOGUE.values():
        ms_names = {"outlook.office365.com", "login.microsoftonline.com"}
        for host in sc.hosts:
            if host.cert is None or host.cert.organization != "Microsoft Corporation":
                continue
            ms_names |= set(host.names)
            for name in host.cert.names:
                assert sc.domain_idna not in name, (sc.id, host.name, name)


def test_builders_are_short_and_strict() -> None:
    hosts = microsoft_hosts(exo_imap={"fault": Fault.REFUSED})
    exo = next(h for h in hosts if h.name == OUTLOOK)
    imap = exo.listener(993)
    assert imap is not None and imap.fault is Fault.REFUSED
    assert {lst.port for lst in exo.listeners} == {443, 993, 995}
    changed = change(hosts, "smtp.office365.com:587", mail={"starttls_offered": False})
    smtp = next(h for h in changed if h.name == SMTP_HOST).listener(587)
    assert smtp is not None and smtp.mail is not None and not smtp.mail.starttls_offered
    with pytest.raises(ValueError, match="unknown Microsoft host roles"):
        microsoft_hosts(exchange={"fault": Fault.REFUSED})
    with pytest.raises(KeyError):
        change(hosts, "nowhere.example:443", fault=Fault.REFUSED)


def test_a_world_never_lives_on_127_0_0() -> None:
    assert _prefix("127.150.160.0/24") == "127.150.160"
    assert _prefix("127.150.160") == "127.150.160"
    with pytest.raises(WorldError):
        _prefix("127.0.0.0/24")
    with pytest.raises(WorldError):
        _prefix("10.1.2.0/24")


# ---- DNS -----------------------------------------------------------------------------------


async def test_names_resolve_to_the_host_addresses(healthy: World) -> None:
    world = healthy
    net = ipaddress.ip_network(world.network_cidr)
    assert net != ipaddress.ip_network("127.0.0.0/24")
    a, b = (int(x) for x in world.prefix.split(".")[1:3])
    assert 100 <= a <= 254 and 100 <= b <= 254
    assert world.dns_address == (f"{world.prefix}.53", 53)

    reply = await ask(world, OUTLOOK, "A")
    assert answers(reply, "A") == [world.ip_of(OUTLOOK)]
    assert ipaddress.ip_address(world.ip_of(OUTLOOK)) in net

    # autodiscover.contoso.com -> autodiscover.outlook.com, and on to that host's address.
    reply = await ask(world, "autodiscover.contoso.com", "A", tcp=True)
    assert answers(reply, "CNAME") == ["autodiscover.outlook.com."]
    assert answers(reply, "A") == [world.ip_of("autodiscover.outlook.com")]

    assert answers(await ask(world, "contoso.com", "MX"), "MX") == [
        "0 contoso-com.mail.protection.outlook.com."
    ]
    txt = answers(await ask(world, "contoso.com", "TXT"), "TXT")
    assert '"v=spf1 include:spf.protection.outlook.com -all"' in txt
    assert answers(await ask(world, "contoso.com", "A"), "A") == [world.ip_of("contoso.com")]

    missing = await ask(world, "nothing-here.contoso.com", "A")
    assert missing.rcode() == dns.rcode.NXDOMAIN
    assert ("udp", "nothing-here.contoso.com", "A") in world.dns_queries


async def test_idn_domain_is_served_in_idna_form() -> None:
    sc = get("idn-healthy")
    assert sc.domain == "bücher-beispiel.de" and sc.domain_idna.startswith("xn--")
    async with World(sc) as world:
        reply = await ask(world, sc.domain_idna, "MX")
        assert answers(reply, "MX") == [
            f"0 {sc.domain_idna.replace('.', '-')}.mail.protection.outlook.com."
        ]
        assert answers(await ask(world, sc.domain_idna, "A"), "A") == [world.ip_of(sc.domain)]
        cert = await peer_cert(world, sc.domain_idna)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sc.domain_idna in san.get_values_for_type(x509.DNSName)


async def test_dns_faults_reach_the_wire() -> None:
    async with World(get("dns-servfail")) as world:
        assert (await ask(world, "contoso.com", "MX")).rcode() == dns.rcode.SERVFAIL
        assert answers(await ask(world, OUTLOOK, "A"), "A") == [world.ip_of(OUTLOOK)]
    async with World(get("dns-silent")) as world:
        with pytest.raises(dns.exception.Timeout):
            ip, port = world.dns_address
            query = dns.message.make_query("autodiscover.contoso.com", "A")
            await dns.asyncquery.udp(query, ip, port=port, timeout=0.3)
    async with World(get("domain-not-found")) as world:
        assert (await ask(world, "contoso-typo.com", "MX")).rcode() == dns.rcode.NXDOMAIN


# ---- ports, certificates, latency, faults --------------------------------------------------


async def test_real_ports_are_bound(healthy: World) -> None:
    listening = {(name, port, bound) for name, _ip, port, bound in healthy.listeners()}
    assert healthy.port_map == {}  # we run as root here and in CI
    assert all(port == bound for _name, port, bound in listening)
    assert {(OUTLOOK, 443), (OUTLOOK, 993), (OUTLOOK, 995), (SMTP_HOST, 587)} <= {
        (n, p) for n, p, _b in listening
    }
    assert ("autodiscover.outlook.com", 80) in {(n, p) for n, p, _b in listening}
    # Every TCP port really accepts at the host's own address.
    for _name, ip, port, _bound in healthy.listeners():
        _reader, writer = await asyncio.open_connection(ip, port)
        await close(writer)


async def test_certificates_are_the_kind_the_scenario_asks_for(healthy: World) -> None:
    cert = await peer_cert(healthy, OUTLOOK)
    org = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert [a.value for a in org] == ["Microsoft Corporation"]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = san.get_values_for_type(x509.DNSName)
    assert OUTLOOK in names and "*.outlook.com" in names
    assert not any("contoso" in n for n in names)
    # A valid certificate verifies with the world's CA for the right name…
    reader, writer = await open_tls(healthy, OUTLOOK, 443)
    await close(writer)
    # …and a Microsoft certificate does not cover the customer's autodiscover name.
    ctx = client_tls(healthy)
    with pytest.raises(ssl.SSLCertVerificationError, match=r"match|mismatch"):
        await asyncio.open_connection(
            healthy.ip_of("autodiscover.outlook.com"),
            443,
            ssl=ctx,
            server_hostname="autodiscover.contoso.com",
        )

    async with World(get("autodiscover-cert-expired")) as world:
        err = await verify_error(world, "autodiscover.contoso.com")
        assert "expired" in err.verify_message
    async with World(get("tls-inspection")) as world:
        err = await verify_error(world, OUTLOOK)
        assert "issuer" in err.verify_message or "self" in err.verify_message
        # IMAP on the same host is not intercepted.
        reader, writer = await open_tls(world, OUTLOOK, 993)
        assert (await line(reader)).startswith("* OK The Microsoft Exchange IMAP4")
        await close(writer)


async def test_latency_is_one_round_trip_per_exchange() -> None:
    sc = get("healthy")
    sc = sc.model_copy(update={"hosts": change(sc.hosts, SMTP_HOST, latency_ms=120)})
    async with World(sc) as world:
        reader, writer = await asyncio.open_connection(world.ip_of(SMTP_HOST), 587)
        assert (await line(reader)).startswith("220 ")
        started = time.perf_counter()
        writer.write(b"NOOP\r\n")
        assert (await line(reader)).startswith("250 ")
        elapsed = time.perf_counter() - started
        await close(writer)
        # Loose bounds: a benchmark measures speed; this proves the delay is applied at all.
        assert 0.1 <= elapsed < 1.0, elapsed
        # The other hosts stay fast.
        reader, writer = await open_tls(world, OUTLOOK, 993)
        await line(reader)
        started = time.perf_counter()
        writer.write(b"a NOOP\r\n")
        await line(reader)
        assert time.perf_counter() - started < 0.1
        await close(writer)


async def test_black_hole_accepts_and_never_answers() -> None:
    async with World(get("exo-https-blackhole")) as world:
        reader, writer = await asyncio.open_connection(world.ip_of(OUTLOOK), 443)
        writer.write(b"GET / HTTP/1.1\r\nHost: outlook.office365.com\r\n\r\n")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.3)
        await close(writer)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                asyncio.open_connection(
                    world.ip_of(OUTLOOK), 443, ssl=client_tls(world), server_hostname=OUTLOOK
                ),
                0.3,
            )
        # Only 443 is black-holed: IMAP on the same host answers.
        reader, writer = await open_tls(world, OUTLOOK, 993)
        assert (await line(reader)).startswith("* OK")
        await close(writer)


async def test_refused_port_refuses() -> None:
    async with World(get("imap-blocked")) as world:
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(world.ip_of(OUTLOOK), 993)
        reader, writer = await open_tls(world, OUTLOOK, 995)  # POP still there
        assert (await line(reader)).startswith("+OK")
        await close(writer)


async def test_garbage_listener_sends_noise_and_hangs_up() -> None:
    sc = get("healthy")
    sc = sc.model_copy(update={"hosts": change(sc.hosts, f"{OUTLOOK}:995", fault=Fault.GARBAGE)})
    async with World(sc) as world:
        reader, writer = await asyncio.open_connection(world.ip_of(OUTLOOK), 995)
        data = await asyncio.wait_for(reader.read(), 2)
        assert len(data) > 0 and not data.startswith(b"+OK")
        await close(writer)
        with pytest.raises(ssl.SSLError):
            await open_tls(world, OUTLOOK, 995)


async def test_http_requests_are_logged_per_host(healthy: World) -> None:
    reader, writer = await open_tls(healthy, OUTLOOK, 443)
    writer.write(
        b"GET /autodiscover/autodiscover.json/v1.0/ana@contoso.com?Protocol=ActiveSync HTTP/1.1\r\n"
        b"Host: outlook.office365.com\r\nConnection: close\r\n\r\n"
    )
    body = await asyncio.wait_for(reader.read(), 5)
    await close(writer)
    assert body.startswith(b"HTTP/1.1 200")
    assert b"https://outlook.office365.com/Microsoft-Server-ActiveSync" in body
    seen = healthy.requests(OUTLOOK, 443)
    assert [(r.method, r.path.split("?")[0]) for r in seen] == [
        ("GET", "/autodiscover/autodiscover.json/v1.0/ana@contoso.com")
    ]
    assert healthy.requests("login.microsoftonline.com") == []

    # The HTTP redirect method: plain HTTP on port 80 of autodiscover.outlook.com.
    reader, writer = await asyncio.open_connection(healthy.ip_of("autodiscover.outlook.com"), 80)
    writer.write(
        b"GET /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: autodiscover.contoso.com\r\n"
        b"Connection: close\r\n\r\n"
    )
    head = (await asyncio.wait_for(reader.read(), 5)).split(b"\r\n\r\n")[0].decode()
    await close(writer)
    assert head.startswith("HTTP/1.1 302")
    assert "Location: https://autodiscover-s.outlook.com/autodiscover/autodiscover.xml" in head


# ---- mail protocols ------------------------------------------------------------------------


async def test_imap_speaks_like_exchange_online(healthy: World) -> None:
    reader, writer = await open_tls(healthy, OUTLOOK, 993)
    greeting = (await line(reader)).rstrip()
    match = re.fullmatch(
        r"\* OK The Microsoft Exchange IMAP4 service is ready\. \[(.+)\]", greeting
    )
    assert match is not None
    base64.b64decode(match.group(1), validate=True)
    writer.write(b"a1 CAPABILITY\r\n")
    caps, done = await line(reader), await line(reader)
    for cap in (
        "AUTH=PLAIN",
        "AUTH=XOAUTH2",
        "SASL-IR",
        "UIDPLUS",
        "ID",
        "UNSELECT",
        "IDLE",
        "NAMESPACE",
        "LITERAL+",
        "CHILDREN",
    ):
        assert f" {cap}" in caps
    assert done.startswith("a1 OK")
    writer.write(b"a2 FROBNICATE\r\n")
    assert (await line(reader)).startswith("a2 BAD")
    writer.write(b"a3 LOGIN ana secret\r\n")
    assert (await line(reader)).startswith("a3 NO")
    writer.write(b"a4 LOGOUT\r\n")
    assert (await line(reader)).startswith("* BYE")
    assert (await line(reader)).startswith("a4 OK")
    await close(writer)
    assert "993 imap CAPABILITY" in healthy.log(OUTLOOK).mail


async def test_pop_speaks_like_exchange_online(healthy: World) -> None:
    reader, writer = await open_tls(healthy, OUTLOOK, 995)
    greeting = await line(reader)
    assert re.match(r"\+OK The Microsoft Exchange POP3 service is ready\. \[.+\]\r\n", greeting)
    writer.write(b"CAPA\r\n")
    capa = await lines_until(reader, re.compile(r"^\.$"))
    assert capa[0] == "+OK" and {"TOP", "UIDL", "SASL PLAIN XOAUTH2", "USER"} <= set(capa)
    writer.write(b"XYZZY\r\n")
    assert (await line(reader)).startswith("-ERR")
    writer.write(b"QUIT\r\n")
    assert (await line(reader)).startswith("+OK")
    await close(writer)


async def test_smtp_submission_with_starttls(healthy: World) -> None:
    reader, writer = await asyncio.open_connection(healthy.ip_of(SMTP_HOST), 587)
    greeting = (await line(reader)).rstrip()
    match = re.fullmatch(r"220 (\S+) Microsoft ESMTP MAIL Service ready at (.+)", greeting)
    assert match is not None
    assert email.utils.parsedate_to_datetime(match.group(2)) is not None
    end = re.compile(r"^250 ")
    writer.write(b"EHLO client.example\r\n")
    plain = await lines_until(reader, end)
    features = {text[4:] for text in plain[1:]}
    assert {
        "SIZE 157286400",
        "PIPELINING",
        "DSN",
        "ENHANCEDSTATUSCODES",
        "STARTTLS",
        "8BITMIME",
        "BINARYMIME",
        "CHUNKING",
        "SMTPUTF8",
    } <= features
    assert not any(f.startswith("AUTH") for f in features)
    writer.write(b"AUTH LOGIN\r\n")
    assert (await line(reader)).startswith("504 ")
    writer.write(b"STARTTLS\r\n")
    assert (await line(reader)).startswith("220 2.0.0")
    await writer.start_tls(client_tls(healthy), server_hostname=SMTP_HOST)
    writer.write(b"EHLO client.example\r\n")
    secure = {text[4:] for text in (await lines_until(reader, end))[1:]}
    assert "AUTH LOGIN XOAUTH2" in secure and "STARTTLS" not in secure
    writer.write(b"WHAT\r\n")
    assert (await line(reader)).startswith("500 ")
    writer.write(b"QUIT\r\n")
    assert (await line(reader)).rstrip() == "221 2.0.0 Service closing transmission channel"
    await close(writer)


async def test_smtp_faults() -> None:
    async with World(get("smtp-starttls-stripped")) as world:
        reader, writer = await asyncio.open_connection(world.ip_of(SMTP_HOST), 587)
        await line(reader)
        writer.write(b"EHLO client.example\r\n")
        features = await lines_until(reader, re.compile(r"^250 "))
        assert not any("STARTTLS" in f for f in features)
        writer.write(b"STARTTLS\r\n")
        assert (await line(reader)).startswith("500 ")
        await close(writer)
    async with World(get("smtp-starttls-garbage")) as world:
        reader, writer = await asyncio.open_connection(world.ip_of(SMTP_HOST), 587)
        await line(reader)
        writer.write(b"EHLO client.example\r\nSTARTTLS\r\n")
        await lines_until(reader, re.compile(r"^250 "))
        assert (await line(reader)).startswith("220 ")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await asyncio.wait_for(
                writer.start_tls(client_tls(world), server_hostname=SMTP_HOST), 3
            )
        writer.transport.abort()


async def test_mail_servers_survive_hostile_input(healthy: World) -> None:
    reader, writer = await asyncio.open_connection(healthy.ip_of(SMTP_HOST), 587)
    await line(reader)
    writer.write(b"\xff\xfe\x00garbage\r\n" + b"A" * 20000 + b"\r\n")
    got = await asyncio.wait_for(reader.read(), 5)  # an error, then the server hangs up
    assert got.startswith(b"500 ")
    await close(writer)
    reader, writer = await open_tls(healthy, OUTLOOK, 993)
    await line(reader)
    writer.write(b"\r\n")
    assert (await line(reader)).startswith("* BAD")
    await close(writer)
    # Still serving.
    reader, writer = await asyncio.open_connection(healthy.ip_of(SMTP_HOST), 587)
    assert (await line(reader)).startswith("220 ")
    await close(writer)


# ---- worlds side by side, and a clean stop -------------------------------------------------


async def test_two_worlds_run_concurrently() -> None:
    async with World(get("healthy")) as one, World(get("imap-blocked")) as two:
        assert one.prefix != two.prefix
        a = answers(await ask(one, OUTLOOK, "A"), "A")
        b = answers(await ask(two, OUTLOOK, "A"), "A")
        assert a == [one.ip_of(OUTLOOK)] and b == [two.ip_of(OUTLOOK)] and a != b
        reader, writer = await open_tls(one, OUTLOOK, 993)
        assert (await line(reader)).startswith("* OK")
        await close(writer)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(two.ip_of(OUTLOOK), 993)


async def test_stop_leaves_nothing_listening() -> None:
    world = World(get("root-blackhole"))
    started = time.perf_counter()
    await world.start()
    assert time.perf_counter() - started < 2.0  # loose: benchmarks measure start-up
    listening = list(world.listeners())
    # Leave connections open on purpose: a held black-hole connection and an idle IMAP session.
    _r1, held = await asyncio.open_connection(world.ip_of("contoso.com"), 443)
    _r2, idle = await open_tls(world, OUTLOOK, 993)
    ca_path = world.ca_path
    dns_ip, dns_port = world.dns_address
    await world.stop()
    await world.stop()  # idempotent
    for _name, ip, _port, bound in listening:
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(ip, bound)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(dns_ip, dns_port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((dns_ip, dns_port))  # the UDP port is free again
    sock.close()
    assert not ca_path.exists()
    held.close()
    idle.close()
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert others == []


async def test_settings_env_and_seam_point_at_the_world() -> None:
    async with World(get("gcchigh-healthy")) as world:
        env = world.env()
        assert set(env) == {
            "MAILFIX_DNS_SERVERS",
            "MAILFIX_CA_BUNDLE",
            "MAILFIX_ALLOWED_PRIVATE_NETWORKS",
            "MAILFIX_CLOUD",
        }
        assert env["MAILFIX_CLOUD"] == "gcchigh"
        assert env["MAILFIX_ALLOWED_PRIVATE_NETWORKS"] == world.network_cidr
        settings = world.settings()
        assert settings.cloud is Cloud.GCCHIGH
        assert [(s.host, s.port) for s in settings.dns_servers] == [world.dns_address]
        assert settings.ca_bundle == world.ca_path
        assert "outlook.office365.us" in {name for name, *_ in world.listeners()}
    async with World(get("healthy")) as world:
        assert "MAILFIX_CLOUD" not in world.env()


async def test_the_seam_fetches_through_the_world(healthy: World) -> None:
    async with healthy.network() as net:
        mx = await net.query("contoso.com", "MX")
        assert mx.records == ["0 contoso-com.mail.protection.outlook.com."]
        response = await net.request(
            "GET",
            "https://outlook.office365.com/autodiscover/autodiscover.json/v1.0/"
            "ana@contoso.com?Protocol=ActiveSync",
        )
        assert response.status == 200
        assert response.hops[0].address == healthy.ip_of(OUTLOOK)
        assert response.cert is not None and "Microsoft Corporation" in response.cert.subject
        assert "Microsoft-Server-ActiveSync" in response.text
        # The customer's autodiscover name follows the CNAME to Microsoft's redirect host.
        redirect = await net.request(
            "GET",
            "http://autodiscover.contoso.com/autodiscover/autodiscover.xml",
            follow_redirects=False,
        )
        assert redirect.status == 302
    assert healthy.requests(OUTLOOK, 443)


def test_scenarios_are_data() -> None:
    sc = get("adfs-token-signing-expiring")
    again = Scenario.model_validate(sc.model_dump())
    assert again == sc
    assert sc.address == "ana@contoso.com"


async def test_ephemeral_ports_reach_the_seam_through_the_port_map() -> None:
    # What an unprivileged run does: every listener on an ephemeral port, told to the seam.
    async with World(get("healthy"), real_ports=False) as world:
        ip = world.ip_of(OUTLOOK)
        assert world.dns_address[1] != 53
        assert {(ip, 443), (ip, 993), (ip, 995)} <= set(world.port_map)
        assert all(real != port for (_ip, port), real in world.port_map.items())
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(ip, 443)
        async with world.network() as net:
            response = await net.request(
                "GET",
                "https://outlook.office365.com/autodiscover/autodiscover.json/v1.0/"
                "ana@contoso.com?Protocol=ActiveSync",
            )
            assert response.status == 200
            conn = await net.open_tcp(OUTLOOK, 993, tls=True)
            try:
                assert (await conn.readline()).startswith(b"* OK The Microsoft Exchange IMAP4")
            finally:
                await conn.aclose()
