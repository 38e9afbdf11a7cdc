"""What people read, over every sandbox scenario diagnosed for real on loopback.

The person's card: the cause, their steps, one line for what passed and one per reason for
what was not checked, the helpdesk details collapsed. The helpdesk's view (Teams container,
Slack modal, CLI tree): labelled facts in words, a numbered trace where the normal path's
failures are marked as expected, no JSON, no Python reprs, no field paths, no cut words.
"""

from __future__ import annotations

import asyncio
import io
import re
from typing import Any

import pytest
from cards_helpers import all_texts, nodes, validate_adaptive, validate_slack
from rich.console import Console

from bot.console import report_tree
from cards import Target, render
from cards.data import FindingLine, HomeData, ProgressData, ResultsData
from cards.present import facts, label, readable_key, scalar, trace, trace_line
from checks.models import Client, Finding, Remediation, Report, Status, Step
from checks.net.seam import Network, Timeouts
from checks.registry import CATALOGUE as CHECKS
from checks.runner import diagnose
from dialogs.models import CardSpec
from sandbox.catalogue import CATALOGUE as SCENARIOS
from sandbox.world import World

TITLES = {c.id: c.title for c in CHECKS}
FAST = Timeouts(dns=1.0, connect=1.0, read=1.0, total=3.0)
EVIDENCE_KEYS = {
    "problem",
    "namespace_type",
    "pox_error",
    "not_after",
    "days_left",
    "tls_version",
    "status_code",
    "cname_chain",
    "method_used",
    "expected_failures",
}
# A Python repr or a JSON structure anywhere a person reads.
RAW = re.compile(r"\bNone\b|\bTrue\b|\bFalse\b|\{['\"]|\[\{|\[['\"]")


async def _diagnose(scenario_id: str) -> Report:
    sc = SCENARIOS[scenario_id]
    client = sc.expect[0].client if sc.expect else Client.OUTLOOK
    async with (
        World(sc) as world,
        Network(world.settings(), timeouts=FAST, port_map=world.port_map) as net,
    ):
        return await diagnose(sc.address, client, settings=net.settings, net=net, deadline=10.0)


@pytest.fixture(scope="module")
def reports() -> dict[str, Report]:
    async def all_of_them() -> dict[str, Report]:
        return {sid: await _diagnose(sid) for sid in sorted(SCENARIOS)}

    return asyncio.run(all_of_them())


def _spec(report: Report, **kw: Any) -> CardSpec:
    data = ResultsData(
        diagnosis_id="d-1",
        address=report.address,
        client=report.client,
        client_label="Outlook for Windows",
        report=report,
        next_steps=["Close the app and open it again."],
        check_titles=TITLES,
        **kw,
    )
    return CardSpec(template="results", data=data.model_dump(mode="json"))


def _unescape(text: str) -> str:
    """What a reader sees: Adaptive markdown backslashes and Slack entities undone."""
    text = re.sub(r"\\(.)", r"\1", text)
    text = text.replace("\u200b", "")
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _visible(payload: dict[str, Any]) -> list[str]:
    """Text a reader sees (TextBlocks, facts, mrkdwn/plain_text), unescaped."""
    out: list[str] = []
    for n in nodes(payload):
        kind = n.get("type")
        if kind == "TextBlock" or kind in ("mrkdwn", "plain_text"):
            out.append(_unescape(n["text"]))
        elif kind == "FactSet":
            out += [_unescape(t) for f in n["facts"] for t in (f["title"], f["value"])]
    return out


def _labels(payload: dict[str, Any]) -> list[str]:
    """Fact labels: FactSet titles (Teams) and "*Label:* value" lines (Slack)."""
    out = [f["title"] for n in nodes(payload) if n.get("type") == "FactSet" for f in n["facts"]]
    for n in nodes(payload):
        if n.get("type") == "mrkdwn":
            out += re.findall(r"^\*([^*\n]+):\* ", n["text"], flags=re.MULTILINE)
    return [_unescape(x) for x in out]


def _tree(report: Report) -> str:
    buf = io.StringIO()
    Console(file=buf, width=200, color_system=None, highlight=False).print(report_tree(report))
    return buf.getvalue()


# --- every scenario -------------------------------------------------------------------------


