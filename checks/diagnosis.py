"""Turn findings into ranked causes, the way a helpdesk playbook reads a test report.

The decision table (reference/playbooks.md §4, o365info): run the server-side tests first. If
none fails (pass, warn or skip only), the mailbox, licence, discovery and service are fine
and the problem is the device or the app (~95 % of cases) — so `device-or-app` tops the list.
If something fails, rule out the obvious root causes first (does the domain exist, is it in
Microsoft 365, can we even resolve names), then the things in between (DNS records, the
network, identity), and only then the service itself.

How it works, in order:

1. RULES: small functions, one per cause family, each reading the findings and proposing
   `_Hit`s (cause id, base confidence, the checks behind it, whether it stands in the
   client's way). Every rule says where its reasoning comes from.
2. Hits for the same cause merge (highest confidence, a little more when checks corroborate).
3. RELEVANCE: the client changes what matters (SPF never stops anyone connecting; IMAP being
   blocked matters to IMAP apps, not to Outlook).
4. SYMPTOM_BOOSTS: what the person describes nudges matching causes up.
5. DOMINANCE: a root cause pushes down the causes it explains (a domain that does not exist
   explains every DNS failure under it).
6. `device-or-app` is always present: on top when no server-side check fails, low otherwise;
   when nothing fails, every other cause stays below it.

Sorted by confidence (highest first), ties broken by id, so the same findings always give the
same list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from checks.models import Cause, Client, Finding, Side, Status
from checks.symptoms import Symptom

DEVICE_OR_APP = "device-or-app"
DEVICE_HIGH = 0.9  # playbooks §4: ~95 % of what passes the server-side tests is the device
DEVICE_LOW = 0.1
NON_BLOCKING_CAP = 0.5  # a warning that does not stand in the way stays below device-or-app
SPF_CAP = 0.35  # SPF decides where sent mail lands, never whether an app connects

CAUSES: dict[str, tuple[Side, str]] = {
    "autodiscover-dns-missing": (Side.DNS, "The domain has no working autodiscover record"),
    "autodiscover-dns-elsewhere": (
        Side.DNS,
        "The autodiscover record points somewhere other than Microsoft 365",
    ),
    "autodiscover-root-hijack": (
        Side.DNS,
        "The domain's website answers Autodiscover in Exchange's place",
    ),
    "autodiscover-bad-certificate": (
        Side.DNS,
        "A server the organisation runs for Autodiscover has a bad certificate",
    ),
    "autodiscover-unreachable": (Side.NETWORK, "Autodiscover cannot be reached"),
    "autodiscover-error": (Side.SERVICE, "Autodiscover answers with an error"),
    "domain-not-found": (Side.DNS, "The domain does not exist"),
    "domain-not-in-m365": (Side.IDENTITY, "The domain is not in Microsoft 365"),
    "mx-missing": (Side.DNS, "The domain has no MX record"),
    "mx-not-exchange-online": (Side.DNS, "The MX records do not point to Exchange Online"),
    "spf-problem": (Side.DNS, "The SPF record is missing or wrong"),
    "dns-failure": (Side.DNS, "DNS lookups fail"),
    "adfs-unreachable": (Side.IDENTITY, "The AD FS sign-in server cannot be reached"),
    "adfs-certificate-invalid": (Side.IDENTITY, "The AD FS sign-in server's certificate is bad"),
    "adfs-token-signing-expired": (
        Side.IDENTITY,
        "The AD FS token-signing certificate has expired",
    ),
    "adfs-token-signing-expiring": (
        Side.IDENTITY,
        "The AD FS token-signing certificate expires soon",
    ),
    "hybrid-mailbox-on-premises": (Side.ADMIN, "The mailbox is on the on-premises Exchange"),
    "exo-unreachable": (Side.NETWORK, "Exchange Online cannot be reached from this network"),
    "tls-inspection": (Side.NETWORK, "Something on the network intercepts encrypted traffic"),
    "imap-blocked": (Side.NETWORK, "IMAP (port 993) is blocked"),
    "pop-blocked": (Side.NETWORK, "POP (port 995) is blocked"),
    "smtp-blocked": (Side.NETWORK, "Sending (SMTP port 587) is blocked"),
    "smtp-starttls-broken": (Side.NETWORK, "Secure sending (STARTTLS) is broken on the way"),
    "activesync-blocked": (Side.NETWORK, "ActiveSync is blocked or rewritten on the way"),
    "service-degraded": (Side.SERVICE, "Exchange Online reports a service problem"),
    DEVICE_OR_APP: (Side.DEVICE, "The device or the mail app"),
}

_FAILED = (Status.FAIL, Status.ERROR)
# explain() problem codes that mean "the network path", not the far side (checks/modules/_explain)
_PATH_PROBLEMS = frozenset(
    {"connect-failed", "timeout", "protocol", "too-large", "tls-failed", "network", "redirects"}
)
_BLOCKED_PROBLEMS = frozenset({"connect-failed", "timeout"})


@dataclass(frozen=True)
class _Hit:
    cause: str
    confidence: float
    checks: tuple[str, ...]
    blocking: bool = True  # stands in the client's way (then device-or-app is not the answer)


class _Facts:
    """Read-only questions about the findings, so each rule stays a few lines."""

    def __init__(self, findings: Sequence[Finding], client: Client) -> None:
        self.by_id = {f.check: f for f in findings}
        self.client = client

    def status(self, check_id: str) -> Status | None:
        f = self.by_id.get(check_id)
        return f.status if f else None

    def is_(self, check_id: str, *statuses: Status) -> bool:
        return self.status(check_id) in statuses

    def ev(self, check_id: str, key: str, default: Any = None) -> Any:
        f = self.by_id.get(check_id)
        return f.evidence.get(key, default) if f else default

    def problem(self, check_id: str) -> str | None:
        """The evidence's problem code; a check that passed or was skipped has none."""
        if self.status(check_id) in (None, Status.PASS, Status.SKIP):
            return None
        value = self.ev(check_id, "problem")
        return value if isinstance(value, str) else None

    def with_problem(self, *problems: str) -> list[str]:
        """Checks that failed (or could not decide) and whose evidence names one of `problems`."""
        return sorted(
            f.check
            for f in self.by_id.values()
            if f.status in _FAILED and f.evidence.get("problem") in problems
        )

    def v2_results(self) -> list[dict[str, Any]]:
        if not self.is_("autodiscover.v2", Status.FAIL, Status.ERROR):
            return []
        results = self.ev("autodiscover.v2", "protocols", [])
        return [r for r in results if isinstance(r, dict) and r.get("result") in _FAILED]


