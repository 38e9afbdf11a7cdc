"""Turn findings into ranked causes, the way a helpdesk playbook reads a test report.

The decision table (reference/playbooks.md §4, o365info): run the server-side tests first. If
none fails, the problem is most likely the device or the app (~95 % of cases). If something
fails, rule out the obvious root causes first (does the domain exist, is it in Microsoft 365,
does the account exist, is it enabled and licensed), then the things in between (DNS records,
the network, identity), and only then the service itself. The report claims only what was
checked (DESIGN.md, "Report"):

- definitive tenant facts (a disabled account, no Exchange plan, a protocol switched off, a
  quarantined phone, a policy that blocks, an open incident) outrank network inferences;
- `device-or-app` leads only when nothing this client depends on failed, no warning stands in
  this client's way (for Outlook a root-domain website answering Autodiscover, KB 3049615; a
  mailbox still on-premises), and the tenant checks ran. Without them it is at most 0.6, and
  `not_checked` names what was not checked;
- a fault that cannot explain the complaint today (SPF; a token-signing certificate that
  expires in 9 days) is listed below the device;
- the network checks run from where mailfix runs, not from the person's device: what they find
  is about that network.

A cause is declared once, as a `CauseSpec` in `CAUSES`: its side and title, the checks behind
it, the problem codes and sign-in codes that name it, which clients it matters to, what the
person describes that makes it likelier, what it explains, and its advice (`checks.advice`).

How the ranking works, in order:

1. RULES read the findings and propose `_Hit`s (cause, base confidence, the checks behind it,
   whether it stands in the client's way, whether it is a definitive fact). Tenant facts come
   from the records' `found_by` (check, problem code) pairs and `aadsts` codes; the network
   rules are functions, each citing where its reasoning comes from.
2. Hits for the same cause merge (highest confidence, a little more when checks corroborate).
3. Each record's `relevance` for the client, then its `symptoms` boost.
4. A credible cause pushes down the causes it `explains`.
5. Caps: a hit that does not stand in the way stays at or below 0.5; a record's own `cap`;
   non-definitive causes stay below every definitive fact; a missing permission stays below
   every definitive fault.
6. `device-or-app` is always present: high when nothing stands in the way, behind a warning
   that does, low when something failed; at most 0.6 when tenant checks did not run. Causes
   that cannot explain the complaint today go below it.

Sorted by confidence (highest first), ties broken by id, so the same findings always give the
same list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from checks import advice
from checks.models import Cause, Client, Finding, Side, Status
from checks.registry import get_check
from checks.symptoms import Symptom

DEVICE_OR_APP = "device-or-app"
DEVICE_HIGH = 0.9  # playbooks §4: ~95 % of what passes the server-side tests is the device
DEVICE_UNCHECKED = 0.6  # DESIGN.md "Report": tenant checks skipped → the device at most this
DEVICE_BEHIND_WARNING = 0.45  # a warning stands in the client's way: it leads, the device next
DEVICE_LOW = 0.1
NON_BLOCKING_CAP = 0.5  # a finding that does not stand in the way stays below device-or-app
LICENCE_FIRST = 0.98  # no Exchange plan explains a missing mailbox: the licence is fixed first
_DOMINANT_FROM = 0.6  # a cause below this confidence does not push others down
ALL_OTHERS = frozenset({"*"})  # `explains` value: every other cause

_FAILED = (Status.FAIL, Status.ERROR)


@dataclass(frozen=True, eq=False)
class CauseSpec:
    """One cause, declared once: everything the ranking and the advice know about it."""

    id: str
    side: Side
    title: str
    checks: tuple[str, ...]  # the checks whose findings can point at it
    advice: advice.CauseAdvice  # plain-words steps: the person's ("You: …"), then the helpdesk's
    # (check, problem code) pairs: a `fail` finding of that check with that evidence["problem"]
    # is a definitive fact naming this cause (PLAN "Findings contract"), at `confidence`.
    found_by: tuple[tuple[str, str], ...] = ()
    confidence: float = 0.9
    aadsts: tuple[int, ...] = ()  # sign-in error codes (tenant.signins top_code) that name it
    controls: tuple[str, ...] = ()  # Conditional Access controls an unmet one names it for
    relevance: Mapping[Client, float] = field(default_factory=dict)  # by client; absent = 1
    symptoms: Mapping[Symptom, float] = field(default_factory=dict)  # added when described
    explains: frozenset[str] = frozenset()  # causes it accounts for (ALL_OTHERS: every one)
    explains_factor: float = 1.0  # how far it pushes those down when it is credible
    cap: float = 1.0  # never above this (SPF decides where mail lands, never a connection)
    today: bool = True  # False: cannot explain a complaint today; listed below the device


@dataclass(frozen=True)
class _Hit:
    cause: str
    confidence: float
    checks: tuple[str, ...]
    blocking: bool = True  # stands in the client's way (then device-or-app is not the answer)
    definitive: bool = False  # a fact read in the tenant (or a decided failure), not inferred


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
# explain() problem codes that mean "the network path", not the far side (checks/modules/_explain)
_PATH_PROBLEMS = frozenset(
    {"connect-failed", "timeout", "protocol", "too-large", "tls-failed", "network", "redirects"}
)
_BLOCKED_PROBLEMS = frozenset({"connect-failed", "timeout"})


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
    # even when a later method would work, so it ranks above device-or-app (DESIGN.md).
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
        # A warning: a prompt the person can get past, unlike the root hijack (DESIGN.md).
        if facts.is_("autodiscover.v1", Status.WARN):
            yield _Hit("autodiscover-bad-certificate", 0.82, ("autodiscover.v1",), blocking=False)
        else:
            yield _Hit("autodiscover-bad-certificate", 0.7, ("autodiscover.v1",))


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
    # Autodiscover v2 answers 302 to on-premises (§2.7), or the tenant says the recipient is a
    # remote mailbox: the mailbox is not in Exchange Online, so the Exchange Online checks that
    # passed say nothing about the server that holds it. It stands in the way (DESIGN.md).
    if facts.is_("autodiscover.v2", Status.PASS) and facts.ev("autodiscover.v2", "hybrid"):
        yield _Hit("hybrid-mailbox-on-premises", 0.85, ("autodiscover.v2",))
    if facts.problem("tenant.mailbox") == "mailbox-on-premises":
        yield _Hit("hybrid-mailbox-on-premises", 0.88, ("tenant.mailbox",))


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
    # 503 / refused sessions from Microsoft's side: rare, last in the playbook's order
    # (playbooks §4 "only then suspect the service"). Seen from mailfix's network, so an
    # inference; an incident Microsoft announces is a tenant fact (CAUSES, found_by).
    checks = facts.with_problem("service-degraded", "service-refused")
    if checks:
        yield _Hit("service-incident", 0.8, tuple(checks))
    if any((_status_code(r) or 0) >= 500 for r in facts.v2_results()):
        yield _Hit("service-incident", 0.7, ("autodiscover.v2",))


# ---- rules: identity -------------------------------------------------------------------

# realm.federation problem codes -> (cause, confidence, stands in the way). reference §4,
# §1.3 (RCA's SSO test: metadata 503, expired token-signing certificate, AD FS TLS).
_REALM: dict[str, tuple[str, float, bool]] = {
    "adfs-unreachable": ("adfs-unreachable", 0.88, True),
    "adfs-metadata-invalid": ("adfs-unreachable", 0.7, True),
    "adfs-metadata-not-found": ("adfs-unreachable", 0.5, True),
    "adfs-certificate-invalid": ("adfs-certificate-invalid", 0.88, True),
    "adfs-token-signing-expired": ("adfs-token-signing-expired", 0.9, True),
    # Still works today: a warning for the admin, not why anyone cannot connect now (its
    # record says `today=False`: listed below the device).
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
    # SPF affects whether sent mail is trusted by receivers (reference §2.9): a footnote that
    # cannot explain a connection problem today (its record: `today=False`, capped).
    if facts.is_("dns.spf", Status.FAIL):
        yield _Hit("spf-problem", 0.3, ("dns.spf",), blocking=False)
    elif facts.is_("dns.spf", Status.WARN):
        yield _Hit("spf-problem", 0.2, ("dns.spf",), blocking=False)


# ---- rules: inside the tenant (PLAN "Findings contract") -----------------------------------

_MAY_BLOCK = 0.65  # a policy that may block, depending on what mailfix cannot see
_SIGNIN_FAILING = 0.88  # the latest sign-in to Exchange Online failed with this code
_SIGNIN_EARLIER = 0.45  # failures in the last 48 h, but the latest sign-in succeeded
_REQUIRES_CONTROL = 0.3  # a control the app can satisfy: a prompt to expect, not a fault


def _tenant_facts(facts: _Facts) -> Iterable[_Hit]:
    # A `fail` finding whose problem code names a cause (each record's found_by).
    for spec in CAUSES.values():
        for check_id, code in spec.found_by:
            if facts.is_(check_id, Status.FAIL) and facts.ev(check_id, "problem") == code:
                yield _Hit(spec.id, spec.confidence, (check_id,), definitive=True)


def _licence_cause(code: object) -> str:
    for spec in CAUSES.values():
        if ("tenant.license", code) in spec.found_by:
            return spec.id
    return "no-exchange-licence"


def _licence_first(facts: _Facts) -> Iterable[_Hit]:
    # Issue 6: when the mailbox is missing BECAUSE no Exchange plan is assigned, the licence is
    # the cause that ranks first (reference §5.1: the plan creates the mailbox).
    because = facts.problem("tenant.mailbox") == "no-mailbox" and (
        facts.ev("tenant.mailbox", "because") == "no-exchange-plan"
    )
    if because:
        code = facts.problem("tenant.license") or facts.ev("tenant.mailbox", "licence_problem")
        checks = tuple(c for c in ("tenant.license", "tenant.mailbox") if c in facts.by_id)
        yield _Hit(_licence_cause(code), LICENCE_FIRST, checks, definitive=True)
    elif facts.is_("tenant.license", Status.FAIL):
        # No licence with an Exchange plan at all: the mailbox cannot exist either.
        code = facts.problem("tenant.license")
        if ("tenant.license", code) in CAUSES["no-exchange-licence"].found_by:
            yield _Hit("no-exchange-licence", LICENCE_FIRST, ("tenant.license",), definitive=True)


def _control_cause(control: object) -> str:
    for spec in CAUSES.values():
        if control in spec.controls:
            return spec.id
    return "conditional-access-block"


def _policies(facts: _Facts) -> Iterable[_Hit]:
    # tenant.conditional_access / tenant.client_access_rules. A `fail` is certain; a `warn`
    # with the same problem "may" block, depending on what mailfix cannot see (the device's
    # network, its compliance): it stands in the way, below every definitive fact.
    ca, car = "tenant.conditional_access", "tenant.client_access_rules"
    problem = facts.problem(ca)
    control = facts.ev(ca, "control")
    if problem == "ca-control-unmet" and facts.is_(ca, Status.FAIL):
        cause = _control_cause(control)
        yield _Hit(cause, CAUSES[cause].confidence, (ca,), definitive=True)
    elif problem in ("ca-blocked", "ca-control-unmet") and facts.is_(ca, Status.WARN):
        cause = "conditional-access-block" if problem == "ca-blocked" else _control_cause(control)
        yield _Hit(cause, _MAY_BLOCK, (ca,))
    elif problem == "ca-requires-control":
        # The client can satisfy it (Microsoft asks for MFA; a compliant phone passes).
        yield _Hit(_control_cause(control), _REQUIRES_CONTROL, (ca,), blocking=False)
    if facts.problem(car) == "car-denied" and facts.is_(car, Status.WARN):
        yield _Hit("client-access-rule", _MAY_BLOCK - 0.03, (car,))


def _signins(facts: _Facts) -> Iterable[_Hit]:
    # tenant.signins: the most frequent AADSTS code of failed sign-ins to Exchange Online
    # (reference §5.4), named by the records' `aadsts`. `fail`: the latest sign-in failed too.
    check = "tenant.signins"
    code = facts.ev(check, "top_code")
    if facts.problem(check) != "signin-failures" or not isinstance(code, int):
        return
    for spec in CAUSES.values():
        if code in spec.aadsts:
            if facts.is_(check, Status.FAIL):
                yield _Hit(spec.id, _SIGNIN_FAILING, (check,), definitive=True)
            else:
                yield _Hit(spec.id, _SIGNIN_EARLIER, (check,), blocking=False)


def _tenant_warnings(facts: _Facts) -> Iterable[_Hit]:
    # Warnings an admin should read that do not stop the app today by themselves.
    if facts.problem("tenant.account") == "sync-provisioning-error":
        yield _Hit("account-sync-error", 0.5, ("tenant.account",), blocking=False)
    if facts.problem("tenant.service_health") == "service-advisory":
        yield _Hit("service-incident", 0.4, ("tenant.service_health",), blocking=False)


def _permission_missing(facts: _Facts) -> Iterable[_Hit]:
    # mailfix's own app lacks a permission: a cause for the helpdesk to fix, never why the
    # person's app fails (capped below every definitive fault in rank_causes).
    checks = [c for c in facts.with_problem("permission-missing") if c.startswith("tenant.")]
    if checks:
        yield _Hit("tenant-permission-missing", 0.5, tuple(checks), blocking=False)


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
    _tenant_facts,
    _licence_first,
    _policies,
    _signins,
    _tenant_warnings,
    _permission_missing,
)

# Checks whose failure never stands in an app's way (mail routing), unless the domain is gone.
_ROUTING_ONLY = frozenset({"dns.spf", "dns.mx"})


def _status_code(result: dict[str, Any]) -> int | None:
    code = result.get("status_code")
    return code if isinstance(code, int) else None


# ---- the causes, each declared once ----------------------------------------------------------

# Which clients a cause matters to. IMAP/POP/SMTP apps do not use Autodiscover or ActiveSync;
# Outlook, phones and the browser do not use IMAP/POP/SMTP (reference §7).
_NOT_FOR_INTERNET_MAIL_APPS: Mapping[Client, float] = {
    Client.IMAP: 0.5,
    Client.POP: 0.5,
    Client.SMTP: 0.5,
    Client.WEB: 0.4,
}
_INTERNET_MAIL_ONLY: Mapping[Client, float] = {
    Client.OUTLOOK: 0.5,
    Client.MOBILE: 0.5,
    Client.WEB: 0.4,
}
_ACTIVESYNC_ONLY: Mapping[Client, float] = {
    Client.IMAP: 0.3,
    Client.POP: 0.3,
    Client.SMTP: 0.3,
    Client.OUTLOOK: 0.5,
    Client.WEB: 0.3,
}
# What the person describes. Outlook's own words when Autodiscover is broken (playbooks §1);
# phones: KB 2427193, ActiveSync and Autodiscover (playbooks §3); repeated prompts: sign-in
# infrastructure first (playbooks §5, KB 2466333).
_AUTODISCOVER_SYMPTOMS: Mapping[Symptom, float] = {
    Symptom.ENCRYPTED_CONNECTION_UNAVAILABLE: 0.1,
    Symptom.PHONE_STOPPED_SYNCING: 0.05,
}
_SIGN_IN_SYMPTOMS: Mapping[Symptom, float] = {Symptom.PASSWORD_PROMPTS: 0.1}
_PROMPTS: Mapping[Symptom, float] = {Symptom.PASSWORD_PROMPTS: 0.05}
_CONNECT: Mapping[Symptom, float] = {Symptom.CANNOT_CONNECT: 0.05}
_SEND: Mapping[Symptom, float] = {Symptom.CANNOT_SEND: 0.1}
_PHONE: Mapping[Symptom, float] = {Symptom.PHONE_STOPPED_SYNCING: 0.03}

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
_IDENTITY = frozenset(
    {
        "adfs-unreachable",
        "adfs-certificate-invalid",
        "adfs-token-signing-expired",
        "adfs-token-signing-expiring",
    }
)
_SIGN_IN = frozenset({"sign-in-wrong-password", "account-locked", "password-expired"})
_ACCOUNT_GONE = frozenset({"autodiscover-error", "no-mailbox", "no-exchange-licence"} | _SIGN_IN)
_MAILBOX_MISSING = frozenset({"no-mailbox", "autodiscover-error"})
_V1, _V2, _DNS_AD = "autodiscover.v1", "autodiscover.v2", "dns.autodiscover"
_ACCOUNT, _LICENSE, _MAILBOX = "tenant.account", "tenant.license", "tenant.mailbox"
_DEVICES, _CAR, _CA = "tenant.devices", "tenant.client_access_rules", "tenant.conditional_access"
_SIGNINS, _HEALTH = "tenant.signins", "tenant.service_health"

_SPECS: tuple[CauseSpec, ...] = (
    # -- the domain itself ---------------------------------------------------------------
    CauseSpec(
        "domain-not-found",
        Side.DNS,
        "The domain does not exist",
        ("dns.mx", "dns.spf", _DNS_AD, "realm.federation"),
        advice.domain_not_found,
        # Nothing under a domain that does not exist can work.
        explains=ALL_OTHERS,
        explains_factor=0.5,
    ),
    CauseSpec(
        "domain-not-in-m365",
        Side.IDENTITY,
        "The domain is not in Microsoft 365",
        ("realm.federation",),
        advice.domain_not_in_m365,
        symptoms=_SIGN_IN_SYMPTOMS,
        # A domain in no tenant has no Microsoft records, sign-in or account (reference §8.1).
        explains=_AUTODISCOVER
        | _IDENTITY
        | {"mx-missing", "mx-not-exchange-online", "spf-problem", "hybrid-mailbox-on-premises"}
        | {"account-not-found"},
        explains_factor=0.6,
    ),
    CauseSpec(
        "dns-failure",
        Side.DNS,
        "DNS lookups fail",
        ("dns.mx", _DNS_AD, "dns.spf", _V1, "realm.federation"),
        advice.dns_failure,
        # Failing DNS makes "missing" and "unreachable" verdicts unreliable.
        explains=frozenset({"autodiscover-dns-missing", "autodiscover-unreachable"}),
        explains_factor=0.7,
    ),
    CauseSpec(
        "mx-missing",
        Side.DNS,
        "The domain has no MX record",
        ("dns.mx",),
        advice.mx_missing,
    ),
    CauseSpec(
        "mx-not-exchange-online",
        Side.DNS,
        "The MX records do not point to Exchange Online",
        ("dns.mx",),
        advice.mx_not_exchange_online,
    ),
    CauseSpec(
        "spf-problem",
        Side.DNS,
        "The SPF record is missing or wrong",
        ("dns.spf",),
        advice.spf_problem,
        symptoms={Symptom.CANNOT_SEND: 0.05},
        cap=0.35,
        today=False,
    ),
    # -- Autodiscover ----------------------------------------------------------------------
    CauseSpec(
        "autodiscover-dns-missing",
        Side.DNS,
        "The domain has no working autodiscover record",
        (_DNS_AD, _V1),
        advice.autodiscover_dns_missing,
        relevance=_NOT_FOR_INTERNET_MAIL_APPS,
        symptoms={**_AUTODISCOVER_SYMPTOMS, Symptom.PASSWORD_PROMPTS: 0.03},
        # A missing record is why nothing answers.
        explains=frozenset({"autodiscover-unreachable"}),
        explains_factor=0.5,
    ),
    CauseSpec(
        "autodiscover-dns-elsewhere",
        Side.DNS,
        "The autodiscover record points somewhere other than Microsoft 365",
        (_DNS_AD, _V1),
        advice.autodiscover_dns_elsewhere,
        relevance=_NOT_FOR_INTERNET_MAIL_APPS,
        symptoms=_AUTODISCOVER_SYMPTOMS,
        explains=frozenset({"autodiscover-unreachable"}),
        explains_factor=0.5,
    ),
    CauseSpec(
        "autodiscover-root-hijack",
        Side.DNS,
        "The domain's website answers Autodiscover in Exchange's place",
        (_V1,),
        advice.autodiscover_root_hijack,
        relevance=_NOT_FOR_INTERNET_MAIL_APPS,
        symptoms=_AUTODISCOVER_SYMPTOMS,
    ),
    CauseSpec(
        "autodiscover-bad-certificate",
        Side.DNS,
        "A server the organisation runs for Autodiscover has a bad certificate",
        (_V1,),
        advice.autodiscover_bad_certificate,
        relevance=_NOT_FOR_INTERNET_MAIL_APPS,
        symptoms=_AUTODISCOVER_SYMPTOMS,
    ),
    CauseSpec(
        "autodiscover-unreachable",
        Side.NETWORK,
        "Autodiscover cannot be reached from mailfix's network",
        (_V1,),
        advice.autodiscover_unreachable,
        relevance=_NOT_FOR_INTERNET_MAIL_APPS,
        symptoms=_AUTODISCOVER_SYMPTOMS,
    ),
    CauseSpec(
        "autodiscover-error",
        Side.SERVICE,
        "Autodiscover answers with an error",
        (_V1, _V2),
        advice.autodiscover_error,
        relevance=_NOT_FOR_INTERNET_MAIL_APPS,
        symptoms=_AUTODISCOVER_SYMPTOMS,
    ),
    CauseSpec(
        "hybrid-mailbox-on-premises",
        Side.ADMIN,
        "The mailbox is on the on-premises Exchange",
        (_V2, _MAILBOX),
        advice.hybrid_mailbox_on_premises,
        # Hybrid: a record pointing on-premises is how it should be.
        explains=frozenset({"autodiscover-dns-elsewhere"}),
        explains_factor=0.5,
    ),
    # -- the network between mailfix and Microsoft ------------------------------------------
    CauseSpec(
        "exo-unreachable",
        Side.NETWORK,
        "Exchange Online cannot be reached from mailfix's network",
        ("net.https", _V2),
        advice.exo_unreachable,
        symptoms=_CONNECT,
        # The whole host being unreachable explains its endpoints failing.
        explains=frozenset({"activesync-blocked", "autodiscover-error"}),
        explains_factor=0.8,
    ),
    CauseSpec(
        "tls-inspection",
        Side.NETWORK,
        "Something on mailfix's network intercepts encrypted traffic",
        ("net.https", _V1, _V2, "net.imap", "net.pop", "net.smtp", "activesync.endpoint"),
        advice.tls_inspection,
        symptoms=_CONNECT,
        # An interception proxy explains failed connections and odd answers from Microsoft.
        explains=frozenset(
            {"exo-unreachable", "autodiscover-unreachable", "autodiscover-error"}
            | {"activesync-blocked", "service-incident"}
        ),
        explains_factor=0.7,
    ),
    CauseSpec(
        "imap-blocked",
        Side.NETWORK,
        "IMAP (port 993) is blocked",
        ("net.imap",),
        advice.port_blocked(993, "IMAP", "exo"),
        relevance=_INTERNET_MAIL_ONLY,
        symptoms=_CONNECT,
    ),
    CauseSpec(
        "pop-blocked",
        Side.NETWORK,
        "POP (port 995) is blocked",
        ("net.pop",),
        advice.port_blocked(995, "POP", "exo"),
        relevance=_INTERNET_MAIL_ONLY,
        symptoms=_CONNECT,
    ),
    CauseSpec(
        "smtp-blocked",
        Side.NETWORK,
        "Sending (SMTP port 587) is blocked",
        ("net.smtp",),
        advice.port_blocked(587, "sending mail (SMTP)", "smtp"),
        relevance=_INTERNET_MAIL_ONLY,
        symptoms=_SEND,
    ),
    CauseSpec(
        "smtp-starttls-broken",
        Side.NETWORK,
        "Secure sending (STARTTLS) is broken on the way",
        ("net.smtp",),
        advice.smtp_starttls_broken,
        relevance=_INTERNET_MAIL_ONLY,
        symptoms=_SEND,
    ),
    CauseSpec(
        "activesync-blocked",
        Side.NETWORK,
        "ActiveSync is blocked or rewritten on the way",
        ("activesync.endpoint",),
        advice.activesync_blocked,
        relevance=_ACTIVESYNC_ONLY,
        symptoms={Symptom.PHONE_STOPPED_SYNCING: 0.1},
    ),
    # -- identity (AD FS) -------------------------------------------------------------------
    CauseSpec(
        "adfs-unreachable",
        Side.IDENTITY,
        "The AD FS sign-in server cannot be reached",
        ("realm.federation",),
        advice.adfs_unreachable,
        symptoms=_SIGN_IN_SYMPTOMS,
    ),
    CauseSpec(
        "adfs-certificate-invalid",
        Side.IDENTITY,
        "The AD FS sign-in server's certificate is bad",
        ("realm.federation",),
        advice.adfs_certificate_invalid,
        symptoms=_SIGN_IN_SYMPTOMS,
    ),
    CauseSpec(
        "adfs-token-signing-expired",
        Side.IDENTITY,
        "The AD FS token-signing certificate has expired",
        ("realm.federation",),
        advice.adfs_token_signing_expired,
        symptoms=_SIGN_IN_SYMPTOMS,
    ),
    CauseSpec(
        "adfs-token-signing-expiring",
        Side.IDENTITY,
        "The AD FS token-signing certificate expires soon",
        ("realm.federation",),
        advice.adfs_token_signing_expiring,
        symptoms=_SIGN_IN_SYMPTOMS,
        today=False,
    ),
    # -- the account, its licence and mailbox (tenant facts) --------------------------------
    CauseSpec(
        "account-not-found",
        Side.ADMIN,
        "No account in the organisation owns this address",
        (_ACCOUNT, _SIGNINS),
        advice.account_not_found,
        found_by=((_ACCOUNT, "account-not-found"),),
        confidence=0.97,
        aadsts=(50034, 51004),
        explains=_ACCOUNT_GONE,
        explains_factor=0.6,
    ),
    CauseSpec(
        "account-deleted",
        Side.ADMIN,
        "The account was deleted (it can still be restored)",
        (_ACCOUNT,),
        advice.account_deleted,
        found_by=((_ACCOUNT, "account-soft-deleted"),),
        confidence=0.97,
        explains=_ACCOUNT_GONE | {"account-not-found"},
        explains_factor=0.6,
    ),
    CauseSpec(
        "account-disabled",
        Side.ADMIN,
        "The account is blocked from signing in",
        (_ACCOUNT, _SIGNINS),
        advice.account_disabled,
        found_by=((_ACCOUNT, "account-disabled"),),
        confidence=0.96,
        aadsts=(50057,),
        explains=_SIGN_IN,
        explains_factor=0.7,
    ),
    CauseSpec(
        "account-sync-error",
        Side.ADMIN,
        "Directory sync reports an error for this account",
        (_ACCOUNT,),
        advice.account_sync_error,
    ),
    CauseSpec(
        "no-exchange-licence",
        Side.ADMIN,
        "No licence gives this person an Exchange Online mailbox",
        (_LICENSE, _MAILBOX),
        advice.no_exchange_licence,
        found_by=((_LICENSE, "no-exchange-plan"), (_LICENSE, "sku-without-mailbox")),
        confidence=0.96,
        explains=_MAILBOX_MISSING,
        explains_factor=0.9,
    ),
    CauseSpec(
        "exchange-plan-disabled",
        Side.ADMIN,
        "Exchange Online is switched off in this person's licence",
        (_LICENSE, _MAILBOX),
        advice.exchange_plan_disabled,
        found_by=((_LICENSE, "exchange-plan-disabled"),),
        confidence=0.96,
        explains=_MAILBOX_MISSING,
        explains_factor=0.9,
    ),
    CauseSpec(
        "exchange-plan-pending",
        Side.ADMIN,
        "The mailbox is still being set up",
        (_LICENSE, _MAILBOX),
        advice.exchange_plan_pending,
        found_by=((_LICENSE, "exchange-plan-pending"),),
        confidence=0.9,
        explains=_MAILBOX_MISSING,
        explains_factor=0.9,
    ),
    CauseSpec(
        "no-mailbox",
        Side.ADMIN,
        "There is no Exchange Online mailbox for this account",
        (_MAILBOX,),
        advice.no_mailbox,
        found_by=((_MAILBOX, "no-mailbox"),),
        confidence=0.94,
        # Autodiscover answers 500 for an address it does not know (reference §2.5).
        explains=frozenset({"autodiscover-error"}),
        explains_factor=0.7,
    ),
    CauseSpec(
        "protocol-disabled",
        Side.ADMIN,
        "The way this app connects is switched off for the mailbox",
        (_MAILBOX,),
        advice.protocol_disabled,
        found_by=((_MAILBOX, "protocol-disabled"),),
        confidence=0.95,
        symptoms=_PHONE,
    ),
    CauseSpec(
        "smtp-auth-disabled",
        Side.ADMIN,
        "Sending with a password (SMTP AUTH) is switched off",
        (_MAILBOX,),
        advice.smtp_auth_disabled,
        found_by=((_MAILBOX, "smtp-auth-disabled"),),
        confidence=0.95,
        symptoms={Symptom.CANNOT_SEND: 0.03},
    ),
    CauseSpec(
        "device-quarantined",
        Side.ADMIN,
        "The phone is quarantined until an admin allows it",
        (_DEVICES,),
        advice.device_quarantined,
        found_by=((_DEVICES, "device-quarantined"),),
        confidence=0.95,
        symptoms=_PHONE,
    ),
    CauseSpec(
        "device-blocked",
        Side.ADMIN,
        "The phone or its mail app is blocked",
        (_DEVICES,),
        advice.device_blocked,
        found_by=((_DEVICES, "device-blocked"),),
        confidence=0.95,
        symptoms=_PHONE,
    ),
    # -- access policies ----------------------------------------------------------------------
    CauseSpec(
        "client-access-rule",
        Side.ADMIN,
        "A Client Access Rule blocks this app",
        (_CAR,),
        advice.client_access_rule,
        found_by=((_CAR, "car-denied"),),
        confidence=0.93,
    ),
    CauseSpec(
        "conditional-access-block",
        Side.ADMIN,
        "A Conditional Access policy blocks this sign-in",
        (_CA, _SIGNINS),
        advice.conditional_access_block,
        found_by=((_CA, "ca-blocked"),),
        confidence=0.95,
        aadsts=(53003, 50131),
        controls=("block",),
    ),
    CauseSpec(
        "conditional-access-mfa",
        Side.ADMIN,
        "A Conditional Access policy asks for multifactor authentication this app cannot give",
        (_CA, _SIGNINS),
        advice.conditional_access_mfa,
        confidence=0.93,  # an unmet control, certain (tenant.conditional_access fail)
        aadsts=(50076, 50079, 50072, 50074),
        controls=("mfa", "authenticationStrength"),
        symptoms=_PROMPTS,
    ),
    CauseSpec(
        "conditional-access-device",
        Side.ADMIN,
        "A Conditional Access policy requires a managed device or an approved app",
        (_CA, _SIGNINS),
        advice.conditional_access_device,
        confidence=0.93,  # an unmet control, certain (tenant.conditional_access fail)
        aadsts=(53000, 53001, 53002),
        controls=(
            "compliantDevice",
            "domainJoinedDevice",
            "approvedApplication",
            "compliantApplication",
        ),
    ),
    # -- sign-ins (tenant.signins, reference §5.4) ---------------------------------------------
    CauseSpec(
        "sign-in-wrong-password",
        Side.DEVICE,
        "The app signs in with a wrong or old password",
        (_SIGNINS,),
        advice.sign_in_wrong_password,
        aadsts=(50126,),
        symptoms=_PROMPTS,
    ),
    CauseSpec(
        "account-locked",
        Side.IDENTITY,
        "The account is locked after too many wrong passwords",
        (_SIGNINS,),
        advice.account_locked,
        aadsts=(50053,),
        symptoms=_PROMPTS,
    ),
    CauseSpec(
        "password-expired",
        Side.IDENTITY,
        "The password has expired",
        (_SIGNINS,),
        advice.password_expired,
        aadsts=(50055, 50144),
        symptoms=_PROMPTS,
    ),
    # -- Microsoft's side ------------------------------------------------------------------------
    CauseSpec(
        "service-incident",
        Side.SERVICE,
        "Exchange Online has a service problem",
        (_HEALTH, "activesync.endpoint", _V2),
        advice.service_incident,
        found_by=((_HEALTH, "service-incident"),),
        confidence=0.9,
    ),
    # -- mailfix's own access ---------------------------------------------------------------------
    CauseSpec(
        "tenant-permission-missing",
        Side.ADMIN,
        "mailfix lacks a permission to read part of the tenant",
        (_ACCOUNT, _LICENSE, _MAILBOX, _DEVICES, _CAR, _CA, _SIGNINS, _HEALTH),
        advice.tenant_permission_missing,
    ),
    # -- when nothing on the server side stands in the way ------------------------------------
    CauseSpec(
        DEVICE_OR_APP,
        Side.DEVICE,
        "The device or the mail app",
        (),
        advice.device_or_app,
    ),
)

CAUSES: dict[str, CauseSpec] = {spec.id: spec for spec in _SPECS}
if len(CAUSES) != len(_SPECS):
    raise RuntimeError("a cause id is declared twice")

# Ids a stored report may still carry: the cause each became.
ALIASES: dict[str, str] = {"service-degraded": "service-incident"}


def cause_spec(cause_id: str) -> CauseSpec | None:
    """The record for `cause_id` (or the cause an old id became); None when unknown."""
    return CAUSES.get(ALIASES.get(cause_id, cause_id))


# ---- what was not checked ---------------------------------------------------------------------


def _applies(check_id: str, client: Client) -> bool:
    try:
        return get_check(check_id).applies_to(client)
    except KeyError:
        return True


def not_checked(findings: Sequence[Finding], client: Client) -> list[str]:
    """Ids of the checks that apply to `client` but decided nothing, in the findings' order.

    A check skipped before it ran (tenant checks without tenant settings, a check this build
    does not have) — the runner's skip carries no evidence, unlike a check that looked and
    found nothing to judge — and a check that could not decide (`error`: a missing permission,
    throttling, a DNS timeout). Cards list these; no advice claims they are in order.
    """
    out: list[str] = []
    for f in findings:
        if f.status is Status.ERROR or (
            f.status is Status.SKIP and not f.evidence and _applies(f.check, client)
        ):
            out.append(f.check)
    return out


def _tenant_checked(findings: Sequence[Finding], unchecked: Sequence[str]) -> bool:
    """Every tenant check that applies ran and decided (DESIGN.md: else the device ≤ 0.6)."""
    tenant = [f.check for f in findings if f.check.startswith("tenant.")]
    return bool(tenant) and not any(c.startswith("tenant.") for c in unchecked)


def _stands_in_the_way(f: Finding) -> bool:
    """A failure this client depends on: not mail routing, not a tenant check that could not
    read (that is "not checked", not a fault of the person's connection)."""
    if f.status not in _FAILED or f.check in _ROUTING_ONLY:
        return False
    return not (f.status is Status.ERROR and f.check.startswith("tenant."))


# ---- ranking ----------------------------------------------------------------------------------


@dataclass
class _Merged:
    confidence: float
    checks: set[str]
    blocking: bool
    definitive: bool
    hits: int


def _merge(hits: Iterable[_Hit]) -> dict[str, _Merged]:
    merged: dict[str, _Merged] = {}
    for hit in hits:
        m = merged.get(hit.cause)
        if m is None:
            merged[hit.cause] = _Merged(
                hit.confidence, set(hit.checks), hit.blocking, hit.definitive, 1
            )
            continue
        m.confidence = max(m.confidence, hit.confidence)
        m.checks.update(hit.checks)
        m.blocking = m.blocking or hit.blocking
        m.definitive = m.definitive or hit.definitive
        m.hits += 1
    for m in merged.values():
        # Independent checks pointing at the same cause make it a little more likely.
        m.confidence += 0.02 * (m.hits - 1)
    return merged


def _explained(spec: CauseSpec) -> frozenset[str]:
    if spec.explains is ALL_OTHERS:
        return frozenset(CAUSES) - {spec.id, DEVICE_OR_APP}
    return spec.explains


def rank_causes(
    findings: Sequence[Finding], client: Client, symptom: Symptom | None
) -> list[Cause]:
    """Ranked causes for `findings` (see the module docstring); `device-or-app` always present."""
    facts = _Facts(findings, client)
    merged = _merge(hit for rule in RULES for hit in rule(facts))

    for cause_id, m in merged.items():
        spec = CAUSES[cause_id]
        m.confidence *= spec.relevance.get(client, 1.0)
        if symptom is not None:
            m.confidence += spec.symptoms.get(symptom, 0.0)

    before = {cause_id: m.confidence for cause_id, m in merged.items()}
    for root, confidence in before.items():
        if confidence < _DOMINANT_FROM:
            continue
        spec = CAUSES[root]
        for cause_id in _explained(spec) & merged.keys():
            merged[cause_id].confidence *= spec.explains_factor

    for cause_id, m in merged.items():
        m.confidence = min(m.confidence, CAUSES[cause_id].cap)
        if not m.blocking:
            m.confidence = min(m.confidence, NON_BLOCKING_CAP)

    # Definitive facts outrank inferences; mailfix's own missing permission never outranks a
    # fault another check found.
    facts_found = [m.confidence for m in merged.values() if m.definitive]
    credible = [c for c in facts_found if c >= _DOMINANT_FROM]
    for cause_id, m in merged.items():
        if credible and not m.definitive:
            m.confidence = min(m.confidence, min(credible) - 0.01)
        if cause_id == "tenant-permission-missing" and facts_found:
            m.confidence = min(m.confidence, min(facts_found) - 0.01)

    # The device or the app (DESIGN.md, "Report").
    unchecked = not_checked(findings, client)
    if any(_stands_in_the_way(f) for f in findings):
        device = DEVICE_LOW
    elif any(m.blocking and m.confidence >= NON_BLOCKING_CAP for m in merged.values()):
        device = DEVICE_BEHIND_WARNING  # a warning that stands in this client's way leads
    else:
        device = DEVICE_HIGH
    if not _tenant_checked(findings, unchecked):
        device = min(device, DEVICE_UNCHECKED)
    for cause_id, m in merged.items():
        if not CAUSES[cause_id].today:  # listed below the device, with its own next steps
            m.confidence = min(m.confidence, device - 0.01)
    passed = sorted(f.check for f in findings if f.status is Status.PASS)
    merged[DEVICE_OR_APP] = _Merged(device, set(passed), False, False, 1)

    ranked = [
        Cause(
            id=cause_id,
            title=CAUSES[cause_id].title,
            confidence=round(min(0.99, max(0.0, m.confidence)), 3),
            checks=sorted(m.checks),
            side=CAUSES[cause_id].side,
        )
        for cause_id, m in merged.items()
    ]
    ranked.sort(key=lambda c: (-c.confidence, c.id))
    return ranked
