"""A sandbox scenario as data: the customer's DNS, the hosts on the wire, their faults, and what
mailfix should conclude about it.

A `Scenario` is frozen pydantic data; `sandbox.world.World` brings one to life on loopback.
The builders keep a scenario short: `microsoft_hosts()` gives the standard Exchange Online hosts
of a cloud, `cloud_tenant()` the healthy customer DNS and website, `change()` tweaks one host or
listener. Names are stored in IDNA A-label form (what DNS and certificates carry); the domain
itself is kept as people write it (Unicode) and `Scenario.domain_idna` gives the wire form.

Expectations list only the checks a scenario is *about*, per client: other checks may pass, skip
or warn for reasons that are not the scenario's point, and the catalogue should not pin them.

Host names, ports and record shapes: reference/exchange-online-diagnostics.md §2.9 (DNS),
§7 (endpoints and ports), §4 (federation).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Annotated, Any

import idna
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from checks.cloud import hosts_for
from checks.diagnosis import CAUSES
from checks.models import Client, Status
from checks.registry import CATALOGUE_IDS
from checks.settings import Cloud
from sandbox.ca import CertKind, self_signed_der
from sandbox.dns_server import DnsFaultKind
from sandbox.mail import MailConfig, MailProtocol
from sandbox.services.configs import (
    AutodiscoverRedirectConfig,
    AutodiscoverSConfig,
    ExoConfig,
    GraphConfig,
    LoginConfig,
    Mailbox,
    RealmInfo,
    ServiceConfig,
    WebsiteConfig,
)
from sandbox.tenant.hosts import tenant_hosts
from sandbox.tenant.models import TenantData

# Expectations are validated against the engine's own ids, so a typo fails at import, not as
# a puzzling test failure.
CHECK_IDS = frozenset(CATALOGUE_IDS)
CAUSE_IDS = frozenset(CAUSES)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def a_label(name: str) -> str:
    """`name` in IDNA A-label form, lower case, no trailing dot. Keeps `*.` and `_srv` labels."""
    name = name.strip().rstrip(".").lower()
    if name.isascii():
        return name
    return ".".join(
        label if label.isascii() else idna.encode(label, uts46=True).decode("ascii")
        for label in name.split(".")
    )


def dashed(domain: str) -> str:
    """The label Microsoft derives from a domain for its MX host: dots become dashes (§2.9)."""
    return a_label(domain).replace(".", "-")


# ---- the pieces --------------------------------------------------------------------------


class Record(_Frozen):
    """One DNS record, presentation format: MX "0 host.", TXT the text, SRV "0 0 443 host."."""

    name: str
    rdtype: str
    value: str
    ttl: int = 300

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return a_label(value)

    @field_validator("rdtype")
    @classmethod
    def _rdtype(cls, value: str) -> str:
        return value.upper()

    @model_validator(mode="after")
    def _target(self) -> Record:
        if self.rdtype == "CNAME":
            object.__setattr__(self, "value", a_label(self.value))
        return self


class DnsFault(_Frozen):
    """The DNS server misbehaves for `name` (every type, or only `rdtype`)."""

    name: str
    kind: DnsFaultKind
    rdtype: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return a_label(value)


class CertSpec(_Frozen):
    """The certificate a TLS listener presents: `names` are its DNS SANs (A-labels), the first
    is also its subject CN; `organization` its subject O."""

    kind: CertKind = CertKind.VALID
    names: tuple[str, ...]
    organization: str | None = None

    @field_validator("names")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("a certificate needs at least one name")
        return tuple(a_label(n) for n in value)


class Fault(StrEnum):
    """What a listener does instead of serving."""

    REFUSED = "refused"  # nothing listens: the connection is refused
    BLACK_HOLE = "black-hole"  # accepts, reads, never answers
    GARBAGE = "garbage"  # writes random bytes and hangs up


class Protocol(StrEnum):
    HTTPS = "https"
    HTTP = "http"
    IMAPS = "imaps"  # implicit TLS (993)
    POPS = "pops"  # implicit TLS (995)
    SMTP = "smtp"  # submission with STARTTLS (587)

    @property
    def tls(self) -> bool:
        return self in (Protocol.HTTPS, Protocol.IMAPS, Protocol.POPS)


class Listener(_Frozen):
    """One port of a host and what answers on it."""

    port: int = Field(ge=1, le=65535)
    protocol: Protocol
    app: Annotated[ServiceConfig, Field(discriminator="kind")] | None = None  # http, https
    mail: MailConfig | None = None  # imaps, pops, smtp
    cert: CertSpec | None = None  # overrides the host's certificate
    fault: Fault | None = None
    latency_ms: int | None = Field(default=None, ge=0)  # overrides the host's latency

    @model_validator(mode="after")
    def _consistent(self) -> Listener:
        if self.fault is not None:
            return self
        if self.protocol in (Protocol.HTTP, Protocol.HTTPS) and self.app is None:
            raise ValueError(f"{self.protocol} listener on {self.port} needs an app")
        if self.protocol in (Protocol.IMAPS, Protocol.POPS, Protocol.SMTP) and self.mail is None:
            raise ValueError(f"{self.protocol} listener on {self.port} needs a mail config")
        return self


class Host(_Frozen):
    """A machine on the wire: its DNS names (A records are published for each), its listeners."""

    names: tuple[str, ...]
    listeners: tuple[Listener, ...] = ()
    cert: CertSpec | None = None  # default certificate of its TLS listeners
    latency_ms: int = Field(default=0, ge=0)  # per round trip, every listener

    @field_validator("names")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("a host needs at least one name")
        return tuple(a_label(n) for n in value)

    @model_validator(mode="after")
    def _certs(self) -> Host:
        ports = [lst.port for lst in self.listeners]
        if len(ports) != len(set(ports)):
            raise ValueError(f"host {self.name}: two listeners on one port")
        for lst in self.listeners:
            if lst.protocol.tls or lst.protocol is Protocol.SMTP:
                needs = lst.fault is None
                if needs and lst.cert is None and self.cert is None:
                    raise ValueError(
                        f"host {self.name}: TLS listener {lst.port} has no certificate"
                    )
        return self

    @property
    def name(self) -> str:
        return self.names[0]

    def listener(self, port: int) -> Listener | None:
        return next((lst for lst in self.listeners if lst.port == port), None)

    def cert_for(self, listener: Listener) -> CertSpec | None:
        return listener.cert or self.cert

    def latency_for(self, listener: Listener) -> int:
        return self.latency_ms if listener.latency_ms is None else listener.latency_ms


class Expectation(_Frozen):
    """What mailfix should conclude for one client: statuses of the checks this scenario is
    about (others unpinned) and the id of the top cause."""

    client: Client
    statuses: dict[str, Status]
    top_cause: str
    also: tuple[str, ...] = ()  # causes that must be listed too (e.g. a warning below the top)

    @model_validator(mode="after")
    def _known_ids(self) -> Expectation:
        unknown = set(self.statuses) - CHECK_IDS
        if unknown:
            raise ValueError(f"unknown check ids {sorted(unknown)}")
        for cause in (self.top_cause, *self.also):
            if cause not in CAUSE_IDS:
                raise ValueError(f"unknown cause id {cause!r}")
        return self


class Scenario(_Frozen):
    id: str
    title: str
    description: str
    cloud: Cloud = Cloud.GLOBAL
    domain: str  # as people write it (may be Unicode)
    user: str = "ana"  # local part of the person's address
    records: tuple[Record, ...] = ()
    dns_faults: tuple[DnsFault, ...] = ()
    dns_latency_ms: int = Field(default=0, ge=0)
    hosts: tuple[Host, ...] = ()
    expect: tuple[Expectation, ...] = ()
    # The tenant behind the login host, Graph and the Exchange admin API (None: no tenant data;
    # tokens are refused with "tenant not found").
    tenant: TenantData | None = None

    @model_validator(mode="after")
    def _unique(self) -> Scenario:
        seen: set[str] = set()
        for host in self.hosts:
            for name in host.names:
                if name in seen:
                    raise ValueError(f"scenario {self.id}: {name} names two hosts")
                seen.add(name)
        clients = [e.client for e in self.expect]
        if len(clients) != len(set(clients)):
            raise ValueError(f"scenario {self.id}: two expectations for one client")
        return self

    @property
    def domain_idna(self) -> str:
        return a_label(self.domain)

    @property
    def address(self) -> str:
        """The person's address as they would type it (Unicode domain)."""
        return f"{self.user}@{self.domain}"

    @property
    def address_idna(self) -> str:
        return f"{self.user}@{self.domain_idna}"

    def host(self, name: str) -> Host:
        wanted = a_label(name)
        for host in self.hosts:
            if wanted in host.names:
                return host
        raise KeyError(name)

    def expectation(self, client: Client) -> Expectation | None:
        return next((e for e in self.expect if e.client is client), None)


