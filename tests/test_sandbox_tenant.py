"""The sandbox's tenant side over real HTTPS on loopback: Entra tokens (checked with msal, a
client we did not write), Microsoft Graph and the Exchange Online admin API — shapes, errors,
permissions, paging, throttling, and state that fixes change.

Facts checked against the team's Exchange Online diagnostics reference (§5 Graph, §5.3
What-If, §5.5 throttling, §6.3 InvokeCommand, §3.3 devices, §7 hosts).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import msal
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from checks.settings import Cloud
from sandbox.catalogue import get, tenant
from sandbox.scenario import Scenario
from sandbox.tenant.build import IPHONE_ID, SANDBOX_SECRET, rsa_self_signed, tenant_data
from sandbox.tenant.models import (
    EXO_APP_ID,
    MAILFIX_GRAPH_PERMISSIONS,
    ROLE_TEMPLATES,
    ClientSecret,
    Throttle,
)
from sandbox.world import World

ROOT = Path(__file__).resolve().parents[1]
GRAPH = "https://graph.microsoft.com/v1.0"
BETA = "https://graph.microsoft.com/beta"
ANCHOR = "APP:SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}@"


# ---- clients that reach a world through its DNS map and CA ---------------------------------------


def _route(world: World, request: httpx.Request) -> None:
    """Send `request` to the world's address for its host name, keeping SNI and Host."""
    host = request.url.host
    port = request.url.port or 443
    ip = world.ip_of(host)
    request.url = request.url.copy_with(host=ip, port=world.port_map.get((ip, port), port))
    request.extensions = {**request.extensions, "sni_hostname": host}
    request.headers["Host"] = host


class _SyncTransport(httpx.BaseTransport):
    def __init__(self, world: World) -> None:
        self.world = world
        self.inner = httpx.HTTPTransport(verify=ssl.create_default_context(cafile=world.ca_path))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        _route(self.world, request)
        return self.inner.handle_request(request)


class _AsyncTransport(httpx.AsyncBaseTransport):
    def __init__(self, world: World) -> None:
        self.world = world
        context = ssl.create_default_context(cafile=world.ca_path)
        self.inner = httpx.AsyncHTTPTransport(verify=context)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        _route(self.world, request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class MsalHttp:
    """msal's `http_client` contract (get/post returning a requests-like response)."""

    def __init__(self, world: World) -> None:
        self.client = httpx.Client(transport=_SyncTransport(world))
        self.seen: list[str] = []

    def get(self, url: str, params: Any = None, headers: Any = None, **_: Any) -> httpx.Response:
        self.seen.append(f"GET {url.split('?', maxsplit=1)[0]}")
        return self.client.get(url, params=params, headers=headers)

    def post(
        self, url: str, params: Any = None, data: Any = None, headers: Any = None, **_: Any
    ) -> httpx.Response:
        self.seen.append(f"POST {url.split('?', maxsplit=1)[0]}")
        if isinstance(data, dict):  # as requests does: bytes values are sent as they are
            data = {k: v.decode() if isinstance(v, bytes) else v for k, v in data.items()}
        return self.client.post(url, params=params, data=data, headers=headers)

    def close(self) -> None:
        self.client.close()


def _scenario(**fields: Any) -> Scenario:
    """The healthy world with tenant data built from `fields` (tenant_data keywords)."""
    return get("healthy").model_copy(update={"tenant": tenant_data(**fields)})


@asynccontextmanager
async def tenant_world(scenario: Scenario) -> AsyncIterator[tuple[World, httpx.AsyncClient]]:
    async with (
        World(scenario) as world,
        httpx.AsyncClient(transport=_AsyncTransport(world), timeout=10) as http,
    ):
        yield world, http


async def token(http: httpx.AsyncClient, world: World, resource: str, **form: str) -> str:
    data = world.scenario.tenant
    assert data is not None
    login = {
        Cloud.GLOBAL: "login.microsoftonline.com",
        Cloud.GCCHIGH: "login.microsoftonline.us",
        Cloud.DOD: "login.microsoftonline.us",
        Cloud.CHINA: "login.chinacloudapi.cn",
    }[world.scenario.cloud]
    body = {
        "grant_type": "client_credentials",
        "client_id": data.app.client_id,
        "client_secret": SANDBOX_SECRET,
        "scope": f"{resource}/.default",
        **form,
    }
    r = await http.post(f"https://{login}/{data.tenant_id}/oauth2/v2.0/token", data=body)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def claims(access_token: str) -> dict[str, Any]:
    return jwt.decode(access_token, options={"verify_signature": False})


async def graph(world: World, http: httpx.AsyncClient) -> httpx.AsyncClient:
    """`http` carrying a Graph token (same connection pool)."""
    http.headers["Authorization"] = "Bearer " + await token(
        http, world, "https://graph.microsoft.com"
    )
    return http


async def exo(
    http: httpx.AsyncClient,
    bearer: str,
    world: World,
    cmdlet: str,
    parameters: dict[str, Any] | None = None,
    *,
    url: str | None = None,
) -> httpx.Response:
    data = world.scenario.tenant
    assert data is not None
    body = {"CmdletInput": {"CmdletName": cmdlet, "Parameters": parameters or {}}}
    return await http.post(
        url or f"https://outlook.office365.com/adminapi/beta/{data.tenant_id}/InvokeCommand",
        json=body,
        headers={
            "Authorization": f"Bearer {bearer}",
            "X-AnchorMailbox": ANCHOR + data.tenant_id,
            "Prefer": "odata.maxpagesize=1000",
        },
    )


# ---- msal: a client we did not write -------------------------------------------------------------


def _msal_app(world: World, credential: Any, http: MsalHttp) -> msal.ConfidentialClientApplication:
    data = world.scenario.tenant
    assert data is not None
    return msal.ConfidentialClientApplication(
        data.app.client_id,
        client_credential=credential,
        authority=f"https://login.microsoftonline.com/{data.tenant_id}",
        http_client=http,
        token_cache=msal.TokenCache(),
    )


async def test_msal_gets_graph_and_exchange_tokens_with_a_secret() -> None:
    scenario = _scenario()
    async with World(scenario) as world:

        def run() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], list[str]]:
            http = MsalHttp(world)
            app = _msal_app(world, SANDBOX_SECRET, http)
            g = app.acquire_token_for_client(["https://graph.microsoft.com/.default"])
            e = app.acquire_token_for_client(["https://outlook.office365.com/.default"])
            again = app.acquire_token_for_client(["https://graph.microsoft.com/.default"])
            http.close()
            return g, e, again, http.seen

        g, e, again, seen = await asyncio.to_thread(run)
    tid = scenario.tenant.tenant_id  # type: ignore[union-attr]
    assert g["token_type"] == "Bearer" and g["expires_in"] > 3000
    graph_claims = claims(g["access_token"])
    assert graph_claims["aud"] == "https://graph.microsoft.com"
    assert graph_claims["tid"] == tid and graph_claims["appidacr"] == "1"
    assert set(graph_claims["roles"]) == set(MAILFIX_GRAPH_PERMISSIONS)
    exo_claims = claims(e["access_token"])
    assert exo_claims["aud"] == "https://outlook.office365.com"
    assert exo_claims["roles"] == ["Exchange.ManageAsApp"]
    assert exo_claims["wids"] == [ROLE_TEMPLATES["Exchange Recipient Administrator"]]
    # msal read the OpenID configuration, then asked for two tokens; the third came from its cache.
    assert again["token_source"] == "cache"
    base = f"https://login.microsoftonline.com/{tid}"
    assert seen == [
        f"GET {base}/v2.0/.well-known/openid-configuration",
        f"POST {base}/oauth2/v2.0/token",
        f"POST {base}/oauth2/v2.0/token",
    ]


