"""The intake form: what we ask before a diagnosis, and how the answers are checked.

`intake_form` builds the form (a Slack modal or a Teams card, same data); `check_answers`
turns the submitted values into `IntakeAnswers` or a `{field id: message}` dict. Field ids are
the wire ids of UI.md. Nothing here does I/O: both run inside the platforms' 3-second ack.

Which app maps to which `Client` (the check families the runner picks):

| intake `app` (`checks.advice.App`) | Client  | why                                      |
|------------------------------------|---------|------------------------------------------|
| outlook-windows (classic)          | outlook | Autodiscover (POX) + MAPI/HTTP on 443    |
| outlook-mac                        | outlook | Autodiscover + EWS on 443: same checks   |
| new-outlook (new Outlook, Windows) | web     | syncs through Microsoft's cloud like OWA |
| outlook-web (in a browser)         | web     | HTTPS only, no Autodiscover              |
| outlook-mobile (iOS / Android)     | mobile  | Autodiscover v2 decides the account      |
| phone-mail (built-in app)          | mobile  | Exchange ActiveSync (KB 2427193 path)    |
| imap-app                           | imap    | see below                                |

The brief's single "new Outlook / Outlook on the web" choice is split in two because the
advice differs (the new Outlook has no Connection Status; a browser has cookies to clear).

An "IMAP, POP or SMTP" app is mapped to `imap`: nearly every such app reads with IMAP and sends
with SMTP AUTH on 587, so the ports family must run `net.smtp` for `imap` as well (DESIGN.md:
"skip for clients that do not use them"). A POP-only app gets its receive path checked through
the shared pieces (DNS, Autodiscover, TLS to the Exchange host) but not `net.pop` itself; the
CLI's `--client pop` covers that case for the helpdesk.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from cards.data import Choice, FormField, IntakeData
from checks.address import InvalidAddress, parse_address
from checks.advice import App
from checks.models import Client
from checks.symptoms import SYMPTOM_TITLES, Symptom
from dialogs.models import CardSpec, Turn

# Field ids on the wire (UI.md "ids on the wire").
ADDRESS = "address"
APP = "app"
SYMPTOM = "symptom"
ERROR_TEXT = "error_text"
SINCE = "since"
SINCE_WHEN = "since_when"
WHERE = "where"
FIELDS = (ADDRESS, APP, SYMPTOM, ERROR_TEXT, SINCE, SINCE_WHEN, WHERE)

MAX_ERROR_TEXT = 2000
MAX_SINCE_WHEN = 200
MAX_ADDRESS_INPUT = 320  # longer than any valid address; refused before parsing

FORM_TITLE = "Mail connection check"  # Slack modal titles hold 24 characters
SUBMIT_LABEL = "Run checks"


# The choices, in the order people look for them; values are `checks.advice.App`, so the
# advice for "their app" is exact.
APP_LABELS: dict[App, str] = {
    App.OUTLOOK_WINDOWS: "Outlook for Windows (classic)",
    App.NEW_OUTLOOK: "New Outlook for Windows",
    App.OUTLOOK_MAC: "Outlook for Mac",
    App.OUTLOOK_WEB: "Outlook on the web (in a browser)",
    App.OUTLOOK_MOBILE: "Outlook for iOS or Android",
    App.PHONE_MAIL: "The phone's built-in mail app (ActiveSync)",
    App.IMAP_APP: "Another mail app (IMAP, POP or SMTP)",
}

APP_CLIENTS: dict[App, Client] = {
    App.OUTLOOK_WINDOWS: Client.OUTLOOK,
    App.NEW_OUTLOOK: Client.WEB,
    App.OUTLOOK_MAC: Client.OUTLOOK,
    App.OUTLOOK_WEB: Client.WEB,
    App.OUTLOOK_MOBILE: Client.MOBILE,
    App.PHONE_MAIL: Client.MOBILE,
    App.IMAP_APP: Client.IMAP,
}

# The form's choices: the symptom titles, with a nudge to paste the message for "other".
SYMPTOM_LABELS: dict[Symptom, str] = {
    **SYMPTOM_TITLES,
    Symptom.OTHER: "Something else (paste the error below)",
}

Since = Literal["never", "before"]
SINCE_LABELS: dict[str, str] = {"never": "It never worked", "before": "It worked before"}

Where = Literal["office", "home", "vpn", "mobile_data"]
WHERE_LABELS: dict[str, str] = {
    "office": "At the office",
    "home": "At home",
    "vpn": "On VPN",
    "mobile_data": "On mobile data",
}

# Bidirectional overrides and isolates reorder what a reader sees (the "Trojan Source" trick);
# nothing a person legitimately types into these fields needs them.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_MULTILINE_OK = frozenset("\n\r\t")
# Slack turns a typed address into "<mailto:ana@contoso.com|ana@contoso.com>" in command text.
_SLACK_MAILTO = re.compile(r"<mailto:([^|>]+)(?:\|[^>]*)?>")


class IntakeAnswers(BaseModel):
    """Validated answers: the diagnose request plus the context the cards show."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str  # wire form (IDNA domain): what the checks get
    address_display: str  # Unicode form, for people
    app: App
    client: Client
    symptom: Symptom
    error_text: str | None = None
    since: Since | None = None
    since_when: str | None = None
    where: Where | None = None

    @property
    def app_label(self) -> str:
        return APP_LABELS[self.app]

    @property
    def symptom_label(self) -> str:
        return symptom_label(self.symptom)

    @property
    def symptom_text(self) -> str:
        """What the runner's `symptom=` gets (it classifies it with `classify_symptom`).

        A chosen symptom is passed as its value; "something else" passes the pasted error
        text so the classifier can still recognise a known message inside it.
        """
        if self.symptom is Symptom.OTHER and self.error_text:
            return self.error_text
        return self.symptom.value

    def context_line(self) -> str:
        """One line for the helpdesk: app, symptom, since when, where."""
        parts = [self.app_label, self.symptom_label]
        if self.since == "never":
            parts.append("never worked")
        elif self.since == "before":
            when = f" ({self.since_when})" if self.since_when else ""
            parts.append(f"worked before{when}")
        elif self.since_when:
            parts.append(f"since {self.since_when}")
        if self.where:
            parts.append(WHERE_LABELS[self.where].lower())
        return " · ".join(parts)

    def values(self) -> dict[str, str]:
        """The answers as form values (what the store keeps, and what `check_answers` reads)."""
        raw: dict[str, str | None] = {
            ADDRESS: self.address_display,
            APP: self.app.value,
            SYMPTOM: self.symptom.value,
            ERROR_TEXT: self.error_text,
            SINCE: self.since,
            SINCE_WHEN: self.since_when,
            WHERE: self.where,
        }
        return {k: v for k, v in raw.items() if v is not None}


