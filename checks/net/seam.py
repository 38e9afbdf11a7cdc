"""The one network seam: every DNS query, TCP/TLS connection and HTTP request of a check.

CONTRACT (signatures are fixed, other modules code against them):

- Resolution uses dnspython's async resolver, pointed at MAILFIX_DNS_SERVERS when set (never
  the system resolver then), else the system configuration.
- Every address we are about to connect to passes the AddressGuard first (after every
  resolution, at every redirect hop); a refused address is never connected to.
- TLS trusts MAILFIX_CA_BUNDLE when set (else the system store); SNI and Host stay the name.
- httpx runs on a network backend that connects to the address *we* resolved and checked.
- Redirects are followed by us (bounded at MAX_REDIRECTS), bodies and lines are bounded, and
  every wait has a timeout.
- `port_map` (sandbox only, when it cannot bind real ports) maps (ip, port) -> real port.

Failure reasons other modules may rely on:
- DnsError.reason: "timeout" | "servfail" | "refused" | "malformed" | "no-servers", and from
  `resolve()` / `open_tcp()` / `request()` also "nxdomain" (no such host) and "nodata" (the
  host has no A/AAAA records).
- CertificateInvalid.reason: "expired" | "not-yet-valid" | "hostname" | "untrusted" | "other";
  `.cert` is what the peer presented (None only when it could not be read a second time).
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import ipaddress
import ssl
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from checks.net.certs import client_context, peer_cert_info, unverified_context, verify_reason
from checks.net.errors import (
    CertificateInvalid,
    ConnectFailed,
    NetError,
    NetTimeout,
    ProtocolViolation,
    ResponseTooLarge,
    TlsFailed,
    TooManyRedirects,
)
from checks.net.guard import AddressGuard
from checks.net.resolver import DnsClient
from checks.net.transport import (
    ADDRESS_INFO,
    GuardedBackend,
    SeamTransport,
    connect_failure,
)
from checks.net.types import CertInfo, DnsAnswer, Hop, HttpResponse, TlsInfo
from checks.settings import CheckSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_REDIRECTS = 10
MAX_BODY_BYTES = 1024 * 1024
MAX_LINE_BYTES = 8192

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_READ_CHUNK = 65536
_CLOSE_GRACE = 1.0  # a TLS close_notify that never comes must not hold aclose()
_USER_AGENT = "mailfix (connectivity diagnostics)"

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_LINE_BYTES",
    "MAX_REDIRECTS",
    "AddressGuard",
    "Connection",
    "IPAddress",
    "Network",
    "Timeouts",
]


@dataclass(frozen=True)
class Timeouts:
    dns: float = 3.0  # one DNS query, all servers and retries included
    connect: float = 5.0  # TCP connect (per address) and TLS handshake
    read: float = 10.0  # between bytes of a response
    total: float = 20.0  # one whole request / exchange, redirects included


class Connection(ABC):
    """A TCP (optionally TLS) connection opened through the seam, for line protocols.

    `Network.open_tcp` returns the implementation; this class is the interface.
    """

    address: str
    tls: TlsInfo | None

    @abstractmethod
    async def readline(self, *, limit: int = MAX_LINE_BYTES) -> bytes:
        """One line incl. CRLF. Raises NetTimeout, ResponseTooLarge, ConnectFailed (EOF)."""

    @abstractmethod
    async def write(self, data: bytes) -> None: ...

    @abstractmethod
    async def start_tls(self) -> TlsInfo:
        """Upgrade in place (STARTTLS) with the seam's verified context and the host as SNI."""

    @abstractmethod
    async def aclose(self) -> None: ...


def _server_hostname(host: str) -> str:
    return host.strip("[]").rstrip(".")


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class _LeanSSLProtocol(asyncio.sslproto.SSLProtocol):
    """asyncio's TLS protocol with a 16 KiB read buffer (one TLS record) instead of 256 KiB.

    asyncio allocates `max_size` bytes for every TLS connection up front; with 100 diagnoses
    in flight that was about 90 MB of the process's peak RSS (bench/diagnosis.py: 238 -> 144
    MB). Reads of bigger answers simply take more, smaller steps.
    """

    max_size = 16 * 1024


