"""Typed views of what the tenant checks read. Field names exactly as on the wire (aliases).

Graph shapes: reference §5 (user, licenseDetails/servicePlanInfo, signIn, serviceHealthIssue);
Exchange admin API shapes: §6.2–6.4 and §3.3 (Get-CASMailbox, Get-Mailbox, Get-MobileDevice,
Get-ActiveSyncOrganizationSettings, Get-ActiveSyncDeviceAccessRule, Get-TransportConfig).
Everything is `extra="ignore"`: a field we do not read never breaks parsing, and a field we
read that is absent is None (tenants differ; the checks decide what a missing value means).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


# --- Microsoft Graph ---------------------------------------------------------------------------


class AssignedLicense(_Wire):
    sku_id: str = Field(alias="skuId")
    disabled_plans: list[str] = Field(default_factory=list, alias="disabledPlans")


class AssignedPlan(_Wire):
    capability_status: str | None = Field(default=None, alias="capabilityStatus")
    service: str | None = None
    service_plan_id: str | None = Field(default=None, alias="servicePlanId")


class ProvisionedPlan(_Wire):
    capability_status: str | None = Field(default=None, alias="capabilityStatus")
    provisioning_status: str | None = Field(default=None, alias="provisioningStatus")
    service: str | None = None


class ProvisioningError(_Wire):
    """onPremisesProvisioningErrors[]: e.g. category PropertyConflict on ProxyAddresses."""

    category: str | None = None
    occurred: str | None = Field(default=None, alias="occurredDateTime")
    property_causing_error: str | None = Field(default=None, alias="propertyCausingError")
    value: str | None = None


class User(_Wire):
    id: str
    user_principal_name: str = Field(alias="userPrincipalName")
    display_name: str | None = Field(default=None, alias="displayName")
    mail: str | None = None
    account_enabled: bool | None = Field(default=None, alias="accountEnabled")
    proxy_addresses: list[str] = Field(default_factory=list, alias="proxyAddresses")
    assigned_licenses: list[AssignedLicense] = Field(default_factory=list, alias="assignedLicenses")
    assigned_plans: list[AssignedPlan] = Field(default_factory=list, alias="assignedPlans")
    provisioned_plans: list[ProvisionedPlan] = Field(default_factory=list, alias="provisionedPlans")
    on_premises_sync_enabled: bool | None = Field(default=None, alias="onPremisesSyncEnabled")
    on_premises_immutable_id: str | None = Field(default=None, alias="onPremisesImmutableId")
    on_premises_provisioning_errors: list[ProvisioningError] = Field(
        default_factory=list, alias="onPremisesProvisioningErrors"
    )
    user_type: str | None = Field(default=None, alias="userType")
    usage_location: str | None = Field(default=None, alias="usageLocation")
    deleted_date_time: str | None = Field(default=None, alias="deletedDateTime")

    @property
    def synced_from_on_premises(self) -> bool:
        return bool(self.on_premises_sync_enabled)


class ServicePlanInfo(_Wire):
    service_plan_id: str = Field(alias="servicePlanId")
    service_plan_name: str = Field(alias="servicePlanName")
    provisioning_status: str | None = Field(default=None, alias="provisioningStatus")
    applies_to: str | None = Field(default=None, alias="appliesTo")


class LicenseDetails(_Wire):
    id: str | None = None
    sku_id: str = Field(alias="skuId")
    sku_part_number: str = Field(alias="skuPartNumber")
    service_plans: list[ServicePlanInfo] = Field(default_factory=list, alias="servicePlans")


class SignInStatus(_Wire):
    error_code: int = Field(default=0, alias="errorCode")
    failure_reason: str | None = Field(default=None, alias="failureReason")
    additional_details: str | None = Field(default=None, alias="additionalDetails")


class AppliedConditionalAccessPolicy(_Wire):
    id: str | None = None
    display_name: str | None = Field(default=None, alias="displayName")
    enforced_grant_controls: list[str] = Field(default_factory=list, alias="enforcedGrantControls")
    result: str | None = None


class DeviceDetail(_Wire):
    operating_system: str | None = Field(default=None, alias="operatingSystem")
    browser: str | None = None
    is_compliant: bool | None = Field(default=None, alias="isCompliant")
    is_managed: bool | None = Field(default=None, alias="isManaged")


class SignIn(_Wire):
    id: str | None = None
    created: str = Field(alias="createdDateTime")
    user_principal_name: str | None = Field(default=None, alias="userPrincipalName")
    app_display_name: str | None = Field(default=None, alias="appDisplayName")
    app_id: str | None = Field(default=None, alias="appId")
    resource_display_name: str | None = Field(default=None, alias="resourceDisplayName")
    resource_id: str | None = Field(default=None, alias="resourceId")
    client_app_used: str | None = Field(default=None, alias="clientAppUsed")
    ip_address: str | None = Field(default=None, alias="ipAddress")
    status: SignInStatus = Field(default_factory=SignInStatus)
    conditional_access_status: str | None = Field(default=None, alias="conditionalAccessStatus")
    applied_conditional_access_policies: list[AppliedConditionalAccessPolicy] = Field(
        default_factory=list, alias="appliedConditionalAccessPolicies"
    )
    device_detail: DeviceDetail | None = Field(default=None, alias="deviceDetail")


class ServiceHealthIssue(_Wire):
    id: str
    title: str = ""
    service: str | None = None
    feature: str | None = None
    feature_group: str | None = Field(default=None, alias="featureGroup")
    classification: str | None = None  # advisory | incident
    status: str | None = None
    is_resolved: bool = Field(default=False, alias="isResolved")
    start: str | None = Field(default=None, alias="startDateTime")
    impact_description: str | None = Field(default=None, alias="impactDescription")


# --- Exchange Online admin API (InvokeCommand) -------------------------------------------------


class CasMailbox(_Wire):
    identity: str | None = Field(default=None, alias="Identity")
    primary_smtp_address: str | None = Field(default=None, alias="PrimarySmtpAddress")
    active_sync_enabled: bool | None = Field(default=None, alias="ActiveSyncEnabled")
    owa_enabled: bool | None = Field(default=None, alias="OWAEnabled")
    pop_enabled: bool | None = Field(default=None, alias="PopEnabled")
    imap_enabled: bool | None = Field(default=None, alias="ImapEnabled")
    mapi_enabled: bool | None = Field(default=None, alias="MAPIEnabled")
    ews_enabled: bool | None = Field(default=None, alias="EwsEnabled")
    outlook_mobile_enabled: bool | None = Field(default=None, alias="OutlookMobileEnabled")
    # True disabled, False enabled, None: Get-TransportConfig's value applies (§6.2)
    smtp_client_authentication_disabled: bool | None = Field(
        default=None, alias="SmtpClientAuthenticationDisabled"
    )
    active_sync_allowed_device_ids: list[str] | None = Field(
        default=None, alias="ActiveSyncAllowedDeviceIDs"
    )
    active_sync_blocked_device_ids: list[str] | None = Field(
        default=None, alias="ActiveSyncBlockedDeviceIDs"
    )
    has_active_sync_device_partnership: bool | None = Field(
        default=None, alias="HasActiveSyncDevicePartnership"
    )


class Mailbox(_Wire):
    identity: str | None = Field(default=None, alias="Identity")
    primary_smtp_address: str | None = Field(default=None, alias="PrimarySmtpAddress")
    user_principal_name: str | None = Field(default=None, alias="UserPrincipalName")
    recipient_type_details: str | None = Field(default=None, alias="RecipientTypeDetails")
    external_directory_object_id: str | None = Field(
        default=None, alias="ExternalDirectoryObjectId"
    )
    is_mailbox_enabled: bool | None = Field(default=None, alias="IsMailboxEnabled")
    account_disabled: bool | None = Field(default=None, alias="AccountDisabled")
    when_soft_deleted: str | None = Field(default=None, alias="WhenSoftDeleted")


class MobileDevice(_Wire):
    identity: str | None = Field(default=None, alias="Identity")
    device_id: str = Field(alias="DeviceId")
    device_type: str | None = Field(default=None, alias="DeviceType")
    device_model: str | None = Field(default=None, alias="DeviceModel")
    device_os: str | None = Field(default=None, alias="DeviceOS")
    device_user_agent: str | None = Field(default=None, alias="DeviceUserAgent")
    friendly_name: str | None = Field(default=None, alias="FriendlyName")
    client_type: str | None = Field(default=None, alias="ClientType")
    # Allowed | Blocked | Quarantined | DeviceDiscovery | Unknown (§3.3)
    device_access_state: str | None = Field(default=None, alias="DeviceAccessState")
    # Global | Individual | DeviceRule | Policy | Upgrade | … (§3.3)
    device_access_state_reason: str | None = Field(default=None, alias="DeviceAccessStateReason")
    device_access_control_rule: str | None = Field(default=None, alias="DeviceAccessControlRule")
    first_sync_time: str | None = Field(default=None, alias="FirstSyncTime")


class ActiveSyncOrganizationSettings(_Wire):
    identity: str | None = Field(default=None, alias="Identity")
    default_access_level: str | None = Field(default=None, alias="DefaultAccessLevel")
    allow_access_for_unsupported_platform: bool | None = Field(
        default=None, alias="AllowAccessForUnSupportedPlatform"
    )


class ActiveSyncDeviceAccessRule(_Wire):
    identity: str | None = Field(default=None, alias="Identity")
    name: str | None = Field(default=None, alias="Name")
    characteristic: str | None = Field(default=None, alias="Characteristic")
    query_string: str | None = Field(default=None, alias="QueryString")
    access_level: str | None = Field(default=None, alias="AccessLevel")


class TransportConfig(_Wire):
    smtp_client_authentication_disabled: bool | None = Field(
        default=None, alias="SmtpClientAuthenticationDisabled"
    )


def parse_all(model: type[_Wire], rows: list[dict[str, Any]]) -> list[Any]:
    """Parse a list of wire objects (a page set) into `model`s."""
    return [model.model_validate(row) for row in rows]