Rule = Callable[[_Facts], Iterable[_Hit]]


# ---- rules: the domain itself ----------------------------------------------------------


def _domain_not_found(facts: _Facts) -> Iterable[_Hit]:
    # NXDOMAIN for the domain: nothing under it can work (reference §2.9; playbooks §4 "rule
    # out the obvious" first).
    checks = facts.with_problem("domain-not-found")
    if checks:
        yield _Hit("domain-not-found", 0.97, tuple(checks))


def _domain_not_in_m365(facts: _Facts) -> Iterable[_Hit]:
    # GetUserRealm Unknown => the domain is in no tenant: typo or unverified (reference §8.1).
    checks = facts.with_problem("domain-not-in-m365")
    if checks:
        yield _Hit("domain-not-in-m365", 0.93, tuple(checks))


def _dns_failure(facts: _Facts) -> Iterable[_Hit]:
    # A check that could not decide because DNS itself failed (timeout, SERVFAIL): every other
    # DNS-based verdict is then in doubt (DESIGN.md: `error` = DNS failure).
    checks = [
        f.check
        for f in facts.by_id.values()
        if f.status is Status.ERROR
        and (str(f.evidence.get("problem", "")).startswith("dns-") or f.check.startswith("dns."))
    ]
    if checks:
        yield _Hit("dns-failure", 0.88, tuple(sorted(checks)))


