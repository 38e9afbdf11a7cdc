"""DNS for the seam: dnspython's async resolver, bounded, cached, and safe against hostile replies.

When MAILFIX_DNS_SERVERS is set we never touch the system configuration. Every failure comes out
as `DnsError` with a stable `reason`; NXDOMAIN and "no data" are answers (`DnsAnswer.rcode`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import struct
from collections.abc import Sequence
from typing import Any

import dns._asyncbackend
import dns.asyncresolver
import dns.exception
import dns.inet
import dns.ipv4
import dns.ipv6
import dns.message
import dns.name
import dns.nameserver
import dns.query
import dns.rdata
import dns.rdatatype
import dns.resolver
import dns.rrset

from checks.net.errors import DnsError
from checks.net.types import DnsAnswer
from checks.settings import DnsServer

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_CNAME_HOPS = 8
# After one of A/AAAA came back with addresses, wait at most this long for the other family.
# (RFC 8305 "Resolution Delay" suggests 50 ms; we wait longer because we use both families.)
SECOND_FAMILY_GRACE = 0.25
# EDNS payload of DNS Flag Day 2020: fits one unfragmented datagram; larger answers go TCP.
EDNS_PAYLOAD = 1232


class _Do53(dns.nameserver.Do53Nameserver):
    """A Do53 server queried our way over UDP; TCP (after truncation) stays dnspython's.

    - Undecodable UDP replies count as errors instead of being ignored. dnspython ignores
      unparseable datagrams by default (anti-spoofing), which turns a server that answers
      garbage into a silent timeout. We talk to servers we were configured with, so
      "malformed" is the more useful diagnosis. Truncation still falls back to TCP.
    - The exchange runs on a connected, non-blocking socket with `loop.sock_sendall` /
      `loop.sock_recv` instead of dnspython's asyncio datagram endpoint (a transport, a
      protocol and their futures per query): DNS was a quarter of a diagnosis's CPU. The
      connected socket also makes the kernel drop datagrams from anyone but the server,
      which is what dnspython's `ignore_unexpected` did.
    """

    async def async_query(  # noqa: PLR0917 - dnspython's signature
        self,
        request: dns.message.QueryMessage,
        timeout: float,  # noqa: ASYNC109 - dnspython's signature
        source: str | None,
        source_port: int,
        max_size: bool,
        backend: dns._asyncbackend.Backend,
        one_rr_per_rrset: bool = False,
        ignore_trailing: bool = False,
    ) -> dns.message.Message:
        if max_size:
            return await super().async_query(
                request,
                timeout,
                source,
                source_port,
                max_size,
                backend,
                one_rr_per_rrset,
                ignore_trailing,
            )
        family = dns.inet.af_for_address(self.address)
        loop = asyncio.get_running_loop()
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            if source is not None or source_port:
                any_address = "::" if family == socket.AF_INET6 else "0.0.0.0"  # noqa: S104
                sock.bind((source or any_address, source_port))
            sock.connect((self.address, self.port))  # sends nothing: only fixes the peer
            try:
                async with asyncio.timeout(timeout):
                    await loop.sock_sendall(sock, request.to_wire())
                    wire = await loop.sock_recv(sock, 65535)
            except TimeoutError as exc:
                # dnspython's Timeout, not the OSError TimeoutError: the resolver then
                # retries this server within the lifetime instead of dropping it.
                raise dns.exception.Timeout(timeout=timeout) from exc  # type: ignore[no-untyped-call]
        response = dns.message.from_wire(
            wire,
            keyring=request.keyring,
            request_mac=request.mac,
            one_rr_per_rrset=one_rr_per_rrset,
            ignore_trailing=ignore_trailing,
            raise_on_truncation=True,
        )
        if not request.is_response(response):
            raise dns.query.BadResponse
        return response


# --- the fast path: one UDP exchange for A and AAAA, read without dnspython's objects ---------
#
# A diagnosis asks about a dozen addresses; through dnspython's resolver each costs a request
# message, its rendering, a parsed response, an Answer and its chaining (a fifth of a diagnosis's
# CPU, bench/diagnosis.py). The usual reply is simple, so we read that kind ourselves and hand
# anything else (truncation, an error rcode, an odd record, a name we would have to escape,
# a malformed byte, silence) to the resolver, which asks again and decides as it always did.

_FAST_TYPES = frozenset({dns.rdatatype.A, dns.rdatatype.AAAA})
_CNAME, _SOA, _OPT, _CLASS_IN = 5, 6, 41, 1
_NOERROR, _NXDOMAIN = 0, 3
_PLAIN_LABEL = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_OPT_RR = b"\x00" + struct.pack("!HHIH", _OPT, EDNS_PAYLOAD, 0, 0)  # EDNS0, as the resolver


# (rcode, records or None, their TTL, CNAME targets followed, canonical name)
_Asked = tuple[str, list[str] | None, int | None, list[str], dns.name.Name]


class _Unusual(Exception):
    """A reply the fast path does not read: the resolver takes the question instead."""


def _query_wire(qid: int, qname: dns.name.Name, rdtype: int) -> bytes:
    header = _HEADER.pack(qid, 0x0100, 1, 0, 0, 1)  # RD, one question, the OPT record
    name = b"".join(bytes([len(label)]) + label for label in qname.labels)
    return header + name + struct.pack("!HH", rdtype, _CLASS_IN) + _OPT_RR


def _read_name(wire: bytes, offset: int) -> tuple[tuple[bytes, ...], int]:
    """(labels as sent, offset after the name); compression pointers only point back."""
    labels: list[bytes] = []
    end = -1
    start = offset
    for _ in range(128):
        if offset >= len(wire):
            raise _Unusual
        length = wire[offset]
        if length >= 0xC0:
            if offset + 1 >= len(wire):
                raise _Unusual
            target = ((length & 0x3F) << 8) | wire[offset + 1]
            if target >= start:
                raise _Unusual
            if end < 0:
                end = offset + 2
            offset = start = target
            continue
        if length >= 0x40:
            raise _Unusual
        offset += 1
        if length == 0:
            if sum(len(label) + 1 for label in labels) > 254:
                raise _Unusual
            return tuple(labels), (end if end >= 0 else offset)
        label = wire[offset : offset + length]
        if len(label) != length or not _PLAIN_LABEL.issuperset(label):
            raise _Unusual  # an escaped name is the resolver's to present
        labels.append(label)
        offset += length
    raise _Unusual


def _key(labels: tuple[bytes, ...]) -> tuple[bytes, ...]:
    return tuple(label.lower() for label in labels)


def _read_reply(
    wire: bytes, qid: int, qname: tuple[bytes, ...], rdtype: int
) -> tuple[str, list[str], int | None, list[tuple[bytes, ...]], tuple[bytes, ...], bool]:
    """(rcode, records, ttl, CNAME targets, canonical name, SOA proves no data at canonical)."""
    if len(wire) < _HEADER.size:
        raise _Unusual
    rid, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(wire)
    rcode = flags & 0x000F
    # A response (QR) to our query, opcode QUERY, not truncated, NOERROR or NXDOMAIN.
    if rid != qid or flags & 0xF800 != 0x8000 or flags & 0x0200 or qdcount != 1:
        raise _Unusual
    if rcode not in (_NOERROR, _NXDOMAIN):
        raise _Unusual
    name, offset = _read_name(wire, _HEADER.size)
    if _key(name) != qname or wire[offset : offset + 4] != struct.pack("!HH", rdtype, _CLASS_IN):
        raise _Unusual
    offset += 4
    sections: list[list[tuple[tuple[bytes, ...], int, int, bytes]]] = [[], [], []]
    for section, count in zip(sections, (ancount, nscount, arcount), strict=True):
        for _ in range(count):
            owner, offset = _read_name(wire, offset)
            if offset + _RR.size > len(wire):
                raise _Unusual
            rtype, rclass, rr_ttl, length = _RR.unpack_from(wire, offset)
            offset += _RR.size
            rdata_at = offset
            offset += length
            if offset > len(wire):
                raise _Unusual
            if rtype == _OPT:
                continue
            if rclass != _CLASS_IN:
                raise _Unusual
            if rtype == _CNAME:
                target, after = _read_name(wire, rdata_at)
                if after != offset:
                    raise _Unusual
                section.append((_key(owner), rtype, rr_ttl, b".".join(target)))
            else:
                section.append((_key(owner), rtype, rr_ttl, wire[rdata_at:offset]))
    if offset != len(wire):
        raise _Unusual  # trailing bytes: the resolver calls that malformed
    answer, authority = sections[0], sections[1]
    if any(rtype not in (_CNAME, rdtype) for _, rtype, _, _ in answer):
        raise _Unusual
    # Follow the chain as dnspython's resolve_chaining does (first CNAME of each owner).
    current: tuple[bytes, ...] = qname
    cnames: list[tuple[bytes, ...]] = []  # the targets, as the server wrote them
    seen = {qname}
    records: list[str] = []
    ttl: int | None = None
    while True:
        found = [(t, rd) for owner, rt, t, rd in answer if owner == current and rt == rdtype]
        if found:
            for t, rdata in found:
                if rdtype == dns.rdatatype.A and len(rdata) == 4:
                    text = dns.ipv4.inet_ntoa(rdata)
                elif rdtype == dns.rdatatype.AAAA and len(rdata) == 16:
                    text = dns.ipv6.inet_ntoa(rdata)
                else:
                    raise _Unusual
                if text not in records:  # an rdataset is a set
                    records.append(text)
                ttl = t if ttl is None else min(ttl, t)
            break
        alias = next((rd for owner, rt, _, rd in answer if owner == current and rt == _CNAME), None)
        if alias is None:
            break
        target = tuple(alias.split(b".")) if alias else ()
        current = _key(target)
        if current in seen or len(cnames) >= MAX_CNAME_HOPS:
            raise _Unusual
        seen.add(current)
        cnames.append(target)
    if rcode == _NXDOMAIN:
        if records:
            raise _Unusual  # an answer for NXDOMAIN: dnspython refuses it
        return "NXDOMAIN", [], None, cnames, current, False
    soa_proof = not records and any(
        rtype == _SOA and current[len(current) - len(owner) :] == owner
        for owner, rtype, _, _ in authority
        if len(owner) <= len(current)
    )
    return "NOERROR", records, ttl, cnames, current, soa_proof


def _build_resolver(servers: Sequence[DnsServer], lifetime: float) -> dns.asyncresolver.Resolver:
    if servers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [_Do53(s.host, s.port) for s in servers]
    else:
        try:
            resolver = dns.asyncresolver.Resolver(configure=True)
        except dns.resolver.NoResolverConfiguration:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = []
    resolver.lifetime = lifetime
    resolver.timeout = min(lifetime, 2.0)
    resolver.cache = None  # we cache per Network ourselves
    resolver.retry_servfail = False
    resolver.use_edns(0, 0, EDNS_PAYLOAD)
    return resolver


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True)


def _present(rdata: dns.rdata.Rdata) -> str:
    """Presentation format as types.DnsAnswer documents it."""
    strings = getattr(rdata, "strings", None)
    if rdata.rdtype in (dns.rdatatype.TXT, dns.rdatatype.SPF) and strings is not None:
        return b"".join(strings).decode("utf-8", errors="replace")
    address = getattr(rdata, "address", None)
    if rdata.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) and isinstance(address, str):
        return address
    return rdata.to_text()


def _error_reason(errors: Sequence[Any]) -> str:
    """Condense dnspython's per-server error list into one reason."""
    found: set[str] = set()
    for entry in errors:
        problem = entry[3] if isinstance(entry, tuple) and len(entry) > 3 else entry
        if isinstance(problem, str):  # an rcode name
            found.add("servfail" if problem == "SERVFAIL" else "refused")
        elif isinstance(problem, dns.exception.Timeout):
            found.add("timeout")
        elif isinstance(problem, OSError | EOFError):
            found.add("timeout")  # unreachable or closed: no answer from that server
        else:
            found.add("malformed")  # FormError, BadResponse, trailing junk, odd rdata ...
    for reason in ("servfail", "refused", "malformed", "timeout"):
        if reason in found:
            return reason
    return "timeout"


