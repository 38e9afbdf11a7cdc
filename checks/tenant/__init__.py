"""Tenant access (issue 6): app-only tokens through msal on the network seam, Microsoft Graph
and the Exchange Online admin API, typed errors and models. Tenant checks import from here.
"""

from __future__ import annotations

from checks.spec import CheckContext
from checks.tenant.client import TenantClient
from checks.tenant.errors import (
    PermissionMissing,
    TenantAuthFailed,
    TenantError,
    TenantNotFound,
    TenantUnavailable,
    Throttled,
)

__all__ = [
    "PermissionMissing",
    "TenantAuthFailed",
    "TenantClient",
    "TenantError",
    "TenantNotFound",
    "TenantUnavailable",
    "Throttled",
    "tenant_client",
]


async def tenant_client(ctx: CheckContext) -> TenantClient:
    """The diagnosis's one TenantClient (memoised in ctx.memo)."""

    async def build() -> TenantClient:
        return TenantClient(ctx.settings, ctx.net, ctx.cloud, deadline=ctx_deadline(ctx))

    return await ctx.memo("tenant.client", build)


def ctx_deadline(ctx: CheckContext) -> float | None:
    return ctx.deadline
