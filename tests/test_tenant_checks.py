"""The six tenant checks of the TENANT-CLIENT part, every status, over real HTTP against the
sandbox tenant (login, Graph and the Exchange admin API on loopback, paging at 2).

tenant.account, tenant.license (identity.py), tenant.mailbox, tenant.devices (mailbox.py),
tenant.signins, tenant.service_health (activity.py). Each finding keeps the findings contract:
a `problem` code, the `requests` that decided it, words (not field paths) for people.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from _checkworld import Probe, checked, scenario

from checks.models import Client, Finding, Status
from checks.modules.tenant import activity, identity, mailbox
from checks.runner import run_checks
from checks.spec import Check
from sandbox.tenant.build import IPHONE_ID, person, tenant_data
from sandbox.tenant.models import (
    EXCHANGE_S_ENTERPRISE,
    MAILFIX_GRAPH_PERMISSIONS,
    SKU_APPS_FOR_BUSINESS,
    SKU_E3,
    AppliedPolicy,
    AssignedLicense,
    CasSettings,
    DeviceAccessRule,
    ProvisioningError,
    ServiceIssue,
    SignInEvent,
    Throttle,
)

ACCOUNT, LICENSE = identity.ACCOUNT, identity.LICENSE
MAILBOX, DEVICES = mailbox.MAILBOX, mailbox.DEVICES
SIGNINS, HEALTH = activity.SIGNINS, activity.HEALTH
ANA = "ana@contoso.com"
GRAPH = "https://graph.microsoft.com/v1.0"
EXO_PLAN = EXCHANGE_S_ENTERPRISE[0]


@asynccontextmanager
async def tenant(**fields: Any) -> AsyncIterator[Probe]:
    sc = scenario().model_copy(update={"tenant": tenant_data(**fields)})
    async with checked(sc) as probe:
        yield probe


async def run(
    probe: Probe, check: Check, client: Client = Client.ALL, address: str | None = None
) -> Finding:
    ctx = probe.context(client=client, address=address)
    ctx.deadline = time.monotonic() + 30
    finding = await probe.run(check, ctx=ctx)
    assert finding.evidence["requests"], "every tenant finding names its requests"
    assert all(
        r.startswith(("GET https://", "POST https://")) for r in finding.evidence["requests"]
    )
    if finding.status is not Status.SKIP:
        assert "problem" in finding.evidence
    return finding


def without(*permissions: str) -> dict[str, Any]:
    return {
        "graph_permissions": tuple(p for p in MAILFIX_GRAPH_PERMISSIONS if p not in permissions)
    }


# --- tenant.account ---------------------------------------------------------------------------


async def test_account_pass_by_upn() -> None:
    async with tenant() as probe:
        f = await run(probe, ACCOUNT)
    assert f.status is Status.PASS and f.evidence["problem"] is None
    assert f.evidence["matched_by"] == "userPrincipalName"
    assert f.evidence["upn"] == ANA and f.evidence["user_id"] == person().id
    assert f.evidence["synced_from_on_premises"] is False
    assert f.evidence["requests"][0].startswith(f"GET {GRAPH}/users/{ANA}?$select=")


async def test_account_found_by_proxy_address() -> None:
    # ana.s@contoso.com is an alias: GET /users/{alias} is 404 in Graph; proxyAddresses finds her.
    fields = {"proxy_addresses": (f"SMTP:{ANA}", "smtp:ana.s@contoso.com")}
    async with tenant(person_fields=fields) as probe:
        f = await run(probe, ACCOUNT, address="ana.s@contoso.com")
    assert f.status is Status.PASS
    assert f.evidence["matched_by"] == "proxyAddresses" and f.evidence["upn"] == ANA
    assert "alias of the account ana@contoso.com" in f.summary
    assert any("proxyAddresses/any" in r for r in f.evidence["requests"])


async def test_account_not_found() -> None:
    async with tenant() as probe:
        f = await run(probe, ACCOUNT, address="nobody@contoso.com")
    assert f.status is Status.FAIL and f.evidence["problem"] == "account-not-found"
    assert f.summary == "No account in the tenant has the address nobody@contoso.com."
    assert any("deletedItems" in r for r in f.evidence["requests"])
    assert f.remediation is None


async def test_account_soft_deleted_with_days_left() -> None:
    async with tenant(person_fields={"deleted_days_ago": 12}) as probe:
        f = await run(probe, ACCOUNT)
    assert f.status is Status.FAIL and f.evidence["problem"] == "account-soft-deleted"
    assert f.evidence["days_left"] in (17, 18)  # 30 days from deletion, whole days left
    assert f"{f.evidence['days_left']} more days" in f.summary
    assert f.remediation is not None and f.remediation.params
    assert f.evidence["user_id"] == person().id
    assert f.evidence["upn"] == ANA  # without the object-id prefix of a deleted UPN


async def test_account_disabled_carries_the_enable_proposal() -> None:
    async with tenant(person_fields={"account_enabled": False}) as probe:
        f = await run(probe, ACCOUNT)
    assert f.status is Status.FAIL and f.evidence["problem"] == "account-disabled"
    assert "Sign-in is blocked" in f.summary
    assert f.remediation is not None
    assert "Unblock sign-in" in f.next_steps[0]


async def test_synced_disabled_account_is_fixed_on_premises() -> None:
    async with tenant(person_fields={"account_enabled": False, "synced": True}) as probe:
        f = await run(probe, ACCOUNT)
    assert f.evidence["problem"] == "account-disabled"
    assert f.evidence["synced_from_on_premises"] is True
    assert "on-premises Active Directory" in f.next_steps[0]
    assert f.remediation is not None  # the executor refuses it with "change this on-premises"


async def test_account_sync_provisioning_error_is_a_warning() -> None:
    conflict = ProvisioningError(value="smtp:ana@contoso.com")
    async with tenant(person_fields={"synced": True, "provisioning_errors": (conflict,)}) as probe:
        f = await run(probe, ACCOUNT)
    assert f.status is Status.WARN and f.evidence["problem"] == "sync-provisioning-error"
    assert f.evidence["errors"][0]["category"] == "PropertyConflict"
    assert "the email address ana@contoso.com is already used by another object" in f.summary


async def test_account_permission_missing_names_user_read_all() -> None:
    denied = without("User.Read.All", "User.ReadWrite.All", "Directory.Read.All")
    async with tenant(app=denied) as probe:
        f = await run(probe, ACCOUNT)
    assert f.status is Status.ERROR and f.evidence["problem"] == "permission-missing"
    assert f.evidence["permission"] == "User.Read.All"
    assert "User.Read.All" in f.summary and "Microsoft Graph application permission" in f.summary
    assert "API permissions" in f.evidence["grant_where"]


# --- tenant.license ---------------------------------------------------------------------------


async def test_license_pass() -> None:
    async with tenant() as probe:
        f = await run(probe, LICENSE)
    assert f.status is Status.PASS
    assert f.evidence["skus"] == ["ENTERPRISEPACK"]
    assert f.evidence["exchange_plan"] == "EXCHANGE_S_ENTERPRISE"
    assert f.evidence["provisioning_status"] == "Success"
    assert "has Exchange Online (Plan 2) (in Office 365 E3)" in f.summary
    assert any(r.endswith("/licenseDetails") for r in f.evidence["requests"])


async def test_license_none_proposes_a_sku_with_a_free_seat() -> None:
    async with tenant(person_fields={"licenses": ()}) as probe:
        f = await run(probe, LICENSE)
    assert f.status is Status.FAIL and f.evidence["problem"] == "no-exchange-plan"
    assert f.evidence["skus"] == []
    assert f.remediation is not None
    assert f.evidence["proposed_sku"] in {"ENTERPRISEPACK", "O365_BUSINESS_ESSENTIALS", "SPE_F1"}


async def test_license_apps_only_has_no_mailbox() -> None:
    apps = (AssignedLicense(sku_id=SKU_APPS_FOR_BUSINESS.sku_id),)
    async with tenant(person_fields={"licenses": apps}) as probe:
        f = await run(probe, LICENSE)
    assert f.status is Status.FAIL and f.evidence["problem"] == "sku-without-mailbox"
    assert f.evidence["skus"] == ["O365_BUSINESS"]
    assert "Microsoft 365 Apps for business" in f.summary


async def test_license_plan_switched_off() -> None:
    off = (AssignedLicense(sku_id=SKU_E3.sku_id, disabled_plans=(EXO_PLAN,)),)
    async with tenant(person_fields={"licenses": off, "mailbox": "none"}) as probe:
        f = await run(probe, LICENSE)
    assert f.status is Status.FAIL and f.evidence["problem"] == "exchange-plan-disabled"
    assert f.evidence["provisioning_status"] == "Disabled"
    assert f.remediation is not None
    assert "switched off" in f.summary


async def test_license_pending_provisioning() -> None:
    fields = {"plan_status": {"EXCHANGE_S_ENTERPRISE": "PendingProvisioning"}}
    async with tenant(person_fields=fields) as probe:
        f = await run(probe, LICENSE)
    assert f.status is Status.FAIL and f.evidence["problem"] == "exchange-plan-pending"
    assert f.evidence["provisioning_status"] == "PendingProvisioning"
    assert "still being set up" in f.summary


async def test_license_error_when_the_account_cannot_be_read() -> None:
    denied = without(
        "User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "LicenseAssignment.Read.All"
    )
    async with tenant(app=denied) as probe:
        f = await run(probe, LICENSE)
    assert f.status is Status.ERROR and f.evidence["problem"] == "permission-missing"
    assert f.evidence["permission"] == "User.Read.All"


async def test_license_skips_without_an_account() -> None:
    async with tenant() as probe:
        f = await run(probe, LICENSE, address="nobody@contoso.com")
    assert f.status is Status.SKIP and "No live account" in f.summary


# --- tenant.mailbox ---------------------------------------------------------------------------


async def test_mailbox_pass_for_outlook() -> None:
    async with tenant() as probe:
        f = await run(probe, MAILBOX, Client.OUTLOOK)
    assert f.status is Status.PASS and f.evidence["problem"] is None
    assert "MAPI" in f.summary and "Exchange Web Services" in f.summary
    assert f.evidence["requests"][0].endswith("/InvokeCommand Get-CASMailbox")


async def test_mailbox_imap_off_only_fails_for_imap() -> None:
    cas = CasSettings(imap_enabled=False)
    async with tenant(person_fields={"cas": cas}) as probe:
        imap = await run(probe, MAILBOX, Client.IMAP)
        phone = await run(probe, MAILBOX, Client.MOBILE)
    assert imap.status is Status.FAIL and imap.evidence["problem"] == "protocol-disabled"
    assert imap.evidence["protocols_off"] == ["Imap"]
    assert imap.remediation is not None
    assert imap.summary.startswith("IMAP is switched off")
    assert phone.status is Status.PASS


async def test_mailbox_mapi_and_ews_off_is_one_fix_for_both() -> None:
    cas = CasSettings(mapi_enabled=False, ews_enabled=False)
    async with tenant(person_fields={"cas": cas}) as probe:
        f = await run(probe, MAILBOX, Client.OUTLOOK)
    assert f.status is Status.FAIL and f.evidence["protocols_off"] == ["Mapi", "Ews"]
    assert f.remediation is not None
    assert f.remediation.params == {"mailbox": "ana@contoso.com", "protocols": ["Mapi", "Ews"]}
    assert f.remediation.operation.endswith("-MAPIEnabled $true -EwsEnabled $true")


@pytest.mark.parametrize(
    ("fields", "org_default"),
    [
        (
            {
                "person_fields": {
                    "cas": CasSettings(imap_enabled=False, smtp_client_authentication_disabled=True)
                }
            },
            None,
        ),
        (
            {
                "person_fields": {"cas": CasSettings(imap_enabled=False)},
                "smtp_client_authentication_disabled": True,
            },
            True,
        ),
    ],
    ids=["mailbox", "organisation"],
)
async def test_imap_and_smtp_auth_both_off_are_one_fix(
    fields: dict[str, Any], org_default: bool | None
) -> None:
    async with tenant(**fields) as probe:
        f = await run(probe, MAILBOX, Client.IMAP)
    assert f.status is Status.FAIL and f.evidence["problem"] == "protocol-disabled"
    assert f.evidence["protocols_off"] == ["Imap", "SmtpClientAuth"]
    assert f.evidence.get("org_default") is org_default
    assert f.summary.startswith("IMAP and Authenticated SMTP")
    assert f.remediation is not None
    assert f.remediation.params["protocols"] == ["Imap", "SmtpClientAuth"]


async def test_mailbox_activesync_off_for_a_phone() -> None:
    cas = CasSettings(active_sync_enabled=False)
    async with tenant(person_fields={"cas": cas}) as probe:
        f = await run(probe, MAILBOX, Client.MOBILE)
    assert f.evidence["protocols_off"] == ["ActiveSync"]
    assert "Exchange ActiveSync" in f.summary


async def test_smtp_auth_off_on_the_mailbox() -> None:
    cas = CasSettings(smtp_client_authentication_disabled=True)
    async with tenant(person_fields={"cas": cas}) as probe:
        f = await run(probe, MAILBOX, Client.SMTP)
    assert f.status is Status.FAIL and f.evidence["problem"] == "smtp-auth-disabled"
    assert f.evidence["mailbox_setting"] is True and f.evidence["org_default"] is None
    assert "for this mailbox" in f.summary
    assert f.remediation is not None


async def test_smtp_auth_off_by_the_organisation_default() -> None:
    async with tenant(smtp_client_authentication_disabled=True) as probe:
        f = await run(probe, MAILBOX, Client.SMTP)
        imap = await run(probe, MAILBOX, Client.IMAP)  # IMAP apps send with SMTP AUTH too
    assert f.status is Status.FAIL and f.evidence["problem"] == "smtp-auth-disabled"
    assert f.evidence["mailbox_setting"] is None and f.evidence["org_default"] is True
    assert "whole organisation" in f.summary
    assert any(r.endswith("Get-TransportConfig") for r in f.evidence["requests"])
    assert imap.evidence["problem"] == "smtp-auth-disabled"


async def test_smtp_auth_on_for_the_mailbox_beats_the_org_default() -> None:
    cas = CasSettings(smtp_client_authentication_disabled=False)
    async with tenant(smtp_client_authentication_disabled=True, person_fields={"cas": cas}) as p:
        f = await run(p, MAILBOX, Client.SMTP)
    assert f.status is Status.PASS and f.evidence["mailbox_setting"] is False
    assert not any(r.endswith("Get-TransportConfig") for r in f.evidence["requests"])


async def test_mailbox_on_premises_is_a_warning() -> None:
    async with tenant(person_fields={"mailbox": "onprem", "synced": True}) as probe:
        f = await run(probe, MAILBOX, Client.OUTLOOK)
    assert f.status is Status.WARN and f.evidence["problem"] == "mailbox-on-premises"
    assert f.evidence["recipient_type"] == "MailUser"
    assert "own Exchange server" in f.summary


async def test_no_mailbox_because_no_exchange_plan() -> None:
    async with tenant(person_fields={"licenses": (), "mailbox": "none"}) as probe:
        f = await run(probe, MAILBOX, Client.OUTLOOK)
    assert f.status is Status.FAIL and f.evidence["problem"] == "no-mailbox"
    assert f.evidence["because"] == "no-exchange-plan"
    assert f.evidence["licence_problem"] == "no-exchange-plan"
    assert "because no licence" in f.summary


async def test_no_mailbox_with_a_licence() -> None:
    async with tenant(person_fields={"mailbox": "none"}) as probe:
        f = await run(probe, MAILBOX, Client.OUTLOOK)
    assert f.status is Status.FAIL and f.evidence["problem"] == "no-mailbox"
    assert "because" not in f.evidence


async def test_mailbox_without_exchange_manage_as_app() -> None:
    async with tenant(app={"exo_permissions": ()}) as probe:
        f = await run(probe, MAILBOX, Client.OUTLOOK)
    assert f.status is Status.ERROR and f.evidence["problem"] == "permission-missing"
    assert f.evidence["permission"] == "Exchange.ManageAsApp"
    assert "Office 365 Exchange Online" in f.evidence["grant_where"]
    assert f.evidence["requests"] == [
        f"POST https://outlook.office365.com/adminapi/beta/{probe.world.scenario.tenant.tenant_id}"  # type: ignore[union-attr]
        "/InvokeCommand Get-CASMailbox"
    ]


async def test_mailbox_without_an_entra_role() -> None:
    async with tenant(app={"directory_roles": ()}) as probe:
        f = await run(probe, MAILBOX, Client.OUTLOOK)
    assert f.status is Status.ERROR and f.evidence["problem"] == "permission-missing"
    assert f.evidence["permission"] == "Global Reader"
    assert "Roles and administrators" in f.evidence["grant_where"]


# --- tenant.devices ---------------------------------------------------------------------------


async def test_devices_pass() -> None:
    async with tenant() as probe:
        f = await run(probe, DEVICES, Client.MOBILE)
    assert f.status is Status.PASS
    assert f.evidence["devices"][0]["state"] == "Allowed"
    assert f.evidence["default_access_level"] == "Allow"
    assert "Ana's iPhone" in f.summary


async def test_devices_none_yet() -> None:
    async with tenant(person_fields={"devices": ()}, default_access_level="Quarantine") as probe:
        f = await run(probe, DEVICES, Client.MOBILE)
    assert f.status is Status.PASS and f.evidence["devices"] == []
    assert f.summary.startswith("No phone has synced")
    assert "quarantined by the organisation's default" in f.summary


async def test_device_quarantined_by_the_org_default() -> None:
    async with tenant(default_access_level="Quarantine") as probe:
        f = await run(probe, DEVICES, Client.MOBILE)
    assert f.status is Status.FAIL and f.evidence["problem"] == "device-quarantined"
    device = f.evidence["devices"][0]
    assert (device["state"], device["reason"], device["device_id"]) == (
        "Quarantined",
        "Global",
        IPHONE_ID,
    )
    assert f.evidence["default_access_level"] == "Quarantine"
    assert f.evidence["matched_rule"] is None
    assert f.remediation is not None
    assert "default for new phones is Quarantine" in f.summary


async def test_device_quarantined_by_a_named_rule() -> None:
    rule = DeviceAccessRule(
        characteristic="DeviceType", query_string="iPhone", access_level="Quarantine"
    )
    async with tenant(device_rules=(rule,)) as probe:
        f = await run(probe, DEVICES, Client.MOBILE)
    assert f.evidence["problem"] == "device-quarantined"
    assert f.evidence["matched_rule"] == "iPhone (DeviceType)"
    assert "device access rule iPhone (DeviceType)" in f.summary


async def test_device_blocked_for_this_mailbox() -> None:
    cas = CasSettings(active_sync_blocked_device_ids=(IPHONE_ID,))
    async with tenant(person_fields={"cas": cas}) as probe:
        f = await run(probe, DEVICES, Client.MOBILE)
    assert f.status is Status.FAIL and f.evidence["problem"] == "device-blocked"
    assert f.evidence["devices"][0]["reason"] == "Individual"
    assert f.remediation is None  # a block is a decision; the next steps say who decides
    assert "blocked" in f.summary


async def test_devices_skip_without_a_mailbox() -> None:
    async with tenant(person_fields={"mailbox": "none"}) as probe:
        f = await run(probe, DEVICES, Client.MOBILE)
    assert f.status is Status.SKIP and "no Exchange Online mailbox" in f.summary


async def test_devices_error_without_exchange_manage_as_app() -> None:
    async with tenant(app={"exo_permissions": ()}) as probe:
        f = await run(probe, DEVICES, Client.MOBILE)
    assert f.status is Status.ERROR and f.evidence["problem"] == "permission-missing"
    assert f.evidence["permission"] == "Exchange.ManageAsApp"


def test_devices_only_for_phones() -> None:
    assert DEVICES.applies_to(Client.MOBILE) and not DEVICES.applies_to(Client.IMAP)


# --- tenant.signins ---------------------------------------------------------------------------


def _signin(code: int, minutes: int, **fields: Any) -> SignInEvent:
    return SignInEvent(upn=ANA, error_code=code, minutes_ago=minutes, **fields)


async def test_signins_pass() -> None:
    async with tenant(signins=(_signin(0, 10), _signin(0, 70))) as probe:
        f = await run(probe, SIGNINS)
    assert f.status is Status.PASS and f.evidence["failures"] == []
    assert "(2 succeeded)" in f.summary


async def test_signins_wrong_password_still_failing() -> None:
    events = (
        *(
            _signin(
                50126, m, client_app_used="IMAP4", failure_reason="Invalid username or password"
            )
            for m in (5, 15, 25)
        ),
        _signin(0, 600),
    )
    async with tenant(signins=events) as probe:
        f = await run(probe, SIGNINS, Client.IMAP)
    assert f.status is Status.FAIL and f.evidence["problem"] == "signin-failures"
    assert f.evidence["top_code"] == 50126 and f.evidence["still_failing"] is True
    assert len(f.evidence["failures"]) == 3  # paged at 2: three pages followed
    assert "password (or the user name) was wrong" in f.summary and "IMAP4" in f.summary
    assert "Type the password again" in f.next_steps[0]


async def test_signins_blocked_by_conditional_access_names_the_policy() -> None:
    policy = AppliedPolicy(
        id="p-legacy", display_name="Block legacy authentication", result="failure"
    )
    event = _signin(
        53003,
        20,
        client_app_used="Exchange ActiveSync",
        conditional_access_status="failure",
        applied_policies=(policy,),
    )
    async with tenant(signins=(event,)) as probe:
        f = await run(probe, SIGNINS, Client.MOBILE)
    assert f.evidence["top_code"] == 53003
    assert f.evidence["policy"] == "Block legacy authentication"
    assert f.evidence["failures"][0]["policy"] == "Block legacy authentication"
    assert "Block legacy authentication" in f.summary


async def test_signins_failures_then_success_is_a_warning() -> None:
    events = (_signin(0, 2), _signin(50076, 30), _signin(50076, 40))
    async with tenant(signins=events) as probe:
        f = await run(probe, SIGNINS)
    assert f.status is Status.WARN and f.evidence["still_failing"] is False
    assert f.evidence["top_code"] == 50076
    assert "multi-factor" in f.summary
    assert any("latest sign-in succeeded" in s for s in f.next_steps)


async def test_signins_ignore_other_resources() -> None:
    teams = _signin(50126, 5, resource_display_name="Microsoft Teams", resource_id="teams-id")
    async with tenant(signins=(teams,)) as probe:
        f = await run(probe, SIGNINS)
    assert f.status is Status.PASS


async def test_signins_of_another_app_do_not_explain_this_one() -> None:
    imap = tuple(_signin(53003, m, client_app_used="IMAP4") for m in (5, 15))
    locked = _signin(50053, 25, client_app_used="IMAP4")
    async with tenant(signins=imap) as probe:
        outlook = await run(probe, SIGNINS, Client.OUTLOOK)
        imap_app = await run(probe, SIGNINS, Client.IMAP)
    assert outlook.status is Status.PASS and outlook.evidence["other_apps_failing"] == ["IMAP4"]
    assert "other apps did fail (IMAP4)" in outlook.summary
    assert imap_app.status is Status.FAIL and imap_app.evidence["top_code"] == 53003
    async with tenant(signins=(locked,)) as probe:  # the account itself: every app
        f = await run(probe, SIGNINS, Client.OUTLOOK)
    assert f.status is Status.FAIL and f.evidence["top_code"] == 50053


async def test_disabled_account_refusals_are_history_once_it_is_enabled() -> None:
    refused = tuple(_signin(50057, m, client_app_used="IMAP4") for m in (5, 15))
    async with tenant(signins=refused) as probe:  # ana's account is enabled in this tenant
        f = await run(probe, SIGNINS, Client.IMAP)
    assert f.status is Status.WARN and f.evidence["still_failing"] is False
    assert any("enabled now" in s for s in f.next_steps)


async def test_signins_need_a_premium_tenant() -> None:
    async with tenant(premium=False) as probe:
        f = await run(probe, SIGNINS)
    assert f.status is Status.ERROR and f.evidence["problem"] == "permission-missing"
    assert f.evidence["permission"] == "Microsoft Entra ID P1 or P2"


async def test_signins_permission_missing() -> None:
    async with tenant(app=without("AuditLog.Read.All")) as probe:
        f = await run(probe, SIGNINS)
    assert f.evidence["problem"] == "permission-missing"
    assert f.evidence["permission"] == "AuditLog.Read.All"
    assert "Directory.Read.All" in f.evidence["grant_where"]


async def test_signins_without_directory_read_name_that_permission() -> None:
    async with tenant(app=without("Directory.Read.All")) as probe:
        f = await run(probe, SIGNINS)
    assert f.evidence["problem"] == "permission-missing"
    assert f.evidence["permission"] == "Directory.Read.All"


# --- tenant.service_health --------------------------------------------------------------------


async def test_service_health_pass() -> None:
    resolved = ServiceIssue(
        id="EX100001", title="Old problem", is_resolved=True, status="serviceRestored"
    )
    async with tenant(issues=(resolved,)) as probe:
        f = await run(probe, HEALTH)
    assert f.status is Status.PASS and f.evidence["issues"] == []


async def test_service_incident_for_this_app() -> None:
    issue = ServiceIssue(
        id="EX123456", title="Users can't sync email on mobile devices with Exchange ActiveSync"
    )
    async with tenant(issues=(issue,)) as probe:
        f = await run(probe, HEALTH, Client.MOBILE)
    assert f.status is Status.FAIL and f.evidence["problem"] == "service-incident"
    assert f.evidence["issues"][0]["id"] == "EX123456"
    assert f.evidence["issues"][0]["matches_client"] is True
    assert "EX123456" in f.summary


async def test_incident_for_another_app_is_a_warning() -> None:
    issue = ServiceIssue(id="EX222222", title="Users may be unable to connect with IMAP clients")
    async with tenant(issues=(issue,)) as probe:
        f = await run(probe, HEALTH, Client.MOBILE)
    assert f.status is Status.WARN and f.evidence["problem"] == "service-advisory"
    assert f.evidence["issues"][0]["matches_client"] is False


async def test_service_advisory() -> None:
    issue = ServiceIssue(id="EX333333", title="Delays in message trace", classification="advisory")
    async with tenant(issues=(issue,)) as probe:
        f = await run(probe, HEALTH)
    assert f.status is Status.WARN and f.evidence["problem"] == "service-advisory"
    assert "EX333333" in f.summary


async def test_service_health_permission_missing() -> None:
    async with tenant(app=without("ServiceHealth.Read.All")) as probe:
        f = await run(probe, HEALTH)
    assert f.status is Status.ERROR and f.evidence["permission"] == "ServiceHealth.Read.All"


# --- across checks ------------------------------------------------------------------------------


async def test_throttled_past_the_deadline_is_an_error_finding_in_time() -> None:
    throttle = Throttle(service="graph", path="/users/", times=-1, retry_after=60)
    async with tenant(throttles=(throttle,)) as probe:
        ctx = probe.context()
        ctx.deadline = time.monotonic() + 10
        started = time.monotonic()
        f = await probe.run(ACCOUNT, ctx=ctx)
    assert time.monotonic() - started < 3
    assert f.status is Status.ERROR and f.evidence["problem"] == "tenant-unavailable"
    assert f.evidence["retry_after_s"] == 60
    assert "throttling" in f.summary


async def test_shared_reads_happen_once_per_diagnosis() -> None:
    async with tenant() as probe:
        ctx = probe.context(client=Client.MOBILE)
        checks = [*identity.CHECKS, *mailbox.CHECKS, *activity.CHECKS]
        findings = await run_checks(ctx, checks, deadline=20)
        graph = [r.path for r in probe.world.requests("graph.microsoft.com")]
        exo = [r for r in probe.world.requests("outlook.office365.com") if "/adminapi/" in r.path]
    assert [f.status for f in findings] == [Status.PASS] * 6
    assert probe.world.tenant is not None and probe.world.tenant.writes == []  # read only
    assert (
        sum(p.startswith(f"/v1.0/users/{ANA}?") for p in graph) == 1
    )  # account, licence, sign-ins
    # Get-CASMailbox once for tenant.mailbox and tenant.devices; plus the three device reads.
    assert len(exo) == 4


async def test_without_tenant_settings_every_tenant_check_is_skipped_with_the_reason() -> None:
    async with checked(scenario()) as probe:  # no tenant data: no credentials in the settings
        ctx = probe.context(client=Client.MOBILE)
        checks = [*identity.CHECKS, *mailbox.CHECKS, *activity.CHECKS]
        findings = await run_checks(ctx, checks, deadline=5)
    assert {f.status for f in findings} == {Status.SKIP}
    assert all("MAILFIX_TENANT_ID" in f.summary for f in findings)


async def test_service_incident_matching_the_symptom_comes_first() -> None:
    access = ServiceIssue(id="EX400001", title="Users may be unable to access mailboxes")
    sending = ServiceIssue(id="EX400002", title="Users may be unable to send email")
    async with tenant(issues=(access, sending)) as probe:
        ctx = probe.context(client=Client.OUTLOOK)
        ctx = type(ctx)(**{**ctx.__dict__, "symptom": "I can't send mail"})
        f = await probe.run(HEALTH, ctx=ctx)
    assert f.status is Status.FAIL
    assert [i["id"] for i in f.evidence["issues"]] == ["EX400002", "EX400001"]
    assert f.evidence["issues"][0]["matches_symptom"] is True
    assert "matches what the person describes: EX400002" in f.summary