def _certificate() -> tuple[str, bytes]:
    key, cert = rsa_self_signed("mailfix app")
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return pem_key, cert.public_bytes(serialization.Encoding.DER)


async def test_msal_certificate_assertion_is_verified() -> None:
    key, der = _certificate()
    other_key, other_der = _certificate()
    scenario = _scenario(app={"certificates": (der,), "secrets": ()})
    pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode()
    other_pem = (
        x509.load_der_x509_certificate(other_der).public_bytes(serialization.Encoding.PEM).decode()
    )
    async with World(scenario) as world:

        def run(private: str, public: str) -> dict[str, Any]:
            http = MsalHttp(world)
            app = _msal_app(world, {"private_key": private, "public_certificate": public}, http)
            result: dict[str, Any] = app.acquire_token_for_client(
                ["https://graph.microsoft.com/.default"]
            )
            http.close()
            return result

        good = await asyncio.to_thread(run, key, pem)
        stranger = await asyncio.to_thread(run, other_key, other_pem)
        forged = await asyncio.to_thread(run, other_key, pem)  # right thumbprint, wrong key
    assert claims(good["access_token"])["appidacr"] == "2"
    assert stranger["error"] == "invalid_client" and stranger["error_codes"] == [700027]
    assert "not registered on application" in stranger["error_description"]
    assert forged["error"] == "invalid_client" and forged["error_codes"] == [700027]
    assert "signature validation" in forged["error_description"]


@pytest.mark.parametrize(
    ("app", "secret", "client_id", "error", "code"),
    [
        ({}, "not-the-secret", None, "invalid_client", 7000215),
        (
            {"secrets": (ClientSecret(value=SANDBOX_SECRET, expired=True),)},
            SANDBOX_SECRET,
            None,
            "invalid_client",
            7000222,
        ),
        ({}, SANDBOX_SECRET, "11111111-2222-3333-4444-555555555555", "unauthorized_client", 700016),
    ],
    ids=["wrong-secret", "expired-secret", "unknown-app"],
)
async def test_msal_sees_entra_errors(
    app: dict[str, Any], secret: str, client_id: str | None, error: str, code: int
) -> None:
    scenario = _scenario(app=app)
    async with World(scenario) as world:

        def run() -> dict[str, Any]:
            http = MsalHttp(world)
            data = scenario.tenant
            assert data is not None
            client = msal.ConfidentialClientApplication(
                client_id or data.app.client_id,
                client_credential=secret,
                authority=f"https://login.microsoftonline.com/{data.tenant_id}",
                http_client=http,
            )
            result: dict[str, Any] = client.acquire_token_for_client(
                ["https://graph.microsoft.com/.default"]
            )
            http.close()
            return result

        result = await asyncio.to_thread(run)
    assert result["error"] == error
    assert result["error_codes"] == [code]
    assert result["error_description"].startswith(f"AADSTS{code}: ")
    assert "Trace ID:" in result["error_description"] and result["correlation_id"]


