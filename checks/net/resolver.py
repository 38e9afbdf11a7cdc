"""DNS for the seam: dnspython's async resolver, bounded, cached, and safe against hostile replies.

When MAILFIX_DNS_SERVERS is set we never touch the system configuration. Every failure comes out
as `DnsError` with a stable `reason`; NXDOMAIN and "no data" are answers (`DnsAnswer.rcode`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Sequence
from typing import Any

import dns._asyncbackend
import dns.asyncresolver
import dns.exception
import dns.inet
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
                    rcode, rrset, cnames, canonical = await self._ask(current, rdtype_value, name)
                    chain.extend(cnames)
                    if rrset is not None or rcode == "NXDOMAIN" or canonical == current:
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
        records = [_present(rd) for rd in rrset] if rrset is not None else []
        return DnsAnswer(
            name=name,
            rdtype=rdtype,
            rcode=rcode,
            records=records,
            cname_chain=chain,
            ttl=rrset.ttl if rrset is not None else None,
        )

    async def _ask(
        self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType, asked: str
    ) -> tuple[str, dns.rrset.RRset | None, list[str], dns.name.Name]:
        """One resolution: (rcode, final rrset or None, CNAME targets followed, canonical name)."""
        resolver = self._get_resolver()
        if not resolver.nameservers:
            raise DnsError(f"{asked}: no DNS servers configured", name=asked, reason="no-servers")
        try:
            answer = await resolver.resolve(
                qname, rdtype, raise_on_no_answer=False, search=False, lifetime=self._lifetime
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
            return "NXDOMAIN", None, cnames, canonical
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
        return "NOERROR", answer.rrset, cnames, canonical

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
