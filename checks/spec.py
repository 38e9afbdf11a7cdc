"""What a check is, and what it gets to work with.

A check family is one module in `checks/modules/` exposing `CHECKS: tuple[Check, ...]`, each
with an `async def run(ctx) -> Finding`. Expected failures of the world (NXDOMAIN, refused,
bad certificate) are findings, never exceptions; the runner turns anything else into an
`error` finding while the other checks keep going.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from checks.address import MailAddress
from checks.cloud import CloudHosts
from checks.models import Client, Finding, Side, Status
from checks.net.seam import Network
from checks.settings import CheckSettings

T = TypeVar("T")

CheckFn = Callable[["CheckContext"], Awaitable[Finding]]

EVERY_CLIENT: frozenset[Client] = frozenset(Client)


@dataclass(frozen=True)
class Check:
    id: str  # stable, e.g. "dns.mx" (DESIGN.md "Check catalogue")
    title: str  # short human name, e.g. "MX records"
    side: Side  # who acts when this check fails
    clients: frozenset[Client]  # clients it applies to; Client.ALL is always added
    run: CheckFn | None  # None: declared in the catalogue, not available in this build
    depends_on: tuple[str, ...] = ()  # checks whose findings `run` may await
    timeout: float = 20.0  # seconds for this check alone (the global deadline also applies)
    needs_tenant: bool = False  # needs admin-consented tenant credentials

    def applies_to(self, client: Client) -> bool:
        return client is Client.ALL or client in self.clients

    def finding(self, status: Status, summary: str, **fields: Any) -> Finding:
        """Build this check's finding (saves repeating the id)."""
        return Finding(check=self.id, status=status, summary=summary, **fields)


class DependencyError(RuntimeError):
    """A check awaited a finding it did not declare in `depends_on`."""


@dataclass
class CheckContext:
    """Everything one diagnosis shares. The runner gives each check its own view (`current`)."""

    address: MailAddress
    client: Client
    symptom: str | None
    settings: CheckSettings
    net: Network
    cloud: CloudHosts
    current: Check | None = None
    deadline: float | None = None  # time.monotonic() when the whole diagnosis must be done
    _results: dict[str, asyncio.Future[Finding]] = field(default_factory=dict, repr=False)
    _memo: dict[str, asyncio.Future[Any]] = field(default_factory=dict, repr=False)

    def view(self, check: Check) -> CheckContext:
        """The context as one check sees it (shares results and memo with its siblings)."""
        return CheckContext(
            address=self.address,
            client=self.client,
            symptom=self.symptom,
            settings=self.settings,
            net=self.net,
            cloud=self.cloud,
            current=check,
            deadline=self.deadline,
            _results=self._results,
            _memo=self._memo,
        )

    async def result_of(self, check_id: str) -> Finding:
        """Wait for the finding of a declared dependency (whatever its status)."""
        if self.current is None or check_id not in self.current.depends_on:
            who = self.current.id if self.current else "?"
            raise DependencyError(f"{who} awaited {check_id} without declaring it in depends_on")
        return await asyncio.shield(self._results[check_id])

    async def memo(self, key: str, factory: Callable[[], Awaitable[T]]) -> T:
        """Run `factory` once per diagnosis for `key`; concurrent callers share the result."""
        fut = self._memo.get(key)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._memo[key] = fut
            try:
                fut.set_result(await factory())
            except asyncio.CancelledError:
                fut.cancel()
                raise
            except Exception as exc:
                fut.set_exception(exc)
                fut.exception()  # mark retrieved: the caller re-raises it below
                raise
        result: T = await asyncio.shield(fut)
        return result
