"""cards/: every template, every target, validated against the official schema / slack_sdk and
the documented limits; hostile text comes out literal; big reports degrade, never break."""

from __future__ import annotations

import json
import re
from typing import Any

import jinja2
import pytest
from cards_helpers import (
    HOSTILE,
    LONG_LINE,
    TEN_KB,
    all_texts,
    sample_report,
    validate_adaptive,
    validate_slack,
)

from cards import CardError, Target, render
from cards.case_data import AnswerData
from cards.data import (
    Choice,
    ErrorData,
    EscalationData,
    FindingLine,
    FormField,
    HomeData,
    IntakeData,
    NoticeData,
    ProgressData,
    RecentDiagnosis,
    ResultsData,
)
from cards.limits import TEAMS_CARD_BYTES, serialized_size
from checks.models import Client, Status
from dialogs.models import Action, CardSpec

KIND = {Target.SLACK_MESSAGE: "message", Target.SLACK_MODAL: "modal", Target.SLACK_HOME: "home"}
BAD = " | ".join(HOSTILE.values())
TITLES = {
    "dns.mx": "MX records",
    "dns.autodiscover": "Autodiscover DNS",
    "autodiscover.v1": "Autodiscover (Outlook)",
    "net.smtp": "SMTP submission",
}


def validate(out: dict[str, Any], target: Target) -> None:
    if target is Target.ADAPTIVE:
        validate_adaptive(out)
    else:
        validate_slack(out, KIND[target])  # type: ignore[arg-type]


def results(**kw: Any) -> ResultsData:
    report = kw.pop("report", None) or sample_report()
    base: dict[str, Any] = {
        "diagnosis_id": "d-42",
        "address": report.address,
        "client": Client.OUTLOOK,
        "client_label": "Outlook for Windows",
        "symptom_label": "Keeps asking for a password",
        "report": report,
        "next_steps": ["Close Outlook completely.", "Open it again and wait a minute."],
        "check_titles": TITLES,
    }
    base.update(kw)
    return ResultsData(**base)


def intake(**kw: Any) -> IntakeData:
    base: dict[str, Any] = {
        "title": "Check my mail",
        "intro": "I'll check the servers, DNS and network for this address.",
        "fields": [
            FormField(
                id="address",
                label="Your email address",
                kind="email",
                required=True,
                value="ana@contoso.com",
                placeholder="ana@contoso.com",
                hint="The address that does not work.",
            ),
            FormField(
                id="app",
                label="Which app?",
                kind="choice",
                required=True,
                value="outlook",
                choices=[
                    Choice(value="outlook", title="Outlook for Windows"),
                    Choice(value="ios", title="iPhone Mail"),
                ],
            ),
            FormField(
                id="symptom",
                label="What happens?",
                kind="choice",
                choices=[Choice(value="password", title="Keeps asking for a password")],
            ),
            FormField(
                id="error_text",
                label="Error message",
                kind="multiline",
                placeholder="Paste the message. Never paste a password.",
            ),
            FormField(id="since_when", label="Since when?", kind="text"),
        ],
        "submit_label": "Check",
        "private_metadata": json.dumps({"conversation": "C1", "diagnosis_id": None}),
    }
    base.update(kw)
    return IntakeData(**base)


def progress(**kw: Any) -> ProgressData:
    base: dict[str, Any] = {
        "address": "ana@contoso.com",
        "client_label": "Outlook",
        "total": 11,
        "done": 6,
        "running": ["SMTP submission", "Autodiscover (Outlook)"],
        "finished": [
            FindingLine(check="dns.mx", title="MX records", status=Status.PASS, summary="ok"),
            FindingLine(
                check="dns.autodiscover",
                title="Autodiscover DNS",
                status=Status.FAIL,
                summary="no record",
            ),
            FindingLine(check="net.pop", title="POP", status=Status.SKIP),
            FindingLine(check="net.smtp", title="SMTP", status=Status.ERROR, summary="timeout"),
            FindingLine(check="dns.spf", title="SPF", status=Status.WARN, summary="no include"),
            FindingLine(check="net.https", title="HTTPS", status=Status.PASS, summary="TLS ok"),
        ],
    }
    base.update(kw)
    return ProgressData(**base)


