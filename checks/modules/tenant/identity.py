"""tenant.account and tenant.license (Microsoft Graph, reference §5 and §5.1).

tenant.account: who owns the address (the UPN, else proxyAddresses), and whether that account
exists, is soft-deleted (restorable for 30 days), is blocked from signing in
(`accountEnabled=false` ⇒ AADSTS50057), or carries directory-sync provisioning errors
(`onPremisesProvisioningErrors`, e.g. a proxy address another object already uses).
tenant.license: an Exchange Online mailbox plan assigned and provisioned (`Success`), switched
off by an admin (`Disabled`), still provisioning, or only SKUs that carry no mailbox.
Both read, never write; fixes are proposals an admin approves (checks.remedies).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from checks.models import Finding, Side, Status
from checks.remedies import propose
from checks.spec import EVERY_CLIENT, Check, CheckContext
from checks.tenant import reads
from checks.tenant.errors import TenantError
from checks.tenant.findings import tenant_error_finding
from checks.tenant.licensing import assess, plan_name, sku_name, sku_with_mailbox
from checks.tenant.models import User

RESTORE_WINDOW = timedelta(days=30)  # soft-deleted users can be restored for 30 days (§5)


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _account_evidence(lookup: reads.UserLookup, user: User) -> dict[str, Any]:
    return {
        "user_id": user.id,
        "upn": user.user_principal_name,
        "matched_by": lookup.matched_by,
        "synced_from_on_premises": user.synced_from_on_premises,
    }


_ON_PREM = (
    "This account is synced from on-premises Active Directory, so the change is made there "
    "and reaches Microsoft 365 with the next directory sync (about 30 minutes)."
)


def _sync_error_text(user: User) -> list[dict[str, Any]]:
    return [
        {
            "category": e.category,
            "property": e.property_causing_error,
            "value": e.value,
            "when": e.occurred,
        }
        for e in user.on_premises_provisioning_errors
    ]


# What the directory properties in provisioning errors are, in words.
_PROPERTY_WORDS = {
    "proxyaddresses": "email address",
    "userprincipalname": "sign-in name (UPN)",
    "mail": "email address",
    "sipproxyaddress": "Teams/Skype address",
}


def _describe_sync_error(error: dict[str, Any]) -> str:
    prop, value = str(error.get("property") or ""), str(error.get("value") or "")
    words = _PROPERTY_WORDS.get(prop.lower(), prop)
    if value.lower().startswith(("smtp:", "sip:")):
        value = value.split(":", 1)[1]
    if error.get("category") == "PropertyConflict" and prop and value:
        return f"the {words} {value} is already used by another object"
    if prop:
        return f"a problem with the {words}"
    return "a provisioning error"


def _original_upn(deleted: User) -> str:
    """A soft-deleted user's UPN is its object id (no dashes) followed by the old UPN (§5)."""
    prefix = deleted.id.replace("-", "").lower()
    upn = deleted.user_principal_name
    return upn[len(prefix) :] if upn.lower().startswith(prefix) and len(upn) > len(prefix) else upn


