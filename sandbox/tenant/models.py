"""A Microsoft 365 tenant as scenario data: directory, licences, mailboxes, devices, policies.

`TenantData` is frozen pydantic (part of a `Scenario`); the running world copies it into a
mutable `sandbox.tenant.state.TenantState` that the token service, Graph and the Exchange admin
API share, so a fix applied through them (Set-CASMailbox, assignLicense, PATCH accountEnabled,
restore) is what the next request sees.

Python names are snake_case; the apps write the wire names (Graph camelCase, Exchange
PascalCase) themselves. Facts: reference/exchange-online-diagnostics.md §3.3 (devices), §5
(Graph, licences, CA, sign-ins, service health), §6 (CAS switches, CARs, InvokeCommand).
Identifiers the reference does not carry (role template ids, SKU ids) are Microsoft's published
values as remembered — marked [uncertain] where they are.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def stable_id(*parts: str) -> str:
    """A deterministic GUID for sandbox objects (so scenarios compare equal to themselves)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "mailfix-sandbox:" + "/".join(parts)))


# ---- well-known identifiers ----------------------------------------------------------------

EXO_APP_ID = "00000002-0000-0ff1-ce00-000000000000"  # Office 365 Exchange Online (§5.2, §6.3)
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"  # Microsoft Graph [uncertain: not in ref]

# Entra built-in role template ids (Entra "built-in roles" page) [uncertain: not in the reference].
ROLE_TEMPLATES: dict[str, str] = {
    "Global Administrator": "62e90394-69f5-4237-9190-012177145e10",
    "Global Reader": "f2ef992c-3afb-46b9-b7cf-a126ee74c451",
    "Exchange Administrator": "29232cdf-9323-42fd-ade2-1d097af3e4de",
    "Exchange Recipient Administrator": "31392ffb-586c-42d1-9346-e59415a2cc4e",
    "Helpdesk Administrator": "729827e3-9c14-49f7-bb1b-9608f156bbb8",
    "Security Reader": "5d6b6bb7-de71-4623-b4af-96380a352509",
    "Compliance Administrator": "17315797-102d-40b4-93e0-432062caca18",
    "User Administrator": "fe930be7-5e62-47db-91af-98c3a49a38b1",
}

# Service plans (§5.1 gives the Exchange ids; the others [uncertain]).
EXCHANGE_S_STANDARD = ("9aaf7827-d63c-4b61-89c3-182f06f82e5c", "EXCHANGE_S_STANDARD")
EXCHANGE_S_ENTERPRISE = ("efb87545-963c-4e0d-99df-69c6916d9eb0", "EXCHANGE_S_ENTERPRISE")
EXCHANGE_S_DESKLESS = ("4a82b400-a79f-41a4-b4e2-e94f5787b113", "EXCHANGE_S_DESKLESS")
EXCHANGE_S_FOUNDATION = ("113feb6c-3fe4-4440-bddc-54d774bf0318", "EXCHANGE_S_FOUNDATION")
OFFICESUBSCRIPTION = ("43de0ff5-c92c-492b-9116-175376d08c38", "OFFICESUBSCRIPTION")
SHAREPOINTENTERPRISE = ("5dbe027f-2339-4123-9542-606e4d348a72", "SHAREPOINTENTERPRISE")
SHAREPOINTSTANDARD = ("c7699d2e-19aa-44de-8edf-1736da088ca1", "SHAREPOINTSTANDARD")
ONEDRIVESTANDARD = ("13696edf-5a08-49f6-8134-03083ed8ba30", "ONEDRIVESTANDARD")
TEAMS1 = ("57ff2da0-773e-42df-b2af-ffb7a2317929", "TEAMS1")
SHAREPOINTDESKLESS = ("902b47e5-dcb2-4fdc-858b-c63a90a2bdb9", "SHAREPOINTDESKLESS")

# Plans that give an Exchange Online mailbox (§5.1).
MAILBOX_PLANS = frozenset(
    {"EXCHANGE_S_STANDARD", "EXCHANGE_S_ENTERPRISE", "EXCHANGE_S_DESKLESS", "EXCHANGE_S_ESSENTIALS"}
)

