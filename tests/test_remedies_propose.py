"""The typed proposals: what, the exact operation and target, precondition, idempotency key."""

from __future__ import annotations

import json

import pytest

from checks.models import Finding, Remediation, Report, Status
from checks.remedies import propose


def test_enable_protocol_names_the_exact_cmdlet_and_switch() -> None:
    r = propose.enable_protocol("ana@contoso.com", "ActiveSync")
    assert r.id == "enable-protocol"
    assert r.api == "exo"
    assert r.action == "Set-CASMailbox"
    assert r.target == "ana@contoso.com"
    assert r.operation == 'Set-CASMailbox -Identity "ana@contoso.com" -ActiveSyncEnabled $true'
    assert r.idempotency_key == "enable-protocol:ana@contoso.com:ActiveSync"
    assert r.verify == ["tenant.mailbox"]
    assert not r.hard_to_undo
    assert r.precondition == (
        "The Exchange Online mailbox ana@contoso.com exists and Exchange ActiveSync (the "
        "phone's built-in mail app) is not already on for it."
    )


def test_smtp_auth_is_switched_on_by_clearing_the_disabled_flag() -> None:
    r = propose.enable_protocol("ana@contoso.com", "SmtpClientAuth")
    assert r.operation.endswith("-SmtpClientAuthenticationDisabled $false")


@pytest.mark.parametrize(
    ("protocol", "parameter"),
    [
        ("Imap", "ImapEnabled"),
        ("Pop", "PopEnabled"),
        ("Mapi", "MAPIEnabled"),
        ("Ews", "EwsEnabled"),
        ("Owa", "OWAEnabled"),
        ("OutlookMobile", "OutlookMobileEnabled"),
    ],
)
def test_every_protocol_maps_to_its_set_casmailbox_parameter(protocol: str, parameter: str) -> None:
    assert f"-{parameter} $true" in propose.enable_protocol("a@b.com", protocol).operation


def test_unknown_protocol_and_empty_target_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown protocol"):
        propose.enable_protocol("ana@contoso.com", "Gopher")
    with pytest.raises(ValueError, match="mailbox"):
        propose.enable_protocol(" ", "Imap")
    with pytest.raises(ValueError, match="device_id"):
        propose.release_device("ana@contoso.com", "")


def test_release_device_adds_to_the_allowed_list() -> None:
    r = propose.release_device("ana@contoso.com", "ApplF17XK2")
    assert r.operation == (
        'Set-CASMailbox -Identity "ana@contoso.com" -ActiveSyncAllowedDeviceIDs @{Add="ApplF17XK2"}'
    )
    assert r.idempotency_key == "release-device:ana@contoso.com:ApplF17XK2"
    assert r.verify == ["tenant.devices"]


def test_licence_builders_write_the_assign_license_body() -> None:
    plan = propose.enable_exchange_plan("u1", "sku-e3", "plan-exo", ["plan-exo", "plan-teams"])
    assert plan.api == "graph"
    assert plan.params["still_disabled"] == ["plan-teams"]
    assert plan.operation.startswith("POST /v1.0/users/u1/assignLicense ")
    body = json.loads(plan.operation.split(" ", 2)[2])
    assert body == {
        "addLicenses": [{"skuId": "sku-e3", "disabledPlans": ["plan-teams"]}],
        "removeLicenses": [],
    }
    assert "usage location" in plan.precondition
    lic = propose.assign_license("u1", "sku-e3")
    assert lic.idempotency_key == "assign-license:u1:sku-e3"
    assert json.loads(lic.operation.split(" ", 2)[2])["addLicenses"][0]["disabledPlans"] == []


def test_account_fixes_are_marked_hard_to_undo() -> None:
    enable = propose.enable_account("u1", "ana@contoso.com")
    restore = propose.restore_user("d1", "ana@contoso.com")
    assert enable.hard_to_undo and restore.hard_to_undo
    assert enable.operation == 'PATCH /v1.0/users/u1 {"accountEnabled": true}'
    assert restore.operation == "POST /v1.0/directory/deletedItems/d1/restore"
    assert "on-premises" in enable.precondition and "on-premises" in restore.precondition


def test_the_same_fix_has_the_same_key_and_different_fixes_differ() -> None:
    keys = {
        propose.enable_protocol("Ana@Contoso.com", "Imap").idempotency_key,
        propose.enable_protocol("ana@contoso.com", "Imap").idempotency_key,
    }
    assert len(keys) == 1
    others = {
        propose.enable_protocol("ana@contoso.com", "Pop").idempotency_key,
        propose.release_device("ana@contoso.com", "X").idempotency_key,
        propose.enable_account("u1", "ana@contoso.com").idempotency_key,
        propose.restore_user("u1", "ana@contoso.com").idempotency_key,
        propose.assign_license("u1", "s").idempotency_key,
        propose.enable_exchange_plan("u1", "s", "p", []).idempotency_key,
    }
    assert len(others | keys) == 7


