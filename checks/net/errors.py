"""The network seam's exception tree. Expected failures of the outside world end up here.

    NetError                    anything the seam could not do; `.kind` is a short stable code
    ├── DnsError                resolver failure: timeout, SERVFAIL, REFUSED, malformed answer;
    │                           for a host to connect to, also "nxdomain" / "nodata"
    ├── BlockedAddress          the address guard refused every address (nothing was sent)
    ├── ConnectFailed           TCP refused / unreachable / reset
    ├── NetTimeout              a connect, read or overall wait ran out
    ├── TlsFailed               the TLS handshake failed for a reason other than the certificate
    │   └── CertificateInvalid  the peer's certificate did not verify; carries what it presented
    ├── ProtocolViolation       the peer answered, but not in the protocol we spoke (garbage)
    ├── ResponseTooLarge        a body or line exceeded the seam's bound
    └── TooManyRedirects        more than MAX_REDIRECTS hops

NXDOMAIN and "no records" are *answers*, not errors: `Network.query` returns them in
`DnsAnswer.rcode`. Checks turn NetError into findings; the runner turns anything else into an
`error` finding. Lower-level exceptions are always chained (`raise ... from exc`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from checks.net.types import CertInfo


class NetError(Exception):
    kind: str = "network"

    def __init__(self, message: str, *, host: str | None = None) -> None:
        super().__init__(message)
        self.host = host


class DnsError(NetError):
    kind = "dns"

    def __init__(self, message: str, *, name: str, reason: str) -> None:
        super().__init__(message, host=name)
        self.name = name
        # "timeout" | "servfail" | "refused" | "malformed" | "no-servers"; and, only from
        # resolving a host to connect to: "nxdomain" (no such host) | "nodata" (no A/AAAA)
        self.reason = reason


class BlockedAddress(NetError):
    kind = "blocked"

    def __init__(self, message: str, *, host: str, addresses: list[str]) -> None:
        super().__init__(message, host=host)
        self.addresses = addresses


class ConnectFailed(NetError):
    kind = "connect"


class NetTimeout(NetError):
    kind = "timeout"


class TlsFailed(NetError):
    kind = "tls"


class CertificateInvalid(TlsFailed):
    kind = "certificate"

    def __init__(self, message: str, *, host: str, reason: str, cert: CertInfo | None) -> None:
        super().__init__(message, host=host)
        self.reason = reason  # "expired" | "not-yet-valid" | "hostname" | "untrusted" | "other"
        self.cert = cert


class ProtocolViolation(NetError):
    kind = "protocol"


class ResponseTooLarge(NetError):
    kind = "too-large"


class TooManyRedirects(NetError):
    kind = "redirects"