# ---- rules: Autodiscover ---------------------------------------------------------------


def _autodiscover_dns(facts: _Facts) -> Iterable[_Hit]:
    # playbooks §1: "The Autodiscover service couldn't be contacted successfully by any method"
    # — usually the autodiscover CNAME is missing or wrong. Strong when discovery also fails;
    # a footnote when another method still works.
    problem = facts.problem("dns.autodiscover")
    if problem not in ("autodiscover-dns-missing", "autodiscover-dns-elsewhere"):
        return
    cause = str(problem)
    if facts.is_("autodiscover.v1", Status.FAIL):
        yield _Hit(
            cause,
            0.9 if cause == "autodiscover-dns-missing" else 0.88,
            ("dns.autodiscover", "autodiscover.v1"),
        )
    elif facts.status("autodiscover.v1") in (None, Status.SKIP, Status.ERROR):
        # Discovery was not (fully) tried: the record alone is the evidence.
        weight = 0.8 if facts.status("dns.autodiscover") is Status.FAIL else 0.35
        yield _Hit(cause, weight, ("dns.autodiscover",), blocking=weight > 0.5)
    elif cause == "autodiscover-dns-missing" and facts.is_("dns.autodiscover", Status.FAIL):
        # Discovery found another way this time, but phones, third-party apps and the
        # analyzer still need the record (reference §2.2, practical consequence).
        yield _Hit(cause, 0.6, ("dns.autodiscover",))
    else:
        yield _Hit(cause, 0.3, ("dns.autodiscover",), blocking=False)


def _autodiscover_root_hijack(facts: _Facts) -> Iterable[_Hit]:
    # KB 3049615 (reference §1.3): a web server at https://<domain>/autodiscover/ answering
    # with IMAP settings is met before Microsoft; Outlook takes its answer. In the client's way
    # even when a later method would work.
    if facts.is_("autodiscover.v1", Status.WARN, Status.FAIL) and facts.ev(
        "autodiscover.v1", "root_domain_hijack"
    ):
        confidence = 0.85 if facts.is_("autodiscover.v1", Status.WARN) else 0.75
        yield _Hit("autodiscover-root-hijack", confidence, ("autodiscover.v1",))


def _autodiscover_bad_certificate(facts: _Facts) -> Iterable[_Hit]:
    # Only send to HTTPS endpoints with valid certificates (reference §2.1); a bad certificate
    # on a host the customer runs surfaces as a certificate prompt before anything works.
    if facts.is_("autodiscover.v1", Status.WARN, Status.FAIL) and facts.ev(
        "autodiscover.v1", "customer_certificate_problems"
    ):
        confidence = 0.82 if facts.is_("autodiscover.v1", Status.WARN) else 0.7
        yield _Hit("autodiscover-bad-certificate", confidence, ("autodiscover.v1",))


def _autodiscover_unreachable(facts: _Facts) -> Iterable[_Hit]:
    # The record is right but no method reaches an endpoint: something on the way (§1.3).
    if not facts.is_("autodiscover.v1", Status.FAIL) or facts.ev("autodiscover.v1", "pox_error"):
        return
    record_ok = facts.status("dns.autodiscover") in (None, Status.PASS, Status.SKIP)
    yield _Hit("autodiscover-unreachable", 0.8 if record_ok else 0.35, ("autodiscover.v1",))


def _autodiscover_error(facts: _Facts) -> Iterable[_Hit]:
    # A genuine endpoint answered with a POX <Error> (§2.5 ErrorCode), or the JSON endpoint
    # answered, but not with a URL (§2.7): the service side of Autodiscover.
    if facts.is_("autodiscover.v1", Status.FAIL) and facts.ev("autodiscover.v1", "pox_error"):
        yield _Hit("autodiscover-error", 0.85, ("autodiscover.v1",))
    for result in facts.v2_results():
        code = _status_code(result)
        if result.get("problem") is None and not (code and code >= 500):
            yield _Hit("autodiscover-error", 0.75, ("autodiscover.v2",))


