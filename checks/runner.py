"""Run the catalogue concurrently and turn findings into a report.

Every applicable check starts at once. A check that needs another's finding awaits it through
`ctx.result_of` (declared in `depends_on`), so dependencies never serialise independent work.
Each check has its own timeout, and one global deadline bounds the whole diagnosis: whatever is
still running then is cancelled and reported as `error`. An unexpected exception inside a check
becomes that check's `error` finding; the other checks still report.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from checks.address import MailAddress, parse_address
from checks.cloud import hosts_for
from checks.diagnosis import rank_causes
from checks.models import Client, Finding, Report, Status
from checks.net.errors import NetError
from checks.net.seam import Network
from checks.registry import CATALOGUE
from checks.settings import CheckSettings
from checks.spec import Check, CheckContext
from checks.symptoms import classify_symptom

log = logging.getLogger(__name__)

DEFAULT_DEADLINE = 30.0
MAX_DEADLINE = 300.0

ProgressFn = Callable[[Finding, int, int], Awaitable[None] | None]


def skip_reason(check: Check, client: Client, settings: CheckSettings) -> str | None:
    """Why `check` does not run for this request, or None when it runs."""
    if not check.applies_to(client):
        return f"Does not apply to {client.value} clients."
    if check.needs_tenant and not settings.has_tenant_credentials:
        return (
            "Needs admin consent: set MAILFIX_TENANT_ID, MAILFIX_CLIENT_ID and "
            "MAILFIX_CLIENT_SECRET (or MAILFIX_CLIENT_CERTIFICATE)."
        )
    if check.run is None:
        return "Not available in this version of mailfix."
    return None


async def run_checks(
    ctx: CheckContext,
    checks: Sequence[Check],
    *,
    deadline: float,
    on_progress: ProgressFn | None = None,
) -> list[Finding]:
    """Run `checks` for `ctx`; return one finding per check, in the order given."""
    loop = asyncio.get_running_loop()
    ctx._results.clear()
    for check in checks:
        ctx._results[check.id] = loop.create_future()
    total = len(checks)
    done = 0
    started = time.monotonic()
    end = started + deadline
    ctx.deadline = end

    async def settle(check: Check, finding: Finding) -> None:
        nonlocal done
        fut = ctx._results[check.id]
        if fut.done():
            return
        fut.set_result(finding)
        done += 1
        if on_progress is not None:
            try:
                outcome = on_progress(finding, done, total)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:  # a broken progress display must not break the diagnosis
                log.exception("progress callback failed")

    async def run_one(check: Check) -> None:
        assert check.run is not None
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(min(check.timeout, max(0.0, end - t0))):
                finding = await check.run(ctx.view(check))
            if finding.check != check.id:
                raise RuntimeError(f"returned a finding for {finding.check!r}")
        except TimeoutError:
            overall = time.monotonic() >= end - 0.001
            finding = check.finding(
                Status.ERROR,
                f"Stopped at the {deadline:g} s deadline before it could decide."
                if overall
                else f"Did not finish within its {check.timeout:g} s time limit.",
                evidence={"timeout_s": round(deadline if overall else check.timeout, 3)},
            )
        except NetError as exc:  # a check that did not handle an expected failure itself
            finding = check.finding(
                Status.ERROR,
                f"Could not decide: {exc}",
                evidence={"error": exc.kind, "host": exc.host},
            )
        except Exception as exc:
            log.exception("check %s crashed", check.id)
            finding = check.finding(
                Status.ERROR,
                "The check itself failed unexpectedly; the other checks are unaffected.",
                detail=f"{type(exc).__name__}: {exc}"[:500],
                evidence={"exception": type(exc).__name__},
            )
        elapsed = int((time.monotonic() - t0) * 1000)
        await settle(check, finding.model_copy(update={"duration_ms": elapsed}))

    tasks: list[asyncio.Task[None]] = []
    for check in checks:
        reason = skip_reason(check, ctx.client, ctx.settings)
        if reason is not None:
            await settle(check, check.finding(Status.SKIP, reason))
        else:
            tasks.append(asyncio.create_task(run_one(check), name=f"check:{check.id}"))

    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, end - time.monotonic()) + 0.5)
        for task in pending:  # only reachable if a check ignores cancellation for a while
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)
    for check in checks:
        if not ctx._results[check.id].done():
            await settle(
                check,
                check.finding(Status.ERROR, f"Stopped at the {deadline:g} s deadline."),
            )
    return [ctx._results[c.id].result() for c in checks]


async def diagnose(
    address: str | MailAddress,
    client: Client | str = Client.ALL,
    *,
    settings: CheckSettings | None = None,
    symptom: str | None = None,
    deadline: float = DEFAULT_DEADLINE,
    net: Network | None = None,
    checks: Sequence[Check] | None = None,
    on_progress: ProgressFn | None = None,
) -> Report:
    """Diagnose one address for one client. Raises InvalidAddress / ValueError on bad input."""
    mail = address if isinstance(address, MailAddress) else parse_address(address)
    client = Client(client)
    if not 0 < deadline <= MAX_DEADLINE:
        raise ValueError(f"the deadline must be between 0 and {MAX_DEADLINE:g} seconds")
    settings = settings if settings is not None else CheckSettings()
    selected = tuple(checks) if checks is not None else CATALOGUE
    started = time.monotonic()
    own_net = net is None
    network = net if net is not None else Network(settings)
    try:
        ctx = CheckContext(
            address=mail,
            client=client,
            symptom=symptom,
            settings=settings,
            net=network,
            cloud=hosts_for(settings.cloud),
        )
        findings = await run_checks(ctx, selected, deadline=deadline, on_progress=on_progress)
    finally:
        if own_net:
            await network.aclose()
    causes = rank_causes(findings, client, classify_symptom(symptom))
    return Report(
        address=mail.display,
        client=client,
        duration_ms=int((time.monotonic() - started) * 1000),
        findings=findings,
        causes=causes,
    )
