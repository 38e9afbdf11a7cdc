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
    CAUSE_IDS,
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
SERVICE_INCIDENT = "service-incident" if "service-incident" in CAUSE_IDS else "service-degraded"

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
                healthy_but(
                    OUTLOOK, DEVICE, {"autodiscover.v1": W}, also=("autodiscover-root-hijack",)
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
                healthy_but(
                    OUTLOOK,
                    DEVICE,
                    {"dns.autodiscover": W, "autodiscover.v1": P, "autodiscover.v2": P},
                    also=("hybrid-mailbox-on-premises",),
                ),
                only(MOBILE, DEVICE, {"autodiscover.v2": P}, also=("hybrid-mailbox-on-premises",)),
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

    return {s.id: s for s in out}


CATALOGUE: dict[str, Scenario] = _build()


def get(scenario_id: str) -> Scenario:
    """The scenario named `scenario_id`; KeyError lists the known ids."""
    try:
        return CATALOGUE[scenario_id]
    except KeyError:
        raise KeyError(
            f"no scenario {scenario_id!r}; known: {', '.join(sorted(CATALOGUE))}"
        ) from None
