"""The `mailfix` command line: diagnose, serve, demo, manifests, audit, doctor.

Contract (DESIGN.md, "CLI"): exit 0 when a report was produced, whatever it found; exit 2 with
one line on stderr and no traceback on bad input. `--json` prints exactly one report object.
Heavy imports (chat SDKs, the sandbox) happen inside the commands that need them, so
`mailfix diagnose` starts quickly.
"""

from __future__ import annotations

import asyncio
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from pydantic import ValidationError
from typer.exceptions import TyperException

from bot.fix_cli import fix_command
from checks.address import InvalidAddress, parse_address
from checks.models import Client, Report
from checks.runner import DEFAULT_DEADLINE, MAX_DEADLINE, diagnose

if TYPE_CHECKING:
    from checks.settings import CheckSettings

MAX_SYMPTOM_LENGTH = 2000

app = typer.Typer(
    name="mailfix",
    help="Find why a mail app cannot reach an Exchange Online mailbox.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def version() -> str:
    """The installed package's version ("unknown" when run from a tree never installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("mailfix")
    except PackageNotFoundError:
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"mailfix {version()}")
        raise typer.Exit(0)


@app.callback()
def _main(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Find why a mail app cannot reach an Exchange Online mailbox."""


class ClientChoice(StrEnum):
    outlook = "outlook"
    mobile = "mobile"
    imap = "imap"
    pop = "pop"
    smtp = "smtp"
    web = "web"
    all = "all"


class BadInput(Exception):
    """Input the person can fix; printed as one line, exit 2."""


def _settings_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        name = f"MAILFIX_{where.upper()}" if where else "settings"
        parts.append(f"{name}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def load_settings() -> object:
    """The bot's settings (a superset of what checks need), or BadInput naming the variable."""
    from bot.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        raise BadInput(_settings_error(exc)) from exc


@app.command("diagnose")
def diagnose_command(
    address: Annotated[str, typer.Argument(help="The mail address to diagnose.")],
    client: Annotated[
        ClientChoice, typer.Option("--client", "-c", help="The mail app family.")
    ] = ClientChoice.all,
    symptom: Annotated[
        str | None, typer.Option("--symptom", "-s", help="What the person sees, in words.")
    ] = None,
    deadline: Annotated[
        float, typer.Option("--deadline", help="Seconds the whole diagnosis may take.")
    ] = DEFAULT_DEADLINE,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report only.")] = False,
) -> None:
    """Run every check for ADDRESS and show the most likely cause."""
    from checks.settings import CheckSettings

    try:
        mail = parse_address(address)
    except InvalidAddress as exc:
        raise BadInput(f"invalid address: {exc}") from exc
    if symptom is not None and len(symptom) > MAX_SYMPTOM_LENGTH:
        raise BadInput(f"--symptom is longer than {MAX_SYMPTOM_LENGTH} characters")
    if not 0 < deadline <= MAX_DEADLINE:
        raise BadInput(f"--deadline must be more than 0 and at most {MAX_DEADLINE:g} seconds")
    try:
        settings = CheckSettings()
    except ValidationError as exc:
        raise BadInput(_settings_error(exc)) from exc

    if as_json:
        report = asyncio.run(
            diagnose(
                mail, Client(client.value), settings=settings, symptom=symptom, deadline=deadline
            )
        )
        sys.stdout.write(report.to_json() + "\n")
        return

    from bot.console import HumanProgress, print_report

    progress = HumanProgress(mail.display, Client(client.value))
    with progress:
        report = asyncio.run(
            diagnose(
                mail,
                Client(client.value),
                settings=settings,
                symptom=symptom,
                deadline=deadline,
                on_progress=progress.update,
            )
        )
    print_report(report, _advice(report, settings))


def _advice(report: Report, settings: CheckSettings) -> list[str]:
    """What to do about the top cause, for the tree ("You: …" and "Helpdesk: …" lines)."""
    from checks.advice import cause_steps
    from checks.cloud import hosts_for

    top = report.top_cause
    hosts = hosts_for(settings.cloud)
    return cause_steps(top.id, report.client, hosts) if top is not None else []


@app.command("serve")
def serve_command(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default MAILFIX_HOST, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default MAILFIX_PORT, 3978).")
    ] = None,
) -> None:
    """Run the bot server (Slack and Teams endpoints)."""
    from bot.server import serve

    settings = load_settings()
    serve(settings, host=host, port=port)  # type: ignore[arg-type]


@app.command("demo")
def demo_command(
    serve: Annotated[
        bool | None,
        typer.Option(
            "--serve/--no-serve",
            help="After the sample reports, serve the bot and the web console against the "
            "sandbox until Ctrl-C. Default: serve on a terminal, not when CI is set or stdin "
            "is not a terminal.",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int, typer.Option(help="Port for the demo server on 127.0.0.1 (0: any free port).")
    ] = 3978,
) -> None:
    """Start the sandbox world, diagnose sample users in broken states, then serve the bot."""
    from bot.demo import run_demo

    run_demo(serve=serve, port=port)


@app.command("audit")
def audit_command(
    case: Annotated[int | None, typer.Option(help="Only this case number.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only entries from then on: 24h, 7d, or a date.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the entries as JSON.")] = False,
) -> None:
    """Print the audit trail: who escalated, claimed, approved and applied what, and when."""
    from bot.audit_cli import AuditInputError, parse_since, read_trail, render
    from bot.settings import Settings

    try:
        when = parse_since(since) if since is not None else None
    except AuditInputError as exc:
        raise BadInput(str(exc)) from exc
    settings = load_settings()
    assert isinstance(settings, Settings)
    entries = asyncio.run(read_trail(settings, case_number=case, since=when))
    typer.echo(render(entries, as_json=as_json))


@app.command("doctor")
def doctor_command() -> None:
    """Post a test card to the helpdesk channel(s) and say plainly what is wrong if it fails."""
    from bot.doctor import run_doctor
    from bot.settings import Settings

    settings = load_settings()
    assert isinstance(settings, Settings)
    findings = asyncio.run(run_doctor(settings))
    for finding in findings:
        typer.echo(finding.line())
    if any(f.ok is False for f in findings):
        raise typer.Exit(1)


@app.command("manifests")
def manifests_command(
    url: Annotated[str, typer.Option(help="Public base URL of the bot, https://…")],
    out: Annotated[Path, typer.Option(help="Directory to write the manifests into.")],
) -> None:
    """Write the Slack app manifest and the Teams app package for URL."""
    from bot.manifests import write_manifests

    try:
        written = write_manifests(url, out)
    except ValueError as exc:
        raise BadInput(str(exc)) from exc
    for path in written:
        typer.echo(str(path))


app.command("fix")(fix_command)


def _fail(message: str, code: int = 2) -> NoReturn:
    first_line = " ".join(message.split())  # one line, whatever the message held
    sys.stderr.write(f"mailfix: error: {first_line}\n")
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point. Maps every input problem to one line on stderr and exit 2."""
    try:
        result = app(args=argv, prog_name="mailfix", standalone_mode=False)
    except BadInput as exc:
        _fail(str(exc))
    except TyperException as exc:  # usage errors: unknown option, bad value, missing argument
        # With no command at all the help is already printed; say what is missing.
        _fail(exc.format_message() or "name a command: one of those listed above")
    except typer.Abort:
        _fail("aborted", 130)
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    if isinstance(result, int) and result:
        raise SystemExit(result)
