"""Plain results the network seam hands to checks. Frozen, typed, JSON-friendly."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DnsAnswer(_Frozen):
    """One DNS question and what came back.

    `rcode` "NOERROR" with no `records` means the name exists but has no data of that type.
    `records` are presentation-format strings (MX: "10 host.example.", TXT: the joined,
    unquoted string, SRV: "0 5 443 target.", CNAME/A/AAAA: the value). `cname_chain` lists the
    aliases followed, in order, without trailing dots.
    """

    name: str
    rdtype: str
    rcode: Literal["NOERROR", "NXDOMAIN"]
    records: list[str] = Field(default_factory=list)
    cname_chain: list[str] = Field(default_factory=list)
    ttl: int | None = None

    @property
    def exists(self) -> bool:
        return self.rcode == "NOERROR"


class CertInfo(_Frozen):
    subject: str  # RFC 4514 string, e.g. "CN=outlook.com,O=Microsoft Corporation"
    issuer: str
    not_before: datetime
    not_after: datetime
    san: list[str] = Field(default_factory=list)  # DNS names and IP addresses
    sha256: str  # hex fingerprint of the DER encoding

    def evidence(self) -> dict[str, object]:
        """The fields a finding shows as evidence."""
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "san": self.san[:20],
        }


class TlsInfo(_Frozen):
    host: str
    port: int
    address: str  # the IP we connected to
    version: str  # "TLSv1.3"
    cipher: str
    cert: CertInfo


class Hop(_Frozen):
    """One request of an HTTP exchange, redirects included."""

    method: str
    url: str
    status: int
    location: str | None = None
    address: str | None = None  # the IP the seam connected to


class HttpResponse(_Frozen):
    url: str  # final URL
    status: int
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: bytes
    truncated: bool = False  # the body was cut at the seam's bound
    hops: list[Hop] = Field(default_factory=list)  # every request made, in order
    cert: CertInfo | None = None  # peer certificate of the final hop, for https

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")
