"""tenant.account and tenant.license (Microsoft Graph)."""

from __future__ import annotations

from checks.models import Side
from checks.modules.tenant._declare import declared
from checks.spec import EVERY_CLIENT, Check

CHECKS: tuple[Check, ...] = (
    declared("tenant.account", "Account enabled", Side.IDENTITY, EVERY_CLIENT),
    declared("tenant.license", "Exchange Online licence", Side.ADMIN, EVERY_CLIENT),
)