async def _start_tls(
    writer: asyncio.StreamWriter,
    context: ssl.SSLContext,
    *,
    server_hostname: str,
    handshake_timeout: float,
) -> None:
    """`StreamWriter.start_tls` (client side) on `_LeanSSLProtocol`.

    It does what `StreamWriter.start_tls` and `loop.start_tls` do (CPython 3.11-3.13), with
    the one class swapped; where those internals are missing, it is asyncio's own call.
    """
    protocol: Any = getattr(writer, "_protocol", None)
    transport = writer.transport
    if (
        protocol is None
        or not hasattr(protocol, "_replace_writer")
        or not hasattr(writer, "_transport")
        or not getattr(transport, "_start_tls_compatible", False)
    ):
        await writer.start_tls(
            context, server_hostname=server_hostname, ssl_handshake_timeout=handshake_timeout
        )
        return
    loop = asyncio.get_running_loop()
    await writer.drain()
    waiter = loop.create_future()
    ssl_protocol = _LeanSSLProtocol(
        loop,
        protocol,
        context,
        waiter,
        server_side=False,
        server_hostname=server_hostname,
        call_connection_made=False,
        ssl_handshake_timeout=handshake_timeout,  # type: ignore[arg-type]  # typeshed: int
    )
    # As loop.start_tls: pause, so no data reaches the TLS protocol before connection_made.
    transport.pause_reading()  # type: ignore[attr-defined]
    transport.set_protocol(ssl_protocol)
    made = loop.call_soon(ssl_protocol.connection_made, transport)
    resumed = loop.call_soon(transport.resume_reading)  # type: ignore[attr-defined]
    try:
        await waiter
    except BaseException:
        transport.close()
        made.cancel()
        resumed.cancel()
        raise
    writer._transport = ssl_protocol._app_transport
    protocol._replace_writer(writer)


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        async with asyncio.timeout(_CLOSE_GRACE):
            await writer.wait_closed()
    except (TimeoutError, OSError, ssl.SSLError):
        writer.transport.abort()


