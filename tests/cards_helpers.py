"""Validate rendered cards: Adaptive Cards against the official 1.5 schema, Block Kit with
slack_sdk's own models, both against the documented platform limits (`cards.limits`).

Use from any test: `from cards_helpers import validate_adaptive, validate_slack`.
Both raise AssertionError with every problem found, and return nothing.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any, Literal

import jsonschema
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from cards.limits import adaptive_problems, slack_problems

# Vendored official schemas, read offline (source and version: tests/schemas/README.md).
SCHEMAS = Path(__file__).resolve().parent / "schemas"

# Keys Teams understands but the Adaptive Card schema (additionalProperties: false) does not.
TEAMS_ONLY_KEYS = ("msteams",)


@cache
def adaptive_validator() -> jsonschema.Draft6Validator:
    path = SCHEMAS / "adaptive-card-1.5.json"
    assert path.is_file(), f"official Adaptive Card schema missing: {path}"
    schema = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.Draft6Validator.check_schema(schema)
    return jsonschema.Draft6Validator(schema)


def _strip_teams_keys(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_teams_keys(v) for k, v in node.items() if k not in TEAMS_ONLY_KEYS}
    if isinstance(node, list):
        return [_strip_teams_keys(v) for v in node]
    return node


def nodes(node: Any) -> list[dict[str, Any]]:
    """Every object in a card's JSON, depth first."""
    out: list[dict[str, Any]] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, dict):
            out.append(n)
            stack.extend(n.values())
        elif isinstance(n, list):
            stack.extend(n)
    return out


def validate_adaptive(card: dict[str, Any]) -> None:
    """Official schema (Draft 6), Teams size/structure limits, and our Universal Action rules."""
    assert json.loads(json.dumps(card)) == card, "card must survive a JSON round trip"
    stripped = _strip_teams_keys(copy.deepcopy(card))
    errors = sorted(adaptive_validator().iter_errors(stripped), key=lambda e: list(e.path))
    messages = [f"{list(e.absolute_path)}: {e.message[:300]}" for e in errors]
    assert not messages, "Adaptive Card schema errors:\n" + "\n".join(messages)
    problems = adaptive_problems(card)
    assert not problems, f"Adaptive Card limits: {problems}"
    for node in nodes(card):
        kind = node.get("type")
        if kind == "TextBlock":
            assert isinstance(node.get("text"), str), "TextBlock without text"
        if isinstance(kind, str) and kind.startswith("Input."):
            assert node.get("id"), f"{kind} without id"
        if kind == "Action.Execute":
            fb = node.get("fallback")
            assert isinstance(fb, dict) and fb.get("type") == "Action.Submit", (
                "Action.Execute needs an Action.Submit fallback (older Teams clients)"
            )
            assert fb["data"].get("verb") == node["verb"], "fallback data.verb must equal verb"


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}.{k}: missing after parse" for k in a.keys() - b.keys()]
        out += [f"{path}.{k}: added by parse" for k in b.keys() - a.keys()]
        for k in a.keys() & b.keys():
            out += _diff(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in _diff(x, y, f"{path}[{i}]")
        ]
    return [] if a == b else [f"{path}: {a!r:.80} != {b!r:.80}"]


def _roundtrip(original: dict[str, Any], parsed: dict[str, Any], where: str) -> None:
    # slack_sdk silently drops keys it does not know: a typo would vanish, so compare.
    diff = _diff(original, parsed)
    assert not diff, f"{where}: slack_sdk did not keep the payload as written: {diff}"


def validate_slack(payload: dict[str, Any], kind: Literal["message", "modal", "home"]) -> None:
    """slack_sdk's block/view validators, a lossless parse, and the documented limits."""
    assert json.loads(json.dumps(payload)) == payload, "payload must survive a JSON round trip"
    if kind == "message":
        assert set(payload) <= {"text", "blocks"}, f"unexpected keys {set(payload)}"
        assert isinstance(payload.get("text"), str) and payload["text"].strip(), (
            "messages need a top-level text fallback"
        )
        for i, raw in enumerate(payload["blocks"]):
            block = Block.parse(raw)
            assert block is not None, f"block {i}: unknown block type {raw.get('type')!r}"
            block.validate_json()
            _roundtrip(raw, block.to_dict(), f"block {i}")
    else:
        view = View(**payload)
        view.validate_json()
        assert view.type == kind
        _roundtrip(payload, view.to_dict(), f"{kind} view")
    problems = slack_problems(payload, kind)
    assert not problems, f"Block Kit limits: {problems}"


def all_texts(payload: Any) -> list[str]:
    """Every string value in a payload (for asserting what a reader could see)."""
    out: list[str] = []
    stack = [payload]
    while stack:
        n = stack.pop()
        if isinstance(n, str):
            out.append(n)
        elif isinstance(n, dict):
            stack.extend(n.values())
        elif isinstance(n, list):
            stack.extend(n)
    return out


# --- sample data ------------------------------------------------------------------------------

CHECK_IDS = (
    "activesync.endpoint",
    "autodiscover.v1",
    "autodiscover.v2",
    "dns.autodiscover",
    "dns.mx",
    "dns.spf",
    "net.https",
    "net.imap",
    "net.pop",
    "net.smtp",
    "realm.federation",
    "tenant.account",
    "tenant.client_access_rules",
    "tenant.conditional_access",
    "tenant.devices",
    "tenant.license",
    "tenant.mailbox",
    "tenant.service_health",
    "tenant.signins",
)