async def _account(ctx: CheckContext) -> Finding:
    try:
        read = await reads.user(ctx)
    except TenantError as exc:
        return tenant_error_finding(ACCOUNT, exc, reading="account that owns the address")
    lookup, requests = read.value, list(read.requests)
    address = ctx.address.display
    if lookup.user is None and lookup.deleted is not None:
        gone = lookup.deleted
        deleted_at = _parse_time(gone.deleted_date_time)
        days_left = None
        if deleted_at is not None:
            days_left = max(0, (deleted_at + RESTORE_WINDOW - datetime.now(UTC)).days)
        upn = _original_upn(gone)
        when = f" on {deleted_at:%d %B %Y}" if deleted_at else ""
        left = (
            f"it can be restored for {days_left} more day{'s' if days_left != 1 else ''}"
            if days_left is not None
            else "it can be restored for up to 30 days after deletion"
        )
        return ACCOUNT.finding(
            Status.FAIL,
            f"The account for {address} was deleted{when}; {left}.",
            evidence={
                "problem": "account-soft-deleted",
                "user_id": gone.id,
                "upn": upn,
                "matched_by": None,
                "synced_from_on_premises": gone.synced_from_on_premises,
                "deleted": gone.deleted_date_time,
                "days_left": days_left,
                "requests": requests,
            },
            next_steps=[
                "An administrator restores the on-premises account (Active Directory Recycle "
                "Bin); the next directory sync brings it and its mailbox back."
                if gone.synced_from_on_premises
                else "An administrator restores the user in the Microsoft 365 admin center > "
                "Users > Deleted users (mailfix has prepared this fix for approval). Its "
                "mailbox and licences come back with it.",
                "After 30 days the account and its mailbox are gone for good.",
            ],
            remediation=propose.restore_user(gone.id, upn),
        )
    if lookup.user is None:
        return ACCOUNT.finding(
            Status.FAIL,
            f"No account in the tenant has the address {address}.",
            evidence={
                "problem": "account-not-found",
                "user_id": None,
                "upn": None,
                "matched_by": None,
                "synced_from_on_premises": False,
                "requests": requests,
            },
            next_steps=[
                "Check the spelling of the address.",
                "An administrator checks in the Microsoft 365 admin center whether the person's "
                "account uses another address, or was deleted more than 30 days ago.",
            ],
        )
    user = lookup.user
    evidence = {**_account_evidence(lookup, user), "requests": requests}
    via = (
        ""
        if lookup.matched_by == "userPrincipalName"
        else f" (the address belongs to {user.user_principal_name})"
    )
    if user.account_enabled is False:
        steps = [
            "An administrator unblocks sign-in: Microsoft 365 admin center > Users > Active "
            "users > the person > Unblock sign-in (mailfix has prepared this fix for approval).",
        ]
        if user.synced_from_on_premises:
            steps = [
                "An administrator enables the account in on-premises Active Directory. " + _ON_PREM
            ]
        return ACCOUNT.finding(
            Status.FAIL,
            f"Sign-in is blocked for the account {user.user_principal_name}{via}: every mail "
            "app is refused until an administrator unblocks it.",
            evidence={**evidence, "problem": "account-disabled"},
            next_steps=steps,
            remediation=propose.enable_account(user.id, user.user_principal_name),
        )
    errors = _sync_error_text(user)
    if errors:
        said = "; ".join(_describe_sync_error(e) for e in errors[:3])
        return ACCOUNT.finding(
            Status.WARN,
            f"Directory sync reports a problem with {user.user_principal_name}: {said}.",
            evidence={**evidence, "problem": "sync-provisioning-error", "errors": errors},
            next_steps=[
                "An administrator corrects the conflicting attribute on the on-premises account "
                "(or on the other object that already uses it); Microsoft Entra Connect Health "
                "names the other object. The change reaches Microsoft 365 with the next sync.",
            ],
        )
    summary = (
        f"The account {user.user_principal_name} exists and is enabled."
        if not via
        else f"The address {address} is an alias of the account {user.user_principal_name}, "
        "which exists and is enabled."
    )
    return ACCOUNT.finding(Status.PASS, summary, evidence={**evidence, "problem": None})


