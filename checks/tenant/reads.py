"""What the tenant checks read, each read once per diagnosis (ctx.memo) and shared.

Every reader returns the typed value and the requests that produced it, so a check that
reuses a read another check started can still name "the request that decides it". Errors
(`TenantError`) reach every caller of the same read; each check turns them into its own
`error` finding.

Sources: reference §5 (Graph requests and fields), §6.2–6.4 (cmdlets), §3.3 (devices).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from checks.spec import CheckContext
from checks.tenant import tenant_client
from checks.tenant.client import TenantClient, recording
from checks.tenant.errors import PermissionMissing, TenantError, TenantNotFound
from checks.tenant.models import (
    ActiveSyncDeviceAccessRule,
    ActiveSyncOrganizationSettings,
    CasMailbox,
    LicenseDetails,
    MobileDevice,
    ServiceHealthIssue,
    SignIn,
    TransportConfig,
    User,
)

# Office 365 Exchange Online, the resource app of EXO sign-ins and of Exchange.ManageAsApp (§6.3).
EXO_APP_ID = "00000002-0000-0ff1-ce00-000000000000"

USER_FIELDS = (
    "id,userPrincipalName,displayName,mail,accountEnabled,proxyAddresses,assignedLicenses,"
    "assignedPlans,provisionedPlans,onPremisesSyncEnabled,onPremisesImmutableId,"
    "onPremisesProvisioningErrors,userType,usageLocation"
)
DELETED_FIELDS = "id,userPrincipalName,displayName,mail,proxyAddresses,deletedDateTime"
SIGNIN_WINDOW = timedelta(hours=48)  # reference §8.5: the last 24–48 h
SIGNIN_PAGES = 25


def odata_string(value: str) -> str:
    """A string literal for $filter: quotes doubled (OData ABNF)."""
    return "'" + value.replace("'", "''") + "'"


T = TypeVar("T")


@dataclass(frozen=True)
class Read(Generic[T]):
    value: T
    requests: tuple[str, ...]


@dataclass(frozen=True)
class UserLookup:
    user: User | None  # the live account that owns the address
    matched_by: str | None  # "userPrincipalName" | "proxyAddresses"
    deleted: User | None  # a soft-deleted account that owned it (deletedDateTime set)
    address: str


async def _memo_read(ctx: CheckContext, key: str, read: Any) -> Read[T]:
    async def run() -> Read[T]:
        client = await tenant_client(ctx)
        with recording() as sent:
            value = await read(client)
        return Read(value, tuple(sent))

    result: Read[T] = await ctx.memo(f"tenant.read.{key}", run)
    return result


def _owns(user: dict[str, Any], address: str) -> bool:
    wanted = address.lower()
    proxies = [str(p).lower() for p in user.get("proxyAddresses") or []]
    upn = str(user.get("userPrincipalName") or "").lower()
    mail = str(user.get("mail") or "").lower()
    # A deleted user's UPN is its object id (no dashes) followed by the old UPN (§5).
    if f"smtp:{wanted}" in proxies or wanted in {mail, upn}:
        return True
    return upn.endswith(wanted) and upn[: -len(wanted)].isalnum()


async def user(ctx: CheckContext) -> Read[UserLookup]:
    """Who owns the address: by UPN, else by proxyAddresses, else a soft-deleted account."""
    address = ctx.address.address

    async def read(client: TenantClient) -> UserLookup:
        params = {"$select": USER_FIELDS}
        try:
            data = await client.graph_get(f"/users/{address}", params)
            return UserLookup(User.model_validate(data), "userPrincipalName", None, address)
        except TenantNotFound:
            pass
        found = await client.graph_list(
            "/users",
            {
                "$filter": f"proxyAddresses/any(x:x eq {odata_string('smtp:' + address)})",
                "$select": USER_FIELDS,
                "$count": "true",
            },
            headers={"ConsistencyLevel": "eventual"},
        )
        owners = [u for u in found if _owns(u, address)] or found
        if owners:
            return UserLookup(User.model_validate(owners[0]), "proxyAddresses", None, address)
        deleted = await client.graph_list(
            "/directory/deletedItems/microsoft.graph.user", {"$select": DELETED_FIELDS}
        )
        gone = [u for u in deleted if _owns(u, address)]
        gone.sort(key=lambda u: str(u.get("deletedDateTime") or ""), reverse=True)
        return UserLookup(None, None, User.model_validate(gone[0]) if gone else None, address)

    return await _memo_read(ctx, "user", read)


async def licenses(ctx: CheckContext, user_id: str) -> Read[list[LicenseDetails]]:
    async def read(client: TenantClient) -> list[LicenseDetails]:
        rows = await client.graph_list(f"/users/{user_id}/licenseDetails")
        return [LicenseDetails.model_validate(r) for r in rows]

    return await _memo_read(ctx, f"licenses.{user_id}", read)


async def subscribed_skus(ctx: CheckContext) -> Read[list[dict[str, Any]]]:
    """The tenant's SKUs (for a licence proposal); empty when the app may not read them."""

    async def read(client: TenantClient) -> list[dict[str, Any]]:
        try:
            return await client.graph_list("/subscribedSkus")
        except (PermissionMissing, TenantNotFound):
            return []

    return await _memo_read(ctx, "skus", read)