def escalation(**kw: Any) -> EscalationData:
    base: dict[str, Any] = {
        "diagnosis_id": "d-42",
        "address": "ana@contoso.com",
        "requester": "Ana Ng",
        "top_cause_title": "Autodiscover DNS record missing",
        "summary": "Outlook cannot find the mailbox; autodiscover.contoso.com has no record.",
        "channel_label": "#it-helpdesk",
        "ticket": "HD-1234",
        "failing_checks": ["Autodiscover DNS", "Autodiscover (Outlook)"],
    }
    base.update(kw)
    return EscalationData(**base)


def error(**kw: Any) -> ErrorData:
    base: dict[str, Any] = {
        "title": "The checks could not finish",
        "message": "The DNS server did not answer within 30 seconds.",
        "try_next": ["Run the check again in a minute.", "Ask the helpdesk if it keeps failing."],
        "diagnosis_id": "d-42",
        "retry": True,
    }
    base.update(kw)
    return ErrorData(**base)


def home(**kw: Any) -> HomeData:
    base: dict[str, Any] = {
        "recent": [
            RecentDiagnosis(
                diagnosis_id=f"d-{i}",
                address="ana@contoso.com",
                client_label="Outlook",
                when="2026-11-22 10:42 UTC",
                top_cause_title="Autodiscover DNS record missing",
                status=[Status.FAIL, Status.PASS, None][i % 3],
            )
            for i in range(5)
        ],
    }
    base.update(kw)
    return HomeData(**base)


def spec(template: str, model: Any) -> CardSpec:
    return CardSpec(template=template, data=model.model_dump(mode="json"))  # type: ignore[arg-type]


# Which (template, target) pairs exist; everything else must be refused.
SUPPORTED = {
    "intake": [Target.ADAPTIVE, Target.SLACK_MODAL],
    "progress": [Target.ADAPTIVE, Target.SLACK_MESSAGE, Target.SLACK_MODAL],
    "results": [Target.ADAPTIVE, Target.SLACK_MESSAGE, Target.SLACK_MODAL],
    "escalation": [Target.ADAPTIVE, Target.SLACK_MESSAGE, Target.SLACK_MODAL],
    "error": [Target.ADAPTIVE, Target.SLACK_MESSAGE, Target.SLACK_MODAL],
    "notice": [Target.ADAPTIVE, Target.SLACK_MESSAGE, Target.SLACK_MODAL],
    "home": [Target.ADAPTIVE, Target.SLACK_HOME],
    "answer": [Target.ADAPTIVE],  # Teams only: Slack answers in a modal (bot/slack.py)
}
BUILDERS = {
    "intake": intake,
    "progress": progress,
    "results": results,
    "escalation": escalation,
    "error": error,
    "notice": lambda **kw: NoticeData(text=kw.get("text", "Checking again in a moment.")),
    "home": home,
    "answer": lambda **kw: AnswerData(
        case=kw.get("case", 12), text=kw.get("text", "Bo from the helpdesk asks: which phone?")
    ),
}


def hostile_variant(template: str) -> Any:
    """The template's data with hostile text in every free-text field."""
    if template == "results":
        report = sample_report(hostile=True, address=f"{HOSTILE['channel']}@contoso.com")
        return results(
            report=report,
            address=BAD,
            symptom_label=BAD,
            client_label=BAD,
            next_steps=[BAD, LONG_LINE],
            note=BAD,
            check_titles={k: BAD for k in TITLES},
        )
    if template == "intake":
        return intake(
            title=BAD,
            intro=BAD,
            error=BAD,
            submit_label=BAD,
            fields=[
                FormField(
                    id="address",
                    label=BAD,
                    kind="email",
                    required=True,
                    value=BAD,
                    placeholder=BAD,
                    hint=BAD,
                    error=BAD,
                ),
                FormField(
                    id="app",
                    label=BAD,
                    kind="choice",
                    value="x",
                    choices=[Choice(value="x", title=BAD), Choice(value="y", title=LONG_LINE)],
                ),
                FormField(id="error_text", label=BAD, kind="multiline", value=TEN_KB),
            ],
        )
    if template == "progress":
        return progress(
            address=BAD,
            client_label=BAD,
            running=[BAD, LONG_LINE],
            finished=[
                FindingLine(check="dns.mx", title=BAD, status=Status.FAIL, summary=BAD + LONG_LINE)
            ]
            * 30,
        )
    if template == "escalation":
        return escalation(
            address=BAD,
            requester=BAD,
            top_cause_title=BAD,
            summary=BAD + TEN_KB,
            channel_label=BAD,
            ticket=BAD,
            failing_checks=[BAD] * 20,
        )
    if template == "error":
        return error(title=BAD, message=BAD + TEN_KB, try_next=[BAD, LONG_LINE])
    if template == "notice":
        return NoticeData(text=BAD + LONG_LINE)
    if template == "answer":
        return AnswerData(case=7, text=BAD + TEN_KB)
    return home(
        intro=BAD,
        recent=[
            RecentDiagnosis(
                diagnosis_id=BAD,
                address=BAD,
                client_label=BAD,
                when=BAD,
                top_cause_title=BAD + LONG_LINE,
                status=Status.WARN,
            )
        ]
        * 60,
    )


