"""The tenant client over real HTTP: msal on the seam, Graph and the Exchange admin API.

msal's own requests (OpenID configuration, instance discovery, token) go through the seam, so
the address guard and MAILFIX_DNS_SERVERS apply to them as to every check.
"""

from __future__ import annotations

import pytest
from _checkworld import FAST, checked, scenario

from checks.cloud import hosts_for
from checks.net.errors import BlockedAddress
from checks.settings import Cloud
from checks.tenant import TenantClient, TenantUnavailable
from sandbox.scenario import Record

TENANT = "6f1b7c2e-0d4a-4e57-9a63-2b8f6c1d9e01"
APP = "0b9d8a31-6c54-4f3e-8d27-a1e5c0f4b2d6"
SECRET = "s3cret~Value.That-Must-Not-Leak_42"
LOGIN = "login.microsoftonline.com"


async def test_msal_is_refused_by_the_guard_when_login_resolves_to_a_loopback() -> None:
    # 127.0.0.1 is loopback and not in the world's allowed block: the guard refuses it before
    # any connection, for msal's very first request (the authority's OpenID configuration).
    sc = scenario(with_microsoft=False, records=[Record(name=LOGIN, rdtype="A", value="127.0.0.1")])
    async with checked(
        sc, timeouts=FAST, tenant_id=TENANT, client_id=APP, client_secret=SECRET
    ) as probe:
        client = TenantClient(probe.net.settings, probe.net, hosts_for(Cloud.GLOBAL))
        with pytest.raises(TenantUnavailable) as info:
            await client.graph_get("/users/ana@contoso.com")
    assert isinstance(info.value.__cause__, BlockedAddress)
    assert info.value.__cause__.addresses == ["127.0.0.1"]
    assert info.value.request == (
        f"GET https://{LOGIN}/{TENANT}/v2.0/.well-known/openid-configuration"
    )
    assert client.last_requests == []  # Graph was never asked without a token
    assert SECRET not in str(info.value)
