"""What a diagnosis says, in words: labelled facts, a numbered trace, one line per skip reason.

One presentation for every surface (Teams and console cards, Slack messages and modals, the
CLI tree): checks write evidence for programs (`evidence["certificate"]["not_after"]`), people
read "Certificate valid until: 2 Dec 2027 13:46 UTC". Nothing here escapes or truncates: the
templates do that for their platform. Nothing here returns a field path, a Python repr or JSON.

- `facts(finding)`: the evidence as (label, value) pairs. Labels come from `LABELS` (and
  `CHILD_LABELS` for nested values); a key nobody labelled gets a readable fallback
  ("namespace_type" -> "Namespace type"), never the raw key path. Empty values are left out.
- `trace(finding)`: the steps, numbered, with failures that are part of the normal path
  (Autodiscover's methods 1 and 2 for an Office 365 domain) marked as expected, not failed.
- `not_checked(findings, titles)`: skipped checks grouped by reason, one line per reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from checks.models import Finding, Remediation, Status, Step

# --- labels --------------------------------------------------------------------------------

# Top-level evidence keys, for every check (and the tenant findings contract, PLAN/issue 6).
LABELS: dict[str, str] = {
    # shared
    "problem": "Problem code",
    "error": "Error",
    "host": "Server",
    "port": "Port",
    "url": "URL",
    "endpoint": "Endpoint",
    "status": "HTTP status",
    "http_status": "HTTP status",
    "status_code": "HTTP status",
    "stage": "Got as far as",
    "headers": "Response header",
    "certificate": "Certificate",
    "tls_certificate": "TLS certificate",
    "certificate_problem": "Certificate problem",
    "tls_version": "TLS version",
    "cipher": "TLS cipher",
    "requests": "Requests made",
    "reason": "Reason",
    "detail": "Detail",
    # DNS
    "name": "DNS name",
    "query": "DNS query",
    "answers": "DNS answers",
    "rcode": "DNS answer code",
    "ttl": "Time to live",
    "dnssec": "DNSSEC",
    "dns_reason": "DNS problem",
    "cname_chain": "CNAME chain",
    "addresses": "IP addresses",
    "looks_on_premises": "Looks on-premises",
    "mx": "MX records",
    "elsewhere": "Mail servers outside Microsoft 365",
    "spf": "SPF records",
    "included": "Microsoft 365 in SPF",
    # Autodiscover
    "provider": "Autodiscover provider",
    "methods": "Autodiscover method",
    "method_used": "Method that worked",
    "expected_failures": "Methods expected to fail",
    "hijack_urls": "Answering instead of Microsoft",
    "root_domain_hijack": "Root domain answers Autodiscover",
    "office365": "Office 365 endpoint",
    "pox_error": "Autodiscover error",
    "redirect_addresses": "Redirected to addresses",
    "customer_certificate_problems": "Certificate problem (your organisation's server)",
    "microsoft_certificate_problems": "Certificate problem (Microsoft's server)",
    "hybrid": "Mailbox on-premises (hybrid)",
    "locations": "Redirects followed",
    "protocols": "Protocol",
    "returned_url": "URL returned",
    # SMTP / IMAP / POP
    "greeting": "Server greeting",
    "auth_mechanisms": "Sign-in methods offered (AUTH)",
    "extensions": "SMTP extensions",
    "extensions_after_tls": "SMTP extensions after STARTTLS",
    "starttls": "STARTTLS offered",
    "banner": "Server greeting",
    "server_banner": "Server greeting",
    # realm / federation
    "namespace_type": "Sign-in type",
    "domain_name": "Domain",
    "federation_brand_name": "Organisation name",
    "cloud_instance_name": "Microsoft cloud",
    "metadata_url": "Federation metadata URL",
    "sts_host": "Sign-in server (AD FS)",
    "network_problem": "Network problem",
    "signing_certificates": "Token-signing certificate",
    "unreadable_certificates": "Unreadable certificates",
    # tenant (findings contract)
    "user_id": "User ID",
    "upn": "User principal name",
    "matched_by": "Found by",
    "synced_from_on_premises": "Synced from on-premises",
    "days_left": "Days left to restore",
    "errors": "Sync errors",
    "skus": "Licences",
    "exchange_plan": "Exchange Online plan",
    "provisioning_status": "Provisioning status",
    "because": "Because",
    "protocols_off": "Protocols switched off",
    "org_default": "SMTP AUTH on for the organisation",
    "mailbox_setting": "SMTP AUTH setting on the mailbox",
    "devices": "Device",
    "default_access_level": "Default access level for phones",
    "matched_rule": "Matching device access rule",
    "rule": "Rule",
    "priority": "Priority",
    "policy": "Policy",
    "policy_id": "Policy ID",
    "control": "Control required",
    "evaluated_by": "Evaluated by",
    "failures": "Sign-in failure",
    "top_code": "Most frequent error",
    "issues": "Service issue",
    "permission": "Permission needed",
    "grant_where": "Where to grant it",
    "sku_id": "Licence ID",
    "plan_id": "Plan ID",
}

# Keys inside a nested value (a certificate, a device, a sign-in failure, an HTTP header).
CHILD_LABELS: dict[str, str] = {
    "subject": "subject",
    "issuer": "issuer",
    "not_before": "valid from",
    "not_after": "valid until",
    "san": "names (SAN)",
    "sha256": "SHA-256 fingerprint",
    "days_left": "days left",
    "state": "state",
    "owner": "owned by",
    "reason": "problem",
    "host": "server",
    "device_id": "device ID",
    "when": "when",
    "code": "error code",
    "app": "app",
    "client_app": "client app",
    "classification": "kind",
    "feature": "service",
    "id": "ID",
    "title": "title",
    "status": "status",
}

# HTTP response headers: what they mean, with the header's name for the helpdesk.
HEADER_LABELS: dict[str, str] = {
    "server": "Server software",
    "content-type": "Content type",
    "request-id": "Request ID",
    "x-diaginfo": "Microsoft diagnostic info (X-DiagInfo)",
    "x-feserver": "Microsoft front-end server (X-FEServer)",
    "x-beserver": "Microsoft back-end server (X-BEServer)",
    "x-calculatedbetarget": "Mailbox server (X-CalculatedBETarget)",
    "www-authenticate": "Sign-in methods offered (WWW-Authenticate)",
    "location": "Redirect to",
    "retry-after": "Retry after (seconds)",
    "x-ms-diagnostics": "Microsoft diagnostics (X-MS-Diagnostics)",
}

# Values that are codes for programs: the words for people.
VALUE_WORDS: dict[str, dict[str, str]] = {
    "stage": {
        "resolve": "looking up the name",
        "connect": "connecting",
        "tls": "the TLS handshake",
        "starttls": "STARTTLS",
        "greeting": "the server greeting",
        "done": "the end (everything worked)",
    },
    "matched_by": {
        "userPrincipalName": "user principal name",
        "proxyAddresses": "one of the user's mail addresses",
    },
    "control": {
        "mfa": "multi-factor authentication",
        "compliantDevice": "a compliant device",
        "domainJoinedDevice": "a hybrid-joined device",
        "approvedApplication": "an approved client app",
        "compliantApplication": "an app protection policy",
        "passwordChange": "a password change",
        "block": "blocked",
    },
    "evaluated_by": {
        "what-if": "Microsoft's What If evaluation",
        "mailfix": "mailfix's own reading",
    },
    "because": {"no-exchange-plan": "the licence has no Exchange Online plan"},
    "certificate_problem": {
        "expired": "expired",
        "not-yet-valid": "not valid yet",
        "hostname": "does not cover this name",
        "untrusted": "not from a trusted issuer",
        "self-signed": "self-signed",
    },
    "included": {"directly": "yes, directly", "indirectly": "yes, through another include"},
}

ACRONYMS = {
    "aadsts": "AADSTS",
    "adfs": "AD FS",
    "api": "API",
    "cname": "CNAME",
    "dns": "DNS",
    "eas": "EAS",
    "ews": "EWS",
    "exo": "Exchange Online",
    "http": "HTTP",
    "https": "HTTPS",
    "id": "ID",
    "imap": "IMAP",
    "ip": "IP",
    "mfa": "MFA",
    "mx": "MX",
    "pop": "POP",
    "san": "SAN",
    "sku": "SKU",
    "smtp": "SMTP",
    "spf": "SPF",
    "srv": "SRV",
    "sts": "STS",
    "tls": "TLS",
    "ttl": "TTL",
    "upn": "UPN",
    "url": "URL",
    "urls": "URLs",
}

_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def readable_key(key: str) -> str:
    """A key nobody labelled, in words: "namespace_type" -> "Namespace type",
    "clientAppUsed" -> "Client app used", "x-diaginfo" -> "X diaginfo"."""
    words = _WORDS.findall(key.replace("_", " ").replace("-", " ").replace(".", " "))
    if not words:
        return "Value"
    out = [ACRONYMS.get(w.lower(), w.lower()) for w in words]
    first = out[0]
    out[0] = first[:1].upper() + first[1:]
    return " ".join(out)


def label(key: str) -> str:
    """The label for a top-level evidence key."""
    return LABELS.get(key) or readable_key(key)


# Mailbox protocol switches (Get-CASMailbox), as the person's apps are called.
PROTOCOL_NAMES: dict[str, str] = {
    "active_sync": "Exchange ActiveSync",
    "activesync": "Exchange ActiveSync",
    "outlook_mobile": "Outlook for iOS and Android",
    "imap": "IMAP",
    "pop": "POP",
    "mapi": "MAPI (Outlook for Windows)",
    "ews": "EWS (Exchange Web Services)",
    "owa": "Outlook on the web",
    "smtp_client_auth": "Authenticated SMTP",
    "smtp_auth": "Authenticated SMTP",
}


def child_label(parent: str, key: str) -> str:
    """The label for `key` inside the value of `parent`: "Certificate valid until"."""
    if parent == "headers":
        return HEADER_LABELS.get(key.lower()) or f"Header {key}"
    if parent in ("switches", "protocols_on", "protocol_switches"):
        name = PROTOCOL_NAMES.get(key.lower()) or readable_key(key)
        return f"{name} switched on"
    words = CHILD_LABELS.get(key) or readable_key(key).lower()
    base = label(parent)
    return f"{base} {words}"


# --- values --------------------------------------------------------------------------------

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def format_when(value: str) -> str | None:
    """ISO 8601 -> "2 Dec 2027 13:46 UTC" (a date alone -> "2 Dec 2027"); None if not a date."""
    text = value.strip()
    try:
        if _DATE.match(text):
            d = datetime.strptime(text, "%Y-%m-%d")  # a calendar date, no time of day
            return f"{d.day} {d:%b %Y}"
        if _ISO.match(text):
            at = datetime.fromisoformat(text.replace("Z", "+00:00"))
            at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
            return f"{at.day} {at:%b %Y %H:%M} UTC"
    except ValueError:
        return None
    return None


def _challenge_schemes(value: str) -> str:
    """WWW-Authenticate: the schemes offered ("Bearer, Basic"), not the whole challenge."""
    schemes: list[str] = []
    for part in value.split(","):
        first = part.strip().split(" ", 1)[0]
        if first and "=" not in first and '"' not in first and first not in schemes:
            schemes.append(first)
    return ", ".join(schemes) or value


def scalar(value: Any, key: str = "") -> str:
    """One value in words ("" for nothing to show)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        if key in ("days_left",):
            n = int(value)
            if n < 0:
                return f"none (ended {-n} day{'s' if n != -1 else ''} ago)"
            return f"{n} day{'s' if n != 1 else ''}"
        if key == "top_code" and isinstance(value, int):
            return f"AADSTS{value}"
        if key in ("ttl",):
            return f"{value} seconds"
        if key == "method_used":
            return f"method {value}"
        return str(value)
    if isinstance(value, str):
        text = " ".join(value.split())
        words = VALUE_WORDS.get(key)
        if words and text in words:
            return words[text]
        if key.lower() == "www-authenticate":
            return _challenge_schemes(text)
        when = format_when(text)
        return when if when is not None else text
    if isinstance(value, Mapping):
        return "; ".join(_item_parts(value, key))
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        return ", ".join(s for s in (scalar(v, key) for v in value) if s)
    return str(value)