def _hybrid(facts: _Facts) -> Iterable[_Hit]:
    # Autodiscover v2 answers 302 to on-premises (§2.7): the mailbox is not in Exchange Online,
    # so the Exchange Online checks that passed say little about the server that holds it.
    if facts.is_("autodiscover.v2", Status.PASS) and facts.ev("autodiscover.v2", "hybrid"):
        yield _Hit("hybrid-mailbox-on-premises", 0.85, ("autodiscover.v2",))


# ---- rules: the network ----------------------------------------------------------------


def _tls_inspection(facts: _Facts) -> Iterable[_Hit]:
    # Microsoft's own certificates verify; one that does not is a proxy or portal in between
    # (checks/modules/_explain: "tls-inspection").
    checks = facts.with_problem("tls-inspection")
    v2 = [r for r in facts.v2_results() if r.get("problem") == "tls-inspection"]
    if v2 and "autodiscover.v2" not in checks:
        checks.append("autodiscover.v2")
    if facts.is_("autodiscover.v1", Status.FAIL) and facts.ev(
        "autodiscover.v1", "microsoft_certificate_problems"
    ):
        checks.append("autodiscover.v1")
    if checks:
        yield _Hit("tls-inspection", 0.92, tuple(sorted(set(checks))))


def _exo_unreachable(facts: _Facts) -> Iterable[_Hit]:
    # TCP/TLS to the Exchange Online host fails or hangs: a firewall or route (reference §7).
    if facts.is_("net.https", Status.FAIL) and facts.problem("net.https") in _PATH_PROBLEMS:
        yield _Hit("exo-unreachable", 0.88, ("net.https",))
    if any(r.get("problem") in _PATH_PROBLEMS for r in facts.v2_results()):
        yield _Hit("exo-unreachable", 0.75, ("autodiscover.v2",))


def _ports_blocked(facts: _Facts) -> Iterable[_Hit]:
    # IMAP 993 / POP 995 refused or silent (reference §7); matters to apps that use them.
    for check_id, cause in (("net.imap", "imap-blocked"), ("net.pop", "pop-blocked")):
        if facts.is_(check_id, Status.FAIL):
            problem = facts.problem(check_id)
            if problem in _BLOCKED_PROBLEMS:
                yield _Hit(cause, 0.88, (check_id,))
            elif problem in _PATH_PROBLEMS:
                yield _Hit(cause, 0.6, (check_id,))


def _smtp(facts: _Facts) -> Iterable[_Hit]:
    # SMTP submission: smtp.office365.com:587 with STARTTLS, AUTH after TLS (reference §7).
    if not facts.is_("net.smtp", Status.FAIL):
        return
    problem = facts.problem("net.smtp")
    stage = facts.ev("net.smtp", "stage")
    if problem in ("smtp-starttls-broken", "smtp-no-auth"):
        yield _Hit("smtp-starttls-broken", 0.88, ("net.smtp",))
    elif stage in ("dns", "connect") and problem in _BLOCKED_PROBLEMS:
        yield _Hit("smtp-blocked", 0.88, ("net.smtp",))
    elif stage in ("ehlo", "starttls", "tls", "auth") and problem in _PATH_PROBLEMS:
        # Broke after the greeting: a middlebox rewriting the session (SMTP inspection).
        yield _Hit("smtp-starttls-broken", 0.8, ("net.smtp",))
    elif problem in _PATH_PROBLEMS:
        yield _Hit("smtp-blocked", 0.6, ("net.smtp",))


def _activesync(facts: _Facts) -> Iterable[_Hit]:
    # OPTIONS /Microsoft-Server-ActiveSync not answered by ActiveSync (reference §1.3, §3.1).
    if facts.with_problem("activesync-blocked"):
        yield _Hit("activesync-blocked", 0.85, ("activesync.endpoint",))
    elif (
        facts.is_("activesync.endpoint", Status.FAIL)
        and facts.problem("activesync.endpoint") in _PATH_PROBLEMS
    ):
        yield _Hit("activesync-blocked", 0.7, ("activesync.endpoint",))