# ---- builders ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Parts:
    """Records and hosts that belong together; `+` concatenates."""

    records: tuple[Record, ...] = ()
    hosts: tuple[Host, ...] = ()

    def __add__(self, other: Parts) -> Parts:
        return Parts(self.records + other.records, self.hosts + other.hosts)


def microsoft_cert(cloud: Cloud, *, kind: CertKind = CertKind.VALID) -> CertSpec:
    """The certificate EXO's client hosts present: Microsoft's names only, never a customer's.

    Worldwide it is the CN=outlook.com certificate with *.outlook.com, *.office365.com,
    outlook.office.com and the client host names as SANs.
    """
    ch = hosts_for(cloud)
    names = [ch.exo, ch.smtp, ch.autodiscover_pox, ch.autodiscover_cname]
    wildcards = sorted({"*." + n.split(".", 1)[1] for n in names} | {"*." + ch.exo})
    worldwide = cloud in (Cloud.GLOBAL, Cloud.GCC)
    head = ["outlook.com"] if worldwide else []
    extra = ["outlook.office.com", "*.office.com"] if worldwide else []
    ordered = list(dict.fromkeys([*head, *names, *extra, *wildcards]))
    return CertSpec(kind=kind, names=tuple(ordered), organization="Microsoft Corporation")