def symptom_label(symptom: Symptom) -> str:
    """The symptom as the results card repeats it ("what you said was wrong")."""
    return SYMPTOM_TITLES[symptom].strip("“”")


def address_from_text(text: str) -> str | None:
    """The first thing that looks like an address in command text ("/mailfix ana@contoso.com")."""
    text = _SLACK_MAILTO.sub(r"\1", text)
    for word in text.split():
        token = word.strip("<>()[],;\"'")
        if token.lower().startswith("mailto:"):
            token = token[7:]
        if "@" in token:
            return token[:MAX_ADDRESS_INPUT]
    return None


def prefill_address(turn: Turn) -> str | None:
    """Command text wins (staff diagnosing someone else), then the chat profile's email."""
    return address_from_text(turn.text) or turn.person.email


def intake_form(
    turn: Turn,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
) -> CardSpec:
    """The intake form, prefilled from `values` (a redisplay) or from the turn (a new start)."""
    shown = {k: v for k, v in (values or {}).items() if k in FIELDS and isinstance(v, str)}
    if ADDRESS not in shown:
        prefill = prefill_address(turn)
        if prefill:
            shown[ADDRESS] = prefill
    errors = errors or {}

    def field(id: str, label: str, **kw: Any) -> FormField:
        value = shown.get(id) or None
        return FormField(id=id, label=label, value=value, error=errors.get(id), **kw)

    fields = [
        field(
            ADDRESS,
            "Mail address to check",
            kind="email",
            required=True,
            placeholder="name@contoso.com",
            hint="Yours, or the person you are helping.",
        ),
        field(APP, "Which mail app?", kind="choice", required=True, choices=_choices(APP_LABELS)),
        field(
            SYMPTOM,
            "What happens?",
            kind="choice",
            required=True,
            choices=_choices(SYMPTOM_LABELS),
        ),
        field(
            ERROR_TEXT,
            "Error message (optional)",
            kind="multiline",
            placeholder="Paste the message you see. Never paste a password.",
        ),
        field(SINCE, "Did it work before?", kind="choice", choices=_choices(SINCE_LABELS)),
        field(
            SINCE_WHEN,
            "Roughly when did it stop? (optional)",
            placeholder="e.g. since Monday, after the password change",
        ),
        field(WHERE, "Where are you?", kind="choice", choices=_choices(WHERE_LABELS)),
    ]
    form_error = "; ".join(msg for key, msg in errors.items() if key not in FIELDS) or None
    if form_error is None and errors:
        form_error = "Please correct the fields marked below."
    data = IntakeData(
        title=FORM_TITLE,
        intro=(
            "I'll check the mail servers, DNS and network path for this address. "
            "I never ask for a password."
        ),
        fields=fields,
        submit_label=SUBMIT_LABEL,
        error=form_error,
        private_metadata=json.dumps({"conversation": turn.conversation, "diagnosis_id": None}),
    )
    return CardSpec(template="intake", data=data.model_dump(mode="json"))


