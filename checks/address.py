"""Parse and validate the mail address a diagnosis is for.

Bad input is refused with one clear sentence (`InvalidAddress`), never a traceback. Domains
are normalised to their IDNA (A-label) form, which is what DNS and TLS see; the Unicode form is
kept for display. Limits follow RFC 5321 §4.5.3.1: 64 octets local part, 255 domain, 63 label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import idna

MAX_ADDRESS_LENGTH = 254  # RFC 5321 path limit (256) minus the angle brackets
MAX_LOCAL_LENGTH = 64
MAX_LABEL_LENGTH = 63

# Dot-atom local part (RFC 5322 §3.2.3) plus UTF-8 (RFC 6531); quoted local parts are refused:
# no Exchange Online mailbox has one, and they are a favourite of hostile input.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\U0010FFFF-]+"
_LOCAL_RE = re.compile(rf"^{_ATOM}(\.{_ATOM})*$")


# Characters that change how an address *looks* without changing what it is: text-direction
# controls (Unicode bidi embeddings, overrides and isolates, UAX #9) can make "ana@contoso.com"
# display as another address, and invisible characters vanish on screen (IDNA mapping even
# drops some silently). Both are refused, by name, never stripped.
_BIDI_CONTROLS = {
    0x061C: "arabic letter mark",
    0x200E: "left-to-right mark",
    0x200F: "right-to-left mark",
    0x202A: "left-to-right embedding",
    0x202B: "right-to-left embedding",
    0x202C: "pop directional formatting",
    0x202D: "left-to-right override",
    0x202E: "right-to-left override",
    0x2066: "left-to-right isolate",
    0x2067: "right-to-left isolate",
    0x2068: "first strong isolate",
    0x2069: "pop directional isolate",
}
_INVISIBLE = {
    0x00AD: "soft hyphen",
    0x180E: "Mongolian vowel separator",
    0x200B: "zero width space",
    0x200C: "zero width non-joiner",
    0x200D: "zero width joiner",
    0x2060: "word joiner",
    0x2061: "invisible function application",
    0x2062: "invisible times",
    0x2063: "invisible separator",
    0x2064: "invisible plus",
    0xFEFF: "zero width no-break space (byte order mark)",
}


class InvalidAddress(ValueError):
    """The text is not a mail address we can diagnose. The message is for the person."""


@dataclass(frozen=True)
class MailAddress:
    local: str
    domain: str  # IDNA A-label form, lower case: what goes on the wire
    domain_display: str  # Unicode form, for people

    @property
    def address(self) -> str:
        """The address as sent in protocols (A-label domain)."""
        return f"{self.local}@{self.domain}"

    @property
    def display(self) -> str:
        return f"{self.local}@{self.domain_display}"

    def __str__(self) -> str:
        return self.address


def parse_address(text: str) -> MailAddress:
    """Validate `text` as `local@domain`; raise InvalidAddress with a reason a person can act on."""
    if not isinstance(text, str):
        raise InvalidAddress("the address must be text")
    _refuse_hidden(text)
    raw = text.strip()
    if raw.lower().startswith("mailto:"):
        raw = raw[7:]
    if not raw:
        raise InvalidAddress("the address is empty")
    if len(raw) > MAX_ADDRESS_LENGTH * 4:  # refuse absurd input before any further work
        raise InvalidAddress(f"the address is too long (more than {MAX_ADDRESS_LENGTH} characters)")
    if any(ord(c) < 32 or ord(c) == 127 or c.isspace() for c in raw):
        raise InvalidAddress("the address contains spaces or control characters")
    if raw.count("@") != 1:
        raise InvalidAddress(f"{_show(raw)} is not an address of the form name@domain")
    local, domain_text = raw.split("@")
    if not local:
        raise InvalidAddress(f"{_show(raw)} has nothing before the @")
    if not domain_text:
        raise InvalidAddress(f"{_show(raw)} has no domain after the @")
    if len(local.encode("utf-8")) > MAX_LOCAL_LENGTH:
        raise InvalidAddress(f"the part before the @ is longer than {MAX_LOCAL_LENGTH} characters")
    if not _LOCAL_RE.match(local):
        raise InvalidAddress(f"{_show(raw)} has characters that are not allowed before the @")
    domain = _normalise_domain(domain_text, raw)
    address = f"{local}@{domain}"
    if len(address.encode("utf-8")) > MAX_ADDRESS_LENGTH:
        raise InvalidAddress(f"the address is too long (more than {MAX_ADDRESS_LENGTH} characters)")
    try:
        display = idna.decode(domain)
    except idna.IDNAError:
        display = domain
    return MailAddress(local=local, domain=domain, domain_display=display)


def _normalise_domain(domain_text: str, raw: str) -> str:
    domain_text = domain_text.rstrip(".")
    if domain_text.startswith("[") or _looks_like_ip(domain_text):
        raise InvalidAddress(f"{_show(raw)} uses an IP address, not a domain name")
    if "." not in domain_text:
        raise InvalidAddress(f"{_show(raw)}: the domain needs at least one dot (like contoso.com)")
    try:
        domain = idna.encode(domain_text, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidAddress(f"{_show(raw)}: the domain is not a valid name ({exc})") from exc
    labels = domain.split(".")
    for label in labels:
        if not label:
            raise InvalidAddress(f"{_show(raw)}: the domain has an empty part (two dots in a row)")
        if len(label) > MAX_LABEL_LENGTH:
            raise InvalidAddress(f"{_show(raw)}: a part of the domain is longer than 63 characters")
        if not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?", label):
            raise InvalidAddress(f"{_show(raw)}: the domain has characters DNS does not allow")
    if labels[-1].isdigit():
        raise InvalidAddress(f"{_show(raw)}: the domain does not end in a valid top-level domain")
    return domain


def _refuse_hidden(text: str) -> None:
    """Refuse undecodable bytes, text-direction controls and invisible characters, by name."""
    for char in text:
        code = ord(char)
        if 0xD800 <= code <= 0xDFFF:
            # A lone surrogate: bytes that were not valid UTF-8 (Python's surrogateescape, as
            # in a command-line argument like $'ana\x80@contoso.com').
            raise InvalidAddress(
                "the address contains bytes that are not valid text (UTF-8); type it again"
            )
        if code in _BIDI_CONTROLS:
            raise InvalidAddress(
                f"the address contains a hidden text-direction character ({_BIDI_CONTROLS[code]}, "
                f"U+{code:04X}) that can make it look like a different address; type it again "
                "by hand"
            )
        if code in _INVISIBLE:
            raise InvalidAddress(
                f"the address contains an invisible character ({_INVISIBLE[code]}, "
                f"U+{code:04X}); type it again by hand instead of pasting it"
            )


def _looks_like_ip(text: str) -> bool:
    return bool(re.fullmatch(r"[0-9.]+", text)) or ":" in text


def _show(raw: str) -> str:
    """Quote the person's input for an error message, shortened so the line stays readable."""
    return repr(raw if len(raw) <= 80 else raw[:77] + "...")
