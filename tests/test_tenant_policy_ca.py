"""Conditional Access for a sign-in to Exchange Online (reference §5.2), table-driven.

Policies are written as Graph v1.0 returns them. The expected outcomes follow the documented
semantics: every configured condition must match, exclusions beat inclusions (users, groups
including nested ones, roles, apps, platforms, locations), report-only never blocks, disabled
is ignored, any block wins, otherwise every applying policy's controls must be met, combined by
its operator; legacy clients cannot do MFA or pass device state.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from checks.tenant.policy import ca
from checks.tenant.policy._tri import Tri
from checks.tenant.policy.ca import AppKind, Can, Outcome, SignIn
from checks.tenant.policy.models import (
    EXCHANGE_ONLINE_APP_ID,
    ClientAppType,
    ConditionalAccessPolicy,
    NamedLocation,
    Platform,
)

ANA = "11111111-1111-1111-1111-111111111111"
SALES = "22222222-0000-0000-0000-000000000001"  # Ana is a member of "Sales EU", itself in SALES
SALES_EU = "22222222-0000-0000-0000-000000000002"
CONTRACTORS = "22222222-0000-0000-0000-000000000003"
GLOBAL_ADMIN = "62e90394-69f5-4237-9190-012177145e10"  # Global Administrator role template
SHAREPOINT = "00000003-0000-0ff1-ce00-000000000000"
OFFICE_V4 = "aaaaaaaa-0000-0000-0000-000000000004"
OFFICE_V6 = "aaaaaaaa-0000-0000-0000-000000000006"
FRANCE = "aaaaaaaa-0000-0000-0000-0000000000fr"

LOCATIONS = [
    NamedLocation.model_validate(
        {
            "@odata.type": "#microsoft.graph.ipNamedLocation",
            "id": OFFICE_V4,
            "displayName": "Office IPv4",
            "isTrusted": True,
            "ipRanges": [
                {"@odata.type": "#microsoft.graph.iPv4CidrRange", "cidrAddress": "198.51.100.0/24"}
            ],
        }
    ),
    NamedLocation.model_validate(
        {
            "@odata.type": "#microsoft.graph.ipNamedLocation",
            "id": OFFICE_V6,
            "displayName": "Office IPv6",
            "isTrusted": False,
            "ipRanges": [
                {
                    "@odata.type": "#microsoft.graph.iPv6CidrRange",
                    "cidrAddress": "2001:db8:1234::/48",
                }
            ],
        }
    ),
    NamedLocation.model_validate(
        {
            "@odata.type": "#microsoft.graph.countryNamedLocation",
            "id": FRANCE,
            "displayName": "France",
            "countriesAndRegions": ["FR"],
            "includeUnknownCountriesAndRegions": False,
        }
    ),
]


def policy(
    name: str,
    *,
    state: str = "enabled",
    users: dict[str, Any] | None = None,
    apps: list[str] | None = None,
    exclude_apps: list[str] | None = None,
    client_apps: list[str] | None = None,
    platforms: dict[str, Any] | None = None,
    locations: dict[str, Any] | None = None,
    controls: list[str] | None = None,
    operator: str = "OR",
    **conditions: Any,
) -> ConditionalAccessPolicy:
    return ConditionalAccessPolicy.model_validate(
        {
            "id": f"pol-{name}",
            "displayName": name,
            "state": state,
            "conditions": {
                "users": users if users is not None else {"includeUsers": ["All"]},
                "applications": {
                    "includeApplications": apps if apps is not None else ["All"],
                    "excludeApplications": exclude_apps or [],
                },
                "clientAppTypes": client_apps or ["all"],
                "platforms": platforms,
                "locations": locations,
                **conditions,
            },
            "grantControls": None
            if controls is None
            else {"operator": operator, "builtInControls": controls},
        }
    )


def signin(app: AppKind = AppKind.LEGACY, **kw: Any) -> SignIn:
    kw.setdefault("groups", frozenset({SALES, SALES_EU}))  # transitive: both levels
    kw.setdefault("roles", frozenset())
    if isinstance(kw.get("ip"), str):
        kw["ip"] = ipaddress.ip_address(kw["ip"])
    return SignIn(user_id=ANA, app=app, **kw)


BLOCK_LEGACY = policy(
    "Block legacy auth", client_apps=["exchangeActiveSync", "other"], controls=["block"]
)
MFA_ALL = policy("MFA for everyone", controls=["mfa"])

# (id, policies, sign-in, outcome, certain, deciding policy, named control)
CASES: list[
    tuple[str, list[ConditionalAccessPolicy], SignIn, Outcome, bool, str | None, str | None]
] = [
    ("no policies: allowed", [], signin(), Outcome.ALLOWED, True, None, None),
    (
        "block legacy auth blocks IMAP with a password",
        [BLOCK_LEGACY],
        signin(),
        Outcome.BLOCKED,
        True,
        "Block legacy auth",
        "block",
    ),
    (
        "block legacy auth blocks the phone's ActiveSync mail app",
        [BLOCK_LEGACY],
        signin(AppKind.EAS),
        Outcome.BLOCKED,
        True,
        "Block legacy auth",
        "block",
    ),
    (
        "block legacy auth leaves Outlook alone",
        [BLOCK_LEGACY],
        signin(AppKind.OUTLOOK_DESKTOP),
        Outcome.ALLOWED,
        True,
        None,
        None,
    ),
    (
        "IMAP app with modern sign-in is not legacy",
        [BLOCK_LEGACY],
        signin(AppKind.MODERN_APP),
        Outcome.ALLOWED,
        True,
        None,
        None,
    ),
    (
        "report-only block never blocks",
        [
            policy(
                "Block (report-only)", state="enabledForReportingButNotEnforced", controls=["block"]
            )
        ],
        signin(),
        Outcome.ALLOWED,
        True,
        None,
        None,
    ),
    (
        "disabled policy ignored",
        [policy("Block (off)", state="disabled", controls=["block"])],
        signin(),
        Outcome.ALLOWED,
        True,
        None,
        None,
    ),
    (
        "excluded user beats All users",
        [
            policy(
                "Block", users={"includeUsers": ["All"], "excludeUsers": [ANA]}, controls=["block"]
            )
        ],
        signin(),
        Outcome.ALLOWED,
        True,
        None,
        None,
    ),
    (
        "included user directly",
        [policy("Block Ana", users={"includeUsers": [ANA]}, controls=["block"])],
        signin(),
        Outcome.BLOCKED,
        True,
        "Block Ana",
        "block",
    ),
    (
        "included through a nested group",
        [policy("Block Sales", users={"includeGroups": [SALES]}, controls=["block"])],
        signin(),
        Outcome.BLOCKED,
        True,
        "Block Sales",
        "block",
    ),
    (
        "excluded through a nested group beats an included user",
        [
            policy(
                "Block", users={"includeUsers": [ANA], "excludeGroups": [SALES]}, controls=["block"]
            )
        ],
        signin(),
        Outcome.ALLOWED,
        True,
        None,
        None,
    ),
    (
        "group not read: cannot tell",
        [policy("Block Sales", users={"includeGroups": [SALES]}, controls=["block"])],
        signin(groups=None),
        Outcome.BLOCKED,
        False,
        "Block Sales",
        "block",
    ),
    (
        "not in the included group",
        [policy("Block contractors", users={"includeGroups": [CONTRACTORS]}, controls=["block"])],
        signin(),
        Outcome.ALLOWED,
        True,
        None,
        None,
    ),
    (
        "included by role",
        [policy("MFA admins", users={"includeRoles": [GLOBAL_ADMIN]}, controls=["mfa"])],
        signin(roles=frozenset({GLOBAL_ADMIN})),
        Outcome.CONTROL_UNMET,
        True,
        "MFA admins",
        "mfa",
    ),
    (
        "excluded role beats All users",
        [
            policy(
                "Block",
                users={"includeUsers": ["All"], "excludeRoles": [GLOBAL_ADMIN]},
                controls=["block"],
            )
        ],
        signin(roles=frozenset({GLOBAL_ADMIN})),
        Outcome.ALLOWED,
        True,
        None,
        None,
    ),
    (
        "includeUsers None targets nobody",
        [policy("Nobody", users={"includeUsers": ["None"]}, controls=["block"])],
        signin(),
        Outcome.ALLOWED,
        True,
        None,
        None,
    ),
    (
        "guests-only policy skips a member",
        [policy("Guests", users={"includeUsers": ["GuestsOrExternalUsers"]}, controls=["block"])],
        signin(),
        Outcome.ALLOWED,
        True,
        None,
        None,
    ),
    (
        "Office365 includes Exchange Online",
        [policy("Block O365", apps=["Office365"], controls=["block"])],
        signin(),
        Outcome.BLOCKED,
        True,
        "Block O365",
        "block",
    ),
    (
        "Exchange Online by app id",
        [policy("Block EXO", apps=[EXCHANGE_ONLINE_APP_ID], controls=["block"])],
        signin(),
        Outcome.BLOCKED,
        True,
        "Block EXO",
        "block",
    ),
    (
        "another app only: does not apply",
        [policy("Block SPO", apps=[SHAREPOINT], controls=["block"])],
        signin(),
        Outcome.ALLOWED,
        True,
        None,
        None,
    ),
    (
        "All apps but Exchange Online excluded",
        [policy("Block", apps=["All"], exclude_apps=[EXCHANGE_ONLINE_APP_ID], controls=["block"])],
        signin(),
        Outcome.ALLOWED,
        True,
        None,
        None,
    ),
    (
        "MFA: legacy client can never satisfy it",
        [MFA_ALL],
        signin(),
        Outcome.CONTROL_UNMET,
        True,
        "MFA for everyone",
        "mfa",
    ),
    (
        "MFA: ActiveSync mail app can never satisfy it",
        [MFA_ALL],
        signin(AppKind.EAS),
        Outcome.CONTROL_UNMET,
        True,
        "MFA for everyone",
        "mfa",
    ),
    (
        "MFA: Outlook can satisfy it",
        [MFA_ALL],
        signin(AppKind.OUTLOOK_DESKTOP),
        Outcome.REQUIRES_CONTROL,
        True,
        "MFA for everyone",
        "mfa",
    ),
    (
        "OR: MFA or compliant device, Outlook mobile can",
        [policy("MFA or device", controls=["mfa", "compliantDevice"])],
        signin(AppKind.OUTLOOK_MOBILE),
        Outcome.REQUIRES_CONTROL,
        True,
        "MFA or device",
        "mfa",
    ),
    (
        "AND: MFA and approved app, Outlook desktop never has an approved app",
        [policy("MFA+app", controls=["mfa", "approvedApplication"], operator="AND")],
        signin(AppKind.OUTLOOK_DESKTOP, platform=Platform.WINDOWS),
        Outcome.CONTROL_UNMET,
        True,
        "MFA+app",
        "approvedApplication",
    ),
    (
        "OR: MFA or approved app, Outlook desktop can do MFA",
        [policy("MFA|app", controls=["mfa", "approvedApplication"], operator="OR")],
        signin(AppKind.OUTLOOK_DESKTOP, platform=Platform.WINDOWS),
        Outcome.REQUIRES_CONTROL,
        True,
        "MFA|app",
        "mfa",
    ),
    (
        "any block wins over a satisfiable MFA policy",
        [MFA_ALL, policy("Block all", controls=["block"])],
        signin(AppKind.OUTLOOK_DESKTOP),
        Outcome.BLOCKED,
        True,
        "Block all",
        "block",
    ),
    (
        "compliant device: depends on the device for Outlook",
        [policy("Compliant", controls=["compliantDevice"])],
        signin(AppKind.OUTLOOK_MOBILE),
        Outcome.REQUIRES_CONTROL,
        True,
        "Compliant",
        "compliantDevice",
    ),
    (
        "compliant device: never for the phone's ActiveSync app",
        [policy("Compliant", controls=["compliantDevice"])],
        signin(AppKind.EAS),
        Outcome.CONTROL_UNMET,
        True,
        "Compliant",
        "compliantDevice",
    ),
    (
        "client app type browser only: not for Outlook",
        [policy("Block browsers", client_apps=["browser"], controls=["block"])],
        signin(AppKind.OUTLOOK_DESKTOP),
        Outcome.ALLOWED,
        True,
        None,
        None,
    ),
    (
        "platform excluded beats All",
        [
            policy(
                "Block",
                platforms={"includePlatforms": ["all"], "excludePlatforms": ["iOS"]},
                controls=["block"],
            )
        ],
        signin(AppKind.OUTLOOK_MOBILE, platform=Platform.IOS),
        Outcome.ALLOWED,
        True,
        None,
        None,
    ),
    (
        "platform included",
        [policy("Block Android", platforms={"includePlatforms": ["android"]}, controls=["block"])],
        signin(AppKind.OUTLOOK_MOBILE, platform=Platform.ANDROID),
        Outcome.BLOCKED,
        True,
        "Block Android",
        "block",
    ),
    (
        "platform unknown: cannot tell",
        [policy("Block Android", platforms={"includePlatforms": ["android"]}, controls=["block"])],
        signin(AppKind.OUTLOOK_MOBILE),
        Outcome.BLOCKED,
        False,
        "Block Android",
        "block",
    ),
    (
        "location: any location but trusted, from the trusted office",
        [
            policy(
                "Block outside",
                locations={"includeLocations": ["All"], "excludeLocations": ["AllTrusted"]},
                controls=["block"],
            )
        ],
        signin(ip="198.51.100.20"),
        Outcome.ALLOWED,
        True,
        None,
        None,
    ),
    (
        "location: outside every named location (MFA trusted IPs not listed by Graph)",
        [
            policy(
                "Block outside",
                locations={"includeLocations": ["All"], "excludeLocations": [OFFICE_V4]},
                controls=["block"],
            )
        ],
        signin(ip="203.0.113.9"),
        Outcome.BLOCKED,
        True,
        "Block outside",
        "block",
    ),
    (
        "location: IPv6 office range excluded",
        [
            policy(
                "Block outside",
                locations={"includeLocations": ["All"], "excludeLocations": [OFFICE_V6]},
                controls=["block"],
            )
        ],
        signin(ip="2001:db8:1234:5::1"),
        Outcome.ALLOWED,
        True,
        None,
        None,
    ),
    (
        "location: IPv6 outside the office range",
        [
            policy(
                "Block outside",
                locations={"includeLocations": ["All"], "excludeLocations": [OFFICE_V6]},
                controls=["block"],
            )
        ],
        signin(ip="2001:db8:9999::1"),
        Outcome.BLOCKED,
        True,
        "Block outside",
        "block",
    ),
    (
        "location: IP unknown (mailfix is not the person's network)",
        [
            policy(
                "Block outside",
                locations={"includeLocations": ["All"], "excludeLocations": ["AllTrusted"]},
                controls=["block"],
            )
        ],
        signin(),
        Outcome.BLOCKED,
        False,
        "Block outside",
        "block",
    ),
    (
        "location: country included",
        [policy("Block France", locations={"includeLocations": [FRANCE]}, controls=["block"])],
        signin(country="FR"),
        Outcome.BLOCKED,
        True,
        "Block France",
        "block",
    ),
    (
        "location: another country",
        [policy("Block France", locations={"includeLocations": [FRANCE]}, controls=["block"])],
        signin(country="DE"),
        Outcome.ALLOWED,
        True,
        None,
        None,
    ),
    (
        "sign-in risk cannot be seen",
        [policy("MFA when risky", controls=["mfa"], signInRiskLevels=["high"])],
        signin(),
        Outcome.CONTROL_UNMET,
        False,
        "MFA when risky",
        "mfa",
    ),
    (
        "an unknown condition is not ignored",
        [policy("Future", controls=["block"], someNewCondition={"mode": "x"})],
        signin(),
        Outcome.BLOCKED,
        False,
        "Future",
        "block",
    ),
    (
        "workload identity policy never applies to a person",
        [
            policy(
                "Workloads",
                controls=["block"],
                clientApplications={"includeServicePrincipals": ["ServicePrincipalsInMyTenant"]},
            )
        ],
        signin(),
        Outcome.ALLOWED,
        True,
        None,
        None,
    ),
    (
        "certain unmet control outranks an uncertain block",
        [
            policy("Maybe block", locations={"includeLocations": [OFFICE_V4]}, controls=["block"]),
            MFA_ALL,
        ],
        signin(),
        Outcome.CONTROL_UNMET,
        True,
        "MFA for everyone",
        "mfa",
    ),
    (
        "session controls only: nothing to meet",
        [policy("Sign-in frequency", controls=None)],
        signin(),
        Outcome.ALLOWED,
        True,
        None,
        None,
    ),
]


@pytest.mark.parametrize(
    ("policies", "sign_in", "expected"),
    [(c[1], c[2], c[3:]) for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_conditional_access(
    policies: list[ConditionalAccessPolicy],
    sign_in: SignIn,
    expected: tuple[Outcome, bool, str | None, str | None],
) -> None:
    verdict = ca.evaluate(policies, sign_in, LOCATIONS)
    deciding = verdict.deciding
    got = (
        verdict.outcome,
        verdict.certain,
        deciding.policy.name if deciding else None,
        deciding.control if deciding else None,
    )
    assert got == expected


def test_report_only_is_listed_not_enforced() -> None:
    ro = policy(
        "Block (report-only)", state="enabledForReportingButNotEnforced", controls=["block"]
    )
    verdict = ca.evaluate([ro], signin(), LOCATIONS)
    assert verdict.outcome is Outcome.ALLOWED
    assert [r.policy.name for r in verdict.report_only] == ["Block (report-only)"]


def test_unknown_lists_what_was_not_evaluated() -> None:
    p = policy(
        "Block outside",
        locations={"includeLocations": ["All"], "excludeLocations": ["AllTrusted"]},
        controls=["block"],
    )
    verdict = ca.evaluate([p], signin(), LOCATIONS)
    assert verdict.unknown == ["the IP address the person connects from"]


def test_why_a_policy_does_not_apply_is_in_words() -> None:
    p = policy("Block", users={"includeUsers": ["All"], "excludeUsers": [ANA]}, controls=["block"])
    result = ca.evaluate_policy(p, signin())
    assert result.applies is Tri.NO
    assert result.why_not == "it excludes this person"


@pytest.mark.parametrize(
    ("app", "client_app_type"),
    [
        (AppKind.LEGACY, ClientAppType.OTHER),
        (AppKind.EAS, ClientAppType.EAS),
        (AppKind.OUTLOOK_DESKTOP, ClientAppType.MODERN),
        (AppKind.OUTLOOK_MOBILE, ClientAppType.MODERN),
        (AppKind.MODERN_APP, ClientAppType.MODERN),
        (AppKind.BROWSER, ClientAppType.BROWSER),
    ],
)
def test_client_app_types(app: AppKind, client_app_type: ClientAppType) -> None:
    assert signin(app).client_app_type is client_app_type


@pytest.mark.parametrize(
    ("control", "app", "platform", "can"),
    [
        ("mfa", AppKind.LEGACY, None, Can.NEVER),
        ("passwordChange", AppKind.EAS, None, Can.NEVER),
        ("mfa", AppKind.BROWSER, None, Can.YES),
        ("domainJoinedDevice", AppKind.OUTLOOK_DESKTOP, Platform.MACOS, Can.NEVER),
        ("domainJoinedDevice", AppKind.OUTLOOK_DESKTOP, Platform.WINDOWS, Can.DEPENDS),
        ("approvedApplication", AppKind.OUTLOOK_MOBILE, Platform.IOS, Can.YES),
        ("compliantApplication", AppKind.MODERN_APP, Platform.ANDROID, Can.NEVER),
    ],
)
def test_can_meet(control: str, app: AppKind, platform: Platform | None, can: Can) -> None:
    assert ca.can_meet(control, app, platform) is can


def test_graph_wire_nulls_and_extra_fields() -> None:
    p = ConditionalAccessPolicy.model_validate(
        {
            "id": "x",
            "displayName": "x",
            "state": "enabled",
            "createdDateTime": "2024-01-01T00:00:00Z",
            "conditions": {
                "userRiskLevels": [],
                "signInRiskLevels": [],
                "clientAppTypes": ["all"],
                "platforms": None,
                "locations": None,
                "devices": None,
                "clientApplications": None,
                "applications": {
                    "includeApplications": ["All"],
                    "excludeApplications": [],
                    "includeUserActions": [],
                    "includeAuthenticationContextClassReferences": [],
                    "applicationFilter": None,
                },
                "users": {
                    "includeUsers": ["All"],
                    "excludeUsers": [],
                    "includeGroups": [],
                    "excludeGroups": [],
                    "includeRoles": [],
                    "excludeRoles": [],
                    "includeGuestsOrExternalUsers": None,
                    "excludeGuestsOrExternalUsers": None,
                },
            },
            "grantControls": {
                "operator": "OR",
                "builtInControls": ["mfa"],
                "customAuthenticationFactors": [],
                "termsOfUse": [],
                "authenticationStrength": None,
            },
            "sessionControls": None,
        }
    )
    assert p.conditions.unknown_conditions() == []
    assert ca.evaluate_policy(p, signin()).applies is Tri.YES
