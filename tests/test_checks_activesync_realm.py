"""activesync.endpoint and realm.federation over real HTTPS on loopback, every status."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from _checkworld import FAST, Probe, checked, custom_https, random_base, scenario
from aiohttp import web

from checks.diagnosis import rank_causes
from checks.models import Client, Status
from checks.modules import activesync, realm
from checks.modules._xml import XmlRejected, parse_xml
from checks.settings import Cloud
from sandbox.ca import CertKind
from sandbox.dns_server import DnsFaultKind
from sandbox.scenario import (
    DnsFault,
    Fault,
    Host,
    Listener,
    Protocol,
    Record,
    customer_cert,
    microsoft_cert,
    token_signing_cert,
)
from sandbox.services.configs import AdfsConfig, Faults, RealmInfo

ENDPOINT, FEDERATION = activesync.ENDPOINT, realm.FEDERATION
EXO = "outlook.office365.com"
LOGIN = "login.microsoftonline.com"
STS = "sts.contoso.com"


# --- activesync.endpoint ----------------------------------------------------------------------


async def test_activesync_pass_on_401_challenge_without_credentials() -> None:
    async with checked(scenario()) as probe:
        f = await probe.run(ENDPOINT)
        seen = probe.world.requests(EXO)
    assert f.status is Status.PASS
    assert f.evidence["status"] == 401
    assert "www-authenticate" in f.evidence["headers"]
    assert [(r.method, r.path) for r in seen] == [("OPTIONS", "/Microsoft-Server-ActiveSync")]
    assert "Authorization" not in seen[0].headers


@asynccontextmanager
async def fake_exo(handler: Any, **kw: Any) -> AsyncIterator[Probe]:
    """A world whose outlook.office365.com is `handler` (answers no sandbox role plays)."""
    base = random_base()
    ip = f"{base}.200"
    async with custom_https(ip, [EXO], handler) as port:
        sc = scenario(with_microsoft=False, records=[Record(name=EXO, rdtype="A", value=ip)])
        async with checked(sc, base=base, extra_ports={(ip, 443): port}, **kw) as probe:
            yield probe


def answering(status: int, headers: dict[str, str] | None = None, body: str = "") -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers=headers or {}, text=body)

    return handler


async def test_activesync_pass_on_200_with_protocol_versions() -> None:
    headers = {"MS-ASProtocolVersions": "14.0,14.1,16.0,16.1", "MS-Server-ActiveSync": "15.20"}
    async with fake_exo(answering(200, headers)) as probe:
        f = await probe.run(ENDPOINT)
    assert f.status is Status.PASS
    assert f.evidence["headers"]["ms-asprotocolversions"] == "14.0,14.1,16.0,16.1"


@pytest.mark.parametrize(
    ("status", "headers", "words"),
    [
        (200, {"Server": "BlueCoat-Proxy"}, "without the ActiveSync headers"),
        (401, {}, "no sign-in challenge"),
        (403, {}, "HTTP 403"),
        (404, {}, "HTTP 404"),
    ],
)
async def test_activesync_fail_on_non_activesync_answers(
    status: int, headers: dict[str, str], words: str
) -> None:
    async with fake_exo(answering(status, headers, "<html>blocked</html>")) as probe:
        f = await probe.run(ENDPOINT)
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "activesync-blocked"
    assert words in f.summary
    assert any("OPTIONS" in s for s in f.next_steps)


async def test_activesync_fail_on_captive_portal_redirect() -> None:
    portal = "http://portal.guest-wifi.example/login"
    async with fake_exo(answering(302, {"Location": portal})) as probe:
        f = await probe.run(ENDPOINT)
    assert f.status is Status.FAIL
    assert portal in f.summary
    assert f.evidence["headers"]["location"] == portal
    assert "portal" in f.next_steps[0]


async def test_activesync_fail_on_proxy_authentication() -> None:
    async with fake_exo(answering(407, {"Proxy-Authenticate": "Negotiate"})) as probe:
        f = await probe.run(ENDPOINT)
    assert f.status is Status.FAIL
    assert "407" in f.summary


async def test_activesync_fail_on_503_is_service_side_with_retry_after() -> None:
    faults = {"status_override": 503, "retry_after": 120}
    sc = scenario(microsoft={"exo_https": {"app": {"faults": faults}}})
    async with checked(sc) as probe:
        f = await probe.run(ENDPOINT)
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "service-degraded"
    assert f.evidence["headers"]["retry-after"] == "120"
    assert "retry after 120" in f.summary
    assert "service side" in f.detail


async def test_activesync_fail_on_other_5xx() -> None:
    sc = scenario(microsoft={"exo_https": {"app": {"server_error": 500}}})
    async with checked(sc) as probe:
        f = await probe.run(ENDPOINT)
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "service-degraded"

    async with fake_exo(answering(502)) as probe:
        gateway = await probe.run(ENDPOINT)
    assert gateway.status is Status.FAIL
    assert gateway.evidence["problem"] == "activesync-blocked"
    assert "proxy or gateway" in gateway.detail


async def test_activesync_fail_on_garbage() -> None:
    sc = scenario(microsoft={"exo_https": {"app": {"faults": {"garbage": True}}}})
    async with checked(sc) as probe:
        f = await probe.run(ENDPOINT)
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "activesync-blocked"


async def test_activesync_fail_on_connection_errors() -> None:
    sc = scenario(microsoft={"exo_https": {"fault": Fault.REFUSED}})
    async with checked(sc, timeouts=FAST) as probe:
        refused = await probe.run(ENDPOINT)
    assert refused.status is Status.FAIL
    assert refused.evidence["problem"] == "connect-failed"

    bad = microsoft_cert(Cloud.GLOBAL, kind=CertKind.UNTRUSTED)
    async with checked(scenario(microsoft={"exo_https": {"cert": bad}})) as probe:
        inspected = await probe.run(ENDPOINT)
    assert inspected.status is Status.FAIL
    assert inspected.evidence["problem"] == "tls-inspection"


async def test_activesync_error_when_dns_fails() -> None:
    sc = scenario(dns_faults=[DnsFault(name=EXO, kind=DnsFaultKind.SERVFAIL)])
    async with checked(sc, timeouts=FAST) as probe:
        f = await probe.run(ENDPOINT)
    assert f.status is Status.ERROR


# --- realm.federation: realm discovery --------------------------------------------------------


async def test_realm_pass_managed_and_memoised() -> None:
    async with checked(scenario()) as probe:
        ctx = probe.context()
        f = await probe.run(FEDERATION, ctx=ctx)
        again = await realm.user_realm(ctx.view(FEDERATION))
        seen = probe.world.requests(LOGIN)
    assert f.status is Status.PASS
    assert f.evidence["namespace_type"] == "Managed"
    assert again.namespace_type == "Managed" and again.source == "xml"
    assert len(seen) == 1  # GetUserRealm ran once for the whole diagnosis
    assert seen[0].path == "/getuserrealm.srf?login=ana@contoso.com&xml=1"


async def test_realm_fail_unknown_domain() -> None:
    async with checked(scenario(realm=None)) as probe:
        f = await probe.run(FEDERATION)
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "domain-not-in-m365"
    assert f.summary == "Microsoft 365 does not know the domain contoso.com."
    assert any("Settings → Domains" in s for s in f.next_steps)


async def test_realm_warn_when_the_tenant_is_in_another_cloud() -> None:
    sc = scenario(microsoft={"login": {"app": {"cloud_instance_name": "microsoftonline.us"}}})
    async with checked(sc) as probe:
        f = await probe.run(FEDERATION)
    assert f.status is Status.WARN
    assert f.evidence["problem"] == "other-cloud"
    assert "MAILFIX_CLOUD" in f.next_steps[0]


async def test_realm_sovereign_login_host() -> None:
    async with checked(scenario(cloud=Cloud.GCCHIGH)) as probe:
        f = await probe.run(FEDERATION)
        seen = probe.world.requests("login.microsoftonline.us")
    assert f.status is Status.PASS
    assert len(seen) == 1


@pytest.mark.parametrize(
    "login_change",
    [
        {"fault": Fault.REFUSED},
        {"app": {"faults": {"status_override": 429, "retry_after": 5}}},
        {"app": {"faults": {"garbage": True}}},
    ],
)
async def test_realm_error_when_realm_discovery_fails(login_change: dict[str, Any]) -> None:
    async with checked(scenario(microsoft={"login": login_change}), timeouts=FAST) as probe:
        f = await probe.run(FEDERATION)
    assert f.status is Status.ERROR
    assert f.summary.startswith("mailfix could not ask Microsoft how contoso.com signs in")


# --- realm.federation: AD FS ------------------------------------------------------------------


def adfs(
    *,
    days_left: int = 200,
    next_days_left: int | None = None,
    status: int = 200,
    cert_kind: CertKind = CertKind.VALID,
    fault: Fault | None = None,
    garbage: bool = False,
) -> Host:
    app = AdfsConfig(
        sts_host=STS,
        signing_cert_der=token_signing_cert(STS, days_left=days_left),
        next_signing_cert_der=token_signing_cert(STS, days_left=next_days_left, days_old=5)
        if next_days_left is not None
        else None,
        encryption_cert_der=token_signing_cert("enc." + STS, days_left=-100),
        metadata_status=status,
        faults=Faults(garbage=garbage),
    )
    return Host(
        names=(STS,),
        listeners=(Listener(port=443, protocol=Protocol.HTTPS, app=app, fault=fault),),
        cert=customer_cert(STS, kind=cert_kind),
    )


FEDERATED = RealmInfo(namespace_type="Federated", brand="Contoso", sts_host=STS)


async def run_federated(host: Host | None, **kw: Any) -> Any:
    sc = scenario(realm=FEDERATED, hosts=[host] if host else [])
    async with checked(sc, **kw) as probe:
        return await probe.run(FEDERATION)


async def test_federated_pass_with_valid_token_signing_certificate() -> None:
    f = await run_federated(adfs(days_left=200))
    assert f.status is Status.PASS
    assert f.evidence["sts_host"] == STS
    certs = f.evidence["signing_certificates"]
    # The (expired) token-decrypting certificate is use="encryption": not judged.
    assert len(certs) == 1 and certs[0]["state"] == "valid"
    assert 198 <= certs[0]["days_left"] <= 200
    assert f.evidence["tls_certificate"]["subject"]
    assert [s.status for s in f.steps] == [Status.PASS] * 4


async def test_federated_warn_inside_30_days() -> None:
    f = await run_federated(adfs(days_left=12))
    assert f.status is Status.WARN
    assert f.evidence["problem"] == "adfs-token-signing-expiring"
    assert "expires in 11 days" in f.summary or "expires in 12 days" in f.summary


async def test_federated_warn_during_rollover_mentions_the_newer_certificate() -> None:
    f = await run_federated(adfs(days_left=10, next_days_left=360))
    assert f.status is Status.WARN
    assert len(f.evidence["signing_certificates"]) == 2
    assert "newer certificate" in f.detail


async def test_federated_fail_when_token_signing_expired() -> None:
    f = await run_federated(adfs(days_left=-3))
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "adfs-token-signing-expired"
    assert f.evidence["signing_certificates"][0]["state"] == "expired"
    assert "has expired" in f.summary


async def test_federated_fail_when_adfs_is_down() -> None:
    f = await run_federated(adfs(status=503))
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "adfs-unreachable"
    assert "HTTP 503" in f.summary
    assert "Web Application Proxy" in f.detail


async def test_federated_fail_when_adfs_port_is_closed() -> None:
    f = await run_federated(adfs(fault=Fault.REFUSED), timeouts=FAST)
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "adfs-unreachable"
    assert f.evidence["network_problem"] == "connect-failed"


async def test_federated_fail_when_adfs_certificate_is_bad() -> None:
    f = await run_federated(adfs(cert_kind=CertKind.EXPIRED))
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "adfs-certificate-invalid"
    assert f.evidence["network_problem"] == "certificate-expired"
    assert "tls-inspection" not in str(f.evidence)  # a customer host: name the real problem


async def test_federated_fail_when_sts_is_not_in_dns() -> None:
    f = await run_federated(None, timeouts=FAST)
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "adfs-unreachable"
    assert f.evidence["network_problem"] == "dns-nxdomain"
    assert STS in f.summary


async def test_federated_fail_on_garbage_metadata() -> None:
    f = await run_federated(adfs(garbage=True))
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "adfs-metadata-invalid"


async def test_federated_error_when_no_metadata_is_published() -> None:
    f = await run_federated(adfs(status=404))
    assert f.status is Status.ERROR
    assert f.evidence["problem"] == "adfs-metadata-not-found"
    assert f.next_steps


async def test_federated_error_when_sts_resolution_fails() -> None:
    sc = scenario(
        realm=FEDERATED,
        hosts=[adfs()],
        dns_faults=[DnsFault(name=STS, kind=DnsFaultKind.SERVFAIL)],
    )
    async with checked(sc, timeouts=FAST) as probe:
        f = await probe.run(FEDERATION)
    # Our own resolver failed (SERVFAIL): the check could not decide whether AD FS is up, so
    # `error` with a dns-* problem (the diagnosis's dns-failure), not adfs-unreachable.
    assert f.status is Status.ERROR
    assert f.evidence["network_problem"] == f.evidence["problem"] == "dns-servfail"
    assert f.steps[-1].status is Status.ERROR
    assert STS in f.summary and "could not look up" in f.summary
    assert not any("Web Application Proxy" in s for s in f.next_steps)
    causes = [c.id for c in rank_causes([f], Client.OUTLOOK, None)]
    assert causes[0] == "dns-failure" and "adfs-unreachable" not in causes


async def test_federated_error_when_sts_lookup_times_out() -> None:
    sc = scenario(
        realm=FEDERATED,
        hosts=[adfs()],
        dns_faults=[DnsFault(name=STS, kind=DnsFaultKind.SILENT)],
    )
    async with checked(sc, timeouts=FAST) as probe:
        f = await probe.run(FEDERATION)
    assert f.status is Status.ERROR
    assert f.evidence["problem"] == "dns-timeout"


# --- parsing, without the network -------------------------------------------------------------


def test_parse_realm_json_fallback() -> None:
    info = realm.parse_realm(
        b'{"NameSpaceType":"Federated","DomainName":"contoso.com",'
        b'"AuthURL":"https://sts.contoso.com/adfs/ls/?username=ana%40contoso.com&wa=wsignin1.0",'
        b'"FederationBrandName":"Contoso","CloudInstanceName":"microsoftonline.com"}'
    )
    assert info.federated and info.source == "json"
    assert info.sts_host == "sts.contoso.com"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html><body>Sign in to the guest Wi-Fi</body></html>",
        b"<RealmInfo><NameSpaceType>Sideways</NameSpaceType></RealmInfo>",
        b"[1, 2, 3]",
        b"\xff\xfe\x00garbage",
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;">]>'
        b"<RealmInfo><NameSpaceType>&b;</NameSpaceType></RealmInfo>",
        b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><RealmInfo>&x;</RealmInfo>',
    ],
)
def test_parse_realm_refuses_garbage_with_value_error(body: bytes) -> None:
    with pytest.raises(ValueError):
        realm.parse_realm(body)


def test_xml_parser_bounds() -> None:
    with pytest.raises(XmlRejected, match="larger"):
        parse_xml(b"<a>" + b"x" * 100 + b"</a>", max_bytes=50)
    utf16 = '<?xml version="1.0" encoding="utf-16"?><a><b>ok</b></a>'.encode("utf-16")
    assert parse_xml(utf16).find("b") is not None


def test_signing_certificates_dedupes_and_skips_encryption() -> None:
    der = token_signing_cert(STS, days_left=100)
    b64 = base64.b64encode(der).decode()
    md = "urn:oasis:names:tc:SAML:2.0:metadata"
    ds = "http://www.w3.org/2000/09/xmldsig#"
    key = (
        '<KeyDescriptor use="{use}"><ds:KeyInfo xmlns:ds="' + ds + '"><ds:X509Data>'
        "<ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></KeyDescriptor>"
    )
    body = (
        f'<EntityDescriptor xmlns="{md}"><RoleDescriptor>'
        + key.format(use="signing", cert=b64)
        + key.format(use="encryption", cert="bm90IGEgY2VydA==")
        + "</RoleDescriptor><IDPSSODescriptor>"
        + key.format(use="signing", cert=b64[:40] + "\n" + b64[40:])
        + key.format(use="signing", cert="!!!")
        + "</IDPSSODescriptor></EntityDescriptor>"
    ).encode()
    certs, unreadable = realm.signing_certificates(body)
    assert len(certs) == 1 and unreadable == 1
    assert certs[0].subject == f"CN=ADFS Signing - {STS}"


async def test_realm_falls_back_to_json_when_the_xml_form_is_refused() -> None:
    """A login server that only speaks the default JSON form (as a world built by someone else
    may): GetUserRealm is asked again without &xml=1."""
    asked: list[str] = []

    async def json_only(request: web.Request) -> web.StreamResponse:
        asked.append(request.path_qs)
        if request.query.get("xml") == "1":
            return web.Response(status=400, text="unsupported")
        return web.json_response({"NameSpaceType": "Managed", "DomainName": "contoso.com"})

    base = random_base()
    ip = f"{base}.201"
    async with custom_https(ip, [LOGIN], json_only) as port:
        sc = scenario(with_microsoft=False, records=[Record(name=LOGIN, rdtype="A", value=ip)])
        async with checked(sc, base=base, extra_ports={(ip, 443): port}) as probe:
            f = await probe.run(FEDERATION)
    assert f.status is Status.PASS
    assert asked == [
        "/getuserrealm.srf?login=ana@contoso.com&xml=1",
        "/getuserrealm.srf?login=ana@contoso.com",
    ]
