"""A small DNS server for the sandbox world (UDP and TCP on one port, dnspython messages).

It answers like a recursive resolver would for the names it knows: CNAME chains inside the
zone are followed and returned whole, unknown names get NXDOMAIN with an SOA in the authority
section, known names without the asked type get an empty NOERROR. Faults are data: a name
(optionally one type of it) can SERVFAIL, NXDOMAIN, stay silent, answer garbage, REFUSE, or
always truncate over UDP so the client must retry over TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import struct
from collections.abc import Coroutine
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

_UDP_MIN = 512  # RFC 1035 limit without EDNS
_SOA = "ns.sandbox.invalid. hostmaster.sandbox.invalid. 1 3600 600 86400 300"


class DnsFaultKind(StrEnum):
    SERVFAIL = "servfail"
    NXDOMAIN = "nxdomain"
    SILENT = "silent"
    GARBAGE = "garbage"
    REFUSED = "refused"
    TRUNCATE = "truncate"  # always set TC over UDP to force TCP


_REPLY_CACHE = 4096  # replies kept by a DnsServer (the cache starts over when full)


def _key(name: str) -> str:
    return name.rstrip(".").lower()


@dataclass(frozen=True)
class _Record:
    rdata: dns.rdata.Rdata
    ttl: int


class Zone:
    """Records and faults, by name (case-insensitive, trailing dot optional).

    `follow_cnames=False` answers like an authoritative server that does not chase aliases:
    only the CNAME comes back and the client must ask again for the target.
    """

    def __init__(self, *, follow_cnames: bool = True) -> None:
        self.follow_cnames = follow_cnames
        self.version = 0  # changes with every record or fault added (the server's reply cache)
        self._records: dict[str, dict[dns.rdatatype.RdataType, list[_Record]]] = {}
        self._faults: dict[tuple[str, dns.rdatatype.RdataType | None], DnsFaultKind] = {}

    def add(self, name: str, rdtype: str, value: str, ttl: int = 300) -> None:
        """Add one record; `value` in presentation format ("10 mx.example.com.", '"v=spf1"')."""
        rdtype_value = dns.rdatatype.from_text(rdtype)
        rdata = dns.rdata.from_text(
            dns.rdataclass.IN, rdtype_value, value, origin=dns.name.root, relativize=False
        )
        by_type = self._records.setdefault(_key(name), {})
        by_type.setdefault(rdtype_value, []).append(_Record(rdata, ttl))
        self.version += 1

    def fault(self, name: str, kind: DnsFaultKind, rdtype: str | None = None) -> None:
        rdtype_value = dns.rdatatype.from_text(rdtype) if rdtype else None
        self._faults[(_key(name), rdtype_value)] = DnsFaultKind(kind)
        self.version += 1

    def fault_for(self, name: str, rdtype: dns.rdatatype.RdataType) -> DnsFaultKind | None:
        key = _key(name)
        return self._faults.get((key, rdtype)) or self._faults.get((key, None))

    def records(self, name: str, rdtype: dns.rdatatype.RdataType) -> list[_Record]:
        return self._records.get(_key(name), {}).get(rdtype, [])

    def exists(self, name: str) -> bool:
        """Known name, or an empty non-terminal above one."""
        key = _key(name)
        return key in self._records or any(k.endswith("." + key) for k in self._records)

    def soa_for(self, name: str) -> tuple[str, _Record]:
        """The SOA to put in the authority section: a configured one above `name`, or ours."""
        labels = _key(name).split(".")
        for i in range(len(labels)):
            owner = ".".join(labels[i:])
            found = self.records(owner, dns.rdatatype.SOA)
            if found:
                return owner, found[0]
        owner = ".".join(labels[-2:]) if len(labels) >= 2 else _key(name)
        rdata = dns.rdata.from_text(
            dns.rdataclass.IN, dns.rdatatype.SOA, _SOA, origin=dns.name.root, relativize=False
        )
        return owner, _Record(rdata, 300)


class DnsServer:
    def __init__(
        self, zone: Zone, host: str = "127.0.0.1", port: int = 0, *, latency_ms: float = 0
    ) -> None:
        self.zone = zone
        self.host = host
        self.port = port
        self.latency_ms = latency_ms
        self.queries: list[tuple[str, str, str]] = []  # (transport, name, rdtype) received
        self._tcp: asyncio.Server | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[object]] = set()
        self._bound: tuple[str, int] | None = None
        # Replies by (zone version, follow_cnames, transport, query without its id): the same
        # question asked again is answered without dnspython parsing and rendering it again (a
        # quarter of a benchmark world's CPU). Bounded; garbage replies are never kept.
        self._replies: dict[tuple[int, bool, str, bytes], tuple[tuple[str, str], bytes | None]] = {}

    @property
    def address(self) -> tuple[str, int]:
        if self._bound is None:
            raise RuntimeError("DnsServer is not started")
        return self._bound

    async def __aenter__(self) -> DnsServer:
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
        loop = asyncio.get_running_loop()
        last_error: OSError | None = None
        # TCP first on the requested (maybe ephemeral) port, then UDP on the same number;
        # when another socket holds that UDP port, start over with a fresh TCP port.
        for _ in range(20):
            tcp = await asyncio.start_server(self._serve_tcp, self.host, self.port)
            port = tcp.sockets[0].getsockname()[1]
            try:
                udp, _protocol = await loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(self), local_addr=(self.host, port)
                )
            except OSError as exc:
                tcp.close()
                await tcp.wait_closed()
                if exc.errno != errno.EADDRINUSE or self.port:
                    raise
                last_error = exc
                continue
            # A benchmark's burst of queries overflows the default receive buffer, and every
            # dropped datagram costs the client a retry; 4 MiB (the kernel may cap it) is ample.
            with contextlib.suppress(OSError):
                udp.get_extra_info("socket").setsockopt(
                    socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024
                )
            self._tcp, self._udp, self._bound = tcp, udp, (self.host, port)
            return
        raise RuntimeError("could not bind UDP and TCP on one port") from last_error

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
        for writer in list(self._writers):
            writer.transport.abort()
        # The connection handlers end on their own once their transport is gone.
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=1.0)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._tcp is not None:
            await self._tcp.wait_closed()
            self._tcp = None

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- answering -------------------------------------------------------------------------

    async def _answer(self, wire: bytes, transport: str) -> bytes | None:
        """The reply to one query on the wire, or None for no reply."""
        key = (self.zone.version, self.zone.follow_cnames, transport, wire[2:])
        cached = self._replies.get(key)
        if cached is not None:
            asked, reply = cached
            self.queries.append((transport, *asked))
            if self.latency_ms:
                await asyncio.sleep(self.latency_ms / 1000)
            return None if reply is None else wire[:2] + reply
        computed = await self._compute(wire, transport)
        if computed is None:
            return None
        asked, reply, keep = computed
        if keep:
            if len(self._replies) >= _REPLY_CACHE:
                self._replies.clear()
            self._replies[key] = (asked, None if reply is None else reply[2:])
        return reply

    async def _compute(
        self, wire: bytes, transport: str
    ) -> tuple[tuple[str, str], bytes | None, bool] | None:
        """((name, type) asked, the reply or None, whether it may be kept), None when the
        datagram is not a question we answer (nothing is recorded then)."""
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # garbage in: answer FORMERR when we can read an id, else nothing
            if len(wire) < 2:
                return None
            formerr = wire[:2] + b"\x80\x01" + b"\x00" * 8  # QR, rcode FORMERR, no sections
            return ("", ""), formerr, False
        if query.flags & dns.flags.QR or len(query.question) != 1:
            return None
        question = query.question[0]
        qname, rdtype = question.name, question.rdtype
        asked = (_key(qname.to_text()), dns.rdatatype.to_text(rdtype))
        self.queries.append((transport, *asked))
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        chain_fault = self._resolve(response, qname, rdtype)
        if chain_fault is DnsFaultKind.SILENT:
            return asked, None, True
        if chain_fault is DnsFaultKind.GARBAGE:
            # The query id (so the reply looks like ours), then bytes no parser accepts:
            # section counts of 65535 with nothing behind them.
            return asked, wire[:2] + b"\x81\x80" + b"\xff\xff" * 4 + os.urandom(24), False
        if chain_fault in (DnsFaultKind.SERVFAIL, DnsFaultKind.REFUSED):
            response = dns.message.make_response(query)
            response.flags |= dns.flags.RA
            response.set_rcode(
                dns.rcode.SERVFAIL if chain_fault is DnsFaultKind.SERVFAIL else dns.rcode.REFUSED
            )
        if transport == "udp":
            limit = max(_UDP_MIN, query.payload if query.edns >= 0 else _UDP_MIN)
            full = response.to_wire(max_size=65535)
            if chain_fault is DnsFaultKind.TRUNCATE or len(full) > limit:
                short = dns.message.make_response(query)
                short.flags |= dns.flags.RA | dns.flags.TC
                return asked, short.to_wire(), True
            return asked, full, True
        return asked, response.to_wire(max_size=65535), True

    def _resolve(
        self,
        response: dns.message.Message,
        qname: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
    ) -> DnsFaultKind | None:
        """Fill `response`; returns the first fault met along the CNAME chain."""
        zone = self.zone
        owner = qname
        truncate: DnsFaultKind | None = None
        for _ in range(16):
            fault = zone.fault_for(owner.to_text(), rdtype)
            if fault is DnsFaultKind.NXDOMAIN:
                response.set_rcode(dns.rcode.NXDOMAIN)
                self._add_soa(response, owner)
                return None
            if fault is not None and fault is not DnsFaultKind.TRUNCATE:
                return fault
            truncate = truncate or fault
            found = zone.records(owner.to_text(), rdtype)
            if found:
                self._add(response, owner, rdtype, found)
                return truncate
            aliases = zone.records(owner.to_text(), dns.rdatatype.CNAME)
            if aliases:
                self._add(response, owner, dns.rdatatype.CNAME, aliases[:1])
                target = aliases[0].rdata.target  # type: ignore[attr-defined]
                if not zone.follow_cnames:
                    return truncate
                owner = target
                continue
            if not zone.exists(owner.to_text()):
                response.set_rcode(dns.rcode.NXDOMAIN)
            self._add_soa(response, owner)
            return truncate
        return DnsFaultKind.SERVFAIL  # a CNAME loop in the zone: what resolvers answer

    @staticmethod
    def _add(
        response: dns.message.Message,
        owner: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        records: list[_Record],
    ) -> None:
        rrset = response.find_rrset(response.answer, owner, dns.rdataclass.IN, rdtype, create=True)
        for record in records:
            rrset.add(record.rdata, record.ttl)

    def _add_soa(self, response: dns.message.Message, name: dns.name.Name) -> None:
        owner, record = self.zone.soa_for(name.to_text())
        rrset = response.find_rrset(
            response.authority,
            dns.name.from_text(owner),
            dns.rdataclass.IN,
            dns.rdatatype.SOA,
            create=True,
        )
        rrset.add(record.rdata, record.ttl)

    # -- transports ------------------------------------------------------------------------

    async def _reply_udp(self, wire: bytes, addr: tuple[str, int]) -> None:
        try:
            reply = await self._answer(wire, "udp")
        except Exception:  # a bug or odd input must not take the server down
            return
        if reply is not None and self._udp is not None:
            self._udp.sendto(reply, addr)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
        lock = asyncio.Lock()
        try:
            while True:
                header = await reader.readexactly(2)
                (length,) = struct.unpack("!H", header)
                wire = await reader.readexactly(length)
                self._spawn(self._reply_tcp(wire, writer, lock))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            if handler is not None:
                self._handlers.discard(handler)
            # Let pending answers on this connection finish, but never wait for silence.
            writer.close()

    async def _reply_tcp(
        self, wire: bytes, writer: asyncio.StreamWriter, lock: asyncio.Lock
    ) -> None:
        try:
            reply = await self._answer(wire, "tcp")
        except Exception:  # a bug or odd input must not take the server down
            return
        if reply is None or writer.is_closing():
            return
        async with lock:
            with contextlib.suppress(ConnectionError, OSError):
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self._server = server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._server._spawn(self._server._reply_udp(data, addr))

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors about earlier replies: nothing to do