CASES = [(t, tg) for t, targets in SUPPORTED.items() for tg in targets]


# --- every card validates ---------------------------------------------------------------------


@pytest.mark.parametrize(("template", "target"), CASES, ids=[f"{a}-{b}" for a, b in CASES])
def test_every_card_validates(template: str, target: Target) -> None:
    out = render(spec(template, BUILDERS[template]()), target)
    validate(out, target)


@pytest.mark.parametrize(("template", "target"), CASES, ids=[f"{a}-{b}" for a, b in CASES])
def test_hostile_text_validates_and_stays_literal(template: str, target: Target) -> None:
    out = render(spec(template, hostile_variant(template)), target)
    validate(out, target)
    blob = "\n".join(all_texts(out))
    assert "\x00" not in blob and "\x07" not in blob and "\u202e" not in blob
    if target is Target.ADAPTIVE:
        # Markdown is only interpreted in TextBlocks and facts: no live link or emphasis there.
        md = "\n".join(_markdown_texts(out))
        assert "[x](http" not in md
        assert "**strong**" not in md
        assert "\\[x\\](http://evil.example)" in md
    else:
        # Slack parses mrkdwn objects and the notification text; plain_text is shown as is.
        md = "\n".join(_mrkdwn_texts(out))
        for live in ("<!channel>", "<@U123>", "<#C999", "<http://evil"):
            assert live not in md
        assert "&lt;!channel&gt;" in md
        # outside code spans (where Slack formats nothing) no emphasis pair survives
        prose = re.sub(r"```.*?```|`[^`]*`", "", md, flags=re.DOTALL)
        assert "*bold*" not in prose and "_it_" not in prose and "~strike~" not in prose
    # whatever was cut says so
    assert "shortened," in blob


def test_unsupported_pairs_are_refused() -> None:
    for template, targets in SUPPORTED.items():
        for target in set(Target) - set(targets):
            with pytest.raises(CardError):
                render(spec(template, BUILDERS[template]()), target)


def test_bad_data_is_refused_loudly() -> None:
    with pytest.raises(CardError, match="bad data"):
        render(CardSpec(template="results", data={"address": "x"}), Target.ADAPTIVE)
    with pytest.raises(CardError, match="bad data"):
        render(CardSpec(template="notice", data={"text": "x", "extra": 1}), Target.SLACK_MESSAGE)


def test_a_template_expression_without_json_filter_fails() -> None:
    from cards.render import _environment

    env = _environment("slack")
    with pytest.raises(jinja2.TemplateRuntimeError, match=r"\| j"):
        env.from_string('{"text": "{{ x }}"}').render(x='"}')
    with pytest.raises(jinja2.TemplateRuntimeError):
        env.from_string('{"text": {{ x | md }}}').render(x="hi")
    assert env.from_string('{"text": {{ x | md | j }}}').render(x='a"b') == '{"text": "a\\"b"}'
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("{{ missing | j }}").render()


# --- results ----------------------------------------------------------------------------------


def _slack_section_texts(msg: dict[str, Any]) -> list[str]:
    out = []
    for b in msg["blocks"]:
        if b["type"] == "section":
            out.append(b["text"]["text"])
        elif b["type"] == "context":
            out.extend(e["text"] for e in b["elements"])
    return out