def graph_cert(cloud: Cloud) -> CertSpec:
    graph = tenant_hosts(cloud).graph
    return CertSpec(names=(graph, "*." + graph), organization="Microsoft Corporation")


def login_cert(cloud: Cloud) -> CertSpec:
    login = hosts_for(cloud).login
    return CertSpec(
        names=("stamp2." + login, login, "*." + login),
        organization="Microsoft Corporation",
    )


def customer_cert(*names: str, kind: CertKind = CertKind.VALID, organization: str = "") -> CertSpec:
    return CertSpec(kind=kind, names=names, organization=organization or None)


def user_mailbox(scenario_user: str, domain: str, **fields: Any) -> Mailbox:
    return Mailbox(address=f"{scenario_user}@{a_label(domain)}", **fields)


def microsoft_hosts(
    cloud: Cloud = Cloud.GLOBAL,
    *,
    mailboxes: Iterable[Mailbox] = (),
    realms: Mapping[str, RealmInfo] | None = None,
    onprem_autodiscover_host: str | None = None,
    latency_ms: int = 0,
    **overrides: Mapping[str, Any],
) -> tuple[Host, ...]:
    """The Exchange Online hosts of `cloud` (§7), healthy unless `overrides` say otherwise.

    Roles you can override (each a dict of `Listener` fields; `app`/`mail` dicts merge into the
    existing config): exo_https, exo_imap, exo_pop, smtp, autodiscover_http, autodiscover_https,
    autodiscover_s, login, graph. Example: `microsoft_hosts(exo_imap={"fault": Fault.REFUSED})`.
    `realms` maps a domain (Unicode or A-label) to how Entra ID sees it; absent = Unknown.
    """
    ch = hosts_for(cloud)
    boxes = tuple(mailboxes)
    realm_map: dict[str, RealmInfo] = {}
    for domain, realm in (realms or {}).items():
        realm_map[a_label(domain)] = realm
        realm_map[domain.lower()] = realm
    ms = microsoft_cert(cloud)
    exo_app = ExoConfig(
        mailboxes=boxes,
        exo_host=ch.exo,
        login_host=ch.login,
        onprem_autodiscover_host=onprem_autodiscover_host,
        rest_url="https://outlook.office.com/api"
        if cloud in (Cloud.GLOBAL, Cloud.GCC)
        else f"https://{ch.exo}/api",
    )
    mail = functools.partial(MailConfig, server_name=_backend_name(cloud))
    redirect = AutodiscoverRedirectConfig(
        target=f"https://{ch.autodiscover_pox}/autodiscover/autodiscover.xml"
    )
    roles: dict[str, tuple[str, Listener]] = {
        "exo_https": (ch.exo, Listener(port=443, protocol=Protocol.HTTPS, app=exo_app)),
        "exo_imap": (
            ch.exo,
            Listener(port=993, protocol=Protocol.IMAPS, mail=mail(protocol=MailProtocol.IMAP)),
        ),
        "exo_pop": (
            ch.exo,
            Listener(port=995, protocol=Protocol.POPS, mail=mail(protocol=MailProtocol.POP)),
        ),
        "smtp": (
            ch.smtp,
            Listener(port=587, protocol=Protocol.SMTP, mail=mail(protocol=MailProtocol.SMTP)),
        ),
        "autodiscover_http": (
            ch.autodiscover_cname,
            Listener(port=80, protocol=Protocol.HTTP, app=redirect),
        ),
        "autodiscover_https": (
            ch.autodiscover_cname,
            Listener(port=443, protocol=Protocol.HTTPS, app=redirect),
        ),
        "autodiscover_s": (
            ch.autodiscover_pox,
            Listener(
                port=443,
                protocol=Protocol.HTTPS,
                app=AutodiscoverSConfig(
                    host=ch.autodiscover_pox,
                    mailboxes=boxes,
                    exo_host=ch.exo,
                    login_host=ch.login,
                    onprem_autodiscover_host=onprem_autodiscover_host,
                ),
            ),
        ),
        "login": (
            ch.login,
            Listener(
                port=443, protocol=Protocol.HTTPS, app=LoginConfig(host=ch.login, domains=realm_map)
            ),
        ),
        "graph": (
            tenant_hosts(cloud).graph,
            Listener(
                port=443,
                protocol=Protocol.HTTPS,
                app=GraphConfig(host=tenant_hosts(cloud).graph),
            ),
        ),
    }
    unknown = set(overrides) - set(roles)
    if unknown:
        raise ValueError(f"unknown Microsoft host roles {sorted(unknown)}; known: {sorted(roles)}")
    for role, fields in overrides.items():
        host_name, lst = roles[role]
        roles[role] = (host_name, _changed(lst, fields))
    # One host per name, in a stable order; 21Vianet serves POX and the CNAME on one name: its
    # HTTPS listener is the POX endpoint (the redirect's target), plain HTTP redirects to it.
    if ch.autodiscover_cname == ch.autodiscover_pox and "autodiscover_https" not in overrides:
        del roles["autodiscover_https"]
    by_host: dict[str, list[Listener]] = {}
    for host_name, lst in roles.values():
        by_host.setdefault(host_name, [])
        if all(other.port != lst.port for other in by_host[host_name]):
            by_host[host_name].append(lst)
    hosts = []
    for host_name, listeners in by_host.items():
        cert = (
            login_cert(cloud)
            if host_name == ch.login
            else graph_cert(cloud)
            if host_name == tenant_hosts(cloud).graph
            else ms
        )
        hosts.append(
            Host(names=(host_name,), listeners=tuple(listeners), cert=cert, latency_ms=latency_ms)
        )
    return tuple(hosts)


