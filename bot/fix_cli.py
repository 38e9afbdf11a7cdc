"""`mailfix fix --proposal FILE --dry-run|--apply`: an admin applies one proposed fix at a terminal.

FILE holds a remediation as a report's finding carries it (the `remediation` object, or the
whole finding), or a whole report plus `--check ID` (the finding whose remediation to apply).
`-` reads standard input. The tenant settings come from the MAILFIX_* variables, as for
`mailfix diagnose`.

It prints what it reads, what it sends (method, URL, body — never a token) and the result in
words; with --apply it then runs the affected checks again and shows their new status.
Exit 0: applied, already done, or (dry run) would apply; 1: refused or failed; 2: bad input.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from checks.cloud import hosts_for
from checks.models import Client, Finding, Remediation
from checks.net.seam import Network
from checks.remedies import InvalidProposal, Outcome, apply, canonical
from checks.remedies.verify import recheck, recheck_address, recheck_client
from checks.settings import CheckSettings
from checks.tenant import TenantClient

MAX_PROPOSAL_BYTES = 2_000_000

OUTCOME_WORDS = {
    "applied": "Applied.",
    "already-done": "Already done: nothing was sent.",
    "would-apply": "Would apply.",
    "refused": "Refused: nothing was sent.",
    "failed": "Failed.",
}
STATUS_WORDS = {
    "pass": "passes",
    "warn": "warns",
    "fail": "still fails",
    "error": "could not decide",
    "skip": "was skipped",
}


class FixInputError(Exception):
    """Input the admin can fix: one line, exit 2 (bot.cli maps it)."""


def _read(path: str) -> Any:
    try:
        if path == "-":
            raw = sys.stdin.buffer.read(MAX_PROPOSAL_BYTES + 1)
        else:
            with Path(path).open("rb") as handle:
                raw = handle.read(MAX_PROPOSAL_BYTES + 1)
    except OSError as exc:
        raise FixInputError(f"cannot read the proposal {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_PROPOSAL_BYTES:
        raise FixInputError(f"the proposal {path} is larger than {MAX_PROPOSAL_BYTES} bytes")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FixInputError(f"the proposal {path} is not JSON: {exc}") from None


def _remediation(data: Any) -> Remediation:
    try:
        return Remediation.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "remediation"
        raise FixInputError(f"not a remediation: {where}: {first.get('msg')}") from None


def select(data: Any, check: str | None) -> tuple[Remediation, str | None, Client | None]:
    """The remediation in FILE's content; with the report's address and client when a report."""
    if not isinstance(data, dict):
        raise FixInputError("the proposal must be a JSON object (a remediation or a report)")
    if "findings" in data:  # a whole report
        findings = data.get("findings")
        if not isinstance(findings, list):
            raise FixInputError("the report's findings are not a list")
        fixable = [
            f for f in findings if isinstance(f, dict) and isinstance(f.get("remediation"), dict)
        ]
        if check is None:
            if len(fixable) != 1:
                ids = ", ".join(str(f.get("check")) for f in fixable) or "none"
                raise FixInputError(
                    f"the report has {len(fixable)} findings with a fix ({ids}): choose one "
                    "with --check ID"
                )
            chosen = fixable[0]
        else:
            matches = [f for f in findings if isinstance(f, dict) and f.get("check") == check]
            if not matches:
                raise FixInputError(f"the report has no finding for the check {check}")
            if not isinstance(matches[0].get("remediation"), dict):
                raise FixInputError(f"the finding of {check} proposes no fix")
            chosen = matches[0]
        address = data.get("address") if isinstance(data.get("address"), str) else None
        try:
            client = Client(str(data.get("client")))
        except ValueError:
            client = None
        return _remediation(chosen["remediation"]), address, client
    if "check" in data and "remediation" in data:  # one finding
        if not isinstance(data["remediation"], dict):
            raise FixInputError(f"the finding of {data['check']} proposes no fix")
        return _remediation(data["remediation"]), None, None
    if check is not None:
        raise FixInputError("--check applies to a whole report, and FILE holds one remediation")
    return _remediation(data), None, None


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")


async def _run(
    remediation: Remediation,
    settings: CheckSettings,
    *,
    dry_run: bool,
    address: str | None,
    client_kind: Client | None,
) -> int:
    fix = canonical(remediation)
    _out(f"Fix: {fix.title}")
    _out(f"Operation: {fix.operation}")
    _out(f"Precondition: {fix.precondition}")
    if fix.hard_to_undo:
        _out("Hard to undo: the approval flow can require two approvers for it.")
    async with Network(settings) as net:
        tenant = TenantClient(
            settings, net, hosts_for(settings.cloud), deadline=time.monotonic() + 60.0
        )
        result = await apply(fix, tenant, dry_run=dry_run)
    for read in result.reads:
        _out(f"Read: {read}")
    verb = "Would send" if result.outcome is Outcome.WOULD_APPLY else "Sent"
    for request in result.sent:
        _out(f"{verb}: {request.line()}")
    if result.status is not None:
        _out(f"Response: HTTP {result.status}")
    _out(f"Result: {OUTCOME_WORDS[result.outcome.value]} {result.detail}")
    if result.permission:
        _out(f"Missing permission: {result.permission} (grant it: {result.grant_where})")
    if not dry_run and result.outcome in (Outcome.APPLIED, Outcome.ALREADY_DONE):
        _out(f"Tell the person: {result.message}")
        who = address or recheck_address(fix, result)
        if who is None:
            _out("Checks not run again: the proposal does not say whose mailbox it is (--address).")
        else:
            try:
                findings = await recheck(
                    fix, who, settings=settings, client=client_kind or recheck_client(fix)
                )
            except ValueError as exc:  # an address the checks cannot use
                _out(f"Checks not run again: {exc}")
                findings = []
            for finding in findings:
                _out(_recheck_line(finding))
    return 0 if result.ok else 1


def _recheck_line(finding: Finding) -> str:
    words = STATUS_WORDS.get(finding.status.value, finding.status.value)
    return f"Checked again: {finding.check} {words} — {finding.summary}"


def fix_command(
    proposal: Annotated[
        str,
        typer.Option(
            "--proposal",
            help="JSON file with a remediation, a finding, or a whole report (then --check); "
            "'-' reads standard input.",
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Read the tenant and show what would be sent.")
    ] = False,
    apply_: Annotated[
        bool, typer.Option("--apply", help="Apply the fix, then run the affected checks again.")
    ] = False,
    check: Annotated[
        str | None, typer.Option("--check", help="In a whole report: the check whose fix to apply.")
    ] = None,
    address: Annotated[
        str | None,
        typer.Option("--address", help="Whose checks to run again (default: from the proposal)."),
    ] = None,
) -> int:
    """Apply (or dry-run) one proposed fix to the tenant."""
    from bot.cli import BadInput, _settings_error  # noqa: PLC0415 - bot.cli registers this command

    if dry_run == apply_:
        raise BadInput("give exactly one of --dry-run and --apply")
    try:
        remediation, report_address, client_kind = select(_read(proposal), check)
    except FixInputError as exc:
        raise BadInput(str(exc)) from None
    try:
        settings = CheckSettings()
    except ValidationError as exc:
        raise BadInput(_settings_error(exc)) from exc
    if not settings.has_tenant_credentials:
        raise BadInput(
            "no tenant access: set MAILFIX_TENANT_ID, MAILFIX_CLIENT_ID and "
            "MAILFIX_CLIENT_SECRET (or MAILFIX_CLIENT_CERTIFICATE)"
        )
    try:
        return asyncio.run(
            _run(
                remediation,
                settings,
                dry_run=dry_run,
                address=address or report_address,
                client_kind=client_kind,
            )
        )
    except InvalidProposal as exc:
        raise BadInput(str(exc)) from None