async def test_msal_refuses_an_unknown_tenant() -> None:
    async with World(_scenario()) as world:

        def run() -> tuple[str, list[str]]:
            http = MsalHttp(world)
            try:
                msal.ConfidentialClientApplication(
                    "11111111-2222-3333-4444-555555555555",
                    client_credential=SANDBOX_SECRET,
                    authority="https://login.microsoftonline.com/fabrikam.example",
                    http_client=http,
                )
            except ValueError as exc:
                return str(exc), http.seen
            finally:
                http.close()
            return "", http.seen

        message, seen = await asyncio.to_thread(run)
    # The metadata answered 400 invalid_tenant (checked raw below); msal says it in its words.
    assert message.startswith("Unable to get authority configuration")
    assert seen == [
        "GET https://login.microsoftonline.com/fabrikam.example/v2.0/.well-known/openid-configuration"
    ]


async def test_login_metadata_and_instance_discovery() -> None:
    scenario = _scenario()
    tid = scenario.tenant.tenant_id  # type: ignore[union-attr]
    async with tenant_world(scenario) as (_, http):
        by_domain = await http.get(
            "https://login.microsoftonline.com/contoso.com/v2.0/.well-known/openid-configuration"
        )
        assert by_domain.status_code == 200
        doc = by_domain.json()
        assert doc["issuer"] == f"https://login.microsoftonline.com/{tid}/v2.0"
        assert doc["token_endpoint"] == f"https://login.microsoftonline.com/{tid}/oauth2/v2.0/token"
        assert "private_key_jwt" in doc["token_endpoint_auth_methods_supported"]
        assert doc["msgraph_host"] == "graph.microsoft.com"
        keys = (await http.get(doc["jwks_uri"])).json()["keys"]
        assert keys[0]["kty"] == "RSA" and keys[0]["use"] == "sig"
        found = await http.get(
            "https://login.microsoftonline.com/common/discovery/instance",
            params={
                "api-version": "1.1",
                "authorization_endpoint": "https://login.microsoftonline.com/common/oauth2/authorize",
            },
        )
        body = found.json()
        assert body["tenant_discovery_endpoint"] == (
            "https://login.microsoftonline.com/common/.well-known/openid-configuration"
        )
        assert any("login.windows.net" in g["aliases"] for g in body["metadata"])
        bad = await http.get(
            "https://login.microsoftonline.com/common/discovery/instance",
            params={"api-version": "1.0", "authorization_endpoint": "https://evil.example/x"},
        )
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_instance"
        unknown = await http.get(
            "https://login.microsoftonline.com/nope.example/v2.0/.well-known/openid-configuration"
        )
        assert unknown.status_code == 400
        assert unknown.json()["error_codes"] == [90002]
        # Scopes: client credentials need <resource>/.default; unknown resources are refused.
        app = scenario.tenant.app  # type: ignore[union-attr]
        form = {"grant_type": "client_credentials", "client_id": app.client_id}
        endpoint = f"https://login.microsoftonline.com/{tid}/oauth2/v2.0/token"
        no_default = await http.post(
            endpoint,
            data={**form, "client_secret": SANDBOX_SECRET, "scope": "User.Read.All"},
        )
        assert no_default.json()["error_codes"] == [1002012]
        foreign = await http.post(
            endpoint,
            data={
                **form,
                "client_secret": SANDBOX_SECRET,
                "scope": "https://graph.microsoft.us/.default",
            },
        )
        assert foreign.json()["error"] == "invalid_resource"
        assert foreign.json()["error_codes"] == [500011]


# ---- Graph: shapes and errors --------------------------------------------------------------------


async def test_graph_user_fields_select_and_not_found() -> None:
    async with tenant_world(_scenario()) as (world, http):
        await graph(world, http)
        default = (await http.get(f"{GRAPH}/users/ana@contoso.com")).json()
        # v1.0 default properties do not include accountEnabled or licences.
        assert default["userPrincipalName"] == "ana@contoso.com"
        assert "accountEnabled" not in default and "assignedLicenses" not in default
        assert default["@odata.context"].endswith("$metadata#users/$entity")
        picked = await http.get(
            f"{GRAPH}/users/ana@contoso.com",
            params={"$select": "id,accountEnabled,provisionedPlans,onPremisesSyncEnabled"},
        )
        body = picked.json()
        assert set(body) == {
            "@odata.context",
            "id",
            "accountEnabled",
            "provisionedPlans",
            "onPremisesSyncEnabled",
        }
        assert body["accountEnabled"] is True and body["onPremisesSyncEnabled"] is None
        assert {
            "capabilityStatus": "Enabled",
            "provisioningStatus": "Success",
            "service": "exchange",
        } in body["provisionedPlans"]
        by_id = await http.get(f"{GRAPH}/users/{body['id']}")
        assert by_id.json()["id"] == body["id"]
        missing = await http.get(f"{GRAPH}/users/bo@contoso.com")
        assert missing.status_code == 404
        error = missing.json()["error"]
        assert error["code"] == "Request_ResourceNotFound"
        assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
        assert missing.headers["request-id"] == error["innerError"]["request-id"]
        found = await http.get(
            f"{GRAPH}/users",
            params={
                "$filter": "proxyAddresses/any(x:x eq 'SMTP:ana@contoso.onmicrosoft.com')",
                "$select": "id,userPrincipalName",
                "$count": "true",
            },
            headers={"ConsistencyLevel": "eventual"},
        )
        assert found.json()["value"] == [{"id": body["id"], "userPrincipalName": "ana@contoso.com"}]
        assert found.json()["@odata.count"] == 1
        unsupported = await http.get(f"{GRAPH}/users", params={"$filter": "a eq 1 or b eq 2"})
        assert unsupported.status_code == 400
        assert unsupported.json()["error"]["code"] == "Request_UnsupportedQuery"
        segment = await http.get(f"{GRAPH}/nothing-here")
        assert segment.status_code == 400 and "segment 'nothing-here'" in segment.text


