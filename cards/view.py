"""Shape the results for two audiences: the person, and the helpdesk.

The person's part is short and always complete: the most likely cause, the steps for their
app, one line per thing that went wrong, one line for what passed, one line for what was not
checked. The helpdesk's part (collapsed under "Details for the helpdesk" on the person's card,
open in the Slack modal) has every finding with its evidence as labelled facts, the numbered
trace and any proposed fix; the renderer tries `DETAIL_LEVELS` in order until the card fits
its platform, and the card then says what it left out.

Templates get raw strings from here (never escaped): `cards.present` turns evidence into words.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from checks.models import Report, Side, Status

from .data import ResultsData
from .present import FindingText, NotChecked, finding_text, not_checked, trace_line

# Order on the results card: what needs attention first.
STATUS_ORDER: tuple[Status, ...] = (
    Status.FAIL,
    Status.ERROR,
    Status.WARN,
    Status.PASS,
    Status.SKIP,
)
ICONS: dict[Status, str] = {
    Status.PASS: "✅",
    Status.WARN: "⚠️",
    Status.FAIL: "❌",
    Status.ERROR: "❗",
    Status.SKIP: "⏭",
}
GROUP_LABELS: dict[Status, str] = {
    Status.FAIL: "Failed",
    Status.ERROR: "Could not check",
    Status.WARN: "Warnings",
    Status.PASS: "Passed",
    Status.SKIP: "Not checked",
}
SIDE_PHRASES: dict[Side, str] = {
    Side.DEVICE: "on your device or in your mail app",
    Side.NETWORK: "in the network between you and Microsoft 365",
    Side.DNS: "in your organisation's DNS records",
    Side.IDENTITY: "in your organisation's sign-in setup",
    Side.ADMIN: "in your Microsoft 365 admin settings",
    Side.SERVICE: "on Microsoft's side",
}
STATUS_COUNT_WORDS: dict[Status, str] = {
    Status.FAIL: "failed",
    Status.ERROR: "could not be checked",
    Status.WARN: "with warnings",
    Status.PASS: "passed",
    Status.SKIP: "not checked",
}


@dataclass(frozen=True)
class Detail:
    """How much of the helpdesk part to show. Lengths are raw characters, before escaping."""

    level: int
    collapse_ok: bool  # passed findings: title and summary only (no facts, no trace)
    compact: bool  # every finding one line
    summary: int
    detail: int  # 0: hide
    evidence_items: int  # 0: hide
    evidence_value: int
    next_steps: int
    next_step_len: int
    trace_steps: int  # 0: hide
    trace_len: int


# Level 0 shortens nothing a real report holds; later levels only where a platform forces it.
DETAIL_LEVELS: tuple[Detail, ...] = (
    Detail(0, False, False, 1500, 1200, 60, 2000, 8, 1000, 80, 1000),
    Detail(1, False, False, 600, 600, 20, 400, 5, 400, 30, 300),
    Detail(2, True, False, 600, 400, 20, 300, 5, 300, 30, 200),
    Detail(3, True, False, 300, 200, 10, 160, 3, 200, 15, 120),
    Detail(4, True, False, 200, 0, 6, 100, 2, 150, 0, 0),
    Detail(5, True, True, 160, 0, 0, 0, 0, 0, 0, 0),
    Detail(6, True, True, 0, 0, 0, 0, 0, 0, 0, 0),  # titles only: always fits
)


def degrade_notes(d: Detail) -> list[str]:
    """What the helpdesk part says about what it left out (nothing at level 0)."""
    notes: list[str] = []
    if d.level >= 1:
        notes.append("Some long values are shortened to fit the card; the full report is kept.")
    if d.collapse_ok and not d.compact:
        notes.append("Passed checks show their summary only.")
    if d.compact:
        notes.append("Each check is summarised in one line.")
    if d.compact and not d.summary:
        notes.append("Only the names of the checks fit on this card.")
    return notes


@dataclass(frozen=True)
class FindingView:
    """One finding for the helpdesk, cut to the detail level (raw strings)."""

    check: str
    title: str
    status: Status
    icon: str
    status_word: str
    summary: str
    detail: str
    evidence: list[tuple[str, str]]  # (label, value) in words
    fix: str  # "Proposed fix" line, "" when none
    next_steps: list[str]
    steps: list[str]  # the trace, one line per step, in words
    trace_id: str
    more_steps: int = 0  # trace steps left out at this level
    brief: bool = False  # title and summary only


@dataclass(frozen=True)
class CauseView:
    title: str
    confidence: int  # percent
    side: str  # "in your organisation's DNS records"


_YOU = ("You: ", "You - ")
_HELPDESK = ("Helpdesk: ", "Helpdesk - ")


def split_steps(steps: list[str]) -> tuple[list[str], list[str]]:
    """The advice's "You: …" lines (and unmarked ones, the app's own steps) for the person,
    "Helpdesk: …" lines for the helpdesk, each without its prefix."""
    person: list[str] = []
    helpdesk: list[str] = []
    for step in steps:
        text = " ".join(step.split())
        if text.startswith(_HELPDESK):
            rest = text.split(" ", 1)[1].strip()
            helpdesk.append(rest[:1].upper() + rest[1:])
        elif text.startswith(_YOU):
            rest = text.split(" ", 1)[1].strip()
            person.append(rest[:1].upper() + rest[1:])
        elif text:
            person.append(text)
    return person, helpdesk


@dataclass(frozen=True)
class ResultsView:
    # the person
    top_title: str | None
    top_side: str | None
    problems: list[FindingView]  # failed, could-not-check, warnings: one line each
    could_not_check: list[str]  # titles of checks that ended in error (the why is for the helpdesk)
    passed: list[str]  # titles
    not_checked: list[NotChecked]  # the ones worth telling the person (they apply to the app)
    counts: list[tuple[Status, int]]  # non-zero counts in display order
    person_steps: list[str]  # what the person can do in their app
    # the helpdesk
    helpdesk_steps: list[str]  # what the helpdesk can do about the top cause
    causes: list[CauseView]
    findings: list[FindingView]  # everything that ran, worst first
    skipped: list[NotChecked]  # every skip reason, one line each
    detail: Detail
    notes: list[str] = field(default_factory=list)

    @property
    def passed_line(self) -> str:
        if not self.passed:
            return ""
        n = len(self.passed)
        return f"{n} check{'s' if n != 1 else ''} passed: {', '.join(self.passed)}."

    @property
    def person_problems(self) -> list[FindingView]:
        """What went wrong, for the person: failures and warnings (errors get one line)."""
        return [v for v in self.problems if v.status is not Status.ERROR]

    @property
    def could_not_check_line(self) -> str:
        if not self.could_not_check:
            return ""
        return (
            f"Could not check: {', '.join(self.could_not_check)} — the helpdesk can see why "
            "in the details."
        )

    @property
    def worst(self) -> Status:
        return self.counts[0][0] if self.counts else Status.PASS


def _view(t: FindingText, d: Detail, index: int, brief: bool) -> FindingView:
    facts = [(f.label, f.value) for f in t.facts] if d.evidence_items and not brief else []
    if len(facts) > d.evidence_items:
        kept = d.evidence_items - 1
        facts = [*facts[:kept], ("Not shown", f"{len(facts) - kept} more facts")]
    steps = [trace_line(s) for s in t.steps] if d.trace_steps and not brief else []
    more = max(0, len(steps) - d.trace_steps)
    fix = t.fix.line() if t.fix is not None and not d.compact else ""
    return FindingView(
        check=t.check,
        title=t.title,
        status=t.status,
        icon=ICONS[t.status],
        status_word=t.status_word,
        summary=t.summary,
        detail=t.detail if d.detail and not brief else "",
        evidence=facts,
        fix=fix,
        next_steps=[] if brief else t.next_steps[: d.next_steps],
        steps=steps[: d.trace_steps],
        trace_id=f"trace-{index}",
        more_steps=more,
        brief=brief,
    )


def results_view(data: ResultsData, d: Detail) -> ResultsView:
    """The person's part and the helpdesk's part of `data.report` at detail level `d`."""
    report: Report = data.report
    texts = {
        f.check: finding_text(f, data.check_titles.get(f.check, f.check)) for f in report.findings
    }
    order = {s: i for i, s in enumerate(STATUS_ORDER)}
    ran = sorted(
        (f for f in report.findings if f.status is not Status.SKIP),
        key=lambda f: order[f.status],
    )
    index = {f.check: i for i, f in enumerate(report.findings)}
    full = [_view(texts[f.check], DETAIL_LEVELS[0], index[f.check], False) for f in ran]
    findings = [
        _view(
            texts[f.check],
            d,
            index[f.check],
            brief=d.compact or (d.collapse_ok and f.status is Status.PASS),
        )
        for f in ran
    ]
    skipped = not_checked(report.findings, data.check_titles)
    counts = [
        (s, n) for s in STATUS_ORDER if (n := sum(1 for f in report.findings if f.status is s))
    ]
    top = report.top_cause
    person_steps, helpdesk_steps = split_steps(data.next_steps)
    return ResultsView(
        person_steps=person_steps,
        helpdesk_steps=helpdesk_steps,
        top_title=top.title if top else None,
        top_side=SIDE_PHRASES[top.side] if top else None,
        problems=[v for v in full if v.status in (Status.FAIL, Status.ERROR, Status.WARN)],
        could_not_check=[v.title for v in full if v.status is Status.ERROR],
        passed=[v.title for v in full if v.status is Status.PASS],
        not_checked=[n for n in skipped if n.applies],
        counts=counts,
        causes=[
            CauseView(c.title, round(c.confidence * 100), SIDE_PHRASES[c.side])
            for c in report.causes[:5]
        ],
        findings=findings,
        skipped=skipped,
        detail=d,
        notes=degrade_notes(d),
    )