def _choices(labels: dict[Any, str]) -> list[Choice]:
    return [Choice(value=str(value), title=title) for value, title in labels.items()]


def check_answers(values: dict[str, Any]) -> IntakeAnswers | dict[str, str]:
    """Validate submitted values. Returns the answers, or per-field messages for the person.

    Messages never repeat what was typed in the error-text field (people paste tokens and
    passwords there by mistake); the address message may quote the address, which the form
    shows next to it anyway.
    """
    errors: dict[str, str] = {}
    text: dict[str, str | None] = {}
    for key in FIELDS:
        # The address's own parser names a text-direction character it refuses (checks.address).
        value, problem = _text_value(
            values.get(key), multiline=key == ERROR_TEXT, bidi_ok=key == ADDRESS
        )
        if problem:
            errors[key] = problem
        text[key] = value

    address = display = ""
    raw_address = text[ADDRESS]
    if ADDRESS not in errors:
        if not raw_address:
            errors[ADDRESS] = "Enter the mail address to check, like name@contoso.com."
        elif len(raw_address) > MAX_ADDRESS_INPUT:
            errors[ADDRESS] = "That is too long for a mail address (254 characters at most)."
        else:
            try:
                parsed = parse_address(raw_address)
            except InvalidAddress as exc:
                errors[ADDRESS] = _sentence(str(exc))
            else:
                address, display = parsed.address, parsed.display

    app = _choice(text[APP], App, APP, "Choose the mail app that has the problem.", errors)
    symptom_value = _choice(text[SYMPTOM], Symptom, SYMPTOM, "Choose what happens.", errors)
    symptom = Symptom(symptom_value) if symptom_value else None
    since = _choice(text[SINCE], SINCE_LABELS, SINCE, None, errors)
    where = _choice(text[WHERE], WHERE_LABELS, WHERE, None, errors)

    error_text = text[ERROR_TEXT]
    if ERROR_TEXT not in errors and error_text and len(error_text) > MAX_ERROR_TEXT:
        errors[ERROR_TEXT] = (
            f"Paste at most {MAX_ERROR_TEXT} characters "
            f"(this is {len(error_text)}): the first lines of the message are enough."
        )
    if symptom is Symptom.OTHER and not error_text and ERROR_TEXT not in errors:
        errors[ERROR_TEXT] = "Paste the error message, or describe in a few words what happens."

    since_when = text[SINCE_WHEN]
    if SINCE_WHEN not in errors and since_when and len(since_when) > MAX_SINCE_WHEN:
        errors[SINCE_WHEN] = f"Keep this under {MAX_SINCE_WHEN} characters."

    if errors:
        return errors
    assert app is not None and symptom is not None  # a missing one is in `errors`
    return IntakeAnswers(
        address=address,
        address_display=display,
        app=App(app),
        client=APP_CLIENTS[App(app)],
        symptom=symptom,
        error_text=error_text,
        since=since,  # checked against SINCE_LABELS
        since_when=since_when,
        where=where,  # checked against WHERE_LABELS
    )


def _text_value(
    value: Any, *, multiline: bool, bidi_ok: bool = False
) -> tuple[str | None, str | None]:
    """(stripped text or None, problem or None). Platforms send None for an empty field."""
    if value is None:
        return None, None
    if not isinstance(value, str):
        return None, "This answer could not be read; please choose or type it again."
    for ch in value:
        if (ch in _BIDI_CONTROLS and not bidi_ok) or (
            unicodedata.category(ch) == "Cc" and not (multiline and ch in _MULTILINE_OK)
        ):
            return None, "This contains control characters; please type it again."
    value = value.strip()
    return (value or None), None


def _choice(
    value: str | None,
    allowed: Any,
    key: str,
    missing: str | None,
    errors: dict[str, str],
) -> str | None:
    if key in errors:
        return None
    if value is None:
        if missing:
            errors[key] = missing
        return None
    known = {str(v) for v in allowed}
    if value not in known:
        errors[key] = "Choose one of the options in the list."
        return None
    return value


def _sentence(message: str) -> str:
    message = message[:1].upper() + message[1:]
    return message if message.endswith(".") else message + "."
