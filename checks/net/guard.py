"""The address guard: which IP addresses the seam may connect to.

Anything not globally routable is refused unless an allowed network (MAILFIX_ALLOWED_PRIVATE_
NETWORKS) contains it. IPv6 forms that carry an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`,
NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged as the IPv4 address they carry, so a
blocked IPv4 cannot be smuggled in through IPv6 notation.

We keep our own tables instead of `ipaddress.is_global`: its lists changed between Python
releases (3.11 calls multicast "global"), and a guard must not change with the interpreter.
Sources: IANA IPv4/IPv6 Special-Purpose Address Registries (RFC 6890 and successors).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from checks.net.errors import BlockedAddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# IPv4 blocks that are not globally routable unicast.
_REFUSED_V4: tuple[ipaddress.IPv4Network, ...] = (
    _V4("0.0.0.0/8"),  # "this network", includes the unspecified address
    _V4("10.0.0.0/8"),  # RFC 1918
    _V4("100.64.0.0/10"),  # CGNAT shared address space, RFC 6598
    _V4("127.0.0.0/8"),  # loopback
    _V4("169.254.0.0/16"),  # link-local
    _V4("172.16.0.0/12"),  # RFC 1918
    _V4("192.0.0.0/24"),  # IETF protocol assignments
    _V4("192.0.2.0/24"),  # TEST-NET-1 (documentation)
    _V4("192.88.99.0/24"),  # deprecated 6to4 relay anycast
    _V4("192.168.0.0/16"),  # RFC 1918
    _V4("198.18.0.0/15"),  # benchmarking, RFC 2544
    _V4("198.51.100.0/24"),  # TEST-NET-2
    _V4("203.0.113.0/24"),  # TEST-NET-3
    _V4("224.0.0.0/4"),  # multicast
    _V4("240.0.0.0/4"),  # reserved, includes the limited broadcast 255.255.255.255
)

# IPv6: only 2000::/3 is allocated global unicast; inside it, these blocks are not routable.
_GLOBAL_UNICAST_V6 = _V6("2000::/3")
_REFUSED_V6: tuple[ipaddress.IPv6Network, ...] = (
    _V6("2001::/23"),  # IETF protocol assignments (Teredo, benchmarking, ORCHID, ...)
    _V6("2001:db8::/32"),  # documentation
    _V6("3fff::/20"),  # documentation, RFC 9637
)
_NAT64 = _V6("64:ff9b::/96")  # RFC 6052 well-known prefix; the last 32 bits are IPv4


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return None


def _is_public(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv4Address):
        return not any(ip in net for net in _REFUSED_V4)
    return ip in _GLOBAL_UNICAST_V6 and not any(ip in net for net in _REFUSED_V6)


class AddressGuard:
    """Refuses every address that is not public, unless an allowed network contains it."""

    def __init__(self, allowed: Sequence[IPNetwork]) -> None:
        self._allowed = tuple(allowed)

    @property
    def allowed(self) -> tuple[IPNetwork, ...]:
        return self._allowed

    def is_allowed(self, ip: IPAddress) -> bool:
        if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
            ip = ipaddress.IPv6Address(ip.compressed.split("%", 1)[0])
        if any(ip.version == net.version and ip in net for net in self._allowed):
            return True
        if isinstance(ip, ipaddress.IPv6Address):
            inner = embedded_ipv4(ip)
            if inner is not None:
                return self.is_allowed(inner)
        return _is_public(ip)

    def check(self, host: str, ips: Iterable[IPAddress]) -> list[IPAddress]:
        """The allowed subset of `ips`, in order; BlockedAddress when nothing is left."""
        seen: list[IPAddress] = []
        for ip in ips:
            if ip not in seen:
                seen.append(ip)
        allowed = [ip for ip in seen if self.is_allowed(ip)]
        if not allowed:
            refused = [str(ip) for ip in seen]
            raise BlockedAddress(
                f"{host}: refused to connect to {', '.join(refused) or 'no address'} "
                "(not a public address and not in MAILFIX_ALLOWED_PRIVATE_NETWORKS)",
                host=host,
                addresses=refused,
            )
        return allowed
