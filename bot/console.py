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


def _short(value: object, limit: int = MAX_VALUE) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
            _status(finding.status), " ", (finding.check, "bold"), " ", _short(finding.summary, 90)
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


def report_tree(report: Report) -> Tree:
    root = Tree(Text(f"mailfix report for {report.address} ({report.client.value})", "bold"))
    top = report.top_cause
    if top is not None:
        cause = root.add(
            Text.assemble(
                ("Most likely: ", "bold"),
                top.title,
                f"  [{top.side.value}, ",
                f"{top.confidence:.0%}]",
            )
        )
        for other in report.causes[1:4]:
            cause.add(Text(f"then: {other.title} ({other.confidence:.0%})", "dim"))
    findings = root.add(Text("Checks", "bold"))
    skipped: dict[str, list[str]] = {}  # reason -> check ids: one line per reason, not per check
    for finding in report.findings:
        if finding.status is Status.SKIP:
            skipped.setdefault(finding.summary, []).append(finding.check)
            continue
        title = TITLES.get(finding.check, finding.check)
        node = findings.add(
            Text.assemble(
                _status(finding.status),
                " ",
                (finding.check, "bold"),
                f" ({title}) ",
                _short(finding.summary, 160),
            )
        )
        for step in finding.steps:
            node.add(
                Text.assemble(_status(step.status), " ", step.name, ": ", _short(step.detail, 160))
            )
        if finding.status in (Status.FAIL, Status.WARN, Status.ERROR):
            for key, value in list(finding.evidence.items())[:8]:
                node.add(Text(f"{key}: {_short(value)}", "dim"))
            for step_text in finding.next_steps:
                node.add(Text("→ " + _short(step_text), "cyan"))
    for reason, ids in skipped.items():
        findings.add(
            Text.assemble(_status(Status.SKIP), " ", (", ".join(ids), "dim"), ": ", _short(reason))
        )
    root.add(Text(f"{len(report.findings)} checks in {report.duration_ms} ms", "dim"))
    return root


def print_report(report: Report) -> None:
    console = Console(file=sys.stdout, highlight=False, soft_wrap=False)
    console.print(report_tree(report))
