"""Parse XML from the network without trusting it.

Servers we probe (and anything pretending to be them) send XML; we read it with the standard
library's expat parser after refusing what makes XML dangerous: any DOCTYPE (so no entity
definitions at all: no external entities, no entity-expansion bombs) and oversized input.
Garbage raises `XmlRejected` with a short reason, never anything else.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator

MAX_XML_BYTES = 1024 * 1024


class XmlRejected(ValueError):
    """The bytes are not XML we are willing to read; the message says why, in a few words."""


def parse_xml(body: bytes, *, max_bytes: int = MAX_XML_BYTES) -> ET.Element:
    if len(body) > max_bytes:
        raise XmlRejected(f"larger than {max_bytes} bytes")
    text = _decode(body)
    if not text.strip():
        raise XmlRejected("empty")
    upper = text.upper()
    if "<!DOCTYPE" in upper or "<!ENTITY" in upper:
        raise XmlRejected("contains a DOCTYPE or entity declaration")
    try:
        return ET.fromstring(text)  # noqa: S314 - see the checks above
    except ET.ParseError as exc:
        raise XmlRejected(f"not well-formed XML ({exc})") from exc


def local(tag: str) -> str:
    """`{namespace}Name` -> `Name`."""
    return tag.rpartition("}")[2]


def children(element: ET.Element, name: str) -> Iterator[ET.Element]:
    """Descendants (any depth) whose local name is `name`, in document order."""
    for el in element.iter():
        if local(el.tag) == name:
            yield el


def _decode(body: bytes) -> str:
    # UTF-16 documents must be decoded before the DOCTYPE scan can see anything.
    if body.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = body.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise XmlRejected("bad UTF-16") from exc
    else:
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise XmlRejected("not UTF-8 text") from exc
    # ElementTree refuses a str that still declares an encoding other than what it got.
    if text.startswith("<?xml"):
        end = text.find("?>")
        if end > 0:
            text = text[end + 2 :]
    return text
