"""Named sandbox scenarios: healthy and broken tenants, each with what mailfix should conclude.

`CATALOGUE[id]` / `get(id)`. Tests run diagnoses against these and compare with `expect`;
`make demo` and the benchmarks pick worlds from here. Every scenario is a small variation of
the healthy tenant, so the one thing it is about stands out.

Expectations pin only the checks a scenario is about (see sandbox/scenario.py). Statuses follow
DESIGN.md "Check catalogue": e.g. with autodiscover.DOMAIN CNAME'd to autodiscover.outlook.com,
autodiscover.v1 passes via the HTTP redirect; a warning that does not stand in the client's way
(MX elsewhere, a token-signing certificate that still works) leaves device-or-app on top, as
the playbooks' decision table says (reference/playbooks.md §4).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from checks.models import Client, Status
from checks.settings import Cloud
from sandbox.ca import CertKind
from sandbox.dns_server import DnsFaultKind
from sandbox.scenario import (
    CertSpec,
    DnsFault,
    Expectation,
    Fault,
    Host,
    Listener,
    Parts,
    Protocol,
    Scenario,
    a_label,
    cloud_tenant,
    customer_cert,
    microsoft_cert,
    microsoft_hosts,
    token_signing_cert,
    user_mailbox,
    website_host,
)
from sandbox.services.configs import (
    AdfsConfig,
    AutodiscoverRedirectConfig,
    Faults,
    OnPremConfig,
    RealmInfo,
    WebsiteConfig,
)
from sandbox.tenant.build import IPHONE_ID, SANDBOX_SECRET, tenant_data
from sandbox.tenant.models import (
    EXCHANGE_S_ENTERPRISE,
    SKU_APPS_FOR_BUSINESS,
    SKU_E3,
    SKU_M365_F1,
    AppliedPolicy,
    AssignedLicense,
    CasSettings,
    ClientAccessRule,
    ClientSecret,
    DeviceAccessRule,
    Group,
    ProvisioningError,
    ServiceIssue,
    SignInEvent,
    Throttle,
    ca_policy,
    ip_location,
    stable_id,
)

P, W, F, E = Status.PASS, Status.WARN, Status.FAIL, Status.ERROR
OUTLOOK, MOBILE, IMAP, POP, SMTP, WEB = (
    Client.OUTLOOK,
    Client.MOBILE,
    Client.IMAP,
    Client.POP,
    Client.SMTP,
    Client.WEB,
)
DEVICE = "device-or-app"
# PLAN "New cause ids": service-incident replaces service-degraded.
SERVICE_INCIDENT = "service-incident"

# What "all is well" looks like per client, for the checks that client certainly runs.
HEALTHY: dict[Client, dict[str, Status]] = {
    OUTLOOK: {
        "dns.mx": P,
        "dns.autodiscover": P,
        "dns.spf": P,
        "autodiscover.v1": P,
        "autodiscover.v2": P,
        "net.https": P,
        "realm.federation": P,
    },
    MOBILE: {
        "dns.autodiscover": P,
        "autodiscover.v2": P,
        "net.https": P,
        "activesync.endpoint": P,
        "realm.federation": P,
    },
    IMAP: {"net.imap": P},
    POP: {"net.pop": P},
    SMTP: {"net.smtp": P},
    WEB: {"net.https": P},
}


def expect(client: Client, top: str) -> Expectation:
    """The healthy statuses for `client`, and `top` as the top cause."""
    return Expectation(client=client, statuses=dict(HEALTHY[client]), top_cause=top)


def only(
    client: Client, top: str, statuses: Mapping[str, Status], also: tuple[str, ...] = ()
) -> Expectation:
    """An expectation pinning exactly `statuses` (nothing from HEALTHY)."""
    return Expectation(client=client, statuses=dict(statuses), top_cause=top, also=also)


def healthy_but(
    client: Client, top: str, statuses: Mapping[str, Status], also: tuple[str, ...] = ()
) -> Expectation:
    """The healthy statuses for `client`, with `statuses` changed or added."""
    return Expectation(
        client=client, statuses={**HEALTHY[client], **statuses}, top_cause=top, also=also
    )


def all_healthy(*clients: Client) -> tuple[Expectation, ...]:
    return tuple(expect(c, DEVICE) for c in clients)


MANAGED = RealmInfo(namespace_type="Managed")
EVERY = (OUTLOOK, MOBILE, IMAP, POP, SMTP, WEB)


def tenant(
    domain: str = "contoso.com",
    *,
    cloud: Cloud = Cloud.GLOBAL,
    user: str = "ana",
    realm: RealmInfo | None = MANAGED,
    location: str = "exo",
    ms: Mapping[str, Mapping[str, Any]] | None = None,
    dns: Mapping[str, Any] | None = None,
    extra: Iterable[Host] = (),
    onprem_autodiscover_host: str | None = None,
    latency_ms: int = 0,
) -> Parts:
    """A Microsoft 365 tenant for `user@domain`: Microsoft's hosts plus the customer's DNS.

    ms: overrides per Microsoft host role (see `microsoft_hosts`); dns: `cloud_tenant` keywords;
    realm None: the domain is in no tenant (getuserrealm says Unknown).
    """
    mailbox = user_mailbox(user, domain, display_name=user.title(), location=location)
    hosts = microsoft_hosts(
        cloud,
        mailboxes=[mailbox],
        realms={domain: realm} if realm is not None else {},
        onprem_autodiscover_host=onprem_autodiscover_host,
        latency_ms=latency_ms,
        **(ms or {}),
    )
    customer = cloud_tenant(domain, cloud, **(dns or {}))
    every = hosts + customer.hosts + tuple(extra)
    if latency_ms:
        every = tuple(h.model_copy(update={"latency_ms": latency_ms}) for h in every)
    return Parts(records=customer.records, hosts=every)


def scenario(
    id: str,
    title: str,
    description: str,
    parts: Parts,
    expect: Iterable[Expectation],
    *,
    domain: str = "contoso.com",
    user: str = "ana",
    cloud: Cloud = Cloud.GLOBAL,
    dns_faults: Iterable[DnsFault] = (),
    dns_latency_ms: int = 0,
    hosts: Iterable[Host] | None = None,
) -> Scenario:
    return Scenario(
        id=id,
        title=title,
        description=description,
        cloud=cloud,
        domain=domain,
        user=user,
        records=parts.records,
        dns_faults=tuple(dns_faults),
        dns_latency_ms=dns_latency_ms,
        hosts=tuple(hosts) if hosts is not None else parts.hosts,
        expect=tuple(expect),
    )


def _domain_faults(domain: str, kind: DnsFaultKind) -> tuple[DnsFault, ...]:
    """The fault on every name a diagnosis asks about under `domain`."""
    d = a_label(domain)
    names = (d, f"autodiscover.{d}", f"_autodiscover._tcp.{d}", f"www.{d}")
    return tuple(DnsFault(name=n, kind=kind) for n in names)


def _federated(sts_days_left: int = 200, **adfs: Any) -> tuple[RealmInfo, Host]:
    """A federated realm and its AD FS host sts.contoso.com (valid TLS unless `cert` given)."""
    sts = "sts.contoso.com"
    cert = adfs.pop("cert", None) or customer_cert(sts, organization="Contoso Ltd")
    app = AdfsConfig(
        sts_host=sts,
        signing_cert_der=token_signing_cert(sts, days_left=sts_days_left),
        display_name="Contoso Federation Service",
        **adfs,
    )
    host = Host(
        names=(sts,), listeners=(Listener(port=443, protocol=Protocol.HTTPS, app=app),), cert=cert
    )
    realm = RealmInfo(namespace_type="Federated", brand="Contoso", sts_host=sts)
    return realm, host


def _build() -> dict[str, Scenario]:
    out: list[Scenario] = []
    add = out.append

    # ---- healthy worlds ---------------------------------------------------------------
    add(
        scenario(
            "healthy",
            "Healthy Microsoft 365 tenant",
            "contoso.com is fully in Exchange Online: MX, autodiscover CNAME and SPF as "
            "Microsoft publishes them, a plain website at the root. Nothing server-side fails, "
            "so the person's device or app is the most likely cause.",
            tenant(),
            all_healthy(*EVERY),
        )
    )
    add(
        scenario(
            "healthy-latency",
            "Healthy tenant behind a slow link",
            "The healthy tenant with 40 ms per round trip to every host and 5 ms DNS: the "
            "benchmark world for 'wall time close to the critical path'.",
            tenant(latency_ms=40),
            all_healthy(OUTLOOK, MOBILE, IMAP, SMTP),
            dns_latency_ms=5,
        )
    )
    add(
        scenario(
            "root-blackhole",
            "Website at the root domain never answers",
            "contoso.com's web server accepts connections and never answers (a dead load "
            "balancer). Outlook's root-domain Autodiscover step times out, the HTTP redirect "
            "still works: a pass, but the slowest healthy world — the benchmark world.",
            tenant(dns={"website": website_host("contoso.com", fault=Fault.BLACK_HOLE)}),
            all_healthy(OUTLOOK, MOBILE, IMAP),
        )
    )
    add(
        scenario(
            "gcchigh-healthy",
            "Healthy GCC High tenant",
            "A US government (GCC High) tenant: every Microsoft host is the .us one "
            "(outlook.office365.us, login.microsoftonline.us, autodiscover.office365.us).",
            tenant("fabrikam-agency.us", cloud=Cloud.GCCHIGH),
            all_healthy(OUTLOOK, MOBILE, IMAP, SMTP),
            domain="fabrikam-agency.us",
            cloud=Cloud.GCCHIGH,
        )
    )
    add(
        scenario(
            "idn-healthy",
            "Healthy tenant with an internationalised domain",
            "bücher-beispiel.de (xn--bcher-beispiel-1ob.de on the wire): the address, DNS "
            "names and certificates must all use the IDNA form.",
            tenant("bücher-beispiel.de", user="anna"),
            all_healthy(OUTLOOK, MOBILE, IMAP),
            domain="bücher-beispiel.de",
            user="anna",
        )
    )

    # ---- Autodiscover -------------------------------------------------------------------
    add(
        scenario(
            "autodiscover-cname-missing",
            "No autodiscover record",
            "The autodiscover CNAME was never created (or deleted in a DNS move): no method "
            "reaches Autodiscover — 'The Autodiscover service couldn't be contacted "
            "successfully by any method.'",
            tenant(dns={"autodiscover": None}),
            [
                healthy_but(
                    OUTLOOK,
                    "autodiscover-dns-missing",
                    {"dns.autodiscover": F, "autodiscover.v1": F},
                ),
                only(MOBILE, "autodiscover-dns-missing", {"dns.autodiscover": F}),
            ],
        )
    )
    add(
        scenario(
            "autodiscover-cname-stale",
            "autodiscover points at an old server",
            "autodiscover.contoso.com is a CNAME to the old hosting provider's mail server, "
            "which no longer listens (connections refused).",
            tenant(
                dns={"autodiscover": "mail.oldhost.example.net"},
                extra=[Host(names=("mail.oldhost.example.net",))],
            ),
            [
                healthy_but(
                    OUTLOOK,
                    "autodiscover-dns-elsewhere",
                    {"dns.autodiscover": W, "autodiscover.v1": F},
                ),
                only(MOBILE, "autodiscover-dns-elsewhere", {"dns.autodiscover": W}),
            ],
        )
    )
    add(
        scenario(
            "autodiscover-root-hijack",
            "Website at the root domain answers Autodiscover",
            "contoso.com's Apache answers /autodiscover/autodiscover.xml with IMAP settings "
            "(KB 3049615): Outlook takes them before it ever tries Microsoft.",
            tenant(
                dns={
                    "website": website_host(
                        "contoso.com",
                        app=WebsiteConfig(domain="contoso.com", autodiscover="hijack-imap"),
                    )
                }
            ),
            [
                # Issue 6: a warning that stands in Outlook's way ranks above the device.
                healthy_but(
                    OUTLOOK, "autodiscover-root-hijack", {"autodiscover.v1": W}, also=(DEVICE,)
                ),
            ],
        )
    )
    add(
        scenario(
            "autodiscover-root-cert-expired",
            "Website at the root domain has an expired certificate",
            "contoso.com's HTTPS certificate expired; Outlook's first Autodiscover step meets "
            "it (a certificate prompt) before the HTTP redirect succeeds.",
            tenant(
                dns={
                    "website": website_host(
                        "contoso.com",
                        cert=customer_cert("contoso.com", "www.contoso.com", kind=CertKind.EXPIRED),
                    )
                }
            ),
            [
                healthy_but(
                    OUTLOOK, DEVICE, {"autodiscover.v1": W}, also=("autodiscover-bad-certificate",)
                )
            ],
        )
    )
    add(
        scenario(
            "autodiscover-cert-expired",
            "Customer's autodiscover host has an expired certificate",
            "autodiscover.contoso.com is an A record to a redirect server the customer runs; "
            "its HTTPS certificate expired, its HTTP redirect to Microsoft still works.",
            tenant(
                dns={"autodiscover": None},
                extra=[
                    Host(
                        names=("autodiscover.contoso.com",),
                        listeners=(
                            Listener(
                                port=80, protocol=Protocol.HTTP, app=AutodiscoverRedirectConfig()
                            ),
                            Listener(
                                port=443, protocol=Protocol.HTTPS, app=AutodiscoverRedirectConfig()
                            ),
                        ),
                        cert=customer_cert("autodiscover.contoso.com", kind=CertKind.EXPIRED),
                    )
                ],
            ),
            [
                healthy_but(
                    OUTLOOK,
                    DEVICE,
                    {"dns.autodiscover": W, "autodiscover.v1": W},
                    also=("autodiscover-bad-certificate",),
                )
            ],
        )
    )
    add(
        scenario(
            "autodiscover-s-blocked",
            "Microsoft's Autodiscover endpoint unreachable",
            "DNS is right, but autodiscover-s.outlook.com refuses connections from this "
            "network (a firewall allow-list that missed it): the redirect leads nowhere.",
            tenant(ms={"autodiscover_s": {"fault": Fault.REFUSED}}),
            [healthy_but(OUTLOOK, "autodiscover-unreachable", {"autodiscover.v1": F})],
        )
    )
    add(
        scenario(
            "autodiscover-v2-garbage",
            "Autodiscover v2 answers garbage",
            "outlook.office365.com answers HTTP requests with a body that is neither JSON nor "
            "XML (a broken proxy in the path); TLS itself is fine.",
            tenant(ms={"exo_https": {"app": {"faults": Faults(garbage=True)}}}),
            [
                only(
                    OUTLOOK,
                    "autodiscover-error",
                    {"autodiscover.v2": F, "net.https": P, "autodiscover.v1": P},
                )
            ],
        )
    )

    # ---- domain and DNS ------------------------------------------------------------------
    add(
        scenario(
            "domain-not-in-m365",
            "Domain not in Microsoft 365",
            "fabrikam.com exists, but no tenant has it (getuserrealm: Unknown): mail goes to "
            "another provider, there is no autodiscover record. A typo'd or unverified domain.",
            tenant(
                "fabrikam.com",
                realm=None,
                dns={
                    "mx": ["mx1.mailhost.example.net", "mx2.mailhost.example.net"],
                    "autodiscover": None,
                    "spf": ["v=spf1 include:_spf.mailhost.example.net ~all"],
                },
            ),
            [
                only(
                    OUTLOOK,
                    "domain-not-in-m365",
                    {
                        "dns.mx": W,
                        "dns.autodiscover": F,
                        "dns.spf": W,
                        "autodiscover.v1": F,
                        "realm.federation": F,
                    },
                ),
                only(MOBILE, "domain-not-in-m365", {"realm.federation": F}),
            ],
            domain="fabrikam.com",
        )
    )
    add(
        scenario(
            "domain-not-found",
            "Domain does not exist",
            "contoso-typo.com has no DNS at all (NXDOMAIN) and no tenant.",
            Parts(records=(), hosts=microsoft_hosts()),
            [
                only(
                    OUTLOOK,
                    "domain-not-found",
                    {
                        "dns.mx": F,
                        "dns.autodiscover": F,
                        "dns.spf": F,
                        "autodiscover.v1": F,
                        "realm.federation": F,
                    },
                ),
                only(MOBILE, "domain-not-found", {"dns.mx": F, "realm.federation": F}),
            ],
            domain="contoso-typo.com",
        )
    )
    add(
        scenario(
            "mx-third-party",
            "MX points to a third-party mail filter",
            "Inbound mail passes a filtering service before Exchange Online: MX elsewhere is "
            "a warning, not why a client cannot connect.",
            tenant(
                dns={
                    "mx": ["mx1.mailguard.example.net", "mx2.mailguard.example.net"],
                    "spf": [
                        "v=spf1 include:spf.protection.outlook.com"
                        " include:_spf.mailguard.example.net -all"
                    ],
                }
            ),
            [
                healthy_but(OUTLOOK, DEVICE, {"dns.mx": W}),
                expect(MOBILE, DEVICE),
                expect(IMAP, DEVICE),
            ],
        )
    )
    add(
        scenario(
            "spf-duplicate",
            "Two SPF records",
            "A second v=spf1 TXT record was added for a newsletter tool: SPF is broken "
            "(permerror), but that does not stop anyone connecting to their mailbox.",
            tenant(
                dns={
                    "spf": [
                        "v=spf1 include:spf.protection.outlook.com -all",
                        "v=spf1 include:_spf.newsletter.example.net ~all",
                    ]
                }
            ),
            [healthy_but(OUTLOOK, DEVICE, {"dns.spf": F}), expect(MOBILE, DEVICE)],
        )
    )
    add(
        scenario(
            "dns-servfail",
            "DNS fails for the domain",
            "The domain's name servers answer SERVFAIL for every name under contoso.com "
            "(a broken DNSSEC signature or a lame delegation).",
            tenant(),
            [
                only(OUTLOOK, "dns-failure", {"dns.mx": E, "dns.autodiscover": E, "dns.spf": E}),
                only(MOBILE, "dns-failure", {"dns.autodiscover": E}),
            ],
            dns_faults=_domain_faults("contoso.com", DnsFaultKind.SERVFAIL),
        )
    )
    add(
        scenario(
            "dns-silent",
            "DNS does not answer for the domain",
            "Queries for names under contoso.com are never answered (firewalled name "
            "servers): every lookup times out.",
            tenant(),
            [
                only(OUTLOOK, "dns-failure", {"dns.mx": E, "dns.autodiscover": E, "dns.spf": E}),
                only(MOBILE, "dns-failure", {"dns.autodiscover": E}),
            ],
            dns_faults=_domain_faults("contoso.com", DnsFaultKind.SILENT),
        )
    )

    # ---- federation ---------------------------------------------------------------------
    realm, sts = _federated()
    add(
        scenario(
            "federated-healthy",
            "Federated domain, AD FS healthy",
            "contoso.com signs in through AD FS at sts.contoso.com: metadata reachable over "
            "valid TLS, token-signing certificate good for months.",
            tenant(realm=realm, extra=[sts]),
            all_healthy(OUTLOOK, MOBILE),
        )
    )
    realm, sts = _federated()
    add(
        scenario(
            "federated-root-blackhole",
            "Federated domain, website at the root domain never answers",
            "federated-healthy, but contoso.com's web server accepts connections and never "
            "answers, as in root-blackhole: the slowest healthy federated world, the "
            "federated benchmark world.",
            tenant(
                realm=realm,
                extra=[sts],
                dns={"website": website_host("contoso.com", fault=Fault.BLACK_HOLE)},
            ),
            all_healthy(OUTLOOK, MOBILE),
        )
    )
    realm, sts = _federated(metadata_status=503)
    add(
        scenario(
            "adfs-metadata-503",
            "AD FS down (metadata 503)",
            "AD FS or its Web Application Proxy is down: FederationMetadata.xml and MEX "
            "answer 503 — 'Failed to retrieve ADFS metadata'.",
            tenant(realm=realm, extra=[sts]),
            [
                healthy_but(OUTLOOK, "adfs-unreachable", {"realm.federation": F}),
                healthy_but(MOBILE, "adfs-unreachable", {"realm.federation": F}),
            ],
        )
    )
    realm, sts = _federated(
        cert=customer_cert("sts.contoso.com", kind=CertKind.EXPIRED, organization="Contoso Ltd")
    )
    add(
        scenario(
            "adfs-tls-expired",
            "AD FS TLS certificate expired",
            "sts.contoso.com presents an expired SSL certificate: clients cannot sign in.",
            tenant(realm=realm, extra=[sts]),
            [
                healthy_but(OUTLOOK, "adfs-certificate-invalid", {"realm.federation": F}),
                healthy_but(MOBILE, "adfs-certificate-invalid", {"realm.federation": F}),
            ],
        )
    )
    realm, sts = _federated(sts_days_left=-12)
    add(
        scenario(
            "adfs-token-signing-expired",
            "AD FS token-signing certificate expired",
            "The token-signing certificate in FederationMetadata.xml expired 12 days ago "
            "(KB 2383983): Entra ID rejects every federated sign-in.",
            tenant(realm=realm, extra=[sts]),
            [
                healthy_but(OUTLOOK, "adfs-token-signing-expired", {"realm.federation": F}),
                healthy_but(MOBILE, "adfs-token-signing-expired", {"realm.federation": F}),
            ],
        )
    )
    realm, sts = _federated(sts_days_left=10)
    add(
        scenario(
            "adfs-token-signing-expiring",
            "AD FS token-signing certificate expires in 10 days",
            "Sign-in works today; in 10 days it will not. A warning for the admin, not why "
            "anyone cannot connect now.",
            tenant(realm=realm, extra=[sts]),
            [
                healthy_but(OUTLOOK, DEVICE, {"realm.federation": W}),
                healthy_but(MOBILE, DEVICE, {"realm.federation": W}),
            ],
        )
    )

    # ---- hybrid ---------------------------------------------------------------------------
    onprem = Host(
        names=("mail.contoso.com",),
        listeners=(
            Listener(
                port=443,
                protocol=Protocol.HTTPS,
                app=OnPremConfig(
                    host="autodiscover.contoso.com",
                    mail_host="mail.contoso.com",
                    mailboxes=(
                        user_mailbox("ana", "contoso.com", display_name="Ana", location="onprem"),
                    ),
                ),
            ),
        ),
        cert=customer_cert(
            "mail.contoso.com", "autodiscover.contoso.com", organization="Contoso Ltd"
        ),
    )
    add(
        scenario(
            "hybrid-onprem-mailbox",
            "Hybrid: the mailbox is on-premises",
            "autodiscover.contoso.com is a CNAME to the on-premises Exchange (as hybrid "
            "requires) and the mailbox lives there: Autodiscover v2 at Microsoft answers 302 "
            "to on-premises.",
            tenant(location="onprem", dns={"autodiscover": "mail.contoso.com"}, extra=[onprem]),
            [
                # Issue 6: the Exchange Online checks say nothing about an on-premises mailbox,
                # so "the device" cannot lead.
                healthy_but(
                    OUTLOOK,
                    "hybrid-mailbox-on-premises",
                    {"dns.autodiscover": W, "autodiscover.v1": P, "autodiscover.v2": P},
                    also=(DEVICE,),
                ),
                only(MOBILE, "hybrid-mailbox-on-premises", {"autodiscover.v2": P}, also=(DEVICE,)),
            ],
        )
    )

    # ---- Exchange Online endpoints ---------------------------------------------------
    add(
        scenario(
            "imap-blocked",
            "IMAP port 993 refused",
            "A firewall rejects outbound 993 to outlook.office365.com.",
            tenant(ms={"exo_imap": {"fault": Fault.REFUSED}}),
            [only(IMAP, "imap-blocked", {"net.imap": F}), expect(OUTLOOK, DEVICE)],
        )
    )
    add(
        scenario(
            "pop-blocked",
            "POP port 995 refused",
            "A firewall rejects outbound 995 to outlook.office365.com.",
            tenant(ms={"exo_pop": {"fault": Fault.REFUSED}}),
            [only(POP, "pop-blocked", {"net.pop": F}), expect(OUTLOOK, DEVICE)],
        )
    )
    add(
        scenario(
            "smtp-blocked",
            "SMTP submission port 587 refused",
            "The network blocks outbound 587 to smtp.office365.com.",
            tenant(ms={"smtp": {"fault": Fault.REFUSED}}),
            [only(SMTP, "smtp-blocked", {"net.smtp": F}), expect(OUTLOOK, DEVICE)],
        )
    )
    add(
        scenario(
            "smtp-starttls-stripped",
            "SMTP without STARTTLS",
            "A middlebox rewrites the EHLO answer and strips STARTTLS: the client must not "
            "send credentials in the clear, so submission fails.",
            tenant(ms={"smtp": {"mail": {"starttls_offered": False}}}),
            [only(SMTP, "smtp-starttls-broken", {"net.smtp": F})],
        )
    )
    add(
        scenario(
            "smtp-starttls-garbage",
            "SMTP STARTTLS accepted, then garbage",
            "The server says 220 to STARTTLS and then sends bytes that are not TLS (an "
            "inspecting firewall that cannot do TLS on 587).",
            tenant(ms={"smtp": {"mail": {"starttls_broken": True}}}),
            [only(SMTP, "smtp-starttls-broken", {"net.smtp": F})],
        )
    )
    inspected = CertSpec(
        kind=CertKind.UNTRUSTED,
        names=microsoft_cert(Cloud.GLOBAL).names,
        organization="Microsoft Corporation",
    )
    add(
        scenario(
            "tls-inspection",
            "TLS inspection in the way",
            "A corporate proxy intercepts HTTPS: outlook.office365.com presents a certificate "
            "with Microsoft's names, issued by the proxy's own CA that this machine does not "
            "trust.",
            tenant(ms={"exo_https": {"cert": inspected}}),
            [
                only(OUTLOOK, "tls-inspection", {"net.https": F, "autodiscover.v2": F}),
                only(MOBILE, "tls-inspection", {"net.https": F}),
                only(WEB, "tls-inspection", {"net.https": F}),
            ],
        )
    )
    add(
        scenario(
            "exo-https-blackhole",
            "outlook.office365.com:443 never answers",
            "Packets to outlook.office365.com:443 vanish (a black-holed route): connections "
            "hang until they time out.",
            tenant(ms={"exo_https": {"fault": Fault.BLACK_HOLE}}),
            [
                only(OUTLOOK, "exo-unreachable", {"net.https": F, "autodiscover.v2": F}),
                only(WEB, "exo-unreachable", {"net.https": F}),
            ],
        )
    )
    add(
        scenario(
            "activesync-503",
            "Exchange Online answers 503",
            "outlook.office365.com answers 503 Service Unavailable for every request "
            "(ActiveSync included): a service incident, not the person's phone.",
            tenant(ms={"exo_https": {"app": {"server_error": 503}}}),
            [
                only(
                    MOBILE,
                    SERVICE_INCIDENT,
                    {"net.https": P, "activesync.endpoint": F, "autodiscover.v2": F},
                )
            ],
        )
    )

    out.extend(_tenant_scenarios(onprem))
    return {s.id: s for s in out}


# ---- tenant scenarios (issue 6) ----------------------------------------------------------------
#
# Each is the healthy tenant (sandbox.tenant.build: ana has E3, a mailbox with every protocol on,
# one iPhone, no policy in the way; the app has every permission mailfix needs) with one
# admin-side fault. Expectations name the cause per client (PLAN "New cause ids"); the tenant
# checks' statuses follow the findings contract in PLAN.md.

# Tenant checks when nothing is wrong, per client. Client Access Rules are retired (skip).
TENANT_OK: dict[Client, dict[str, Status]] = {
    c: {
        "tenant.account": P,
        "tenant.license": P,
        "tenant.mailbox": P,
        "tenant.client_access_rules": Status.SKIP,
        "tenant.conditional_access": P,
        "tenant.signins": P,
        "tenant.service_health": P,
    }
    for c in EVERY
}
TENANT_OK[MOBILE] = {**TENANT_OK[MOBILE], "tenant.devices": P}

CA_FAIL = {"tenant.conditional_access": F}

# Sign-in failure texts (Entra error-code reference; §5.4 table for the codes).
_REASONS = {
    50126: "Error validating credentials due to invalid username or password.",
    50053: "Your account is locked. You've tried to sign in too many times with an incorrect "
    "user ID or password.",
    50055: "The password is expired.",
    50057: "User account is disabled. The account has been disabled by an administrator.",
    53003: "Access has been blocked by Conditional Access policies. The access policy does not "
    "allow token issuance.",
    50076: "Due to a configuration change made by your administrator, or because you moved to "
    "a new location, you must use multi-factor authentication to access "
    "'00000002-0000-0ff1-ce00-000000000000'.",
    53000: "Device is not in required device state: compliant. Conditional Access policy "
    "requires a compliant device, and the device is not compliant.",
}
# clientAppUsed and app names per client (§5.4).
_CLIENT_APP = {
    OUTLOOK: ("Mobile Apps and Desktop clients", "Microsoft Office", "Windows10"),
    MOBILE: ("Exchange ActiveSync", "iOS Accounts", "Ios 17.5.1"),
    IMAP: ("IMAP4", "Office 365 Exchange Online", "Windows10"),
    POP: ("POP3", "Office 365 Exchange Online", "Windows10"),
    SMTP: ("Authenticated SMTP", "Office 365 Exchange Online", "Windows10"),
    WEB: ("Browser", "Office 365 Exchange Online", "Windows10"),
}


def signins(
    code: int,
    client: Client,
    *,
    count: int = 3,
    user: str = "ana@contoso.com",
    policy: dict[str, Any] | None = None,
) -> tuple[SignInEvent, ...]:
    """`count` failed sign-ins of `user` with `client`, ten minutes apart, newest 5 min ago."""
    client_app, app_name, os_name = _CLIENT_APP[client]
    applied: tuple[AppliedPolicy, ...] = ()
    ca_status: Any = "notApplied"
    if policy is not None:
        applied = (
            AppliedPolicy(
                id=policy["id"],
                display_name=policy["displayName"],
                result="failure",
                enforced_grant_controls=tuple(
                    c.title() if c == "block" else c
                    for c in policy["grantControls"]["builtInControls"]
                ),
            ),
        )
        ca_status = "failure"
    return tuple(
        SignInEvent(
            upn=user,
            minutes_ago=5 + 10 * n,
            error_code=code,
            failure_reason=_REASONS.get(code, "Other."),
            app_display_name=app_name,
            client_app_used=client_app,
            operating_system=os_name,
            conditional_access_status=ca_status,
            applied_policies=applied,
        )
        for n in range(count)
    )


def tenant_ok(
    client: Client,
    top: str,
    changed: Mapping[str, Status] | None = None,
    also: tuple[str, ...] = (),
) -> Expectation:
    """Healthy network and tenant statuses for `client`, with `changed` pinned on top."""
    return Expectation(
        client=client,
        statuses={**HEALTHY[client], **TENANT_OK[client], **dict(changed or {})},
        top_cause=top,
        also=also,
    )


def with_tenant(
    id: str,
    title: str,
    description: str,
    expect: Iterable[Expectation],
    *,
    person: Mapping[str, Any] | None = None,
    app: Mapping[str, Any] | None = None,
    parts: Parts | None = None,
    domain: str = "contoso.com",
    cloud: Cloud = Cloud.GLOBAL,
    **tenant_fields: Any,
) -> Scenario:
    """A tenant scenario: the healthy Microsoft 365 world plus tenant data changed as given."""
    data = tenant_data(domain, person_fields=person, app=app, **tenant_fields)
    built = scenario(
        id,
        title,
        description,
        parts or tenant(domain, cloud=cloud),
        expect,
        domain=domain,
        cloud=cloud,
    )
    return built.model_copy(update={"tenant": data})


def _tenant_scenarios(onprem: Host) -> list[Scenario]:
    out: list[Scenario] = []
    add = out.append
    e3_no_exchange = AssignedLicense(
        sku_id=SKU_E3.sku_id, disabled_plans=(EXCHANGE_S_ENTERPRISE[0],)
    )

    # -- healthy --
    add(
        with_tenant(
            "tenant-healthy",
            "Tenant checked: nothing in the way",
            "mailfix can see inside the tenant: ana is enabled, licensed (E3), has a mailbox "
            "with every protocol on and a phone that syncs; no policy blocks her; no incident. "
            "Every check ran and passed, so her device or app is the likely cause.",
            [tenant_ok(c, DEVICE) for c in (OUTLOOK, MOBILE, IMAP, POP, SMTP, WEB)],
        )
    )
    add(
        with_tenant(
            "tenant-gcchigh-healthy",
            "GCC High tenant checked: nothing in the way",
            "The healthy tenant in GCC High: tokens from login.microsoftonline.us for "
            "https://graph.microsoft.us and https://outlook.office365.us.",
            [tenant_ok(c, DEVICE) for c in (OUTLOOK, MOBILE)],
            parts=tenant("fabrikam-agency.us", cloud=Cloud.GCCHIGH),
            domain="fabrikam-agency.us",
            cloud=Cloud.GCCHIGH,
        )
    )

    add(
        with_tenant(
            "tenant-dod-healthy",
            "DoD tenant checked: nothing in the way",
            "The healthy tenant in the US Department of Defense cloud: Graph at "
            "dod-graph.microsoft.us, Exchange at outlook-dod.office365.us.",
            [tenant_ok(c, DEVICE) for c in (OUTLOOK, MOBILE)],
            parts=tenant("army-unit.mil", cloud=Cloud.DOD),
            domain="army-unit.mil",
            cloud=Cloud.DOD,
        )
    )
    add(
        with_tenant(
            "tenant-21vianet-healthy",
            "21Vianet tenant checked: nothing in the way",
            "The healthy tenant operated by 21Vianet: login.chinacloudapi.cn, Graph at "
            "microsoftgraph.chinacloudapi.cn, Exchange at partner.outlook.cn.",
            [tenant_ok(c, DEVICE) for c in (OUTLOOK, MOBILE)],
            parts=tenant("contoso.cn", cloud=Cloud.CHINA),
            domain="contoso.cn",
            cloud=Cloud.CHINA,
        )
    )

    # -- the account --
    add(
        with_tenant(
            "account-disabled",
            "Account disabled",
            "An admin blocked ana's sign-in (accountEnabled false) when she was off sick and "
            "never unblocked it: every app fails with AADSTS50057.",
            [
                tenant_ok(c, "account-disabled", {"tenant.account": F, "tenant.signins": F})
                for c in (OUTLOOK, MOBILE, IMAP)
            ],
            person={"account_enabled": False},
            signins=signins(50057, OUTLOOK),
        )
    )
    add(
        with_tenant(
            "account-soft-deleted",
            "Account deleted five days ago",
            "ana's account was deleted by mistake in a clean-up five days ago; it is in the "
            "recycle bin and can be restored for 25 more days.",
            [only(c, "account-deleted", {"tenant.account": F}) for c in (OUTLOOK, MOBILE, IMAP)],
            person={"deleted_days_ago": 5},
        )
    )
    bob = (
        tenant_data()
        .users[0]
        .model_copy(
            update={
                "id": stable_id("user", "anna@contoso.com"),
                "upn": "anna@contoso.com",
                "mail": "anna@contoso.com",
                "display_name": "Anna Berg",
                "proxy_addresses": ("SMTP:anna@contoso.com",),
            }
        )
    )
    add(
        with_tenant(
            "account-not-found",
            "No account owns the address",
            "The person typed ana@contoso.com but no account or alias in the tenant has it "
            "(the mailbox is anna@contoso.com): nothing can sign in with that address.",
            [only(c, "account-not-found", {"tenant.account": F}) for c in (OUTLOOK, MOBILE)],
            users=(bob,),
        )
    )
    add(
        with_tenant(
            "sync-proxy-conflict",
            "Directory sync: a proxy address conflict",
            "ana is synced from on-premises Active Directory; her new alias ana.lopez@contoso.com "
            "is already on another object, so Entra ID reports a provisioning error and the "
            "alias never arrives.",
            [
                tenant_ok(OUTLOOK, DEVICE, {"tenant.account": W}, also=("account-sync-error",)),
                tenant_ok(MOBILE, DEVICE, {"tenant.account": W}, also=("account-sync-error",)),
            ],
            person={
                "synced": True,
                "provisioning_errors": (ProvisioningError(value="smtp:ana.lopez@contoso.com"),),
            },
        )
    )

    # -- the licence --
    add(
        with_tenant(
            "no-licence",
            "No licence",
            "ana was created but never licensed: no Exchange Online plan, so no mailbox.",
            [
                only(c, "no-exchange-licence", {"tenant.license": F, "tenant.mailbox": F})
                for c in (OUTLOOK, MOBILE, IMAP)
            ],
            person={"licenses": ()},
        )
    )
    add(
        with_tenant(
            "apps-only-sku",
            "Licensed for Microsoft 365 Apps only",
            "ana has Microsoft 365 Apps for business (O365_BUSINESS): desktop Office, OneDrive, "
            "no Exchange mailbox.",
            [
                only(c, "no-exchange-licence", {"tenant.license": F, "tenant.mailbox": F})
                for c in (OUTLOOK, MOBILE)
            ],
            person={"licenses": (AssignedLicense(sku_id=SKU_APPS_FOR_BUSINESS.sku_id),)},
        )
    )
    add(
        with_tenant(
            "f1-sku",
            "Microsoft 365 F1: no mailbox",
            "ana is a frontline worker on Microsoft 365 F1 (M365_F1_COMM): Teams and SharePoint, "
            "but no Exchange mailbox (only Exchange Foundation).",
            [
                only(c, "no-exchange-licence", {"tenant.license": F, "tenant.mailbox": F})
                for c in (OUTLOOK, MOBILE)
            ],
            person={"licenses": (AssignedLicense(sku_id=SKU_M365_F1.sku_id),)},
        )
    )
    add(
        with_tenant(
            "exchange-plan-disabled",
            "Exchange Online switched off in the licence",
            "ana has E3, but an admin unticked 'Exchange Online (Plan 2)' in her licence.",
            [
                only(c, "exchange-plan-disabled", {"tenant.license": F, "tenant.mailbox": F})
                for c in (OUTLOOK, MOBILE, IMAP)
            ],
            person={"licenses": (e3_no_exchange,)},
        )
    )
    add(
        with_tenant(
            "exchange-plan-pending",
            "Exchange Online still provisioning",
            "ana was licensed an hour ago; the Exchange plan is PendingProvisioning and the "
            "mailbox does not exist yet.",
            [
                only(c, "exchange-plan-pending", {"tenant.license": F, "tenant.mailbox": F})
                for c in (OUTLOOK, MOBILE)
            ],
            person={"plan_status": {"EXCHANGE_S_ENTERPRISE": "PendingProvisioning"}},
        )
    )

    # -- mailbox protocols --
    add(
        with_tenant(
            "activesync-off",
            "ActiveSync switched off on the mailbox",
            "ActiveSyncEnabled is false on ana's mailbox (Set-CASMailbox): the phone's mail app "
            "cannot sync; Outlook on the PC is unaffected.",
            [
                tenant_ok(MOBILE, "protocol-disabled", {"tenant.mailbox": F}),
                tenant_ok(OUTLOOK, DEVICE),
            ],
            person={"cas": CasSettings(active_sync_enabled=False)},
        )
    )
    add(
        with_tenant(
            "imap-off",
            "IMAP switched off on the mailbox",
            "ImapEnabled is false on ana's mailbox (security defaults or a hardening script): "
            "her IMAP app cannot sign in.",
            [
                tenant_ok(IMAP, "protocol-disabled", {"tenant.mailbox": F}),
                tenant_ok(OUTLOOK, DEVICE),
            ],
            person={"cas": CasSettings(imap_enabled=False)},
        )
    )
    add(
        with_tenant(
            "pop-off",
            "POP switched off on the mailbox",
            "PopEnabled is false on ana's mailbox: her POP app cannot sign in.",
            [
                tenant_ok(POP, "protocol-disabled", {"tenant.mailbox": F}),
                tenant_ok(OUTLOOK, DEVICE),
            ],
            person={"cas": CasSettings(pop_enabled=False)},
        )
    )
    add(
        with_tenant(
            "smtp-auth-off-org-default",
            "SMTP AUTH off for the organisation",
            "Get-TransportConfig says SmtpClientAuthenticationDisabled true and ana's mailbox "
            "has no setting of its own ($null), so her scanner cannot send with SMTP AUTH.",
            [tenant_ok(SMTP, "smtp-auth-disabled", {"tenant.mailbox": F})],
            smtp_client_authentication_disabled=True,
        )
    )
    add(
        with_tenant(
            "smtp-auth-off-mailbox",
            "SMTP AUTH off on the mailbox",
            "SMTP AUTH is allowed for the organisation, but ana's mailbox has "
            "SmtpClientAuthenticationDisabled true.",
            [tenant_ok(SMTP, "smtp-auth-disabled", {"tenant.mailbox": F})],
            person={"cas": CasSettings(smtp_client_authentication_disabled=True)},
        )
    )
    add(
        with_tenant(
            "mapi-ews-off",
            "MAPI and EWS switched off for Outlook",
            "MAPIEnabled and EwsEnabled are false on ana's mailbox: Outlook for Windows cannot "
            "open it; her phone still syncs.",
            [
                tenant_ok(OUTLOOK, "protocol-disabled", {"tenant.mailbox": F}),
                tenant_ok(MOBILE, DEVICE),
            ],
            person={"cas": CasSettings(mapi_enabled=False, ews_enabled=False)},
        )
    )
    add(
        with_tenant(
            "owa-off",
            "Outlook on the web switched off",
            "OWAEnabled is false on ana's mailbox: outlook.office.com refuses her mailbox.",
            [
                tenant_ok(WEB, "protocol-disabled", {"tenant.mailbox": F}),
                tenant_ok(OUTLOOK, DEVICE),
            ],
            person={"cas": CasSettings(owa_enabled=False)},
        )
    )

    # -- devices --
    add(
        with_tenant(
            "device-quarantined-global",
            "New phones quarantined by the organisation default",
            "The organisation's ActiveSync default access level is Quarantine: ana's iPhone "
            "waits for an admin to allow it (DeviceAccessStateReason Global).",
            [
                tenant_ok(MOBILE, "device-quarantined", {"tenant.devices": F}),
                tenant_ok(OUTLOOK, DEVICE),
            ],
            default_access_level="Quarantine",
        )
    )
    add(
        with_tenant(
            "device-blocked-by-rule",
            "Phone model blocked by a device access rule",
            "A device access rule 'iPhone15C2 (DeviceModel)' blocks ana's phone model.",
            [tenant_ok(MOBILE, "device-blocked", {"tenant.devices": F})],
            device_rules=(
                DeviceAccessRule(
                    characteristic="DeviceModel", query_string="iPhone15C2", access_level="Block"
                ),
            ),
        )
    )
    add(
        with_tenant(
            "device-blocked-individually",
            "Phone on the mailbox's block list",
            "ana's iPhone id is in ActiveSyncBlockedDeviceIDs on her mailbox (a lost phone, "
            "later found).",
            [tenant_ok(MOBILE, "device-blocked", {"tenant.devices": F})],
            person={"cas": CasSettings(active_sync_blocked_device_ids=(IPHONE_ID,))},
        )
    )

    # -- Client Access Rules --
    add(
        with_tenant(
            "car-deny-imap",
            "A Client Access Rule denies IMAP",
            "The tenant still has Client Access Rules: 'Block IMAP' (priority 1) denies IMAP4 "
            "from everywhere; Outlook is not affected.",
            [
                tenant_ok(IMAP, "client-access-rule", {"tenant.client_access_rules": F}),
                tenant_ok(OUTLOOK, DEVICE, {"tenant.client_access_rules": P}),
            ],
            client_access_rules=(
                ClientAccessRule(
                    name="Always Allow Remote PowerShell",
                    priority=0,
                    action="AllowAccess",
                    any_of_protocols=("RemotePowerShell",),
                ),
                ClientAccessRule(name="Block IMAP", priority=1, any_of_protocols=("IMAP4",)),
            ),
        )
    )

    # -- Conditional Access --
    block_legacy = ca_policy(
        "Block legacy authentication", client_app_types=("exchangeActiveSync", "other")
    )
    add(
        with_tenant(
            "ca-block-legacy",
            "Conditional Access blocks legacy authentication",
            "'Block legacy authentication' blocks Exchange ActiveSync and other clients (IMAP, "
            "POP, SMTP with a password): the IMAP app and the phone's mail app are refused "
            "(AADSTS53003); Outlook with modern auth is not.",
            [
                tenant_ok(IMAP, "conditional-access-block", {**CA_FAIL, "tenant.signins": F}),
                # The phone is blocked by the policy; the IMAP app's refusals in the sign-in log
                # are not the phone's, and neither are they Outlook's (modern auth: not blocked).
                tenant_ok(MOBILE, "conditional-access-block", CA_FAIL),
                tenant_ok(OUTLOOK, DEVICE),
            ],
            ca_policies=(block_legacy,),
            signins=signins(53003, IMAP, policy=block_legacy),
        )
    )
    mfa_all = ca_policy("Require MFA for everyone", client_app_types=("all",), controls=("mfa",))
    add(
        with_tenant(
            "ca-mfa-legacy",
            "Conditional Access requires MFA: IMAP cannot do it",
            "'Require MFA for everyone' covers all client apps. Outlook can prompt for MFA; an "
            "IMAP app signing in with a password cannot, so it is refused.",
            [tenant_ok(IMAP, "conditional-access-mfa", {**CA_FAIL, "tenant.signins": F})],
            ca_policies=(mfa_all,),
            signins=signins(50076, IMAP),
        )
    )
    compliant = ca_policy(
        "Phones must be compliant",
        client_app_types=("mobileAppsAndDesktopClients", "exchangeActiveSync"),
        include_platforms=("iOS", "android"),
        controls=("compliantDevice",),
    )
    add(
        with_tenant(
            "ca-compliant-device-mobile",
            "Conditional Access requires a compliant phone",
            "'Phones must be compliant' requires an Intune-compliant device for iOS and Android; "
            "ana's iPhone is not enrolled (AADSTS53000).",
            # mailfix cannot tell whether the phone is enrolled: the control is one the phone
            # could meet (warn), the sign-in log shows it did not (AADSTS53000).
            [
                tenant_ok(
                    MOBILE,
                    "conditional-access-device",
                    {"tenant.conditional_access": W, "tenant.signins": F},
                )
            ],
            ca_policies=(compliant,),
            signins=signins(53000, MOBILE, policy=compliant),
        )
    )
    report_only = ca_policy(
        "Block legacy authentication (report-only)",
        state="enabledForReportingButNotEnforced",
        client_app_types=("exchangeActiveSync", "other"),
    )
    add(
        with_tenant(
            "ca-report-only",
            "Conditional Access block in report-only mode",
            "The legacy-authentication block is in report-only mode: it is logged, never "
            "enforced, so it is not why IMAP fails.",
            [tenant_ok(IMAP, DEVICE), tenant_ok(MOBILE, DEVICE)],
            ca_policies=(report_only,),
        )
    )
    exempt = Group(
        id=stable_id("group", "legacy-exempt"),
        display_name="Legacy auth exemptions",
        members=(stable_id("group", "scanners"),),
    )
    scanners = Group(
        id=stable_id("group", "scanners"),
        display_name="Scanner accounts",
        members=(stable_id("user", "ana@contoso.com"),),
    )
    block_except = ca_policy(
        "Block legacy authentication (with exemptions)",
        client_app_types=("exchangeActiveSync", "other"),
        exclude_groups=(exempt.id,),
    )
    add(
        with_tenant(
            "ca-excluded-group",
            "Legacy block with ana exempt through a nested group",
            "The legacy-authentication block excludes 'Legacy auth exemptions', which contains "
            "'Scanner accounts', which contains ana: the exclusion wins, the policy does not "
            "apply to her.",
            [tenant_ok(IMAP, DEVICE), tenant_ok(MOBILE, DEVICE)],
            ca_policies=(block_except,),
            groups=(exempt, scanners),
        )
    )
    office = ip_location("Head office", "198.51.100.0/24", "2001:db8:100::/48")
    block_outside = ca_policy(
        "Block access from outside the office",
        include_locations=("All",),
        exclude_locations=(office["id"],),
    )
    add(
        with_tenant(
            "ca-block-outside-office",
            "Conditional Access blocks sign-ins from outside the office",
            "Every app is blocked unless it signs in from the head office's addresses; ana "
            "signs in from home (AADSTS53003 naming the policy).",
            [only(IMAP, "conditional-access-block", {"tenant.signins": F})],
            ca_policies=(block_outside,),
            named_locations=(office,),
            signins=signins(53003, IMAP, policy=block_outside),
        )
    )

    # -- sign-ins --
    add(
        with_tenant(
            "signins-wrong-password",
            "Wrong password",
            "ana's IMAP app keeps signing in with her old password (AADSTS50126).",
            [tenant_ok(IMAP, "sign-in-wrong-password", {"tenant.signins": F})],
            signins=signins(50126, IMAP, count=5),
        )
    )
    add(
        with_tenant(
            "signins-locked",
            "Account locked after bad passwords",
            "An old phone with a stale password locked ana out (Smart Lockout, AADSTS50053).",
            [tenant_ok(MOBILE, "account-locked", {"tenant.signins": F})],
            signins=signins(50053, MOBILE, count=4),
        )
    )
    add(
        with_tenant(
            "signins-password-expired",
            "Password expired",
            "ana's password expired; Outlook asks for it again and again (AADSTS50055).",
            [tenant_ok(OUTLOOK, "password-expired", {"tenant.signins": F})],
            signins=signins(50055, OUTLOOK),
        )
    )

    # -- service health --
    add(
        with_tenant(
            "service-incident",
            "Exchange Online incident",
            "Microsoft has an open Exchange Online incident EX912345: users can't connect with "
            "Exchange ActiveSync and Outlook.",
            [
                tenant_ok(c, SERVICE_INCIDENT, {"tenant.service_health": F})
                for c in (OUTLOOK, MOBILE)
            ],
            issues=(
                ServiceIssue(
                    id="EX912345",
                    title="Users can't connect to their mailbox with Exchange ActiveSync or "
                    "Outlook",
                    impact_description="Users may be unable to connect to Exchange Online "
                    "mailboxes using Exchange ActiveSync or Outlook desktop clients.",
                ),
            ),
        )
    )

    # -- mailfix's own access --
    add(
        with_tenant(
            "permission-missing-auditlog",
            "mailfix may not read sign-in logs",
            "The admin granted mailfix everything except AuditLog.Read.All: the sign-in check "
            "cannot run and says exactly what to grant.",
            [tenant_ok(IMAP, DEVICE, {"tenant.signins": E}, also=("tenant-permission-missing",))],
            app={
                "graph_permissions": tuple(
                    p for p in tenant_data().app.graph_permissions if p != "AuditLog.Read.All"
                )
            },
        )
    )
    add(
        with_tenant(
            "throttled-graph",
            "Graph throttles (once)",
            "Graph answers the first user lookup with 429 and Retry-After: 1; mailfix waits and "
            "retries, and the diagnosis is complete.",
            [tenant_ok(c, DEVICE) for c in (OUTLOOK, MOBILE)],
            throttles=(Throttle(service="graph", path="/users/", times=1, retry_after=1),),
        )
    )

    add(
        with_tenant(
            "throttled-graph-persistent",
            "Graph keeps throttling",
            "Every user lookup is answered 429 with Retry-After: 1: mailfix retries a bounded "
            "number of times, then says the tenant could not be read in time — and does not "
            "claim the account is fine.",
            [
                only(
                    OUTLOOK,
                    DEVICE,
                    {"tenant.account": E, "tenant.license": E, "tenant.service_health": P},
                )
            ],
            throttles=(Throttle(service="graph", path="/users/", times=-1, retry_after=1),),
        )
    )
    add(
        with_tenant(
            "app-secret-expired",
            "mailfix's client secret expired",
            "The app registration's only secret expired (AADSTS7000222): mailfix cannot sign in "
            "to the tenant, so every tenant check is an error; the network checks still run.",
            [
                Expectation(
                    client=OUTLOOK,
                    statuses={
                        **HEALTHY[OUTLOOK],
                        **{c: E for c in TENANT_OK[OUTLOOK] if c != "tenant.client_access_rules"},
                    },
                    top_cause=DEVICE,
                )
            ],
            app={"secrets": (ClientSecret(value=SANDBOX_SECRET, expired=True),)},
        )
    )
    add(
        with_tenant(
            "permission-missing-exchange-role",
            "mailfix has Exchange.ManageAsApp but no Entra role",
            "The admin consented Exchange.ManageAsApp but assigned no Entra role to the app: "
            "every cmdlet 'is not recognized' for it. The Exchange checks say which role to "
            "assign; Graph checks still run.",
            [
                only(
                    MOBILE,
                    DEVICE,
                    {"tenant.mailbox": E, "tenant.devices": E, "tenant.account": P},
                    also=("tenant-permission-missing",),
                )
            ],
            app={"directory_roles": ()},
        )
    )
    add(
        with_tenant(
            "ca-block-legacy-no-what-if",
            "Legacy block where Graph's What-If is not available",
            "The same legacy-authentication block, in a tenant where the beta What-If "
            "evaluation is refused: mailfix evaluates the policy itself and still names it.",
            [tenant_ok(IMAP, "conditional-access-block", CA_FAIL), tenant_ok(OUTLOOK, DEVICE)],
            ca_policies=(block_legacy,),
            what_if=False,
        )
    )

    # -- hybrid --
    add(
        with_tenant(
            "hybrid-on-premises-mailbox",
            "Hybrid: the mailbox is still on-premises",
            "ana is synced from Active Directory and her mailbox lives on the organisation's "
            "Exchange server; Exchange Online holds a mail user. The tenant checks say nothing "
            "about that mailbox.",
            [
                only(
                    OUTLOOK,
                    "hybrid-mailbox-on-premises",
                    {"tenant.mailbox": W, "tenant.account": P},
                ),
                only(MOBILE, "hybrid-mailbox-on-premises", {"tenant.mailbox": W}),
            ],
            parts=tenant(
                location="onprem", dns={"autodiscover": "mail.contoso.com"}, extra=[onprem]
            ),
            person={"synced": True, "mailbox": "onprem"},
        )
    )
    return out


CATALOGUE: dict[str, Scenario] = _build()


def get(scenario_id: str) -> Scenario:
    """The scenario named `scenario_id`; KeyError lists the known ids."""
    try:
        return CATALOGUE[scenario_id]
    except KeyError:
        raise KeyError(
            f"no scenario {scenario_id!r}; known: {', '.join(sorted(CATALOGUE))}"
        ) from None