# Strings people, DNS and servers have been known to send us.
HOSTILE = {
    "channel": "<!channel> please look",
    "mention": "ping <@U123> and <#C999|ops>",
    "link": "[x](http://evil.example) and <http://evil.example|click here>",
    "bold": "*bold* **strong** _it_ ~strike~ `code`",
    "heading": "# Heading\n- list item\n1. numbered\n> quote",
    "quotes": "say \"hi\" and 'bye' \\ back\\slash",
    "control": "nul\u0000bell\u0007esc\u001b end",
    "emoji": "📬 👩🏽‍💻 🇩🇪🇫🇷 e\u0301",
    "rtl": "שלום עולם مرحبا \u202eesrever\u202c",
    "json": '"}], "blocks": [{"type": "section"}], "x": "',
}
LONG_LINE = "x" * 5000
TEN_KB = ("abc&<>*_ " * 1200)[:10_240]


def sample_report(
    *,
    hostile: bool = False,
    huge: bool = False,
    address: str = "ana@contoso.com",
) -> Any:
    """A report with every status, an Autodiscover trace, evidence of every shape.

    `hostile` puts the HOSTILE strings into summaries, evidence and steps; `huge` adds 10 KB
    evidence values and 5000-char lines to every finding.
    """
    from checks.models import Cause, Client, Finding, Report, Side, Status, Step

    bad = " | ".join(HOSTILE.values()) if hostile else ""
    statuses = {
        "dns.autodiscover": Status.FAIL,
        "autodiscover.v1": Status.FAIL,
        "autodiscover.v2": Status.WARN,
        "net.smtp": Status.ERROR,
        "realm.federation": Status.WARN,
        "net.imap": Status.SKIP,
        "net.pop": Status.SKIP,
    }
    findings = []
    for cid in CHECK_IDS:
        status = statuses.get(cid, Status.SKIP if cid.startswith("tenant.") else Status.PASS)
        evidence: dict[str, Any] = {
            "query": f"autodiscover.{address.rsplit('@', maxsplit=1)[-1]}",
            "answers": ["autodiscover.outlook.com.", "10 contoso-com.mail.protection.outlook.com."],
            "rcode": "NOERROR",
            "ttl": 3600,
            "dnssec": False,
            "tls": {"version": "TLSv1.3", "issuer": "DigiCert", "days_left": 200},
            "nested": [{"a": 1}, {"b": [2, 3]}],
            "missing": None,
        }
        summary = f"{cid} looks {status.value}."
        steps: list[Step] = []
        if cid == "autodiscover.v1":
            steps = [
                Step(
                    name="https://contoso.com/autodiscover/autodiscover.xml",
                    status=Status.FAIL,
                    detail="connection refused",
                ),
                Step(
                    name="https://autodiscover.contoso.com/autodiscover/autodiscover.xml",
                    status=Status.FAIL,
                    detail="certificate name mismatch",
                ),
                Step(
                    name="http://autodiscover.contoso.com/ redirect",
                    status=Status.PASS,
                    detail="302 to https://autodiscover-s.outlook.com/",
                ),
                Step(name="SRV _autodiscover._tcp.contoso.com", status=Status.SKIP),
            ]
        if hostile:
            summary += " " + bad
            evidence["server_banner"] = bad
            evidence[HOSTILE["channel"]] = HOSTILE["link"]
            steps = [*steps, Step(name=HOSTILE["mention"], status=Status.WARN, detail=bad)]
        if huge:
            evidence["body"] = TEN_KB
            evidence["line"] = LONG_LINE
            summary += " " + LONG_LINE
            steps = [
                *steps,
                *[
                    Step(
                        name=f"step {i} {LONG_LINE[:300]}", status=Status.FAIL, detail=TEN_KB[:2000]
                    )
                    for i in range(30)
                ],
            ]
        findings.append(
            Finding(
                check=cid,
                status=status,
                summary=summary,
                detail=(LONG_LINE if huge else "") + (bad if hostile else ""),
                evidence=evidence
                if status is not Status.SKIP
                else ({"reason": bad} if hostile else {}),
                next_steps=(
                    [
                        "Ask your DNS admin for a CNAME autodiscover -> autodiscover.outlook.com.",
                        "Wait for the TTL (up to an hour) and run the check again.",
                    ]
                    + ([bad, TEN_KB] if hostile or huge else [])
                )
                if status in (Status.FAIL, Status.WARN, Status.ERROR)
                else [],
                steps=steps,
                duration_ms=31,
            )
        )
    causes = [
        Cause(
            id="autodiscover-dns-missing",
            title="Autodiscover DNS record missing" + (" " + bad if hostile else ""),
            confidence=0.9,
            checks=["dns.autodiscover", "autodiscover.v1"],
            side=Side.DNS,
        ),
        Cause(id="device-or-app", title="Your device or app", confidence=0.2, side=Side.DEVICE),
    ]
    return Report(
        address=address, client=Client.OUTLOOK, duration_ms=812, findings=findings, causes=causes
    )
