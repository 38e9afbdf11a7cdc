"""Every executor over real HTTP against the sandbox tenant: apply, dry run, idempotence,
the on-premises refusal, preconditions, and a missing permission.

The sandbox tenant changes its state on writes (`world.tenant.writes` lists them), so "nothing
changed" is checked on the tenant itself, not only on what mailfix says it sent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from _checkworld import checked, scenario

from checks.cloud import hosts_for
from checks.models import Remediation, Status
from checks.remedies import (
    FixResult,
    Outcome,
    apply,
    approval_executor,
    canonical,
    plan,
    propose,
)
from checks.remedies.verify import recheck
from checks.settings import Cloud
from checks.tenant import TenantClient
from sandbox.tenant.build import IPHONE_ID, person, tenant_data
from sandbox.tenant.models import (
    EXCHANGE_S_ENTERPRISE,
    MAILFIX_GRAPH_PERMISSIONS,
    SKU_E3,
    TEAMS1,
    AssignedLicense,
    CasSettings,
    Throttle,
)
from sandbox.tenant.state import TenantState
from sandbox.world import World

ANA = "ana@contoso.com"
ANA_ID = person().id
EXO_PLAN = EXCHANGE_S_ENTERPRISE[0]


@dataclass
class Env:
    world: World
    client: TenantClient

    @property
    def tenant(self) -> TenantState:
        assert self.world.tenant is not None
        return self.world.tenant

    def fresh_client(self) -> TenantClient:
        """Another client on the same seam (as a second replica would have)."""
        return TenantClient(self.client.settings, self.client.net, self.client.cloud)


@asynccontextmanager
async def tenant(**fields: Any) -> AsyncIterator[Env]:
    sc = scenario().model_copy(update={"tenant": tenant_data(**fields)})
    async with checked(sc) as probe:
        yield Env(probe.world, TenantClient(probe.net.settings, probe.net, hosts_for(sc.cloud)))


def writes_in(labels: list[str]) -> list[str]:
    """The write requests among a client's `last_requests`."""
    return [
        label
        for label in labels
        if label.startswith("PATCH ")
        or (label.startswith("POST https://graph.") and "/evaluate" not in label)
        or " Set-" in label
    ]


async def apply_twice(env: Env, fix: Remediation) -> tuple[FixResult, FixResult]:
    """Dry run (nothing changes), apply, apply again (already done, no write sent)."""
    dry = await apply(fix, env.client, dry_run=True)
    assert dry.outcome is Outcome.WOULD_APPLY, dry.detail
    assert dry.dry_run and dry.status is None
    assert env.tenant.writes == [], "a dry run changed the tenant"
    assert writes_in(env.client.last_requests) == []
    first = await apply(fix, env.client)
    assert first.outcome is Outcome.APPLIED, first.detail
    assert first.sent == dry.sent, "the dry run showed something else than what was sent"
    assert len(env.tenant.writes) == 1
    again_client = env.fresh_client()
    second = await apply(fix, again_client)
    assert second.outcome is Outcome.ALREADY_DONE, second.detail
    assert second.sent == [] and second.status is None
    assert writes_in(again_client.last_requests) == []
    assert len(env.tenant.writes) == 1, "applying twice changed the tenant twice"
    # The person hears the same as after the change (the state holds, whoever made it); the
    # helpdesk's detail says nothing was sent.
    assert second.message == first.message
    assert "already" in second.detail and "nothing was sent" in second.detail
    return first, second


# --- each executor ------------------------------------------------------------------------------


async def test_enable_activesync() -> None:
    async with tenant(person_fields={"cas": CasSettings(active_sync_enabled=False)}) as env:
        first, _ = await apply_twice(env, propose.enable_protocol(ANA, "ActiveSync"))
        user = env.tenant.find_user(ANA)
        assert user is not None and user.cas.active_sync_enabled is True
        assert first.status == 200
        assert first.sent[0].parameters == {"Identity": ANA, "ActiveSyncEnabled": True}
        assert first.message == (
            "ActiveSync is switched on for your mailbox — add the account again on your phone."
        )
        assert first.verify == ["tenant.mailbox"]
        assert first.subject == ANA
        assert any("Get-CASMailbox" in r for r in first.reads)


