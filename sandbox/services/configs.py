"""What each sandbox HTTP role does, as data.

One frozen model per role; `build_app(config)` turns any of them into an aiohttp application.
The world helper mounts each application behind TLS (or plain HTTP) on the host's loopback
address and real port; these models know nothing about sockets or certificates.

Protocol facts cite reference/exchange-online-diagnostics.md (§ numbers below).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from aiohttp import web


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Faults(_Frozen):
    """Fault knobs every app honours, applied after the request is recorded.

    Precedence: `slow_ms` delays whatever comes next; then `status_override` wins over
    `garbage`; otherwise the role answers normally.
    """

    status_override: int | None = Field(default=None, ge=400, le=599)
    retry_after: int | None = None  # seconds, sent with status_override (429/503 throttling)
    garbage: bool = False  # 200 with a body that is neither XML, JSON nor HTML
    slow_ms: int = Field(default=0, ge=0)


NO_FAULTS = Faults()


class Mailbox(_Frozen):
    """One recipient as the directory knows it.

    location: "exo" (mailbox in Exchange Online), "onprem" (hybrid: mailbox on the customer's
    Exchange, EXO holds a mail user), "none" (the name exists in the domain but has no mailbox).
    `address` is what people type; `primary_smtp` is set when that address is a proxy/alias.
    """

    address: str
    display_name: str = ""
    location: Literal["exo", "onprem", "none"] = "exo"
    primary_smtp: str | None = None
    guid: str | None = None  # MailboxId in the MAPI/HTTP URLs; derived from the address if None

    @field_validator("address", "primary_smtp")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return value.lower() if value is not None else None

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]

    @property
    def smtp(self) -> str:
        """The primary SMTP address (AutoDiscoverSMTPAddress, §2.5)."""
        return self.primary_smtp or self.address

    @property
    def mailbox_guid(self) -> str:
        return self.guid or str(uuid.uuid5(uuid.NAMESPACE_URL, f"mailbox:{self.smtp}"))


class ExoConfig(_Frozen):
    """outlook.office365.com (or the cloud's EXO host, §7): Autodiscover v2, POX, EAS, EWS, MAPI.

    unknown_address: what Autodiscover v2 does for an address in no tenant. "generic" (default)
    answers the same EXO URL as for a known mailbox — the JSON endpoint is unauthenticated and
    the reference (§2.7) only calls it a *hint*; that EXO answers generically is [uncertain].
    "not-found" answers 404 instead, for scenarios that want the stricter behaviour.
    """

    kind: Literal["exo"] = "exo"
    mailboxes: tuple[Mailbox, ...] = ()
    exo_host: str = "outlook.office365.com"
    rest_url: str = "https://outlook.office.com/api"  # Protocol=Rest (§2.7)
    login_host: str = "login.microsoftonline.com"  # authorization_uri in the Bearer challenge
    # Hybrid 302 target host; None means autodiscover.<mailbox domain> (§2.7).
    onprem_autodiscover_host: str | None = None
    unknown_address: Literal["generic", "not-found"] = "generic"
    eas_version: str = "15.20"  # MS-Server-ActiveSync (§3.1)
    server_error: int | None = Field(
        default=None, ge=500, le=599
    )  # EXO-wide outage, with EXO headers
    faults: Faults = NO_FAULTS


class AutodiscoverRedirectConfig(_Frozen):
    """autodiscover.outlook.com: the CNAME target; GET over HTTP answers 302 (§2.1 step 4, §2.3)."""

    kind: Literal["autodiscover-redirect"] = "autodiscover-redirect"
    target: str = "https://autodiscover-s.outlook.com/autodiscover/autodiscover.xml"
    faults: Faults = NO_FAULTS


class AutodiscoverSConfig(_Frozen):
    """autodiscover-s.outlook.com: POX Autodiscover (§2.4-§2.6); 401 without credentials."""

    kind: Literal["autodiscover-s"] = "autodiscover-s"
    host: str = "autodiscover-s.outlook.com"
    mailboxes: tuple[Mailbox, ...] = ()
    exo_host: str = "outlook.office365.com"  # where the returned settings point
    login_host: str = "login.microsoftonline.com"
    onprem_autodiscover_host: str | None = (
        None  # hybrid redirectUrl host; None = autodiscover.<domain>
    )
    tenant_id: str = "00000000-0000-0000-0000-000000000000"  # DeploymentId in <User>
    faults: Faults = NO_FAULTS


class RealmInfo(_Frozen):
    """How Entra ID sees one domain (§4.1)."""

    namespace_type: Literal["Managed", "Federated", "Unknown"] = "Managed"
    brand: str = ""  # FederationBrandName
    sts_host: str | None = None  # federated only: sts.<domain>
    federation_protocol: Literal["WSTrust", "SAML20"] = "WSTrust"


class LoginConfig(_Frozen):
    """login.microsoftonline.com (or a sovereign login host, §4.1): home-realm discovery.

    Domains absent from `domains` are NameSpaceType "Unknown" (not in any tenant).
    """

    kind: Literal["login"] = "login"
    host: str = "login.microsoftonline.com"
    cloud_instance_name: str = "microsoftonline.com"
    cloud_instance_issuer_uri: str = "urn:federation:MicrosoftOnline"
    domains: dict[str, RealmInfo] = Field(default_factory=dict)
    faults: Faults = NO_FAULTS

    @field_validator("domains")
    @classmethod
    def _lower_keys(cls, value: dict[str, RealmInfo]) -> dict[str, RealmInfo]:
        return {k.lower(): v for k, v in value.items()}


class AdfsConfig(_Frozen):
    """AD FS / WAP at sts.<domain> (§4.2, §4.3). Certificates are DER bytes.

    metadata_status: anything but 200 makes FederationMetadata.xml and MEX answer that status
    (503 = AD FS or the Web Application Proxy is down, §1.3).
    """

    kind: Literal["adfs"] = "adfs"
    sts_host: str
    signing_cert_der: bytes
    next_signing_cert_der: bytes | None = None  # secondary during rollover (§4.3)
    encryption_cert_der: bytes | None = (
        None  # token-decrypting cert, KeyDescriptor use="encryption"
    )
    display_name: str = "Federation Service"
    metadata_status: int = Field(default=200, ge=200, le=599)
    faults: Faults = NO_FAULTS


class OnPremConfig(_Frozen):
    """The customer's own Exchange (hybrid): autodiscover.<domain> and mail.<domain>.

    Mount one app per name: `host` is the name it is mounted as (Basic realm, AutodiscoverV1
    URL), `mail_host` is where the EWS/EAS/MAPI URLs it hands out point. Mailboxes with
    location "onprem" get settings; "exo" ones (moved to the cloud) get a POX redirectAddr to
    alias@`cloud_routing_domain` (§2.5), default <first label>.mail.onmicrosoft.com.
    """

    kind: Literal["onprem"] = "onprem"
    host: str
    mail_host: str
    mailboxes: tuple[Mailbox, ...] = ()
    cloud_routing_domain: str | None = None
    eas_version: str = "15.1"  # Exchange 2016
    faults: Faults = NO_FAULTS


class GraphConfig(_Frozen):
    """graph.microsoft.com (or the cloud's Graph host, §5, §7): Microsoft Graph over the world's
    tenant (`sandbox.tenant.graph`). Without tenant data every token is refused."""

    kind: Literal["graph"] = "graph"
    host: str = "graph.microsoft.com"
    faults: Faults = NO_FAULTS


class WebsiteConfig(_Frozen):
    """The customer's web server at <domain> / www.<domain> (§2.1 step 2, KB 3049615).

    autodiscover: "404" normal site; "hijack-imap" answers Autodiscover with IMAP settings;
    "redirect-elsewhere" 302s to `redirect_target`; "500" breaks.
    """

    kind: Literal["website"] = "website"
    domain: str
    autodiscover: Literal["404", "hijack-imap", "redirect-elsewhere", "500"] = "404"
    redirect_target: str = "https://hosting.example.net/autodiscover/autodiscover.xml"
    imap_host: str | None = None  # hijack answer's server; None = mail.<domain>
    server_header: str = "Apache/2.4.41 (Ubuntu)"
    faults: Faults = NO_FAULTS


ServiceConfig = (
    ExoConfig
    | AutodiscoverRedirectConfig
    | AutodiscoverSConfig
    | LoginConfig
    | AdfsConfig
    | OnPremConfig
    | WebsiteConfig
    | GraphConfig
)


def build_app(config: ServiceConfig, tenant: Any = None) -> web.Application:
    """The aiohttp application that plays `config`'s role. `tenant` is the world's live
    `sandbox.tenant.state.TenantState` (None: no tenant data), shared by the login host, Graph
    and the Exchange admin API."""
    # Imported here: every app imports this module, so a top-level import would be circular.
    from sandbox.services import adfs, autodiscover, exo, login, onprem, website  # noqa: PLC0415
    from sandbox.tenant import graph  # noqa: PLC0415

    match config:
        case ExoConfig():
            return exo.make_app(config, tenant)
        case GraphConfig():
            return graph.make_app(config.host, config.faults, tenant)
        case AutodiscoverRedirectConfig():
            return autodiscover.make_redirect_app(config)
        case AutodiscoverSConfig():
            return autodiscover.make_pox_app(config, tenant)
        case LoginConfig():
            return login.make_app(config, tenant)
        case AdfsConfig():
            return adfs.make_app(config)
        case OnPremConfig():
            return onprem.make_app(config)
        case WebsiteConfig():
            return website.make_app(config)
    raise TypeError(f"no sandbox app for {type(config).__name__}")