def _service(facts: _Facts) -> Iterable[_Hit]:
    # 503 / refused sessions from Microsoft's side, or an open incident: rare, last in the
    # playbook's order (playbooks §4 "only then suspect the service").
    checks = facts.with_problem("service-degraded", "service-refused")
    if checks:
        yield _Hit("service-degraded", 0.8, tuple(checks))
    if any((_status_code(r) or 0) >= 500 for r in facts.v2_results()):
        yield _Hit("service-degraded", 0.7, ("autodiscover.v2",))
    if facts.is_("tenant.service_health", Status.FAIL):
        yield _Hit("service-degraded", 0.85, ("tenant.service_health",))
    elif facts.is_("tenant.service_health", Status.WARN):
        yield _Hit("service-degraded", 0.4, ("tenant.service_health",), blocking=False)


# ---- rules: identity -------------------------------------------------------------------

# realm.federation problem codes -> (cause, confidence, stands in the way). reference §4,
# §1.3 (RCA's SSO test: metadata 503, expired token-signing certificate, AD FS TLS).
_REALM: dict[str, tuple[str, float, bool]] = {
    "adfs-unreachable": ("adfs-unreachable", 0.88, True),
    "adfs-metadata-invalid": ("adfs-unreachable", 0.7, True),
    "adfs-metadata-not-found": ("adfs-unreachable", 0.5, True),
    "adfs-certificate-invalid": ("adfs-certificate-invalid", 0.88, True),
    "adfs-token-signing-expired": ("adfs-token-signing-expired", 0.9, True),
    # Still works today: a warning for the admin, not why anyone cannot connect now.
    "adfs-token-signing-expiring": ("adfs-token-signing-expiring", 0.35, False),
}


def _adfs(facts: _Facts) -> Iterable[_Hit]:
    problem = facts.problem("realm.federation")
    if problem in _REALM:
        cause, confidence, blocking = _REALM[problem]
        if not facts.is_("realm.federation", *_FAILED):  # a warning never blocks
            confidence, blocking = min(confidence, 0.35), False
        yield _Hit(cause, confidence, ("realm.federation",), blocking=blocking)


# ---- rules: mail routing records (never why an app cannot connect) -----------------------


def _mx(facts: _Facts) -> Iterable[_Hit]:
    # MX decides where inbound mail goes (reference §2.9), not whether a client connects.
    problem = facts.problem("dns.mx")
    if problem == "mx-missing":
        yield _Hit("mx-missing", 0.4, ("dns.mx",), blocking=False)
    elif problem == "mx-not-exchange-online":
        yield _Hit("mx-not-exchange-online", 0.25, ("dns.mx",), blocking=False)


def _spf(facts: _Facts) -> Iterable[_Hit]:
    # SPF affects whether sent mail is trusted by receivers (reference §2.9): a footnote.
    if facts.is_("dns.spf", Status.FAIL):
        yield _Hit("spf-problem", 0.3, ("dns.spf",), blocking=False)
    elif facts.is_("dns.spf", Status.WARN):
        yield _Hit("spf-problem", 0.2, ("dns.spf",), blocking=False)


RULES: tuple[Rule, ...] = (
    _domain_not_found,
    _domain_not_in_m365,
    _dns_failure,
    _autodiscover_dns,
    _autodiscover_root_hijack,
    _autodiscover_bad_certificate,
    _autodiscover_unreachable,
    _autodiscover_error,
    _hybrid,
    _tls_inspection,
    _exo_unreachable,
    _ports_blocked,
    _smtp,
    _activesync,
    _service,
    _adfs,
    _mx,
    _spf,
)

# Checks whose failure never stands in an app's way (mail routing), unless the domain is gone.
_ROUTING_ONLY = frozenset({"dns.spf", "dns.mx"})

# ---- relevance to the client -------------------------------------------------------------

