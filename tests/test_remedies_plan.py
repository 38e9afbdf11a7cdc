"""Planning a fix without the tenant: the exact requests, the canonical proposal, bad input."""

from __future__ import annotations

import pytest

from checks.cloud import hosts_for
from checks.models import Remediation
from checks.remedies import InvalidProposal, canonical, plan, propose
from checks.remedies.results import FixResult, Outcome
from checks.remedies.verify import recheck_address, recheck_client, with_dependencies
from checks.settings import Cloud

TENANT = "6f1b7c2e-0d4a-4e57-9a63-2b8f6c1d9e01"


def test_protocol_plan_is_the_invokecommand_envelope() -> None:
    [req] = plan(propose.enable_protocol("ana@contoso.com", "Imap"), tenant=TENANT)
    assert req.method == "POST"
    assert req.url == f"https://outlook.office365.com/adminapi/beta/{TENANT}/InvokeCommand"
    assert req.body == {
        "CmdletInput": {
            "CmdletName": "Set-CASMailbox",
            "Parameters": {"Identity": "ana@contoso.com", "ImapEnabled": True},
        }
    }
    assert req.cmdlet == "Set-CASMailbox"


def test_smtp_auth_plan_clears_the_disabled_flag() -> None:
    [req] = plan(propose.enable_protocol("ana@contoso.com", "SmtpClientAuth"))
    assert req.parameters == {
        "Identity": "ana@contoso.com",
        "SmtpClientAuthenticationDisabled": False,
    }
    assert "{tenantId}" in req.url  # no tenant given: a placeholder, never a guess


def test_release_device_plan_uses_the_generic_hashtable_add_form() -> None:
    [req] = plan(propose.release_device("ana@contoso.com", "ApplF17XK2"))
    assert req.parameters["ActiveSyncAllowedDeviceIDs"] == {
        "@odata.type": "#Exchange.GenericHashTable",
        "add": "ApplF17XK2",
    }


@pytest.mark.parametrize(
    ("cloud", "graph", "exo"),
    [
        (Cloud.GLOBAL, "graph.microsoft.com", "outlook.office365.com"),
        (Cloud.GCCHIGH, "graph.microsoft.us", "outlook.office365.us"),
        (Cloud.DOD, "dod-graph.microsoft.us", "outlook-dod.office365.us"),
        (Cloud.CHINA, "microsoftgraph.chinacloudapi.cn", "partner.outlook.cn"),
    ],
)
def test_plans_follow_the_cloud(cloud: Cloud, graph: str, exo: str) -> None:
    hosts = hosts_for(cloud)
    [lic] = plan(propose.assign_license("u1", "sku1"), cloud=hosts, tenant=TENANT)
    assert lic.url == f"https://{graph}/v1.0/users/u1/assignLicense"
    [cas] = plan(propose.enable_protocol("a@b.com", "Pop"), cloud=hosts, tenant=TENANT)
    assert cas.url.startswith(f"https://{exo}/adminapi/beta/{TENANT}/")


def test_graph_plans() -> None:
    [lic] = plan(propose.enable_exchange_plan("u1", "sku1", "exo1", ["exo1", "teams1"]))
    assert lic.line() == (
        "POST https://graph.microsoft.com/v1.0/users/u1/assignLicense "
        '{"addLicenses":[{"skuId":"sku1","disabledPlans":["teams1"]}],"removeLicenses":[]}'
    )
    [patch] = plan(propose.enable_account("u1", "ana@contoso.com"))
    assert (patch.method, patch.body) == ("PATCH", {"accountEnabled": True})
    [restore] = plan(propose.restore_user("d1", "ana@contoso.com"))
    assert restore.url.endswith("/v1.0/directory/deletedItems/d1/restore")
    assert "Authorization" not in restore.model_dump_json()


def test_canonical_ignores_edited_free_text() -> None:
    real = propose.enable_protocol("ana@contoso.com", "ActiveSync")
    edited = real.model_copy(
        update={"operation": "Remove-Mailbox ana@contoso.com", "title": "harmless", "verify": []}
    )
    assert canonical(edited) == real


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"id": "drop-tenant", "params": {}}, "unknown fix"),
        ({"id": "enable-protocol", "params": {"mailbox": "ana@contoso.com"}}, "protocol"),
        ({"id": "enable-protocol", "params": {"mailbox": "no-at", "protocol": "Imap"}}, "mailbox"),
        (
            {"id": "enable-protocol", "params": {"mailbox": "a@b.com", "protocols": ["Mapi", "X"]}},
            r"protocols\.1 is not one of",
        ),
        (
            {
                "id": "enable-protocol",
                "params": {"mailbox": "a@b.com", "protocol": "Imap", "protocols": ["Mapi"]},
            },
            "not both",
        ),
        ({"id": "enable-protocol", "params": {"mailbox": "a@b.com", "protocols": []}}, "protocols"),
        ({"id": "enable-protocol", "params": {"mailbox": "a@b.com", "protocols": "Mapi"}}, "list"),
        (
            {"id": "release-device", "params": {"mailbox": "a@b.com", "device_id": "x y/../z"}},
            "device id",
        ),
        ({"id": "enable-account", "params": {"user_id": "../../groups", "upn": "a@b"}}, "user_id"),
        ({"id": "restore-user", "params": {"deleted_id": "a/b", "upn": "a@b"}}, "deleted_id"),
        ({"id": "assign-license", "params": {"user_id": "u1"}}, "sku_id"),
    ],
)
def test_unexecutable_proposals_are_refused_before_any_request(
    data: dict[str, object], words: str
) -> None:
    remediation = Remediation.model_validate({"title": "t", "api": "graph", "action": "x", **data})
    with pytest.raises(InvalidProposal, match=words):
        plan(remediation)
    with pytest.raises(InvalidProposal):
        canonical(remediation)


def test_recheck_targets() -> None:
    assert recheck_client(propose.enable_protocol("a@b.com", "ActiveSync")).value == "mobile"
    assert recheck_client(propose.enable_protocol("a@b.com", "Imap")).value == "imap"
    assert recheck_client(propose.enable_protocol("a@b.com", "SmtpClientAuth")).value == "smtp"
    assert recheck_client(propose.assign_license("u", "s")).value == "all"
    several = {
        ("Mapi", "Ews"): "outlook",
        ("ActiveSync", "OutlookMobile"): "mobile",
        ("Imap", "SmtpClientAuth"): "imap",
        ("Pop", "SmtpClientAuth"): "pop",
        ("Mapi", "Owa"): "all",
    }
    for names, client in several.items():
        assert recheck_client(propose.enable_protocol("a@b.com", protocols=names)).value == client
    assert recheck_address(propose.enable_account("u", "ana@contoso.com")) == "ana@contoso.com"
    lic = propose.assign_license("u", "s")
    assert recheck_address(lic) is None
    result = FixResult(
        remediation="assign-license",
        idempotency_key="k",
        outcome=Outcome.APPLIED,
        message="m",
        subject="ana@contoso.com",
    )
    assert recheck_address(lic, result) == "ana@contoso.com"
    assert set(with_dependencies(["tenant.mailbox"])) >= {"tenant.mailbox"}
