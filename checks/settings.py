"""Settings the checks need: resolution, trust, the address guard, the cloud, tenant credentials.

One pydantic-settings model, prefix `MAILFIX_` (DESIGN.md, "Environment"). The bot's own
settings extend this class (bot/settings.py), so there is one source of truth per variable.
A check never reads `os.environ`; it gets these settings through its context.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NamedTuple

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Cloud(StrEnum):
    GLOBAL = "global"
    GCC = "gcc"
    GCCHIGH = "gcchigh"
    DOD = "dod"
    CHINA = "china"


class DnsServer(NamedTuple):
    """One `ip[:port]` entry of MAILFIX_DNS_SERVERS (IPv6 as `[::1]:53` or bare `::1`)."""

    host: str
    port: int = 53

    @classmethod
    def parse(cls, text: str) -> DnsServer:
        text = text.strip()
        if not text:
            raise ValueError("empty DNS server entry")
        host, port = text, 53
        if text.startswith("["):
            end = text.find("]")
            if end < 0:
                raise ValueError(f"bad DNS server {text!r}: missing ']'")
            host, rest = text[1:end], text[end + 1 :]
            if rest:
                if not rest.startswith(":"):
                    raise ValueError(f"bad DNS server {text!r}")
                port = int(rest[1:])
        elif text.count(":") == 1:
            host, _, port_text = text.partition(":")
            port = int(port_text)
        ipaddress.ip_address(host)  # raises ValueError naming the bad address
        if not 0 < port < 65536:
            raise ValueError(f"bad DNS server port in {text!r}")
        return cls(host, port)


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [part for part in value.replace(";", ",").replace(" ", ",").split(",") if part]
    return value


class CheckSettings(BaseSettings):
    """Everything a check may read. Built once, passed in."""

    model_config = SettingsConfigDict(
        env_prefix="MAILFIX_", extra="ignore", frozen=True, use_attribute_docstrings=True
    )

    dns_servers: Annotated[list[DnsServer], NoDecode] = Field(default_factory=list)
    """DNS servers, `ip[:port]` (IPv6 as `[::1]:53`), comma-separated. When set, every name
    mailfix resolves — hosts it connects to included — is resolved there. Unset: the system's."""
    ca_bundle: Path | None = None
    """PEM file of CAs to trust for TLS (e.g. a corporate TLS-inspection CA). Unset: the
    system store."""
    allowed_private_networks: Annotated[list[IPNetwork], NoDecode] = Field(default_factory=list)
    """CIDRs the address guard lets through. Every other loopback, private, link-local, CGNAT,
    reserved, multicast or unspecified address is refused before connecting, after every
    resolution and at every redirect hop."""
    cloud: Cloud = Cloud.GLOBAL
    """`global`, `gcc`, `gcchigh`, `dod` or `china`: picks every Microsoft host."""

    # Tenant access (admin consent); used by tenant checks and fixes only.
    tenant_id: str | None = None
    """Your Entra tenant id (or a verified domain): turns the tenant checks on."""
    client_id: str | None = None
    """Application (client) id of mailfix's app registration in that tenant."""
    client_secret: SecretStr | None = None
    """A client secret of that app (or use a certificate). Sent only to the token endpoint."""
    client_certificate: Path | None = None
    """PEM file with the app's certificate and private key, instead of a secret."""
    client_certificate_password: SecretStr | None = None
    """Password of the certificate's private key, if it has one."""

    @field_validator("dns_servers", mode="before")
    @classmethod
    def _parse_dns_servers(cls, value: Any) -> Any:
        value = _split_list(value)
        if isinstance(value, list):
            return [v if isinstance(v, DnsServer) else DnsServer.parse(str(v)) for v in value]
        return value

    @field_validator("allowed_private_networks", mode="before")
    @classmethod
    def _parse_networks(cls, value: Any) -> Any:
        value = _split_list(value)
        if isinstance(value, list):
            return [ipaddress.ip_network(str(v), strict=False) for v in value]
        return value

    @field_validator("ca_bundle")
    @classmethod
    def _ca_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"MAILFIX_CA_BUNDLE {value} is not a readable file")
        return value

    @property
    def has_tenant_credentials(self) -> bool:
        return bool(
            self.tenant_id and self.client_id and (self.client_secret or self.client_certificate)
        )
