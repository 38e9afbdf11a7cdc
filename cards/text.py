"""Text safety for cards: scrub, truncate on a character boundary, escape per target.

Order is always scrub -> truncate (raw) -> escape -> JSON-encode, so a cut never lands inside
an escape sequence and the truncation note is escaped like everything else. `fit()` picks the
raw cut so that the *escaped* text still fits a platform limit.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Escaper = Callable[[str], str]

# C0 controls except TAB/LF/CR, DEL, C1 controls; explicit bidi embeddings/overrides/isolates
# (they can make "moc.osotnoc@ana" look like another address); lone surrogates.
_SCRUB = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")

_ZWJ = "\u200d"
_ZWSP = "\u200b"

# Below this many characters a truncation note would not fit: just end with "…".
_SHORT_LIMIT = 48


def scrub(text: str) -> str:
    """Drop characters no chat client should receive (controls, bidi overrides, surrogates)."""
    return _SCRUB.sub("", text)


def _joins_previous(text: str, i: int) -> bool:
    """True when cutting before `text[i]` would split a user-perceived character."""
    ch = text[i]
    cp = ord(ch)
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Mc", "Me"):
        return True
    if ch == _ZWJ or text[i - 1] == _ZWJ:
        return True
    if 0xFE00 <= cp <= 0xFE0F or 0xE0100 <= cp <= 0xE01EF:  # variation selectors
        return True
    if 0x1F3FB <= cp <= 0x1F3FF or 0xE0020 <= cp <= 0xE007F:  # skin tones, emoji tag chars
        return True
    if 0xDC00 <= cp <= 0xDFFF:  # low surrogate (only if the caller did not scrub)
        return True
    if 0x1F1E6 <= cp <= 0x1F1FF:  # regional indicators pair up into flags
        run = 0
        j = i - 1
        while j >= 0 and 0x1F1E6 <= ord(text[j]) <= 0x1F1FF:
            run += 1
            j -= 1
        return run % 2 == 1
    return False


def safe_cut(text: str, n: int) -> int:
    """The largest index <= n where `text` may be cut without splitting a character."""
    cut = max(0, min(n, len(text)))
    while 0 < cut < len(text) and _joins_previous(text, cut):
        cut -= 1
    return cut


# Where a cut may fall without splitting a word: after a space, or after a separator inside
# long unbroken values (URLs, lists, paths).
_BREAKS = (" ", "\n", "\t", "/", ",", ";", "&", "?", "=", "-")


def word_cut(text: str, n: int) -> int:
    """The largest index <= n that ends a word (never splits a character). A single word
    longer than about half the room (a URL, a hash) is cut inside it, at a character boundary."""
    cut = safe_cut(text, n)
    if cut >= len(text) or cut == 0:
        return cut
    if text[cut] in (" ", "\n", "\t") or text[cut - 1] in _BREAKS:
        return cut
    floor = cut // 2
    best = max(text.rfind(b, floor, cut) for b in _BREAKS)
    if best < floor or best <= 0:
        return cut
    end = best + 1 if text[best] not in (" ", "\n", "\t") else best
    return safe_cut(text, end)


def truncate(text: str, n: int) -> str:
    """Keep at most `n` raw characters, ending at a word boundary, and say visibly how much
    was dropped."""
    if len(text) <= n:
        return text
    cut = word_cut(text, n)
    head = text[:cut].rstrip()
    rest = len(text) - len(head)
    return f"{head}… (shortened, {rest} more characters)"


def fit(text: str, limit: int, escape: Escaper | None = None) -> str:
    """Scrub, truncate the raw text and escape it so the result is at most `limit` chars."""
    esc: Escaper = escape or (lambda s: s)
    text = scrub(text)
    out = esc(text)
    if len(out) <= limit:
        return out
    if limit < _SHORT_LIMIT:
        # Titles, button labels: no room for a note, a bare ellipsis is still visible.
        cut = min(len(text), limit) + 1
        while cut > 0:
            cut = word_cut(text, cut - 1)
            out = esc(text[:cut].rstrip() + "…")
            if len(out) <= limit:
                return out
        return "…"[:limit]
    lo, hi = 0, len(text)  # find the largest raw budget whose escaped form fits
    best = esc(truncate(text, 0))
    while lo <= hi:
        mid = (lo + hi) // 2
        cand = esc(truncate(text, mid))
        if len(cand) <= limit:
            best, lo = cand, mid + 1
        else:
            hi = mid - 1
    if len(best) > limit:  # the note alone does not fit
        return esc("…")
    return best


# --- escapers --------------------------------------------------------------------------------


def escape_mrkdwn(text: str) -> str:
    """Slack mrkdwn: text shows literally, never pings, links or formats.

    `& < >` are the control characters Slack documents; escaping them defuses `<!channel>`,
    `<@U…>` and `<http://x|label>`. Slack has no backslash escape for `* _ ~ \\``, so a zero-width
    space on both sides keeps them from pairing up as bold/italic/strike/code. Markers inside a
    word (`MAILFIX_CA_BUNDLE`, `2*3`) never format in Slack and stay as typed, so they still
    copy and paste; backticks are always neutralised.
    """
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _SLACK_MARKER.sub(_ZWSP + r"\1" + _ZWSP, text)


def slack_code(text: str) -> str:
    """Slack inline code span: formatting is off inside, only `& < >` and backticks matter."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("`", "ˋ").replace("\n", " ")  # U+02CB looks like a backtick, ends nothing
    return f"`{text}`" if text.strip() else "`(empty)`"


