"""Declaring a tenant check that is not built yet (run=None: reported as `skip`)."""

from __future__ import annotations

from checks.models import Client, Side
from checks.spec import Check


def declared(check_id: str, title: str, side: Side, clients: frozenset[Client]) -> Check:
    return Check(id=check_id, title=title, side=side, clients=clients, run=None, needs_tenant=True)
