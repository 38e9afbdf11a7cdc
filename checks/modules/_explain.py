"""Turn a network-seam error into finding wording: one place instead of an except ladder per check.

API (kept small on purpose; the autodiscover checks and the diagnosis step use it too)::

    try:
        info = await ctx.net.tls_probe(host, 443)
    except NetError as exc:
        why = explain(exc, host=host, port=443, service="HTTPS", microsoft=True)
        return why.finding(check, steps=[...])          # or read why.status / why.summary ...

`explain()` never raises and never mentions a password. Its `status` defaults follow the
check catalogue (DESIGN.md): a DNS failure of the resolver (timeout, SERVFAIL, REFUSED…) or an
address the guard refused is `error` (the check could not decide); anything where the far side
or the path in between answered badly or not at all is `fail`. Callers may override with
`status=`.

Every explanation carries a stable `problem` code, also put in `evidence["problem"]`, so the
diagnosis step can map findings to causes without parsing prose:

    dns-nxdomain dns-nodata dns-timeout dns-servfail dns-refused dns-malformed dns-no-servers
    dns-failure blocked-address connect-failed timeout tls-inspection certificate-expired
    certificate-not-yet-valid certificate-hostname certificate-untrusted certificate-invalid
    tls-failed protocol too-large redirects network

`tls-inspection` is used instead of the `certificate-*` codes when the host is one of
Microsoft's (`microsoft=True`): Microsoft's own certificates verify, so a certificate that does
not is almost always a TLS-inspecting proxy, a captive portal, or a wrong clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from checks.models import Finding, Status, Step
from checks.net.errors import (
    BlockedAddress,
    CertificateInvalid,
    ConnectFailed,
    DnsError,
    NetError,
    NetTimeout,
    ProtocolViolation,
    ResponseTooLarge,
    TlsFailed,
    TooManyRedirects,
)
from checks.spec import Check

# DnsError.reason values that are answers about the name, not failures of the resolver.
_DNS_ANSWERS = {"nxdomain": "dns-nxdomain", "nodata": "dns-nodata", "no-answer": "dns-nodata"}
_DNS_FAILURES = {
    "timeout": "dns-timeout",
    "servfail": "dns-servfail",
    "refused": "dns-refused",
    "malformed": "dns-malformed",
    "no-servers": "dns-no-servers",
}

_CERT_PROBLEMS = {
    "expired": ("certificate-expired", "has expired"),
    "not-yet-valid": ("certificate-not-yet-valid", "is not valid yet"),
    "hostname": ("certificate-hostname", "is issued for a different name"),
    "untrusted": ("certificate-untrusted", "is not issued by a trusted authority"),
}


@dataclass(frozen=True)
class Explanation:
    """Plain-words reading of one NetError, ready to go into a finding."""

    status: Status
    problem: str  # stable code (module docstring); also evidence["problem"]
    stage: str  # where it broke: "dns" | "connect" | "tls" | "protocol"
    summary: str  # one sentence
    evidence: dict[str, Any] = field(default_factory=dict)
    next_steps: tuple[str, ...] = ()

    def finding(
        self,
        check: Check,
        *,
        summary: str | None = None,
        detail: str = "",
        evidence: dict[str, Any] | None = None,
        next_steps: Iterable[str] = (),
        steps: Sequence[Step] = (),
    ) -> Finding:
        """A finding for `check`: extra evidence is merged in, extra next steps go first."""
        return check.finding(
            self.status,
            summary or self.summary,
            detail=detail,
            evidence={**self.evidence, **(evidence or {})},
            next_steps=_dedupe([*next_steps, *self.next_steps]),
            steps=list(steps),
        )

    def step(self, name: str) -> Step:
        """The failing step of a trace, worded from this explanation."""
        return Step(name=name, status=self.status, detail=self.summary)


def explain(
    exc: NetError,
    *,
    host: str,
    port: int | None = None,
    service: str = "",
    microsoft: bool = False,
    status: Status | None = None,
) -> Explanation:
    """Explain `exc` (raised while talking to `host`:`port`) for a helpdesk person.

    `service` names what runs on that port ("IMAP", "the AD FS server"); `microsoft` says the
    host is one of Microsoft's (changes the reading of certificate errors and next steps).
    """
    target = f"{host}:{port}" if port else host
    what = f"{service} on {target}" if service else target
    evidence: dict[str, Any] = {"host": host, "error": _clip(str(exc))}
    if port:
        evidence["port"] = port
    out = _classify(exc, host=host, port=port, target=target, what=what, microsoft=microsoft)
    evidence.update(out.evidence)
    evidence["problem"] = out.problem
    return Explanation(
        status=status or out.status,
        problem=out.problem,
        stage=out.stage,
        summary=out.summary,
        evidence=evidence,
        next_steps=out.next_steps,
    )


def _classify(
    exc: NetError, *, host: str, port: int | None, target: str, what: str, microsoft: bool
) -> Explanation:
    port_words = f"port {port}" if port else "the connection"
    if isinstance(exc, DnsError):
        reason = exc.reason.lower()
        if reason in _DNS_ANSWERS and microsoft:
            # Microsoft's names exist: a resolver that denies one is filtering or broken.
            return Explanation(
                Status.FAIL,
                _DNS_ANSWERS[reason],
                "dns",
                f"The DNS servers mailfix uses say {exc.name} does not exist: a DNS filter "
                "blocks it, or the DNS servers are misconfigured.",
                {"dns_reason": reason, "name": exc.name},
                (
                    f"Ask the network team to let {exc.name} resolve normally (check DNS "
                    "filtering or security software).",
                ),
            )
        if reason in _DNS_ANSWERS:
            # The DNS answered: the name does not exist (or has no address). A decided fact.
            return Explanation(
                Status.FAIL,
                _DNS_ANSWERS[reason],
                "dns",
                f"{exc.name} does not exist in DNS, so {what} cannot be reached.",
                {"dns_reason": reason, "name": exc.name},
                (f"Check the spelling of {exc.name}, and ask whoever runs its DNS to add it.",),
            )
        return Explanation(
            Status.ERROR,
            _DNS_FAILURES.get(reason, "dns-failure"),
            "dns",
            f"The DNS servers mailfix uses could not answer for {exc.name} ({reason}).",
            {"dns_reason": reason, "name": exc.name},
            (
                "Run the diagnosis again in a minute; if it keeps failing, ask the network team "
                "whether the DNS servers mailfix uses are working (mailfix's network, not "
                "necessarily the person's).",
            ),
        )
    if isinstance(exc, BlockedAddress):
        shown = ", ".join(exc.addresses[:5])
        return Explanation(
            Status.ERROR,
            "blocked-address",
            "dns",
            f"{host} resolves to an internal address ({shown}), which mailfix does not contact.",
            {"addresses": exc.addresses[:10]},
            (
                (
                    f"{host} should resolve to Microsoft's public addresses: ask the network "
                    "team why the DNS servers mailfix uses return an internal one."
                )
                if microsoft
                else (
                    f"If {host} is meant to be internal-only, that is fine for people inside; "
                    "people outside (and Microsoft) cannot reach it."
                ),
                "An administrator can allow that range with MAILFIX_ALLOWED_PRIVATE_NETWORKS "
                "if mailfix should test it.",
            ),
        )
    if isinstance(exc, NetTimeout):
        return Explanation(
            Status.FAIL,
            "timeout",
            "connect",
            f"{what} did not answer in time: something on the way silently drops {port_words}.",
            {},
            _blocked_steps(host, port, microsoft),
        )
    if isinstance(exc, ConnectFailed):
        return Explanation(
            Status.FAIL,
            "connect-failed",
            "connect",
            f"The connection to {what} was refused or cut: a firewall or the network "
            f"blocks {port_words}.",
            {},
            _blocked_steps(host, port, microsoft),
        )
    if isinstance(exc, CertificateInvalid):
        return _certificate(exc, host=host, target=target, microsoft=microsoft)
    if isinstance(exc, TlsFailed):
        return Explanation(
            Status.FAIL,
            "tls-failed",
            "tls",
            f"The encrypted (TLS) connection to {what} could not be set up.",
            {},
            (
                (
                    "A proxy or firewall that tampers with encrypted traffic is the usual "
                    f"cause: ask the network team to let {host} through untouched."
                )
                if microsoft
                else (
                    f"Ask whoever runs {host} to check its TLS setup (TLS 1.2 or later, "
                    "a complete certificate chain)."
                ),
            ),
        )
    if isinstance(exc, ProtocolViolation | ResponseTooLarge):
        code = "protocol" if isinstance(exc, ProtocolViolation) else "too-large"
        return Explanation(
            Status.FAIL,
            code,
            "protocol",
            f"Something answered on {target}, but not as {what} should.",
            {},
            (
                (
                    "A proxy, captive portal or security appliance is answering in Microsoft's "
                    f"place: ask the network team to let {host} through untouched."
                )
                if microsoft
                else f"Ask whoever runs {host} to check what answers there.",
            ),
        )
    if isinstance(exc, TooManyRedirects):
        return Explanation(
            Status.FAIL,
            "redirects",
            "protocol",
            f"{target} redirects in a loop.",
            {},
            (f"Ask whoever runs {host} (or the proxy in between) to fix the redirect loop.",),
        )
    return Explanation(
        Status.ERROR,
        "network",
        "connect",
        f"mailfix could not talk to {what} ({exc.kind}).",
        {},
        ("Run the diagnosis again; if it keeps failing, give this result to the helpdesk.",),
    )


def _certificate(
    exc: CertificateInvalid, *, host: str, target: str, microsoft: bool
) -> Explanation:
    reason = exc.reason
    evidence: dict[str, Any] = {"certificate_problem": reason}
    if exc.cert is not None:
        evidence["certificate"] = exc.cert.evidence()
    issuer = f" (issued by {exc.cert.issuer})" if exc.cert is not None else ""
    if microsoft:
        steps = [
            f"Ask the network team to exclude {host} from TLS inspection; Microsoft does not "
            "support inspecting Microsoft 365 traffic.",
            "mailfix tested from the network it runs on. If the person's app shows certificate "
            "warnings too and they are on hotel or guest Wi-Fi, they open a web page first and "
            "accept the portal's terms, then try again.",
        ]
        if reason in {"expired", "not-yet-valid"}:
            steps.append(
                "Check that the date and time are correct on the machine mailfix runs on (and "
                "on the person's device, if it shows the same warning)."
            )
        steps.append(
            "If your organisation inspects TLS on purpose, an administrator can give mailfix "
            "the proxy's CA with MAILFIX_CA_BUNDLE."
        )
        return Explanation(
            Status.FAIL,
            "tls-inspection",
            "tls",
            f"The certificate presented for {target} is not Microsoft's{issuer}: a "
            "TLS-inspecting proxy or a captive portal is in the way.",
            evidence,
            tuple(steps),
        )
    code, words = _CERT_PROBLEMS.get(reason, ("certificate-invalid", "does not verify"))
    return Explanation(
        Status.FAIL,
        code,
        "tls",
        f"The certificate of {target} {words}{issuer}.",
        evidence,
        (
            f"Ask whoever runs {host} to install a valid certificate for {host} from a public "
            "certificate authority, with its full chain.",
        ),
    )


def _blocked_steps(host: str, port: int | None, microsoft: bool) -> tuple[str, ...]:
    port_words = f"TCP port {port}" if port else "the connection"
    if microsoft:
        return (
            f"Ask the network team to allow outbound {port_words} to {host}.",
            "mailfix tested from the network it runs on; if your app fails the same way, try "
            "it from another network (a phone hotspot): if it works there, the block is on "
            "your usual network.",
        )
    return (
        f"Ask whoever runs {host} to check that the service is up and that {port_words} is "
        "open to the internet.",
    )


def _dedupe(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
