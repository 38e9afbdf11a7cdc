"""tenant.mailbox and tenant.devices (Exchange Online admin API)."""

from __future__ import annotations

from checks.models import Client, Side
from checks.modules.tenant._declare import declared
from checks.spec import EVERY_CLIENT, Check

CHECKS: tuple[Check, ...] = (
    declared("tenant.mailbox", "Mailbox and protocols", Side.ADMIN, EVERY_CLIENT),
    declared("tenant.devices", "Quarantined devices", Side.ADMIN, frozenset({Client.MOBILE})),
)
