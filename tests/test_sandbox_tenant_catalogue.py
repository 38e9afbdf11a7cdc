"""The tenant scenarios of the sandbox catalogue: enough of them, well formed, and fixes that
change the tenant so mailfix's re-check passes (the product's own diagnosis, in process, over
real HTTPS on loopback). Every scenario's expectations also run end to end in
tests/test_e2e_cli.py (a subprocess configured by MAILFIX_* only).
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from checks.models import Client, Status
from checks.registry import CATALOGUE_IDS
from checks.remedies import plan, propose
from checks.runner import diagnose
from sandbox.catalogue import CATALOGUE, get
from sandbox.tenant.build import IPHONE_ID, SANDBOX_SECRET, app_certificate
from sandbox.tenant.models import SKU_E3
from sandbox.world import World

TENANT = [s for s in CATALOGUE.values() if s.tenant is not None]
TENANT_CHECKS = {c for c in CATALOGUE_IDS if c.startswith("tenant.")}


def test_enough_tenant_scenarios_each_about_the_tenant() -> None:
    assert len(TENANT) >= 22
    tops = {e.top_cause for s in TENANT for e in s.expect}
    # A real spread of admin-side causes, not one cause many times.
    assert len(tops - {"device-or-app"}) >= 18
    for scenario in TENANT:
        assert scenario.expect, scenario.id
        for expectation in scenario.expect:
            assert set(expectation.statuses) & TENANT_CHECKS, scenario.id
        tenant = scenario.tenant
        assert tenant is not None
        # The person is in the tenant (or, for account-not-found, deliberately not).
        upns = {u.upn for u in tenant.users}
        assert (scenario.address_idna in upns) != (scenario.id == "account-not-found")


def test_report_only_and_excluded_policies_are_expected_not_to_block() -> None:
    for scenario_id in ("ca-report-only", "ca-excluded-group"):
        for expectation in get(scenario_id).expect:
            assert expectation.top_cause == "device-or-app"
            assert expectation.statuses["tenant.conditional_access"] is Status.PASS


class _Routed(httpx.AsyncBaseTransport):
    """httpx to the world's hosts: the world's address for each name, SNI kept, its CA."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.inner = httpx.AsyncHTTPTransport(
            verify=ssl.create_default_context(cafile=world.ca_path)
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host, port = request.url.host, request.url.port or 443
        ip = self.world.ip_of(host)
        request.url = request.url.copy_with(host=ip, port=self.world.port_map.get((ip, port), port))
        request.extensions = {**request.extensions, "sni_hostname": host}
        request.headers["Host"] = host
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _token(http: httpx.AsyncClient, world: World, resource: str) -> str:
    data = world.scenario.tenant
    assert data is not None
    r = await http.post(
        f"https://login.microsoftonline.com/{data.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": data.app.client_id,
            "client_secret": SANDBOX_SECRET,
            "scope": f"{resource}/.default",
        },
    )
    return str(r.json()["access_token"])


