"""From a tenant error to the finding the contract asks for (PLAN "Findings contract").

- PermissionMissing → `error`, problem `permission-missing`, evidence `permission` and
  `grant_where`; the summary names both.
- Throttled past the deadline, 5xx, the network → `error`, problem `tenant-unavailable`.
- The token request refused → `error`, problem `tenant-auth-failed` (evidence `aadsts`).
- Anything else the service refused → `error`, problem `tenant-error`.
Every finding carries `requests`: the requests that decided it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from checks.models import Finding, Status
from checks.spec import Check
from checks.tenant.auth import token_error_words
from checks.tenant.errors import (
    PermissionMissing,
    TenantAuthFailed,
    TenantError,
    TenantUnavailable,
    Throttled,
)


def _requests(requests: Sequence[str], exc: TenantError) -> list[str]:
    out = list(dict.fromkeys(requests))
    if exc.request and not any(exc.request.startswith(r) or r.startswith(exc.request) for r in out):
        out.append(exc.request)
    return out


def tenant_error_finding(
    check: Check, exc: TenantError, requests: Sequence[str] = (), *, reading: str = ""
) -> Finding:
    """The `error` finding for `exc`. `reading` says what the check wanted, e.g. "sign-in logs"."""
    what = reading or check.title.lower()
    evidence: dict[str, Any] = {"requests": _requests(requests, exc)}
    if isinstance(exc, PermissionMissing):
        evidence.update(
            problem="permission-missing", permission=exc.permission, grant_where=exc.grant_where
        )
        kind = exc.grant_where.split(":", 1)[0].split(" (", 1)[0]  # what it is; the path below
        who = "the tenant" if kind.startswith("a tenant licence") else "its app"
        return check.finding(
            Status.ERROR,
            f"mailfix cannot read the {what}: {who} lacks {exc.permission} ({kind}).",
            detail=str(exc),
            evidence=evidence,
            next_steps=[
                f"An administrator grants mailfix's app {exc.permission}: {exc.grant_where}.",
                "Run the diagnosis again afterwards; permissions can take a few minutes to apply.",
            ],
        )
    if isinstance(exc, (Throttled, TenantUnavailable)):
        evidence["problem"] = "tenant-unavailable"
        if isinstance(exc, Throttled):
            evidence["retry_after_s"] = round(exc.retry_after, 1)
            summary = (
                f"Microsoft 365 is throttling mailfix, so the {what} could not be read in time."
            )
        else:
            summary = f"Microsoft 365 did not answer, so the {what} could not be read."
        return check.finding(
            Status.ERROR,
            summary,
            detail=str(exc),
            evidence=evidence,
            next_steps=["Run the diagnosis again in a few minutes."],
        )
    if isinstance(exc, TenantAuthFailed):
        evidence.update(problem="tenant-auth-failed", aadsts=exc.aadsts)
        words = token_error_words(exc.aadsts)
        why = f" ({words.split(';')[0]})" if words else ""
        return check.finding(
            Status.ERROR,
            f"mailfix could not sign in to the tenant{why}, so the {what} could not be read.",
            detail=str(exc),
            evidence=evidence,
            next_steps=[
                "An administrator checks mailfix's app registration and its settings "
                "(MAILFIX_TENANT_ID, MAILFIX_CLIENT_ID, the client secret or certificate): "
                + str(exc)
            ],
        )
    evidence.update(problem="tenant-error", code=exc.code)
    return check.finding(
        Status.ERROR,
        f"Microsoft 365 refused mailfix's request, so the {what} could not be read.",
        detail=str(exc),
        evidence=evidence,
        next_steps=["An administrator looks at the detail below; it is Microsoft's own answer."],
    )
