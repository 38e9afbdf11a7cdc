"""The library API the approval flow (issue 7) and `mailfix fix` call.

    plan(remediation, client=None) -> list[PlannedRequest]
        The writes the fix consists of, before reading any state (for a card or an audit
        record). With a client, the URLs are that client's cloud and tenant.
    await apply(remediation, client, *, dry_run=False) -> FixResult
        Read the current state, check the precondition, and — unless `dry_run` or the state
        already holds — send the writes. A dry run reads but never writes; its `sent` is exactly
        what `apply` would send now.
    canonical(remediation) -> Remediation
        The remediation rebuilt by its builder from `id` and `params`: what a stored or
        uploaded proposal really does (the free-text fields are never trusted).
    approval_executor(settings, *, net=None) -> ApplyFix
        `apply` in the shape `dialogs.approval` calls: remediation -> (holds, account), where
        holds is applied-or-already-done and account is `FixResult.account()` (JSON).

Raises `InvalidProposal` (a ValueError) for a remediation that cannot be executed; every
tenant-side problem is a `FixResult` with outcome `failed`, never an exception.
Exactly-once across replicas is the caller's job (issue 7's state machine); `apply` is
idempotent, so a retry after a crash only reads.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from checks.cloud import CloudHosts, hosts_for
from checks.models import Remediation
from checks.net.seam import Network
from checks.remedies import propose
from checks.remedies.executors import Endpoints, InvalidProposal, executor_for
from checks.remedies.results import FixResult, Outcome, PlannedRequest
from checks.settings import CheckSettings, Cloud
from checks.tenant.client import TenantClient
from checks.tenant.errors import (
    PermissionMissing,
    TenantAuthFailed,
    TenantError,
    TenantNotFound,
    TenantUnavailable,
    Throttled,
)

__all__ = ["InvalidProposal", "apply", "approval_executor", "canonical", "plan"]

# What the approval flow calls (dialogs.approval.ApplyFix): does the fix hold now, and a
# JSON-able account of what happened.
ApplyFix = Callable[[Remediation], Awaitable[tuple[bool, dict[str, Any]]]]

_BUILDERS: dict[str, Any] = {
    propose.ENABLE_PROTOCOL: propose.enable_protocol,
    propose.RELEASE_DEVICE: propose.release_device,
    propose.ENABLE_EXCHANGE_PLAN: propose.enable_exchange_plan,
    propose.ASSIGN_LICENSE: propose.assign_license,
    propose.ENABLE_ACCOUNT: propose.enable_account,
    propose.RESTORE_USER: propose.restore_user,
}

PERSON_REFUSED = "An administrator has to make this change another way; nothing was changed yet."
PERSON_FAILED = "mailfix could not make the change; the helpdesk has the details."
PERSON_DRY_RUN = "Nothing was changed: this was a dry run."


def canonical(remediation: Remediation) -> Remediation:
    """The remediation as its builder makes it from `id` and `params`."""
    executor = executor_for(remediation)
    params = executor.parse(remediation)
    try:
        built: Remediation = _BUILDERS[executor.kind](**params.model_dump())
    except (TypeError, ValueError) as exc:
        raise InvalidProposal(f"the {executor.kind} proposal is invalid: {exc}") from None
    return built


def plan(
    remediation: Remediation,
    client: TenantClient | None = None,
    *,
    cloud: CloudHosts | None = None,
    tenant: str | None = None,
) -> list[PlannedRequest]:
    """The writes of `remediation` as proposed (no state read). URLs: the client's cloud and
    tenant, else `cloud` (worldwide by default) and `tenant` (a `{tenantId}` placeholder)."""
    executor = executor_for(remediation)
    params = executor.parse(remediation)
    if client is not None:
        at = Endpoints.of_client(client)
    else:
        at = Endpoints.of(cloud or hosts_for(Cloud.GLOBAL), tenant)
    return executor.plan(params, at)


async def apply(
    remediation: Remediation, client: TenantClient, *, dry_run: bool = False
) -> FixResult:
    """Check the precondition against the tenant and apply the fix (see the module doc)."""
    executor = executor_for(remediation)
    params = executor.parse(remediation)
    fix = canonical(remediation)
    at = Endpoints.of_client(client)
    first = len(client.last_requests)
    base: dict[str, Any] = {
        "remediation": fix.id,
        "idempotency_key": fix.idempotency_key,
        "dry_run": dry_run,
        "verify": list(fix.verify),
        "hard_to_undo": fix.hard_to_undo,
    }

    def reads() -> list[str]:
        return list(client.last_requests[first:])

    try:
        decision = await executor.decide(params, client, at)
    except TenantError as exc:
        return _failed(base, exc, "checking the current state", [], reads())
    state = executor.state(params)
    subject = decision.subject
    if decision.outcome is Outcome.ALREADY_DONE:
        return FixResult(
            **base,
            outcome=Outcome.ALREADY_DONE,
            # The person's words are the same as for a change: the state is what they need,
            # whoever made it (an earlier attempt that died after its write, an admin by hand);
            # the detail, for the helpdesk and the audit trail, says nothing was sent.
            message=f"{state} — {executor.next_step(params)}.",
            detail=decision.detail,
            reads=reads(),
            subject=subject,
        )
    if decision.outcome is not None:  # refused
        return FixResult(
            **base,
            outcome=decision.outcome,
            message=PERSON_REFUSED,
            detail=decision.detail,
            reads=reads(),
            subject=subject,
        )
    if dry_run:
        return FixResult(
            **base,
            outcome=Outcome.WOULD_APPLY,
            sent=decision.writes,
            message=PERSON_DRY_RUN,
            detail=(
                f"Dry run: nothing was sent. The precondition holds ({decision.detail}); "
                f"applying would do this: {decision.done or executor.done(params)}"
            ),
            reads=reads(),
            subject=subject,
        )
    status: int | None = None
    sent: list[PlannedRequest] = []
    for write in decision.writes:
        reads_so_far = reads()
        sent.append(write)
        try:
            status = await _send(client, write)
        except TenantError as exc:
            return _failed(base, exc, "making the change", sent, reads_so_far, subject=subject)
    return FixResult(
        **base,
        outcome=Outcome.APPLIED,
        sent=sent,
        status=status,
        message=f"{state} — {executor.next_step(params)}.",
        detail=decision.done or executor.done(params),
        reads=[r for r in reads() if not _is_write(r)],
        subject=subject,
    )


def approval_executor(
    settings: CheckSettings, *, net: Network | None = None, timeout: float = 60.0
) -> ApplyFix:
    """An executor for the approval flow: each call applies one approved remediation with a
    fresh tenant client (on `net`, or a network of its own) and returns (holds, account)."""

    async def run(remediation: Remediation) -> tuple[bool, dict[str, Any]]:
        try:
            if net is not None:
                result = await apply(remediation, _client(settings, net, timeout))
            else:
                async with Network(settings) as own:
                    result = await apply(remediation, _client(settings, own, timeout))
        except InvalidProposal as exc:
            return False, {
                "outcome": Outcome.FAILED.value,
                "message": PERSON_FAILED,
                "detail": f"The proposal cannot be applied: {exc}",
                "sent": [],
            }
        return result.holds, result.account()

    return run


def _client(settings: CheckSettings, net: Network, timeout: float) -> TenantClient:
    return TenantClient(
        settings, net, hosts_for(settings.cloud), deadline=time.monotonic() + timeout
    )


async def _send(client: TenantClient, write: PlannedRequest) -> int:
    """Send one planned write through the client; the documented success status."""
    if write.api == "exo":
        await client.exo(write.cmdlet or "", write.parameters)
        return 200  # InvokeCommand answers 200 with the (empty) result
    assert write.path is not None
    body = write.body or {}
    if write.method == "PATCH":
        data = await client.graph_patch(write.path, body)
    else:
        data = await client.graph_post(write.path, body)
    return 204 if data is None else 200  # the client returns None for 204 No Content


def _is_write(label: str) -> bool:
    return not label.startswith("GET ") and not re.search(r"\bGet-[A-Za-z]+$", label)


_HTTP = re.compile(r"\bHTTP (\d{3})\b")


def status_of(exc: TenantError) -> int | None:
    """The HTTP status behind a client error, as far as the error tells it."""
    if isinstance(exc, PermissionMissing):
        return 401 if "refused mailfix's app" in str(exc) else 403
    if isinstance(exc, TenantNotFound):
        return 404
    if isinstance(exc, Throttled):  # also raised when the deadline passed before sending
        return 429 if "throttling" in str(exc) else None
    if isinstance(exc, TenantAuthFailed):
        return None  # the token request failed: the change was never sent
    found = _HTTP.search(str(exc))
    return int(found.group(1)) if found else None


def _failed(
    base: dict[str, Any],
    exc: TenantError,
    while_: str,
    sent: list[PlannedRequest],
    reads: list[str],
    *,
    subject: str | None = None,
) -> FixResult:
    permission = grant = None
    if isinstance(exc, PermissionMissing):
        permission, grant = exc.permission, exc.grant_where
        detail = f"{exc} Grant {exc.permission} here: {exc.grant_where}."
    elif isinstance(exc, Throttled):
        detail = f"{exc} Try again in a little while."
    elif isinstance(exc, TenantAuthFailed):
        detail = f"mailfix could not sign in to the tenant: {exc}"
    elif isinstance(exc, TenantUnavailable):
        detail = f"Microsoft's service did not answer usefully: {exc}"
    else:
        detail = str(exc)
    return FixResult(
        **base,
        outcome=Outcome.FAILED,
        sent=sent,
        status=status_of(exc),
        message=PERSON_FAILED,
        detail=f"Failed while {while_}. {detail}",
        reads=reads,
        subject=subject,
        permission=permission,
        grant_where=grant,
    )