# provisioningStatus values of servicePlanInfo (§5 Licences row).
ProvisioningStatus = Literal[
    "Success", "Disabled", "Error", "PendingInput", "PendingActivation", "PendingProvisioning"
]
AccessLevel = Literal["Allow", "Block", "Quarantine"]


# ---- licences ------------------------------------------------------------------------------


class ServicePlan(_Frozen):
    id: str
    name: str
    applies_to: Literal["User", "Company"] = "User"

    @classmethod
    def of(
        cls, plan: tuple[str, str], applies_to: Literal["User", "Company"] = "User"
    ) -> ServicePlan:
        return cls(id=plan[0], name=plan[1], applies_to=applies_to)


class Sku(_Frozen):
    """A subscription the tenant bought (GET /subscribedSkus)."""

    sku_id: str
    part_number: str
    plans: tuple[ServicePlan, ...]
    enabled_units: int = Field(default=25, ge=0)
    capability_status: Literal["Enabled", "Warning", "Suspended", "Deleted", "LockedOut"] = (
        "Enabled"
    )

    def plan(self, plan_id: str) -> ServicePlan | None:
        return next((p for p in self.plans if p.id == plan_id), None)


def _plans(*plans: tuple[str, str]) -> tuple[ServicePlan, ...]:
    return tuple(
        ServicePlan.of(p, "Company" if p == EXCHANGE_S_FOUNDATION else "User") for p in plans
    )


# SKU ids and part numbers (§5.1 names the part numbers; ids [uncertain]).
SKU_E3 = Sku(
    sku_id="6fd2c87f-b296-42f0-b197-1e91e994b900",
    part_number="ENTERPRISEPACK",
    plans=_plans(EXCHANGE_S_ENTERPRISE, SHAREPOINTENTERPRISE, OFFICESUBSCRIPTION, TEAMS1),
)
SKU_BUSINESS_BASIC = Sku(
    sku_id="3b555118-da6a-4418-894f-7df1e2096870",
    part_number="O365_BUSINESS_ESSENTIALS",
    plans=_plans(EXCHANGE_S_STANDARD, SHAREPOINTSTANDARD, TEAMS1),
)
SKU_APPS_FOR_BUSINESS = Sku(  # Microsoft 365 Apps for business: no mailbox (§5.1)
    sku_id="cdd28e44-67e3-425e-be4c-737fab2899d3",
    part_number="O365_BUSINESS",
    plans=_plans(OFFICESUBSCRIPTION, ONEDRIVESTANDARD, EXCHANGE_S_FOUNDATION),
)
SKU_M365_F1 = Sku(  # Microsoft 365 F1: no mailbox (§5.1; its exact plan list [uncertain])
    sku_id="50f60901-3181-4b75-8a2c-4c8e4c1d5a72",
    part_number="M365_F1_COMM",
    plans=_plans(EXCHANGE_S_FOUNDATION, SHAREPOINTDESKLESS, TEAMS1),
)
SKU_F3 = Sku(  # SPE_F1 is Microsoft 365 F3, with a Kiosk mailbox (§5.1)
    sku_id="66b55226-6b4f-492c-910c-a3b7a3c9d993",
    part_number="SPE_F1",
    plans=_plans(EXCHANGE_S_DESKLESS, SHAREPOINTDESKLESS, TEAMS1),
)
STANDARD_SKUS = (SKU_E3, SKU_BUSINESS_BASIC, SKU_APPS_FOR_BUSINESS, SKU_M365_F1, SKU_F3)


class AssignedLicense(_Frozen):
    sku_id: str
    disabled_plans: tuple[str, ...] = ()  # service plan ids switched off by the admin


# ---- Exchange ------------------------------------------------------------------------------


