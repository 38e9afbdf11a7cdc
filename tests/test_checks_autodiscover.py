"""autodiscover.v1 and autodiscover.v2 over real DNS, TLS and HTTP on loopback.

Worlds come from the sandbox (catalogue scenarios, or `_checkworld.scenario` tweaks); answers
no sandbox role plays (POX error codes, redirect chains, loops) come from small aiohttp handlers
served with sandbox-CA certificates on addresses of the world's own loopback block.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from _checkworld import Handler, Probe, checked, custom_https, random_base, scenario
from aiohttp import web

from checks.cloud import hosts_for
from checks.models import Client, Finding, Status, Step
from checks.modules import _pox, autodiscover
from checks.modules.autodiscover import ABANDONED, EXPECTED_O365, GRACE, UNFINISHED
from checks.settings import Cloud
from sandbox.ca import CertKind
from sandbox.catalogue import get
from sandbox.dns_server import DnsFaultKind
from sandbox.scenario import (
    CertSpec,
    DnsFault,
    Fault,
    Host,
    Listener,
    Protocol,
    Record,
    microsoft_cert,
    user_mailbox,
    website_host,
)
from sandbox.services.configs import OnPremConfig
from sandbox.world import World

V1, V2 = autodiscover.AUTODISCOVER_V1, autodiscover.AUTODISCOVER_V2
NS = "http://schemas.microsoft.com/exchange/autodiscover"
AD_HOST = "autodiscover.contoso.com"
POX_S = "https://autodiscover-s.outlook.com/autodiscover/autodiscover.xml"


# ---- helpers ---------------------------------------------------------------------------------


def headers(finding: Finding) -> list[Step]:
    """The method header steps of a v1 trace, in order."""
    return [s for s in finding.steps if s.name.startswith(("Method ", "Restart "))]


def method(finding: Finding, number: int) -> dict[str, Any]:
    found: dict[str, Any] = finding.evidence["methods"][number - 1]
    assert found["method"] == number
    return found


def assert_contract(finding: Finding) -> None:
    """What every finding of these checks keeps (the house style other checks follow too)."""
    assert finding.summary.endswith("."), finding.summary
    assert "\n" not in finding.summary
    if finding.status in (Status.FAIL, Status.WARN):
        assert finding.next_steps and all(s.strip() for s in finding.next_steps)


async def run(probe: Probe, check: Any, **kw: Any) -> Finding:
    finding = await probe.run(check, **kw)
    assert_contract(finding)
    return finding


async def run_world(scenario_id: str, client: Client = Client.OUTLOOK) -> Finding:
    sc = get(scenario_id)
    async with World(sc) as world, world.network() as net:
        probe = Probe(world, net)
        return await run(probe, V1, client=client)


def pox_xml(inner: str, provider: str = "outlook/responseschema/2006a") -> str:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="{NS}/responseschema/2006">'
        f'<Response xmlns="{NS}/{provider}">{inner}</Response></Autodiscover>'
    )


def error_xml(code: int) -> str:
    # Error form: the inner Response in the *base* namespace (reference §2.5).
    return (
        f'<Autodiscover xmlns="{NS}/responseschema/2006"><Response><Error Time="1" Id="2">'
        f"<ErrorCode>{code}</ErrorCode><Message>boom</Message><DebugData/></Error>"
        "</Response></Autodiscover>"
    )


def account(action: str, extra: str = "") -> str:
    return pox_xml(
        f"<Account><AccountType>email</AccountType><Action>{action}</Action>{extra}</Account>"
    )


SETTINGS = account(
    "settings",
    "<Protocol><Type>EXPR</Type><Server>mail.contoso.com</Server>"
    "<EwsUrl>https://mail.contoso.com/EWS/Exchange.asmx</EwsUrl></Protocol>",
)


@asynccontextmanager
async def custom_http(ip: str, handler: Handler) -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, ip, 0)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


@asynccontextmanager
async def world_with(
    https: Mapping[str, Handler] | None = None,
    *,
    http: Mapping[str, Handler] | None = None,
    certs: Mapping[str, list[str]] | None = None,
    records: tuple[Record, ...] = (),
    **kw: Any,
) -> AsyncIterator[Probe]:
    """A `_checkworld.scenario` world plus custom HTTPS/HTTP handlers, each on its own address
    of the world's block with an A record for its name. `certs` overrides a host's cert names."""
    base = random_base()
    names = sorted({*(https or {}), *(http or {})})
    ips = {name: f"{base}.{200 + i}" for i, name in enumerate(names)}
    extra = tuple(Record(name=n, rdtype="A", value=ip) for n, ip in ips.items())
    sc = scenario(records=(*extra, *records), **kw)
    async with AsyncExitStack() as stack:
        ports: dict[tuple[str, int], int] = {}
        for name, handler in (https or {}).items():
            cert_names = (certs or {}).get(name, [name])
            port = await stack.enter_async_context(custom_https(ips[name], cert_names, handler))
            ports[(ips[name], 443)] = port
        for name, handler in (http or {}).items():
            port = await stack.enter_async_context(custom_http(ips[name], handler))
            ports[(ips[name], 80)] = port
        probe = await stack.enter_async_context(checked(sc, base=base, extra_ports=ports))
        yield probe


# ---- the normal Office 365 path -------------------------------------------------------------


async def test_office365_path_passes_with_expected_failures_marked() -> None:
    f = await run_world("healthy")
    assert f.status is Status.PASS
    assert "normal Office 365 path" in f.summary
    h = headers(f)
    assert [s.status for s in h] == [Status.FAIL, Status.FAIL, Status.PASS, Status.SKIP]
    assert h[0].detail.split(": ", 1)[1].startswith(EXPECTED_O365)  # root: HTTP 404
    assert EXPECTED_O365 + "Microsoft's server" in h[1].detail  # Microsoft cert, not ours
    failing = [s for s in f.steps if s.status is Status.FAIL and not s.name.startswith("Method")]
    assert failing and all(s.detail.startswith(EXPECTED_O365) for s in failing)
    assert "not needed: method 3 already worked" in h[3].detail
    ev = f.evidence
    assert ev["endpoint"] == POX_S and ev["method_used"] == 3 and ev["office365"] is True
    assert ev["expected_failures"] == [1, 2]
    assert method(f, 2)["certificate_problem"] == {
        "host": AD_HOST,
        "reason": "hostname",
        "owner": "microsoft",
    }
    m3 = method(f, 3)
    assert [(r["method"], r["status"]) for r in m3["requests"]] == [("GET", 302), ("POST", 401)]
    assert m3["requests"][0]["location"] == POX_S
    assert "Microsoft Corporation" in m3["certificate"]["subject"]
    assert m3["certificate"]["not_after"]


async def test_mobile_uses_the_mobilesync_provider_and_escapes_the_address() -> None:
    mobile_settings = pox_xml(
        "<Action><Settings><Server><Type>MobileSync</Type>"
        "<Url>https://mail.contoso.com/Microsoft-Server-ActiveSync</Url></Server></Settings>"
        "</Action>",
        "mobilesync/responseschema/2006",
    )
    handler = reply(mobile_settings)
    async with world_with({AD_HOST: handler}, autodiscover=None) as probe:
        f = await run(probe, V1, client=Client.MOBILE, address="a&b@contoso.com")
    bodies = [b for b in _SEEN if b]
    assert f.status is Status.PASS and f.evidence["method_used"] == 2
    assert f.evidence["provider"] == "mobilesync"
    body = bodies[0].decode()
    assert f"{NS}/mobilesync/requestschema/2006" in body
    assert "<EMailAddress>a&amp;b@contoso.com</EMailAddress>" in body
    assert f"{NS}/mobilesync/responseschema/2006" in body


_SEEN: list[bytes] = []


@pytest.fixture(autouse=True)
def _clear_seen() -> None:
    _SEEN.clear()


def reply(body: str = "", status: int = 200, extra: Mapping[str, str] | None = None) -> Handler:
    """A handler answering `body`; it keeps every request body in `_SEEN`."""

    async def handle(request: web.Request) -> web.StreamResponse:
        _SEEN.append(await request.read())
        return web.Response(
            status=status, text=body, content_type="text/xml", headers=dict(extra or {})
        )

    return handle


async def test_outlook_request_body_uses_the_outlook_provider() -> None:
    async with world_with({AD_HOST: reply(SETTINGS)}, autodiscover=None) as probe:
        f = await run(probe, V1, client=Client.OUTLOOK)
    assert f.status is Status.PASS
    assert f.evidence["endpoint"] == f"https://{AD_HOST}/autodiscover/autodiscover.xml"
    assert f.evidence["office365"] is False
    body = _SEEN[0].decode()
    assert f"{NS}/outlook/requestschema/2006" in body and "ana@contoso.com" in body
    assert f"{NS}/outlook/responseschema/2006a" in body


# ---- failures and warnings ------------------------------------------------------------------


async def test_no_autodiscover_record_fails_by_every_method() -> None:
    f = await run_world("autodiscover-cname-missing")
    assert f.status is Status.FAIL
    assert "couldn't be contacted successfully by any method" in f.summary
    assert [s.status for s in headers(f)] == [Status.FAIL] * 4
    assert not any(EXPECTED_O365 in s.detail for s in f.steps)
    assert method(f, 2)["fail"] == "dns-missing" and method(f, 3)["fail"] == "dns-missing"
    assert method(f, 4)["fail"] == "no-srv"
    assert any("CNAME autodiscover.outlook.com" in s for s in f.next_steps)
    assert f.evidence["endpoint"] is None


async def test_root_domain_hijack_warns() -> None:
    f = await run_world("autodiscover-root-hijack")
    assert f.status is Status.WARN
    assert "KB 3049615" in f.summary
    assert f.evidence["root_domain_hijack"] is True
    assert f.evidence["hijack_urls"] == ["https://contoso.com/autodiscover/autodiscover.xml"]
    m1 = method(f, 1)
    assert m1["fail"] == "hijack" and m1["protocol_types"] == ["IMAP", "SMTP"]
    assert "Apache" in m1["detail"]
    assert f.evidence["endpoint"] == POX_S  # it still works further down


async def test_a_soft_404_page_at_the_root_is_no_hijack() -> None:
    # Only an Autodiscover-shaped answer is KB 3049615; Outlook moves on from any other 200.
    page = reply("<html><body>Page not found</body></html>")
    async with world_with({"contoso.com": page}, website=None) as probe:
        f = await run(probe, V1)
    assert f.status is Status.PASS, f.summary
    assert f.evidence["root_domain_hijack"] is False and f.evidence["hijack_urls"] == []
    m1 = method(f, 1)
    assert m1["outcome"] == "failed" and m1["fail"] == "not-autodiscover"
    assert "not an Autodiscover answer" in m1["detail"]


async def test_customer_certificate_on_the_root_domain_warns() -> None:
    f = await run_world("autodiscover-root-cert-expired")
    assert f.status is Status.WARN
    assert f.evidence["customer_certificate_problems"] == [
        {"host": "contoso.com", "reason": "expired", "owner": "customer"}
    ]
    assert method(f, 1)["certificate"]["subject"]
    assert "certificate warning" in method(f, 1)["detail"]


async def test_customer_autodiscover_host_with_expired_certificate_warns() -> None:
    f = await run_world("autodiscover-cert-expired")
    assert f.status is Status.WARN
    assert f.evidence["customer_certificate_problems"][0]["host"] == AD_HOST
    assert f.evidence["method_used"] == 3


async def test_microsoft_endpoint_refused_fails() -> None:
    f = await run_world("autodiscover-s-blocked")
    assert f.status is Status.FAIL
    m3 = method(f, 3)
    assert m3["fail"] == "refused"
    names = [s.name for s in f.steps if s.status is Status.FAIL]
    assert "3.5 Connect to autodiscover-s.outlook.com:443" in names


async def test_tls_inspection_on_microsoft_endpoint_fails_with_evidence() -> None:
    inspected = CertSpec(
        kind=CertKind.UNTRUSTED,
        names=microsoft_cert(Cloud.GLOBAL).names,
        organization="Microsoft Corporation",
    )
    sc = scenario(microsoft={"autodiscover_s": {"cert": inspected}})
    async with checked(sc) as probe:
        f = await run(probe, V1)
    assert f.status is Status.FAIL
    problems = f.evidence["microsoft_certificate_problems"]
    assert problems == [
        {"host": "autodiscover-s.outlook.com", "reason": "untrusted", "owner": "microsoft"}
    ]
    assert any("TLS inspection" in s for s in f.next_steps)


async def test_dns_failure_is_an_error() -> None:
    faults = [
        DnsFault(name=n, kind=DnsFaultKind.SERVFAIL)
        for n in ("contoso.com", AD_HOST, "_autodiscover._tcp.contoso.com")
    ]
    async with checked(scenario(dns_faults=faults)) as probe:
        f = await run(probe, V1)
    assert f.status is Status.ERROR
    assert f.evidence["problem"] == "dns-failure"
    assert method(f, 2)["fail"] == "dns-error"


async def test_401_without_challenge_is_not_an_endpoint() -> None:
    async with world_with({AD_HOST: reply("", status=401)}, autodiscover=None) as probe:
        f = await run(probe, V1)
    assert f.status is Status.FAIL
    assert method(f, 2)["fail"] == "no-challenge"


async def test_401_with_challenge_is_a_genuine_endpoint() -> None:
    challenge = {"WWW-Authenticate": 'Negotiate, Basic realm="x, y"'}
    handler = reply("", status=401, extra=challenge)
    async with world_with({AD_HOST: handler}, autodiscover=None) as probe:
        f = await run(probe, V1)
    assert f.status is Status.PASS and f.evidence["method_used"] == 2
    post = next(s for s in f.steps if s.name.startswith("2.") and "POST" in s.name)
    assert post.detail == "HTTP 401 with a sign-in challenge (Negotiate, Basic)"


async def test_other_status_goes_on_to_the_next_method() -> None:
    # autodiscover.<domain> answers 500; the SRV record leads to a genuine endpoint.
    srv = Record(
        name="_autodiscover._tcp.contoso.com", rdtype="SRV", value="0 0 443 ex.contoso.com."
    )
    handlers = {
        AD_HOST: reply("oops", status=500),
        "ex.contoso.com": reply("", status=401, extra={"WWW-Authenticate": "Basic"}),
    }
    async with world_with(handlers, autodiscover=None, records=(srv,)) as probe:
        f = await run(probe, V1)
    assert f.status is Status.PASS
    assert method(f, 2)["fail"] == "http-status" and method(f, 2)["status_code"] == 500
    assert f.evidence["method_used"] == 4
    assert f.evidence["endpoint"] == "https://ex.contoso.com/autodiscover/autodiscover.xml"


async def test_srv_picks_port_443_and_the_best_priority() -> None:
    records = (
        Record(
            name="_autodiscover._tcp.contoso.com", rdtype="SRV", value="0 0 80 bad.contoso.com."
        ),
        Record(
            name="_autodiscover._tcp.contoso.com", rdtype="SRV", value="10 5 443 dead.contoso.com."
        ),
        Record(
            name="_autodiscover._tcp.contoso.com", rdtype="SRV", value="5 1 443 low.contoso.com."
        ),
        Record(
            name="_autodiscover._tcp.contoso.com", rdtype="SRV", value="5 9 443 ex.contoso.com."
        ),
    )
    handlers = {
        "ex.contoso.com": reply(SETTINGS),
        "low.contoso.com": reply("", status=404),
        "bad.contoso.com": reply("", status=404),
    }
    async with world_with(handlers, autodiscover=None, records=records) as probe:
        f = await run(probe, V1)
    assert f.status is Status.PASS and f.evidence["method_used"] == 4
    assert method(f, 4)["url"] == "https://ex.contoso.com/autodiscover/autodiscover.xml"
    lookup = next(s for s in f.steps if s.name.startswith("4.1"))
    assert lookup.detail == "ex.contoso.com:443 (priority 5, weight 9)"


async def test_srv_without_port_443_is_ignored() -> None:
    srv = Record(
        name="_autodiscover._tcp.contoso.com", rdtype="SRV", value="0 0 8443 ex.contoso.com."
    )
    async with world_with(
        {"ex.contoso.com": reply(SETTINGS)}, autodiscover=None, records=(srv,)
    ) as p:
        f = await run(p, V1)
    assert f.status is Status.FAIL
    assert method(f, 4)["fail"] == "no-srv" and "none on port 443" in method(f, 4)["detail"]


# ---- POX answers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        (500, "the email address can't be found"),
        (501, "no configuration"),
        (600, "invalid request"),
        (601, "provider (response schema) is not available"),
        (602, "configuration has errors"),
        (603, "internal server error"),
    ],
)
async def test_pox_error_codes_are_named(code: int, meaning: str) -> None:
    async with world_with({AD_HOST: reply(error_xml(code))}, autodiscover=None) as probe:
        f = await run(probe, V1)
    assert f.status is Status.FAIL
    assert f"error {code}" in f.summary and meaning in f.summary
    assert f.evidence["pox_error"]["code"] == str(code)
    assert f.evidence["pox_error"]["message"] == "boom"


async def test_mobilesync_error_form_is_read() -> None:
    body = pox_xml(
        "<Action><Error><Status>2</Status><Message>Cannot find mobile mailbox</Message>"
        "<DebugData/><ErrorCode>600</ErrorCode></Error></Action>",
        "mobilesync/responseschema/2006",
    )
    async with world_with({AD_HOST: reply(body)}, autodiscover=None) as probe:
        f = await run(probe, V1, client=Client.MOBILE)
    assert f.status is Status.FAIL and f.evidence["pox_error"]["code"] == "600"


async def test_redirect_url_chain_is_followed() -> None:
    hop = "https://hop.contoso.com/autodiscover/autodiscover.xml"
    handlers = {
        AD_HOST: reply(account("redirectUrl", f"<RedirectUrl>{hop}</RedirectUrl>")),
        "hop.contoso.com": reply("", status=302, extra={"Location": POX_S}),
    }
    async with world_with(handlers, autodiscover=None) as probe:
        f = await run(probe, V1)
    assert f.status is Status.PASS
    assert f.evidence["endpoint"] == POX_S and f.evidence["office365"] is True
    statuses = [r["status"] for r in method(f, 2)["requests"]]
    assert statuses == [200, 302, 401]
    assert any("Action redirectUrl to " + hop in s.detail for s in f.steps)


async def test_redirect_loop_stops_after_ten() -> None:
    loop_url = f"https://{AD_HOST}/autodiscover/autodiscover.xml"
    handler = reply(account("redirectUrl", f"<RedirectUrl>{loop_url}</RedirectUrl>"))
    async with world_with({AD_HOST: handler}, autodiscover=None) as probe:
        f = await run(probe, V1)
    assert f.status is Status.FAIL
    assert method(f, 2)["fail"] == "too-many-redirects"
    assert len(_SEEN) == 11  # the first POST and ten redirects


async def test_redirect_to_plain_http_is_refused() -> None:
    handler = reply(account("redirectUrl", "<RedirectUrl>http://x.contoso.com/a</RedirectUrl>"))
    async with world_with({AD_HOST: handler}, autodiscover=None) as probe:
        f = await run(probe, V1)
    assert method(f, 2)["fail"] == "bad-redirect" and "not HTTPS" in method(f, 2)["detail"]


async def test_http_redirect_method_refuses_a_plain_http_location() -> None:
    async def redirect(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": "http://evil.example.net/a.xml"})

    async with world_with(http={AD_HOST: redirect}, autodiscover=None) as probe:
        f = await run(probe, V1)
    m3 = method(f, 3)
    assert m3["fail"] == "bad-redirect" and m3["requests"][0]["status"] == 302


async def test_http_redirect_method_needs_a_redirect() -> None:
    async with world_with(http={AD_HOST: reply("hello")}, autodiscover=None) as probe:
        f = await run(probe, V1)
    assert method(f, 3)["fail"] == "http-status"
    assert "only a redirect is useful" in method(f, 3)["detail"]


async def test_redirect_addr_restarts_discovery_for_the_new_address() -> None:
    new = "ana@contoso.mail.onmicrosoft.com"
    cname = Record(
        name="autodiscover.contoso.mail.onmicrosoft.com",
        rdtype="CNAME",
        value="autodiscover.outlook.com",
    )
    handler = reply(account("redirectAddr", f"<RedirectAddr>{new}</RedirectAddr>"))
    async with world_with({AD_HOST: handler}, autodiscover=None, records=(cname,)) as probe:
        f = await run(probe, V1)
    assert f.status is Status.PASS, f.summary
    assert f.evidence["redirect_addresses"] == [new]
    assert f.evidence["endpoint"] == POX_S
    restart = next(s for s in f.steps if s.name.startswith("Restart 1: discovery"))
    assert new in restart.detail
    assert any(
        s.name.startswith("Restart 1, method 3") and s.status is Status.PASS for s in f.steps
    )


async def test_redirect_addr_to_the_same_address_is_a_loop() -> None:
    handler = reply(account("redirectAddr", "<RedirectAddr>ANA@contoso.com</RedirectAddr>"))
    async with world_with({AD_HOST: handler}, autodiscover=None) as probe:
        f = await run(probe, V1)
    assert f.status is Status.FAIL and "already tried" in f.summary


# ---- racing ----------------------------------------------------------------------------------


async def test_black_holed_root_domain_does_not_hold_the_result() -> None:
    sc = get("root-blackhole")
    async with World(sc) as world, world.network() as net:
        started = time.monotonic()
        f = await run(Probe(world, net), V1)
        elapsed = time.monotonic() - started
    assert f.status is Status.PASS
    h = headers(f)
    assert h[0].status is Status.WARN and h[0].detail.endswith(ABANDONED)
    assert method(f, 1)["outcome"] == "abandoned"
    # A black hole would hold a sequential client for the seam's connect timeout (5 s).
    assert elapsed < 1.0 + GRACE, elapsed


async def test_a_slow_root_domain_within_the_grace_is_recorded() -> None:
    site = website_host("contoso.com", latency_ms=25)
    async with checked(scenario(website=site)) as probe:
        f = await run(probe, V1)
    assert f.status is Status.PASS
    assert method(f, 1)["outcome"] == "failed" and method(f, 1)["status_code"] == 404
    assert headers(f)[0].detail.endswith(EXPECTED_O365 + "HTTP 404")


async def test_methods_race_wall_close_to_the_slowest_needed() -> None:
    # The root website and the customer's own Autodiscover server are both slow; Outlook's
    # order needs both (method 1 fails, method 2 works). Sequential = sum; racing = max.
    latency = 120
    onprem = Host(
        names=(AD_HOST,),
        listeners=(
            Listener(
                port=443,
                protocol=Protocol.HTTPS,
                app=OnPremConfig(
                    host=AD_HOST,
                    mail_host="mail.contoso.com",
                    mailboxes=(user_mailbox("ana", "contoso.com", location="onprem"),),
                ),
            ),
        ),
        cert=CertSpec(names=(AD_HOST,)),
        latency_ms=latency,
    )
    site = website_host("contoso.com", latency_ms=latency)
    sc = scenario(autodiscover=None, website=site, hosts=(onprem,))
    async with World(sc) as world:
        timings = []
        for url in (
            "https://contoso.com/autodiscover/autodiscover.xml",
            f"https://{AD_HOST}/autodiscover/autodiscover.xml",
        ):
            async with world.network() as net:  # fresh: no cached DNS or connections
                t0 = time.monotonic()
                await net.request("POST", url, content=b"<x/>", follow_redirects=False)
                timings.append(time.monotonic() - t0)
        async with world.network() as net:
            t0 = time.monotonic()
            f = await run(Probe(world, net), V1)
            wall = time.monotonic() - t0
    assert f.status is Status.PASS and f.evidence["method_used"] == 2
    assert method(f, 1)["outcome"] == "failed"  # waited for, not abandoned
    assert wall < sum(timings), (wall, timings)
    assert wall <= 1.2 * max(timings) + 0.05, (wall, timings)


async def test_methods_still_silent_at_the_time_limit_are_recorded() -> None:
    silent = Host(
        names=(AD_HOST,),
        listeners=(
            Listener(port=443, protocol=Protocol.HTTPS, fault=Fault.BLACK_HOLE),
            Listener(port=80, protocol=Protocol.HTTP, fault=Fault.BLACK_HOLE),
        ),
    )
    site = website_host("contoso.com", fault=Fault.BLACK_HOLE)
    sc = scenario(autodiscover=None, website=site, hosts=(silent,))
    short = dataclasses.replace(V1, timeout=2.0)  # budget: 1 s after the margin
    async with checked(sc) as probe:
        started = time.monotonic()
        f = await probe.run(short)
        elapsed = time.monotonic() - started
    assert_contract(f)
    assert f.status is Status.FAIL
    # Silent to the end: either still pending when the budget ran out, or its own request
    # timed out at that same moment (which of the two wins that race is not the point).
    for n in (1, 2, 3):
        assert method(f, n)["fail"] == "no-answer", method(f, n)
        assert method(f, n)["outcome"] in ("timed-out", "failed"), method(f, n)
    assert method(f, 4)["fail"] == "no-srv"
    assert elapsed < 1.8, elapsed


# ---- autodiscover.v2 ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "protocols"),
    [
        (Client.OUTLOOK, ["AutodiscoverV1", "Ews"]),
        (Client.MOBILE, ["ActiveSync"]),
        (Client.ALL, ["ActiveSync", "AutodiscoverV1"]),
    ],
)
async def test_v2_asks_the_client_protocols(client: Client, protocols: list[str]) -> None:
    async with checked(scenario()) as probe:
        f = await run(probe, V2, client=client)
        seen = probe.world.requests("outlook.office365.com")
    assert f.status is Status.PASS
    assert [p["protocol"] for p in f.evidence["protocols"]] == protocols
    asked = sorted(r.path for r in seen if "autodiscover.json" in r.path)
    assert asked == sorted(
        f"/autodiscover/autodiscover.json/v1.0/ana@contoso.com?Protocol={p}" for p in protocols
    )
    for p in f.evidence["protocols"]:
        assert p["status_code"] == 200 and p["returned_url"].startswith("https://")
    assert f.evidence["hybrid"] is False


async def test_v2_hybrid_302_is_reported_not_followed() -> None:
    sc = get("hybrid-onprem-mailbox")
    async with World(sc) as world, world.network() as net:
        f = await run(Probe(world, net), V2, client=Client.MOBILE)
        onprem_seen = world.requests("mail.contoso.com")
    assert f.status is Status.PASS
    assert "Hybrid" in f.summary and "on-premises" in f.summary
    assert f.evidence["hybrid"] is True
    location = f.evidence["locations"][0]
    assert location.startswith("https://autodiscover.contoso.com/autodiscover/autodiscover.json")
    assert f.evidence["protocols"][0]["status_code"] == 302
    assert not any("autodiscover.json" in r.path for r in onprem_seen)


async def test_v2_garbage_fails() -> None:
    f = await _v2_in("autodiscover-v2-garbage")
    assert f.status is Status.FAIL
    assert "not an Autodiscover JSON answer" in f.summary


async def test_v2_503_fails() -> None:
    f = await _v2_in("activesync-503", Client.MOBILE)
    assert f.status is Status.FAIL and "HTTP 503" in f.summary
    assert f.evidence["protocols"][0]["status_code"] == 503


async def test_v2_tls_inspection_fails() -> None:
    f = await _v2_in("tls-inspection")
    assert f.status is Status.FAIL
    assert {p["problem"] for p in f.evidence["protocols"]} == {"tls-inspection"}
    assert f.evidence["microsoft_certificate_problems"]


async def test_v2_unreachable_fails() -> None:
    sc = scenario(microsoft={"exo_https": {"fault": Fault.REFUSED}})
    async with checked(sc) as probe:
        f = await run(probe, V2, client=Client.MOBILE)
    assert f.status is Status.FAIL
    assert f.evidence["protocols"][0]["problem"] == "connect-failed"


async def test_v2_dns_failure_is_an_error() -> None:
    fault = DnsFault(name="outlook.office365.com", kind=DnsFaultKind.SERVFAIL)
    async with checked(scenario(dns_faults=[fault])) as probe:
        f = await run(probe, V2, client=Client.MOBILE)
    assert f.status is Status.ERROR
    assert f.evidence["protocols"][0]["problem"] == "dns-servfail"


async def _v2_in(scenario_id: str, client: Client = Client.OUTLOOK) -> Finding:
    sc = get(scenario_id)
    async with World(sc) as world, world.network() as net:
        return await run(Probe(world, net), V2, client=client)


async def test_v2_invalid_protocol_400_fails_with_the_error_code() -> None:
    async def exo(request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"ErrorCode": "InvalidProtocol", "ErrorMessage": "The given protocol value is invalid"},
            status=400,
        )

    async with world_with({"outlook.office365.com": exo}, with_microsoft=False) as probe:
        f = await run(probe, V2, client=Client.MOBILE)
    assert f.status is Status.FAIL
    assert "HTTP 400 (InvalidProtocol: The given protocol value is invalid)" in f.summary


async def test_v2_follows_a_redirect_inside_microsoft() -> None:
    calls: list[str] = []

    async def exo(request: web.Request) -> web.StreamResponse:
        calls.append(request.path_qs)
        if "Email=" not in request.path_qs:
            target = (
                "https://outlook.office365.com/autodiscover/autodiscover.json"
                "?Email=primary@contoso.com&Protocol=ActiveSync&RedirectCount=1"
            )
            return web.Response(status=302, headers={"Location": target})
        return web.json_response(
            {
                "Protocol": "ActiveSync",
                "Url": "https://outlook.office365.com/Microsoft-Server-ActiveSync",
            }
        )

    async with world_with({"outlook.office365.com": exo}, with_microsoft=False) as probe:
        f = await run(probe, V2, client=Client.MOBILE)
    assert f.status is Status.PASS and f.evidence["hybrid"] is False
    assert len(calls) == 2
    assert [r["status"] for r in f.evidence["protocols"][0]["requests"]] == [302, 200]


@pytest.mark.parametrize("status", [200, 400])
async def test_v2_deeply_nested_json_is_garbage(status: int) -> None:
    async def exo(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text="[" * 200_000, content_type="application/json")

    async with world_with({"outlook.office365.com": exo}, with_microsoft=False) as probe:
        f = await run(probe, V2, client=Client.MOBILE)
    assert f.status is Status.FAIL
    if status == 200:
        assert "not an Autodiscover JSON answer" in f.summary
    else:
        assert f"HTTP {status}" in f.summary


@pytest.mark.parametrize(
    ("status", "body"),
    [(404, {}), (400, {"ErrorCode": "BadRequest", "ErrorMessage": "no"})],
)
async def test_v2_falls_back_to_the_query_form(status: int, body: dict[str, str]) -> None:
    calls: list[str] = []

    async def exo(request: web.Request) -> web.StreamResponse:
        calls.append(request.path_qs)
        if "/v1.0/" in request.path:
            return web.json_response(body, status=status)
        return web.json_response(
            {
                "Protocol": request.query["Protocol"],
                "Url": "https://outlook.office365.com/Microsoft-Server-ActiveSync",
            }
        )

    async with world_with({"outlook.office365.com": exo}, with_microsoft=False) as probe:
        f = await run(probe, V2, client=Client.MOBILE)
    assert f.status is Status.PASS, f.summary
    assert calls == [
        "/autodiscover/autodiscover.json/v1.0/ana@contoso.com?Protocol=ActiveSync",
        "/autodiscover/autodiscover.json?Email=ana%40contoso.com&Protocol=ActiveSync"
        "&RedirectCount=1",
    ]
    assert [s.status for s in f.steps] == [Status.FAIL, Status.PASS]
    assert "/v1.0/" in f.steps[0].name and "retrying with the query form" in f.steps[0].detail
    assert "?Email=" in f.steps[1].name
    ev = f.evidence["protocols"][0]
    assert ev["path_form"]["status_code"] == status and ev["status_code"] == 200


async def test_v2_invalid_protocol_is_not_retried() -> None:
    calls: list[str] = []

    async def exo(request: web.Request) -> web.StreamResponse:
        calls.append(request.path_qs)
        return web.json_response({"ErrorCode": "InvalidProtocol"}, status=400)

    async with world_with({"outlook.office365.com": exo}, with_microsoft=False) as probe:
        f = await run(probe, V2, client=Client.MOBILE)
    assert f.status is Status.FAIL and len(calls) == 1 and len(f.steps) == 1


async def test_v2_json_without_url_fails() -> None:
    async def exo(request: web.Request) -> web.StreamResponse:
        return web.json_response({"Protocol": "ActiveSync"})

    async with world_with({"outlook.office365.com": exo}, with_microsoft=False) as probe:
        f = await run(probe, V2, client=Client.MOBILE)
    assert f.status is Status.FAIL


# ---- units: the POX parser and helpers ------------------------------------------------------


def test_request_body_escapes_the_address() -> None:
    body = _pox.request_body(_pox.Provider.OUTLOOK, "a<b>&c@contoso.com").decode()
    assert "<EMailAddress>a&lt;b&gt;&amp;c@contoso.com</EMailAddress>" in body


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (SETTINGS, _pox.Kind.SETTINGS),
        (account("redirectUrl", "<RedirectUrl>https://x/a</RedirectUrl>"), _pox.Kind.REDIRECT_URL),
        (account("redirectAddr", "<RedirectAddr>a@b.com</RedirectAddr>"), _pox.Kind.REDIRECT_ADDR),
        (error_xml(500), _pox.Kind.ERROR),
        (SETTINGS.replace("EXPR", "IMAP"), _pox.Kind.INTERNET_MAIL),
        ("<html/>", _pox.Kind.NOT_AUTODISCOVER),
        ("not xml at all", _pox.Kind.NOT_AUTODISCOVER),
        ('<!DOCTYPE x [<!ENTITY a "b">]><Autodiscover/>', _pox.Kind.NOT_AUTODISCOVER),
        (account("frobnicate"), _pox.Kind.NOT_AUTODISCOVER),
    ],
)
def test_pox_parse(body: str, kind: _pox.Kind) -> None:
    assert _pox.parse(body.encode()).kind is kind


def test_pox_parse_reads_attribute_protocol_types() -> None:
    body = account(
        "settings", '<Protocol Type="mapiHttp" Version="1"/><MicrosoftOnline>True</MicrosoftOnline>'
    )
    answer = _pox.parse(body.encode())
    assert answer.kind is _pox.Kind.SETTINGS and answer.protocol_types == ("MAPIHTTP",)
    assert answer.microsoft_online is True


def test_auth_schemes_ignore_parameters() -> None:
    value = 'Bearer trusted_issuers="a, b", authorization_uri="https://x", Basic realm="y"'
    assert autodiscover._auth_schemes(value) == "Bearer, Basic"


def test_microsoft_host_names() -> None:
    cloud = hosts_for(Cloud.GLOBAL)
    assert autodiscover.microsoft_host("autodiscover-s.outlook.com", cloud)
    assert autodiscover.microsoft_host("outlook.office365.com", cloud)
    assert not autodiscover.microsoft_host("notoutlook.com", cloud)
    assert not autodiscover.microsoft_host("contoso.com", cloud)


def test_check_specs() -> None:
    assert autodiscover.CHECKS == (V1, V2)
    assert V1.id == "autodiscover.v1" and V1.side.value == "dns"
    assert V2.id == "autodiscover.v2" and V2.side.value == "service"
    for check in autodiscover.CHECKS:
        assert check.clients == {Client.OUTLOOK, Client.MOBILE}
        assert check.applies_to(Client.ALL) and not check.applies_to(Client.IMAP)


async def test_a_slow_root_domain_that_answers_is_waited_for() -> None:
    # KB 3049615 behind a slow website: method 3 works long before the root domain's answer
    # comes, but that server completed its handshake (it answers), so it gets to finish.
    sc = get("autodiscover-root-hijack")
    hosts = tuple(
        h.model_copy(update={"latency_ms": 200}) if "contoso.com" in h.names else h
        for h in sc.hosts
    )
    async with World(sc.model_copy(update={"hosts": hosts})) as world, world.network() as net:
        f = await run(Probe(world, net), V1)
    assert f.status is Status.WARN, f.summary
    assert "KB 3049615" in f.summary
    assert method(f, 1)["fail"] == "hijack"


async def test_an_answering_root_domain_is_waited_for_only_within_the_budget() -> None:
    async def stuck(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(2.5)  # TLS done; no answer within the check's budget
        return web.Response(status=404)

    short = dataclasses.replace(V1, timeout=2.0)  # budget: 1 s after the margin
    async with world_with({"contoso.com": stuck}, website=None) as probe:
        started = time.monotonic()
        f = await run(probe, short)
        elapsed = time.monotonic() - started
    assert f.status is Status.PASS and f.evidence["method_used"] == 3
    assert method(f, 1)["outcome"] == "abandoned" and method(f, 1)["detail"] == UNFINISHED
    assert 1.0 - 0.1 < elapsed < 1.8, elapsed  # waited past the grace, not past the budget