def _backend_name(cloud: Cloud) -> str:
    """A back-end server name for greetings, in the style EXO uses for its cloud."""
    suffix = {
        Cloud.GLOBAL: "namprd05.prod.outlook.com",
        Cloud.GCC: "namprd09.prod.outlook.com",
        Cloud.GCCHIGH: "usgp153.prod.outlook.com",
        Cloud.DOD: "usgp155.prod.outlook.com",
        Cloud.CHINA: "chnpr01.prod.partner.outlook.cn",
    }[cloud]
    return f"SN4PR0501CA0012.{suffix}"


def _changed(listener: Listener, fields: Mapping[str, Any]) -> Listener:
    data = listener.model_dump()
    for key, value in fields.items():
        if key in ("app", "mail") and isinstance(value, Mapping) and data.get(key) is not None:
            data[key] = {**data[key], **value}
        elif isinstance(value, BaseModel):
            data[key] = value.model_dump()
        else:
            data[key] = value
    return Listener.model_validate(data)


def change(hosts: Iterable[Host], target: str, **fields: Any) -> tuple[Host, ...]:
    """`hosts` with one host ("name") or one listener ("name:port") changed.

    Listener fields `app`/`mail` given as dicts merge into the existing config.
    """
    name, _, port_text = target.partition(":")
    name = a_label(name)
    out: list[Host] = []
    found = False
    for host in hosts:
        if name not in host.names:
            out.append(host)
            continue
        found = True
        if not port_text:
            out.append(host.model_copy(update=fields))
            continue
        port = int(port_text)
        if host.listener(port) is None:
            raise KeyError(f"{host.name} has no listener on {port}")
        listeners = tuple(
            _changed(lst, fields) if lst.port == port else lst for lst in host.listeners
        )
        out.append(
            Host.model_validate(
                {**host.model_dump(), "listeners": [x.model_dump() for x in listeners]}
            )
        )
    if not found:
        raise KeyError(f"no host named {name}")
    return tuple(out)