@pytest.mark.parametrize("scenario_id", sorted(SCENARIOS))
def test_every_view_is_words_for_people(reports: dict[str, Report], scenario_id: str) -> None:
    report = reports[scenario_id]
    card = render(_spec(report), Target.ADAPTIVE)
    message = render(_spec(report), Target.SLACK_MESSAGE)
    modal = render(_spec(report), Target.SLACK_MODAL)
    validate_adaptive(card)
    validate_slack(message, "message")
    validate_slack(modal, "modal")
    for payload in (card, message, modal):
        seen = "\n".join(_visible(payload))
        assert not RAW.search(seen), RAW.search(seen)
        # a real report fits at full detail: nothing is cut, no word is split
        assert "shortened" not in seen and "to fit" not in seen
        for lab in _labels(payload):
            assert "_" not in lab and "." not in lab.rstrip("."), lab
            assert lab not in EVIDENCE_KEYS
        assert not re.search(r"(?m):\s*$", "\n".join(_labels(payload)))  # no "Label: " alone
    for payload in (card, modal):  # the helpdesk view has facts for what ran
        assert _labels(payload), "no labelled facts"
    tree = _tree(report)
    assert not RAW.search(tree)
    for key in EVIDENCE_KEYS:
        assert f"── {key}:" not in tree


@pytest.mark.parametrize("scenario_id", sorted(SCENARIOS))
def test_the_person_sees_one_line_per_skip_reason(
    reports: dict[str, Report], scenario_id: str
) -> None:
    report = reports[scenario_id]
    message = render(_spec(report), Target.SLACK_MESSAGE)
    seen = "\n".join(_visible(message))
    assert seen.lower().count("admin consent") <= 1
    assert "MAILFIX_" not in seen  # configuration is for the helpdesk, not the person
    finished = [
        FindingLine(check=f.check, title=TITLES[f.check], status=f.status, summary=f.summary)
        for f in report.findings
    ]
    progress = ProgressData(
        address=report.address,
        client_label="Outlook",
        total=len(finished),
        done=len(finished),
        finished=finished,
    )
    for target in (Target.ADAPTIVE, Target.SLACK_MESSAGE):
        out = render(CardSpec(template="progress", data=progress.model_dump(mode="json")), target)
        shown = "\n".join(_visible(out))
        assert shown.lower().count("admin consent") <= 1
        assert "shortened" not in shown and "truncated" not in shown
        skip_lines = [line for line in shown.splitlines() if line.startswith("⏭ ")]
        skipped = [f for f in report.findings if f.status is Status.SKIP]
        for f in skipped:  # each skipped check is named on exactly one line
            title = TITLES[f.check]
            assert (
                sum(f"{title}," in x or f"{title} —" in x or f"{title}." in x for x in skip_lines)
                == 1
            )


def test_healthy_card_is_short_green_and_collapses_the_details(
    reports: dict[str, Report],
) -> None:
    report = reports["healthy"]
    card = render(_spec(report), Target.ADAPTIVE)
    body = card["body"]
    (details,) = [b for b in body if b.get("id") == "details"]
    assert details["isVisible"] is False
    person = [b for b in body if b.get("id") != "details"]
    person_text = "\n".join(_visible({"body": person}))
    assert "❌" not in person_text and "expected" not in person_text
    assert re.search(r"✅ \d+ checks passed: ", person_text)
    assert "Not checked: " in person_text and "needs admin consent." in person_text
    # the normal Office 365 path's failures are expected steps, never red
    helpdesk = "\n".join(_visible(details))
    assert "❌" not in helpdesk
    assert "➖ Method 1: HTTPS on the root domain" in helpdesk
    assert "➖ 1.4 POST https://contoso.com/autodiscover/autodiscover.xml" in helpdesk
    facts_ = {
        f["title"]: _unescape(f["value"])
        for n in nodes(details)
        if n.get("type") == "FactSet"
        for f in n["facts"]
    }
    assert re.fullmatch(
        r"\d{1,2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2} UTC", facts_["Certificate valid until"]
    )
    assert facts_["Sign-in type"] == "Managed"
    assert facts_["Office 365 endpoint"] == "yes"
    assert facts_["Server"] == "outlook.office365.com"


def test_failing_check_keeps_its_real_failures_red_and_expected_ones_grey(
    reports: dict[str, Report],
) -> None:
    report = reports["autodiscover-cert-expired"]
    lines = [trace_line(s) for s in trace(report.finding("autodiscover.v1"))]
    assert any(x.startswith("➖ 1.4 POST https://contoso.com/") for x in lines)
    assert any(x.startswith("❌ 2.3 Certificate of autodiscover.contoso.com") for x in lines)
    tree = _tree(report)
    expected = next(line for line in tree.splitlines() if "1.4 POST https://contoso.com" in line)
    assert "✘" not in expected and "–" in expected
    assert any("✘" in line and "2.3 Certificate" in line for line in tree.splitlines())