async def _license(ctx: CheckContext) -> Finding:
    try:
        found = await reads.user(ctx)
    except TenantError as exc:
        return tenant_error_finding(LICENSE, exc, reading="licences")
    user = found.value.user
    if user is None:
        return LICENSE.finding(
            Status.SKIP,
            "No live account owns this address, so there are no licences to read.",
            evidence={"requests": list(found.requests)},
        )
    try:
        read = await reads.licenses(ctx, user.id)
    except TenantError as exc:
        return tenant_error_finding(LICENSE, exc, found.requests, reading="licences")
    requests = [*found.requests, *read.requests]
    state = assess(read.value, user)
    names = [sku_name(s) for s in state.skus]
    evidence: dict[str, Any] = {
        "problem": state.problem,
        "skus": state.skus,
        "exchange_plan": state.exchange_plan,
        "provisioning_status": state.provisioning_status,
        "user_id": user.id,
        "requests": requests,
    }
    upn = user.user_principal_name
    if state.problem is None:
        return LICENSE.finding(
            Status.PASS,
            f"{upn} has {plan_name(state.exchange_plan)} (in "
            f"{sku_name(state.sku_part_number or '')}) and it is provisioned.",
            evidence=evidence,
        )
    if state.problem == "exchange-plan-disabled":
        assert state.sku_id is not None and state.plan_id is not None
        return LICENSE.finding(
            Status.FAIL,
            f"{upn} has {sku_name(state.sku_part_number or '')}, but its "
            f"{plan_name(state.exchange_plan)} part is switched off, so there is no mailbox to "
            "connect to.",
            evidence={**evidence, "sku_id": state.sku_id, "plan_id": state.plan_id},
            next_steps=[
                "An administrator switches Exchange Online back on: Microsoft 365 admin center > "
                "Users > Active users > the person > Licenses and apps > tick Exchange Online "
                "(mailfix has prepared this fix for approval).",
            ],
            remediation=propose.enable_exchange_plan(
                user.id, state.sku_id, state.plan_id, state.still_disabled
            ),
        )
    if state.problem == "exchange-plan-pending":
        failed = state.provisioning_status == "Error"
        return LICENSE.finding(
            Status.FAIL,
            f"{upn}'s {plan_name(state.exchange_plan)} "
            + (
                "failed to provision."
                if failed
                else "is still being set up, so the mailbox is not ready yet."
            ),
            evidence=evidence,
            next_steps=[
                "A new licence usually takes minutes, sometimes a few hours, before the mailbox "
                "works: try again later."
                if not failed
                else "An administrator removes and re-assigns the licence, or opens a case with "
                "Microsoft support if it fails again.",
                "If it is still not ready after a day, an administrator opens a case with "
                "Microsoft support.",
            ],
        )
    # No plan that gives a mailbox.
    skus = await _proposable_sku(ctx)
    remediation = None
    if skus is not None:
        sku_id = str(skus.get("skuId") or "")
        if sku_id:
            remediation = propose.assign_license(user.id, sku_id)
            evidence["proposed_sku"] = str(skus.get("skuPartNumber") or "")
    if state.problem == "sku-without-mailbox":
        summary = (
            f"{upn} has {', '.join(names)}, which include{'s' if len(names) == 1 else ''} no "
            "Exchange Online mailbox."
        )
    else:
        summary = f"{upn} has no licence with an Exchange Online mailbox."
    return LICENSE.finding(
        Status.FAIL,
        summary,
        evidence=evidence,
        next_steps=[
            "An administrator assigns a licence that includes Exchange Online (for example "
            "Microsoft 365 Business Basic or Standard, Office 365 E1/E3, or Exchange Online "
            "Plan 1): Microsoft 365 admin center > Users > Active users > the person > "
            "Licenses and apps."
            + (" mailfix has prepared this fix for approval." if remediation else ""),
            "The mailbox appears a few minutes after the licence is assigned.",
        ],
        remediation=remediation,
    )


async def _proposable_sku(ctx: CheckContext) -> dict[str, object] | None:
    try:
        skus = await reads.subscribed_skus(ctx)
    except TenantError:
        return None
    return sku_with_mailbox(skus.value)


ACCOUNT = Check(
    id="tenant.account",
    title="Account enabled",
    side=Side.IDENTITY,
    clients=EVERY_CLIENT,
    run=_account,
    needs_tenant=True,
)
LICENSE = Check(
    id="tenant.license",
    title="Exchange Online licence",
    side=Side.ADMIN,
    clients=EVERY_CLIENT,
    run=_license,
    needs_tenant=True,
)

CHECKS: tuple[Check, ...] = (ACCOUNT, LICENSE)
