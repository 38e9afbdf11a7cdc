"""The sandbox's own What-If (beta conditionalAccess/evaluate, reference §5.3) over the tenant's
policies, following §5.2's evaluation: a policy applies when every configured condition matches
(users, applications, client app types, platforms, locations, risk); exclusions beat
inclusions; a condition on a sign-in detail the request omitted cannot be evaluated
(analysisReasons `notEnoughInformation`). Report-only policies are evaluated too (Graph returns
them with their state; they never block — the caller's business).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from sandbox.tenant.models import EXO_APP_ID, ROLE_TEMPLATES
from sandbox.tenant.state import TenantState

# Applications the Office365 app group includes (§5.2: Office365 includes Exchange Online).
_OFFICE365_MEMBERS = {EXO_APP_ID}


def _ip_in(ip: str, location: dict[str, Any]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    for item in location.get("ipRanges") or []:
        try:
            if address in ipaddress.ip_network(str(item.get("cidrAddress")), strict=False):
                return True
        except ValueError:
            continue
    return False


def _location_matches(ref: str, cond: dict[str, Any], state: TenantState) -> bool | None:
    """Does the sign-in come from `ref` (All, AllTrusted or a named-location id)? None: unknown."""
    ip = cond.get("ipAddress")
    country = cond.get("country")
    if ref == "All":
        return True
    named = {loc["id"]: loc for loc in state.data.named_locations}
    refs = (
        [loc for loc in named.values() if loc.get("isTrusted")]
        if ref == "AllTrusted"
        else ([named[ref]] if ref in named else [])
    )
    unknown = False
    for loc in refs:
        if loc.get("@odata.type") == "#microsoft.graph.countryNamedLocation":
            if country is None:
                unknown = True
            elif country.upper() in {c.upper() for c in loc.get("countriesAndRegions") or []}:
                return True
        elif ip is None:
            unknown = True
        elif _ip_in(str(ip), loc):
            return True
    return None if unknown else False


def _policy_reasons(
    policy: dict[str, Any],
    body: dict[str, Any],
    state: TenantState,
    groups_of: Callable[[str], list[str]],
) -> list[str]:
    """Why `policy` does not apply (empty: it applies)."""
    conditions = policy.get("conditions") or {}
    cond = body.get("signInConditions") or {}
    identity = body.get("signInIdentity") or {}
    context = body.get("signInContext") or {}
    reasons: list[str] = []

    # users
    users = conditions.get("users") or {}
    user_id = str(identity.get("userId", ""))
    user = state.find_user(user_id)
    groups = set(groups_of(user_id)) if user else set()
    roles = {ROLE_TEMPLATES[r] for r in user.roles} if user else set()
    guest = user is not None and user.user_type == "Guest"

    def hits(prefix: str) -> bool:
        listed = set(users.get(f"{prefix}Users") or [])
        return bool(
            "All" in listed
            or user_id in listed
            or (guest and "GuestsOrExternalUsers" in listed)
            or groups & set(users.get(f"{prefix}Groups") or [])
            or roles & set(users.get(f"{prefix}Roles") or [])
        )

    if not hits("include") or hits("exclude"):
        reasons.append("users")

    # applications
    apps_cond = conditions.get("applications") or {}
    wanted = set(context.get("includeApplications") or [])
    include = set(apps_cond.get("includeApplications") or [])
    exclude = set(apps_cond.get("excludeApplications") or [])

    def covers(listed: set[str], app: str) -> bool:
        return (
            "All" in listed
            or app in listed
            or ("Office365" in listed and app in _OFFICE365_MEMBERS)
        )

    if not any(covers(include, a) and not covers(exclude, a) for a in wanted):
        reasons.append("application")

    # client app types
    types = set(conditions.get("clientAppTypes") or ["all"])
    client = cond.get("clientAppType")
    if "all" not in types:
        if client is None:
            reasons.append("notEnoughInformation")
        elif client not in types and not (
            client == "exchangeActiveSync" and "easSupported" in types
        ):
            reasons.append("clientApps")

    # platforms
    platforms = conditions.get("platforms")
    if platforms:
        platform = cond.get("devicePlatform")
        inc = set(platforms.get("includePlatforms") or [])
        exc = set(platforms.get("excludePlatforms") or [])
        if platform is None:
            reasons.append("notEnoughInformation")
        elif not ("all" in inc or platform in inc) or platform in exc:
            reasons.append("devicePlatform")

    # locations
    locations = conditions.get("locations")
    if locations:
        inc_hits = [
            _location_matches(r, cond, state) for r in locations.get("includeLocations") or []
        ]
        exc_hits = [
            _location_matches(r, cond, state) for r in locations.get("excludeLocations") or []
        ]
        if any(h is None for h in inc_hits + exc_hits):
            reasons.append("notEnoughInformation")
        elif not any(inc_hits) or any(exc_hits):
            reasons.append("location")

    # risk and device filters
    sign_in_risk = conditions.get("signInRiskLevels") or []
    if sign_in_risk and cond.get("signInRiskLevel", "none") not in sign_in_risk:
        reasons.append("signInRisk")
    user_risk = conditions.get("userRiskLevels") or []
    if user_risk and cond.get("userRiskLevel", "none") not in user_risk:
        reasons.append("userRisk")
    if (conditions.get("devices") or {}).get("deviceFilter") and not cond.get("deviceInfo"):
        reasons.append("notEnoughInformation")
    return list(dict.fromkeys(reasons))


def evaluate(
    state: TenantState, body: dict[str, Any], groups_of: Callable[[str], list[str]]
) -> list[dict[str, Any]]:
    """whatIfAnalysisResult objects: each policy plus `policyApplies` and `analysisReasons`."""
    applied_only = bool(body.get("appliedPoliciesOnly"))
    out = []
    for policy in state.data.ca_policies:
        if policy.get("state") == "disabled":
            continue
        reasons = _policy_reasons(policy, body, state, groups_of)
        applies = not reasons
        if applied_only and not applies:
            continue
        out.append(
            {
                **policy,
                "policyApplies": applies,
                "analysisReasons": ",".join(reasons) if reasons else "notSet",
            }
        )
    return out