async def test_graph_refuses_the_wrong_audience_and_no_token() -> None:
    async with tenant_world(_scenario()) as (world, http):
        exo_token = await token(http, world, "https://outlook.office365.com")
        wrong = await http.get(
            f"{GRAPH}/users/ana@contoso.com", headers={"Authorization": f"Bearer {exo_token}"}
        )
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "InvalidAuthenticationToken"
        assert "Invalid audience" in wrong.json()["error"]["message"]
        assert wrong.headers["WWW-Authenticate"].startswith("Bearer ")
        none = await http.get(f"{GRAPH}/users/ana@contoso.com")
        assert none.status_code == 401 and "empty" in none.json()["error"]["message"]
        forged = jwt.encode(
            {"aud": "https://graph.microsoft.com", "tid": "x", "exp": 9e9}, "k" * 32
        )
        bad = await http.get(
            f"{GRAPH}/users/ana@contoso.com", headers={"Authorization": f"Bearer {forged}"}
        )
        assert bad.status_code == 401
        graph_token = await token(http, world, "https://graph.microsoft.com")
        refused = await exo(http, graph_token, world, "Get-CASMailbox")
        assert refused.status_code == 401


async def test_graph_permissions_are_enforced() -> None:
    granted = tuple(
        p for p in MAILFIX_GRAPH_PERMISSIONS if p not in ("AuditLog.Read.All", "User.Read.All")
    )
    granted = tuple(p for p in granted if not p.startswith(("Directory.", "User.ReadWrite")))
    async with tenant_world(_scenario(app={"graph_permissions": granted})) as (world, http):
        await graph(world, http)
        users = await http.get(f"{GRAPH}/users/ana@contoso.com")
        assert users.status_code == 403
        assert users.json()["error"] == {
            **users.json()["error"],
            "code": "Authorization_RequestDenied",
            "message": "Insufficient privileges to complete the operation.",
        }
        signins = await http.get(f"{GRAPH}/auditLogs/signIns")
        assert signins.status_code == 403
        assert "AuditLog.Read.All" in signins.json()["error"]["message"]
        # LicenseAssignment.Read.All still reads licence details.
        user_id = tenant_data().users[0].id
        assert (await http.get(f"{GRAPH}/users/{user_id}/licenseDetails")).status_code == 200


async def test_signins_need_a_premium_tenant() -> None:
    async with tenant_world(_scenario(premium=False)) as (world, http):
        await graph(world, http)
        r = await http.get(f"{GRAPH}/auditLogs/signIns")
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "Authentication_RequestFromNonPremiumTenantOrB2CTenant"


async def test_graph_pages_at_two_with_absolute_next_links() -> None:
    async with tenant_world(_scenario()) as (world, http):
        await graph(world, http)
        url: str | None = f"{GRAPH}/subscribedSkus"
        pages: list[list[dict[str, Any]]] = []
        while url:
            body = (await http.get(url)).json()
            pages.append(body["value"])
            url = body.get("@odata.nextLink")
            if url:
                assert url.startswith("https://graph.microsoft.com/v1.0/subscribedSkus?")
        assert [len(p) for p in pages] == [2, 2, 1]
        parts = [s["skuPartNumber"] for page in pages for s in page]
        assert parts == ["ENTERPRISEPACK", "O365_BUSINESS_ESSENTIALS", "O365_BUSINESS",
                         "M365_F1_COMM", "SPE_F1"]  # fmt: skip
        e3 = pages[0][0]
        assert e3["consumedUnits"] == 1 and e3["prepaidUnits"]["enabled"] == 25
        # $top=1 pages smaller; the link keeps the other parameters.
        first = (await http.get(f"{GRAPH}/subscribedSkus", params={"$top": "1"})).json()
        assert len(first["value"]) == 1 and "%24top=1" not in first["@odata.nextLink"]
        assert "$top=1" in first["@odata.nextLink"]


async def test_graph_throttles_then_answers() -> None:
    throttle = Throttle(service="graph", path="/users/", times=2, retry_after=3)
    async with tenant_world(_scenario(throttles=(throttle,))) as (world, http):
        await graph(world, http)
        statuses = []
        for _ in range(3):
            r = await http.get(f"{GRAPH}/users/ana@contoso.com")
            statuses.append((r.status_code, r.headers.get("Retry-After")))
        assert statuses == [(429, "3"), (429, "3"), (200, None)]
        assert (await http.get(f"{GRAPH}/subscribedSkus")).status_code == 200


