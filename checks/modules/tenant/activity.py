"""tenant.signins and tenant.service_health (Microsoft Graph)."""

from __future__ import annotations

from checks.models import Side
from checks.modules.tenant._declare import declared
from checks.spec import EVERY_CLIENT, Check

CHECKS: tuple[Check, ...] = (
    declared("tenant.signins", "Recent sign-in failures", Side.IDENTITY, EVERY_CLIENT),
    declared("tenant.service_health", "Exchange Online service health", Side.SERVICE, EVERY_CLIENT),
)