async def test_enable_smtp_auth_when_the_mailbox_follows_an_org_default_that_disables_it() -> None:
    async with tenant(smtp_client_authentication_disabled=True) as env:  # mailbox: None
        fix = propose.enable_protocol(ANA, "SmtpClientAuth")
        dry = await apply(fix, env.client, dry_run=True)
        assert "organisation's setting" in dry.detail
        first, _ = await apply_twice(env, fix)
        assert first.sent[0].parameters == {
            "Identity": ANA,
            "SmtpClientAuthenticationDisabled": False,
        }
        user = env.tenant.find_user(ANA)
        assert user is not None and user.cas.smtp_client_authentication_disabled is False


async def test_smtp_auth_already_on_through_the_organisation_is_left_alone() -> None:
    async with tenant(smtp_client_authentication_disabled=False) as env:  # mailbox: None
        result = await apply(propose.enable_protocol(ANA, "SmtpClientAuth"), env.client)
        assert result.outcome is Outcome.ALREADY_DONE
        assert "organisation's setting" in result.detail
        assert any(r.endswith("Get-TransportConfig") for r in result.reads)
        assert env.tenant.writes == []


async def test_release_a_quarantined_phone() -> None:
    async with tenant(default_access_level="Quarantine") as env:
        user = env.tenant.find_user(ANA)
        assert user is not None
        before = env.tenant.device_access(user, user.devices[0])
        assert before.state == "Quarantined"
        first, _ = await apply_twice(env, propose.release_device(ANA, IPHONE_ID))
        assert first.sent[0].parameters["ActiveSyncAllowedDeviceIDs"] == {
            "@odata.type": "#Exchange.GenericHashTable",
            "add": IPHONE_ID,
        }
        user = env.tenant.find_user(ANA)
        assert user is not None
        assert env.tenant.device_access(user, user.devices[0]).state == "Allowed"
        assert first.verify == ["tenant.devices"]


async def test_reenable_a_switched_off_exchange_plan_keeps_the_other_plans_off() -> None:
    licence = AssignedLicense(sku_id=SKU_E3.sku_id, disabled_plans=(EXO_PLAN, TEAMS1[0]))
    async with tenant(person_fields={"licenses": (licence,)}) as env:
        # the finding saw only the Exchange plan off; the executor keeps Teams off as it is now
        fix = propose.enable_exchange_plan(ANA_ID, SKU_E3.sku_id, EXO_PLAN, [])
        first, _ = await apply_twice(env, fix)
        assert first.sent[0].body == {
            "addLicenses": [{"skuId": SKU_E3.sku_id, "disabledPlans": [TEAMS1[0]]}],
            "removeLicenses": [],
        }
        assert first.status == 200
        user = env.tenant.find_user(ANA)
        assert user is not None and user.licenses[0].disabled_plans == (TEAMS1[0],)
        assert env.tenant.has_exo_mailbox(user)
        assert first.subject == ANA


async def test_assign_a_licence() -> None:
    async with tenant(person_fields={"licenses": ()}) as env:
        first, _ = await apply_twice(env, propose.assign_license(ANA_ID, SKU_E3.sku_id))
        user = env.tenant.find_user(ANA)
        assert user is not None and [lic.sku_id for lic in user.licenses] == [SKU_E3.sku_id]
        assert first.message.startswith("You have a licence that includes a mailbox")


async def test_enable_a_cloud_account() -> None:
    async with tenant(person_fields={"account_enabled": False}) as env:
        fix = propose.enable_account(ANA_ID, ANA)
        first, _ = await apply_twice(env, fix)
        assert first.status == 204
        assert first.sent[0].method == "PATCH"
        assert first.sent[0].body == {"accountEnabled": True}
        assert first.hard_to_undo
        user = env.tenant.find_user(ANA)
        assert user is not None and user.account_enabled