async def _set_cas(http: httpx.AsyncClient, world: World, parameters: dict[str, Any]) -> None:
    data = world.scenario.tenant
    assert data is not None
    token = await _token(http, world, "https://outlook.office365.com")
    r = await http.post(
        f"https://outlook.office365.com/adminapi/beta/{data.tenant_id}/InvokeCommand",
        json={"CmdletInput": {"CmdletName": "Set-CASMailbox", "Parameters": parameters}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text


async def _graph(
    http: httpx.AsyncClient, world: World, method: str, path: str, body: Any = None
) -> None:
    token = await _token(http, world, "https://graph.microsoft.com")
    r = await http.request(
        method,
        f"https://graph.microsoft.com/v1.0{path}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code in (200, 204), r.text


def _user_id(scenario_id: str) -> str:
    data = get(scenario_id).tenant
    assert data is not None
    return data.users[0].id


Fix = Callable[[httpx.AsyncClient, World], Awaitable[None]]


def _set_cas_as_proposed(protocols: list[str]) -> Fix:
    """Send the Set-CASMailbox mailfix plans for ana's `protocols` fix (one request)."""
    [request] = plan(propose.enable_protocol("ana@contoso.com", protocols=protocols))
    return lambda http, w: _set_cas(http, w, request.parameters)


FIXES: list[tuple[str, Client, str, str, Fix]] = [
    (
        "imap-off",
        Client.IMAP,
        "protocol-disabled",
        "tenant.mailbox",
        lambda http, w: _set_cas(http, w, {"Identity": "ana@contoso.com", "ImapEnabled": True}),
    ),
    (
        # Two switches off: mailfix's one proposal switches both on, so one write fixes it.
        "mapi-ews-off",
        Client.OUTLOOK,
        "protocol-disabled",
        "tenant.mailbox",
        _set_cas_as_proposed(["Mapi", "Ews"]),
    ),
    (
        "device-quarantined-global",
        Client.MOBILE,
        "device-quarantined",
        "tenant.devices",
        lambda http, w: _set_cas(
            http,
            w,
            {
                "Identity": "ana@contoso.com",
                "ActiveSyncAllowedDeviceIDs": {
                    "@odata.type": "#Exchange.GenericHashTable",
                    "add": IPHONE_ID,
                },
            },
        ),
    ),
    (
        "no-licence",
        Client.OUTLOOK,
        "no-exchange-licence",
        "tenant.license",
        lambda http, w: _graph(
            http,
            w,
            "POST",
            f"/users/{_user_id('no-licence')}/assignLicense",
            {"addLicenses": [{"skuId": SKU_E3.sku_id, "disabledPlans": []}], "removeLicenses": []},
        ),
    ),
    (
        "account-disabled",
        Client.OUTLOOK,
        "account-disabled",
        "tenant.account",
        lambda http, w: _graph(
            http, w, "PATCH", f"/users/{_user_id('account-disabled')}", {"accountEnabled": True}
        ),
    ),
    (
        "account-soft-deleted",
        Client.MOBILE,
        "account-deleted",
        "tenant.account",
        lambda http, w: _graph(
            http, w, "POST", f"/directory/deletedItems/{_user_id('account-soft-deleted')}/restore"
        ),
    ),
]


@pytest.mark.parametrize(
    ("scenario_id", "client", "before", "check", "fix"), FIXES, ids=[f[0] for f in FIXES]
)
async def test_a_fix_changes_the_tenant_and_the_recheck_passes(
    scenario_id: str, client: Client, before: str, check: str, fix: Fix
) -> None:
    scenario = get(scenario_id)
    async with World(scenario) as world:
        async with world.network() as net:
            first = await diagnose(scenario.address, client, settings=world.settings(), net=net)
        assert first.top_cause is not None and first.top_cause.id == before
        async with httpx.AsyncClient(transport=_Routed(world), timeout=10) as http:
            await fix(http, world)
        async with world.network() as net:
            again = await diagnose(scenario.address, client, settings=world.settings(), net=net)
    statuses = {f.check: f.status for f in again.findings}
    assert statuses[check] is Status.PASS
    assert world.tenant is not None and len(world.tenant.writes) == 1
    top = again.top_cause
    # Refusals from before the fix stay in the sign-in log (48 h), but the state read after
    # the fix says they are history: the device is what is left.
    assert top is not None and top.id == "device-or-app", [c.id for c in again.causes]


async def test_autodiscover_follows_the_live_tenant() -> None:
    """No mailbox: Exchange's POX says the address can't be found; after the licence, it can."""
    scenario = get("no-licence")
    pox = (
        '<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/'
        'exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>ana@contoso.com'
        "</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/"
        "autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request>"
        "</Autodiscover>"
    )
    url = "https://autodiscover-s.outlook.com/autodiscover/autodiscover.xml"
    headers = {"Authorization": "Basic YW5hOng=", "Content-Type": "text/xml"}
    async with (
        World(scenario) as world,
        httpx.AsyncClient(transport=_Routed(world), timeout=10) as http,
    ):
        missing = await http.post(url, content=pox, headers=headers)
        assert "<ErrorCode>500</ErrorCode>" in missing.text
        await _graph(
            http,
            world,
            "POST",
            f"/users/{_user_id('no-licence')}/assignLicense",
            {"addLicenses": [{"skuId": SKU_E3.sku_id}], "removeLicenses": []},
        )
        found = await http.post(url, content=pox, headers=headers)
    assert "<ErrorCode>" not in found.text
    assert "<AccountType>email</AccountType>" in found.text


async def test_mailfix_signs_in_with_the_sandbox_app_certificate() -> None:
    """MAILFIX_CLIENT_CERTIFICATE (no secret) works against every sandbox app by default."""
    scenario = get("imap-off")
    async with World(scenario) as world:
        env = world.env(certificate=True)
        assert "MAILFIX_CLIENT_SECRET" not in env
        path = env["MAILFIX_CLIENT_CERTIFICATE"]
        assert path == str(world.client_certificate_path())
        assert b"PRIVATE KEY" in app_certificate().pem
        settings = world.settings(client_secret=None, client_certificate=path)
        async with world.network() as net:
            report = await diagnose(scenario.address, Client.IMAP, settings=settings, net=net)
        token_posts = [r for r in world.requests("login.microsoftonline.com") if r.method == "POST"]
    assert report.top_cause is not None and report.top_cause.id == "protocol-disabled"
    assert token_posts and all(r.path.endswith("/oauth2/v2.0/token") for r in token_posts)
