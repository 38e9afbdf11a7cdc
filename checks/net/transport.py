"""httpx on our own network backend: connect to the address *we* resolved and guarded.

httpcore asks the backend for `connect_tcp(host, port)` with the URL's host name. We resolve
that name through the seam (dnspython, MAILFIX_DNS_SERVERS), pass the addresses through the
guard, apply the sandbox port map and connect to the IP. httpcore then runs TLS over that
stream with `server_hostname` = the name, and httpx writes `Host:` from the URL, so SNI and
Host stay the name while the socket goes where the guard allowed.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any

import httpcore
import httpx

from checks.net.certs import find_ssl_error, find_verify_error, verify_reason
from checks.net.errors import CertificateInvalid, ConnectFailed, NetError, NetTimeout, TlsFailed
from checks.net.guard import IPAddress
from checks.net.types import CertInfo

ADDRESS_INFO = "mailfix.address"  # get_extra_info key: the IP a stream is connected to

Resolve = Callable[[str], Awaitable[list[IPAddress]]]
PresentedCert = Callable[[str, str, int], Awaitable[CertInfo | None]]  # (host, ip, real port)


def is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError | httpcore.TimeoutException | NetTimeout)


def connect_failure(host: str, port: int, failures: list[tuple[str, BaseException]]) -> NetError:
    """One NetError for a host none of whose addresses accepted a connection."""
    detail = "; ".join(f"{ip}: {_describe(exc)}" for ip, exc in failures) or "no address"
    if failures and all(is_timeout(exc) for _, exc in failures):
        return NetTimeout(f"{host}:{port}: connect timed out ({detail})", host=host)
    return ConnectFailed(f"{host}:{port}: connect failed ({detail})", host=host)


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__ if isinstance(exc, httpcore.ConnectError) and exc.__cause__ else exc
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return str(cause) or type(cause).__name__


def _is_readable(sock: socket.socket | None) -> bool:
    """Whether a read would return at once (data or EOF), as httpcore's own check: on an idle
    pooled connection that means the server closed it. poll, not select: no FD_SETSIZE limit."""
    if sock is None or sock.fileno() < 0:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class GuardedStream(httpcore.AsyncNetworkStream):
    """A stream that knows the IP it is connected to and reports TLS failures our way."""

    def __init__(
        self,
        inner: httpcore.AsyncNetworkStream,
        *,
        host: str,
        ip: str,
        real_port: int,
        presented_cert: PresentedCert,
    ) -> None:
        self._inner = inner
        self._host = host
        self._ip = ip
        self._real_port = real_port
        self._presented_cert = presented_cert
        # httpcore asks for "is_readable" (pool bookkeeping) and "ssl_object" on every request,
        # and anyio rebuilds its whole table of stream attributes for each answer. Both objects
        # are fixed for the life of a stream (TLS makes a new GuardedStream), so ask once.
        self._socket: Any = inner.get_extra_info("socket")
        self._ssl_object: Any = inner.get_extra_info("ssl_object")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
    ) -> httpcore.AsyncNetworkStream:
        try:
            inner = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        except httpcore.ConnectTimeout as exc:
            raise NetTimeout(f"{self._host}: TLS handshake timed out", host=self._host) from exc
        except (httpcore.ConnectError, ssl.SSLError, OSError) as exc:
            verify = find_verify_error(exc)
            if verify is not None:
                cert = await self._presented_cert(self._host, self._ip, self._real_port)
                raise CertificateInvalid(
                    f"{self._host}: certificate did not verify: {verify.verify_message}",
                    host=self._host,
                    reason=verify_reason(verify),
                    cert=cert,
                ) from exc
            ssl_error = find_ssl_error(exc)
            detail = ssl_error.reason if ssl_error is not None else _describe(exc)
            raise TlsFailed(
                f"{self._host}: TLS handshake failed ({detail})", host=self._host
            ) from exc
        return GuardedStream(
            inner,
            host=self._host,
            ip=self._ip,
            real_port=self._real_port,
            presented_cert=self._presented_cert,
        )

    def get_extra_info(self, info: str) -> Any:
        if info == ADDRESS_INFO:
            return self._ip
        if info == "ssl_object":
            return self._ssl_object
        if info == "socket":
            return self._socket
        if info == "is_readable":  # what httpcore's anyio stream answers, minus the lookups
            return _is_readable(self._socket)
        return self._inner.get_extra_info(info)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    def __init__(
        self,
        *,
        resolve: Resolve,
        port_map: Mapping[tuple[str, int], int],
        connect_timeout: float,
        presented_cert: PresentedCert,
    ) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._resolve = resolve
        self._port_map = port_map
        self._connect_timeout = connect_timeout
        self._presented_cert = presented_cert

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        ips = await self._resolve(host)  # DnsError / BlockedAddress: nothing is sent
        limit = self._connect_timeout if timeout is None else min(timeout, self._connect_timeout)
        failures: list[tuple[str, BaseException]] = []
        for ip in ips:
            real_port = self._port_map.get((str(ip), port), port)
            try:
                stream = await self._inner.connect_tcp(
                    str(ip), real_port, timeout=limit, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout, OSError) as exc:
                failures.append((str(ip), exc))
                continue
            return GuardedStream(
                stream,
                host=host,
                ip=str(ip),
                real_port=real_port,
                presented_cert=self._presented_cert,
            )
        raise connect_failure(host, port, failures)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise ConnectFailed("unix sockets are not part of the network seam")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


# httpcore exception -> httpx exception, so an httpx client on this transport (msal later)
# sees the usual httpx tree. NetError from the backend passes through unchanged.
_HTTPX_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _httpx_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except NetError:
        raise
    except Exception as exc:
        for core_type, httpx_type in _HTTPX_ERRORS:
            if isinstance(exc, core_type):
                raise httpx_type(str(exc) or type(exc).__name__, request=request) from exc
        raise


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, inner: Any, request: httpx.Request) -> None:
        self._inner = inner
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors(self._request):
            async for part in self._inner:
                yield part

    async def aclose(self) -> None:
        aclose = getattr(self._inner, "aclose", None)
        if aclose is not None:
            with _httpx_errors(self._request):
                await aclose()


class SeamTransport(httpx.AsyncBaseTransport):
    """A minimal httpx transport around an httpcore pool that uses GuardedBackend."""

    def __init__(self, *, ssl_context: ssl.SSLContext, backend: GuardedBackend) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            http1=True,
            http2=False,
            retries=0,
            network_backend=backend,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors(request):
            response = await self._pool.handle_async_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream, request),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()
