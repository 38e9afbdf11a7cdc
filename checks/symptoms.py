"""What the person says is wrong, as one of a few symptoms the diagnosis can weigh.

The intake form offers the enum values as choices; people also type free text ("Outlook keeps
asking for my password"). `classify_symptom` accepts both. The keyword lists follow the wording
people and Microsoft's messages use (reference/playbooks.md §1: "An encrypted connection to your
mail services is not available" is Outlook's message when Autodiscover is broken).
"""

from __future__ import annotations

import re
from enum import StrEnum


class Symptom(StrEnum):
    CANNOT_CONNECT = "cannot_connect"
    ENCRYPTED_CONNECTION_UNAVAILABLE = "encrypted_connection_unavailable"
    PASSWORD_PROMPTS = "password_prompts"  # noqa: S105 - a symptom name, not a secret
    PHONE_STOPPED_SYNCING = "phone_stopped_syncing"
    CANNOT_SEND = "cannot_send"
    OTHER = "other"


SYMPTOM_TITLES: dict[Symptom, str] = {
    Symptom.CANNOT_CONNECT: "Cannot connect / stays disconnected",
    Symptom.ENCRYPTED_CONNECTION_UNAVAILABLE: (
        "“An encrypted connection to your mail services is not available”"
    ),
    Symptom.PASSWORD_PROMPTS: "Keeps asking for my password",
    Symptom.PHONE_STOPPED_SYNCING: "My phone stopped syncing",
    Symptom.CANNOT_SEND: "I can receive but cannot send",
    Symptom.OTHER: "Something else",
}

# Checked in this order: the most specific wording first. Each entry is a regular expression
# matched against lower-cased text with whitespace collapsed.
_KEYWORDS: tuple[tuple[Symptom, tuple[str, ...]], ...] = (
    (
        Symptom.ENCRYPTED_CONNECTION_UNAVAILABLE,
        (
            r"encrypted connection",
            r"mail services (is|are) not available",
            r"autodiscover",
            r"auto ?configuration",
        ),
    ),
    (
        Symptom.PASSWORD_PROMPTS,
        (
            r"password",
            r"passwort",
            r"credential",
            r"sign[- ]?in (prompt|window|box|pop)",
            r"keeps? asking",
            r"asks? (me )?again",
            r"prompt",
            r"log ?in (again|loop)",
            r"authenticat",
            r"mfa",
            # What the tenant causes look like to the person (reference §5.4 AADSTS table):
            # a locked, disabled or blocked account, an expired password, a second sign-in step.
            r"locked out",
            r"account (is |was |has been )?(locked|disabled|blocked)",
            r"sign[- ]?in (fail|error|blocked)",
            r"aadsts\d+",
            r"two[- ]?(factor|step)",
            r"verification code",
        ),
    ),
    (
        Symptom.CANNOT_SEND,
        (
            r"can(no|')?t send",
            r"cannot send",
            r"unable to send",
            r"not send",
            r"won'?t send",
            r"outbox",
            r"smtp",
            r"sending",
            r"outgoing",
            r"bounce",
            r"5\.7\.\d+",
        ),
    ),
    (
        Symptom.PHONE_STOPPED_SYNCING,
        (
            r"sync",
            r"iphone",
            r"ipad",
            r"android",
            r"phone",
            r"mobile",
            r"activesync",
            r"quarantin",
            r"samsung",
            r"pixel",
        ),
    ),
    (
        Symptom.CANNOT_CONNECT,
        (
            r"connect",
            r"offline",
            r"trying to",
            r"can(no|')?t (reach|open|load|get)",
            r"not (load|work|open)",
            r"does ?n'?t work",
            r"not receiving",
            r"no (new )?mail",
            r"time ?out",
            r"timed out",
            r"server",
            r"certificate",
        ),
    ),
)

_COMPILED = tuple(
    (symptom, re.compile("|".join(f"(?:{p})" for p in patterns))) for symptom, patterns in _KEYWORDS
)
_MAX_TEXT = 2000  # free text beyond this adds nothing but work


def classify_symptom(text: str | None) -> Symptom | None:
    """An enum value (exactly, any case), or the first symptom whose keywords the text uses.

    None for no text at all; `Symptom.OTHER` for text that matches nothing.
    """
    if text is None:
        return None
    cleaned = " ".join(text[:_MAX_TEXT].lower().split())
    if not cleaned:
        return None
    as_value = cleaned.replace(" ", "_").replace("-", "_")
    for symptom in Symptom:
        if as_value == symptom.value:
            return symptom
    for symptom, pattern in _COMPILED:
        if pattern.search(cleaned):
            return symptom
    return Symptom.OTHER