class DnsClient:
    """Queries with a per-Network cache that also dedupes concurrent identical questions."""

    def __init__(self, servers: Sequence[DnsServer], lifetime: float) -> None:
        self._servers = tuple(servers)
        self._lifetime = lifetime
        self._resolver: dns.asyncresolver.Resolver | None = None
        self._cache: dict[tuple[str, str], asyncio.Task[DnsAnswer]] = {}

    def _get_resolver(self) -> dns.asyncresolver.Resolver:
        if self._resolver is None:
            self._resolver = _build_resolver(self._servers, self._lifetime)
        return self._resolver

    async def aclose(self) -> None:
        pending = [t for t in self._cache.values() if not t.done()]
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(BaseException):
                await task
        self._cache.clear()

    def query_task(self, name: str, rdtype: str) -> asyncio.Task[DnsAnswer]:
        try:
            dns.rdatatype.from_text(rdtype)
        except dns.rdatatype.UnknownRdatatype as exc:
            raise ValueError(f"unknown DNS record type {rdtype!r}") from exc
        key = (name.rstrip(".").lower(), rdtype.upper())
        task = self._cache.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._query(key[0], key[1]))
            self._cache[key] = task
            task.add_done_callback(self._forget_failure(key))
        return task

    def _forget_failure(self, key: tuple[str, str]) -> Any:
        def callback(task: asyncio.Task[DnsAnswer]) -> None:
            # Answers stay cached for the Network's life; failures may be retried.
            failed = task.cancelled() or task.exception() is not None
            if failed and self._cache.get(key) is task:
                del self._cache[key]

        return callback

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        return await asyncio.shield(self.query_task(name, rdtype))

    async def _query(self, name: str, rdtype: str) -> DnsAnswer:
        rdtype_value = dns.rdatatype.from_text(rdtype)
        try:
            qname = dns.name.from_text(name or ".")
        except (dns.exception.DNSException, ValueError):
            # Not a valid DNS name (empty label, label over 63 octets ...): it cannot exist.
            return DnsAnswer(name=name, rdtype=rdtype, rcode="NXDOMAIN")
        chain: list[str] = []
        seen = {qname}
        current = qname
        try:
            # dnspython bounds each resolution by the lifetime; re-asked CNAME targets share
            # a budget of two lifetimes so a chain of slow hops cannot add up.
            async with asyncio.timeout(self._lifetime * 2):
                while True:
                    rcode, records, ttl, cnames, canonical = await self._ask(
                        current, rdtype_value, name
                    )
                    chain.extend(cnames)
                    if records is not None or rcode == "NXDOMAIN" or canonical == current:
                        break
                    # The server gave us only the CNAME chain: ask again for its target.
                    if canonical in seen or len(seen) > MAX_CNAME_HOPS:
                        raise DnsError(
                            f"{name}: CNAME chain loops or exceeds {MAX_CNAME_HOPS} hops",
                            name=name,
                            reason="malformed",
                        )
                    seen.add(canonical)
                    current = canonical
        except TimeoutError as exc:
            raise DnsError(
                f"{name}: DNS did not answer in time", name=name, reason="timeout"
            ) from exc
        return DnsAnswer(
            name=name,
            rdtype=rdtype,
            rcode=rcode,
            records=records or [],
            cname_chain=chain,
            ttl=ttl,
        )

    async def _fast_ask(
        self, resolver: dns.asyncresolver.Resolver, qname: dns.name.Name, rdtype: int
    ) -> _Asked | None:
        """One UDP exchange read without dnspython's objects (see `_read_reply`), or None."""
        server = resolver.nameservers[0]
        if not isinstance(server, dns.nameserver.Do53Nameserver):
            return None  # DNS over HTTPS or TLS from the system's configuration: the resolver's
        address, port = server.address, server.port
        qid = int.from_bytes(os.urandom(2), "big")
        loop = asyncio.get_running_loop()
        try:
            with socket.socket(dns.inet.af_for_address(address), socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.connect((address, port))  # only this server's datagrams reach us
                async with asyncio.timeout(resolver.timeout):
                    await loop.sock_sendall(sock, _query_wire(qid, qname, rdtype))
                    wire = await loop.sock_recv(sock, 65535)
            asked = _key(tuple(qname.labels[:-1]))
            rcode, records, ttl, cnames, canonical, soa_proof = _read_reply(
                wire, qid, asked, rdtype
            )
        except (_Unusual, OSError, TimeoutError, ValueError):
            return None
        end = qname if soa_proof or canonical == asked else dns.name.Name((*canonical, b""))
        chain = [b".".join(target).decode("ascii") for target in cnames]
        if rcode == "NXDOMAIN":
            return rcode, None, None, chain, end
        return rcode, (records or None), (ttl if records else None), chain, end

    async def _ask(
        self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType, asked: str
    ) -> _Asked:
        """One resolution: (rcode, records or None, their TTL, CNAME targets followed,
        canonical name)."""
        resolver = self._get_resolver()
        if not resolver.nameservers:
            raise DnsError(f"{asked}: no DNS servers configured", name=asked, reason="no-servers")
        lifetime = self._lifetime
        if rdtype in _FAST_TYPES and len(resolver.nameservers) == 1:
            # One server: the fast exchange is the resolver's first try, and the resolver
            # gets what is left of the lifetime when the fast path cannot read the reply.
            started = asyncio.get_running_loop().time()
            fast = await self._fast_ask(resolver, qname, rdtype)
            if fast is not None:
                return fast
            lifetime -= asyncio.get_running_loop().time() - started
            if lifetime <= 0:
                raise DnsError(f"{asked}: DNS did not answer in time", name=asked, reason="timeout")
        try:
            answer = await resolver.resolve(
                qname, rdtype, raise_on_no_answer=False, search=False, lifetime=lifetime
            )
        except dns.resolver.NXDOMAIN as exc:
            cnames: list[str] = []
            canonical = qname
            with contextlib.suppress(Exception):  # the chain is a nicety; never fail on it
                response = exc.responses().get(qname)  # type: ignore[no-untyped-call]
                if response is not None:
                    chaining = response.resolve_chaining()
                    cnames = [_text(rrs[0].target) for rrs in chaining.cnames]
                    canonical = chaining.canonical_name
            return "NXDOMAIN", None, None, cnames, canonical
        except dns.resolver.LifetimeTimeout as exc:
            raise DnsError(
                f"{asked}: DNS did not answer in time", name=asked, reason="timeout"
            ) from exc
        except dns.resolver.NoNameservers as exc:
            errors = exc.kwargs.get("errors") or []
            reason = _error_reason(errors)
            raise DnsError(f"{asked}: DNS failed ({reason})", name=asked, reason=reason) from exc
        except dns.resolver.YXDOMAIN as exc:
            raise DnsError(f"{asked}: YXDOMAIN", name=asked, reason="malformed") from exc
        except dns.exception.DNSException as exc:
            raise DnsError(f"{asked}: DNS failed: {exc}", name=asked, reason="malformed") from exc
        except (OSError, EOFError) as exc:
            raise DnsError(f"{asked}: DNS failed: {exc}", name=asked, reason="timeout") from exc
        chaining = answer.chaining_result
        cnames = [_text(rrs[0].target) for rrs in chaining.cnames]
        canonical = answer.canonical_name
        if answer.rrset is None and any(
            rrs.rdtype == dns.rdatatype.SOA and canonical.is_subdomain(rrs.name)
            for rrs in answer.response.authority
        ):
            # No data at the end of the chain, proven by the SOA of the zone the final name is
            # in: nothing to ask again. The SOA of another zone (an authoritative server that
            # answered only the alias, plus its own zone's SOA) proves nothing about the target.
            canonical = qname
        rrset = answer.rrset
        if rrset is None:
            return "NOERROR", None, None, cnames, canonical
        return "NOERROR", [_present(rd) for rd in rrset], rrset.ttl, cnames, canonical

    async def addresses(self, host: str) -> list[IPAddress]:
        """A then AAAA addresses of `host`; DnsError nxdomain/nodata/... when there are none."""
        tasks = {
            "A": self.query_task(host, "A"),
            "AAAA": self.query_task(host, "AAAA"),
        }
        pending: set[asyncio.Task[DnsAnswer]] = set(tasks.values())
        grace_started = False
        while pending:
            done, pending = await asyncio.wait(
                pending,
                timeout=SECOND_FAMILY_GRACE if grace_started else None,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not done:
                break  # the other family is slow: go with what we have
            if not grace_started and any(
                not t.cancelled() and t.exception() is None and t.result().records for t in done
            ):
                grace_started = True
        results: dict[str, DnsAnswer] = {}
        errors: list[DnsError] = []
        for family, task in tasks.items():
            if not task.done() or task.cancelled():
                continue
            exc = task.exception()
            if isinstance(exc, DnsError):
                errors.append(exc)
            elif exc is not None:
                raise exc
            else:
                results[family] = task.result()
        ips: list[IPAddress] = []
        for family in ("A", "AAAA"):
            answer = results.get(family)
            if answer is None:
                continue
            for record in answer.records:
                with contextlib.suppress(ValueError):
                    ips.append(ipaddress.ip_address(record))
        if ips:
            return ips
        if any(a.rcode == "NXDOMAIN" for a in results.values()):
            raise DnsError(f"{host}: no such host (NXDOMAIN)", name=host, reason="nxdomain")
        if errors:
            raise errors[0]
        raise DnsError(f"{host}: the name has no A or AAAA records", name=host, reason="nodata")