def test_results_slack_person_first_then_found_passed_not_checked() -> None:
    msg = render(spec("results", results()), Target.SLACK_MESSAGE)
    texts = _slack_section_texts(msg)
    assert texts[1].startswith("*Most likely:* Autodiscover DNS record missing")
    assert "organisation's DNS records" in texts[1]
    assert texts[2].startswith("*What to do in Outlook for Windows:*\n1. Close Outlook")
    found = texts[3].split("\n")
    assert [line.split()[0] for line in found] == ["❌", "❌", "⚠️", "⚠️"]
    small = texts[4].split("\n")
    assert small[0] == "✅ 4 checks passed: activesync.endpoint, MX records, dns.spf, net.https."
    # a check that could not run is one line for the person; the why is in the details
    assert small[1] == (
        "❗ Could not check: SMTP submission — the helpdesk can see why in the details."
    )
    assert all(line.startswith("⏭ Not checked: ") for line in small[2:])
    # the person's message holds no helpdesk evidence: that is behind the details button
    blob = "\n".join(all_texts(msg))
    assert "DigiCert" not in blob and "Steps" not in blob
    assert msg["text"].startswith("mailfix: most likely Autodiscover DNS record missing")


def test_results_adaptive_details_are_collapsed_behind_a_toggle_with_a_hide_button() -> None:
    card = render(spec("results", results()), Target.ADAPTIVE)
    body = card["body"]
    assert body[2]["type"] == "Container"
    assert body[2]["items"][0]["text"].startswith("**Most likely:** Autodiscover DNS record")
    (details,) = [b for b in body if b.get("id") == "details"]
    assert details["isVisible"] is False
    assert details["items"][0]["text"] == "Details for the helpdesk"
    toggles = [n for n in _nodes(card) if n.get("type") == "Action.ToggleVisibility"]
    assert [t["title"] for t in toggles] == ["Details for the helpdesk", "Hide the details"]
    assert all(t["targetElements"] == ["details", "details-show"] for t in toggles)
    # the helpdesk part: every finding that ran, worst first, with facts and the trace
    heads = [i["items"][0]["text"] for i in details["items"] if i.get("type") == "Container"]
    assert [h.split()[0] for h in heads][:5] == ["❌", "❌", "❗", "⚠️", "⚠️"]
    facts = [f for n in _nodes(details) if n.get("type") == "FactSet" for f in n["facts"]]
    assert {"title": "TLS issuer", "value": "DigiCert"} in facts
    verbs = [a["verb"] for a in card["actions"]]
    assert verbs == [Action.RUN_AGAIN, Action.FIXED, Action.ESCALATE]
    for a in card["actions"]:
        assert a["data"] == {"diagnosis_id": "d-42"}
        assert a["fallback"]["data"] == {"verb": a["verb"], "diagnosis_id": "d-42"}
    # a normal report fits without leaving anything out
    assert not any("to fit" in t or "shortened" in t for t in all_texts(card))


def test_results_helpdesk_audience_shows_the_details_open() -> None:
    card = render(spec("results", results(audience="helpdesk")), Target.ADAPTIVE)
    (details,) = [b for b in card["body"] if b.get("id") == "details"]
    assert details["isVisible"] is True
    assert not [n for n in _nodes(card) if n.get("type") == "Action.ToggleVisibility"]
    assert "actions" not in card
    msg = render(spec("results", results(audience="helpdesk")), Target.SLACK_MESSAGE)
    validate_slack(msg, "message")
    assert any(t == "Details for the helpdesk" for t in all_texts(msg))
    assert not [b for b in msg["blocks"] if b["type"] == "actions"]