async def test_graph_licences_and_mailbox_settings_follow_the_licence() -> None:
    e3 = tenant_data().users[0].licenses[0]
    disabled = e3.model_copy(update={"disabled_plans": ("efb87545-963c-4e0d-99df-69c6916d9eb0",)})
    scenario = _scenario(person_fields={"licenses": (disabled,)})
    user_id = scenario.tenant.users[0].id  # type: ignore[union-attr]
    async with tenant_world(scenario) as (world, http):
        await graph(world, http)
        rows = (await http.get(f"{GRAPH}/users/{user_id}/licenseDetails")).json()["value"]
        plans = {p["servicePlanName"]: p for p in rows[0]["servicePlans"]}
        assert rows[0]["skuPartNumber"] == "ENTERPRISEPACK"
        assert plans["EXCHANGE_S_ENTERPRISE"]["provisioningStatus"] == "Disabled"
        assert plans["EXCHANGE_S_ENTERPRISE"]["appliesTo"] == "User"
        assert plans["SHAREPOINTENTERPRISE"]["provisioningStatus"] == "Success"
        settings = await http.get(f"{GRAPH}/users/{user_id}/mailboxSettings")
        assert settings.status_code == 404
        assert settings.json()["error"]["code"] == "MailboxNotEnabledForRESTAPI"
        # assignLicense re-enables the plan; the mailbox then exists (idempotent on repeat).
        body = {"addLicenses": [{"skuId": e3.sku_id, "disabledPlans": []}], "removeLicenses": []}
        for _ in range(2):
            done = await http.post(f"{GRAPH}/users/{user_id}/assignLicense", json=body)
            assert done.status_code == 200 and done.json()["id"] == user_id
        assert world.tenant is not None
        assert sum(w.startswith("assignLicense") for w in world.tenant.writes) == 1
        ok = await http.get(f"{GRAPH}/users/{user_id}/mailboxSettings")
        assert ok.status_code == 200 and ok.json()["userPurpose"] == "user"
        unknown = await http.post(
            f"{GRAPH}/users/{user_id}/assignLicense",
            json={"addLicenses": [{"skuId": "00000000-0000-0000-0000-000000000000"}],
                  "removeLicenses": []},
        )  # fmt: skip
        assert unknown.status_code == 400


async def test_graph_enable_account_and_restore_deleted_user() -> None:
    scenario = _scenario(person_fields={"account_enabled": False})
    user_id = scenario.tenant.users[0].id  # type: ignore[union-attr]
    async with tenant_world(scenario) as (world, http):
        await graph(world, http)
        r = await http.patch(f"{GRAPH}/users/{user_id}", json={"accountEnabled": True})
        assert r.status_code == 204
        now = await http.get(f"{GRAPH}/users/{user_id}", params={"$select": "accountEnabled"})
        assert now.json()["accountEnabled"] is True
    synced = _scenario(person_fields={"account_enabled": False, "synced": True})
    async with tenant_world(synced) as (world, http):
        await graph(world, http)
        r = await http.patch(f"{GRAPH}/users/{user_id}", json={"accountEnabled": True})
        assert r.status_code == 400 and "on-premises mastered" in r.json()["error"]["message"]
    deleted = _scenario(person_fields={"deleted_days_ago": 5})
    async with tenant_world(deleted) as (world, http):
        await graph(world, http)
        assert (await http.get(f"{GRAPH}/users/ana@contoso.com")).status_code == 404
        gone = (
            await http.get(
                f"{GRAPH}/directory/deletedItems/microsoft.graph.user",
                params={"$select": "id,userPrincipalName,deletedDateTime"},
            )
        ).json()["value"]
        assert gone[0]["userPrincipalName"] == user_id.replace("-", "") + "ana@contoso.com"
        assert gone[0]["deletedDateTime"].endswith("Z")
        back = await http.post(f"{GRAPH}/directory/deletedItems/{user_id}/restore")
        assert back.status_code == 200 and back.json()["userPrincipalName"] == "ana@contoso.com"
        assert (await http.get(f"{GRAPH}/users/ana@contoso.com")).status_code == 200
        again = await http.post(f"{GRAPH}/directory/deletedItems/{user_id}/restore")
        assert again.status_code == 404