async def test_restore_a_soft_deleted_user() -> None:
    async with tenant(person_fields={"deleted_days_ago": 3}) as env:
        assert env.tenant.find_user(ANA) is None
        first, second = await apply_twice(env, propose.restore_user(ANA_ID, ANA))
        assert first.status == 200 and first.hard_to_undo
        assert env.tenant.find_user(ANA) is not None
        assert "not deleted" in second.detail


# --- refusals ------------------------------------------------------------------------------------


async def test_synced_accounts_are_enabled_and_restored_on_premises() -> None:
    async with tenant(person_fields={"account_enabled": False, "synced": True}) as env:
        for dry_run in (True, False):
            result = await apply(propose.enable_account(ANA_ID, ANA), env.client, dry_run=dry_run)
            assert result.outcome is Outcome.REFUSED
            assert "on-premises Active Directory" in result.detail
            assert "Entra Connect" in result.detail
            assert result.sent == []
        assert env.tenant.writes == []
        assert writes_in(env.client.last_requests) == []
    async with tenant(person_fields={"deleted_days_ago": 2, "synced": True}) as env:
        result = await apply(propose.restore_user(ANA_ID, ANA), env.client)
        assert result.outcome is Outcome.REFUSED
        assert "Recycle Bin" in result.detail
        assert env.tenant.writes == []


async def test_a_synced_users_licence_is_changed_in_the_cloud() -> None:
    async with tenant(person_fields={"licenses": (), "synced": True}) as env:
        result = await apply(propose.assign_license(ANA_ID, SKU_E3.sku_id), env.client)
        assert result.outcome is Outcome.APPLIED, result.detail


async def test_no_usage_location_blocks_licensing_and_nothing_is_sent() -> None:
    async with tenant(person_fields={"licenses": (), "usage_location": None}) as env:
        result = await apply(propose.assign_license(ANA_ID, SKU_E3.sku_id), env.client)
        assert result.outcome is Outcome.REFUSED
        assert "usage location" in result.detail
        assert env.tenant.writes == []


async def test_phone_on_the_blocked_list_or_unknown_is_not_let_in() -> None:
    blocked = CasSettings(active_sync_blocked_device_ids=(IPHONE_ID,))
    async with tenant(person_fields={"cas": blocked}) as env:
        result = await apply(propose.release_device(ANA, IPHONE_ID), env.client)
        assert result.outcome is Outcome.REFUSED and "blocked" in result.detail
        unknown = await apply(propose.release_device(ANA, "NOSUCHPHONE0001"), env.client)
        assert unknown.outcome is Outcome.REFUSED and "No phone" in unknown.detail
        assert env.tenant.writes == []


async def test_no_exchange_online_mailbox_is_refused() -> None:
    async with tenant(person_fields={"mailbox": "onprem"}) as env:
        result = await apply(propose.enable_protocol(ANA, "Imap"), env.client)
        assert result.outcome is Outcome.REFUSED, result.detail
        assert "on-premises" in result.detail
        assert env.tenant.writes == []


async def test_a_user_gone_for_good_cannot_be_restored() -> None:
    async with tenant() as env:
        result = await apply(propose.restore_user("0" * 8 + "-dead-user", ANA), env.client)
        assert result.outcome is Outcome.REFUSED and "30 days" in result.detail


# --- permissions -------------------------------------------------------------------------------