class CasSettings(_Frozen):
    """Get-CASMailbox switches (§6.2). smtp_client_authentication_disabled None = org default."""

    active_sync_enabled: bool = True
    owa_enabled: bool = True
    pop_enabled: bool = True
    imap_enabled: bool = True
    mapi_enabled: bool = True
    ews_enabled: bool = True
    outlook_mobile_enabled: bool = True
    smtp_client_authentication_disabled: bool | None = None
    active_sync_allowed_device_ids: tuple[str, ...] = ()
    active_sync_blocked_device_ids: tuple[str, ...] = ()


class MobileDevice(_Frozen):
    """An Exchange ActiveSync partnership (§3.3). Access state is derived by the sandbox from
    the allow/block lists, the device rules and the org default, in that order."""

    device_id: str
    device_type: str = "iPhone"
    device_model: str = "iPhone15C2"
    device_os: str = "iOS 17.5.1 21F90"
    user_agent: str = "Apple-iPhone15C2/2105.90"
    friendly_name: str = "Ana's iPhone"
    client_type: Literal["EAS", "Outlook", "REST"] = "EAS"
    eas_version: str = "16.1"
    first_sync_days_ago: int = 30


class DeviceAccessRule(_Frozen):
    """New-ActiveSyncDeviceAccessRule (§3.3). Its name is "<QueryString> (<Characteristic>)"."""

    characteristic: Literal["DeviceModel", "DeviceType", "DeviceOS", "UserAgent", "XMSWLHeader"]
    query_string: str
    access_level: AccessLevel

    @property
    def name(self) -> str:
        return f"{self.query_string} ({self.characteristic})"


class ClientAccessRule(_Frozen):
    """A Client Access Rule (§6.1), fields as Get-ClientAccessRule names them."""

    name: str
    priority: int = Field(ge=0)
    enabled: bool = True
    action: Literal["AllowAccess", "DenyAccess"] = "DenyAccess"
    scope: Literal["All", "Users"] = "All"
    any_of_protocols: tuple[str, ...] = ()
    except_any_of_protocols: tuple[str, ...] = ()
    any_of_client_ip_addresses_or_ranges: tuple[str, ...] = ()
    except_any_of_client_ip_addresses_or_ranges: tuple[str, ...] = ()
    any_of_authentication_types: tuple[str, ...] = ()
    except_any_of_authentication_types: tuple[str, ...] = ()
    username_matches_any_of_patterns: tuple[str, ...] = ()
    except_username_matches_any_of_patterns: tuple[str, ...] = ()
    user_recipient_filter: str | None = None


# ---- directory -----------------------------------------------------------------------------


class ProvisioningError(_Frozen):
    """onPremisesProvisioningErrors[] (§5 User row): e.g. a proxy address conflict."""

    category: str = "PropertyConflict"
    property_causing_error: str = "ProxyAddresses"
    value: str
    occurred_days_ago: int = 2


class TenantUser(_Frozen):
    id: str
    upn: str
    display_name: str
    mail: str | None = None
    proxy_addresses: tuple[str, ...] = ()  # "SMTP:primary", "smtp:alias"
    account_enabled: bool = True
    synced: bool = False  # onPremisesSyncEnabled
    provisioning_errors: tuple[ProvisioningError, ...] = ()
    user_type: Literal["Member", "Guest"] = "Member"
    usage_location: str | None = "US"
    licenses: tuple[AssignedLicense, ...] = ()
    # provisioningStatus per service plan NAME where not "Success" (e.g. PendingProvisioning).
    plan_status: dict[str, ProvisioningStatus] = Field(default_factory=dict)
    # Where the mailbox lives: Exchange Online (needs a provisioned mailbox plan to exist),
    # on-premises (hybrid: EXO holds a mail user), or nowhere.
    mailbox: Literal["exo", "onprem", "none"] = "exo"
    cas: CasSettings = CasSettings()
    devices: tuple[MobileDevice, ...] = ()
    roles: tuple[str, ...] = ()  # Entra role display names (ROLE_TEMPLATES keys)
    deleted_days_ago: int | None = None  # soft-deleted this many days ago (restorable < 30)
    created_days_ago: int = 400

    @field_validator("upn", "mail")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return value.lower() if value is not None else None

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = set(value) - set(ROLE_TEMPLATES)
        if unknown:
            raise ValueError(f"unknown directory roles {sorted(unknown)}")
        return value