async def test_graph_groups_roles_policies_and_what_if() -> None:
    scenario = get("ca-excluded-group")
    data = scenario.tenant
    assert data is not None
    user_id = data.users[0].id
    person = data.users[0].model_copy(update={"roles": ("Helpdesk Administrator",)})
    scenario = scenario.model_copy(update={"tenant": data.model_copy(update={"users": (person,)})})
    async with tenant_world(scenario) as (world, http):
        await graph(world, http)
        member_of = (await http.get(f"{GRAPH}/users/{user_id}/transitiveMemberOf")).json()
        names = {r["displayName"] for r in member_of["value"]}
        nxt = member_of.get("@odata.nextLink")
        while nxt:
            page = (await http.get(nxt)).json()
            names |= {r["displayName"] for r in page["value"]}
            nxt = page.get("@odata.nextLink")
        assert names == {"Scanner accounts", "Legacy auth exemptions", "Helpdesk Administrator"}
        group = data.groups[0].id
        members = (await http.get(f"{GRAPH}/groups/{group}/transitiveMembers")).json()["value"]
        assert {m["@odata.type"] for m in members} == {
            "#microsoft.graph.group",
            "#microsoft.graph.user",
        }
        policies = (await http.get(f"{GRAPH}/identity/conditionalAccess/policies")).json()
        policy = policies["value"][0]
        assert policy["conditions"]["clientAppTypes"] == ["exchangeActiveSync", "other"]
        assert policy["grantControls"]["builtInControls"] == ["block"]
        body = {
            "signInIdentity": {"@odata.type": "#microsoft.graph.userSignIn", "userId": user_id},
            "signInContext": {
                "@odata.type": "#microsoft.graph.applicationContext",
                "includeApplications": [EXO_APP_ID],
            },
            "signInConditions": {"clientAppType": "other"},
            "appliedPoliciesOnly": False,
        }
        what_if = await http.post(f"{BETA}/identity/conditionalAccess/evaluate", json=body)
        result = what_if.json()["value"][0]
        assert result["policyApplies"] is False and result["analysisReasons"] == "users"
        v1 = await http.post(f"{GRAPH}/identity/conditionalAccess/evaluate", json=body)
        assert v1.status_code == 400
    async with tenant_world(get("ca-block-legacy")) as (world, http):
        await graph(world, http)
        for client_app, applies in (("other", True), ("browser", False)):
            body["signInConditions"] = {"clientAppType": client_app}
            r = await http.post(f"{BETA}/identity/conditionalAccess/evaluate", json=body)
            assert r.json()["value"][0]["policyApplies"] is applies
        no_scope = _scenario(app={"graph_permissions": ("User.Read.All",)})
    async with tenant_world(no_scope) as (world, http):
        await graph(world, http)
        denied = await http.get(f"{GRAPH}/identity/conditionalAccess/policies")
        assert denied.status_code == 403


async def test_graph_signins_and_service_health_shapes() -> None:
    async with tenant_world(get("ca-block-legacy")) as (world, http):
        await graph(world, http)
        since = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=48)).strftime("%Y-%m-%dT%H:%M:%SZ")
        r = await http.get(
            f"{GRAPH}/auditLogs/signIns",
            params={
                "$filter": f"userPrincipalName eq 'ana@contoso.com' and createdDateTime ge {since}",
                "$top": "50",
            },
        )
        page = r.json()
        first = page["value"][0]
        assert first["status"]["errorCode"] == 53003
        assert first["clientAppUsed"] == "IMAP4"
        assert first["appliedConditionalAccessPolicies"][0]["result"] == "failure"
        assert first["appliedConditionalAccessPolicies"][0]["displayName"] == (
            "Block legacy authentication"
        )
        assert len(page["value"]) == 2 and "@odata.nextLink" in page
        assert page["value"][0]["createdDateTime"] > page["value"][1]["createdDateTime"]
    async with tenant_world(get("service-incident")) as (world, http):
        await graph(world, http)
        issues = (
            await http.get(
                f"{GRAPH}/admin/serviceAnnouncement/issues",
                params={"$filter": "service eq 'Exchange Online' and isResolved eq false"},
            )
        ).json()["value"]
        assert [i["id"] for i in issues] == ["EX912345"]
        assert issues[0]["classification"] == "incident" and issues[0]["isResolved"] is False
        overview = (
            await http.get(
                f"{GRAPH}/admin/serviceAnnouncement/healthOverviews/Exchange Online",
                params={"$expand": "issues"},
            )
        ).json()
        assert (
            overview["status"] == "serviceDegradation" and overview["issues"][0]["id"] == "EX912345"
        )


# ---- the Exchange Online admin API ---------------------------------------------------------------


async def test_exo_cmdlets_shapes_paging_and_errors() -> None:
    others = [
        tenant_data(user=name)
        .users[0]
        .model_copy(update={"licenses": tenant_data().users[0].licenses})
        for name in ("bo", "cy")
    ]
    scenario = _scenario(others=others)
    async with tenant_world(scenario) as (world, http):
        bearer = await token(http, world, "https://outlook.office365.com")
        one = (
            await exo(http, bearer, world, "Get-CASMailbox", {"Identity": "ana@contoso.com"})
        ).json()
        row = one["value"][0]
        for name in ("ActiveSyncEnabled", "ImapEnabled", "PopEnabled", "MAPIEnabled", "EwsEnabled",
                     "OWAEnabled", "OutlookMobileEnabled"):  # fmt: skip
            assert row[name] is True
        assert row["SmtpClientAuthenticationDisabled"] is None
        assert one["@adminapi.warnings"] == []
        # Every mailbox: pages of two; the next link is POSTed again with the same body.
        everyone = await exo(http, bearer, world, "Get-CASMailbox")
        body = everyone.json()
        names = [r["PrimarySmtpAddress"] for r in body["value"]]
        link = body["@odata.nextLink"]
        assert link.startswith("https://outlook.office365.com/adminapi/beta/")
        rest = (await exo(http, bearer, world, "Get-CASMailbox", url=link)).json()
        names += [r["PrimarySmtpAddress"] for r in rest["value"]]
        assert names == ["ana@contoso.com", "bo@contoso.com", "cy@contoso.com"]
        assert "@odata.nextLink" not in rest
        devices = (await exo(http, bearer, world, "Get-MobileDevice", {"Mailbox": "ana"})).json()
        device = devices["value"][0]
        assert device["DeviceAccessState"] == "Allowed"
        assert device["DeviceAccessStateReason"] == "Global"
        assert device["Identity"].startswith("ana\\ExchangeActiveSyncDevices\\iPhone§")
        org = (await exo(http, bearer, world, "Get-ActiveSyncOrganizationSettings")).json()
        assert org["value"][0]["DefaultAccessLevel"] == "Allow"
        transport = (await exo(http, bearer, world, "Get-TransportConfig")).json()
        assert transport["value"][0]["SmtpClientAuthenticationDisabled"] is False
        missing = await exo(http, bearer, world, "Get-CASMailbox", {"Identity": "zed@contoso.com"})
        assert missing.status_code == 404
        error = missing.json()["error"]
        assert "ManagementObjectNotFoundException" in error["message"]
        assert "couldn't be found" in error["details"][0]["message"]
        assert "couldn't be found" in error["innererror"]["internalException"]["message"]
        retired = await exo(http, bearer, world, "Get-ClientAccessRule")
        assert "is not recognized as the name of a cmdlet" in retired.json()["error"]["message"]
        bad_param = await exo(http, bearer, world, "Get-CASMailbox", {"Colour": "blue"})
        assert "parameter name 'Colour'" in bad_param.json()["error"]["message"]