def test_results_buttons_slack_ids_and_states() -> None:
    msg = render(spec("results", results()), Target.SLACK_MESSAGE)
    actions = [b for b in msg["blocks"] if b["type"] == "actions"]
    assert [e["action_id"] for e in actions[0]["elements"]] == [
        Action.RUN_AGAIN,
        Action.FIXED,
        Action.ESCALATE,
        Action.DETAILS,
    ]
    assert {e["value"] for e in actions[0]["elements"]} == {"d-42"}

    escalated = render(spec("results", results(escalated=True)), Target.SLACK_MESSAGE)
    ids = [
        e["action_id"] for b in escalated["blocks"] if b["type"] == "actions" for e in b["elements"]
    ]
    assert Action.ESCALATE.value not in ids and Action.RUN_AGAIN.value in ids
    assert any("Escalation requested" in t for t in all_texts(escalated))

    # no follow-up buttons on a frozen card, but the helpdesk details stay one press away
    frozen = render(spec("results", results(actions_enabled=False)), Target.SLACK_MESSAGE)
    blocks = frozen["blocks"]
    ids = [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert ids == [Action.DETAILS.value]
    card = render(spec("results", results(actions_enabled=False, escalated=True)), Target.ADAPTIVE)
    assert "actions" not in card
    assert any("Escalation requested" in t for t in all_texts(card))


def test_results_evidence_is_labelled_facts_in_words() -> None:
    modal = render(spec("results", results()), Target.SLACK_MODAL)
    validate_slack(modal, "modal")
    assert modal["title"]["text"] == "Helpdesk details"
    blob = "\n".join(all_texts(modal))
    answers = "autodiscover.outlook.com., 10 contoso-com.mail.protection.outlook.com."
    assert f"*DNS answers:* {answers}" in blob
    assert "*TLS version:* TLSv1.3" in blob and "*TLS days left:* 200" in blob
    assert "*DNSSEC:* no" in blob
    assert "*Nested 1:* a: 1" in blob and "*Nested 2:* b: 2, 3" in blob
    assert "Missing" not in blob  # an empty value is left out, not shown as "—" or "None"
    for raw in ("tls.version", "days_left", "None", "{", "[{"):
        assert raw not in blob
    card = render(spec("results", results()), Target.ADAPTIVE)
    facts = [f for n in _nodes(card) if n.get("type") == "FactSet" for f in n["facts"]]
    assert {"title": "TLS issuer", "value": "DigiCert"} in facts


def _mrkdwn_texts(payload: dict[str, Any]) -> list[str]:
    out = [payload["text"]] if isinstance(payload.get("text"), str) else []
    return out + [n["text"] for n in _nodes(payload.get("blocks", [])) if n.get("type") == "mrkdwn"]


def _markdown_texts(card: dict[str, Any]) -> list[str]:
    out = []
    for n in _nodes(card):
        if n.get("type") == "TextBlock":
            out.append(n["text"])
        if n.get("type") == "FactSet":
            out += [t for f in n["facts"] for t in (f["title"], f["value"])]
    return out


def _nodes(node: Any) -> list[dict[str, Any]]:
    out = []
    if isinstance(node, dict):
        out.append(node)
        for v in node.values():
            out += _nodes(v)
    elif isinstance(node, list):
        for v in node:
            out += _nodes(v)
    return out


@pytest.mark.parametrize("target", [Target.ADAPTIVE, Target.SLACK_MESSAGE, Target.SLACK_MODAL])
def test_huge_report_degrades_within_limits_and_says_so(target: Target) -> None:
    data = results(
        report=sample_report(huge=True, hostile=True),
        symptom_label=LONG_LINE,
        next_steps=[TEN_KB] * 20,
    )
    out = render(spec("results", data), target)
    validate(out, target)
    blob = "\n".join(all_texts(out))
    assert "shortened" in blob  # the card tells the reader something was left out
    if target is not Target.SLACK_MESSAGE:
        assert "to fit" in blob or "shortened" in blob
    if target is Target.ADAPTIVE:
        assert serialized_size(out) <= TEAMS_CARD_BYTES
    else:
        assert len(out["blocks"]) <= (50 if target is Target.SLACK_MESSAGE else 100)
        assert all(len(t) <= 3000 for t in _slack_section_texts(out))
    # the top cause and the buttons survive any degradation
    assert "Most likely" in blob
    if target is not Target.SLACK_MODAL:
        assert "Run again" in blob


def test_degradation_collapses_passing_checks_before_shortening_evidence() -> None:
    # Too big for Teams only through passing findings' evidence.
    rep = sample_report()
    extra = {f"k{i}": "y" * 390 for i in range(20)}
    findings = [
        f.model_copy(update={"evidence": {**f.evidence, **extra}}) if f.status is Status.PASS else f
        for f in rep.findings
    ]
    data = results(report=rep.model_copy(update={"findings": findings}))
    card = render(spec("results", data), Target.ADAPTIVE)
    validate_adaptive(card)
    blob = "\n".join(all_texts(card))
    assert "Passed checks show their summary only." in blob
    assert "Ask your DNS admin" in blob  # failing findings keep their next steps
    facts = [f for n in _nodes(card) if n.get("type") == "FactSet" for f in n["facts"]]
    assert {"title": "TLS issuer", "value": "DigiCert"} in facts  # failing ones keep facts


# --- intake -----------------------------------------------------------------------------------


def test_intake_slack_modal_shape() -> None:
    view = render(
        spec("intake", intake(title="A very long title for a modal window")), Target.SLACK_MODAL
    )
    assert view["callback_id"] == "mailfix.intake"
    assert json.loads(view["private_metadata"]) == {"conversation": "C1", "diagnosis_id": None}
    assert len(view["title"]["text"]) <= 24 and view["title"]["text"].endswith("…")
    inputs = [b for b in view["blocks"] if b["type"] == "input"]
    assert [b["block_id"] for b in inputs] == [
        "address",
        "app",
        "symptom",
        "error_text",
        "since_when",
    ]
    for b in inputs:
        assert b["element"]["action_id"] == b["block_id"]
    addr, app, symptom, err, _ = inputs
    assert addr["optional"] is False and addr["element"]["type"] == "plain_text_input"
    assert addr["element"]["initial_value"] == "ana@contoso.com"
    assert addr["hint"]["text"] == "The address that does not work."
    assert app["element"]["type"] == "static_select"
    assert app["element"]["initial_option"] == app["element"]["options"][0]
    assert "initial_option" not in symptom["element"] and symptom["optional"] is True
    assert err["element"]["multiline"] is True


def test_intake_adaptive_shape() -> None:
    card = render(spec("intake", intake()), Target.ADAPTIVE)
    inputs = {n["id"]: n for n in card["body"] if n["type"].startswith("Input.")}
    addr = inputs["address"]
    assert addr["type"] == "Input.Text" and addr["style"] == "email" and addr["isRequired"]
    assert re.fullmatch(addr["regex"], "ana@contoso.com")
    assert not re.fullmatch(addr["regex"], "not an address")
    assert addr["errorMessage"] and addr["placeholder"] == "ana@contoso.com"
    assert inputs["app"]["type"] == "Input.ChoiceSet" and inputs["app"]["style"] == "compact"
    assert inputs["app"]["value"] == "outlook"
    assert inputs["error_text"]["isMultiline"] is True
    (submit,) = card["actions"]
    assert submit["type"] == "Action.Execute" and submit["verb"] == "mailfix.intake"
    assert submit["fallback"] == {
        "type": "Action.Submit",
        "title": "Check",
        "data": {"verb": "mailfix.intake"},
    }


def test_intake_field_errors_are_shown() -> None:
    fields = [
        FormField(
            id="address",
            label="Address",
            kind="email",
            required=True,
            value="nope",
            error="That is not an email address.",
        )
    ]
    data = intake(fields=fields, error="Please correct the fields marked below.")
    card = render(spec("intake", data), Target.ADAPTIVE)
    texts = all_texts(card)
    assert "❗ That is not an email address." in texts
    assert "❗ Please correct the fields marked below." in texts
    view = render(spec("intake", data), Target.SLACK_MODAL)
    assert "❗ That is not an email address." in all_texts(view)


# --- progress, escalation, error, notice, home -------------------------------------------------


@pytest.mark.parametrize("target", [Target.ADAPTIVE, Target.SLACK_MESSAGE])
def test_progress_counts_and_lines(target: Target) -> None:
    out = render(spec("progress", progress()), target)
    blob = "\n".join(all_texts(out))
    assert "6 of 11 checks done" in blob
    for icon in ("✅", "❌", "⏭", "❗", "⚠️"):
        assert icon in blob
    assert "Still running: SMTP submission, Autodiscover (Outlook)" in blob


def test_progress_done_never_exceeds_total_and_zero_total_is_fine() -> None:
    out = render(spec("progress", progress(total=3, done=5, finished=[])), Target.SLACK_MESSAGE)
    assert "3 of 3 checks done" in out["text"]
    out = render(
        spec("progress", progress(total=0, done=0, finished=[], running=[])), Target.ADAPTIVE
    )
    validate_adaptive(out)


@pytest.mark.parametrize("target", [Target.ADAPTIVE, Target.SLACK_MESSAGE])
def test_error_card_retry_button(target: Target) -> None:
    out = render(spec("error", error()), target)
    blob = "\n".join(all_texts(out))
    assert "The DNS server did not answer" in blob and "Run the check again" in blob
    assert Action.RUN_AGAIN.value in blob
    quiet = render(spec("error", error(retry=False)), target)
    assert Action.RUN_AGAIN.value not in "\n".join(all_texts(quiet))


def test_error_retry_without_diagnosis_id_still_valid() -> None:
    for target in (Target.ADAPTIVE, Target.SLACK_MESSAGE):
        validate(render(spec("error", error(diagnosis_id=None)), target), target)


def test_escalation_receipt_fields() -> None:
    msg = render(spec("escalation", escalation()), Target.SLACK_MESSAGE)
    blob = "\n".join(all_texts(msg))
    assert "`ana@contoso.com`" in blob and "#it-helpdesk" in blob and "`HD-1234`" in blob
    card = render(spec("escalation", escalation()), Target.ADAPTIVE)
    facts = {
        f["title"]: f["value"]
        for n in _nodes(card)
        if n.get("type") == "FactSet"
        for f in n["facts"]
    }
    assert facts["Most likely"] == "Autodiscover DNS record missing"
    assert facts["Ticket"] == "HD-1234"


def test_home_lists_recent_and_caps_blocks() -> None:
    view = render(spec("home", home()), Target.SLACK_HOME)
    assert view["type"] == "home"
    assert sum("`ana@contoso.com`" in t for t in all_texts(view)) == 5
    empty = render(spec("home", HomeData()), Target.SLACK_HOME)
    assert "_No checks yet._" in all_texts(empty)
    many = render(spec("home", home(recent=home().recent * 30)), Target.SLACK_HOME)
    assert len(many["blocks"]) <= 100


def test_status_modal_wraps_message_blocks() -> None:
    view = render(spec("progress", progress()), Target.SLACK_MODAL)
    assert view["type"] == "modal" and "submit" not in view
    msg = render(spec("progress", progress()), Target.SLACK_MESSAGE)
    assert view["blocks"] == msg["blocks"]


# --- escaping in detail -----------------------------------------------------------------------


def test_slack_escaping_exact() -> None:
    out = render(
        spec("notice", NoticeData(text="<!channel> & <@U1> *b* _i_")), Target.SLACK_MESSAGE
    )
    text = out["blocks"][0]["text"]["text"]
    z = "\u200b"
    assert text == f"&lt;!channel&gt; &amp; &lt;@U1&gt; {z}*{z}b{z}*{z} {z}_{z}i{z}_{z}"
    assert out["blocks"][0]["text"]["verbatim"] is True
    assert out["text"].startswith("&lt;!channel&gt;")  # the notification text too


def test_adaptive_escaping_exact() -> None:
    out = render(
        spec("notice", NoticeData(text="[x](http://e) **b** _i_\n# h\n- l\n12. n\\")),
        Target.ADAPTIVE,
    )
    text = out["body"][0]["text"]
    assert text == "\\[x\\](http://e) \\*\\*b\\*\\* \\_i\\_\n\\# h\n\\- l\n12\\. n\\\\"


def test_address_in_slack_is_a_code_span_even_with_backticks() -> None:
    out = render(spec("progress", progress(address="a`b`c@contoso.com")), Target.SLACK_MESSAGE)
    first = out["blocks"][0]["text"]["text"]
    assert "`aˋbˋc@contoso.com`" in first


def test_intake_initial_values_respect_the_input_max_length() -> None:
    fields = [
        FormField(id="address", label="Address", kind="email", value="a" * 400 + "@contoso.com"),
        FormField(id="error_text", label="Error", kind="multiline", value=TEN_KB),
    ]
    view = render(spec("intake", intake(fields=fields)), Target.SLACK_MODAL)
    validate_slack(view, "modal")
    for b in view["blocks"]:
        if b["type"] == "input":
            el = b["element"]
            assert len(el["initial_value"]) <= el["max_length"]
            assert "shortened" in el["initial_value"]