def _item_parts(item: Mapping[str, Any], parent: str) -> list[str]:
    """A dict inside a list, as "name — label: value" parts (nested dicts flattened)."""
    parts: list[str] = []
    for k, v in item.items():
        if isinstance(v, Mapping):
            for k2, v2 in v.items():
                text = scalar(v2, k2)
                if text:
                    parts.append(f"{child_label(k, k2)}: {text}")
            continue
        text = scalar(v, k)
        if not text:
            continue
        if k in ("name", "title", "display_name", "displayName"):
            parts.insert(0, text)
        else:
            words = CHILD_LABELS.get(k) or readable_key(k).lower()
            parts.append(f"{words}: {text}")
    return parts


@dataclass(frozen=True)
class Fact:
    label: str
    value: str


# One item of a list that is shown one fact per item ("Request 2: GET https://…").
ITEM_LABELS: dict[str, str] = {
    "requests": "Request",
    "errors": "Sync error",
    "spf": "SPF record",
    "mx": "MX record",
    "locations": "Redirect",
    "hijack_urls": "Answering instead of Microsoft",
}
# A list longer than this (joined) is shown one fact per item, so no value needs cutting.
LIST_ON_ONE_LINE = 300

# Evidence keys the trace already shows step by step (left out of the facts when there is one).
TRACE_KEYS = frozenset({"methods", "protocols"})