def slack_pre(text: str) -> str:
    """Slack preformatted block (```…```) for multi-line evidence."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("`", "ˋ")
    return f"```{text}```" if text.strip() else "```(empty)```"


# A formatting marker unless it sits between two letters/digits (then Slack leaves it alone).
_SLACK_MARKER = re.compile(r"(`|(?<![^\W_])[*_~]|[*_~](?![^\W_]))")

_AC_ALWAYS = re.compile(r"([\\`*_\[\]<>~|])")
_AC_LINE_START = re.compile(r"^(\s*)([#>+\-=])", re.MULTILINE)
_AC_ORDERED = re.compile(r"^(\s*\d+)([.)])", re.MULTILINE)


def escape_ac_markdown(text: str) -> str:
    """Adaptive Card TextBlock markdown: backslash-escape what could format or link.

    Inline specials are always escaped (so `[x](http://evil)` and `**b**` stay literal);
    block markers (`#`, `-`, `+`, `>`, `1.`) only at the start of a line, where they matter.
    """
    text = _AC_ALWAYS.sub(r"\\\1", text)
    text = _AC_LINE_START.sub(r"\1\\\2", text)
    return _AC_ORDERED.sub(r"\1\\\2", text)


def one_line(text: str) -> str:
    """Collapse whitespace runs (incl. newlines) to single spaces."""
    return " ".join(text.split())


# --- evidence --------------------------------------------------------------------------------


def _scalar(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _compact(value: Any) -> str:
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        if all(not isinstance(v, Mapping | list | tuple) for v in value):
            return ", ".join(_scalar(v) for v in value) if value else "(none)"
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_scalar(v)}" for k, v in value.items()) if value else "(none)"
    return _scalar(value)


def evidence_pairs(evidence: Mapping[str, Any], *, max_items: int) -> list[tuple[str, str]]:
    """Evidence as (key, compact value) pairs: one level of dicts flattens to `a.b`.

    Values are raw (not truncated, not escaped). When there are more than `max_items` pairs
    the last one says how many were left out.
    """
    pairs: list[tuple[str, str]] = []
    for key, value in evidence.items():
        if isinstance(value, Mapping) and value:
            pairs.extend((f"{key}.{k}", _compact(v)) for k, v in value.items())
        else:
            pairs.append((str(key), _compact(value)))
    if len(pairs) > max_items:
        dropped = len(pairs) - (max_items - 1)
        pairs = [*pairs[: max_items - 1], ("…", f"{dropped} more items not shown")]
    return pairs