async def test_exo_needs_manage_as_app_and_a_role() -> None:
    async with tenant_world(_scenario(app={"exo_permissions": ()})) as (world, http):
        bearer = await token(http, world, "https://outlook.office365.com")
        assert "roles" not in claims(bearer)
        r = await exo(http, bearer, world, "Get-CASMailbox", {"Identity": "ana@contoso.com"})
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer ")
    async with tenant_world(_scenario(app={"directory_roles": ()})) as (world, http):
        bearer = await token(http, world, "https://outlook.office365.com")
        r = await exo(http, bearer, world, "Get-CASMailbox", {"Identity": "ana@contoso.com"})
        assert "'Get-CASMailbox' is not recognized" in r.json()["error"]["message"]
    async with tenant_world(_scenario(app={"directory_roles": ("Global Reader",)})) as (
        world,
        http,
    ):
        bearer = await token(http, world, "https://outlook.office365.com")
        read = await exo(http, bearer, world, "Get-CASMailbox", {"Identity": "ana@contoso.com"})
        assert read.status_code == 200
        write = await exo(
            http, bearer, world, "Set-CASMailbox", {"Identity": "ana", "ImapEnabled": False}
        )
        assert "'Set-CASMailbox' is not recognized" in write.json()["error"]["message"]


async def test_exo_throttling() -> None:
    scenario = _scenario(
        throttles=(Throttle(service="exo", path="get-mobiledevice", retry_after=2),)
    )
    async with tenant_world(scenario) as (world, http):
        bearer = await token(http, world, "https://outlook.office365.com")
        first = await exo(http, bearer, world, "Get-MobileDevice", {"Mailbox": "ana"})
        assert first.status_code == 429 and first.headers["Retry-After"] == "2"
        assert (await exo(http, bearer, world, "Get-TransportConfig")).status_code == 200
        again = await exo(http, bearer, world, "Get-MobileDevice", {"Mailbox": "ana"})
        assert again.status_code == 200


async def test_set_cas_mailbox_changes_state_and_is_idempotent() -> None:
    async with tenant_world(get("imap-off")) as (world, http):
        bearer = await token(http, world, "https://outlook.office365.com")
        before = await exo(http, bearer, world, "Get-CASMailbox", {"Identity": "ana@contoso.com"})
        assert before.json()["value"][0]["ImapEnabled"] is False
        params = {"Identity": "ana@contoso.com", "ImapEnabled": True}
        first = await exo(http, bearer, world, "Set-CASMailbox", params)
        assert first.status_code == 200 and first.json()["value"] == []
        assert first.json()["@adminapi.warnings"] == []
        second = await exo(http, bearer, world, "Set-CASMailbox", params)
        assert "no settings of 'ana' have been modified" in second.json()["@adminapi.warnings"][0]
        after = await exo(http, bearer, world, "Get-CASMailbox", {"Identity": "ana@contoso.com"})
        assert after.json()["value"][0]["ImapEnabled"] is True
        wrong = await exo(
            http, bearer, world, "Set-CASMailbox", {"Identity": "ana", "PopEnabled": "yes"}
        )
        assert "System.Boolean" in wrong.json()["error"]["message"]
        assert world.tenant is not None and len(world.tenant.writes) == 1