def facts(evidence: Mapping[str, Any], *, has_trace: bool = False) -> list[Fact]:
    """The evidence as labelled facts in words. Empty values and empty lists are left out."""
    out: list[Fact] = []
    for raw_key, value in evidence.items():
        key = str(raw_key)
        if has_trace and key in TRACE_KEYS:
            continue
        if key == "mailbox_setting" and value is None:
            out.append(Fact(label(key), "not set (the organisation's setting applies)"))
            continue
        if key == "host" and value == evidence.get("name"):
            continue  # a DNS check names the same host twice
        if key == "address" and isinstance(value, str):
            out.append(Fact("Mail address" if "@" in value else "IP address", value))
            continue
        if isinstance(value, Mapping):
            for k2, v2 in value.items():
                text = scalar(v2, str(k2))
                if text:
                    out.append(Fact(child_label(key, str(k2)), text))
            continue
        if isinstance(value, Sequence) and not isinstance(value, str | bytes):
            items = list(value)
            if any(isinstance(v, Mapping) for v in items):
                many = len(items) > 1
                for i, item in enumerate(items, 1):
                    text = scalar(item, key)
                    if text:
                        out.append(Fact(f"{label(key)} {i}" if many else label(key), text))
                continue
        if isinstance(value, Sequence) and not isinstance(value, str | bytes):
            texts = [t for t in (scalar(v, key) for v in value) if t]
            if len(texts) > 1 and sum(len(t) + 2 for t in texts) > LIST_ON_ONE_LINE:
                item = ITEM_LABELS.get(key) or label(key)
                out += [Fact(f"{item} {i}", t) for i, t in enumerate(texts, 1)]
                continue
        if key == "status" and not isinstance(value, int):
            text = scalar(value, key)
            if text:
                out.append(Fact("Status", text))
            continue
        text = scalar(value, key)
        if text:
            out.append(Fact(label(key), text))
    return out


