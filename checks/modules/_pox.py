"""POX Autodiscover on the wire: the request bodies and a parser for what comes back.

Shapes from reference/exchange-online-diagnostics.md §2.4–§2.6 (MS-OXDSCLI, MS-ASCMD). The wire
uses the `http://schemas.microsoft.com/...` namespaces, whatever some doc pages show. The parser
ignores namespaces (it matches local names) because servers that emulate Autodiscover — and the
web servers that hijack it — are loose about them, and we want to *recognise* those answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

from checks.modules._xml import XmlRejected, parse_xml

_NS = "http://schemas.microsoft.com/exchange/autodiscover"


class Provider(StrEnum):
    """Which Autodiscover provider a request asks (§2.4)."""

    OUTLOOK = "outlook"
    MOBILESYNC = "mobilesync"


def request_body(provider: Provider, address: str) -> bytes:
    """The POX request for `address`; the address is XML-escaped (it is user input)."""
    if provider is Provider.OUTLOOK:
        request_ns = f"{_NS}/outlook/requestschema/2006"
        response_ns = f"{_NS}/outlook/responseschema/2006a"
    else:
        request_ns = f"{_NS}/mobilesync/requestschema/2006"
        response_ns = f"{_NS}/mobilesync/responseschema/2006"
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<Autodiscover xmlns="{request_ns}">'
        "<Request>"
        f"<EMailAddress>{escape(address)}</EMailAddress>"
        f"<AcceptableResponseSchema>{response_ns}</AcceptableResponseSchema>"
        "</Request>"
        "</Autodiscover>"
    ).encode()


# POX ErrorCode values, MS-OXDSCLI §2.2.4.1.1.3.2 (reference §2.5); MS-ASCMD uses 600/601 too.
ERROR_CODES: dict[str, str] = {
    "500": "the email address can't be found",
    "501": "bad address: it is known, but has no configuration",
    "600": "invalid request",
    "601": "the requested provider (response schema) is not available",
    "602": "bad address: it is known, but its configuration has errors",
    "603": "internal server error",
}

# Protocol types of a genuine Exchange Outlook-provider answer (§2.5 `type-pox.md`, plus the
# mapiHttp block EXO returns). Web hosts that "answer" Autodiscover return IMAP/POP3/SMTP.
_EXCHANGE_TYPES = {"EXCH", "EXPR", "EXHTTP", "WEB", "MAPIHTTP", "MOBILESYNC"}
_INTERNET_TYPES = {"IMAP", "POP3", "POP", "SMTP"}


class Kind(StrEnum):
    SETTINGS = "settings"  # Action settings (Outlook) / Settings with a MobileSync server
    REDIRECT_URL = "redirect-url"
    REDIRECT_ADDR = "redirect-addr"
    ERROR = "error"  # a POX <Error>
    INTERNET_MAIL = "internet-mail"  # Autodiscover-shaped, but IMAP/POP/SMTP: not Exchange
    NOT_AUTODISCOVER = "not-autodiscover"  # not XML, or XML that is not an Autodiscover answer


@dataclass(frozen=True)
class PoxAnswer:
    kind: Kind
    redirect: str | None = None  # RedirectUrl or RedirectAddr / MobileSync Redirect
    error_code: str | None = None
    error_message: str | None = None
    protocol_types: tuple[str, ...] = ()
    microsoft_online: bool = False
    urls: dict[str, str] = field(default_factory=dict)  # e.g. {"EwsUrl": ..., "MobileSync": ...}
    note: str = ""

    @property
    def error_meaning(self) -> str:
        return ERROR_CODES.get(self.error_code or "", "an error code the protocol does not define")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(node: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in node if _local(child.tag) == name]


def _first(node: ET.Element, name: str) -> ET.Element | None:
    for child in node.iter():
        if child is not node and _local(child.tag) == name:
            return child
    return None


def _text(node: ET.Element | None) -> str:
    return (node.text or "").strip() if node is not None else ""


def parse(body: bytes) -> PoxAnswer:
    """Classify a 200 response body. Never raises on hostile input: it says what it saw."""
    try:
        root = parse_xml(body)  # refuses DTDs (no entity tricks), bounded size
    except XmlRejected as exc:
        snippet = body[:40].decode("utf-8", errors="replace").strip()
        return PoxAnswer(Kind.NOT_AUTODISCOVER, note=f"not Autodiscover XML: {exc} ({snippet!r})")
    if _local(root.tag) != "Autodiscover":
        return PoxAnswer(
            Kind.NOT_AUTODISCOVER, note=f"XML, but <{_local(root.tag)}> not <Autodiscover>"
        )
    response = _first(root, "Response")
    if response is None:
        return PoxAnswer(Kind.NOT_AUTODISCOVER, note="<Autodiscover> without a <Response>")

    error = _first(response, "Error")
    if error is not None:
        return PoxAnswer(
            Kind.ERROR,
            error_code=_text(_first(error, "ErrorCode")) or None,
            error_message=_text(_first(error, "Message")) or None,
        )

    types = _protocol_types(response)
    if types and not (set(types) & _EXCHANGE_TYPES) and set(types) & _INTERNET_TYPES:
        return PoxAnswer(Kind.INTERNET_MAIL, protocol_types=types)

    account = _first(response, "Account")
    if account is not None:  # Outlook provider (§2.5)
        action = _text(_first(account, "Action")).lower()
        online = _text(_first(account, "MicrosoftOnline")).lower() == "true"
        if action == "redirecturl":
            return PoxAnswer(Kind.REDIRECT_URL, redirect=_text(_first(account, "RedirectUrl")))
        if action == "redirectaddr":
            return PoxAnswer(Kind.REDIRECT_ADDR, redirect=_text(_first(account, "RedirectAddr")))
        if action == "settings":
            urls = {
                _local(n.tag): _text(n)
                for n in account.iter()
                if _local(n.tag) in {"EwsUrl", "ASUrl", "OWAUrl", "Server"} and _text(n)
            }
            return PoxAnswer(
                Kind.SETTINGS, protocol_types=types, microsoft_online=online, urls=urls
            )
        return PoxAnswer(Kind.NOT_AUTODISCOVER, note=f"unknown Action {action!r}")

    action_node = _first(response, "Action")
    if action_node is not None:  # MobileSync provider (§2.6)
        redirect = _children(action_node, "Redirect")
        if redirect:
            return PoxAnswer(Kind.REDIRECT_ADDR, redirect=_text(redirect[0]))
        settings = _children(action_node, "Settings")
        if settings:
            urls = {}
            for server in _children(settings[0], "Server"):
                kind, url = _text(_first(server, "Type")), _text(_first(server, "Url"))
                if kind and url:
                    urls[kind] = url
            if "MobileSync" in urls:
                return PoxAnswer(Kind.SETTINGS, protocol_types=types, urls=urls)
            return PoxAnswer(Kind.NOT_AUTODISCOVER, note="Settings without a MobileSync server")
    return PoxAnswer(Kind.NOT_AUTODISCOVER, note="an Autodiscover answer without an Action")


def _protocol_types(response: ET.Element) -> tuple[str, ...]:
    types: list[str] = []
    for node in response.iter():
        name = _local(node.tag)
        if name == "Protocol":
            attr = node.get("Type")
            if attr:
                types.append(attr.strip().upper())
            for child in _children(node, "Type"):
                if _text(child):
                    types.append(_text(child).upper())
        elif name == "Server":  # MobileSync <Server><Type>MobileSync</Type>
            for child in _children(node, "Type"):
                if _text(child):
                    types.append(_text(child).upper())
    return tuple(dict.fromkeys(types))
