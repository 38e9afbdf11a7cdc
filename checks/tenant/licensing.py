"""Which licences give an Exchange Online mailbox (reference §5.1), read from licenseDetails.

Plans that give a mailbox: EXCHANGE_S_STANDARD (Plan 1), EXCHANGE_S_ENTERPRISE (Plan 2),
EXCHANGE_S_DESKLESS (Kiosk), EXCHANGE_S_ESSENTIALS, and their GOV/EDU variants (same prefix).
Not a mailbox: EXCHANGE_S_FOUNDATION (inside Power BI, EMS, Entra ID P1 …), the archive add-on,
MIP_S_Exchange, Defender plans. SKUs without mailbox rights: Microsoft 365 Apps for business
(O365_BUSINESS) and for enterprise (OFFICESUBSCRIPTION), Microsoft 365 F1 (M365_F1,
M365_F1_COMM): treated as "no mailbox" whatever plans they list (§5.1 [uncertain] note).
`SPE_F1` is Microsoft 365 F3 and does carry a Kiosk mailbox.
Provisioning: Success = ready; Disabled = an admin switched the plan off; PendingInput /
PendingActivation / PendingProvisioning = still provisioning; Error = provisioning failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from checks.tenant.models import LicenseDetails, ServicePlanInfo, User

MAILBOX_PLAN_PREFIXES = (
    "EXCHANGE_S_STANDARD",
    "EXCHANGE_S_ENTERPRISE",
    "EXCHANGE_S_DESKLESS",
    "EXCHANGE_S_ESSENTIALS",
)
# Service plan ids from §5.1, for tenants whose plan names differ.
MAILBOX_PLAN_IDS = frozenset(
    {
        "9aaf7827-d63c-4b61-89c3-182f06f82e5c",  # EXCHANGE_S_STANDARD
        "efb87545-963c-4e0d-99df-69c6916d9eb0",  # EXCHANGE_S_ENTERPRISE
        "4a82b400-a79f-41a4-b4e2-e94f5787b113",  # EXCHANGE_S_DESKLESS
    }
)
FOUNDATION_PLAN = "EXCHANGE_S_FOUNDATION"
NO_MAILBOX_SKUS = frozenset({"O365_BUSINESS", "OFFICESUBSCRIPTION", "M365_F1", "M365_F1_COMM"})
PENDING = frozenset({"PendingInput", "PendingActivation", "PendingProvisioning"})

# Friendly names for the SKUs people meet most (Microsoft's product-name CSV; §5.1 names).
SKU_NAMES = {
    "O365_BUSINESS": "Microsoft 365 Apps for business",
    "OFFICESUBSCRIPTION": "Microsoft 365 Apps for enterprise",
    "M365_F1": "Microsoft 365 F1",
    "M365_F1_COMM": "Microsoft 365 F1",
    "SPE_F1": "Microsoft 365 F3",
    "O365_BUSINESS_ESSENTIALS": "Microsoft 365 Business Basic",
    "O365_BUSINESS_PREMIUM": "Microsoft 365 Business Standard",
    "SPB": "Microsoft 365 Business Premium",
    "STANDARDPACK": "Office 365 E1",
    "ENTERPRISEPACK": "Office 365 E3",
    "ENTERPRISEPREMIUM": "Office 365 E5",
    "SPE_E3": "Microsoft 365 E3",
    "SPE_E5": "Microsoft 365 E5",
    "EXCHANGESTANDARD": "Exchange Online (Plan 1)",
    "EXCHANGEENTERPRISE": "Exchange Online (Plan 2)",
    "POWER_BI_STANDARD": "Power BI (free)",
    "EMS": "Enterprise Mobility + Security E3",
    "AAD_PREMIUM": "Microsoft Entra ID P1",
}


# What people call the mailbox plans (Microsoft's product names for the §5.1 plans).
PLAN_NAMES = {
    "EXCHANGE_S_STANDARD": "Exchange Online (Plan 1)",
    "EXCHANGE_S_ENTERPRISE": "Exchange Online (Plan 2)",
    "EXCHANGE_S_DESKLESS": "Exchange Online Kiosk",
    "EXCHANGE_S_ESSENTIALS": "Exchange Online Essentials",
}


def sku_name(part_number: str) -> str:
    return SKU_NAMES.get(part_number, part_number)


def plan_name(service_plan_name: str | None) -> str:
    """ "Exchange Online (Plan 2)" for EXCHANGE_S_ENTERPRISE (GOV/EDU variants alike)."""
    name = (service_plan_name or "").upper()
    for prefix, words in PLAN_NAMES.items():
        if name.startswith(prefix):
            return words
    return service_plan_name or "Exchange Online"


def is_mailbox_plan(plan: ServicePlanInfo) -> bool:
    name = plan.service_plan_name.upper()
    return plan.service_plan_id in MAILBOX_PLAN_IDS or name.startswith(MAILBOX_PLAN_PREFIXES)


def sku_has_no_mailbox(part_number: str) -> bool:
    return part_number.upper() in NO_MAILBOX_SKUS or part_number.upper().startswith("M365_F1")


@dataclass(frozen=True)
class LicenceState:
    """What the licences say about a mailbox. `problem` None means a provisioned plan."""

    problem: str | None  # no-exchange-plan | exchange-plan-disabled | exchange-plan-pending |
    #                      sku-without-mailbox
    skus: list[str] = field(default_factory=list)
    exchange_plan: str | None = None
    provisioning_status: str | None = None
    sku_id: str | None = None
    sku_part_number: str | None = None
    plan_id: str | None = None
    still_disabled: list[str] = field(default_factory=list)  # other plans off in that SKU


_RANK = {"Success": 0, **dict.fromkeys(PENDING, 1), "Error": 2, "Disabled": 3}


def assess(details: list[LicenseDetails], user: User | None = None) -> LicenceState:
    skus = [d.sku_part_number for d in details]
    candidates: list[tuple[int, LicenseDetails, ServicePlanInfo]] = []
    for detail in details:
        if sku_has_no_mailbox(detail.sku_part_number):
            continue
        for plan in detail.service_plans:
            if is_mailbox_plan(plan):
                candidates.append((_RANK.get(plan.provisioning_status or "", 4), detail, plan))
    if not candidates:
        return LicenceState("sku-without-mailbox" if skus else "no-exchange-plan", skus=skus)
    candidates.sort(key=lambda c: c[0])
    _, detail, plan = candidates[0]
    status = plan.provisioning_status
    problem: str | None
    if status == "Success":
        problem = None
    elif status == "Disabled":
        problem = "exchange-plan-disabled"
    else:
        problem = "exchange-plan-pending"
    still: list[str] = []
    if user is not None:
        for assigned in user.assigned_licenses:
            if assigned.sku_id == detail.sku_id:
                still = [p for p in assigned.disabled_plans if p != plan.service_plan_id]
    return LicenceState(
        problem,
        skus=skus,
        exchange_plan=plan.service_plan_name,
        provisioning_status=status,
        sku_id=detail.sku_id,
        sku_part_number=detail.sku_part_number,
        plan_id=plan.service_plan_id,
        still_disabled=still,
    )


def sku_with_mailbox(subscribed: list[dict[str, object]]) -> dict[str, object] | None:
    """A tenant SKU with a mailbox plan and a free seat (for an assign-licence proposal)."""
    for sku in subscribed:
        part = str(sku.get("skuPartNumber") or "")
        if sku_has_no_mailbox(part) or sku.get("capabilityStatus") not in (None, "Enabled"):
            continue
        plans = sku.get("servicePlans")
        if not isinstance(plans, list):
            continue
        has_mailbox = False
        for raw in plans:
            if (
                isinstance(raw, dict)
                and raw.get("servicePlanId")
                and raw.get("servicePlanName")
                and is_mailbox_plan(ServicePlanInfo.model_validate(raw))
            ):
                has_mailbox = True
        units = sku.get("prepaidUnits")
        enabled = units.get("enabled", 0) if isinstance(units, dict) else 0
        consumed = sku.get("consumedUnits", 0)
        if (
            has_mailbox
            and isinstance(enabled, int)
            and isinstance(consumed, int)
            and enabled > consumed
        ):
            return sku
    return None