class Group(_Frozen):
    id: str
    display_name: str
    members: tuple[str, ...] = ()  # user or group ids


# ---- the app mailfix signs in as -----------------------------------------------------------


class ClientSecret(_Frozen):
    value: str
    expired: bool = False
    hint: str = ""  # first characters, as the portal shows them


class AppRegistration(_Frozen):
    """mailfix's app registration and what the tenant admin granted it.

    graph_permissions: Microsoft Graph application permissions with admin consent (the `roles`
    of a Graph token). exo_permissions: Office 365 Exchange Online application permissions
    (Exchange.ManageAsApp). directory_roles: Entra roles assigned to the service principal
    (Exchange needs one besides Exchange.ManageAsApp, §6.3). certificates: DER certificates
    whose keys may sign a client assertion.
    """

    client_id: str
    display_name: str = "mailfix"
    secrets: tuple[ClientSecret, ...] = ()
    certificates: tuple[bytes, ...] = ()
    # The sandbox's own app certificate (sandbox.tenant.build.app_certificate) is registered too,
    # so MAILFIX_CLIENT_CERTIFICATE can point at it (`World.env(certificate=True)`).
    sandbox_certificate: bool = True
    graph_permissions: tuple[str, ...] = ()
    exo_permissions: tuple[str, ...] = ("Exchange.ManageAsApp",)
    directory_roles: tuple[str, ...] = ("Global Reader",)

    @property
    def service_principal_id(self) -> str:
        return stable_id("sp", self.client_id)

    @field_validator("directory_roles")
    @classmethod
    def _known_roles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = set(value) - set(ROLE_TEMPLATES)
        if unknown:
            raise ValueError(f"unknown directory roles {sorted(unknown)}")
        return value


# Everything mailfix's checks and fixes use, at least privilege (PLAN "Least-privilege").
MAILFIX_GRAPH_PERMISSIONS = (
    "User.Read.All",
    "LicenseAssignment.Read.All",
    "MailboxSettings.Read",
    "GroupMember.Read.All",
    "RoleManagement.Read.Directory",
    "Policy.Read.All",
    "Policy.Read.ConditionalAccess",
    "AuditLog.Read.All",
    "Directory.Read.All",
    "ServiceHealth.Read.All",
    "LicenseAssignment.ReadWrite.All",
    "User.EnableDisableAccount.All",
    "User.ReadWrite.All",
)


# ---- activity ------------------------------------------------------------------------------


class AppliedPolicy(_Frozen):
    """appliedConditionalAccessPolicies[] of a sign-in (§5.4)."""

    id: str
    display_name: str
    result: Literal[
        "success",
        "failure",
        "notApplied",
        "notEnabled",
        "reportOnlySuccess",
        "reportOnlyFailure",
        "reportOnlyNotApplied",
        "reportOnlyInterrupted",
    ]
    enforced_grant_controls: tuple[str, ...] = ()


class SignInEvent(_Frozen):
    """One sign-in of a user (§5.4). error_code 0 = success."""

    upn: str
    minutes_ago: int = 30
    error_code: int = 0
    failure_reason: str = ""
    additional_details: str | None = None
    app_display_name: str = "Microsoft Outlook"
    app_id: str = "d3590ed6-52b3-4102-aeff-aad2292ab01c"  # Microsoft Office [uncertain]
    resource_display_name: str = "Office 365 Exchange Online"
    resource_id: str = EXO_APP_ID
    client_app_used: str = "Mobile Apps and Desktop clients"
    ip_address: str = "203.0.113.24"
    city: str = "Seattle"
    country: str = "US"
    operating_system: str = "Windows10"
    browser: str = ""
    is_compliant: bool = False
    is_managed: bool = False
    conditional_access_status: Literal["success", "failure", "notApplied"] = "notApplied"
    applied_policies: tuple[AppliedPolicy, ...] = ()

    @field_validator("upn")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class ServiceIssue(_Frozen):
    """A service health issue (§5 Service health row)."""

    id: str  # EX123456 / MO…
    title: str
    classification: Literal["incident", "advisory"] = "incident"
    status: str = "serviceDegradation"
    service: str = "Exchange Online"
    feature: str = "E-Mail and calendar access"
    feature_group: str = "E-Mail and calendar access"
    impact_description: str = ""
    is_resolved: bool = False
    started_minutes_ago: int = 90