class _StreamConnection(Connection):
    def __init__(
        self,
        net: Network,
        *,
        host: str,
        port: int,
        ip: str,
        real_port: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.host = host
        self.port = port
        self.address = ip
        self.tls = None
        self._net = net
        self._real_port = real_port
        self._reader = reader
        self._writer = writer
        self._buffer = bytearray()
        self._closed = False
        # What was said in plaintext (None = one line read, bytes = written), so that after a
        # failed STARTTLS we can replay it on a second connection to read the certificate.
        self._transcript: list[bytes | None] = []

    async def readline(self, *, limit: int = MAX_LINE_BYTES) -> bytes:
        while True:
            end = self._buffer.find(b"\n", 0, limit)
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                if self.tls is None:
                    self._transcript.append(None)
                return line
            if len(self._buffer) >= limit:
                raise ResponseTooLarge(
                    f"{self.host}:{self.port}: line longer than {limit} bytes", host=self.host
                )
            chunk = await self._read()
            if not chunk:
                raise ConnectFailed(
                    f"{self.host}:{self.port}: connection closed by the server", host=self.host
                )
            self._buffer += chunk

    async def _read(self) -> bytes:
        try:
            async with asyncio.timeout(self._net.timeouts.read):
                return await self._reader.read(_READ_CHUNK)
        except TimeoutError as exc:
            raise NetTimeout(
                f"{self.host}:{self.port}: no data for {self._net.timeouts.read:g} s",
                host=self.host,
            ) from exc
        except (OSError, ssl.SSLError, EOFError) as exc:
            raise ConnectFailed(
                f"{self.host}:{self.port}: read failed: {exc}", host=self.host
            ) from exc

    async def write(self, data: bytes) -> None:
        if self.tls is None:
            self._transcript.append(bytes(data))
        try:
            self._writer.write(data)
            async with asyncio.timeout(self._net.timeouts.read):
                await self._writer.drain()
        except TimeoutError as exc:
            raise NetTimeout(f"{self.host}:{self.port}: write timed out", host=self.host) from exc
        except (OSError, ssl.SSLError, RuntimeError) as exc:
            # RuntimeError: asyncio refuses writes on a transport that is already closing
            raise ConnectFailed(
                f"{self.host}:{self.port}: write failed: {exc}", host=self.host
            ) from exc

    async def start_tls(self) -> TlsInfo:
        if self.tls is not None:
            raise TlsFailed(f"{self.host}:{self.port}: TLS is already on", host=self.host)
        if self._buffer:
            # Bytes that arrived with the STARTTLS reply would be read as if they came over
            # TLS: the classic STARTTLS command-injection hole (CVE-2011-0411 and kin).
            raise ProtocolViolation(
                f"{self.host}:{self.port}: server sent data after its STARTTLS reply",
                host=self.host,
            )
        return await self._handshake(replay=True)

    async def _handshake(self, *, replay: bool) -> TlsInfo:
        net = self._net
        try:
            async with asyncio.timeout(net.timeouts.connect):
                await _start_tls(
                    self._writer,
                    net.ssl_context,
                    server_hostname=_server_hostname(self.host),
                    handshake_timeout=net.timeouts.connect,
                )
        except ssl.SSLCertVerificationError as exc:
            cert = await net._presented_cert(
                self.host, self.address, self._real_port, self._transcript if replay else None
            )
            raise CertificateInvalid(
                f"{self.host}:{self.port}: certificate did not verify: {exc.verify_message}",
                host=self.host,
                reason=verify_reason(exc),
                cert=cert,
            ) from exc
        except ssl.SSLError as exc:
            raise TlsFailed(
                f"{self.host}:{self.port}: TLS handshake failed ({exc.reason or exc})",
                host=self.host,
            ) from exc
        except TimeoutError as exc:
            raise NetTimeout(
                f"{self.host}:{self.port}: TLS handshake timed out", host=self.host
            ) from exc
        except (OSError, EOFError) as exc:
            raise TlsFailed(
                f"{self.host}:{self.port}: connection closed during the TLS handshake",
                host=self.host,
            ) from exc
        ssl_object = self._writer.get_extra_info("ssl_object")
        cert = peer_cert_info(ssl_object)
        if cert is None:
            raise TlsFailed(f"{self.host}:{self.port}: no server certificate", host=self.host)
        cipher = ssl_object.cipher()
        self.tls = TlsInfo(
            host=self.host,
            port=self.port,
            address=self.address,
            version=ssl_object.version() or "",
            cipher=cipher[0] if cipher else "",
            cert=cert,
        )
        return self.tls

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._net._connections.discard(self)
        await _close_writer(self._writer)


class Network:
    """Owns resolution, the guard, TLS, timeouts and the HTTP client of one diagnosis.

    Cheap to create (everything heavy is built on first use); must be `aclose()`d, or used
    as `async with Network(settings) as net:`.
    """

    def __init__(
        self,
        settings: CheckSettings,
        *,
        timeouts: Timeouts | None = None,
        port_map: Mapping[tuple[str, int], int] | None = None,
    ) -> None:
        self.settings = settings
        self.timeouts = timeouts or Timeouts()
        self.port_map: dict[tuple[str, int], int] = {
            (str(ipaddress.ip_address(ip)), port): real
            for (ip, port), real in (port_map or {}).items()
        }
        self.guard = AddressGuard(settings.allowed_private_networks)
        self._dns = DnsClient(settings.dns_servers, self.timeouts.dns)
        self._ssl_context: ssl.SSLContext | None = None
        self._client: httpx.AsyncClient | None = None
        self._connections: set[_StreamConnection] = set()

    async def __aenter__(self) -> Network:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for conn in list(self._connections):
            await conn.aclose()
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
        await self._dns.aclose()

    # -- TLS ---------------------------------------------------------------------------------

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The verifying client context (MAILFIX_CA_BUNDLE or the system store, TLS >= 1.2)."""
        if self._ssl_context is None:
            self._ssl_context = client_context(self.settings.ca_bundle)
        return self._ssl_context

    async def _presented_cert(
        self, host: str, ip: str, real_port: int, transcript: list[bytes | None] | None = None
    ) -> CertInfo | None:
        """Connect again without verification, only to read the certificate the peer shows.

        `ip` already passed the guard. With a transcript (STARTTLS), the plaintext part of the
        conversation is replayed first. Best effort: None when anything goes wrong.
        """
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.timeouts.connect):
                reader, writer = await asyncio.open_connection(ip, real_port)
                if transcript:
                    probe = _StreamConnection(
                        self,
                        host=host,
                        port=real_port,
                        ip=ip,
                        real_port=real_port,
                        reader=reader,
                        writer=writer,
                    )
                    for step in transcript:
                        if step is None:
                            await probe.readline()
                        else:
                            await probe.write(step)
                await _start_tls(
                    writer,
                    unverified_context(),
                    server_hostname=_server_hostname(host),
                    handshake_timeout=self.timeouts.connect,
                )
                return peer_cert_info(writer.get_extra_info("ssl_object"))
        except (NetError, OSError, ssl.SSLError, TimeoutError, EOFError):
            return None
        finally:
            if writer is not None:
                writer.transport.abort()

    # -- DNS ---------------------------------------------------------------------------------

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        """Ask for `rdtype` records of `name`. NXDOMAIN/no data are answers; raises DnsError."""
        return await self._dns.query(name, rdtype)

    async def resolve(self, host: str) -> list[IPAddress]:
        """A and AAAA (IP literals pass through), guarded. Raises DnsError, BlockedAddress.

        DnsError.reason is "nxdomain" when the host does not exist and "nodata" when it has
        no addresses, besides the query reasons.
        """
        literal = _ip_literal(host)
        if literal is not None:
            return self.guard.check(host, [literal])
        ips = await self._dns.addresses(host)
        return self.guard.check(host, ips)

    # -- TCP / TLS ---------------------------------------------------------------------------

    def _real_port(self, ip: IPAddress | str, port: int) -> int:
        return self.port_map.get((str(ip), port), port)

    async def open_tcp(
        self,
        host: str,
        port: int,
        *,
        tls: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 - contract; bounds the whole opening
    ) -> Connection:
        """Resolve, guard, connect (trying each allowed address), optional implicit TLS.

        `timeout` bounds the whole opening (resolution, connects, handshake; default
        Timeouts.total); each connect attempt is also bounded by Timeouts.connect.
        """
        budget = self.timeouts.total if timeout is None else timeout
        try:
            async with asyncio.timeout(budget):
                ips = await self.resolve(host)
                conn = await self._connect_any(host, port, ips)
                if tls:
                    try:
                        await conn._handshake(replay=False)
                    except BaseException:
                        await conn.aclose()
                        raise
        except TimeoutError as exc:
            raise NetTimeout(
                f"{host}:{port}: no connection within {budget:g} s", host=host
            ) from exc
        return conn

    async def _connect_any(self, host: str, port: int, ips: list[IPAddress]) -> _StreamConnection:
        failures: list[tuple[str, BaseException]] = []
        for ip in ips:
            real_port = self._real_port(ip, port)
            try:
                async with asyncio.timeout(self.timeouts.connect):
                    reader, writer = await asyncio.open_connection(str(ip), real_port)
            except (OSError, TimeoutError) as exc:
                failures.append((str(ip), exc))
                continue
            conn = _StreamConnection(
                self,
                host=host,
                port=port,
                ip=str(ip),
                real_port=real_port,
                reader=reader,
                writer=writer,
            )
            self._connections.add(conn)
            return conn
        raise connect_failure(host, port, failures)

    async def tls_probe(self, host: str, port: int = 443) -> TlsInfo:
        """Handshake and certificate. Raises CertificateInvalid carrying what was presented."""
        conn = await self.open_tcp(host, port, tls=True)
        try:
            assert conn.tls is not None  # open_tcp(tls=True) either handshakes or raises
            return conn.tls
        finally:
            await conn.aclose()

    # -- HTTP --------------------------------------------------------------------------------

    def _http_client(self) -> httpx.AsyncClient:
        if self._client is None:
            backend = GuardedBackend(
                resolve=self.resolve,
                port_map=self.port_map,
                connect_timeout=self.timeouts.connect,
                presented_cert=self._presented_cert,
            )
            t = self.timeouts
            self._client = httpx.AsyncClient(
                transport=SeamTransport(ssl_context=self.ssl_context, backend=backend),
                trust_env=False,  # no proxies or netrc from the environment
                follow_redirects=False,  # we follow them ourselves, guarding every hop
                timeout=httpx.Timeout(connect=t.connect, read=t.read, write=t.read, pool=t.connect),
                headers={"User-Agent": _USER_AGENT},
            )
        return self._client

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        follow_redirects: bool = True,
        max_redirects: int = MAX_REDIRECTS,
        max_body: int = MAX_BODY_BYTES,
        timeout: float | None = None,  # noqa: ASYNC109 - contract; bounds redirects too
        on_tls_answer: Callable[[], None] | None = None,
    ) -> HttpResponse:
        """One HTTP exchange. `hops` records every request, redirects included.

        Raises NetError subclasses (CertificateInvalid carries the peer certificate).
        A redirect changes POST to GET only for 303 (301/302/307/308 keep the method and body,
        as Autodiscover clients do when re-posting to the Location).
        `on_tls_answer` is called when a hop's server has answered our TLS ClientHello (its
        handshake completed), or at once when a hop goes over a connection already open:
        the server is alive, however long its answer then takes.
        """
        try:
            current = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ValueError(f"invalid URL {url!r}: {exc}") from exc
        if current.scheme not in ("http", "https"):
            raise ValueError(f"only http and https URLs, not {url!r}")
        budget = self.timeouts.total if timeout is None else timeout
        client = self._http_client()
        hops: list[Hop] = []
        send_headers = dict(headers or {})
        extensions = {"trace": _tls_answer_trace(on_tls_answer)} if on_tls_answer else None
        try:
            async with asyncio.timeout(budget):
                while True:
                    with _http_errors(current.host):
                        request = client.build_request(
                            method,
                            current,
                            headers=send_headers,
                            content=content,
                            extensions=extensions,
                        )
                        response = await client.send(request, stream=True)
                    async with _closing(response):
                        address = _stream_info(response, ADDRESS_INFO)
                        location = response.headers.get("location")
                        hops.append(
                            Hop(
                                method=method,
                                url=str(current),
                                status=response.status_code,
                                location=location,
                                address=address if isinstance(address, str) else None,
                            )
                        )
                        if (
                            follow_redirects
                            and response.status_code in _REDIRECTS
                            and location is not None
                        ):
                            if len(hops) > max_redirects:
                                raise TooManyRedirects(
                                    f"{url}: more than {max_redirects} redirects",
                                    host=current.host,
                                )
                            target = _redirect_target(current, location)
                            if target.host != current.host or target.scheme != current.scheme:
                                send_headers = _without(send_headers, "authorization", "cookie")
                            if response.status_code == 303 and method != "HEAD":
                                method, content = "GET", None
                                send_headers = _without(
                                    send_headers, "content-type", "content-length"
                                )
                            current = target
                            continue
                        body, truncated = await _read_body(response, max_body, current.host)
                        ssl_object = _stream_info(response, "ssl_object")
                        return HttpResponse(
                            url=str(current),
                            status=response.status_code,
                            headers=_joined_headers(response.headers),
                            body=body,
                            truncated=truncated,
                            hops=hops,
                            cert=peer_cert_info(ssl_object)
                            if isinstance(ssl_object, ssl.SSLObject)
                            else None,
                        )
        except TimeoutError as exc:
            raise NetTimeout(
                f"{url}: no complete answer within {budget:g} s", host=current.host
            ) from exc


def _tls_answer_trace(callback: Callable[[], None]) -> Callable[[str, dict[str, Any]], Any]:
    """An httpcore trace hook that calls `callback` when the server answers our ClientHello.

    httpcore reports `connection.connect_tcp.*` and `connection.start_tls.*` only when it
    opens a connection; a request on a pooled HTTPS connection starts with its headers.
    """
    opened = False

    async def trace(event: str, info: dict[str, Any]) -> None:
        nonlocal opened
        if event == "connection.connect_tcp.started":
            opened = True
        elif event == "connection.start_tls.complete" or (
            event == "http11.send_request_headers.started" and not opened
        ):
            callback()
        elif event == "http11.response_closed.complete":
            opened = False  # the next hop (a redirect) may open its own connection

    return trace


def _stream_info(response: httpx.Response, key: str) -> object:
    stream = response.extensions.get("network_stream")
    if stream is None:
        return None
    try:
        return stream.get_extra_info(key)
    except Exception:  # an exotic stream without that info is not worth failing a check
        return None


def _redirect_target(current: httpx.URL, location: str) -> httpx.URL:
    try:
        target = current.join(location)
    except (httpx.InvalidURL, ValueError) as exc:
        raise ProtocolViolation(
            f"{current}: unusable redirect Location {location!r}", host=current.host
        ) from exc
    if target.scheme not in ("http", "https") or not target.host:
        raise ProtocolViolation(
            f"{current}: redirect to a non-HTTP location {location!r}", host=current.host
        )
    return target


def _without(headers: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in names}


def _joined_headers(headers: httpx.Headers) -> dict[str, str]:
    joined: dict[str, str] = {}
    for name, value in headers.multi_items():
        key = name.lower()
        joined[key] = f"{joined[key]}, {value}" if key in joined else value
    return joined


async def _read_body(response: httpx.Response, limit: int, host: str) -> tuple[bytes, bool]:
    body = bytearray()
    with _http_errors(host):
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > limit:
                return bytes(body[:limit]), True
    return bytes(body), False


@contextlib.asynccontextmanager
async def _closing(response: httpx.Response) -> AsyncIterator[None]:
    try:
        yield
    finally:
        with contextlib.suppress(httpx.HTTPError, OSError, NetError):
            await response.aclose()


@contextlib.contextmanager
def _http_errors(host: str) -> Iterator[None]:
    """Map what httpx/httpcore/the OS raise into the seam's tree (NetError passes through)."""
    try:
        yield
    except NetError:
        raise
    except httpx.TimeoutException as exc:
        raise NetTimeout(f"{host}: timed out ({type(exc).__name__})", host=host) from exc
    except (httpx.ProtocolError, httpx.DecodingError, httpx.UnsupportedProtocol) as exc:
        raise ProtocolViolation(f"{host}: not valid HTTP: {exc}", host=host) from exc
    except httpx.InvalidURL as exc:
        raise ProtocolViolation(f"{host}: invalid URL: {exc}", host=host) from exc
    except (httpx.TransportError, OSError) as exc:
        raise ConnectFailed(f"{host}: connection failed: {exc}", host=host) from exc
    except ssl.SSLError as exc:
        raise TlsFailed(f"{host}: TLS failed: {exc}", host=host) from exc
    except TimeoutError as exc:  # pragma: no cover - asyncio's own timeouts are handled above
        raise NetTimeout(f"{host}: timed out", host=host) from exc
