"""The live, mutable tenant a world serves: one per world, shared by login, Graph and Exchange.

Built from a scenario's frozen `TenantData`; executors change it through Graph and the Exchange
admin API (Set-CASMailbox, assignLicense, PATCH accountEnabled, restore), and every later
request sees the change — so a re-check after a fix passes.

Derived facts follow the reference:
- A mailbox exists in Exchange Online when the user is not deleted, its mailbox lives in EXO and
  a mailbox plan (§5.1) is assigned, not disabled, and provisioned (`Success`).
- A device's access state follows Exchange's ABQ order (§3.3): the mailbox's allowed list, then
  its blocked list, then device access rules, then the organisation's default access level.

For tests of what a caller does when it dies mid-request: `hold` answers chosen requests late
(after they ran), `write_requests` counts every write request that ran, changed or not.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from checks.settings import Cloud
from sandbox.services.configs import Mailbox
from sandbox.tenant.hosts import TenantHosts, tenant_hosts
from sandbox.tenant.models import (
    MAILBOX_PLANS,
    AssignedLicense,
    CasSettings,
    MobileDevice,
    ServicePlan,
    Sku,
    TenantData,
    TenantUser,
    Throttle,
)

# Soft-deleted users stay restorable for 30 days (§5 Deleted users row).
RESTORE_DAYS = 30


@dataclass(frozen=True)
class PlanState:
    sku: Sku
    plan: ServicePlan
    status: str  # provisioningStatus


@dataclass(frozen=True)
class DeviceAccess:
    state: str  # DeviceAccessState: Allowed, Blocked, Quarantined
    reason: str  # DeviceAccessStateReason: Individual, DeviceRule, Global
    rule: str | None  # DeviceAccessControlRule


class TenantState:
    """Mutable tenant data. Methods are synchronous and cheap; one lock guards writes."""

    def __init__(self, data: TenantData, cloud: Cloud = Cloud.GLOBAL) -> None:
        self.data = data
        self.cloud = cloud
        self.hosts: TenantHosts = tenant_hosts(cloud)
        self.users: dict[str, TenantUser] = {u.id: u for u in data.users}
        self.default_access_level = data.default_access_level
        self.smtp_client_authentication_disabled = data.smtp_client_authentication_disabled
        self._throttles: list[list[int]] = [[t.times] for t in data.throttles]
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self.writes: list[str] = []  # "Set-CASMailbox ana@contoso.com ImapEnabled=True", …
        # Every write request that ran, whether it changed anything or not:
        # ("Set-CASMailbox", "ana@contoso.com", "ActiveSyncEnabled") -> how many.
        self.write_requests: Counter[tuple[str, str, str]] = Counter()
        self._holds: list[_Hold] = []
        self.held = 0  # requests whose answer is being held back right now (`hold`)

    # -- identity of the tenant --

    @property
    def tenant_id(self) -> str:
        return self.data.tenant_id

    def is_tenant(self, name: str) -> bool:
        """`name` (a path segment) names this tenant: its id or one of its domains."""
        wanted = name.lower()
        return wanted in (self.tenant_id, self.data.initial_domain) or (wanted in self.data.domains)

    def next_number(self) -> int:
        return next(self._counter)

    # -- faults --

    def throttled(self, service: str, key: str) -> Throttle | None:
        """The throttle that applies to this request (counting it down), or None."""
        key = key.lower()
        with self._lock:
            for throttle, left in zip(self.data.throttles, self._throttles, strict=True):
                if throttle.service != service or throttle.path.lower() not in key:
                    continue
                if left[0] == 0:
                    continue
                if left[0] > 0:
                    left[0] -= 1
                return throttle
        return None

    def hold(self, service: str, key: str, seconds: float, *, times: int = 1) -> None:
        """Answer the next `times` requests to `service` that `key` names (for "exo", the
        cmdlet) `seconds` late, after they ran: a write has landed when its answer is held, as
        when the caller dies before it hears back. Only a test asks; otherwise nothing waits."""
        with self._lock:
            self._holds.append(_Hold(service, key.lower(), seconds, times))

    def take_hold(self, service: str, key: str) -> float:
        """Seconds to hold this request's answer back (0: answer at once), counting it down."""
        key = key.lower()
        with self._lock:
            for hold in self._holds:
                if hold.service == service and hold.key == key and hold.left > 0:
                    hold.left -= 1
                    return hold.seconds
        return 0.0

    def count_write(self, operation: str, target: str, settings: Iterable[str]) -> None:
        """One write request for `target` (a UPN) ran, naming `settings`."""
        with self._lock:
            for setting in settings:
                self.write_requests[(operation, target, setting)] += 1

    # -- directory --

    def live_users(self) -> Iterator[TenantUser]:
        return (u for u in self.users.values() if u.deleted_days_ago is None)

    def deleted_users(self) -> Iterator[TenantUser]:
        return (
            u
            for u in self.users.values()
            if u.deleted_days_ago is not None and u.deleted_days_ago < RESTORE_DAYS
        )

    def find_user(self, key: str, *, deleted: bool = False) -> TenantUser | None:
        """A live (or, with deleted=True, soft-deleted) user by object id or UPN."""
        wanted = key.lower()
        pool = self.deleted_users() if deleted else self.live_users()
        for user in pool:
            if wanted in (user.id, user.upn):
                return user
        return None

    def resolve_recipient(self, identity: str) -> TenantUser | None:
        """Exchange's -Identity: UPN, any proxy address, alias, object id or display name."""
        wanted = identity.strip().lower()
        for user in self.live_users():
            proxies = {p.split(":", 1)[-1].lower() for p in user.proxy_addresses}
            alias = user.upn.split("@", 1)[0]
            if wanted in {user.id, user.upn, user.mail or "", alias, user.display_name.lower()}:
                return user
            if wanted in proxies:
                return user
        return None

    def replace_user(self, user: TenantUser, note: str) -> None:
        with self._lock:
            self.users[user.id] = user
            self.writes.append(note)

    # -- licences and mailboxes --

    def sku(self, sku_id: str) -> Sku | None:
        return next((s for s in self.data.skus if s.sku_id == sku_id), None)

    def plan_status(self, user: TenantUser, lic: AssignedLicense, plan: ServicePlan) -> str:
        if plan.id in lic.disabled_plans:
            return "Disabled"
        return user.plan_status.get(plan.name, "Success")

    def exchange_plan(self, user: TenantUser) -> PlanState | None:
        """The user's mailbox plan; a working one (`Success`) wins over others."""
        found: list[PlanState] = []
        for lic in user.licenses:
            sku = self.sku(lic.sku_id)
            if sku is None:
                continue
            for plan in sku.plans:
                if plan.name in MAILBOX_PLANS:
                    found.append(PlanState(sku, plan, self.plan_status(user, lic, plan)))
        found.sort(key=lambda p: p.status != "Success")
        return found[0] if found else None

    def has_exo_mailbox(self, user: TenantUser) -> bool:
        if user.deleted_days_ago is not None or user.mailbox != "exo":
            return False
        plan = self.exchange_plan(user)
        return plan is not None and plan.status == "Success"

    def consumed_units(self, sku_id: str) -> int:
        return sum(1 for u in self.live_users() if any(lic.sku_id == sku_id for lic in u.licenses))

    def mailboxes(self, static: tuple[Mailbox, ...]) -> tuple[Mailbox, ...]:
        """The directory Autodiscover answers from: `static` entries, with the location of every
        address this tenant knows taken from the live tenant (so a fix shows there too)."""
        out: list[Mailbox] = []
        known: set[str] = set()
        for user in self.live_users():
            location = (
                "exo"
                if self.has_exo_mailbox(user)
                else ("onprem" if user.mailbox == "onprem" else "none")
            )
            primary = next(
                (p[5:] for p in user.proxy_addresses if p.startswith("SMTP:")),
                user.mail or user.upn,
            ).lower()
            addresses = {primary, user.upn} | {
                p.split(":", 1)[1].lower() for p in user.proxy_addresses if ":" in p
            }
            for address in sorted(addresses):
                known.add(address)
                out.append(
                    Mailbox(
                        address=address,
                        display_name=user.display_name,
                        location=location,
                        primary_smtp=primary if address != primary else None,
                    )
                )
        out.extend(m for m in static if m.address not in known)
        return tuple(out)

    # -- devices --

    def device_access(self, user: TenantUser, device: MobileDevice) -> DeviceAccess:
        cas: CasSettings = user.cas
        if device.device_id in cas.active_sync_allowed_device_ids:
            return DeviceAccess("Allowed", "Individual", None)
        if device.device_id in cas.active_sync_blocked_device_ids:
            return DeviceAccess("Blocked", "Individual", None)
        values = {
            "DeviceModel": device.device_model,
            "DeviceType": device.device_type,
            "DeviceOS": device.device_os,
            "UserAgent": device.user_agent,
        }
        for rule in self.data.device_rules:
            if values.get(rule.characteristic, "").lower() == rule.query_string.lower():
                return DeviceAccess(_STATE[rule.access_level], "DeviceRule", rule.name)
        return DeviceAccess(_STATE[self.default_access_level], "Global", None)


_STATE = {"Allow": "Allowed", "Block": "Blocked", "Quarantine": "Quarantined"}


@dataclass
class _Hold:
    service: str
    key: str
    seconds: float
    left: int
