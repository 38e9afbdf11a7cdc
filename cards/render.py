"""Render a `CardSpec` to an Adaptive Card 1.5 or a Block Kit payload.

Templates (`templates/<adaptive|slack>/*.json.j2`) write JSON text; `json.loads` parses it, so a
template bug fails loudly. Injection is closed in two layers:

- every `{{ … }}` must end in `| j` (JSON-encode). The environment's `finalize` refuses any other
  output, so a forgotten filter is an error, not a hole;
- text shown as markdown goes through the target's escaper first: `md` (Slack mrkdwn or
  Adaptive Card markdown), `code`/`pre` (Slack code spans), `plain` (plain_text, no markup).
  All of them scrub control characters and truncate the *raw* text to a limit before escaping.

Cards that can outgrow a platform limit (results) are rendered at decreasing detail levels
until `cards.limits` finds no problem; the card then says what it left out.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from pydantic import BaseModel

from checks.models import Status
from dialogs.cases import ANSWER_INPUT, ANSWER_VERB, MAX_ANSWER, QUESTION_INPUT, CaseAction
from dialogs.models import Action, CardSpec

from . import data as d
from .case_data import CaseData
from .limits import SlackKind, adaptive_problems, slack_problems
from .present import operation_words, short_reason
from .text import escape_ac_markdown, escape_mrkdwn, fit, one_line, scrub, slack_code, slack_pre
from .view import (
    DETAIL_LEVELS,
    GROUP_LABELS,
    ICONS,
    STATUS_COUNT_WORDS,
    results_view,
)

TEMPLATES = Path(__file__).parent / "templates"


class Target(StrEnum):
    ADAPTIVE = "adaptive"
    SLACK_MESSAGE = "slack_message"
    SLACK_MODAL = "slack_modal"
    SLACK_HOME = "slack_home"


class CardError(ValueError):
    """The spec cannot be rendered for this target, or the result breaks a platform limit."""


class _Json(str):
    """Text that is already a JSON value; the only thing a template may output."""

    __slots__ = ()


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _j(value: Any) -> _Json:
    """JSON-encode a value (strings scrubbed of control characters and lone surrogates)."""
    if isinstance(value, jinja2.Undefined):
        raise jinja2.UndefinedError(f"undefined value in template: {value._undefined_name!r}")
    return _Json(json.dumps(_clean(value), ensure_ascii=False))


def _finalize(value: Any) -> Any:
    if isinstance(value, _Json):
        return value
    raise jinja2.TemplateRuntimeError(
        f"template output must go through `| j` (got {type(value).__name__}: {value!r:.60})"
    )


class _Comma:
    """`{% set sep = comma() %}` then `{{ sep() }}` before each list item: "" then ",".

    jinja's own `joiner` returns plain text, which `finalize` would (rightly) refuse.
    """

    def __init__(self) -> None:
        self.used = False

    def __call__(self) -> _Json:
        if self.used:
            return _Json(",")
        self.used = True
        return _Json("")


def _limited(escaper: Callable[[str], str]) -> Callable[..., str]:
    def flt(value: Any, limit: int = 3000) -> str:
        return fit("" if value is None else str(value), limit, escaper)

    return flt


def _plain(value: Any, limit: int = 3000) -> str:
    return fit("" if value is None else str(value), limit)


def _join_fit(lines: list[str], limit: int, sep: str = "\n") -> str:
    """Join already-escaped lines, as many as fit in `limit`, then say how many were left."""
    out: list[str] = []
    used = 0
    for i, line in enumerate(lines):
        reserve = 40 if i < len(lines) - 1 else 0
        if used + len(line) + len(sep) + reserve > limit:
            out.append(f"… and {len(lines) - i} more")
            break
        out.append(line)
        used += len(line) + len(sep)
    return sep.join(out)


def _chunks(lines: list[str], limit: int, sep: str = "\n") -> list[str]:
    """Already-escaped lines grouped into texts of at most `limit` characters (one block
    each), so nothing is dropped for a per-block limit; a single longer line is cut."""
    out: list[str] = []
    current: list[str] = []
    used = 0
    for raw in lines:
        # Callers fit every line far below `limit`; this only guards the block limit.
        line = raw if len(raw) <= limit else raw[: limit - 1] + "…"
        if current and used + len(sep) + len(line) > limit:
            out.append(sep.join(current))
            current, used = [], 0
        used += (len(sep) if current else 0) + len(line)
        current.append(line)
    if current:
        out.append(sep.join(current))
    return out


def _line(value: Any) -> str:
    return one_line("" if value is None else str(value))


def _skipped_lines(finished: list[d.FindingLine]) -> list[str]:
    """Skipped checks on the progress card: one line per reason, never one per check."""
    groups: dict[str, list[str]] = {}
    for f in finished:
        if f.status is Status.SKIP:
            groups.setdefault(" ".join(f.summary.split()), []).append(f.title)
    lines = []
    for reason, titles in groups.items():
        if reason.lower().startswith(("does not apply", "not needed for")):
            lines.append(f"Not needed for this app: {', '.join(titles)}.")
        else:
            lines.append(f"Not checked: {', '.join(titles)} — {short_reason(reason)}.")
    return lines


def _env(target_family: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES / target_family),
        autoescape=False,  # noqa: S701 -- JSON, not HTML: `| j` and `md` do the escaping
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        extensions=["jinja2.ext.do"],
    )
    md = escape_ac_markdown if target_family == "adaptive" else escape_mrkdwn
    env.filters.update(
        j=_j,
        md=_limited(md),
        plain=_plain,
        line=_line,
        join_fit=_join_fit,
        chunks=_chunks,
        code=_limited(slack_code) if target_family == "slack" else _limited(md),
        pre=_limited(slack_pre) if target_family == "slack" else _limited(md),
    )
    env.globals.update(
        comma=_Comma,
        skipped_lines=_skipped_lines,
        icons=ICONS,
        group_labels=GROUP_LABELS,
        count_words=STATUS_COUNT_WORDS,
        ACTION_RUN_AGAIN=Action.RUN_AGAIN.value,
        ACTION_FIXED=Action.FIXED.value,
        ACTION_ESCALATE=Action.ESCALATE.value,
        ACTION_DETAILS=Action.DETAILS.value,
        INTAKE_VERB="mailfix.intake",
        CASE=CaseAction,
        QUESTION_INPUT=QUESTION_INPUT,
        ANSWER_VERB=ANSWER_VERB,
        ANSWER_INPUT=ANSWER_INPUT,
        MAX_ANSWER=MAX_ANSWER,
        operation_words=operation_words,
    )
    return env


@cache
def _environment(family: str) -> jinja2.Environment:
    return _env(family)


def _render_json(family: str, name: str, **ctx: Any) -> dict[str, Any]:
    text = _environment(family).get_template(f"{name}.json.j2").render(**ctx)
    try:
        out = json.loads(text)
    except json.JSONDecodeError as exc:  # a template bug: say where
        raise CardError(f"{family}/{name} produced invalid JSON: {exc}\n{text[:2000]}") from exc
    if not isinstance(out, dict):
        raise CardError(f"{family}/{name} must produce a JSON object")
    return out


# Which templates each target can show.
_SLACK_MESSAGE_TEMPLATES = {
    "progress",
    "results",
    "escalation",
    "error",
    "notice",
    "case",
    "alert",
}
_ADAPTIVE_TEMPLATES = _SLACK_MESSAGE_TEMPLATES | {"intake", "home", "answer"}


_SLACK_KINDS: dict[Target, SlackKind] = {
    Target.SLACK_MESSAGE: "message",
    Target.SLACK_MODAL: "modal",
    Target.SLACK_HOME: "home",
}


def _check(target: Target, out: dict[str, Any]) -> list[str]:
    if target is Target.ADAPTIVE:
        return adaptive_problems(out)
    return slack_problems(out, _SLACK_KINDS[target])


def _render_once(
    spec: CardSpec, target: Target, model: BaseModel, extra: dict[str, Any]
) -> dict[str, Any]:
    name = spec.template
    ctx = {"data": model, **extra}
    if target is Target.ADAPTIVE:
        if name not in _ADAPTIVE_TEMPLATES:
            raise CardError(f"no Adaptive Card for template {name!r}")
        return _render_json("adaptive", name, **ctx)
    if target is Target.SLACK_HOME:
        if name != "home":
            raise CardError(f"the Slack home tab shows only 'home', not {name!r}")
        return _render_json("slack", "home", **ctx)
    if target is Target.SLACK_MODAL:
        if name == "intake":
            return _render_json("slack", "intake_modal", **ctx)
        if name == "results":  # "Details for the helpdesk"
            return _render_json("slack", "results_modal", **ctx)
        if name not in _SLACK_MESSAGE_TEMPLATES:
            raise CardError(f"no Slack modal for template {name!r}")
        # A status view in a modal ("checking…", an error): the message blocks in a modal.
        msg = _render_json("slack", name, **ctx)
        return _render_json("slack", "modal_wrapper", blocks=msg["blocks"])
    if name not in _SLACK_MESSAGE_TEMPLATES:
        raise CardError(f"no Slack message for template {name!r}")
    return _render_json("slack", name, **ctx)


def render(spec: CardSpec, target: Target | str) -> dict[str, Any]:
    """Render `spec` for `target`; the result is ready to send (Adaptive Card or Block Kit).

    Raises `CardError` when the data does not match the template's model, the target cannot
    show the template, or (a bug) the result still breaks a platform limit.
    """
    target = Target(target)
    model_cls = d.TEMPLATE_MODELS.get(spec.template)
    if model_cls is None:
        raise CardError(f"unknown template {spec.template!r}")
    try:
        model = model_cls.model_validate(spec.data)
    except ValueError as exc:
        raise CardError(f"bad data for template {spec.template!r}: {exc}") from exc

    if isinstance(model, d.ResultsData):
        problems: list[str] = []
        for level in DETAIL_LEVELS:
            extra = {"view": results_view(model, level), "detail": level}
            out = _render_once(spec, target, model, extra)
            problems = _check(target, out)
            if not problems:
                return out
        raise CardError(f"results card does not fit {target.value}: {problems}")

    if isinstance(model, CaseData):  # the helpdesk's details shrink like the results card's
        for level in DETAIL_LEVELS:
            view = results_view(model.details, level) if model.details is not None else None
            out = _render_once(spec, target, model, {"view": view, "detail": level})
            problems = _check(target, out)
            if not problems:
                return out
        raise CardError(f"case card does not fit {target.value}: {problems}")

    # Lists (progress lines, recent diagnoses) shrink until the card fits.
    for max_items in (40, 20, 10, 5):
        out = _render_once(spec, target, model, {"max_items": max_items})
        problems = _check(target, out)
        if not problems:
            return out
    raise CardError(f"{spec.template} card does not fit {target.value}: {problems}")
