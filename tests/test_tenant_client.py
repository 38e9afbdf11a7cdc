"""The tenant client over real HTTP: msal on the seam, Graph and the Exchange admin API.

msal's own requests (OpenID configuration, instance discovery, token) go through the seam, so
the address guard and MAILFIX_DNS_SERVERS apply to them as to every check. The sandbox tenant
pages at 2 items and throttles on demand (Retry-After).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from _checkworld import FAST, Probe, checked, custom_https, random_base, scenario
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from pydantic import SecretStr

from checks.cloud import hosts_for
from checks.models import Client
from checks.net.errors import BlockedAddress
from checks.settings import Cloud
from checks.tenant import (
    PermissionMissing,
    TenantAuthFailed,
    TenantClient,
    TenantNotFound,
    TenantUnavailable,
    Throttled,
    auth,
)
from checks.tenant.client import MAX_RETRIES
from sandbox.scenario import Record
from sandbox.tenant.build import person, rsa_self_signed, tenant_data
from sandbox.tenant.models import MAILFIX_GRAPH_PERMISSIONS, MobileDevice, Throttle

TENANT = "6f1b7c2e-0d4a-4e57-9a63-2b8f6c1d9e01"
APP = "0b9d8a31-6c54-4f3e-8d27-a1e5c0f4b2d6"
SECRET = "s3cret~Value.That-Must-Not-Leak_42"
LOGIN = "login.microsoftonline.com"
ANA = "ana@contoso.com"


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


# --- against the sandbox tenant -----------------------------------------------------------------


@asynccontextmanager
async def tenant_world(cloud: Cloud = Cloud.GLOBAL, **fields: Any) -> AsyncIterator[Probe]:
    sc = scenario(cloud=cloud).model_copy(update={"tenant": tenant_data(**fields)})
    async with checked(sc) as probe:
        yield probe


def client_of(probe: Probe, *, deadline: float | None = None, **settings: Any) -> TenantClient:
    s = probe.net.settings.model_copy(update=settings) if settings else probe.net.settings
    return TenantClient(s, probe.net, hosts_for(probe.world.scenario.cloud), deadline=deadline)


def paths(probe: Probe, host: str) -> list[str]:
    return [f"{r.method} {r.path.split('?', 1)[0]}" for r in probe.world.requests(host)]


def others(n: int) -> tuple[Any, ...]:
    return tuple(person(user=f"user{i}", devices=()) for i in range(n))


async def test_graph_paging_at_two_items_follows_next_links_and_is_bounded() -> None:
    async with tenant_world(others=others(4)) as probe:  # ana + 4 = 5 users, pages of 2
        client = client_of(probe)
        users = await client.graph_list("/users", {"$select": "id,userPrincipalName"})
        assert len({u["id"] for u in users}) == 5
        assert len(client.last_requests) == 3
        assert all("$skiptoken=" in r for r in client.last_requests[1:])
        cut = client_of(probe)
        two_pages = await cut.graph_list("/users", {"$select": "id"}, max_pages=2)
        assert len(two_pages) == 4 and len(cut.last_requests) == 2


async def test_exchange_paging_posts_the_same_body_again() -> None:
    phones = tuple(
        MobileDevice(device_id=f"DEV{i:04d}", friendly_name=f"Phone {i}") for i in range(3)
    )
    async with tenant_world(person_fields={"devices": phones}) as probe:
        client = client_of(probe)
        rows = await client.exo("Get-MobileDevice", {"Mailbox": ANA})
        assert [r["DeviceId"] for r in rows] == ["DEV0000", "DEV0001", "DEV0002"]
        seen = probe.world.requests(hosts_for(Cloud.GLOBAL).exo)
        posts = [r for r in seen if r.method == "POST" and "/adminapi/" in r.path]
        assert len(posts) == 2
        assert all(r.headers.get("Authorization") == "Bearer" for r in posts)


async def test_throttled_once_waits_retry_after_then_succeeds() -> None:
    throttle = Throttle(service="graph", path="/users/", times=1, retry_after=1)
    async with tenant_world(throttles=(throttle,)) as probe:
        client = client_of(probe, deadline=time.monotonic() + 20)
        started = time.monotonic()
        user = await client.graph_get(f"/users/{ANA}")
        waited = time.monotonic() - started
    assert user["userPrincipalName"] == ANA
    assert waited >= 1.0
    assert client.last_requests == [f"GET https://graph.microsoft.com/v1.0/users/{ANA}"] * 2


async def test_exchange_503_with_retry_after_then_success() -> None:
    throttle = Throttle(service="exo", path="get-casmailbox", times=1, retry_after=1, status=503)
    async with tenant_world(throttles=(throttle,)) as probe:
        client = client_of(probe, deadline=time.monotonic() + 20)
        rows = await client.exo("Get-CASMailbox", {"Identity": ANA})
    assert rows[0]["ActiveSyncEnabled"] is True
    assert len(client.last_requests) == 2


async def test_throttled_past_the_deadline_gives_up_at_once() -> None:
    throttle = Throttle(service="graph", path="/users/", times=-1, retry_after=30)
    async with tenant_world(throttles=(throttle,)) as probe:
        client = client_of(probe, deadline=time.monotonic() + 5)
        started = time.monotonic()
        with pytest.raises(Throttled) as info:
            await client.graph_get(f"/users/{ANA}")
        elapsed = time.monotonic() - started
    assert elapsed < 3, "it must not sleep towards a Retry-After past the deadline"
    assert info.value.retry_after == 30
    assert "deadline" in str(info.value)
    assert len(client.last_requests) == 1


async def test_throttling_retries_are_bounded() -> None:
    throttle = Throttle(service="graph", path="/users/", times=-1, retry_after=0)
    async with tenant_world(throttles=(throttle,)) as probe:
        client = client_of(probe, deadline=time.monotonic() + 20)
        with pytest.raises(Throttled):
            await client.graph_get(f"/users/{ANA}")
    assert len(client.last_requests) == 1 + MAX_RETRIES


async def test_throttled_token_request_past_the_deadline() -> None:
    throttle = Throttle(service="login", times=1, retry_after=7)
    async with tenant_world(throttles=(throttle,)) as probe:
        client = client_of(probe, deadline=time.monotonic() + 3)
        with pytest.raises(Throttled) as info:
            await client.graph_get(f"/users/{ANA}")
    assert info.value.retry_after == 7
    assert client.last_requests == []


async def test_throttled_token_request_is_waited_out() -> None:
    throttle = Throttle(service="login", times=1, retry_after=1)
    async with tenant_world(throttles=(throttle,)) as probe:
        client = client_of(probe, deadline=time.monotonic() + 20)
        started = time.monotonic()
        user = await client.graph_get(f"/users/{ANA}")
        waited = time.monotonic() - started
        posts = [r for r in probe.world.requests(LOGIN) if r.method == "POST"]
    assert user["userPrincipalName"] == ANA
    assert waited >= 1.0 and len(posts) == 2


async def test_missing_graph_permission_is_named_with_where_to_grant_it() -> None:
    granted = tuple(p for p in MAILFIX_GRAPH_PERMISSIONS if p != "ServiceHealth.Read.All")
    async with tenant_world(app={"graph_permissions": granted}) as probe:
        client = client_of(probe)
        with pytest.raises(PermissionMissing) as info:
            await client.graph_list("/admin/serviceAnnouncement/issues")
    assert info.value.permission == "ServiceHealth.Read.All"
    assert "Grant admin consent" in info.value.grant_where
    assert info.value.code == "Authorization_RequestDenied"
    assert info.value.request.startswith("GET https://graph.microsoft.com/v1.0/admin/")


async def test_exchange_object_not_found() -> None:
    async with tenant_world() as probe:
        client = client_of(probe)
        with pytest.raises(TenantNotFound):
            await client.exo("Get-CASMailbox", {"Identity": "nobody@contoso.com"})


async def test_the_secret_goes_only_into_the_token_request_and_never_into_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # msal's own loggers included
    async with tenant_world() as probe:
        secret = probe.net.settings.client_secret
        assert secret is not None
        value = secret.get_secret_value()
        client = client_of(probe)
        await client.graph_get(f"/users/{ANA}")
        await client.exo("Get-CASMailbox", {"Identity": ANA})
        cloud = hosts_for(Cloud.GLOBAL)
        seen = {h: probe.world.requests(h) for h in (cloud.login, cloud.graph, cloud.exo)}
        report = await diagnose_tenant(probe)
    assert value not in caplog.text
    assert value not in repr(client.last_requests) + repr(client.login_requests)
    for host, requests in seen.items():
        for r in requests:
            assert value not in r.path and value not in repr(r.headers), host
    token_posts = [r for r in seen[cloud.login] if r.method == "POST"]
    assert [r.path for r in token_posts] == [
        f"/{probe.world.scenario.tenant.tenant_id}/oauth2/v2.0/token"  # type: ignore[union-attr]
    ] * 2  # one per resource: Graph and Exchange
    assert all(r.headers.get("Authorization") == "Bearer" for r in seen[cloud.graph])
    assert value not in report


async def diagnose_tenant(probe: Probe) -> str:
    """The whole report of the six checks, as JSON text (what the bot stores)."""
    from checks.modules.tenant import activity, identity, mailbox
    from checks.runner import run_checks

    ctx = probe.context(client=Client.MOBILE)
    checks = [*identity.CHECKS, *mailbox.CHECKS, *activity.CHECKS]
    findings = await run_checks(ctx, checks, deadline=20)
    return json.dumps([f.model_dump(mode="json") for f in findings])


async def test_wrong_secret_is_refused_and_msal_asks_instance_discovery_through_the_seam(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong~secret.value-9"
    async with tenant_world() as probe:
        client = client_of(probe, client_secret=SecretStr(wrong))
        with pytest.raises(TenantAuthFailed) as info:
            await client.graph_get(f"/users/{ANA}")
        login = paths(probe, LOGIN)
    assert info.value.aadsts == 7000215
    assert "client secret is wrong" in str(info.value)
    # msal's own discovery requests went through the seam to the (sandbox) login host.
    assert f"GET /{client.tenant}/v2.0/.well-known/openid-configuration" in login
    assert "GET /common/discovery/instance" in login
    assert wrong not in caplog.text and wrong not in str(info.value)
    # One refusal per diagnosis: the next call does not ask again.
    before = len(probe.world.requests(LOGIN))
    with pytest.raises(TenantAuthFailed):
        await client.graph_get(f"/users/{ANA}")
    assert len(probe.world.requests(LOGIN)) == before


async def test_unknown_app_is_aadsts700016() -> None:
    async with tenant_world() as probe:
        client = client_of(probe, client_id="11111111-2222-3333-4444-555555555555")
        with pytest.raises(TenantAuthFailed) as info:
            await client.graph_get(f"/users/{ANA}")
    assert info.value.aadsts == 700016


async def test_tokens_are_cached_across_diagnoses() -> None:
    async with tenant_world() as probe:
        await client_of(probe).graph_get(f"/users/{ANA}")
        async with probe.world.network() as second_net:  # another diagnosis, its own seam
            second = TenantClient(probe.net.settings, second_net, hosts_for(Cloud.GLOBAL))
            await second.graph_get(f"/users/{ANA}")
        posts = [r for r in probe.world.requests(LOGIN) if r.method == "POST"]
    assert len(posts) == 1
    assert second.login_requests == []


async def test_certificate_credential(tmp_path: Path) -> None:
    key, cert = rsa_self_signed("mailfix app")
    pem = tmp_path / "mailfix.pem"
    pem.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"cert-pass-7"),
        )
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    async with tenant_world(app={"certificates": (der,), "secrets": ()}) as probe:
        client = client_of(
            probe,
            client_secret=None,
            client_certificate=pem,
            client_certificate_password=SecretStr("cert-pass-7"),
        )
        user = await client.graph_get(f"/users/{ANA}")
        rows = await client.exo("Get-CASMailbox", {"Identity": ANA})
    assert user["userPrincipalName"] == ANA and rows


@pytest.mark.parametrize(
    ("cloud", "login", "graph", "exo"),
    [
        (Cloud.GCC, "login.microsoftonline.com", "graph.microsoft.com", "outlook.office365.com"),
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
async def test_each_cloud_uses_its_own_hosts_and_audiences(
    cloud: Cloud, login: str, graph: str, exo: str
) -> None:
    async with tenant_world(cloud=cloud) as probe:
        client = client_of(probe)
        await client.graph_get(f"/users/{ANA}")
        await client.exo("Get-CASMailbox", {"Identity": ANA})
        seen = paths(probe, login)
    assert client.last_requests[0].startswith(f"GET https://{graph}/v1.0/users/")
    assert client.last_requests[1].startswith(f"POST https://{exo}/adminapi/beta/")
    # One token per audience (the sandbox refuses a Graph token at Exchange and the reverse).
    assert seen.count(f"POST /{client.tenant}/oauth2/v2.0/token") == 2


async def test_a_cancelled_diagnosis_releases_msal_and_sends_nothing_more() -> None:
    # The login host answers after 1.5 s; the diagnosis gives up after 0.3 s. The worker thread
    # is released (its bridged request cancelled) and msal never goes on to the token request.
    sc = scenario(microsoft={"login": {"latency_ms": 1500}}).model_copy(
        update={"tenant": tenant_data()}
    )
    async with checked(sc) as probe:
        client = client_of(probe)
        task = asyncio.create_task(client.graph_get(f"/users/{ANA}"))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 0.5
        await asyncio.sleep(2.5)  # long enough for the slow answer and a token request
        login = paths(probe, LOGIN)
    assert not any(p.startswith("POST ") for p in login), login
    assert client.last_requests == []


async def test_a_token_graph_refuses_is_fetched_again_once() -> None:
    # A token the resource no longer accepts (revoked, rotated keys): 401, then a fresh token.
    async with tenant_world() as probe:
        client = client_of(probe)
        stale = auth.Token("eyJ0eXAiOiJKV1QifQ.e30.c3RhbGU", time.monotonic() + 3600, ())
        client._tokens[hosts_for(Cloud.GLOBAL).graph_scope] = stale
        user = await client.graph_get(f"/users/{ANA}")
        posts = [r for r in probe.world.requests(LOGIN) if r.method == "POST"]
    assert user["userPrincipalName"] == ANA
    assert len(client.last_requests) == 2 and len(posts) == 1


async def test_concurrent_diagnoses_share_one_token_request() -> None:
    async with tenant_world() as probe:
        clients = [client_of(probe) for _ in range(8)]
        users = await asyncio.gather(*(c.graph_get(f"/users/{ANA}") for c in clients))
        posts = [r for r in probe.world.requests(LOGIN) if r.method == "POST"]
    assert {u["userPrincipalName"] for u in users} == {ANA}
    assert len(posts) == 1


async def test_a_refused_token_stays_the_news_when_instance_discovery_fails_too() -> None:
    # msal asks instance discovery after a refused token request. Here that fails (500): the
    # admin must still read "wrong secret", not "the sign-in service is down". A login host of
    # our own, because the sandbox's discovery never fails.
    base = random_base()
    ip = f"{base}.200"

    async def login(request: web.Request) -> web.Response:
        if request.path.endswith("/openid-configuration"):
            root = f"https://{LOGIN}/{TENANT}"
            return web.json_response(
                {
                    "issuer": f"{root}/v2.0",
                    "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{root}/oauth2/v2.0/token",
                }
            )
        if request.method == "POST":
            return web.json_response(
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.",
                    "error_codes": [7000215],
                },
                status=401,
            )
        return web.Response(status=500, text="discovery is down")

    sc = scenario(with_microsoft=False, records=[Record(name=LOGIN, rdtype="A", value=ip)])
    async with (
        custom_https(ip, [LOGIN], login) as port,
        checked(
            sc,
            base=base,
            extra_ports={(ip, 443): port},
            tenant_id=TENANT,
            client_id=APP,
            client_secret=SECRET,
        ) as probe,
    ):
        client = client_of(probe)
        with pytest.raises(TenantAuthFailed) as info:
            await client.graph_get(f"/users/{ANA}")
    assert info.value.aadsts == 7000215