# ---- faults --------------------------------------------------------------------------------


class Throttle(_Frozen):
    """Answer `status` with Retry-After to matching requests, `times` times (-1: always).

    service "graph" matches `path` as a substring of the lower-cased request path; "exo" matches
    the cmdlet name (lower-cased, "" = every cmdlet); "login" the token endpoint.
    """

    service: Literal["graph", "exo", "login"]
    path: str = ""
    times: int = Field(default=1, ge=-1)
    retry_after: int = Field(default=1, ge=0)
    status: Literal[429, 503] = 429


# ---- the tenant ----------------------------------------------------------------------------


class TenantData(_Frozen):
    """A tenant's data as one scenario starts it."""

    tenant_id: str
    display_name: str = "Contoso"
    initial_domain: str = "contoso.onmicrosoft.com"
    domains: tuple[str, ...] = ("contoso.com",)
    premium: bool = True  # Entra ID P1/P2: sign-in logs through Graph need it (§5 Sign-ins)
    what_if: bool = True  # beta conditionalAccess/evaluate answers (else 400, not available)
    app: AppRegistration
    users: tuple[TenantUser, ...] = ()
    skus: tuple[Sku, ...] = STANDARD_SKUS
    groups: tuple[Group, ...] = ()
    named_locations: tuple[dict[str, Any], ...] = ()  # Graph shape (§5.2)
    ca_policies: tuple[dict[str, Any], ...] = ()  # Graph shape (§5.2)
    default_access_level: AccessLevel = "Allow"
    device_rules: tuple[DeviceAccessRule, ...] = ()
    client_access_rules: tuple[ClientAccessRule, ...] | None = None  # None: cmdlet retired
    smtp_client_authentication_disabled: bool = False  # Get-TransportConfig (org default)
    signins: tuple[SignInEvent, ...] = ()
    issues: tuple[ServiceIssue, ...] = ()
    throttles: tuple[Throttle, ...] = ()
    page_size: int = Field(default=2, ge=1)

    @field_validator("initial_domain")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()

    @field_validator("domains")
    @classmethod
    def _lower_all(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(d.lower() for d in value)

    @model_validator(mode="after")
    def _consistent(self) -> TenantData:
        ids = [u.id for u in self.users] + [g.id for g in self.groups]
        if len(ids) != len(set(ids)):
            raise ValueError("two directory objects share an id")
        skus = {s.sku_id for s in self.skus}
        for user in self.users:
            for lic in user.licenses:
                if lic.sku_id not in skus:
                    raise ValueError(f"{user.upn}: licence {lic.sku_id} is not a tenant SKU")
        return self

    def with_alias(self, upn: str, address: str) -> TenantData:
        """This tenant with `address` added to `upn`'s proxy addresses (a second address for the
        same person, as the demo's "<scenario>@domain" people are)."""
        person = self.user(upn)
        alias = f"smtp:{address.lower()}"
        if alias in person.proxy_addresses:
            return self
        changed = person.model_copy(update={"proxy_addresses": (*person.proxy_addresses, alias)})
        users = tuple(changed if u.id == person.id else u for u in self.users)
        return self.model_copy(update={"users": users})

    def user(self, upn: str) -> TenantUser:
        wanted = upn.lower()
        for u in self.users:
            if u.upn == wanted:
                return u
        raise KeyError(upn)


# ---- builders for Graph-shaped policy data --------------------------------------------------


def ca_policy(
    name: str,
    *,
    state: Literal["enabled", "disabled", "enabledForReportingButNotEnforced"] = "enabled",
    include_users: tuple[str, ...] = ("All",),
    exclude_users: tuple[str, ...] = (),
    include_groups: tuple[str, ...] = (),
    exclude_groups: tuple[str, ...] = (),
    include_roles: tuple[str, ...] = (),
    exclude_roles: tuple[str, ...] = (),
    include_applications: tuple[str, ...] = ("Office365",),
    exclude_applications: tuple[str, ...] = (),
    client_app_types: tuple[str, ...] = ("all",),
    include_platforms: tuple[str, ...] | None = None,
    exclude_platforms: tuple[str, ...] = (),
    include_locations: tuple[str, ...] | None = None,
    exclude_locations: tuple[str, ...] = (),
    controls: tuple[str, ...] = ("block",),
    operator: Literal["AND", "OR"] = "OR",
) -> dict[str, Any]:
    """A conditionalAccessPolicy exactly as Graph v1.0 returns it (§5.2)."""
    conditions: dict[str, Any] = {
        "userRiskLevels": [],
        "signInRiskLevels": [],
        "clientAppTypes": list(client_app_types),
        "servicePrincipalRiskLevels": [],
        "insiderRiskLevels": None,
        "clients": None,
        "devices": None,
        "clientApplications": None,
        "applications": {
            "includeApplications": list(include_applications),
            "excludeApplications": list(exclude_applications),
            "includeUserActions": [],
            "includeAuthenticationContextClassReferences": [],
            "applicationFilter": None,
        },
        "users": {
            "includeUsers": list(include_users),
            "excludeUsers": list(exclude_users),
            "includeGroups": list(include_groups),
            "excludeGroups": list(exclude_groups),
            "includeRoles": list(include_roles),
            "excludeRoles": list(exclude_roles),
            "includeGuestsOrExternalUsers": None,
            "excludeGuestsOrExternalUsers": None,
        },
        "platforms": None
        if include_platforms is None
        else {
            "includePlatforms": list(include_platforms),
            "excludePlatforms": list(exclude_platforms),
        },
        "locations": None
        if include_locations is None
        else {
            "includeLocations": list(include_locations),
            "excludeLocations": list(exclude_locations),
        },
    }
    return {
        "id": stable_id("ca", name),
        "templateId": None,
        "displayName": name,
        "createdDateTime": "2025-03-04T09:12:44.3211977Z",
        "modifiedDateTime": "2026-10-01T15:02:10.1276528Z",
        "state": state,
        "sessionControls": None,
        "conditions": conditions,
        "grantControls": {
            "operator": operator,
            "builtInControls": list(controls),
            "customAuthenticationFactors": [],
            "termsOfUse": [],
            "authenticationStrength": None,
        },
    }


def ip_location(name: str, *cidrs: str, trusted: bool = True) -> dict[str, Any]:
    """An ipNamedLocation (§5.2)."""
    ranges = [
        {
            "@odata.type": "#microsoft.graph.iPv6CidrRange"
            if ":" in c
            else "#microsoft.graph.iPv4CidrRange",
            "cidrAddress": c,
        }
        for c in cidrs
    ]
    return {
        "@odata.type": "#microsoft.graph.ipNamedLocation",
        "id": stable_id("location", name),
        "displayName": name,
        "createdDateTime": "2025-01-20T10:00:00.0000000Z",
        "modifiedDateTime": "2025-01-20T10:00:00.0000000Z",
        "isTrusted": trusted,
        "ipRanges": ranges,
    }


def country_location(name: str, *countries: str, include_unknown: bool = False) -> dict[str, Any]:
    """A countryNamedLocation (§5.2)."""
    return {
        "@odata.type": "#microsoft.graph.countryNamedLocation",
        "id": stable_id("location", name),
        "displayName": name,
        "createdDateTime": "2025-01-20T10:00:00.0000000Z",
        "modifiedDateTime": "2025-01-20T10:00:00.0000000Z",
        "countriesAndRegions": list(countries),
        "includeUnknownCountriesAndRegions": include_unknown,
        "countryLookupMethod": "clientIpAddress",
    }