async def test_missing_graph_permission_is_a_clear_failure() -> None:
    reads_only = tuple(
        p
        for p in MAILFIX_GRAPH_PERMISSIONS
        if p not in ("User.EnableDisableAccount.All", "User.ReadWrite.All")
    )
    async with tenant(
        person_fields={"account_enabled": False}, app={"graph_permissions": reads_only}
    ) as env:
        result = await apply(propose.enable_account(ANA_ID, ANA), env.client)
        assert result.outcome is Outcome.FAILED
        assert result.status == 403
        assert result.permission == "User.EnableDisableAccount.All"
        assert result.grant_where and "admin consent" in result.grant_where.lower()
        assert "User.EnableDisableAccount.All" in result.detail
        assert result.sent and result.sent[0].method == "PATCH"  # it was tried, and refused
        assert result.message == "mailfix could not make the change; the helpdesk has the details."
        assert env.tenant.writes == []


async def test_missing_exchange_role_is_a_clear_failure() -> None:
    async with tenant(
        person_fields={"cas": CasSettings(imap_enabled=False)},
        app={"directory_roles": ("Global Reader",)},
    ) as env:
        dry = await apply(propose.enable_protocol(ANA, "Imap"), env.client, dry_run=True)
        assert dry.outcome is Outcome.WOULD_APPLY  # reading is allowed to a Global Reader
        result = await apply(propose.enable_protocol(ANA, "Imap"), env.client)
        assert result.outcome is Outcome.FAILED
        assert result.permission == "Exchange Recipient Administrator"
        assert result.status == 403
        assert env.tenant.writes == []


# --- plans and re-checks ----------------------------------------------------------------------


async def test_plan_with_a_client_names_its_tenant() -> None:
    async with tenant() as env:
        [req] = plan(propose.enable_protocol(ANA, "Pop"), env.client)
        assert env.tenant.tenant_id in req.url
        assert env.tenant.writes == []


async def test_the_affected_check_passes_after_the_fix() -> None:
    async with tenant(person_fields={"cas": CasSettings(active_sync_enabled=False)}) as env:
        fix = propose.enable_protocol(ANA, "ActiveSync")
        [before] = await recheck(fix, ANA, settings=env.client.settings, net=env.client.net)
        assert before.check == "tenant.mailbox" and before.status is Status.FAIL
        assert (await apply(fix, env.client)).outcome is Outcome.APPLIED
        [after] = await recheck(fix, ANA, settings=env.client.settings, net=env.client.net)
        assert after.status is Status.PASS, after.summary


# --- throttling and the approval flow's executor ---------------------------------------------


async def test_throttled_past_the_retries_is_a_failure_that_says_to_try_later() -> None:
    async with tenant(
        person_fields={"cas": CasSettings(pop_enabled=False)},
        throttles=(Throttle(service="exo", path="set-casmailbox", times=-1, retry_after=0),),
    ) as env:
        result = await apply(propose.enable_protocol(ANA, "Pop"), env.client)
        assert result.outcome is Outcome.FAILED
        assert result.status == 429
        assert "Try again in a little while" in result.detail
        assert env.tenant.writes == []
        sets = [r for r in env.client.last_requests if r.endswith("Set-CASMailbox")]
        assert len(sets) == 4  # the first try and three retries, then it gave up


async def test_approval_executor_reports_holds_and_an_account() -> None:
    async with tenant(person_fields={"account_enabled": False}) as env:
        run = approval_executor(env.client.settings, net=env.client.net)
        fix = propose.enable_account(ANA_ID, ANA)
        holds, account = await run(fix)
        assert holds
        assert account["outcome"] == "applied"
        assert account["message"].startswith("Your account can sign in")
        assert account["sent_lines"] == [
            f'PATCH https://graph.microsoft.com/v1.0/users/{ANA_ID} {{"accountEnabled":true}}'
        ]
        assert account["hard_to_undo"] is True
        json.dumps(account)  # JSON-able for the audit log
        holds, account = await run(fix)  # a resumed apply after a crash only reads
        assert holds and account["outcome"] == "already-done" and account["sent"] == []
        assert len(env.tenant.writes) == 1
        bad = Remediation(id="wipe-tenant", title="t", api="graph", action="x")
        holds, account = await run(bad)
        assert not holds and account["outcome"] == "failed"
        assert "unknown fix" in account["detail"]


