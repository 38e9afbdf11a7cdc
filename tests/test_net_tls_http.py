"""TLS, line connections and HTTP through the seam, against real servers on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from checks.net.certs import cert_info, peer_cert_info
from checks.net.errors import (
    CertificateInvalid,
    ConnectFailed,
    NetTimeout,
    ProtocolViolation,
    ResponseTooLarge,
    TooManyRedirects,
)
from checks.net.seam import Connection, Network, Timeouts
from checks.settings import CheckSettings
from sandbox.ca import CertKind, SandboxCA
from sandbox.dns_server import DnsServer, Zone

FAST = Timeouts(dns=1.0, connect=1.0, read=0.5, total=3.0)

# name -> (loopback address, certificate kind) of the TLS test servers
TLS_HOSTS: dict[str, tuple[str, CertKind]] = {
    "mail.sandbox.test": ("127.9.0.11", CertKind.VALID),
    "expired.sandbox.test": ("127.9.0.12", CertKind.EXPIRED),
    "future.sandbox.test": ("127.9.0.13", CertKind.NOT_YET_VALID),
    "wrong.sandbox.test": ("127.9.0.14", CertKind.WRONG_NAME),
    "rogue.sandbox.test": ("127.9.0.15", CertKind.UNTRUSTED),
}
WEB_IP = "127.9.0.20"
BAD_WEB_IP = "127.9.0.21"
SMTP_IP = "127.9.0.30"


@pytest.fixture(scope="module")
def ca() -> SandboxCA:
    return SandboxCA()


@pytest.fixture(scope="module")
def bundle(ca: SandboxCA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ca.write_bundle(tmp_path_factory.mktemp("ca") / "bundle.pem")


@pytest.fixture
async def dns() -> AsyncIterator[DnsServer]:
    zone = Zone()
    for name, (ip, _kind) in TLS_HOSTS.items():
        zone.add(name, "A", ip)
    zone.add("www.sandbox.test", "A", WEB_IP)
    zone.add("other.sandbox.test", "CNAME", "www.sandbox.test.")
    zone.add("badweb.sandbox.test", "A", BAD_WEB_IP)
    zone.add("smtp.sandbox.test", "A", SMTP_IP)
    zone.add("wrongsmtp.sandbox.test", "A", "127.9.0.31")
    async with DnsServer(zone) as server:
        yield server


def settings(dns: DnsServer, bundle: Path) -> CheckSettings:
    host, port = dns.address
    return CheckSettings(
        dns_servers=[f"{host}:{port}"], ca_bundle=bundle, allowed_private_networks=["127.9.0.0/16"]
    )


@dataclass
class Servers:
    """Started servers and the port map that reaches them."""

    port_map: dict[tuple[str, int], int] = field(default_factory=dict)
    closers: list[Callable[[], object]] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)
    accepts: int = 0


async def _tls_server(ip: str, ctx: ssl.SSLContext, servers: Servers) -> int:
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        servers.accepts += 1
        writer.write(b"* OK IMAP4rev1 ready\r\n")
        await writer.drain()
        await reader.read()  # until the client goes
        writer.close()

    server = await asyncio.start_server(greet, ip, 0, ssl=ctx)
    servers.closers.append(server.close)
    port: int = server.sockets[0].getsockname()[1]
    return port


@pytest.fixture
async def tls_servers(ca: SandboxCA) -> AsyncIterator[Servers]:
    servers = Servers()
    for name, (ip, kind) in TLS_HOSTS.items():
        port = await _tls_server(
            ip, ca.issue([name], kind=kind, org="Contoso Ltd").server_context(), servers
        )
        servers.port_map[(ip, 993)] = port
    yield servers
    for close in servers.closers:
        close()


# -- TLS ---------------------------------------------------------------------------------


async def test_tls_probe_valid(dns: DnsServer, bundle: Path, tls_servers: Servers) -> None:
    async with Network(settings(dns, bundle), timeouts=FAST, port_map=tls_servers.port_map) as net:
        info = await net.tls_probe("mail.sandbox.test", 993)
    assert info.host == "mail.sandbox.test" and info.port == 993
    assert info.address == "127.9.0.11"
    assert info.version in ("TLSv1.2", "TLSv1.3")
    assert info.cipher
    assert info.cert.subject == "O=Contoso Ltd,CN=mail.sandbox.test"
    assert info.cert.issuer == "CN=mailfix sandbox root CA"
    assert info.cert.san == ["mail.sandbox.test"]
    assert info.cert.not_before < datetime.now(UTC) < info.cert.not_after
    assert info.cert.not_after.tzinfo is not None
    assert len(info.cert.sha256) == 64


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("expired.sandbox.test", "expired"),
        ("future.sandbox.test", "not-yet-valid"),
        ("wrong.sandbox.test", "hostname"),
        ("rogue.sandbox.test", "untrusted"),
    ],
)
async def test_tls_probe_bad_certificates(
    dns: DnsServer, bundle: Path, tls_servers: Servers, host: str, reason: str
) -> None:
    async with Network(settings(dns, bundle), timeouts=FAST, port_map=tls_servers.port_map) as net:
        with pytest.raises(CertificateInvalid) as info:
            await net.tls_probe(host, 993)
    error = info.value
    assert error.reason == reason
    assert error.host == host
    assert error.kind == "certificate"
    assert error.cert is not None  # what the server presented, read on a second connection
    now = datetime.now(UTC)
    if reason == "expired":
        assert error.cert.not_after < now
    if reason == "not-yet-valid":
        assert error.cert.not_before > now
    if reason == "hostname":
        assert error.cert.san == ["wrong-name.invalid"]
    if reason == "untrusted":
        assert error.cert.issuer == "CN=mailfix untrusted CA"
        assert error.cert.san == [host]
    assert isinstance(error.__cause__, ssl.SSLCertVerificationError)


async def test_without_the_bundle_the_sandbox_ca_is_untrusted(
    dns: DnsServer, tls_servers: Servers
) -> None:
    host, port = dns.address
    plain = CheckSettings(dns_servers=[f"{host}:{port}"], allowed_private_networks=["127.9.0.0/16"])
    async with Network(plain, timeouts=FAST, port_map=tls_servers.port_map) as net:
        with pytest.raises(CertificateInvalid) as info:
            await net.tls_probe("mail.sandbox.test", 993)
    assert info.value.reason == "untrusted"


async def test_implicit_tls_connection_reads_the_greeting(
    dns: DnsServer, bundle: Path, tls_servers: Servers
) -> None:
    async with Network(settings(dns, bundle), timeouts=FAST, port_map=tls_servers.port_map) as net:
        conn = await net.open_tcp("mail.sandbox.test", 993, tls=True)
        try:
            greeting = await conn.readline()
        finally:
            await conn.aclose()
    assert greeting == b"* OK IMAP4rev1 ready\r\n"
    assert conn.tls is not None and conn.tls.cert.san == ["mail.sandbox.test"]
    assert conn.address == "127.9.0.11"


def _hostile_der(name: str, key: ec.EllipticCurvePrivateKey, *, defect: str) -> bytes:
    """A self-signed certificate cryptography cannot read, though not with a ValueError.

    - "version": X.509 version field 4 (value 3): `x509.InvalidVersion` on load. OpenSSL
      still serves it.
    - "two-san": two SubjectAlternativeName extensions: `x509.DuplicateExtension` on reading
      the extensions. OpenSSL 3 refuses to serve it, but any other TLS stack can.
    cryptography's builder refuses both, so the DER is patched after signing (the signature
    breaks, which does not matter: nobody trusts these certificates anyway).
    """
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    san = x509.SubjectAlternativeName([x509.DNSName(name)])
    placeholder = x509.ObjectIdentifier("2.5.29.99")  # encodes as long as the SAN's 2.5.29.17
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(san, critical=False)
    )
    if defect == "two-san":
        extra = x509.UnrecognizedExtension(placeholder, san.public_bytes())
        builder = builder.add_extension(extra, critical=False)
    der = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    if defect == "two-san":
        return der.replace(bytes.fromhex("0603551d63"), bytes.fromhex("0603551d11"), 1)
    return der.replace(bytes.fromhex("a003020102"), bytes.fromhex("a003020103"), 1)  # v3 -> "v4"


def _hostile_server_context(name: str, tmp_path: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    der = _hostile_der(name, key, defect="version")
    with pytest.raises(x509.InvalidVersion):  # not a ValueError: what used to escape the seam
        x509.load_der_x509_certificate(der)
    pem = tmp_path / "hostile.pem"
    pem.write_bytes(
        ssl.DER_cert_to_PEM_cert(der).encode()
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pem)
    return ctx


async def test_an_unreadable_untrusted_certificate_does_not_crash(
    dns: DnsServer, bundle: Path, tmp_path: Path
) -> None:
    # A hostile certificate must come out as CertificateInvalid without a certificate, on the
    # line-protocol path and on the HTTP path alike, not as cryptography's exception.
    ip, host = "127.9.0.16", "hostile.sandbox.test"
    dns.zone.add(host, "A", ip)
    servers = Servers()
    port = await _tls_server(ip, _hostile_server_context(host, tmp_path), servers)
    ports = {(ip, 993): port, (ip, 443): port}
    try:
        async with Network(settings(dns, bundle), timeouts=FAST, port_map=ports) as net:
            with pytest.raises(CertificateInvalid) as probed:
                await net.tls_probe(host, 993)
            with pytest.raises(CertificateInvalid) as fetched:
                await net.request("GET", f"https://{host}/")
    finally:
        for close in servers.closers:
            close()
    assert probed.value.reason == fetched.value.reason == "untrusted"
    assert probed.value.cert is None and fetched.value.cert is None


class _Presented:
    """What `peer_cert_info` reads from an SSL object: the peer's DER."""

    def __init__(self, der: bytes) -> None:
        self.der = der

    def getpeercert(self, binary_form: bool = False) -> bytes:
        return self.der


