"""IP addresses and ranges as Client Access Rules and named locations write them.

Client Access Rules accept a single address, a range `a-b`, or a CIDR block, IPv4 or IPv6
(exchange-online-diagnostics.md §6.1, New-ClientAccessRule `AnyOfClientIPAddressesOrRanges`).
Named locations hold CIDR blocks only (§5.2, `iPv4CidrRange` / `iPv6CidrRange`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class IpSpan:
    """An inclusive span of addresses of one family."""

    first: IPAddress
    last: IPAddress
    text: str

    def __contains__(self, ip: object) -> bool:
        if not isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        if ip.version != self.first.version:
            # An IPv4 client may arrive as an IPv4-mapped IPv6 address (::ffff:a.b.c.d).
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            else:
                return False
        return int(self.first) <= int(ip) <= int(self.last)


def parse_span(text: str) -> IpSpan:
    """`10.0.0.1`, `10.0.0.1-10.0.0.9`, `10.0.0.0/24`, `2001:db8::/32`; ValueError otherwise."""
    raw = text.strip()
    if "/" in raw:
        net = ipaddress.ip_network(raw, strict=False)
        return IpSpan(net.network_address, net.broadcast_address, raw)
    if "-" in raw:
        a, _, b = raw.partition("-")
        first, last = ipaddress.ip_address(a.strip()), ipaddress.ip_address(b.strip())
        if first.version != last.version or int(first) > int(last):
            raise ValueError(f"not a range: {raw}")
        return IpSpan(first, last, raw)
    ip = ipaddress.ip_address(raw)
    return IpSpan(ip, ip, raw)
