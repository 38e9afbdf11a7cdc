"""Human output of `mailfix diagnose`: live progress on stderr, then a result tree on stdout.

Everything printed here may contain text from DNS or a server, so it goes through rich's
`Text` (never markup parsing) and is shortened.
"""

from __future__ import annotations

import sys
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.text import Text
from rich.tree import Tree

from cards.present import (
    STATUS_WORDS,
    StepState,
    TraceStep,
    finding_text,
    not_checked,
    trace_line,
)
from cards.text import truncate
from cards.view import SIDE_PHRASES, STATUS_ORDER, split_steps
from checks.models import Client, Finding, Report, Status
from checks.registry import CATALOGUE

ICONS = {
    Status.PASS: ("✔", "green"),
    Status.WARN: ("!", "yellow"),
    Status.FAIL: ("✘", "red"),
    Status.ERROR: ("?", "magenta"),
    Status.SKIP: ("-", "dim"),
}
TITLES = {c.id: c.title for c in CATALOGUE}
MAX_VALUE = 300


def _short(value: str, limit: int = MAX_VALUE) -> str:
    """One line, at most `limit` characters, cut at a word boundary."""
    return truncate(" ".join(value.split()), limit)


def _status(status: Status) -> Text:
    icon, style = ICONS[status]
    return Text(f"{icon} {status.value:<5}", style=style)


class HumanProgress:
    """Live "n of m checks done" on stderr while the diagnosis runs (plain lines when not a TTY)."""

    def __init__(self, address: str, client: Client) -> None:
        self.console = Console(stderr=True, highlight=False)
        self.header = f"Diagnosing {address} for {client.value} clients"
        self.lines: list[Text] = []
        self.done = 0
        self.total = 0
        self.live: Live | None = None

    def __enter__(self) -> HumanProgress:
        if self.console.is_terminal:
            self.live = Live(self._render(), console=self.console, transient=True)
            self.live.__enter__()
        else:
            self.console.print(Text(self.header + " …"))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.live is not None:
            self.live.__exit__(exc_type, exc, tb)

    def update(self, finding: Finding, done: int, total: int) -> None:
        self.done, self.total = done, total
        line = Text.assemble(
            _status(finding.status),
            " ",
            (TITLES.get(finding.check, finding.check), "bold"),
            " ",
            _short(finding.summary, 90),
        )
        self.lines.append(line)
        if self.live is not None:
            self.live.update(self._render())
        elif finding.status is not Status.SKIP:
            self.console.print(Text.assemble(f"[{done}/{total}] ", line))

    def _render(self) -> Text:
        text = Text(f"{self.header} — {self.done} of {self.total or '…'} checks done\n")
        for line in self.lines[-12:]:
            text.append_text(line)
            text.append("\n")
        return text


STEP_STYLES: dict[StepState, tuple[str, str]] = {
    StepState.OK: ("✔", "green"),
    StepState.FAILED: ("✘", "red"),
    StepState.WARNING: ("!", "yellow"),
    StepState.ERROR: ("?", "magenta"),
    StepState.EXPECTED: ("–", "dim"),  # part of the normal path: never red
    StepState.SKIPPED: ("-", "dim"),
}


def _words(status: Status) -> Text:
    icon, style = ICONS[status]
    return Text(f"{icon} {STATUS_WORDS[status]}", style=style)


def _step(step: TraceStep) -> Text:
    icon, style = STEP_STYLES[step.state]
    line = trace_line(step)
    text = line.split(" ", 1)[1] if " " in line else line  # the card's emoji -> our glyph
    return Text.assemble(
        (icon, style), " ", (text, "dim" if step.state is StepState.EXPECTED else "")
    )


def report_tree(report: Report, steps: list[str] | None = None) -> Tree:
    """The report in words, as on the helpdesk's card (cards.present): the top cause and what
    to do about it (`steps`: the advice, "You: …" and "Helpdesk: …" lines), labelled facts,
    the numbered trace with expected failures marked, one line per reason for skipped checks."""
    root = Tree(Text(f"mailfix report for {report.address} ({report.client.value})", "bold"))
    top = report.top_cause
    if top is not None:
        cause = root.add(
            Text.assemble(
                ("Most likely: ", "bold"),
                top.title,
                f" — {SIDE_PHRASES[top.side]} ({top.confidence:.0%})",
            )
        )
        for other in report.causes[1:4]:
            cause.add(Text(f"also possible: {other.title} ({other.confidence:.0%})", "dim"))
    person, helpdesk = split_steps(steps or [])
    for heading, lines in (
        ("What the person can do", person),
        ("What the helpdesk can do", helpdesk),
    ):
        if lines:
            node = root.add(Text(heading, "bold"))
            for n, line in enumerate(lines, 1):
                node.add(Text(f"{n}. {line}", "cyan"))
    checks = root.add(Text("Checks", "bold"))
    order = {s: i for i, s in enumerate(STATUS_ORDER)}
    for finding in sorted(report.findings, key=lambda f: order[f.status]):
        if finding.status is Status.SKIP:
            continue
        told = finding_text(finding, TITLES.get(finding.check, finding.check))
        node = checks.add(
            Text.assemble(_words(finding.status), "  ", (told.title, "bold"), " — ", told.summary)
        )
        if finding.status is Status.PASS:
            continue  # the details of a passing check are in --json
        if told.detail:
            node.add(Text(told.detail, "dim"))
        for fact in told.facts:
            node.add(Text.assemble((f"{fact.label}: ", "dim"), fact.value))
        if told.fix is not None:
            node.add(Text.assemble(("Proposed fix: ", "bold"), told.fix.line()))
        for step_text in told.next_steps:
            node.add(Text("→ " + step_text, "cyan"))
        if told.steps:
            trace = node.add(Text("Steps (– = expected on the normal path)", "dim"))
            for step in told.steps:
                trace.add(_step(step))
    for group in not_checked(report.findings, TITLES):
        root.add(
            Text.assemble(
                _words(Status.SKIP), ": ", ", ".join(group.titles), " — ", (group.full, "dim")
            )
        )
    root.add(Text(f"{len(report.findings)} checks in {report.duration_ms} ms", "dim"))
    return root


def print_report(report: Report, steps: list[str] | None = None) -> None:
    console = Console(file=sys.stdout, highlight=False, soft_wrap=False)
    console.print(report_tree(report, steps))
