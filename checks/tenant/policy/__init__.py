"""Pure evaluators for the tenant's access policies: Conditional Access and Client Access Rules.

No I/O here: `checks.modules.tenant.access` reads the tenant and hands the models to these.
"""

from __future__ import annotations

from checks.tenant.policy import ca, car, opath
from checks.tenant.policy._tri import Tri
from checks.tenant.policy.models import (
    EXCHANGE_ONLINE_APP_ID,
    CarAuthType,
    CarProtocol,
    ClientAccessRule,
    ClientAppType,
    ConditionalAccessPolicy,
    NamedLocation,
    Platform,
    PolicyState,
)

__all__ = [
    "EXCHANGE_ONLINE_APP_ID",
    "CarAuthType",
    "CarProtocol",
    "ClientAccessRule",
    "ClientAppType",
    "ConditionalAccessPolicy",
    "NamedLocation",
    "Platform",
    "PolicyState",
    "Tri",
    "ca",
    "car",
    "opath",
]