# --- the trace ------------------------------------------------------------------------------


class StepState(StrEnum):
    OK = "ok"
    FAILED = "failed"
    WARNING = "warning"
    ERROR = "error"
    EXPECTED = "expected"  # failed as it always does on the normal path: not a problem
    SKIPPED = "skipped"


STEP_ICONS: dict[StepState, str] = {
    StepState.OK: "✅",
    StepState.FAILED: "❌",
    StepState.WARNING: "⚠️",
    StepState.ERROR: "❗",
    StepState.EXPECTED: "➖",
    StepState.SKIPPED: "⏭",
}
STEP_WORDS: dict[StepState, str] = {
    StepState.OK: "ok",
    StepState.FAILED: "failed",
    StepState.WARNING: "warning",
    StepState.ERROR: "could not check",
    StepState.EXPECTED: "expected",
    StepState.SKIPPED: "not needed",
}


@dataclass(frozen=True)
class TraceStep:
    number: str  # "1", "1.2": shown before the name
    name: str  # without its number
    state: StepState
    detail: str
    depth: int  # 0: a method / top step; 1: one of its sub-steps

    @property
    def icon(self) -> str:
        return STEP_ICONS[self.state]


_NUMBERED = re.compile(r"^(?:Method\s+(\d+)\s*[:.]\s*|(\d+(?:\.\d+)+)\.?\s+|(\d+)[.)]\s+)")
_EXPECTED = re.compile(r"^expected\b", re.IGNORECASE)
_MENTIONS_EXPECTED = re.compile(r"\bexpected\b", re.IGNORECASE)


