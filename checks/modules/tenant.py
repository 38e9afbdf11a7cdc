"""Tenant checks (admin consent): declared in the catalogue, not built yet.

They need Microsoft Graph and the Exchange Online admin API with an admin-consented app
(reference §5, §6). Until the tenant issue lands, every report carries them as `skip` with the
reason, so the report keeps exactly one finding per catalogue id (DESIGN.md, "Report").
"""

from __future__ import annotations

from checks.models import Client, Side
from checks.spec import EVERY_CLIENT, Check


def _declared(check_id: str, title: str, side: Side, clients: frozenset[Client]) -> Check:
    return Check(id=check_id, title=title, side=side, clients=clients, run=None, needs_tenant=True)


CHECKS: tuple[Check, ...] = (
    _declared("tenant.account", "Account enabled", Side.IDENTITY, EVERY_CLIENT),
    _declared("tenant.license", "Exchange Online licence", Side.ADMIN, EVERY_CLIENT),
    _declared("tenant.mailbox", "Mailbox and protocols", Side.ADMIN, EVERY_CLIENT),
    _declared("tenant.devices", "Quarantined devices", Side.ADMIN, frozenset({Client.MOBILE})),
    _declared("tenant.client_access_rules", "Client Access Rules", Side.ADMIN, EVERY_CLIENT),
    _declared("tenant.conditional_access", "Conditional Access", Side.IDENTITY, EVERY_CLIENT),
    _declared("tenant.signins", "Recent sign-in failures", Side.IDENTITY, EVERY_CLIENT),
    _declared(
        "tenant.service_health", "Exchange Online service health", Side.SERVICE, EVERY_CLIENT
    ),
)