def test_a_certificate_with_two_san_extensions_reads_as_none() -> None:
    # OpenSSL will not serve this one, so it is handed over the way the socket would.
    der = _hostile_der(
        "twosan.sandbox.test", ec.generate_private_key(ec.SECP256R1()), defect="two-san"
    )
    with pytest.raises(x509.DuplicateExtension):
        x509.load_der_x509_certificate(der).extensions  # noqa: B018 - parsed lazily
    with pytest.raises(ValueError, match="DuplicateExtension"):
        cert_info(der)
    assert peer_cert_info(_Presented(der)) is None  # type: ignore[arg-type]


# -- line protocol with STARTTLS ---------------------------------------------------------


async def _smtp_server(ip: str, ctx: ssl.SSLContext, servers: Servers) -> int:
    """A tiny SMTP-like server: EHLO, STARTTLS, and a few misbehaviours on request."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        servers.accepts += 1
        writer.write(b"220 smtp.sandbox.test ESMTP\r\n")
        tls = False
        try:
            while line := await reader.readline():
                command = line.strip().upper()
                if command.startswith(b"EHLO"):
                    extra = b"250 AUTH LOGIN\r\n" if tls else b"250 STARTTLS\r\n"
                    writer.write(b"250-smtp.sandbox.test\r\n" + extra)
                elif command == b"STARTTLS":
                    writer.write(b"220 2.0.0 Ready to start TLS\r\n")
                    await writer.drain()
                    await writer.start_tls(ctx)
                    tls = True
                elif command == b"INJECT":
                    writer.write(b"220 go ahead\r\n250 injected\r\n")
                elif command == b"LONG":
                    writer.write(b"x" * 20000)
                elif command == b"SLOW":
                    pass  # never answer
                elif command == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    break
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(session, ip, 0)
    servers.closers.append(server.close)
    port: int = server.sockets[0].getsockname()[1]
    return port


@pytest.fixture
async def smtp(ca: SandboxCA) -> AsyncIterator[Servers]:
    servers = Servers()
    good = ca.issue(["smtp.sandbox.test"]).server_context()
    bad = ca.issue(["wrongsmtp.sandbox.test"], kind=CertKind.WRONG_NAME).server_context()
    servers.port_map[(SMTP_IP, 587)] = await _smtp_server(SMTP_IP, good, servers)
    servers.port_map[("127.9.0.31", 587)] = await _smtp_server("127.9.0.31", bad, servers)
    yield servers
    for close in servers.closers:
        close()


async def _ehlo(conn: Connection) -> list[bytes]:
    await conn.write(b"EHLO client.test\r\n")
    return [await conn.readline(), await conn.readline()]


async def test_starttls_upgrade_in_place(dns: DnsServer, bundle: Path, smtp: Servers) -> None:
    async with Network(settings(dns, bundle), timeouts=FAST, port_map=smtp.port_map) as net:
        conn = await net.open_tcp("smtp.sandbox.test", 587)
        assert conn.tls is None
        assert (await conn.readline()).startswith(b"220 ")
        assert (await _ehlo(conn))[1] == b"250 STARTTLS\r\n"
        await conn.write(b"STARTTLS\r\n")
        assert (await conn.readline()).startswith(b"220 2.0.0")
        info = await conn.start_tls()
        after = await _ehlo(conn)
        await conn.write(b"QUIT\r\n")
        assert await conn.readline() == b"221 bye\r\n"
        await conn.aclose()
    assert info.cert.san == ["smtp.sandbox.test"] and conn.tls == info
    assert after[1] == b"250 AUTH LOGIN\r\n"


async def test_starttls_bad_certificate_carries_the_certificate(
    dns: DnsServer, bundle: Path, smtp: Servers
) -> None:
    async with Network(settings(dns, bundle), timeouts=FAST, port_map=smtp.port_map) as net:
        conn = await net.open_tcp("wrongsmtp.sandbox.test", 587)
        await conn.readline()
        await _ehlo(conn)
        await conn.write(b"STARTTLS\r\n")
        await conn.readline()
        with pytest.raises(CertificateInvalid) as info:
            await conn.start_tls()
        await conn.aclose()
    assert info.value.reason == "hostname"
    assert info.value.cert is not None and info.value.cert.san == ["wrong-name.invalid"]
    assert smtp.accepts == 2  # the conversation was replayed once to read the certificate


async def test_readline_bounds(dns: DnsServer, bundle: Path, smtp: Servers) -> None:
    async with Network(settings(dns, bundle), timeouts=FAST, port_map=smtp.port_map) as net:
        conn = await net.open_tcp("smtp.sandbox.test", 587)
        await conn.readline()
        await conn.write(b"LONG\r\n")
        with pytest.raises(ResponseTooLarge):
            await conn.readline(limit=1000)
        await conn.aclose()

        conn = await net.open_tcp("smtp.sandbox.test", 587)
        assert len(await conn.readline(limit=30)) == 29  # exactly fits: "220 ...\r\n"
        await conn.write(b"SLOW\r\n")
        started = time.monotonic()
        with pytest.raises(NetTimeout):
            await conn.readline()
        assert time.monotonic() - started < FAST.read + 0.5
        await conn.aclose()

        conn = await net.open_tcp("smtp.sandbox.test", 587)
        await conn.readline()
        await conn.write(b"QUIT\r\n")
        await conn.readline()
        with pytest.raises(ConnectFailed):  # EOF
            await conn.readline()
        await conn.aclose()


async def test_starttls_refuses_injected_plaintext(
    dns: DnsServer, bundle: Path, smtp: Servers
) -> None:
    async with Network(settings(dns, bundle), timeouts=FAST, port_map=smtp.port_map) as net:
        conn = await net.open_tcp("smtp.sandbox.test", 587)
        await conn.readline()
        await conn.write(b"INJECT\r\n")
        # The server wrote "220 go ahead" and "250 injected" in one segment, so the second line
        # is already buffered when we read the first: it must not survive into TLS.
        assert await conn.readline() == b"220 go ahead\r\n"
        with pytest.raises(ProtocolViolation):
            await conn.start_tls()
        await conn.aclose()


async def test_connect_refused_and_unreachable_ports(dns: DnsServer, bundle: Path) -> None:
    closed = _closed_port()
    async with Network(
        settings(dns, bundle), timeouts=FAST, port_map={("127.9.0.11", 25): closed}
    ) as net:
        with pytest.raises(ConnectFailed) as info:
            await net.open_tcp("mail.sandbox.test", 25)
    assert "127.9.0.11" in str(info.value)
    assert info.value.kind == "connect"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# -- HTTP --------------------------------------------------------------------------------


@dataclass
class Web:
    port_map: dict[tuple[str, int], int]
    sni: list[str | None]
    hosts: list[str]


def _web_app(hosts: list[str]) -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        hosts.append(request.host)
        response = web.Response(text="hello", headers={"X-Test": "A"})
        response.headers.add("X-Multi", "one")
        response.headers.add("X-Multi", "two")
        return response

    async def echo(request: web.Request) -> web.Response:
        hosts.append(request.host)
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "host": request.host,
                "body": body.decode(),
                "scheme": request.scheme,
            }
        )

    async def redirect(request: web.Request) -> web.Response:
        code = int(request.query.get("code", "302"))
        return web.Response(status=code, headers={"Location": request.query["to"]})

    async def chain(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        if n == 0:
            return web.Response(text="end")
        raise web.HTTPFound(f"/chain/{n - 1}")

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"z" * 100_000)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(10)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/redirect", redirect)
    app.router.add_get("/chain/{n}", chain)
    app.router.add_get("/big", big)
    app.router.add_get("/slow", slow)
    return app


@pytest.fixture
async def website(ca: SandboxCA) -> AsyncIterator[Web]:
    hosts: list[str] = []
    sni: list[str | None] = []
    runner = web.AppRunner(_web_app(hosts), handler_cancellation=True, shutdown_timeout=0.1)
    await runner.setup()
    good = ca.issue(["www.sandbox.test", "other.sandbox.test"]).server_context()
    good.sni_callback = lambda _obj, name, _ctx: sni.append(name)
    bad = ca.issue(["badweb.sandbox.test"], kind=CertKind.EXPIRED).server_context()
    port_map: dict[tuple[str, int], int] = {}
    for ip, port, ctx in ((WEB_IP, 80, None), (WEB_IP, 443, good), (BAD_WEB_IP, 443, bad)):
        site = web.TCPSite(runner, ip, 0, ssl_context=ctx)
        await site.start()
        port_map[(ip, port)] = runner.addresses[-1][1]
    port_map[(WEB_IP, 8443)] = _closed_port()
    yield Web(port_map=port_map, sni=sni, hosts=hosts)
    await runner.cleanup()


@pytest.fixture
async def net(dns: DnsServer, bundle: Path, website: Web) -> AsyncIterator[Network]:
    async with Network(settings(dns, bundle), timeouts=FAST, port_map=website.port_map) as network:
        yield network


async def test_https_get_keeps_host_and_sni_while_connecting_to_the_ip(
    net: Network, website: Web
) -> None:
    response = await net.request("GET", "https://www.sandbox.test/ok")
    assert response.status == 200 and response.body == b"hello" and response.text == "hello"
    assert response.header("x-test") == "A" and response.headers["x-test"] == "A"
    assert response.headers["x-multi"] == "one, two"
    assert all(name == name.lower() for name in response.headers)
    assert not response.truncated
    assert [(h.method, h.url, h.status, h.address) for h in response.hops] == [
        ("GET", "https://www.sandbox.test/ok", 200, WEB_IP)
    ]
    assert website.hosts == ["www.sandbox.test"]  # Host header: the name, not the IP
    assert website.sni == ["www.sandbox.test"]
    assert response.cert is not None and "www.sandbox.test" in response.cert.san


async def test_requests_of_one_network_share_a_kept_alive_connection(
    net: Network, website: Web
) -> None:
    first = await net.request("GET", "https://www.sandbox.test/ok")
    second = await net.request("GET", "https://www.sandbox.test/ok")
    assert website.sni == ["www.sandbox.test"]  # one handshake for both
    assert first.cert is not None and second.cert == first.cert  # read from the same TLS
    assert second.hops[0].address == WEB_IP


async def test_plain_http_has_no_certificate(net: Network) -> None:
    response = await net.request("GET", "http://www.sandbox.test/ok")
    assert response.status == 200 and response.cert is None
    assert response.hops[0].address == WEB_IP


@pytest.mark.parametrize(
    ("to", "final"),
    [
        ("/ok", "https://www.sandbox.test/ok"),  # relative
        ("ok", "https://www.sandbox.test/ok"),  # relative to the path
        ("https://other.sandbox.test/ok", "https://other.sandbox.test/ok"),  # absolute
        ("//other.sandbox.test/ok", "https://other.sandbox.test/ok"),  # scheme-relative
    ],
)
async def test_redirects_are_followed(net: Network, website: Web, to: str, final: str) -> None:
    response = await net.request("GET", f"https://www.sandbox.test/redirect?to={to}")
    assert response.status == 200 and response.url == final
    assert [h.status for h in response.hops] == [302, 200]
    assert response.hops[0].location == to
    assert website.hosts[-1] == final.split("/")[2]


async def test_http_to_https_redirect(net: Network) -> None:
    response = await net.request(
        "GET", "http://www.sandbox.test/redirect?to=https://www.sandbox.test/echo&code=301"
    )
    assert json.loads(response.body)["scheme"] == "https"
    assert [(h.url.split(":")[0], h.status) for h in response.hops] == [
        ("http", 301),
        ("https", 200),
    ]
    assert response.cert is not None


async def test_303_turns_post_into_get(net: Network) -> None:
    response = await net.request(
        "POST",
        "https://www.sandbox.test/redirect?to=/echo&code=303",
        content=b"<Autodiscover/>",
        headers={"Content-Type": "text/xml"},
    )
    echoed = json.loads(response.body)
    assert echoed["method"] == "GET" and echoed["body"] == ""
    assert [h.method for h in response.hops] == ["POST", "GET"]


@pytest.mark.parametrize("code", [301, 302, 307, 308])
async def test_other_redirects_keep_post_and_body(net: Network, code: int) -> None:
    response = await net.request(
        "POST", f"https://www.sandbox.test/redirect?to=/echo&code={code}", content=b"<xml/>"
    )
    echoed = json.loads(response.body)
    assert echoed["method"] == "POST" and echoed["body"] == "<xml/>"


async def test_redirect_limit(net: Network) -> None:
    ten = await net.request("GET", "https://www.sandbox.test/chain/10")
    assert ten.text == "end" and len(ten.hops) == 11
    with pytest.raises(TooManyRedirects):
        await net.request("GET", "https://www.sandbox.test/chain/11")
    with pytest.raises(TooManyRedirects):
        await net.request("GET", "https://www.sandbox.test/chain/3", max_redirects=2)
    unfollowed = await net.request(
        "GET", "https://www.sandbox.test/chain/3", follow_redirects=False
    )
    assert unfollowed.status == 302 and unfollowed.header("location") == "/chain/2"


async def test_body_is_cut_at_the_bound(net: Network) -> None:
    cut = await net.request("GET", "https://www.sandbox.test/big", max_body=1000)
    full = await net.request("GET", "https://www.sandbox.test/big")
    assert cut.truncated and cut.body == b"z" * 1000
    assert not full.truncated and len(full.body) == 100_000


async def test_slow_server_times_out(net: Network) -> None:
    started = time.monotonic()
    with pytest.raises(NetTimeout):
        await net.request("GET", "https://www.sandbox.test/slow")  # read timeout 0.5 s
    with pytest.raises(NetTimeout):
        await net.request("GET", "https://www.sandbox.test/slow", timeout=0.2)  # total
    assert time.monotonic() - started < 2.0


async def test_refused_port(net: Network) -> None:
    with pytest.raises(ConnectFailed):
        await net.request("GET", "https://www.sandbox.test:8443/ok")


async def test_https_bad_certificate_surfaces_with_the_certificate(net: Network) -> None:
    with pytest.raises(CertificateInvalid) as info:
        await net.request("GET", "https://badweb.sandbox.test/ok")
    assert info.value.reason == "expired"
    assert info.value.cert is not None and info.value.cert.san == ["badweb.sandbox.test"]
    # a redirect into the bad certificate fails the same way
    with pytest.raises(CertificateInvalid):
        await net.request(
            "GET", "https://www.sandbox.test/redirect?to=https://badweb.sandbox.test/"
        )


async def test_a_name_the_certificate_lacks(net: Network) -> None:
    # www's server asked for by its IP: the certificate names only www and other.
    with pytest.raises(CertificateInvalid) as info:
        await net.request("GET", f"https://{WEB_IP}/ok")
    assert info.value.reason == "hostname"
    assert info.value.cert is not None and "www.sandbox.test" in info.value.cert.san


# -- telling a live server from a silent one (autodiscover.v1's race) --------------------------


async def test_tls_answer_is_reported_before_a_slow_answer(net: Network) -> None:
    answered: list[float] = []
    started = time.monotonic()
    with pytest.raises(NetTimeout):
        await net.request(
            "GET",
            "https://www.sandbox.test/slow",
            timeout=0.4,
            on_tls_answer=lambda: answered.append(time.monotonic() - started),
        )
    assert len(answered) == 1 and answered[0] < 0.4  # the handshake, long before the answer


async def test_tls_answer_on_a_kept_alive_connection(net: Network, website: Web) -> None:
    await net.request("GET", "https://www.sandbox.test/ok")
    answered: list[str] = []
    response = await net.request(
        "GET", "https://www.sandbox.test/ok", on_tls_answer=lambda: answered.append("yes")
    )
    assert response.status == 200 and website.sni == ["www.sandbox.test"]  # no new handshake
    assert answered == ["yes"]


async def test_a_black_hole_never_reports_a_tls_answer(
    dns: DnsServer, bundle: Path, website: Web
) -> None:
    with socket.socket() as hole:  # the kernel accepts; nobody ever reads or answers
        hole.bind((WEB_IP, 0))
        hole.listen()
        port_map = {**website.port_map, (WEB_IP, 443): hole.getsockname()[1]}
        answered: list[str] = []
        async with Network(settings(dns, bundle), timeouts=FAST, port_map=port_map) as net:
            with pytest.raises(NetTimeout):
                await net.request(
                    "GET",
                    "https://www.sandbox.test/ok",
                    timeout=0.3,
                    on_tls_answer=lambda: answered.append("yes"),
                )
            # Plain HTTP on the same network still works: only the silent server is silent.
            assert (await net.request("GET", "http://www.sandbox.test/ok")).status == 200
        assert answered == []
