"""cards.text: truncation never splits a character or an escape; escapers defuse markup."""

from __future__ import annotations

import html
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from cards.text import (
    escape_ac_markdown,
    escape_mrkdwn,
    evidence_pairs,
    fit,
    safe_cut,
    scrub,
    slack_code,
    truncate,
)

ZWSP = "\u200b"


def test_truncate_appends_a_visible_note_with_the_count() -> None:
    assert truncate("abcdef", 10) == "abcdef"
    assert truncate("abcdef", 4) == "abcd… (shortened, 2 more characters)"
    # a cut ends a word, never splits one
    assert truncate("does not connect to the server", 12) == (
        "does not… (shortened, 22 more characters)"
    )
    assert truncate("does not connect to the server", 17).startswith("does not connect…")


def test_truncate_keeps_combining_marks_emoji_sequences_and_flags_whole() -> None:
    e_acute = "e\u0301"  # e + combining acute
    assert truncate("ab" + e_acute + "cd", 3).startswith("ab…")
    family = "👩\u200d👩\u200d👧"  # ZWJ sequence
    cut = truncate("x" + family + "y", 3)
    assert cut.startswith("x…")
    skin = "👋🏽"
    assert truncate("x" + skin, 2).startswith("x…")
    flags = "🇩🇪🇫🇷"  # two flags = four regional indicators
    assert truncate(flags, 3).startswith("🇩🇪…")
    assert truncate(flags, 1).startswith("…")
    vs = "❤\ufe0f"
    assert truncate("a" + vs, 2).startswith("a…")


def test_scrub_drops_controls_bidi_overrides_and_lone_surrogates() -> None:
    assert scrub("a\x00b\x07c\x1bd\x7fe\u202ef\u2066g\ud800h\tI\nJ") == "abcdefgh\tI\nJ"


def test_slack_escaper_defuses_mentions_links_and_formatting() -> None:
    out = escape_mrkdwn("<!channel> <@U1> <http://x|y> & *b* _i_ ~s~ `c`")
    assert "<" not in out and ">" not in out
    assert "&amp;" in out and "&lt;!channel&gt;" in out
    for ch in "*_~`":
        assert f"{ZWSP}{ch}{ZWSP}" in out
    # Slack's decoder would get the original back (minus the zero-width spaces)
    assert html.unescape(out.replace(ZWSP, "")) == "<!channel> <@U1> <http://x|y> & *b* _i_ ~s~ `c`"


def test_slack_code_span_cannot_be_closed_early() -> None:
    assert slack_code("a`b") == "`aˋb`"
    assert slack_code("") == "`(empty)`"
    assert slack_code("<@U1>") == "`&lt;@U1&gt;`"


def test_adaptive_escaper_makes_markdown_literal() -> None:
    assert escape_ac_markdown("[x](http://e)") == "\\[x\\](http://e)"
    assert escape_ac_markdown("**b** __u__") == "\\*\\*b\\*\\* \\_\\_u\\_\\_"
    assert escape_ac_markdown("# h\n - l\n+ p\n3. n\n4) m\n> q") == (
        "\\# h\n - l\n\\+ p\n3\\. n\n4\\) m\n\\> q".replace(" - l", " \\- l")
    )
    assert escape_ac_markdown("a - b 3. c") == "a - b 3. c"  # mid-line: left alone
    assert escape_ac_markdown("back\\slash") == "back\\\\slash"


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=400), st.integers(min_value=48, max_value=500))
def test_fit_respects_limit_and_cuts_raw_text_before_escaping(text: str, limit: int) -> None:
    clean = scrub(text)
    for escape in (escape_mrkdwn, escape_ac_markdown):
        out = fit(text, limit, escape)
        assert len(out) <= limit
        if out == escape(clean):
            continue
        # cut: the escaped form of a raw prefix, then the note; every escape complete
        m = re.search(r"… \(shortened, (\d+) more characters\)$", out)
        assert m, out
        kept = len(clean) - int(m.group(1))
        assert 0 <= kept < len(clean)
        assert out == escape(clean[:kept] + "…" + out[m.start() + 1 :])
        assert safe_cut(clean, kept) == kept


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60), st.integers(min_value=1, max_value=30))
def test_fit_short_limits_end_with_an_ellipsis(text: str, limit: int) -> None:
    out = fit(text, limit)
    assert len(out) <= limit
    assert out == scrub(text) or out.endswith("…")


def test_fit_never_splits_an_escape_on_ampersand_heavy_text() -> None:
    out = fit("&" * 10_000, 3000, escape_mrkdwn)
    assert len(out) <= 3000
    body = out.split("…")[0]
    assert body == "&amp;" * (len(body) // 5)


def test_evidence_pairs_flatten_and_cap() -> None:
    ev = {
        "mx": ["a.", "b."],
        "tls": {"version": "TLSv1.3", "sans": ["x", "y"]},
        "ok": True,
        "none": None,
        "rows": [{"a": 1}],
        "empty": [],
    }
    assert evidence_pairs(ev, max_items=20) == [
        ("mx", "a., b."),
        ("tls.version", "TLSv1.3"),
        ("tls.sans", "x, y"),
        ("ok", "yes"),
        ("none", "—"),
        ("rows", '[{"a":1}]'),
        ("empty", "(none)"),
    ]
    capped = evidence_pairs({f"k{i}": i for i in range(10)}, max_items=4)
    assert capped[-1] == ("…", "7 more items not shown") and len(capped) == 4
