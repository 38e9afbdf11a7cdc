"""The tenant client's exception tree. What Graph, the Exchange admin API or the login refused.

    TenantError            anything the tenant side could not give us; `.request` names the call
    ├── PermissionMissing  403 / role missing: `.permission` (exact name) and `.grant_where`
    ├── TenantNotFound     404 (Graph's or Exchange's error code kept in `.code`)
    ├── Throttled          still 429/503 after bounded retries, or the wait would pass the deadline
    ├── TenantAuthFailed   the token request was refused (bad secret, unknown app: AADSTS700016 …)
    └── TenantUnavailable  5xx, the network (the seam's NetError is chained), unusable answers

Tenant checks turn these into findings (PLAN "Findings contract"): PermissionMissing becomes
`error` / `permission-missing`; Throttled and TenantUnavailable become `error` /
`tenant-unavailable`. Messages never contain a secret or a token.
"""

from __future__ import annotations


class TenantError(Exception):
    """`request` is the call that failed, e.g. "GET https://graph.microsoft.com/v1.0/users/…"."""

    def __init__(self, message: str, *, request: str = "", code: str | None = None) -> None:
        super().__init__(message)
        self.request = request
        self.code = code  # the service's own error code when it gave one


class PermissionMissing(TenantError):
    def __init__(
        self,
        message: str,
        *,
        request: str = "",
        permission: str,
        grant_where: str,
        code: str | None = None,
    ) -> None:
        super().__init__(message, request=request, code=code)
        self.permission = permission  # e.g. "AuditLog.Read.All"
        self.grant_where = grant_where  # e.g. "Microsoft Graph application permission, …"


class TenantNotFound(TenantError):
    """404: no such object (`.code` e.g. Request_ResourceNotFound, MailboxNotEnabledForRESTAPI)."""


class Throttled(TenantError):
    def __init__(
        self, message: str, *, request: str = "", retry_after: float, code: str | None = None
    ) -> None:
        super().__init__(message, request=request, code=code)
        self.retry_after = retry_after


class TenantAuthFailed(TenantError):
    def __init__(
        self, message: str, *, request: str = "", aadsts: int | None = None, code: str | None = None
    ) -> None:
        super().__init__(message, request=request, code=code)
        self.aadsts = aadsts


class TenantUnavailable(TenantError):
    """5xx, a network failure (the seam's NetError is the __cause__), or an unusable answer."""
