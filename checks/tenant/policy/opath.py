"""The simple OPATH filters a Client Access Rule's `UserRecipientFilter` holds.

Supported: `Property -eq 'value'`, `-ne`, `-like` / `-notlike` (with `*`), joined by `-and`,
`-or`, `-not` and parentheses, over the properties New-ClientAccessRule documents (§6.1: City,
Company, CountryOrRegion, CustomAttribute1-15, Department, Office, PostalCode,
StateOrProvince, StreetAddress). Anything else raises `Unsupported`, so the rule's filter is
reported as "could not be evaluated" rather than guessed. Comparisons ignore case, as Exchange's
recipient filters do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from checks.tenant.policy._tri import Tri

PROPERTIES: frozenset[str] = frozenset(
    {
        "City",
        "Company",
        "CountryOrRegion",
        "Department",
        "Office",
        "PostalCode",
        "StateOrProvince",
        "StreetAddress",
        *(f"CustomAttribute{i}" for i in range(1, 16)),
    }
)
_CANON = {p.lower(): p for p in PROPERTIES}

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<lp>\() | (?P<rp>\)) |
        (?P<op>-(?:eq|ne|like|notlike|and|or|not)\b) |
        '(?P<sq>(?:[^']|'')*)' | "(?P<dq>(?:[^"]|"")*)" |
        (?P<null>\$null\b) |
        (?P<word>[A-Za-z][A-Za-z0-9]*)
    )""",
    re.VERBOSE | re.IGNORECASE,
)


class Unsupported(ValueError):
    """A filter this evaluator does not understand."""


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos, end = 0, len(text.rstrip())
    while pos < end:
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise Unsupported(f"cannot read the filter at “{text[pos : pos + 20]}”")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind == "sq":
            out.append(_Tok("str", m.group("sq").replace("''", "'")))
        elif kind == "dq":
            out.append(_Tok("str", m.group("dq").replace('""', '"')))
        elif kind == "op":
            out.append(_Tok("op", m.group("op").lower()))
        else:
            out.append(_Tok(kind, m.group(kind)))
    return out


def _like(value: str, pattern: str) -> bool:
    rx = "".join(".*" if c == "*" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, value, re.IGNORECASE | re.DOTALL) is not None


class _Parser:
    def __init__(self, text: str, attributes: Mapping[str, str | None]) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.attrs = {k.lower(): v for k, v in attributes.items()}
        self.used: list[str] = []

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise Unsupported("the filter ends too early")
        self.i += 1
        return tok

    def parse(self) -> Tri:
        value = self.or_()
        extra = self.peek()
        if extra is not None:
            raise Unsupported(f"unexpected “{extra.text}”")
        return value

    def or_(self) -> Tri:
        value = self.and_()
        while (t := self.peek()) is not None and t.kind == "op" and t.text == "-or":
            self.take()
            value = value | self.and_()
        return value

    def and_(self) -> Tri:
        value = self.not_()
        while (t := self.peek()) is not None and t.kind == "op" and t.text == "-and":
            self.take()
            value = value & self.not_()
        return value

    def not_(self) -> Tri:
        t = self.peek()
        if t is not None and t.kind == "op" and t.text == "-not":
            self.take()
            return ~self.not_()
        return self.atom()

    def atom(self) -> Tri:
        t = self.take()
        if t.kind == "lp":
            value = self.or_()
            if self.take().kind != "rp":
                raise Unsupported("a parenthesis is not closed")
            return value
        if t.kind != "word":
            raise Unsupported(f"expected a property name, found “{t.text}”")
        prop = _CANON.get(t.text.lower())
        if prop is None:
            raise Unsupported(f"{t.text} is not a property Client Access Rules filter on")
        op = self.take()
        if op.kind != "op" or op.text not in ("-eq", "-ne", "-like", "-notlike"):
            raise Unsupported(f"unsupported comparison “{op.text}”")
        rhs = self.take()
        if rhs.kind not in ("str", "null", "word"):
            raise Unsupported(f"expected a value after {op.text}")
        self.used.append(prop)
        if prop.lower() not in self.attrs:
            return Tri.UNKNOWN
        actual = self.attrs[prop.lower()] or ""
        wanted = "" if rhs.kind == "null" else rhs.text
        if op.text in ("-eq", "-ne"):
            same = actual.casefold() == wanted.casefold()
            return Tri.of(same if op.text == "-eq" else not same)
        hit = _like(actual, wanted)
        return Tri.of(hit if op.text == "-like" else not hit)


def evaluate(text: str, attributes: Mapping[str, str | None]) -> Tri:
    """Does the recipient with `attributes` match `text`? UNKNOWN when a property is not known.

    `attributes` maps OPATH property names (any case) to the recipient's values (None = empty);
    a property missing from the mapping was not read. Raises `Unsupported` for other filters.
    """
    text = text.strip()
    if text.startswith("{") and text.endswith("}"):  # PowerShell script-block form
        text = text[1:-1]
    if not text.strip():
        raise Unsupported("the filter is empty")
    return _Parser(text, attributes).parse()


def properties_used(text: str) -> list[str]:
    """The OPATH properties `text` reads (to know what to fetch); [] when it cannot be parsed."""
    try:
        toks = _tokens(text.strip().strip("{}"))
    except Unsupported:
        return []
    return sorted(
        {_CANON[t.text.lower()] for t in toks if t.kind == "word" and t.text.lower() in _CANON}
    )