def test_slack_details_button_and_modal(reports: dict[str, Report]) -> None:
    report = reports["activesync-503"]
    message = render(_spec(report), Target.SLACK_MESSAGE)
    buttons = [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert buttons[-1]["text"]["text"] == "Details for the helpdesk"
    assert buttons[-1]["action_id"] == "mailfix.details" and buttons[-1]["value"] == "d-1"
    modal = render(_spec(report), Target.SLACK_MODAL)
    labels = _labels(modal)
    for wanted in (
        "HTTP status",
        "URL",
        "Server software",
        "Microsoft front-end server (X-FEServer)",
    ):
        assert wanted in labels, labels


# --- the labelling itself --------------------------------------------------------------------


def test_tenant_findings_contract_keys_have_human_labels_and_fixes_show() -> None:
    evidence = {
        "problem": "protocol-disabled",
        "protocols_off": ["ActiveSync", "Imap"],
        "days_left": 12,
        "default_access_level": "Quarantine",
        "synced_from_on_premises": False,
        "mailbox_setting": None,
        "devices": [
            {"name": "iPhone", "device_id": "ABC123", "state": "Quarantined", "rule": None},
            {"name": "Pixel", "device_id": "XYZ", "state": "Blocked", "reason": "Policy"},
        ],
        "failures": [{"when": "2026-12-01T09:30:00Z", "code": 53003, "app": "Outlook Mobile"}],
        "top_code": 53003,
        "requests": ["GET https://graph.microsoft.com/v1.0/users/ana@contoso.com"],
        "brandNewField_fromAService": "yes",
        "switches": {"active_sync": False, "imap": True},
    }
    shown = {f.label: f.value for f in facts(evidence)}
    assert shown["Protocols switched off"] == "ActiveSync, Imap"
    assert shown["Days left to restore"] == "12 days"
    assert shown["Default access level for phones"] == "Quarantine"
    assert shown["Synced from on-premises"] == "no"
    assert shown["SMTP AUTH setting on the mailbox"].startswith("not set")
    assert shown["Device 1"] == "iPhone; device ID: ABC123; state: Quarantined"
    assert shown["Device 2"] == "Pixel; device ID: XYZ; state: Blocked; problem: Policy"
    assert (
        shown["Sign-in failure"]
        == "when: 1 Dec 2026 09:30 UTC; error code: 53003; app: Outlook Mobile"
    )
    assert shown["Most frequent error"] == "AADSTS53003"
    assert shown["Requests made"].startswith("GET https://graph.microsoft.com/")
    assert shown["Brand new field from a service"] == "yes"  # readable fallback, never the key
    assert shown["Exchange ActiveSync switched on"] == "no"
    assert shown["IMAP switched on"] == "yes"
    for lab in shown:
        assert "_" not in lab and not lab[0].islower()

    fix = Remediation(
        id="enable-protocol",
        title="Switch ActiveSync on for ana@contoso.com",
        api="exo",
        action="Set-CASMailbox",
        operation="Set-CASMailbox -Identity ana@contoso.com -ActiveSyncEnabled $true",
    )
    finding = Finding(
        check="tenant.mailbox",
        status=Status.FAIL,
        summary="ActiveSync is switched off for ana@contoso.com.",
        evidence=evidence,
        remediation=fix,
    )
    report = Report(
        address="ana@contoso.com",
        client=Client.MOBILE,
        duration_ms=5,
        findings=[finding],
        causes=[],
    )
    for target in (Target.ADAPTIVE, Target.SLACK_MODAL):
        out = render(_spec(report), target)
        seen = "\n".join(_visible(out))
        assert "Proposed fix: Switch ActiveSync on for ana@contoso.com." in seen.replace("*", "")
        assert "Set-CASMailbox -Identity ana@contoso.com -ActiveSyncEnabled $true" in seen
        assert not RAW.search(seen)
    assert "Proposed fix: Switch ActiveSync on" in _tree(report)


def test_readable_fallback_and_values() -> None:
    assert readable_key("namespace_type") == "Namespace type"
    assert readable_key("clientAppUsed") == "Client app used"
    assert readable_key("tls_url") == "TLS URL"
    assert label("pox_error") == "Autodiscover error"
    assert label("some.dotted.path") == "Some dotted path"
    assert scalar(None) == "" and scalar(True) == "yes" and scalar(False) == "no"
    assert scalar(["a", None, "b"]) == "a, b"
    assert scalar("2027-12-02T13:46:01+00:00") == "2 Dec 2027 13:46 UTC"
    assert scalar(-13, "days_left") == "none (ended 13 days ago)"
    challenge = (
        'Bearer client_id="00000002-0000-0ff1-ce00-000000000000", '
        'trusted_issuers="x@*",Basic Realm="",NTLM'
    )
    assert scalar(challenge, "www-authenticate") == "Bearer, Basic, NTLM"
    assert facts({"empty": [], "nothing": None, "blank": "  "}) == []


def test_steps_without_numbers_are_numbered_and_a_passing_check_has_no_red_step() -> None:
    finding = Finding(
        check="net.https",
        status=Status.PASS,
        summary="fine",
        steps=[
            Step(name="Resolve outlook.office365.com", status=Status.PASS, detail="127.0.0.1"),
            Step(name="Try the old endpoint", status=Status.FAIL, detail="HTTP 404"),
            Step(name="STARTTLS offered", status=Status.PASS),
        ],
    )
    lines = [trace_line(s) for s in trace(finding)]
    assert lines == [
        "✅ 1. Resolve outlook.office365.com — 127.0.0.1",
        "➖ 2. Try the old endpoint — expected: HTTP 404",
        "✅ 3. STARTTLS offered",  # no empty "STARTTLS offered: "
    ]


# --- other things a person reads ---------------------------------------------------------------


def test_home_says_no_checks_yet_once_and_the_right_command() -> None:
    for intro in (None, "No checks yet. Type mailfix to check why a mail app cannot connect."):
        data = HomeData(recent=[], intro=intro)
        for target in (Target.ADAPTIVE, Target.SLACK_HOME):
            out = render(CardSpec(template="home", data=data.model_dump(mode="json")), target)
            assert " ".join(all_texts(out)).count("No checks yet") == 1


async def test_home_command_matches_the_platform() -> None:
    from dialogs.flow import _command
    from dialogs.models import Platform

    assert _command(Platform.SLACK) == "/mailfix"
    assert _command(Platform.TEAMS) == "mailfix"
    assert _command(Platform.CONSOLE) == "mailfix"


def test_mobile_tls_advice_does_not_mention_a_computer() -> None:
    from checks.advice import cause_steps
    from checks.cloud import CLOUDS, Cloud

    hosts = CLOUDS[Cloud.GLOBAL]
    mobile = " ".join(cause_steps("tls-inspection", Client.MOBILE, hosts))
    assert mobile and "computer" not in mobile


def test_the_person_gets_their_steps_and_the_helpdesk_gets_theirs(
    reports: dict[str, Report],
) -> None:
    report = reports["autodiscover-cname-missing"]
    steps = [
        "You: until it is fixed, set the account up by hand with server outlook.office365.com.",
        "Helpdesk: create the record autodiscover.<domain> CNAME autodiscover.outlook.com.",
    ]
    card = render(
        _spec(report).model_copy(update={"data": {**_spec(report).data, "next_steps": steps}}),
        Target.ADAPTIVE,
    )
    person = "\n".join(_visible({"body": [b for b in card["body"] if b.get("id") != "details"]}))
    assert "1. Until it is fixed, set the account up by hand" in person
    assert "Helpdesk:" not in person and "CNAME autodiscover.outlook.com" not in person
    (details,) = [b for b in card["body"] if b.get("id") == "details"]
    helpdesk = "\n".join(_visible(details)).replace("*", "")
    assert "What the helpdesk can do:\n1. Create the record autodiscover.<domain> CNAME" in helpdesk

    only_helpdesk = {**_spec(report).data, "next_steps": steps[1:]}
    for target in (Target.ADAPTIVE, Target.SLACK_MESSAGE):
        out = render(CardSpec(template="results", data=only_helpdesk), target)
        seen = "\n".join(_visible(out)).replace("*", "")
        assert "Nothing to change in Outlook for Windows: the helpdesk has to fix this." in seen
        assert "Press Escalate to helpdesk" in seen


def test_a_missing_permission_is_one_line_for_the_person_and_named_for_the_helpdesk(
    reports: dict[str, Report],
) -> None:
    report = reports["permission-missing-auditlog"]
    assert report.finding("tenant.signins").status is Status.ERROR
    message = render(_spec(report), Target.SLACK_MESSAGE)
    person = "\n".join(_visible(message))
    assert "AuditLog.Read.All" not in person
    assert "Could not check: Recent sign-in failures — the helpdesk can see why" in person
    modal = render(_spec(report), Target.SLACK_MODAL)
    helpdesk = "\n".join(_visible(modal)).replace("*", "")
    assert "Permission needed: AuditLog.Read.All" in helpdesk