# --- every protocol switch, and the rest of the permission and ordering paths -----------------

SWITCH_FIELDS = {
    "ActiveSync": ("active_sync_enabled", False, True),
    "Imap": ("imap_enabled", False, True),
    "Pop": ("pop_enabled", False, True),
    "Mapi": ("mapi_enabled", False, True),
    "Ews": ("ews_enabled", False, True),
    "Owa": ("owa_enabled", False, True),
    "OutlookMobile": ("outlook_mobile_enabled", False, True),
    "SmtpClientAuth": ("smtp_client_authentication_disabled", True, False),
}


@pytest.mark.parametrize("protocol", list(propose.PROTOCOLS))
async def test_every_protocol_switch_is_set_and_then_left_alone(protocol: str) -> None:
    field, off, on = SWITCH_FIELDS[protocol]
    async with tenant(person_fields={"cas": CasSettings(**{field: off})}) as env:
        first, second = await apply_twice(env, propose.enable_protocol(ANA, protocol))
        user = env.tenant.find_user(ANA)
        assert user is not None and getattr(user.cas, field) is on
        assert first.message.startswith(propose.PROTOCOLS[protocol].short)
        assert second.outcome is Outcome.ALREADY_DONE


async def test_without_exchange_manage_as_app_the_permission_is_named() -> None:
    async with tenant(app={"exo_permissions": ()}) as env:
        result = await apply(propose.enable_protocol(ANA, "Imap"), env.client, dry_run=True)
        assert result.outcome is Outcome.FAILED
        assert result.permission == "Exchange.ManageAsApp"
        assert result.grant_where and "Office 365 Exchange Online" in result.grant_where
        assert result.sent == []  # it failed while reading: nothing was tried
        assert "checking the current state" in result.detail


async def test_a_synced_account_already_enabled_is_already_done_not_refused() -> None:
    async with tenant(person_fields={"synced": True}) as env:
        result = await apply(propose.enable_account(ANA_ID, ANA), env.client)
        assert result.outcome is Outcome.ALREADY_DONE
        assert env.tenant.writes == []


async def test_a_gcc_high_tenant_is_changed_on_the_us_government_hosts() -> None:
    data = tenant_data(person_fields={"cas": CasSettings(imap_enabled=False)}, others=())
    sc = scenario(cloud=Cloud.GCCHIGH).model_copy(update={"tenant": data})
    async with checked(sc) as probe:
        client = TenantClient(probe.net.settings, probe.net, hosts_for(Cloud.GCCHIGH))
        result = await apply(propose.enable_protocol(ANA, "Imap"), client)
        assert result.outcome is Outcome.APPLIED, result.detail
        assert result.sent[0].url.startswith("https://outlook.office365.us/adminapi/beta/")
        licence = await apply(propose.assign_license(ANA_ID, SKU_E3.sku_id), client, dry_run=True)
        assert licence.outcome is Outcome.ALREADY_DONE
        assert all(r.startswith("GET https://graph.microsoft.us/v1.0/") for r in licence.reads)
        assert probe.world.tenant is not None
        assert probe.world.tenant.writes == ["Set-CASMailbox ana@contoso.com ImapEnabled=True"]


# --- several protocols in one fix (a finding that lists several switches off) -----------------

MAPI_EWS = CasSettings(mapi_enabled=False, ews_enabled=False)


