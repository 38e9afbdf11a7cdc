"""Tenant client, unit level: licence reading, wire models, encodings, error mapping.

Shapes are the documented ones (reference §5, §5.1, §5.4, §6.2–6.4, §3.3); everything that
talks HTTP is tested over real HTTP in test_tenant_client.py and test_tenant_checks.py.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from checks.cloud import hosts_for
from checks.models import Client, Side, Status
from checks.modules.tenant import activity, mailbox
from checks.net.types import HttpResponse
from checks.settings import CheckSettings, Cloud
from checks.spec import Check
from checks.tenant import auth, client, licensing
from checks.tenant.errors import (
    PermissionMissing,
    TenantAuthFailed,
    TenantError,
    TenantUnavailable,
    Throttled,
)
from checks.tenant.findings import tenant_error_finding
from checks.tenant.models import (
    ActiveSyncDeviceAccessRule,
    CasMailbox,
    LicenseDetails,
    MobileDevice,
    ServiceHealthIssue,
    SignIn,
    User,
)
from checks.tenant.reads import odata_string
from sandbox.tenant.build import rsa_self_signed

EXO_P1 = "9aaf7827-d63c-4b61-89c3-182f06f82e5c"
EXO_P2 = "efb87545-963c-4e0d-99df-69c6916d9eb0"
KIOSK = "4a82b400-a79f-41a4-b4e2-e94f5787b113"
FOUNDATION = "113feb6c-3fe4-4440-bddc-54d774bf0318"


def _details(sku: str, *plans: tuple[str, str, str], sku_id: str = "sku-1") -> LicenseDetails:
    return LicenseDetails.model_validate(
        {
            "id": f"ld-{sku}",
            "skuId": sku_id,
            "skuPartNumber": sku,
            "servicePlans": [
                {
                    "servicePlanId": pid,
                    "servicePlanName": name,
                    "provisioningStatus": status,
                    "appliesTo": "User",
                }
                for name, pid, status in plans
            ],
        }
    )


# --- §5.1 licence → mailbox -----------------------------------------------------------------


def test_licence_plan_provisioned_passes() -> None:
    state = licensing.assess(
        [_details("ENTERPRISEPACK", ("EXCHANGE_S_ENTERPRISE", EXO_P2, "Success"))]
    )
    assert state.problem is None
    assert state.exchange_plan == "EXCHANGE_S_ENTERPRISE" and state.provisioning_status == "Success"


def test_licence_plan_disabled_keeps_the_other_disabled_plans() -> None:
    user = User.model_validate(
        {
            "id": "u1",
            "userPrincipalName": "ana@contoso.com",
            "assignedLicenses": [{"skuId": "sku-1", "disabledPlans": [EXO_P1, "other-plan"]}],
        }
    )
    state = licensing.assess(
        [_details("O365_BUSINESS_ESSENTIALS", ("EXCHANGE_S_STANDARD", EXO_P1, "Disabled"))], user
    )
    assert state.problem == "exchange-plan-disabled"
    assert (state.sku_id, state.plan_id) == ("sku-1", EXO_P1)
    assert state.still_disabled == ["other-plan"]


@pytest.mark.parametrize(
    ("status", "problem"),
    [
        ("PendingInput", "exchange-plan-pending"),
        ("PendingProvisioning", "exchange-plan-pending"),
        ("PendingActivation", "exchange-plan-pending"),
        ("Error", "exchange-plan-pending"),
    ],
)
def test_licence_plan_pending(status: str, problem: str) -> None:
    state = licensing.assess([_details("SPE_E3", ("EXCHANGE_S_ENTERPRISE", EXO_P2, status))])
    assert state.problem == problem and state.provisioning_status == status


def test_one_provisioned_plan_beats_a_disabled_one_in_another_sku() -> None:
    state = licensing.assess(
        [
            _details("STANDARDPACK", ("EXCHANGE_S_STANDARD", EXO_P1, "Disabled"), sku_id="a"),
            _details("ENTERPRISEPACK", ("EXCHANGE_S_ENTERPRISE", EXO_P2, "Success"), sku_id="b"),
        ]
    )
    assert state.problem is None and state.sku_id == "b"


@pytest.mark.parametrize(
    ("details", "problem"),
    [
        ([], "no-exchange-plan"),
        ([_details("O365_BUSINESS", ("OFFICE_BUSINESS", "x", "Success"))], "sku-without-mailbox"),
        (
            [_details("OFFICESUBSCRIPTION", ("OFFICESUBSCRIPTION", "y", "Success"))],
            "sku-without-mailbox",
        ),
        # Foundation is not a mailbox (§5.1), whatever SKU carries it.
        (
            [_details("POWER_BI_STANDARD", ("EXCHANGE_S_FOUNDATION", FOUNDATION, "Success"))],
            "sku-without-mailbox",
        ),
        # F1 counts as no mailbox even if it lists a Kiosk plan ([uncertain] in §5.1).
        (
            [_details("M365_F1_COMM", ("EXCHANGE_S_DESKLESS", KIOSK, "Success"))],
            "sku-without-mailbox",
        ),
    ],
)
def test_licences_without_a_mailbox(details: list[LicenseDetails], problem: str) -> None:
    assert licensing.assess(details).problem == problem


def test_spe_f1_is_f3_and_has_a_kiosk_mailbox() -> None:
    state = licensing.assess([_details("SPE_F1", ("EXCHANGE_S_DESKLESS", KIOSK, "Success"))])
    assert state.problem is None and state.exchange_plan == "EXCHANGE_S_DESKLESS"


def test_gov_variant_is_a_mailbox_plan() -> None:
    state = licensing.assess(
        [_details("ENTERPRISEPACK_GOV", ("EXCHANGE_S_ENTERPRISE_GOV", "gov-id", "Success"))]
    )
    assert state.problem is None


def test_tenant_sku_with_a_free_seat_is_proposed() -> None:
    full = {
        "skuId": "full",
        "skuPartNumber": "O365_BUSINESS_ESSENTIALS",
        "capabilityStatus": "Enabled",
        "consumedUnits": 5,
        "prepaidUnits": {"enabled": 5},
        "servicePlans": [{"servicePlanId": EXO_P1, "servicePlanName": "EXCHANGE_S_STANDARD"}],
    }
    apps = {**full, "skuId": "apps", "skuPartNumber": "O365_BUSINESS", "consumedUnits": 0}
    free = {**full, "skuId": "free", "consumedUnits": 4}
    assert licensing.sku_with_mailbox([full, apps]) is None
    assert licensing.sku_with_mailbox([full, apps, free]) == free


# --- wire models ------------------------------------------------------------------------------


def test_user_model_reads_the_wire_names() -> None:
    user = User.model_validate(
        {
            "id": "1f2e",
            "userPrincipalName": "ana@contoso.com",
            "accountEnabled": False,
            "proxyAddresses": ["SMTP:ana@contoso.com", "smtp:ana.s@contoso.com"],
            "onPremisesSyncEnabled": True,
            "onPremisesProvisioningErrors": [
                {
                    "category": "PropertyConflict",
                    "occurredDateTime": "2026-11-30T10:00:00Z",
                    "propertyCausingError": "ProxyAddresses",
                    "value": "smtp:ana@contoso.com",
                }
            ],
            "somethingNew": {"ignored": True},
        }
    )
    assert user.account_enabled is False and user.synced_from_on_premises
    assert user.on_premises_provisioning_errors[0].property_causing_error == "ProxyAddresses"


def test_signin_model_keeps_the_plural_policy_list() -> None:
    s = SignIn.model_validate(
        {
            "createdDateTime": "2026-12-02T09:00:00Z",
            "clientAppUsed": "Exchange ActiveSync",
            "status": {"errorCode": 53003, "failureReason": "Access has been blocked"},
            "appliedConditionalAccessPolicies": [
                {"id": "p1", "displayName": "Block legacy", "result": "failure"}
            ],
        }
    )
    assert s.status.error_code == 53003
    assert s.applied_conditional_access_policies[0].display_name == "Block legacy"


def test_cas_mailbox_null_smtp_setting_stays_null() -> None:
    cas = CasMailbox.model_validate(
        {"ActiveSyncEnabled": True, "ImapEnabled": False, "SmtpClientAuthenticationDisabled": None}
    )
    assert cas.imap_enabled is False and cas.smtp_client_authentication_disabled is None


# --- encodings, permissions, error bodies -------------------------------------------------------


def test_query_uses_percent_twenty_and_keeps_odata_dollar() -> None:
    q = client._query({"$filter": "userPrincipalName eq 'a@b.com'", "$top": "2"})
    assert q == "?$filter=userPrincipalName%20eq%20'a@b.com'&$top=2"


def test_odata_string_doubles_quotes() -> None:
    assert odata_string("o'neil@contoso.com") == "'o''neil@contoso.com'"


def test_path_is_percent_encoded_once() -> None:
    c = client.TenantClient(CheckSettings(), None, hosts_for(Cloud.GLOBAL))  # type: ignore[arg-type]
    url = c.graph_url("/users/ana_fabrikam.com#EXT#@contoso.onmicrosoft.com")
    assert url == (
        "https://graph.microsoft.com/v1.0/users/ana_fabrikam.com%23EXT%23@contoso.onmicrosoft.com"
    )
    assert c.graph_url("/admin/serviceAnnouncement/healthOverviews/Exchange Online", beta=True) == (
        "https://graph.microsoft.com/beta/admin/serviceAnnouncement/healthOverviews/Exchange%20Online"
    )


@pytest.mark.parametrize(
    ("method", "path", "permission"),
    [
        ("GET", "/users/ana@contoso.com", "User.Read.All"),
        ("GET", "/users/1f2e/licenseDetails", "LicenseAssignment.Read.All"),
        ("GET", "/users/1f2e/mailboxSettings", "MailboxSettings.Read"),
        ("GET", "/directory/deletedItems/microsoft.graph.user", "User.Read.All"),
        ("GET", "/auditLogs/signIns", "AuditLog.Read.All"),
        ("GET", "/admin/serviceAnnouncement/issues", "ServiceHealth.Read.All"),
        ("GET", "/identity/conditionalAccess/policies", "Policy.Read.All"),
        ("POST", "/identity/conditionalAccess/evaluate", "Policy.Read.ConditionalAccess"),
        ("POST", "/users/1f2e/assignLicense", "LicenseAssignment.ReadWrite.All"),
        ("PATCH", "/users/1f2e", "User.EnableDisableAccount.All"),
        ("POST", "/directory/deletedItems/1f2e/restore", "User.ReadWrite.All"),
    ],
)
def test_least_privileged_graph_permission(method: str, path: str, permission: str) -> None:
    assert client.graph_permission(method, path) == permission


def _response(status: int, body: object, **headers: str) -> HttpResponse:
    return HttpResponse(
        url="https://graph.microsoft.com/v1.0/x",
        status=status,
        headers=headers,
        body=json.dumps(body).encode(),
        truncated=False,
        hops=[],
        cert=None,
    )


def test_error_bodies_of_graph_and_exchange() -> None:
    graph = _response(
        403,
        {
            "error": {
                "code": "Authorization_RequestDenied",
                "message": "Insufficient privileges to complete the operation.",
                "innerError": {"date": "2026-12-02T10:00:00", "request-id": "r"},
            }
        },
    )
    assert client._error_body(graph) == (
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
    )
    exo = _response(
        400,
        {
            "error": {
                "code": "BadRequest",
                "message": "Error executing cmdlet",
                "details": [{"message": "Ex6F9304|ManagementObjectNotFoundException|not found"}],
                "innererror": {"internalException": {"message": "couldn't be found on x"}},
            }
        },
    )
    code, message = client._error_body(exo)
    assert code == "BadRequest" and "ManagementObjectNotFoundException" in message
    assert "couldn't be found" in message


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("7", 7.0), ("0", 0.0), ("garbage", None), (None, None)],
)
def test_retry_after_seconds(value: str | None, seconds: float | None) -> None:
    assert auth._retry_after(value) == seconds


def test_retry_after_http_date() -> None:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    got = auth._retry_after(when.strftime("%a, %d %b %Y %H:%M:%S GMT"))
    assert got is not None and 25 <= got <= 31


# --- token errors -----------------------------------------------------------------------------


def _call() -> auth._Call:
    return auth._Call(loop=None, net=None, deadline=None)  # type: ignore[arg-type]


def test_wrong_secret_is_named_without_the_secret() -> None:
    err = auth._token_error(
        {
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the "
            "secret being sent in the request is the client secret value.\r\nTrace ID: x",
            "error_codes": [7000215],
        },
        _call(),
        "POST https://login.microsoftonline.com/t/oauth2/v2.0/token",
    )
    assert isinstance(err, TenantAuthFailed) and err.aadsts == 7000215
    assert "client secret is wrong" in str(err) and "Trace ID" not in str(err)


def test_unknown_app_and_unknown_code() -> None:
    err = auth._token_error(
        {
            "error": "unauthorized_client",
            "error_description": "AADSTS700016: Application with "
            "identifier 'x' was not found in the directory 'y'.\r\nTrace ID: 1",
        },
        _call(),
        "POST t",
    )
    assert isinstance(err, TenantAuthFailed) and err.aadsts == 700016
    assert "not found in this tenant" in str(err)
    other = auth._token_error(
        {
            "error": "invalid_request",
            "error_description": "AADSTS9999: Something new.\r\nTrace ID: 2",
        },
        _call(),
        "POST t",
    )
    assert isinstance(other, TenantAuthFailed) and "Something new" in str(other)
    assert "Trace ID" not in str(other)


def test_throttled_token_request() -> None:
    call = _call()
    call.last_status, call.last_retry_after = 429, 12.0
    err = auth._token_error({"error": "temporarily_unavailable"}, call, "POST t")
    assert isinstance(err, Throttled) and err.retry_after == 12.0


# --- certificate credential ---------------------------------------------------------------------


def _pem_pair(tmp_path: Path, password: bytes | None) -> Path:
    key, cert = rsa_self_signed("mailfix")
    enc = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    path = tmp_path / "app.pem"
    path.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    )
    return path


def test_certificate_with_password_is_read(tmp_path: Path) -> None:
    path = _pem_pair(tmp_path, b"pfx-pass-1")
    settings = CheckSettings(client_certificate=path, client_certificate_password="pfx-pass-1")
    cred = auth._certificate_credential(settings)
    assert "BEGIN PRIVATE KEY" in cred["private_key"]
    assert cred["public_certificate"].startswith("-----BEGIN CERTIFICATE-----")


def test_certificate_wrong_password_names_the_setting_not_the_password(tmp_path: Path) -> None:
    path = _pem_pair(tmp_path, b"pfx-pass-1")
    settings = CheckSettings(client_certificate=path, client_certificate_password="wrong-pass-2")
    with pytest.raises(TenantAuthFailed) as info:
        auth._certificate_credential(settings)
    assert "MAILFIX_CLIENT_CERTIFICATE_PASSWORD" in str(info.value)
    assert "wrong-pass-2" not in repr(info.value) and info.value.__cause__ is None


def test_certificate_without_key(tmp_path: Path) -> None:
    path = tmp_path / "only-cert.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(TenantAuthFailed, match="both the certificate and its private key"):
        auth._certificate_credential(CheckSettings(client_certificate=path))


# --- error findings -------------------------------------------------------------------------------

_CHECK = Check(
    id="tenant.signins",
    title="Recent sign-in failures",
    side=Side.IDENTITY,
    clients=frozenset(Client),
    run=None,
    needs_tenant=True,
)


def test_permission_missing_finding_names_permission_and_where() -> None:
    exc = PermissionMissing(
        "lacks",
        request="GET https://graph.microsoft.com/v1.0/auditLogs/signIns",
        permission="AuditLog.Read.All",
        grant_where=client.GRAPH_GRANT,
    )
    f = tenant_error_finding(_CHECK, exc, ["GET https://graph.microsoft.com/v1.0/users/a"])
    assert f.status is Status.ERROR
    assert f.evidence["problem"] == "permission-missing"
    assert f.evidence["permission"] == "AuditLog.Read.All"
    assert (
        "AuditLog.Read.All" in f.summary and "Microsoft Graph application permission" in f.summary
    )
    assert f.evidence["requests"] == [
        "GET https://graph.microsoft.com/v1.0/users/a",
        "GET https://graph.microsoft.com/v1.0/auditLogs/signIns",
    ]


@pytest.mark.parametrize(
    ("exc", "problem"),
    [
        (Throttled("busy", retry_after=30), "tenant-unavailable"),
        (TenantUnavailable("down"), "tenant-unavailable"),
        (TenantAuthFailed("no", aadsts=7000215), "tenant-auth-failed"),
        (TenantError("odd", code="BadRequest"), "tenant-error"),
    ],
)
def test_other_tenant_errors_are_error_findings(exc: TenantError, problem: str) -> None:
    f = tenant_error_finding(_CHECK, exc)
    assert f.status is Status.ERROR and f.evidence["problem"] == problem
    assert f.summary.endswith(".")


# --- devices, sign-ins, service health mapping ---------------------------------------------------


def _device(**fields: object) -> MobileDevice:
    return MobileDevice.model_validate({"DeviceId": "ABC123", **fields})


def test_device_rule_by_name_and_by_characteristic() -> None:
    rules = [
        ActiveSyncDeviceAccessRule.model_validate(
            {
                "Name": "iPhone (DeviceModel)",
                "Identity": "iPhone (DeviceModel)",
                "Characteristic": "DeviceModel",
                "QueryString": "iPhone",
                "AccessLevel": "Quarantine",
            }
        ),
        ActiveSyncDeviceAccessRule.model_validate(
            {
                "Name": "Android (DeviceOS)",
                "Characteristic": "DeviceOS",
                "QueryString": "Android 9",
                "AccessLevel": "Block",
            }
        ),
    ]
    named = _device(
        DeviceAccessState="Quarantined",
        DeviceAccessStateReason="DeviceRule",
        DeviceAccessControlRule="iPhone (DeviceModel)",
    )
    assert mailbox.matched_rule(named, rules) == "iPhone (DeviceModel)"
    by_os = _device(
        DeviceAccessState="Blocked", DeviceAccessStateReason="DeviceRule", DeviceOS="Android 9"
    )
    assert mailbox.matched_rule(by_os, rules) == "Android (DeviceOS)"
    global_ = _device(DeviceAccessState="Quarantined", DeviceAccessStateReason="Global")
    assert mailbox.matched_rule(global_, rules) is None


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (50126, "password (or the user name) was wrong"),
        (50057, "disabled"),
        (50053, "locked"),
        (53003, "Conditional Access policy blocked"),
        (53000, "compliant"),
        (50076, "multi-factor"),
        (50079, "register"),
        (700016, "not known"),
        (50055, "expired"),
        (80005, "pass-through"),
        (12345, "error 12345"),
    ],
)
def test_aadsts_codes_in_plain_words(code: int, words: str) -> None:
    assert words in activity._meaning(code)[0]


def _issue(title: str, feature: str = "", classification: str = "incident") -> ServiceHealthIssue:
    return ServiceHealthIssue.model_validate(
        {
            "id": "EX123456",
            "title": title,
            "feature": feature,
            "classification": classification,
            "status": "serviceDegradation",
            "isResolved": False,
        }
    )


def test_service_issue_matching_by_client() -> None:
    imap = _issue("Users can't connect with IMAP clients", "E-Mail and calendar access")
    generic = _issue("Users may be unable to access mailboxes")
    mobile = _issue("Users can't sync mail on iOS devices using Exchange ActiveSync")
    assert activity._matches(imap, Client.IMAP) and not activity._matches(imap, Client.MOBILE)
    assert activity._matches(generic, Client.MOBILE) and activity._matches(generic, Client.OUTLOOK)
    assert activity._matches(mobile, Client.MOBILE) and not activity._matches(mobile, Client.POP)
    assert activity._matches(imap, Client.ALL)


def test_cloud_scopes() -> None:
    assert hosts_for(Cloud.GLOBAL).exo_scope == "https://outlook.office365.com/.default"
    assert hosts_for(Cloud.GCC).exo_scope == "https://outlook.office365.com/.default"
    assert hosts_for(Cloud.GCCHIGH).exo_scope == "https://outlook.office365.us/.default"
    assert hosts_for(Cloud.DOD).exo_scope == "https://outlook-dod.office365.us/.default"
    assert hosts_for(Cloud.CHINA).exo_scope == "https://partner.outlook.cn/.default"
    assert hosts_for(Cloud.CHINA).graph_scope == "https://microsoftgraph.chinacloudapi.cn/.default"
    assert hosts_for(Cloud.GCCHIGH).exo_admin_url("t1") == (
        "https://outlook.office365.us/adminapi/beta/t1/InvokeCommand"
    )


@pytest.mark.parametrize(
    "link",
    [
        "https://evil.example/v1.0/users?$skiptoken=x",
        "http://graph.microsoft.com/v1.0/users?$skiptoken=x",
        "https://graph.microsoft.com.evil.example/v1.0/users",
    ],
)
def test_next_links_never_take_the_token_elsewhere(link: str) -> None:
    c = client.TenantClient(CheckSettings(), None, hosts_for(Cloud.GLOBAL))  # type: ignore[arg-type]
    with pytest.raises(TenantUnavailable, match="next-page link"):
        c._next_link({"@odata.nextLink": link}, "graph.microsoft.com", "GET x")
    ok = "https://graph.microsoft.com/v1.0/users?$skiptoken=abc"
    assert c._next_link({"@odata.nextLink": ok}, "graph.microsoft.com", "GET x") == ok


@pytest.mark.parametrize(
    ("status", "location", "followed"),
    [
        (302, "https://outlook.office365.com/adminapi/beta/t/InvokeCommand", True),
        (307, "https://nam12.outlook.office365.com/adminapi/beta/t/InvokeCommand", True),
        (302, "/adminapi/beta/t/InvokeCommand?x=1", True),
        (302, "https://evil.example/adminapi/beta/t/InvokeCommand", False),
        (302, "http://outlook.office365.com/adminapi/beta/t/InvokeCommand", False),
        (302, "https://outlook.office365.com.evil.example/x", False),
        (303, "https://outlook.office365.com/x", False),
    ],
)
def test_exchange_redirects_stay_on_the_exchange_host(
    status: int, location: str, followed: bool
) -> None:
    c = client.TenantClient(CheckSettings(), None, hosts_for(Cloud.GLOBAL))  # type: ignore[arg-type]
    response = HttpResponse(
        url="https://outlook.office365.com/adminapi/beta/t/InvokeCommand",
        status=status,
        headers={"location": location},
        body=b"",
        truncated=False,
        hops=[],
        cert=None,
    )
    moved = c._exo_redirect(response)
    assert (moved is not None) is followed
    if followed:
        assert moved is not None and moved.startswith("https://")


def test_refused_token_finding_says_why() -> None:
    f = tenant_error_finding(_CHECK, TenantAuthFailed("refused", aadsts=7000222))
    assert f.summary == (
        "mailfix could not sign in to the tenant (the client secret has expired), so the "
        "recent sign-in failures could not be read."
    )
