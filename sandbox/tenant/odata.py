"""The small part of OData `$filter` Graph requests use here (reference §5 requests).

Forms: `prop eq 'x'`, `prop ne 0`, `prop ge 2026-12-01T00:00:00Z` (eq ne ge gt le lt),
`a/b eq 1` (nested property), `coll/any(x:x eq 'v')`, `startswith(prop,'v')`, joined by `and`.
String comparisons are case-insensitive, as directory properties are in Graph. Anything else
raises `FilterError` (Graph answers 400 for a filter it does not support).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]


class FilterError(ValueError):
    pass


_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<word>[A-Za-z0-9_./:@+\-]+)|(?P<punct>[(),]))"
)
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")
_OPS = {"eq", "ne", "ge", "gt", "le", "lt"}


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise FilterError(f"Invalid filter clause near '{text[pos : pos + 20]}'")
        out.append(match.group(match.lastgroup or "word"))
        pos = match.end()
    return out


def _literal(token: str) -> Any:
    if token.startswith("'"):
        return token[1:-1].replace("''", "'")
    low = token.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "null":
        return None
    if _DATETIME.match(token):
        return dt.datetime.fromisoformat(token.replace("Z", "+00:00"))
    try:
        return int(token)
    except ValueError:
        pass
    raise FilterError(f"Invalid filter literal '{token}'")


def _get(item: Any, path: str) -> Any:
    for part in path.split("/"):
        if not isinstance(item, dict):
            return None
        item = item.get(part)
    return item


def _norm(value: Any) -> Any:
    if isinstance(value, str):
        if _DATETIME.match(value):
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return value.lower()
    return value


def _compare(left: Any, op: str, right: Any) -> bool:
    left, right = _norm(left), _norm(right)
    if op == "eq":
        return bool(left == right)
    if op == "ne":
        return bool(left != right)
    if left is None or right is None:
        return False
    try:
        if op == "ge":
            return bool(left >= right)
        if op == "gt":
            return bool(left > right)
        if op == "le":
            return bool(left <= right)
        return bool(left < right)
    except TypeError:
        return False


def _clause(tokens: list[str]) -> Predicate:
    # startswith(prop,'v')
    if tokens and tokens[0].lower() == "startswith":
        if len(tokens) != 6 or tokens[1] != "(" or tokens[3] != "," or tokens[5] != ")":
            raise FilterError("Invalid startswith clause")
        prop, prefix = tokens[2], _literal(tokens[4])
        if not isinstance(prefix, str):
            raise FilterError("startswith needs a string")
        return lambda item: str(_get(item, prop) or "").lower().startswith(prefix.lower())
    # coll/any(x:x eq 'v')
    if len(tokens) >= 1 and "/any" in tokens[0].lower():
        coll = tokens[0][: tokens[0].lower().index("/any")]
        rest = tokens[1:]
        if len(rest) != 5 or rest[0] != "(" or rest[4] != ")":
            raise FilterError("Invalid any() clause")
        var_expr, op, value = rest[1], rest[2].lower(), _literal(rest[3])
        var, _, inner = var_expr.partition(":")
        if not inner or inner != var or op not in _OPS:
            raise FilterError("Invalid lambda expression in any()")
        return lambda item: any(
            _compare(v, op, value) for v in (_get(item, coll) or []) if v is not None
        )
    if len(tokens) != 3 or tokens[1].lower() not in _OPS:
        raise FilterError(f"Unsupported filter clause '{' '.join(tokens)}'")
    prop, op, value = tokens[0], tokens[1].lower(), _literal(tokens[2])
    return lambda item: _compare(_get(item, prop), op, value)


def parse(text: str | None) -> Predicate:
    """A predicate over wire-shaped dicts for `text` (None/empty: everything)."""
    if not text or not text.strip():
        return lambda item: True
    tokens = _tokens(text)
    clauses: list[list[str]] = [[]]
    depth = 0
    for word in tokens:
        if word == "(":
            depth += 1
        elif word == ")":
            depth -= 1
        if depth == 0 and word.lower() == "and":
            clauses.append([])
            continue
        if depth == 0 and word.lower() == "or":
            raise FilterError("Unsupported Query.")
        clauses[-1].append(word)
    predicates = [_clause(c) for c in clauses]
    return lambda item: all(p(item) for p in predicates)