_AUTODISCOVER = frozenset(
    {
        "autodiscover-dns-missing",
        "autodiscover-dns-elsewhere",
        "autodiscover-root-hijack",
        "autodiscover-bad-certificate",
        "autodiscover-unreachable",
        "autodiscover-error",
    }
)
_INTERNET_MAIL = frozenset({"imap-blocked", "pop-blocked", "smtp-blocked", "smtp-starttls-broken"})
_IDENTITY = frozenset(
    {
        "adfs-unreachable",
        "adfs-certificate-invalid",
        "adfs-token-signing-expired",
        "adfs-token-signing-expiring",
        "domain-not-in-m365",
    }
)

# Multipliers by client. IMAP/POP/SMTP apps do not use Autodiscover or ActiveSync; Outlook,
# phones and the browser do not use IMAP/POP/SMTP (reference §7).
RELEVANCE: dict[Client, tuple[tuple[frozenset[str], float], ...]] = {
    Client.IMAP: ((_AUTODISCOVER, 0.5), (frozenset({"activesync-blocked"}), 0.3)),
    Client.POP: ((_AUTODISCOVER, 0.5), (frozenset({"activesync-blocked"}), 0.3)),
    Client.SMTP: ((_AUTODISCOVER, 0.5), (frozenset({"activesync-blocked"}), 0.3)),
    Client.OUTLOOK: ((_INTERNET_MAIL, 0.5), (frozenset({"activesync-blocked"}), 0.5)),
    Client.MOBILE: ((_INTERNET_MAIL, 0.5),),
    Client.WEB: (
        (_AUTODISCOVER, 0.4),
        (_INTERNET_MAIL, 0.4),
        (frozenset({"activesync-blocked"}), 0.3),
    ),
}

# ---- what the person describes -----------------------------------------------------------

# Added to causes already found (never creates one).
SYMPTOM_BOOSTS: dict[Symptom, tuple[tuple[frozenset[str], float], ...]] = {
    # Repeated prompts: sign-in infrastructure first (playbooks §5, KB 2466333).
    Symptom.PASSWORD_PROMPTS: ((_IDENTITY, 0.1), (frozenset({"autodiscover-dns-missing"}), 0.03)),
    # Outlook's own words when Autodiscover is broken (playbooks §1).
    Symptom.ENCRYPTED_CONNECTION_UNAVAILABLE: ((_AUTODISCOVER, 0.1),),
    # KB 2427193: ActiveSync and Autodiscover for phones (playbooks §3).
    Symptom.PHONE_STOPPED_SYNCING: (
        (frozenset({"activesync-blocked"}), 0.1),
        (_AUTODISCOVER, 0.05),
    ),
    Symptom.CANNOT_SEND: (
        (frozenset({"smtp-blocked", "smtp-starttls-broken"}), 0.1),
        (frozenset({"spf-problem"}), 0.05),
    ),
    Symptom.CANNOT_CONNECT: (
        (frozenset({"exo-unreachable", "tls-inspection", "imap-blocked", "pop-blocked"}), 0.05),
    ),
}

# ---- root causes push down what they explain ------------------------------------------------

_EVERYTHING = frozenset(CAUSES) - {DEVICE_OR_APP}

# (root cause, causes it explains, multiplier). Applied when the root is itself credible.
DOMINANCE: tuple[tuple[str, frozenset[str], float], ...] = (
    # Nothing under a domain that does not exist can work.
    ("domain-not-found", _EVERYTHING - {"domain-not-found"}, 0.5),
    # A domain in no tenant has no Microsoft records or sign-in to speak of (reference §8.1).
    (
        "domain-not-in-m365",
        (
            _AUTODISCOVER
            | _IDENTITY
            | {"mx-missing", "mx-not-exchange-online", "spf-problem", "hybrid-mailbox-on-premises"}
        )
        - {"domain-not-in-m365"},
        0.6,
    ),
    # Failing DNS makes "missing" and "unreachable" verdicts unreliable.
    ("dns-failure", frozenset({"autodiscover-dns-missing", "autodiscover-unreachable"}), 0.7),
    # An interception proxy explains failed connections and odd answers from Microsoft.
    (
        "tls-inspection",
        frozenset(
            {"exo-unreachable", "autodiscover-unreachable", "autodiscover-error"}
            | {"activesync-blocked", "service-degraded"}
        ),
        0.7,
    ),
    # A missing or stale record is why nothing answers.
    ("autodiscover-dns-missing", frozenset({"autodiscover-unreachable"}), 0.5),
    ("autodiscover-dns-elsewhere", frozenset({"autodiscover-unreachable"}), 0.5),
    # Hybrid: a record pointing on-premises is how it should be.
    ("hybrid-mailbox-on-premises", frozenset({"autodiscover-dns-elsewhere"}), 0.5),
    # The whole host being unreachable explains its endpoints failing.
    ("exo-unreachable", frozenset({"activesync-blocked", "autodiscover-error"}), 0.8),
)
_DOMINANT_FROM = 0.6  # a root cause below this confidence does not push others down