async def cas_mailbox(ctx: CheckContext) -> Read[CasMailbox | None]:
    """Get-CASMailbox for the address; None when Exchange Online has no such mailbox."""

    async def read(client: TenantClient) -> CasMailbox | None:
        try:
            rows = await client.exo("Get-CASMailbox", {"Identity": ctx.address.address})
        except TenantNotFound:
            return None
        return CasMailbox.model_validate(rows[0]) if rows else None

    return await _memo_read(ctx, "cas", read)


async def recipient(ctx: CheckContext) -> Read[dict[str, Any] | None]:
    """Get-Recipient for the address (MailUser = the mailbox is elsewhere, §6.4)."""

    async def read(client: TenantClient) -> dict[str, Any] | None:
        try:
            rows = await client.exo("Get-Recipient", {"Identity": ctx.address.address})
        except TenantNotFound:
            return None
        return rows[0] if rows else None

    return await _memo_read(ctx, "recipient", read)


async def transport_config(ctx: CheckContext) -> Read[TransportConfig]:
    async def read(client: TenantClient) -> TransportConfig:
        rows = await client.exo("Get-TransportConfig")
        return TransportConfig.model_validate(rows[0] if rows else {})

    return await _memo_read(ctx, "transport", read)


async def mobile_devices(ctx: CheckContext) -> Read[list[MobileDevice]]:
    async def read(client: TenantClient) -> list[MobileDevice]:
        try:
            rows = await client.exo("Get-MobileDevice", {"Mailbox": ctx.address.address})
        except TenantNotFound:
            return []
        return [MobileDevice.model_validate(r) for r in rows if r.get("DeviceId")]

    return await _memo_read(ctx, "devices", read)


async def activesync_org(ctx: CheckContext) -> Read[ActiveSyncOrganizationSettings]:
    async def read(client: TenantClient) -> ActiveSyncOrganizationSettings:
        rows = await client.exo("Get-ActiveSyncOrganizationSettings")
        return ActiveSyncOrganizationSettings.model_validate(rows[0] if rows else {})

    return await _memo_read(ctx, "easorg", read)


async def device_rules(ctx: CheckContext) -> Read[list[ActiveSyncDeviceAccessRule]]:
    async def read(client: TenantClient) -> list[ActiveSyncDeviceAccessRule]:
        rows = await client.exo("Get-ActiveSyncDeviceAccessRule")
        return [ActiveSyncDeviceAccessRule.model_validate(r) for r in rows]

    return await _memo_read(ctx, "easrules", read)


async def signins(
    ctx: CheckContext, upn: str, *, now: datetime | None = None
) -> Read[list[SignIn]]:
    """The person's sign-ins of the last 48 hours, newest first (§5.4)."""
    since = (now or datetime.now(UTC)) - SIGNIN_WINDOW
    stamp = since.strftime("%Y-%m-%dT%H:%M:%SZ")

    async def read(client: TenantClient) -> list[SignIn]:
        wanted = f"userPrincipalName eq {odata_string(upn)} and createdDateTime ge {stamp}"
        rows = await client.graph_list(
            "/auditLogs/signIns",
            {"$filter": wanted, "$top": "50"},
            max_pages=SIGNIN_PAGES,
        )
        items = [SignIn.model_validate(r) for r in rows]
        items.sort(key=lambda s: s.created, reverse=True)
        return items

    return await _memo_read(ctx, f"signins.{upn.lower()}", read)


async def service_issues(ctx: CheckContext) -> Read[list[ServiceHealthIssue]]:
    """Open Exchange Online issues (§5: serviceAnnouncement/issues, ServiceHealth.Read.All)."""

    async def read(client: TenantClient) -> list[ServiceHealthIssue]:
        rows = await client.graph_list(
            "/admin/serviceAnnouncement/issues",
            {"$filter": "service eq 'Exchange Online' and isResolved eq false"},
        )
        return [ServiceHealthIssue.model_validate(r) for r in rows]

    return await _memo_read(ctx, "health", read)


__all__ = [
    "EXO_APP_ID",
    "Read",
    "TenantError",
    "UserLookup",
    "activesync_org",
    "cas_mailbox",
    "device_rules",
    "licenses",
    "mobile_devices",
    "recipient",
    "service_issues",
    "signins",
    "subscribed_skus",
    "transport_config",
    "user",
]
