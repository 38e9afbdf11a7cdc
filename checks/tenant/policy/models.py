"""Conditional Access policies, named locations and Client Access Rules as read from the wire.

Field names are Microsoft's (pydantic aliases): Graph v1.0 `conditionalAccessPolicy` and
`namedLocation` (exchange-online-diagnostics.md §5.2) and the Exchange objects that
Get-ClientAccessRule returns (§6.1). Unknown fields are ignored, except in a policy's
`conditions`, where a condition this code does not know is kept so the evaluator can say it
could not evaluate it rather than ignore it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

# Office 365 Exchange Online (§5.2).
EXCHANGE_ONLINE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"


def _list(value: Any) -> Any:
    """Graph sends [] or null for an empty list; Exchange may send one string for one value."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list | tuple):
        return [str(v) for v in value if v is not None]
    return value


StrList = Annotated[list[str], BeforeValidator(_list)]


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


# ---- Conditional Access (Graph v1.0) --------------------------------------------------------


class PolicyState(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"
    REPORT_ONLY = "enabledForReportingButNotEnforced"


class ClientAppType(StrEnum):
    """conditionalAccessClientApp (§5.2)."""

    ALL = "all"
    BROWSER = "browser"
    MODERN = "mobileAppsAndDesktopClients"
    EAS = "exchangeActiveSync"
    EAS_SUPPORTED = "easSupported"
    OTHER = "other"  # legacy authentication: IMAP, POP, SMTP, older Office clients …


class Platform(StrEnum):
    ALL = "all"
    ANDROID = "android"
    IOS = "iOS"
    WINDOWS = "windows"
    WINDOWS_PHONE = "windowsPhone"
    MACOS = "macOS"
    LINUX = "linux"


class CaUsers(_Wire):
    include_users: StrList = Field(default_factory=list, alias="includeUsers")
    exclude_users: StrList = Field(default_factory=list, alias="excludeUsers")
    include_groups: StrList = Field(default_factory=list, alias="includeGroups")
    exclude_groups: StrList = Field(default_factory=list, alias="excludeGroups")
    include_roles: StrList = Field(default_factory=list, alias="includeRoles")
    exclude_roles: StrList = Field(default_factory=list, alias="excludeRoles")
    include_guests: dict[str, Any] | None = Field(None, alias="includeGuestsOrExternalUsers")
    exclude_guests: dict[str, Any] | None = Field(None, alias="excludeGuestsOrExternalUsers")


class CaApplications(_Wire):
    include_applications: StrList = Field(default_factory=list, alias="includeApplications")
    exclude_applications: StrList = Field(default_factory=list, alias="excludeApplications")
    include_user_actions: StrList = Field(default_factory=list, alias="includeUserActions")
    include_auth_context: StrList = Field(
        default_factory=list, alias="includeAuthenticationContextClassReferences"
    )
    application_filter: dict[str, Any] | None = Field(None, alias="applicationFilter")


class CaPlatforms(_Wire):
    include_platforms: StrList = Field(default_factory=list, alias="includePlatforms")
    exclude_platforms: StrList = Field(default_factory=list, alias="excludePlatforms")


class CaLocations(_Wire):
    include_locations: StrList = Field(default_factory=list, alias="includeLocations")
    exclude_locations: StrList = Field(default_factory=list, alias="excludeLocations")


class CaConditions(BaseModel):
    # extra="allow": a condition Graph added after this code was written is kept, and makes
    # the policy "cannot evaluate" instead of silently matching.
    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    users: CaUsers | None = None
    applications: CaApplications | None = None
    client_app_types: StrList = Field(default_factory=list, alias="clientAppTypes")
    platforms: CaPlatforms | None = None
    locations: CaLocations | None = None
    sign_in_risk_levels: StrList = Field(default_factory=list, alias="signInRiskLevels")
    user_risk_levels: StrList = Field(default_factory=list, alias="userRiskLevels")
    service_principal_risk_levels: StrList = Field(
        default_factory=list, alias="servicePrincipalRiskLevels"
    )
    insider_risk_levels: str | None = Field(None, alias="insiderRiskLevels")
    devices: dict[str, Any] | None = None
    client_applications: dict[str, Any] | None = Field(None, alias="clientApplications")
    authentication_flows: dict[str, Any] | None = Field(None, alias="authenticationFlows")

    def unknown_conditions(self) -> list[str]:
        """Names of configured conditions this code does not know (wire names)."""
        extra = self.model_extra or {}
        return sorted(
            k for k, v in extra.items() if v not in (None, [], {}, "") and not k.startswith("@")
        )


class GrantControls(_Wire):
    operator: str = "OR"
    built_in_controls: StrList = Field(default_factory=list, alias="builtInControls")
    custom_authentication_factors: StrList = Field(
        default_factory=list, alias="customAuthenticationFactors"
    )
    terms_of_use: StrList = Field(default_factory=list, alias="termsOfUse")
    authentication_strength: dict[str, Any] | None = Field(None, alias="authenticationStrength")

    def controls(self) -> list[str]:
        """Every requirement, named as Graph names it (authenticationStrength, termsOfUse …)."""
        out = list(self.built_in_controls)
        if self.authentication_strength:
            out.append("authenticationStrength")
        out.extend("termsOfUse" for _ in self.terms_of_use[:1])
        out.extend(f"custom:{c}" for c in self.custom_authentication_factors)
        return out


class ConditionalAccessPolicy(_Wire):
    id: str
    display_name: str = Field("", alias="displayName")
    state: str = PolicyState.DISABLED
    conditions: CaConditions = Field(default_factory=CaConditions)
    grant_controls: GrantControls | None = Field(None, alias="grantControls")
    session_controls: dict[str, Any] | None = Field(None, alias="sessionControls")

    @property
    def name(self) -> str:
        return self.display_name or self.id


class IpRange(_Wire):
    odata_type: str = Field("", alias="@odata.type")
    cidr_address: str = Field(alias="cidrAddress")


class NamedLocation(_Wire):
    """`#microsoft.graph.ipNamedLocation` or `#microsoft.graph.countryNamedLocation` (§5.2)."""

    odata_type: str = Field("", alias="@odata.type")
    id: str
    display_name: str = Field("", alias="displayName")
    is_trusted: bool = Field(False, alias="isTrusted")
    ip_ranges: list[IpRange] = Field(default_factory=list, alias="ipRanges")
    countries_and_regions: StrList = Field(default_factory=list, alias="countriesAndRegions")
    include_unknown_countries: bool = Field(False, alias="includeUnknownCountriesAndRegions")
    country_lookup_method: str | None = Field(None, alias="countryLookupMethod")

    @property
    def kind(self) -> str:
        """ "ip", "country", or "unknown" (a type this code does not know)."""
        t = self.odata_type.lower()
        if t.endswith("ipnamedlocation") or (not t and self.ip_ranges):
            return "ip"
        if t.endswith("countrynamedlocation") or (not t and self.countries_and_regions):
            return "country"
        return "unknown"


# ---- Client Access Rules (Exchange, Get-ClientAccessRule) ------------------------------------


class CarProtocol(StrEnum):
    """AnyOfProtocols values (§6.1)."""

    EAS = "ExchangeActiveSync"
    EAC = "ExchangeAdminCenter"
    EWS = "ExchangeWebServices"
    IMAP4 = "IMAP4"
    OAB = "OfflineAddressBook"
    OUTLOOK_ANYWHERE = "OutlookAnywhere"  # includes MAPI over HTTP
    OWA = "OutlookWebApp"
    POP3 = "POP3"
    PSWS = "PowerShellWebServices"
    REMOTE_POWERSHELL = "RemotePowerShell"
    REST = "REST"
    UNIVERSAL_OUTLOOK = "UniversalOutlook"


class CarAuthType(StrEnum):
    ADFS = "AdfsAuthentication"
    BASIC = "BasicAuthentication"
    CERTIFICATE = "CertificateBasedAuthentication"
    NON_BASIC = "NonBasicAuthentication"
    OAUTH = "OAuthAuthentication"


class ClientAccessRule(_Wire):
    name: str = Field("", alias="Name")
    identity: str | None = Field(None, alias="Identity")
    priority: int = Field(0, alias="Priority")
    enabled: bool = Field(True, alias="Enabled")
    action: str = Field("AllowAccess", alias="Action")
    scope: str | None = Field(None, alias="Scope")
    any_of_ips: StrList = Field(default_factory=list, alias="AnyOfClientIPAddressesOrRanges")
    except_ips: StrList = Field(default_factory=list, alias="ExceptAnyOfClientIPAddressesOrRanges")
    any_of_protocols: StrList = Field(default_factory=list, alias="AnyOfProtocols")
    except_protocols: StrList = Field(default_factory=list, alias="ExceptAnyOfProtocols")
    any_of_auth: StrList = Field(default_factory=list, alias="AnyOfAuthenticationTypes")
    except_auth: StrList = Field(default_factory=list, alias="ExceptAnyOfAuthenticationTypes")
    username_patterns: StrList = Field(default_factory=list, alias="UsernameMatchesAnyOfPatterns")
    except_username_patterns: StrList = Field(
        default_factory=list, alias="ExceptUsernameMatchesAnyOfPatterns"
    )
    user_recipient_filter: str | None = Field(None, alias="UserRecipientFilter")
    any_of_ports: StrList = Field(default_factory=list, alias="AnyOfSourceTcpPortNumbers")
    except_ports: StrList = Field(default_factory=list, alias="ExceptAnyOfSourceTcpPortNumbers")
    user_is_member_of: StrList = Field(default_factory=list, alias="UserIsMemberOf")
    except_user_is_member_of: StrList = Field(default_factory=list, alias="ExceptUserIsMemberOf")

    @property
    def label(self) -> str:
        return self.name or self.identity or f"priority {self.priority}"

    @property
    def denies(self) -> bool:
        return self.action.strip().lower() in ("denyaccess", "deny")