def _status_code(result: dict[str, Any]) -> int | None:
    code = result.get("status_code")
    return code if isinstance(code, int) else None


@dataclass
class _Merged:
    confidence: float
    checks: set[str]
    blocking: bool
    hits: int


def _merge(hits: Iterable[_Hit]) -> dict[str, _Merged]:
    merged: dict[str, _Merged] = {}
    for hit in hits:
        m = merged.get(hit.cause)
        if m is None:
            merged[hit.cause] = _Merged(hit.confidence, set(hit.checks), hit.blocking, 1)
            continue
        m.confidence = max(m.confidence, hit.confidence)
        m.checks.update(hit.checks)
        m.blocking = m.blocking or hit.blocking
        m.hits += 1
    for m in merged.values():
        # Independent checks pointing at the same cause make it a little more likely.
        m.confidence += 0.02 * (m.hits - 1)
    return merged


def rank_causes(
    findings: Sequence[Finding], client: Client, symptom: Symptom | None
) -> list[Cause]:
    """Ranked causes for `findings` (see the module docstring); `device-or-app` always present."""
    facts = _Facts(findings, client)
    merged = _merge(hit for rule in RULES for hit in rule(facts))

    for causes, factor in RELEVANCE.get(client, ()):
        for cause_id in causes & merged.keys():
            merged[cause_id].confidence *= factor

    if symptom is not None:
        for causes, delta in SYMPTOM_BOOSTS.get(symptom, ()):
            for cause_id in causes & merged.keys():
                merged[cause_id].confidence += delta

    before = {cause_id: m.confidence for cause_id, m in merged.items()}
    for root, explained, factor in DOMINANCE:
        if before.get(root, 0.0) < _DOMINANT_FROM:
            continue
        for cause_id in explained & merged.keys():
            merged[cause_id].confidence *= factor

    for cause_id, m in merged.items():
        if cause_id == "spf-problem":
            m.confidence = min(m.confidence, SPF_CAP)
        if not m.blocking:
            m.confidence = min(m.confidence, NON_BLOCKING_CAP)

    # DESIGN.md ("Report"): when nothing server-side fails, the top cause is the device or the
    # app. Warnings (a hijacking root-domain website, a hybrid mailbox, a certificate about to
    # expire) are listed, but below it: the playbook's server-side test passed (§4).
    in_the_way = any(f.status in _FAILED and f.check not in _ROUTING_ONLY for f in findings)
    if not in_the_way:
        for m in merged.values():
            m.confidence = min(m.confidence, NON_BLOCKING_CAP)
    passed = sorted(f.check for f in findings if f.status is Status.PASS)
    device = _Merged(DEVICE_LOW if in_the_way else DEVICE_HIGH, set(passed), False, 1)
    merged[DEVICE_OR_APP] = device

    ranked = [
        Cause(
            id=cause_id,
            title=CAUSES[cause_id][1],
            confidence=round(min(0.99, max(0.0, m.confidence)), 3),
            checks=sorted(m.checks),
            side=CAUSES[cause_id][0],
        )
        for cause_id, m in merged.items()
    ]
    ranked.sort(key=lambda c: (-c.confidence, c.id))
    return ranked
