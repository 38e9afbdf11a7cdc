"""tenant.client_access_rules and tenant.conditional_access: who may connect, how."""

from __future__ import annotations

from checks.models import Side
from checks.modules.tenant._declare import declared
from checks.spec import EVERY_CLIENT, Check

CHECKS: tuple[Check, ...] = (
    declared("tenant.client_access_rules", "Client Access Rules", Side.ADMIN, EVERY_CLIENT),
    declared("tenant.conditional_access", "Conditional Access", Side.IDENTITY, EVERY_CLIENT),
)
