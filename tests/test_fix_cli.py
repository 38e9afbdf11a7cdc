"""`mailfix fix` end to end: a subprocess configured only by MAILFIX_* variables against a
sandbox world with a tenant (real Microsoft host names and ports), from a real report.

Also the input contract: exit 2 with one line on stderr for bad input, no traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from _checkworld import scenario

from checks.remedies import propose
from sandbox.tenant.build import SANDBOX_SECRET, person, tenant_data
from sandbox.tenant.models import CasSettings
from sandbox.world import World

ROOT = Path(__file__).resolve().parents[1]
ANA = "ana@contoso.com"

needs_ports = pytest.mark.skipif(
    os.geteuid() != 0 and not os.environ.get("CI"),
    reason="needs permission to bind ports 53/80/443 on loopback (run as root)",
)


async def run_cli(
    env: dict[str, str], *args: str, stdin: bytes | None = None
) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MAILFIX_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        cwd=ROOT,
        env={**clean, **env},
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def world_of(**fields: object) -> World:
    sc = scenario().model_copy(update={"tenant": tenant_data(**fields)})  # type: ignore[arg-type]
    return World(sc)


@needs_ports
async def test_fix_from_a_report_dry_run_apply_apply_again(tmp_path: Path) -> None:
    async with world_of(person_fields={"cas": CasSettings(active_sync_enabled=False)}) as world:
        assert not world.port_map, "the CLI must see the real ports, configured by env only"
        assert world.tenant is not None
        env = world.env()
        assert set(env) <= {k for k in env if k.startswith("MAILFIX_")}
        code, out, err = await run_cli(
            env, "diagnose", ANA, "--client", "mobile", "--json", "--deadline", "20"
        )
        assert code == 0, err
        report = json.loads(out)
        mailbox = next(f for f in report["findings"] if f["check"] == "tenant.mailbox")
        assert mailbox["status"] == "fail"
        assert mailbox["remediation"]["id"] == "enable-protocol"
        saved = tmp_path / "report.json"
        saved.write_text(out)

        code, out, err = await run_cli(
            env, "fix", "--proposal", str(saved), "--check", "tenant.mailbox", "--dry-run"
        )
        assert code == 0, err
        tenant_id = world.tenant.tenant_id
        assert (
            f"Would send: POST https://outlook.office365.com/adminapi/beta/{tenant_id}/"
            'InvokeCommand {"CmdletInput":{"CmdletName":"Set-CASMailbox","Parameters":'
            '{"Identity":"ana@contoso.com","ActiveSyncEnabled":true}}}'
        ) in out
        assert "Dry run: nothing was sent" in out
        assert "Checked again" not in out
        assert world.tenant.writes == []

        code, out, err = await run_cli(
            env, "fix", "--proposal", str(saved), "--check", "tenant.mailbox", "--apply"
        )
        assert code == 0, err
        assert "Sent: POST https://outlook.office365.com/" in out
        assert "Response: HTTP 200" in out
        assert "Result: Applied." in out
        assert (
            "Tell the person: ActiveSync is switched on for your mailbox — add the account "
            "again on your phone."
        ) in out
        assert "Checked again: tenant.mailbox passes" in out, out
        assert world.tenant.writes == ["Set-CASMailbox ana@contoso.com ActiveSyncEnabled=True"]

        code, out, err = await run_cli(
            env, "fix", "--proposal", str(saved), "--check", "tenant.mailbox", "--apply"
        )
        assert code == 0, err
        assert "Result: Already done: nothing was sent." in out
        assert "Sent:" not in out
        assert "Checked again: tenant.mailbox passes" in out
        assert len(world.tenant.writes) == 1
        assert SANDBOX_SECRET not in out + err
        assert "Bearer" not in out + err


@needs_ports
async def test_fix_refused_for_a_synced_account_exits_1_and_changes_nothing(
    tmp_path: Path,
) -> None:
    async with world_of(person_fields={"account_enabled": False, "synced": True}) as world:
        assert world.tenant is not None
        proposal = tmp_path / "fix.json"
        proposal.write_text(propose.enable_account(person().id, ANA).model_dump_json())
        code, out, err = await run_cli(world.env(), "fix", "--proposal", str(proposal), "--apply")
        assert code == 1, err
        assert "Result: Refused: nothing was sent." in out
        assert "on-premises Active Directory" in out
        assert "Hard to undo" in out
        assert "Sent:" not in out
        assert world.tenant.writes == []


@needs_ports
async def test_a_proposal_on_standard_input(tmp_path: Path) -> None:
    async with world_of(person_fields={"cas": CasSettings(imap_enabled=False)}) as world:
        fix = propose.enable_protocol(ANA, "Imap").model_dump_json().encode()
        code, out, err = await run_cli(
            world.env(), "fix", "--proposal", "-", "--dry-run", stdin=fix
        )
        assert code == 0, err
        assert '"ImapEnabled":true' in out and "Result: Would apply." in out
        assert world.tenant is not None and world.tenant.writes == []


@needs_ports
async def test_a_single_finding_with_its_remediation_is_accepted(tmp_path: Path) -> None:
    async with world_of(person_fields={"cas": CasSettings(pop_enabled=False)}) as world:
        finding = {
            "check": "tenant.mailbox",
            "status": "fail",
            "summary": "POP is off.",
            "remediation": propose.enable_protocol(ANA, "Pop").model_dump(),
        }
        proposal = tmp_path / "finding.json"
        proposal.write_text(json.dumps(finding))
        code, out, err = await run_cli(world.env(), "fix", "--proposal", str(proposal), "--dry-run")
        assert code == 0, err
        assert '"PopEnabled":true' in out
        assert world.tenant is not None and world.tenant.writes == []


TENANT_ENV = {
    "MAILFIX_TENANT_ID": "6f1b7c2e-0d4a-4e57-9a63-2b8f6c1d9e01",
    "MAILFIX_CLIENT_ID": "0b9d8a31-6c54-4f3e-8d27-a1e5c0f4b2d6",
    "MAILFIX_CLIENT_SECRET": "not-used-bad-input-stops-first",
}


def _report_with_two_fixes() -> str:
    fixes = [
        ("tenant.mailbox", propose.enable_protocol(ANA, "Imap")),
        ("tenant.devices", propose.release_device(ANA, "ApplF17XK2")),
    ]
    findings = [
        {"check": c, "status": "fail", "summary": "x.", "remediation": r.model_dump()}
        for c, r in fixes
    ]
    findings.append({"check": "dns.mx", "status": "pass", "summary": "ok.", "remediation": None})
    return json.dumps(
        {"schema": "mailfix.report/1", "address": ANA, "client": "all", "findings": findings}
    )


@pytest.mark.parametrize(
    ("content", "args", "words"),
    [
        (None, ["--dry-run"], "cannot read the proposal"),
        ("{}", ["--dry-run", "--apply"], "exactly one of --dry-run and --apply"),
        ("{}", [], "exactly one of --dry-run and --apply"),
        ("not json", ["--dry-run"], "is not JSON"),
        ("[1, 2]", ["--dry-run"], "must be a JSON object"),
        ('{"id": "enable-protocol"}', ["--dry-run"], "not a remediation"),
        (
            '{"id": "wipe-tenant", "title": "t", "api": "exo", "action": "x", "params": {}}',
            ["--dry-run"],
            "unknown fix",
        ),
        (
            json.dumps(
                {
                    "id": "enable-protocol",
                    "title": "t",
                    "api": "exo",
                    "action": "Set-CASMailbox",
                    "params": {"mailbox": ANA, "protocol": "Gopher"},
                }
            ),
            ["--apply"],
            "protocol is not one of",
        ),
        ("REPORT", ["--dry-run"], "choose one with --check ID"),
        ("REPORT", ["--dry-run", "--check", "dns.mx"], "proposes no fix"),
        ("REPORT", ["--dry-run", "--check", "tenant.nothing"], "no finding for the check"),
    ],
)
async def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, content: str | None, args: list[str], words: str
) -> None:
    path = tmp_path / "proposal.json"
    if content is not None:
        path.write_text(_report_with_two_fixes() if content == "REPORT" else content)
    code, out, err = await run_cli(TENANT_ENV, "fix", "--proposal", str(path), *args)
    assert code == 2, (out, err)
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("mailfix: error: "), err
    assert words in err
    assert "Traceback" not in err


async def test_without_tenant_settings_it_says_what_to_set(tmp_path: Path) -> None:
    path = tmp_path / "fix.json"
    path.write_text(propose.enable_protocol(ANA, "Imap").model_dump_json())
    code, _, err = await run_cli({}, "fix", "--proposal", str(path), "--dry-run")
    assert code == 2
    assert "MAILFIX_TENANT_ID" in err and err.count("\n") == 1


# --- every fixable fault of the sandbox catalogue ---------------------------------------------

# scenario id -> (client, check carrying the fix, remediation id)
CATALOGUE_FIXES = {
    "account-disabled": ("outlook", "tenant.account", "enable-account"),
    "account-soft-deleted": ("outlook", "tenant.account", "restore-user"),
    "no-licence": ("outlook", "tenant.license", "assign-license"),
    "apps-only-sku": ("outlook", "tenant.license", "assign-license"),
    "exchange-plan-disabled": ("outlook", "tenant.license", "enable-exchange-plan"),
    "activesync-off": ("mobile", "tenant.mailbox", "enable-protocol"),
    "imap-off": ("imap", "tenant.mailbox", "enable-protocol"),
    "pop-off": ("pop", "tenant.mailbox", "enable-protocol"),
    "smtp-auth-off-org-default": ("smtp", "tenant.mailbox", "enable-protocol"),
    "smtp-auth-off-mailbox": ("smtp", "tenant.mailbox", "enable-protocol"),
    "owa-off": ("web", "tenant.mailbox", "enable-protocol"),
    "mapi-ews-off": ("outlook", "tenant.mailbox", "enable-protocol"),  # both in one fix
    "device-quarantined-global": ("mobile", "tenant.devices", "release-device"),
}


def test_the_catalogue_fixes_cover_every_operation() -> None:
    from sandbox.catalogue import CATALOGUE

    assert set(CATALOGUE_FIXES) <= set(CATALOGUE)
    assert {kind for _, _, kind in CATALOGUE_FIXES.values()} == set(propose.KINDS)


@needs_ports
@pytest.mark.parametrize("scenario_id", list(CATALOGUE_FIXES))
async def test_catalogue_fault_is_fixed_and_its_check_passes(
    scenario_id: str, tmp_path: Path
) -> None:
    from checks.models import Client
    from checks.runner import diagnose
    from sandbox.catalogue import CATALOGUE

    client, check, kind = CATALOGUE_FIXES[scenario_id]
    sc = CATALOGUE[scenario_id]
    async with World(sc) as world:
        assert world.tenant is not None
        before = await diagnose(sc.address, Client(client), settings=world.settings(), deadline=20)
        finding = before.finding(check)
        assert finding.status.value == "fail"
        assert finding.remediation is not None and finding.remediation.id == kind
        saved = tmp_path / "report.json"
        saved.write_text(before.to_json())

        code, out, err = await run_cli(
            world.env(), "fix", "--proposal", str(saved), "--check", check, "--apply"
        )
        assert code == 0, (out, err)
        assert "Result: Applied." in out, out
        assert f"Checked again: {check} passes" in out, out
        assert len(world.tenant.writes) == 1, world.tenant.writes

        after = await diagnose(sc.address, Client(client), settings=world.settings(), deadline=20)
        assert after.finding(check).status.value == "pass", after.finding(check).summary
        assert after.finding(check).remediation is None


@needs_ports
async def test_two_protocols_off_are_fixed_by_one_approval(tmp_path: Path) -> None:
    """mapi-ews-off: the report's one proposal switches MAPI and EWS on in one Set-CASMailbox;
    the re-check passes and nothing is left for a second approval."""
    from checks.models import Client
    from checks.runner import diagnose
    from sandbox.catalogue import CATALOGUE

    sc = CATALOGUE["mapi-ews-off"]
    async with World(sc) as world:
        assert world.tenant is not None
        before = await diagnose(sc.address, Client.OUTLOOK, settings=world.settings(), deadline=20)
        finding = before.finding("tenant.mailbox")
        assert finding.evidence["protocols_off"] == ["Mapi", "Ews"]
        assert finding.remediation is not None
        assert finding.remediation.params == {"mailbox": ANA, "protocols": ["Mapi", "Ews"]}
        saved = tmp_path / "report.json"
        saved.write_text(before.to_json())
        fix = ["fix", "--proposal", str(saved), "--check", "tenant.mailbox"]

        code, out, err = await run_cli(world.env(), *fix, "--dry-run")
        assert code == 0, err
        assert (
            'Operation: Set-CASMailbox -Identity "ana@contoso.com" -MAPIEnabled $true '
            "-EwsEnabled $true"
        ) in out
        assert (
            '"Parameters":{"Identity":"ana@contoso.com","MAPIEnabled":true,"EwsEnabled":true}}}'
        ) in out
        assert out.count("Would send: ") == 1
        assert world.tenant.writes == []

        code, out, err = await run_cli(world.env(), *fix, "--apply")
        assert code == 0, (out, err)
        assert out.count("Sent: ") == 1
        assert (
            "Tell the person: Outlook and Exchange Web Services are switched on for your "
            "mailbox — restart Outlook and restart your mail app."
        ) in out
        assert "Checked again: tenant.mailbox passes" in out, out
        assert world.tenant.writes == [
            "Set-CASMailbox ana@contoso.com MAPIEnabled=True EwsEnabled=True"
        ]

        code, out, err = await run_cli(world.env(), *fix, "--apply")
        assert code == 0, err
        assert "Result: Already done: nothing was sent." in out
        assert len(world.tenant.writes) == 1

        after = await diagnose(sc.address, Client.OUTLOOK, settings=world.settings(), deadline=20)
    assert after.finding("tenant.mailbox").status.value == "pass"
    assert after.top_cause is not None and after.top_cause.id == "device-or-app"