async def test_several_protocols_are_switched_on_in_one_call_once() -> None:
    async with tenant(person_fields={"cas": MAPI_EWS}) as env:
        fix = propose.enable_protocol(ANA, protocols=["Mapi", "Ews"])
        first, second = await apply_twice(env, fix)
        assert env.tenant.writes == [
            "Set-CASMailbox ana@contoso.com MAPIEnabled=True EwsEnabled=True"
        ]
        user = env.tenant.find_user(ANA)
        assert user is not None and user.cas.mapi_enabled and user.cas.ews_enabled
        [sent] = first.sent
        assert sent.parameters == {"Identity": ANA, "MAPIEnabled": True, "EwsEnabled": True}
        assert first.status == 200
        assert first.idempotency_key == "enable-protocol:ana@contoso.com:Ews+Mapi"
        assert first.message == (
            "Outlook and Exchange Web Services are switched on for your mailbox — restart "
            "Outlook and restart your mail app."
        )
        assert first.detail == (
            "Switched MAPI (Outlook for Windows) and Exchange Web Services on for "
            "ana@contoso.com (Set-CASMailbox -MAPIEnabled -EwsEnabled)."
        )
        assert second.message.startswith("Outlook and Exchange Web Services are switched on")
        assert "are already on for ana@contoso.com; nothing was sent" in second.detail
        # the same set in another order (or repeated) is the same fix
        again = propose.enable_protocol(ANA, protocols=["Ews", "Mapi", "Ews"])
        assert again == fix
        assert (await apply(again, env.fresh_client())).outcome is Outcome.ALREADY_DONE
        assert len(env.tenant.writes) == 1


async def test_the_dry_run_of_several_protocols_shows_the_exact_body() -> None:
    async with tenant(person_fields={"cas": MAPI_EWS}) as env:
        fix = propose.enable_protocol(ANA, protocols=["Mapi", "Ews"])
        dry = await apply(fix, env.client, dry_run=True)
        assert dry.outcome is Outcome.WOULD_APPLY
        assert [r.line() for r in dry.sent] == [
            f"POST https://outlook.office365.com/adminapi/beta/{env.tenant.tenant_id}/"
            'InvokeCommand {"CmdletInput":{"CmdletName":"Set-CASMailbox","Parameters":'
            '{"Identity":"ana@contoso.com","MAPIEnabled":true,"EwsEnabled":true}}}'
        ]
        assert dry.sent == plan(fix, env.client)
        assert dry.detail == (
            "Dry run: nothing was sent. The precondition holds (MAPI (Outlook for Windows): it "
            "is off for ana@contoso.com; Exchange Web Services: it is off for ana@contoso.com); "
            "applying would do this: Switched MAPI (Outlook for Windows) and Exchange Web "
            "Services on for ana@contoso.com (Set-CASMailbox -MAPIEnabled -EwsEnabled)."
        )
        assert any(r.endswith("Get-CASMailbox") for r in dry.reads)
        assert env.tenant.writes == [] and writes_in(env.client.last_requests) == []


async def test_a_partly_on_mailbox_gets_only_the_switches_still_off() -> None:
    async with tenant(person_fields={"cas": CasSettings(mapi_enabled=False)}) as env:  # EWS on
        fix = propose.enable_protocol(ANA, protocols=["Mapi", "Ews"])
        dry = await apply(fix, env.client, dry_run=True)
        assert [r.parameters for r in dry.sent] == [{"Identity": ANA, "MAPIEnabled": True}]
        assert "Exchange Web Services is already on and is left alone" in dry.detail
        first = await apply(fix, env.client)
        assert first.outcome is Outcome.APPLIED
        assert first.sent == dry.sent
        assert env.tenant.writes == ["Set-CASMailbox ana@contoso.com MAPIEnabled=True"]
        assert first.detail == (
            "Switched MAPI (Outlook for Windows) on for ana@contoso.com (Set-CASMailbox "
            "-MAPIEnabled). Exchange Web Services was already on."
        )
        # the person hears that both are on now (they are)
        assert first.message.startswith("Outlook and Exchange Web Services are switched on")
        second = await apply(fix, env.fresh_client())
        assert second.outcome is Outcome.ALREADY_DONE and second.sent == []
        assert len(env.tenant.writes) == 1