def _state(step: Step, finding: Finding, expected_methods: set[str], method: str) -> StepState:
    bad = step.status in (Status.FAIL, Status.WARN, Status.ERROR)
    if bad and (
        _EXPECTED.match(step.detail)
        or method in expected_methods
        or finding.status in (Status.PASS, Status.SKIP)
    ):
        return StepState.EXPECTED
    return {
        Status.PASS: StepState.OK,
        Status.FAIL: StepState.FAILED,
        Status.WARN: StepState.WARNING,
        Status.ERROR: StepState.ERROR,
        Status.SKIP: StepState.SKIPPED,
    }[step.status]


def trace(finding: Finding) -> list[TraceStep]:
    """The finding's steps, numbered; expected failures marked as such.

    A failed step is *expected* when the check says so ("Expected for Office 365: …"), when it
    belongs to a method listed in `evidence["expected_failures"]`, or when the check as a whole
    passed (then no step of it is the problem).
    """
    raw = finding.evidence.get("expected_failures")
    expected = {str(m) for m in raw} if isinstance(raw, list) else set()
    out: list[TraceStep] = []
    method = ""
    counter = 0
    for step in finding.steps:
        m = _NUMBERED.match(step.name)
        if m:
            number = m.group(1) or m.group(2) or m.group(3) or ""
            name = step.name[m.end() :].strip() or step.name
            depth = 1 if "." in number else 0
            if depth == 0:
                method = number
            if m.group(1):  # "Method 1: HTTPS on the root domain"
                name = f"Method {number}: {name}"
                number = ""
        else:
            counter += 1
            number, name, depth = str(counter), step.name, 0
            method = number
        out.append(
            TraceStep(
                number=number,
                name=" ".join(name.split()),
                state=_state(step, finding, expected, method),
                detail=" ".join(step.detail.split()),
                depth=depth,
            )
        )
    return out


def trace_line(step: TraceStep) -> str:
    """One step in words: "➖ 1.4 POST https://… — expected: HTTP 404" (raw, unescaped)."""
    if step.depth:
        head = f"{step.number} {step.name}"
    elif step.number:
        head = f"{step.number}. {step.name}"
    else:
        head = step.name
    detail = step.detail
    if step.state is StepState.EXPECTED and detail and not _MENTIONS_EXPECTED.search(detail):
        detail = f"expected: {detail}"
    elif step.state is StepState.EXPECTED and not detail:
        detail = "expected"
    return f"{step.icon} {head}" + (f" — {detail}" if detail else "")


# --- skipped checks -------------------------------------------------------------------------


@dataclass(frozen=True)
class NotChecked:
    reason: str  # short, for people: "needs admin consent"
    full: str  # the check's own words, for the helpdesk
    titles: list[str]
    applies: bool  # False: the check does not apply to this app (not worth telling the person)

    def line(self) -> str:
        return f"Not checked: {', '.join(self.titles)} — {self.reason}."


