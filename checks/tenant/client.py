"""The tenant client: Microsoft Graph and the Exchange Online admin API, app-only, on the seam.

API stub (PLAN.md "Client API"): signatures are fixed; bodies land next.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from checks.cloud import CloudHosts
from checks.net.seam import Network
from checks.settings import CheckSettings


class TenantClient:
    """One per diagnosis (see `tenant_client`); the msal application behind it is shared."""

    def __init__(
        self,
        settings: CheckSettings,
        net: Network,
        cloud: CloudHosts,
        *,
        deadline: float | None = None,  # time.monotonic() value no retry may pass
    ) -> None:
        self.settings = settings
        self.net = net
        self.cloud = cloud
        self.deadline = deadline
        self.last_requests: list[str] = []

    async def graph_get(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        beta: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        raise NotImplementedError

    async def graph_list(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        beta: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def graph_post(
        self, path: str, body: Mapping[str, Any], *, beta: bool = False
    ) -> dict[str, Any] | None:
        raise NotImplementedError

    async def exo(
        self, cmdlet: str, parameters: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        raise NotImplementedError