async def test_release_a_quarantined_device_with_a_generic_hashtable() -> None:
    async with tenant_world(get("device-quarantined-global")) as (world, http):
        bearer = await token(http, world, "https://outlook.office365.com")
        device = (await exo(http, bearer, world, "Get-MobileDevice", {"Mailbox": "ana"})).json()
        assert device["value"][0]["DeviceAccessState"] == "Quarantined"
        assert device["value"][0]["DeviceAccessStateReason"] == "Global"
        add = {"@odata.type": "#Exchange.GenericHashTable", "add": IPHONE_ID}
        done = await exo(
            http, bearer, world, "Set-CASMailbox",
            {"Identity": "ana@contoso.com", "ActiveSyncAllowedDeviceIDs": add},
        )  # fmt: skip
        assert done.status_code == 200
        cas = (await exo(http, bearer, world, "Get-CASMailbox", {"Identity": "ana"})).json()
        assert cas["value"][0]["ActiveSyncAllowedDeviceIDs"] == [IPHONE_ID]
        device = (await exo(http, bearer, world, "Get-MobileDevice", {"Mailbox": "ana"})).json()
        assert device["value"][0]["DeviceAccessState"] == "Allowed"
        assert device["value"][0]["DeviceAccessStateReason"] == "Individual"
    async with tenant_world(get("device-blocked-by-rule")) as (world, http):
        bearer = await token(http, world, "https://outlook.office365.com")
        device = (await exo(http, bearer, world, "Get-MobileDevice", {"Mailbox": "ana"})).json()
        assert device["value"][0]["DeviceAccessState"] == "Blocked"
        assert device["value"][0]["DeviceAccessControlRule"] == "iPhone15C2 (DeviceModel)"
        rules = (await exo(http, bearer, world, "Get-ActiveSyncDeviceAccessRule")).json()["value"]
        assert rules[0]["AccessLevel"] == "Block" and rules[0]["Characteristic"] == "DeviceModel"


async def test_hybrid_user_is_a_mail_user_in_exchange_online() -> None:
    async with tenant_world(get("hybrid-on-premises-mailbox")) as (world, http):
        bearer = await token(http, world, "https://outlook.office365.com")
        cas = await exo(http, bearer, world, "Get-CASMailbox", {"Identity": "ana@contoso.com"})
        assert cas.status_code == 404
        recipient = (await exo(http, bearer, world, "Get-Recipient", {"Identity": "ana"})).json()
        assert recipient["value"][0]["RecipientTypeDetails"] == "MailUser"
        user = (await exo(http, bearer, world, "Get-User", {"Identity": "ana"})).json()
        assert user["value"][0]["IsDirSynced"] is True


# ---- sovereign clouds ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cloud", "login", "graph_host", "exo_host"),
    [
        (Cloud.GCCHIGH, "login.microsoftonline.us", "graph.microsoft.us", "outlook.office365.us"),
        (
            Cloud.DOD,
            "login.microsoftonline.us",
            "dod-graph.microsoft.us",
            "outlook-dod.office365.us",
        ),
        (
            Cloud.CHINA,
            "login.chinacloudapi.cn",
            "microsoftgraph.chinacloudapi.cn",
            "partner.outlook.cn",
        ),
    ],
)
async def test_sovereign_clouds_use_their_own_hosts(
    cloud: Cloud, login: str, graph_host: str, exo_host: str
) -> None:
    scenario = get("healthy").model_copy(
        update={
            "cloud": cloud,
            "hosts": tenant(cloud=cloud).hosts,
            "expect": (),
            "tenant": tenant_data(),
        }
    )
    async with tenant_world(scenario) as (_, http):
        tid = tenant_data().tenant_id
        form = {
            "grant_type": "client_credentials",
            "client_id": tenant_data().app.client_id,
            "client_secret": SANDBOX_SECRET,
        }
        r = await http.post(
            f"https://{login}/{tid}/oauth2/v2.0/token",
            data={**form, "scope": f"https://{graph_host}/.default"},
        )
        graph_token = r.json()["access_token"]
        assert claims(graph_token)["aud"] == f"https://{graph_host}"
        me = await http.get(
            f"https://{graph_host}/v1.0/users/ana@contoso.com",
            headers={"Authorization": f"Bearer {graph_token}"},
        )
        assert me.status_code == 200
        worldwide = await http.post(
            f"https://{login}/{tid}/oauth2/v2.0/token",
            data={**form, "scope": "https://graph.microsoft.com/.default"},
        )
        assert worldwide.json()["error_codes"] == [500011]
        r = await http.post(
            f"https://{login}/{tid}/oauth2/v2.0/token",
            data={**form, "scope": f"https://{exo_host}/.default"},
        )
        exo_token = r.json()["access_token"]
        cas = await http.post(
            f"https://{exo_host}/adminapi/beta/{tid}/InvokeCommand",
            json={
                "CmdletInput": {"CmdletName": "Get-CASMailbox", "Parameters": {"Identity": "ana"}}
            },
            headers={"Authorization": f"Bearer {exo_token}"},
        )
        assert cas.status_code == 200 and cas.json()["value"][0]["Name"] == "ana"
        doc = (
            await http.get(f"https://{login}/{tid}/v2.0/.well-known/openid-configuration")
        ).json()
        assert doc["msgraph_host"] == graph_host


# ---- python -m sandbox ---------------------------------------------------------------------------


def test_python_m_sandbox_prints_the_tenant_variables() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "imap-off"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = json.loads(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    env = line["env"]
    data = get("imap-off").tenant
    assert data is not None
    assert env["MAILFIX_TENANT_ID"] == data.tenant_id
    assert env["MAILFIX_CLIENT_ID"] == data.app.client_id
    assert env["MAILFIX_CLIENT_SECRET"] == SANDBOX_SECRET
    assert line["address"] == "ana@contoso.com"