def short_reason(summary: str) -> str:
    """ "Needs admin consent: set MAILFIX_…" -> "needs admin consent"."""
    text = " ".join(summary.split()).rstrip(".")
    for sep in (": ", ". ", " ("):
        if sep in text:
            text = text.split(sep, 1)[0]
    if len(text) > 1 and not text[1].isupper():
        text = text[:1].lower() + text[1:]
    return text or "not run"


def not_checked(
    findings: Iterable[Finding], titles: Mapping[str, str] | None = None
) -> list[NotChecked]:
    """Skipped checks, one entry per reason, in the order they first appear."""
    groups: dict[str, list[str]] = {}
    for f in findings:
        if f.status is Status.SKIP:
            groups.setdefault(" ".join(f.summary.split()), []).append(
                (titles or {}).get(f.check, f.check)
            )
    return [
        NotChecked(
            reason=short_reason(full),
            full=full or "Not run.",
            titles=names,
            applies=not full.lower().startswith(("does not apply", "not needed for")),
        )
        for full, names in groups.items()
    ]


# --- a finding for the helpdesk ---------------------------------------------------------------


@dataclass(frozen=True)
class ProposedFix:
    title: str
    what: str  # the operation written out ("Set-CASMailbox -Identity … -ActiveSyncEnabled $true")
    target: str
    hard_to_undo: bool

    def line(self) -> str:
        parts = [self.title.rstrip(".") + "."]
        if self.what:
            parts.append(f"It would run: {self.what}")
        if self.hard_to_undo:
            parts.append("Hard to undo.")
        return " ".join(parts)


_BODY = re.compile(r"^(?P<head>.*?)\s+(?P<body>\{.*\})$", re.DOTALL)


def operation_words(operation: str) -> str:
    """ "PATCH /v1.0/users/x {"accountEnabled": true}" -> "PATCH /v1.0/users/x with
    accountEnabled: yes" (a request body in words, not JSON)."""
    text = " ".join(operation.split())
    m = _BODY.match(text)
    if m is None:
        return text
    try:
        body = json.loads(m.group("body"))
    except ValueError:
        return text
    if not isinstance(body, dict):
        return text
    parts = [f"{k}: {v}" for k, v in ((str(k), scalar(v, str(k))) for k, v in body.items()) if v]
    return f"{m.group('head')} with " + "; ".join(parts) if parts else m.group("head")


def proposed_fix(remediation: Remediation | None) -> ProposedFix | None:
    if remediation is None:
        return None
    return ProposedFix(
        title=" ".join(remediation.title.split()),
        what=operation_words(remediation.operation or remediation.action),
        target=remediation.target,
        hard_to_undo=remediation.hard_to_undo,
    )


STATUS_WORDS: dict[Status, str] = {
    Status.PASS: "passed",
    Status.WARN: "warning",
    Status.FAIL: "failed",
    Status.ERROR: "could not check",
    Status.SKIP: "not checked",
}


@dataclass(frozen=True)
class FindingText:
    """One finding, everything in words (raw: templates escape and fit)."""

    check: str
    title: str
    status: Status
    summary: str
    detail: str
    facts: list[Fact]
    steps: list[TraceStep]
    next_steps: list[str]
    fix: ProposedFix | None
    duration_ms: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def status_word(self) -> str:
        return STATUS_WORDS[self.status]


def finding_text(f: Finding, title: str) -> FindingText:
    steps = trace(f)
    detail = " ".join(f.detail.split())
    if detail == " ".join(f.summary.split()):
        detail = ""
    return FindingText(
        check=f.check,
        title=title,
        status=f.status,
        summary=" ".join(f.summary.split()),
        detail=detail,
        facts=facts(f.evidence, has_trace=bool(steps)),
        steps=steps,
        next_steps=[" ".join(s.split()) for s in f.next_steps if s.strip()],
        fix=proposed_fix(f.remediation),
        duration_ms=f.duration_ms,
    )