def website_host(
    domain: str,
    *,
    app: WebsiteConfig | None = None,
    cert: CertSpec | None = None,
    fault: Fault | None = None,
    latency_ms: int = 0,
) -> Host:
    """The customer's web server at the root domain and www (HTTP and HTTPS)."""
    d = a_label(domain)
    app = app or WebsiteConfig(domain=d)
    return Host(
        names=(d, f"www.{d}"),
        listeners=(
            Listener(port=80, protocol=Protocol.HTTP, app=app, fault=fault),
            Listener(port=443, protocol=Protocol.HTTPS, app=app, fault=fault),
        ),
        cert=cert or customer_cert(d, f"www.{d}"),
        latency_ms=latency_ms,
    )


class _Default(Enum):
    HEALTHY = 0


DEFAULT = _Default.HEALTHY  # "use the healthy default" for cloud_tenant's arguments


def cloud_tenant(
    domain: str,
    cloud: Cloud = Cloud.GLOBAL,
    *,
    mx: Iterable[str] | _Default | None = DEFAULT,
    autodiscover: str | _Default | None = DEFAULT,
    spf: Iterable[str] | _Default = DEFAULT,
    website: Host | _Default | None = DEFAULT,
    extra: Iterable[Record] = (),
) -> Parts:
    """The healthy DNS of a domain in Microsoft 365 (§2.9), with a plain website at its root.

    mx: MX targets (priority 0, 10, …); None = no MX. autodiscover: CNAME target; None = no record.
    spf: TXT strings that start with v=spf1 (any number, to model duplicates). website: a Host
    for the root domain; None = no A record at the root.
    """
    ch = hosts_for(cloud)
    d = a_label(domain)
    if isinstance(mx, _Default):
        mx = [f"{dashed(d)}{ch.mx_suffixes[0]}"]
    mx_targets = list(mx or [])
    records = [
        Record(name=d, rdtype="MX", value=f"{i * 10} {t}.") for i, t in enumerate(mx_targets)
    ]
    if isinstance(autodiscover, _Default):
        autodiscover = ch.autodiscover_cname
    if autodiscover is not None:
        records.append(Record(name=f"autodiscover.{d}", rdtype="CNAME", value=autodiscover))
    if isinstance(spf, _Default):
        spf = [f"v=spf1 include:{ch.spf_include} -all"]
    spf_texts = list(spf)
    records += [Record(name=d, rdtype="TXT", value=text) for text in spf_texts]
    records.append(Record(name=d, rdtype="TXT", value="MS=ms48291735"))  # verification (§2.9)
    records += list(extra)
    if isinstance(website, _Default):
        website = website_host(d)
    hosts = (website,) if website is not None else ()
    return Parts(records=tuple(records), hosts=hosts)


@functools.lru_cache(maxsize=64)
def token_signing_cert(sts_host: str, *, days_left: int, days_old: int = 340) -> bytes:
    """A self-signed AD FS token-signing certificate (DER) valid from `days_old` days ago until
    `days_left` days from now (negative: expired). Cached, so a scenario compares equal to
    itself. (AD FS signs with RSA; the checks read only the dates, so a fast EC key will do.)"""

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return self_signed_der(
        f"ADFS Signing - {a_label(sts_host)}",
        not_before=now - dt.timedelta(days=days_old),
        not_after=now + dt.timedelta(days=days_left),
    )
