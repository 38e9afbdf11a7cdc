"""Shape the results for display: group findings, order them, and decide how much fits.

Templates get plain data from here (raw strings, never escaped) plus a `Detail` level that says
how much to show. The renderer tries the levels in order until the card fits its platform.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from checks.models import Finding, Side, Status, Step

from .data import ResultsData
from .text import evidence_pairs

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
    Status.SKIP: "Skipped",
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
    Status.SKIP: "skipped",
}


@dataclass(frozen=True)
class Detail:
    """How much of each finding to show. Lengths are raw characters, before escaping."""

    level: int
    collapse_ok: bool  # pass/skip findings as one line of titles per group
    compact: bool  # one block per status group instead of one per finding
    summary: int
    detail: int  # 0: hide
    evidence_items: int  # 0: hide
    evidence_value: int
    next_steps: int
    next_step_len: int
    trace_steps: int  # 0: hide
    trace_len: int


DETAIL_LEVELS: tuple[Detail, ...] = (
    Detail(0, False, False, 500, 600, 12, 400, 5, 300, 20, 200),
    Detail(1, True, False, 500, 600, 12, 400, 5, 300, 20, 200),
    Detail(2, True, False, 300, 200, 6, 120, 3, 200, 12, 100),
    Detail(3, True, False, 200, 0, 3, 60, 2, 150, 0, 0),
    Detail(4, True, True, 160, 0, 0, 0, 3, 150, 0, 0),
    Detail(5, True, True, 0, 0, 0, 0, 3, 150, 0, 0),  # titles only: always fits
)


def degrade_notes(d: Detail) -> list[str]:
    """What the card says about what it left out."""
    notes: list[str] = []
    if d.collapse_ok:
        notes.append("Passed and skipped checks are listed by name only, to fit the card.")
    if d.level >= 2:
        notes.append("Evidence and details are shortened to fit; the full report is kept.")
    if d.compact:
        notes.append("Findings are summarised one line each.")
    if d.compact and not d.summary:
        notes.append("Only the names of the checks fit on this card.")
    return notes


@dataclass(frozen=True)
class StepView:
    name: str
    status: Status
    icon: str
    detail: str


@dataclass(frozen=True)
class FindingView:
    check: str
    title: str
    status: Status
    icon: str
    summary: str
    detail: str
    evidence: list[tuple[str, str]]
    next_steps: list[str]
    steps: list[StepView]
    trace_id: str


@dataclass(frozen=True)
class GroupView:
    status: Status
    icon: str
    label: str
    findings: list[FindingView]
    collapsed: bool

    @property
    def titles(self) -> list[str]:
        return [f.title for f in self.findings]


@dataclass(frozen=True)
class ResultsView:
    groups: list[GroupView]
    counts: list[tuple[Status, int]]  # non-zero counts in display order
    top_title: str | None
    top_side: str | None  # phrase: "in your organisation's DNS records"
    notes: list[str] = field(default_factory=list)


def _steps(steps: list[Step]) -> list[StepView]:
    return [StepView(s.name, s.status, ICONS[s.status], s.detail) for s in steps]


def _finding(f: Finding, title: str, d: Detail, index: int) -> FindingView:
    evidence = evidence_pairs(f.evidence, max_items=d.evidence_items) if d.evidence_items else []
    return FindingView(
        check=f.check,
        title=title,
        status=f.status,
        icon=ICONS[f.status],
        summary=f.summary,
        detail=f.detail if d.detail else "",
        evidence=evidence,
        next_steps=f.next_steps[: d.next_steps],
        steps=_steps(f.steps[: d.trace_steps]) if d.trace_steps else [],
        trace_id=f"trace-{index}",
    )


def results_view(data: ResultsData, d: Detail) -> ResultsView:
    """Group and order the findings of `data.report` for the given detail level."""
    by_status: dict[Status, list[FindingView]] = {s: [] for s in STATUS_ORDER}
    for i, f in enumerate(data.report.findings):
        title = data.check_titles.get(f.check, f.check)
        by_status[f.status].append(_finding(f, title, d, i))
    groups = [
        GroupView(
            status=s,
            icon=ICONS[s],
            label=GROUP_LABELS[s],
            findings=by_status[s],
            collapsed=d.collapse_ok and s in (Status.PASS, Status.SKIP),
        )
        for s in STATUS_ORDER
        if by_status[s]
    ]
    top = data.report.top_cause
    return ResultsView(
        groups=groups,
        counts=[(s, len(by_status[s])) for s in STATUS_ORDER if by_status[s]],
        top_title=top.title if top else None,
        top_side=SIDE_PHRASES[top.side] if top else None,
        notes=degrade_notes(d),
    )