async def test_smtp_auth_is_combined_with_imap_and_follows_the_organisation() -> None:
    # IMAP off on the mailbox; SMTP AUTH follows an organisation default that switches it off
    async with tenant(
        person_fields={"cas": CasSettings(imap_enabled=False)},
        smtp_client_authentication_disabled=True,
    ) as env:
        fix = propose.enable_protocol(ANA, protocols=["SmtpClientAuth", "Imap"])
        assert fix.operation == (
            'Set-CASMailbox -Identity "ana@contoso.com" -ImapEnabled $true '
            "-SmtpClientAuthenticationDisabled $false"
        )
        first, _ = await apply_twice(env, fix)
        assert first.sent[0].parameters == {
            "Identity": ANA,
            "ImapEnabled": True,
            "SmtpClientAuthenticationDisabled": False,
        }
        assert any(r.endswith("Get-TransportConfig") for r in first.reads)
    # SMTP AUTH already on through the organisation: only IMAP is sent
    async with tenant(person_fields={"cas": CasSettings(imap_enabled=False)}) as env:
        result = await apply(fix, env.client)
        assert [r.parameters for r in result.sent] == [{"Identity": ANA, "ImapEnabled": True}]
        assert "through the organisation's setting" in result.detail


async def test_a_proposal_stored_in_the_single_protocol_form_still_applies() -> None:
    stored = {
        "id": "enable-protocol",
        "title": "Switch IMAP on",
        "api": "exo",
        "action": "Set-CASMailbox",
        "params": {"mailbox": ANA, "protocol": "Imap"},
    }
    old = Remediation.model_validate(stored)
    assert canonical(old) == propose.enable_protocol(ANA, "Imap")
    assert canonical(old).idempotency_key == "enable-protocol:ana@contoso.com:Imap"
    # a set of one is built in the single-protocol form, so old and new are the same fix
    assert propose.enable_protocol(ANA, protocols=["Imap"]) == propose.enable_protocol(ANA, "Imap")
    async with tenant(person_fields={"cas": CasSettings(imap_enabled=False)}) as env:
        first, _ = await apply_twice(env, old)
        assert first.sent[0].parameters == {"Identity": ANA, "ImapEnabled": True}
        assert first.message == "IMAP is switched on for your mailbox — try your mail app again."
        assert env.tenant.writes == ["Set-CASMailbox ana@contoso.com ImapEnabled=True"]


async def test_the_mailbox_check_proposes_one_fix_for_mapi_and_ews_and_it_passes_after() -> None:
    async with tenant(person_fields={"cas": MAPI_EWS}) as env:
        probe = propose.enable_protocol(ANA, protocols=["Mapi", "Ews"])
        [before] = await recheck(probe, ANA, settings=env.client.settings, net=env.client.net)
        assert before.status is Status.FAIL
        assert before.evidence["protocols_off"] == ["Mapi", "Ews"]
        assert before.remediation == probe
        holds, account = await approval_executor(env.client.settings, net=env.client.net)(
            before.remediation
        )
        assert holds and account["outcome"] == "applied"
        assert len(env.tenant.writes) == 1
        [after] = await recheck(probe, ANA, settings=env.client.settings, net=env.client.net)
        assert after.status is Status.PASS, after.summary
        assert after.remediation is None


async def test_imap_and_smtp_auth_off_are_fixed_by_one_approval() -> None:
    cas = CasSettings(imap_enabled=False, smtp_client_authentication_disabled=True)
    async with tenant(person_fields={"cas": cas}) as env:
        probe = propose.enable_protocol(ANA, protocols=["Imap", "SmtpClientAuth"])
        [before] = await recheck(probe, ANA, settings=env.client.settings, net=env.client.net)
        assert before.evidence["protocols_off"] == ["Imap", "SmtpClientAuth"]
        assert before.remediation == probe
        result = await apply(before.remediation, env.client)
        assert result.outcome is Outcome.APPLIED
        assert env.tenant.writes == [
            "Set-CASMailbox ana@contoso.com ImapEnabled=True SmtpClientAuthenticationDisabled=False"
        ]
        [after] = await recheck(probe, ANA, settings=env.client.settings, net=env.client.net)
        assert after.status is Status.PASS, after.summary
