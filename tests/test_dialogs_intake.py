"""The intake form and its validation, without a conversation around it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checks.advice import App
from checks.models import Client
from checks.symptoms import Symptom
from dialogs.intake import (
    APP_CLIENTS,
    APP_LABELS,
    FIELDS,
    IntakeAnswers,
    address_from_text,
    check_answers,
    intake_form,
)
from dialogs.models import Person, Platform, Turn, TurnKind

BASE = {"address": "ana@contoso.com", "app": "outlook-windows", "symptom": "cannot_connect"}


def turn(text: str = "", email: str | None = "ana@contoso.com") -> Turn:
    return Turn(
        platform=Platform.SLACK,
        kind=TurnKind.START,
        person=Person(id="U1", email=email),
        conversation="C42",
        text=text,
    )


def answers(**values: object) -> IntakeAnswers:
    result = check_answers({**BASE, **values})
    assert isinstance(result, IntakeAnswers), result
    return result


def test_form_has_the_wire_ids_and_metadata() -> None:
    spec = intake_form(turn())
    assert spec.template == "intake"
    assert [f["id"] for f in spec.data["fields"]] == list(FIELDS)
    required = {f["id"] for f in spec.data["fields"] if f["required"]}
    assert required == {"address", "app", "symptom"}
    assert json.loads(spec.data["private_metadata"]) == {
        "conversation": "C42",
        "diagnosis_id": None,
    }
    assert len(spec.data["title"]) <= 24 and len(spec.data["submit_label"]) <= 24  # Slack modal
    symptom = next(f for f in spec.data["fields"] if f["id"] == "symptom")
    assert {c["value"] for c in symptom["choices"]} == {s.value for s in Symptom}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ana@contoso.com", "ana@contoso.com"),
        ("  check bo@fabrikam.com please", "bo@fabrikam.com"),
        ("<mailto:bo@fabrikam.com|bo@fabrikam.com>", "bo@fabrikam.com"),
        ("mailto:bo@fabrikam.com", "bo@fabrikam.com"),
        ("(bo@fabrikam.com),", "bo@fabrikam.com"),
        ("help", None),
        ("", None),
    ],
)
def test_address_from_command_text(text: str, expected: str | None) -> None:
    assert address_from_text(text) == expected


def test_redisplay_keeps_values_and_shows_errors() -> None:
    spec = intake_form(
        turn(), values={"address": "x@", "where": "vpn"}, errors={"address": "No domain."}
    )
    fields = {f["id"]: f for f in spec.data["fields"]}
    assert fields["address"]["value"] == "x@" and fields["address"]["error"] == "No domain."
    assert fields["where"]["value"] == "vpn"
    assert spec.data["error"]


@pytest.mark.parametrize(("app", "client"), list(APP_CLIENTS.items()))
def test_app_maps_to_client(app: App, client: Client) -> None:
    assert answers(app=app.value).client is client


def test_app_mapping_choices() -> None:
    assert APP_CLIENTS[App.OUTLOOK_WINDOWS] is APP_CLIENTS[App.OUTLOOK_MAC] is Client.OUTLOOK
    assert APP_CLIENTS[App.OUTLOOK_WEB] is Client.WEB
    assert APP_CLIENTS[App.PHONE_MAIL] is APP_CLIENTS[App.OUTLOOK_MOBILE] is Client.MOBILE
    assert APP_CLIENTS[App.IMAP_APP] is Client.IMAP
    assert APP_CLIENTS[App.NEW_OUTLOOK] is Client.WEB
    assert set(APP_CLIENTS) == set(App) == set(APP_LABELS)  # every app the advice knows


@pytest.mark.parametrize("symptom", list(Symptom))
def test_symptom_values_map_to_the_enum(symptom: Symptom) -> None:
    extra = {"error_text": "0x800CCC0E"} if symptom is Symptom.OTHER else {}
    got = answers(symptom=symptom.value, **extra)
    assert got.symptom is symptom
    assert got.symptom_label


def test_symptom_text_for_the_runner() -> None:
    assert answers(symptom="password_prompts").symptom_text == "password_prompts"
    pasted = "An encrypted connection to your mail services is not available."
    assert answers(symptom="other", error_text=pasted).symptom_text == pasted


def test_other_needs_the_error_text() -> None:
    assert check_answers({**BASE, "symptom": "other"}) == {
        "error_text": "Paste the error message, or describe in a few words what happens."
    }


@pytest.mark.parametrize(
    ("values", "field", "fragment"),
    [
        ({"address": ""}, "address", "enter the mail address"),
        ({"address": None}, "address", "enter the mail address"),
        ({"address": "ana@contoso"}, "address", "at least one dot"),
        ({"address": "a" * 400 + "@contoso.com"}, "address", "too long"),
        ({"address": "ana@10.0.0.1"}, "address", "ip address"),
        ({"address": "ana\u202e@contoso.com"}, "address", "right-to-left override"),
        ({"address": "ana\u200b@contoso.com"}, "address", "zero width space"),
        ({"since_when": "mon\u202eday"}, "since_when", "control characters"),
        ({"app": "thunderbird"}, "app", "one of the options"),
        ({"app": ["outlook-windows"]}, "app", "could not be read"),
        ({"symptom": None}, "symptom", "choose what happens"),
        ({"since": "yesterday"}, "since", "one of the options"),
        ({"where": "moon"}, "where", "one of the options"),
        ({"since_when": "x" * 201}, "since_when", "under 200"),
        ({"since_when": "mon\x00day"}, "since_when", "control characters"),
        ({"error_text": "e" * 2001}, "error_text", "at most 2000"),
        ({"error_text": "bad\x07bell"}, "error_text", "control characters"),
    ],
)
def test_each_field_is_checked(values: dict[str, object], field: str, fragment: str) -> None:
    result = check_answers({**BASE, **values})
    assert isinstance(result, dict)
    assert set(result) == {field}
    assert fragment in result[field].lower()


def test_multiline_error_text_keeps_newlines_and_limits() -> None:
    text = "Line one\r\n\tLine two"
    assert answers(error_text=text).error_text == text
    assert answers(error_text="e" * 2000).error_text == "e" * 2000


def test_answers_round_trip_through_values() -> None:
    full = answers(
        address="Ana@Bücher.example",
        app="imap-app",
        symptom="cannot_send",
        error_text="535 5.7.139",
        since="before",
        since_when="Monday",
        where="vpn",
    )
    assert full.address == "Ana@xn--bcher-kva.example"
    assert full.address_display == "Ana@bücher.example"
    assert check_answers(full.values()) == full
    assert full.context_line() == (
        "Another mail app (IMAP, POP or SMTP) · I can receive but cannot send"
        " · worked before (Monday) · on vpn"
    )


@given(st.dictionaries(st.sampled_from(FIELDS), st.text(max_size=300) | st.none()))
def test_check_answers_never_raises(values: dict[str, str | None]) -> None:
    result = check_answers(values)
    if isinstance(result, dict):
        assert result and set(result) <= set(FIELDS)
        assert all(isinstance(m, str) and m for m in result.values())
    else:
        assert result.address and result.client in set(Client)