def test_report_json_round_trips_and_old_remediations_still_read() -> None:
    finding = Finding(
        check="tenant.mailbox",
        status=Status.FAIL,
        summary="ActiveSync is off",
        remediation=propose.enable_protocol("ana@contoso.com", "ActiveSync"),
    )
    report = Report(
        address="ana@contoso.com", client="mobile", duration_ms=1, findings=[finding], causes=[]
    )
    back = Report.model_validate_json(report.to_json())
    assert back.finding("tenant.mailbox").remediation == finding.remediation
    # the shape stored before the proposal fields existed
    old = Remediation.model_validate(
        {
            "id": "enable-protocol",
            "title": "Switch ActiveSync on",
            "api": "exo",
            "action": "Set-CASMailbox",
            "params": {"mailbox": "ana@contoso.com", "protocol": "ActiveSync"},
        }
    )
    assert old.idempotency_key.startswith("enable-protocol:")
    assert old.idempotency_key == Remediation.model_validate(old.model_dump()).idempotency_key
    assert old.verify == [] and old.operation == ""


def test_restore_keeps_the_address_the_person_had() -> None:
    deleted_id = "5d927abc-1ea9-50eb-8abb-2848e1c35b87"
    r = propose.restore_user(deleted_id, "5d927abc1ea950eb8abb2848e1c35b87ana@contoso.com")
    assert r.params == {"deleted_id": deleted_id, "upn": "ana@contoso.com"}
    assert r.title == "Restore the deleted user ana@contoso.com"
    assert propose.restore_user(deleted_id, "ana@contoso.com") == r


def test_several_protocols_are_one_set_casmailbox_call() -> None:
    r = propose.enable_protocol("Ana@contoso.com", protocols=["Ews", "Mapi"])
    assert r.params == {"mailbox": "Ana@contoso.com", "protocols": ["Mapi", "Ews"]}
    assert r.operation == (
        'Set-CASMailbox -Identity "Ana@contoso.com" -MAPIEnabled $true -EwsEnabled $true'
    )
    assert r.title == (
        "Switch MAPI (Outlook for Windows) and Exchange Web Services on for Ana@contoso.com"
    )
    assert "are not already on" in r.precondition
    assert r.idempotency_key == "enable-protocol:ana@contoso.com:Ews+Mapi"
    assert r.verify == ["tenant.mailbox"]
    # the same set is the same fix, whatever the order or repeats; another set is another fix
    assert propose.enable_protocol("Ana@contoso.com", protocols=["Mapi", "Ews", "Mapi"]) == r
    other = propose.enable_protocol("ana@contoso.com", protocols=["Mapi", "Ews", "Owa"])
    assert other.idempotency_key == "enable-protocol:ana@contoso.com:Ews+Mapi+Owa"
    assert other.operation.endswith("-MAPIEnabled $true -EwsEnabled $true -OWAEnabled $true")
    smtp = propose.enable_protocol("a@b.com", protocols=["SmtpClientAuth", "Pop"])
    assert smtp.operation.endswith("-PopEnabled $true -SmtpClientAuthenticationDisabled $false")


def test_a_set_of_one_keeps_the_single_protocol_form() -> None:
    one = propose.enable_protocol("ana@contoso.com", protocols=["Imap"])
    assert one == propose.enable_protocol("ana@contoso.com", "Imap")
    assert one.params == {"mailbox": "ana@contoso.com", "protocol": "Imap"}
    assert one.idempotency_key == "enable-protocol:ana@contoso.com:Imap"


def test_several_protocols_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown protocol 'Gopher'"):
        propose.enable_protocol("ana@contoso.com", protocols=["Mapi", "Gopher"])
    with pytest.raises(ValueError, match="non-empty list"):
        propose.enable_protocol("ana@contoso.com", protocols=[])
    with pytest.raises(ValueError, match="non-empty list"):
        propose.enable_protocol("ana@contoso.com", protocols="Mapi")
    with pytest.raises(ValueError, match="not both"):
        propose.enable_protocol("ana@contoso.com", "Imap", protocols=["Mapi"])
    with pytest.raises(ValueError, match="protocol must be"):
        propose.enable_protocol("ana@contoso.com")
