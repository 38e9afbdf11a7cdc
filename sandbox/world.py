"""A scenario brought to life on loopback: DNS, TLS, HTTP and mail servers on real ports.

    async with World(get("healthy")) as world:
        async with world.network() as net:
            report = await diagnose(address, Client.OUTLOOK, settings=world.settings(), net=net)

Each world takes its own block 127.A.B.0/24 (A, B random in 100..254, never 127.0.0.0/24, so
127.0.0.1 stays a loopback address the guard must refuse). The DNS server answers on .53; hosts
get .10, .11, … in scenario order. Listeners bind the real ports (53, 80, 443, 587, 993, 995);
where that is not permitted they bind an ephemeral port and `port_map` tells the seam.
Latency, black holes and garbage are played by a small TCP front (`sandbox.front`).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import random
import socket
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from checks.net.seam import Network
from checks.settings import CheckSettings, Cloud
from sandbox.ca import IssuedCert, SandboxCA
from sandbox.dns_server import DnsServer, Zone
from sandbox.front import Front
from sandbox.mail import MAX_LINE, TLS_HANDSHAKE_TIMEOUT, MailServer
from sandbox.scenario import CertSpec, Fault, Host, Listener, Protocol, Scenario, a_label
from sandbox.services import build_app
from sandbox.services.base import SeenRequest, seen_requests
from sandbox.tenant.build import app_certificate
from sandbox.tenant.state import TenantState

DNS_HOST = 53  # last octet of the DNS server
FIRST_HOST = 10  # last octet of the first host
MAX_BLOCK_TRIES = 20


class WorldError(RuntimeError):
    """The world could not start (no free address block, a port we cannot bind, …)."""


# ---- certificates, shared across worlds of one process -----------------------------------

_issued: dict[tuple[int, CertSpec], tuple[IssuedCert, ssl.SSLContext]] = {}


@functools.cache
def shared_ca() -> SandboxCA:
    """The process-wide sandbox CA. Worlds share it so certificates are issued once."""
    return SandboxCA()


def _server_context(ca: SandboxCA, spec: CertSpec) -> ssl.SSLContext:
    # Keyed by the CA's identity: a world given its own CA never gets another CA's certs.
    # (A cached expired/valid certificate stays right for the life of a test process.)
    key = (id(ca), spec)
    hit = _issued.get(key)
    if hit is None:
        issued = ca.issue(spec.names, kind=spec.kind, org=spec.organization)
        hit = (issued, issued.server_context())
        if ca is shared_ca():
            _issued[key] = hit
    return hit[1]


# ---- the world ---------------------------------------------------------------------------


@dataclass
class _Running:
    host: Host
    listener: Listener
    port: int  # the port clients dial (real, or ephemeral if not permitted)
    runner: web.AppRunner | None = None
    app: web.Application | None = None
    server: asyncio.Server | None = None
    mail: MailServer | None = None
    front: Front | None = None


@dataclass
class HostLog:
    """What one host saw: HTTP requests (per app) and mail protocol events."""

    http: list[SeenRequest] = field(default_factory=list)
    mail: list[str] = field(default_factory=list)


class World:
    """Async context manager running `scenario` on loopback. See the module docstring."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        base: str | None = None,
        ca: SandboxCA | None = None,
        real_ports: bool = True,
    ) -> None:
        """`base`: the block to use ("127.A.B" or "127.A.B.0/24"), random when None.
        `ca`: issue certificates from this CA instead of the process-wide one.
        `real_ports=False` binds ephemeral ports everywhere (as an unprivileged run would) and
        reports them in `port_map` — for tests of that path."""
        self.scenario = scenario
        self._base_arg = base
        self._ca = ca
        self._real_ports = real_ports
        self.prefix = ""  # "127.A.B"
        self.port_map: dict[tuple[str, int], int] = {}
        self._ips: dict[str, str] = {}  # host name (any of its names) -> ip
        self._running: list[_Running] = []
        self._mail_logs: dict[str, list[str]] = {}
        self._dns: DnsServer | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._ca_path: Path | None = None
        self._started = False
        # The live tenant (login, Graph, Exchange admin share it; fixes change it).
        self.tenant: TenantState | None = (
            TenantState(scenario.tenant, scenario.cloud) if scenario.tenant is not None else None
        )

    # -- lifecycle --

    async def __aenter__(self) -> World:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._started:
            raise WorldError("world already started")
        self._started = True
        try:
            await self._start_dns()
            ca = self._ca or shared_ca()
            self._tmp = tempfile.TemporaryDirectory(prefix="mailfix-world-")
            self._ca_path = Path(self._tmp.name) / "ca.pem"
            ca.write_bundle(self._ca_path)
            for host in self.scenario.hosts:
                ip = self._ips[host.name]
                self._mail_logs[host.name] = []
                for listener in host.listeners:
                    await self._start_listener(ca, host, listener, ip)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop every server and hang up every connection. Safe to call twice."""
        running, self._running = self._running, []
        for item in running:
            if item.front is not None:
                await item.front.stop()
            if item.server is not None:
                item.server.close()
            if item.mail is not None:
                await item.mail.aclose()
            if item.server is not None:
                await item.server.wait_closed()
            if item.runner is not None:
                await item.runner.cleanup()
        if self._dns is not None:
            await self._dns.stop()
            self._dns = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def _start_dns(self) -> None:
        """Pick a free block and start the DNS server on its .53 (the block's claim)."""
        tries = 1 if self._base_arg else MAX_BLOCK_TRIES
        last: OSError | None = None
        for _ in range(tries):
            self.prefix = _prefix(self._base_arg) if self._base_arg else _random_prefix()
            self._assign_addresses()
            zone = self._zone()
            ip = f"{self.prefix}.{DNS_HOST}"
            port = 53 if self._real_ports else 0
            server = DnsServer(zone, ip, port, latency_ms=self.scenario.dns_latency_ms)
            try:
                await server.start()
            except PermissionError:
                server = DnsServer(zone, ip, 0, latency_ms=self.scenario.dns_latency_ms)
                await server.start()
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                last = exc
                continue
            self._dns = server
            return
        raise WorldError(f"no free loopback block for a world: {last}")

    def _assign_addresses(self) -> None:
        self._ips.clear()
        octet = FIRST_HOST
        for host in self.scenario.hosts:
            if octet == DNS_HOST:
                octet += 1
            if octet > 254:
                raise WorldError("too many hosts for one /24")
            for name in host.names:
                self._ips[name] = f"{self.prefix}.{octet}"
            octet += 1

    def _zone(self) -> Zone:
        zone = Zone()
        for host in self.scenario.hosts:
            for name in host.names:
                zone.add(name, "A", self._ips[name], 300)
        for record in self.scenario.records:
            zone.add(
                record.name, record.rdtype, _presentation(record.rdtype, record.value), record.ttl
            )
        for fault in self.scenario.dns_faults:
            zone.fault(fault.name, fault.kind, rdtype=fault.rdtype)
        return zone

    async def _start_listener(self, ca: SandboxCA, host: Host, listener: Listener, ip: str) -> None:
        if listener.fault is Fault.REFUSED:
            return  # nothing listens: the kernel refuses
        sock, port = _bind(ip, listener.port if self._real_ports else 0)
        if port != listener.port:
            self.port_map[(ip, listener.port)] = port
        item = _Running(host, listener, port)
        self._running.append(item)
        try:
            if listener.fault is Fault.BLACK_HOLE:
                item.front = Front("black-hole")
                await item.front.start(sock)
                return
            if listener.fault is Fault.GARBAGE:
                item.front = Front("garbage")
                await item.front.start(sock)
                return
            latency = host.latency_for(listener)
            serve_sock = sock
            if latency:
                # Server on an internal port; the front takes the public one.
                serve_sock, inner = _bind(ip, 0)
                item.front = Front("forward", upstream=(ip, inner), latency_ms=latency)
                await item.front.start(sock)
            await self._serve(ca, item, serve_sock)
        except BaseException:
            sock.close()
            raise

    async def _serve(self, ca: SandboxCA, item: _Running, sock: socket.socket) -> None:
        host, listener = item.host, item.listener
        spec = host.cert_for(listener)
        tls = _server_context(ca, spec) if spec is not None else None
        log = self._mail_logs[host.name]
        if listener.protocol in (Protocol.HTTP, Protocol.HTTPS):
            assert listener.app is not None
            app = build_app(listener.app, self.tenant)
            runner = web.AppRunner(
                app, handle_signals=False, access_log=None, shutdown_timeout=0.25
            )
            await runner.setup()
            item.app, item.runner = app, runner
            site = web.SockSite(
                runner, sock, ssl_context=tls if listener.protocol is Protocol.HTTPS else None
            )
            await site.start()
            return
        assert listener.mail is not None
        mail = MailServer(
            listener.mail, tls, log=lambda event: log.append(f"{listener.port} {event}")
        )
        item.mail = mail
        implicit = listener.protocol in (Protocol.IMAPS, Protocol.POPS)
        item.server = await asyncio.start_server(
            mail.handle,
            sock=sock,
            ssl=tls if implicit else None,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if implicit else None,
            limit=MAX_LINE,
        )

    # -- what tests and the seam need --

    @property
    def network_cidr(self) -> str:
        return f"{self.prefix}.0/24"

    @property
    def dns_address(self) -> tuple[str, int]:
        if self._dns is None:
            raise WorldError("world not started")
        host, port = self._dns.address[:2]
        return str(host), int(port)

    @property
    def ca_path(self) -> Path:
        if self._ca_path is None:
            raise WorldError("world not started")
        return self._ca_path

    def ip_of(self, host: str) -> str:
        """The loopback address of a host, by any of its names (Unicode or A-label)."""
        return self._ips[a_label(host)]

    def port_of(self, host: str, port: int) -> int:
        """The port to dial for `host:port` (the real one unless it had to be remapped)."""
        ip = self.ip_of(host)
        return self.port_map.get((ip, port), port)

    def settings(self, **overrides: Any) -> CheckSettings:
        dns_ip, dns_port = self.dns_address
        fields: dict[str, Any] = {
            "dns_servers": [f"{dns_ip}:{dns_port}"],
            "ca_bundle": self.ca_path,
            "allowed_private_networks": [self.network_cidr],
            "cloud": self.scenario.cloud,
        }
        fields.update(self.tenant_credentials())
        fields.update(overrides)
        return CheckSettings(**fields)

    def env(self, *, certificate: bool = False) -> dict[str, str]:
        """MAILFIX_* variables pointing a subprocess (CLI, bot) at this world. With tenant data
        also MAILFIX_TENANT_ID, MAILFIX_CLIENT_ID and MAILFIX_CLIENT_SECRET — or, with
        `certificate`, MAILFIX_CLIENT_CERTIFICATE (the sandbox app's PEM, written next to the CA
        bundle) instead of the secret."""
        dns_ip, dns_port = self.dns_address
        env = {
            "MAILFIX_DNS_SERVERS": f"{dns_ip}:{dns_port}",
            "MAILFIX_CA_BUNDLE": str(self.ca_path),
            "MAILFIX_ALLOWED_PRIVATE_NETWORKS": self.network_cidr,
        }
        if self.scenario.cloud is not Cloud.GLOBAL:
            env["MAILFIX_CLOUD"] = self.scenario.cloud.value
        for name, value in self.tenant_credentials(certificate=certificate).items():
            env[f"MAILFIX_{name.upper()}"] = value
        return env

    def client_certificate_path(self) -> Path:
        """The sandbox app's certificate and key (PEM) in this world's directory."""
        if self._tmp is None:
            raise WorldError("world not started")
        path = Path(self._tmp.name) / "mailfix-app.pem"
        if not path.exists():
            path.touch(mode=0o600)
            path.write_bytes(app_certificate().pem)
        return path

    def tenant_credentials(self, *, certificate: bool = False) -> dict[str, str]:
        """tenant_id, client_id and client_secret of the scenario's app (first valid secret) or,
        with `certificate`, client_certificate (a path); empty without tenant data. The
        sandbox's secrets and keys are test data, not credentials."""
        tenant = self.scenario.tenant
        if tenant is None:
            return {}
        out = {"tenant_id": tenant.tenant_id, "client_id": tenant.app.client_id}
        if certificate:
            out["client_certificate"] = str(self.client_certificate_path())
            return out
        secret = next((s for s in tenant.app.secrets if not s.expired), None)
        secret = secret or next(iter(tenant.app.secrets), None)
        if secret is not None:
            out["client_secret"] = secret.value
        return out

    def network(self, **kwargs: Any) -> Network:
        """A seam for this world (use it as `async with world.network() as net`)."""
        return Network(self.settings(), port_map=dict(self.port_map), **kwargs)

    @property
    def dns_queries(self) -> list[Any]:
        if self._dns is None:
            raise WorldError("world not started")
        return list(self._dns.queries)

    def log(self, host: str) -> HostLog:
        """HTTP requests and mail events `host` has seen so far, oldest first."""
        name = self.scenario.host(host).name
        out = HostLog(mail=list(self._mail_logs.get(name, [])))
        for item in self._running:
            if item.host.name == name and item.app is not None:
                out.http.extend(seen_requests(item.app))
        return out

    def requests(self, host: str, port: int | None = None) -> list[SeenRequest]:
        name = self.scenario.host(host).name
        seen: list[SeenRequest] = []
        for item in self._running:
            if item.host.name != name or item.app is None:
                continue
            if port is None or item.listener.port == port:
                seen.extend(seen_requests(item.app))
        return seen

    def listeners(self) -> Iterator[tuple[str, str, int, int]]:
        """(host name, ip, scenario port, port actually bound) for everything listening."""
        for item in self._running:
            ip = self._ips[item.host.name]
            yield item.host.name, ip, item.listener.port, item.port


def _presentation(rdtype: str, value: str) -> str:
    """Scenario TXT values are plain text; the zone wants quoted strings of <= 255 octets."""
    if rdtype != "TXT":
        return value
    chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
    return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)


def _random_prefix() -> str:
    return f"127.{random.randint(100, 254)}.{random.randint(100, 254)}"


def _prefix(base: str) -> str:
    """'127.A.B', '127.A.B.0/24' or '127.A.B.0' -> '127.A.B'; refuses 127.0.0.0/24."""
    text = base.split("/", maxsplit=1)[0]
    parts = text.split(".")
    if len(parts) == 3:
        parts.append("0")
    net = ipaddress.IPv4Network(".".join([*parts[:3], "0"]) + "/24")
    if not net.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")):
        raise WorldError(f"a world lives on loopback only, not {base}")
    if net == ipaddress.IPv4Network("127.0.0.0/24"):
        raise WorldError("127.0.0.0/24 is reserved: 127.0.0.1 must stay a disallowed address")
    return ".".join(parts[:3])


def _bind(ip: str, port: int) -> tuple[socket.socket, int]:
    """A listening TCP socket on ip:port; an ephemeral port if the real one is not permitted."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((ip, port))
        except PermissionError:
            sock.bind((ip, 0))
        sock.listen(1024)  # bursts of 100 diagnoses connect at once (benchmarks)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock, int(sock.getsockname()[1])
