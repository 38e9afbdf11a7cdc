"""The sandbox's HTTP roles, driven over loopback HTTP and checked against the reference shapes.

Reference: the team's Exchange Online diagnostics reference (§ numbers in the tests).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree as ET

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509

from sandbox.ca import self_signed_der
from sandbox.services import (
    AdfsConfig,
    AutodiscoverRedirectConfig,
    AutodiscoverSConfig,
    ExoConfig,
    Faults,
    LoginConfig,
    Mailbox,
    OnPremConfig,
    RealmInfo,
    ServiceConfig,
    WebsiteConfig,
    build_app,
)
from sandbox.services.base import GARBAGE, seen_requests

# Namespaces, §2.4-§2.6 (http:// form) and §4.3.
REQ_OUTLOOK = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
REQ_MOBILE = "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/requestschema/2006"
RESP_BASE = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
RESP_OUTLOOK = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
RESP_MOBILE = "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
XSI = "http://www.w3.org/2001/XMLSchema-instance"

B = f"{{{RESP_BASE}}}"
OL = f"{{{RESP_OUTLOOK}}}"
M = f"{{{RESP_MOBILE}}}"

ANA = Mailbox(address="ana@contoso.com", display_name="Ana <Ops> & Co")
ALIAS = Mailbox(address="sales@contoso.com", primary_smtp="bo@contoso.com", display_name="Bo")
HYBRID = Mailbox(address="carl@contoso.com", location="onprem", display_name="Carl")
NOBOX = Mailbox(address="dora@contoso.com", location="none")
MAILBOXES = (ANA, ALIAS, HYBRID, NOBOX)


@asynccontextmanager
async def serve(config: ServiceConfig) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(build_app(config), host="127.0.0.1", port=0)) as client:
        yield client


def pox_body(email: str, provider: str = "outlook", schema: str | None = None) -> str:
    ns = REQ_OUTLOOK if provider == "outlook" else REQ_MOBILE
    if schema is None:
        schema = RESP_OUTLOOK if provider == "outlook" else RESP_MOBILE
    return (
        f'<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="{ns}"><Request>'
        f"<EMailAddress>{email}</EMailAddress>"
        f"<AcceptableResponseSchema>{schema}</AcceptableResponseSchema></Request></Autodiscover>"
    )


def make_cert(common_name: str, days: int) -> bytes:
    start = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    return self_signed_der(common_name, not_before=start, not_after=start + dt.timedelta(days=days))


@pytest.fixture(scope="module")
def certs() -> dict[str, bytes]:
    return {
        "signing": make_cert("ADFS Signing - sts.contoso.com", 365),
        "next": make_cert("ADFS Signing - sts.contoso.com (next)", 730),
        "encryption": make_cert("ADFS Encryption - sts.contoso.com", 90),
    }


# --------------------------------------------------------------------------------------------
# outlook.office365.com — Autodiscover v2 (§2.7)


@pytest.mark.parametrize(
    ("sent", "canonical", "url"),
    [
        ("ActiveSync", "ActiveSync", "https://outlook.office365.com/Microsoft-Server-ActiveSync"),
        ("activesync", "ActiveSync", "https://outlook.office365.com/Microsoft-Server-ActiveSync"),
        ("EWS", "Ews", "https://outlook.office365.com/EWS/Exchange.asmx"),
        (
            "autodiscoverv1",
            "AutodiscoverV1",
            "https://outlook.office365.com/autodiscover/autodiscover.xml",
        ),
        ("Rest", "Rest", "https://outlook.office.com/api"),
    ],
)
async def test_exo_v2_both_forms_answer_protocol_and_url(
    sent: str, canonical: str, url: str
) -> None:
    async with serve(ExoConfig(mailboxes=MAILBOXES)) as client:
        path_form = await client.get(
            f"/autodiscover/autodiscover.json/v1.0/ana@contoso.com?Protocol={sent}"
        )
        query_form = await client.get(
            "/autodiscover/autodiscover.json",
            params={"Email": "ana@contoso.com", "Protocol": sent, "RedirectCount": "1"},
        )
        for response in (path_form, query_form):
            assert response.status == 200
            assert response.content_type == "application/json"
            assert json.loads(await response.text()) == {"Protocol": canonical, "Url": url}


async def test_exo_responses_carry_diagnostic_headers() -> None:
    async with serve(ExoConfig(mailboxes=MAILBOXES)) as client:
        first = await client.get(
            "/autodiscover/autodiscover.json/v1.0/ana@contoso.com?Protocol=Ews"
        )
        second = await client.get("/nothing-here")
    for response in (first, second):
        uuid.UUID(response.headers["request-id"])
        for name in ("X-FEServer", "X-BEServer", "X-CalculatedBETarget", "X-DiagInfo"):
            assert response.headers[name]
    assert first.headers["request-id"] != second.headers["request-id"]
    assert second.status == 404


async def test_exo_v2_unknown_protocol_is_400_invalid_protocol() -> None:
    async with serve(ExoConfig(mailboxes=MAILBOXES)) as client:
        response = await client.get(
            "/autodiscover/autodiscover.json/v1.0/ana@contoso.com?Protocol=Carrier<Pigeon>"
        )
        body = json.loads(await response.text())
    assert response.status == 400
    assert body["ErrorCode"] == "InvalidProtocol"
    assert "'Carrier<Pigeon>'" in body["ErrorMessage"]
    assert "ActiveSync" in body["ErrorMessage"] and "AutodiscoverV1" in body["ErrorMessage"]


async def test_exo_v2_missing_address_is_400() -> None:
    async with serve(ExoConfig(mailboxes=MAILBOXES)) as client:
        response = await client.get("/autodiscover/autodiscover.json?Protocol=Ews")
    assert response.status == 400


async def test_exo_v2_hybrid_mailbox_is_302_to_onprem_query_form() -> None:
    async with serve(ExoConfig(mailboxes=MAILBOXES)) as client:
        counted = await client.get(
            "/autodiscover/autodiscover.json",
            params={"Email": "Carl@Contoso.com", "Protocol": "activesync", "RedirectCount": "1"},
            allow_redirects=False,
        )
        uncounted = await client.get(
            "/autodiscover/autodiscover.json/v1.0/carl@contoso.com?Protocol=ActiveSync",
            allow_redirects=False,
        )
    assert counted.status == 302
    location = urlsplit(counted.headers["Location"])
    assert (location.scheme, location.netloc, location.path) == (
        "https",
        "autodiscover.contoso.com",
        "/autodiscover/autodiscover.json",
    )
    assert parse_qs(location.query) == {
        "Email": ["carl@contoso.com"],
        "Protocol": ["activesync"],
        "RedirectCount": ["2"],
    }
    # No count from the client: the doc example's RedirectCount=3 (§2.7).
    assert parse_qs(urlsplit(uncounted.headers["Location"]).query)["RedirectCount"] == ["3"]


async def test_exo_v2_hybrid_redirect_host_can_be_overridden() -> None:
    config = ExoConfig(mailboxes=MAILBOXES, onprem_autodiscover_host="hybrid.contoso.com")
    async with serve(config) as client:
        response = await client.get(
            "/autodiscover/autodiscover.json/v1.0/carl@contoso.com?Protocol=Ews",
            allow_redirects=False,
        )
    assert urlsplit(response.headers["Location"]).netloc == "hybrid.contoso.com"


async def test_exo_v2_alias_autodiscoverv1_redirects_to_primary() -> None:
    async with serve(ExoConfig(mailboxes=MAILBOXES)) as client:
        response = await client.get(
            "/autodiscover/autodiscover.json/v1.0/sales@contoso.com?Protocol=AutodiscoverV1",
            allow_redirects=False,
        )
    assert response.status == 302
    location = urlsplit(response.headers["Location"])
    assert location.netloc == "outlook.office365.com"
    assert parse_qs(location.query)["Email"] == ["bo@contoso.com"]


async def test_exo_v2_unknown_address_generic_or_not_found() -> None:
    path = "/autodiscover/autodiscover.json/v1.0/who@fabrikam.example?Protocol=ActiveSync"
    async with serve(ExoConfig(mailboxes=MAILBOXES)) as client:
        generic = await client.get(path)
        generic_body = json.loads(await generic.text())
    async with serve(ExoConfig(mailboxes=MAILBOXES, unknown_address="not-found")) as client:
        strict = await client.get(path)
        no_mailbox = await client.get(
            "/autodiscover/autodiscover.json/v1.0/dora@contoso.com?Protocol=ActiveSync"
        )
    assert generic.status == 200
    assert generic_body["Url"] == "https://outlook.office365.com/Microsoft-Server-ActiveSync"
    assert strict.status == 404
    assert no_mailbox.status == 404


# --------------------------------------------------------------------------------------------
# outlook.office365.com — POX, EAS, EWS, MAPI (§2.3, §3.1, §3.2)


def challenges(response: ClientResponse) -> list[str]:
    return list(response.headers.getall("WWW-Authenticate"))


async def test_exo_pox_without_bearer_is_401_bearer_and_basic() -> None:
    async with serve(ExoConfig(mailboxes=MAILBOXES)) as client:
        response = await client.post(
            "/AutoDiscover/AutoDiscover.xml",
            data=pox_body("ana@contoso.com"),
            headers={"Content-Type": "text/xml"},
        )
    assert response.status == 401
    bearer, basic = challenges(response)
    assert bearer.startswith("Bearer ")
    assert 'authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize"' in bearer
    assert "error=" not in bearer  # no token was presented
    assert basic.lower().startswith("basic realm=")


async def test_exo_challenge_follows_the_cloud_login_host() -> None:
    config = ExoConfig(exo_host="outlook.office365.us", login_host="login.microsoftonline.us")
    async with serve(config) as client:
        response = await client.get("/EWS/Exchange.asmx")
    assert (
        'authorization_uri="https://login.microsoftonline.us/common/oauth2/authorize"'
        in (challenges(response)[0])
    )


async def test_exo_pox_with_credentials_answers_outlook_settings() -> None:
    async with serve(ExoConfig(mailboxes=MAILBOXES)) as client:
        response = await client.post(
            "/autodiscover/autodiscover.xml",
            data=pox_body("ana@contoso.com"),
            headers={"Authorization": "Bearer x.y.z", "X-MapiHttpCapability": "1"},
        )
        root = ET.fromstring(await response.read())
    assert response.status == 200
    assert response.content_type == "text/xml"
    assert root.tag == f"{B}Autodiscover"
    account = root.find(f"{OL}Response/{OL}Account")
    assert account is not None
    assert account.findtext(f"{OL}Action") == "settings"
    assert account.findtext(f"{OL}MicrosoftOnline") == "True"
    mapi = account.find(f"{OL}Protocol[@Type='mapiHttp']")
    assert mapi is not None and mapi.get("Version") == "1"
    store = mapi.findtext(f"{OL}MailStore/{OL}ExternalUrl") or ""
    assert (
        store
        == f"https://outlook.office365.com/mapi/emsmdb/?MailboxId={ANA.mailbox_guid}@contoso.com"
    )
    assert root.findtext(f"{OL}Response/{OL}User/{OL}DisplayName") == "Ana <Ops> & Co"


@pytest.mark.parametrize("path", ["/EWS/Exchange.asmx", "/mapi/emsmdb/?MailboxId=x@contoso.com"])
async def test_exo_ews_and_mapi_always_challenge(path: str) -> None:
    async with serve(ExoConfig()) as client:
        anonymous = await client.post(path)
        with_token = await client.post(path, headers={"Authorization": "Bearer not-a-token"})
    assert anonymous.status == with_token.status == 401
    assert 'error="invalid_token"' in challenges(with_token)[0]


async def test_exo_eas_options_unauthenticated_is_401_bearer_and_basic() -> None:
    async with serve(ExoConfig()) as client:
        response = await client.options("/Microsoft-Server-ActiveSync")
    assert response.status == 401
    schemes = [c.split(" ", 1)[0].lower() for c in challenges(response)]
    assert schemes == ["bearer", "basic"]
    assert "MS-ASProtocolVersions" not in response.headers


async def test_exo_eas_options_with_credentials_lists_versions_and_commands() -> None:
    async with serve(ExoConfig()) as client:
        response = await client.options(
            "/Microsoft-Server-ActiveSync", headers={"Authorization": "Basic YTpi"}
        )
    assert response.status == 200
    assert response.headers["Allow"] == "OPTIONS,POST"
    assert response.headers["Public"] == "OPTIONS,POST"
    assert response.headers["MS-Server-ActiveSync"] == "15.20"
    assert response.headers["MS-ASProtocolVersions"] == "2.0,2.1,2.5,12.0,12.1,14.0,14.1,16.0,16.1"
    commands = response.headers["MS-ASProtocolCommands"].split(",")
    assert {"Sync", "FolderSync", "Provision", "Ping", "ValidateCert", "Find"} <= set(commands)
    assert len(commands) == 24


async def test_exo_server_error_keeps_exo_headers() -> None:
    async with serve(ExoConfig(server_error=503)) as client:
        response = await client.get(
            "/autodiscover/autodiscover.json/v1.0/ana@contoso.com?Protocol=Ews"
        )
    assert response.status == 503
    assert response.headers["X-FEServer"]


# --------------------------------------------------------------------------------------------
# autodiscover.outlook.com (§2.1 step 4) and autodiscover-s.outlook.com (§2.3-§2.6)


async def test_autodiscover_outlook_com_redirects_get_to_autodiscover_s() -> None:
    async with serve(AutodiscoverRedirectConfig()) as client:
        response = await client.get("/autodiscover/autodiscover.xml", allow_redirects=False)
        other = await client.get("/owa/", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == (
        "https://autodiscover-s.outlook.com/autodiscover/autodiscover.xml"
    )
    assert other.status == 404


def pox_s_config() -> AutodiscoverSConfig:
    return AutodiscoverSConfig(
        mailboxes=MAILBOXES, tenant_id="11111111-2222-3333-4444-555555555555"
    )


async def test_autodiscover_s_unauthenticated_pox_is_401() -> None:
    async with serve(pox_s_config()) as client:
        response = await client.post("/autodiscover/autodiscover.xml", data=pox_body("a@b.c"))
    assert response.status == 401
    assert [c.split(" ", 1)[0].lower() for c in challenges(response)] == ["bearer", "basic"]


async def post_pox(
    client: TestClient[web.Request, web.Application], body: str | bytes, **headers: str
) -> ET.Element:
    response = await client.post(
        "/Autodiscover/Autodiscover.xml",
        data=body,
        headers={"Authorization": "Bearer t", "Content-Type": "text/xml", **headers},
    )
    assert response.status == 200  # POX errors travel inside a 200 (§2.5)
    return ET.fromstring(await response.read())


async def test_autodiscover_s_outlook_settings_without_mapi_header() -> None:
    async with serve(pox_s_config()) as client:
        root = await post_pox(client, pox_body("SALES@contoso.com"))
    response = root.find(f"{OL}Response")
    assert response is not None
    assert response.findtext(f"{OL}User/{OL}AutoDiscoverSMTPAddress") == "bo@contoso.com"
    assert response.findtext(f"{OL}User/{OL}DeploymentId") == "11111111-2222-3333-4444-555555555555"
    assert response.find(f"{OL}Account/{OL}Protocol[@Type='mapiHttp']") is None
    expr = [p for p in response.iter(f"{OL}Protocol") if p.findtext(f"{OL}Type") == "EXPR"]
    assert expr[0].findtext(f"{OL}EwsUrl") == "https://outlook.office365.com/EWS/Exchange.asmx"


async def test_autodiscover_s_mobilesync_settings() -> None:
    async with serve(pox_s_config()) as client:
        root = await post_pox(client, pox_body("ana@contoso.com", provider="mobilesync"))
    response = root.find(f"{M}Response")
    assert response is not None
    assert response.findtext(f"{M}Culture") == "en:us"
    assert response.findtext(f"{M}User/{M}EMailAddress") == "ana@contoso.com"
    server = response.find(f"{M}Action/{M}Settings/{M}Server")
    assert server is not None
    assert server.findtext(f"{M}Type") == "MobileSync"
    url = "https://outlook.office365.com/Microsoft-Server-ActiveSync"
    assert server.findtext(f"{M}Url") == url
    assert server.findtext(f"{M}Name") == url


@pytest.mark.parametrize(
    "email", ["who@fabrikam.example", "dora@contoso.com", "nobody@contoso.com"]
)
async def test_autodiscover_s_unknown_address_is_error_500(email: str) -> None:
    async with serve(pox_s_config()) as client:
        root = await post_pox(client, pox_body(email))
    # Error form: the inner Response stays in the *base* namespace (§2.5).
    error = root.find(f"{B}Response/{B}Error")
    assert error is not None
    assert error.findtext(f"{B}ErrorCode") == "500"
    assert error.findtext(f"{B}Message") == "The email address can't be found."
    assert error.get("Time") and error.get("Id")
    assert root.find(f"{OL}Response") is None


@pytest.mark.parametrize(
    "body",
    [
        "<Autodiscover><Request>",  # not XML at all
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>',  # DTD refused
        '<Autodiscover xmlns="urn:other"><Request/></Autodiscover>',  # not a POX request
        pox_body("").replace("<EMailAddress></EMailAddress>", ""),  # no address
    ],
)
async def test_autodiscover_s_malformed_request_is_error_600(body: str) -> None:
    async with serve(pox_s_config()) as client:
        root = await post_pox(client, body)
    codes = [e.text for e in root.iter() if e.tag.endswith("}ErrorCode")]
    assert codes == ["600"]


async def test_autodiscover_s_get_with_credentials_is_error_600() -> None:
    async with serve(pox_s_config()) as client:
        response = await client.get(
            "/autodiscover/autodiscover.xml", headers={"Authorization": "Bearer t"}
        )
        root = ET.fromstring(await response.read())
    assert root.findtext(f"{B}Response/{B}Error/{B}ErrorCode") == "600"


async def test_autodiscover_s_unsupported_schema_is_error_601() -> None:
    async with serve(pox_s_config()) as client:
        outlook = await post_pox(client, pox_body("ana@contoso.com", schema=RESP_MOBILE))
        mobile = await post_pox(
            client, pox_body("ana@contoso.com", provider="mobilesync", schema="urn:nope")
        )
    assert outlook.findtext(f"{B}Response/{B}Error/{B}ErrorCode") == "601"
    error = mobile.find(f"{M}Response/{M}Action/{M}Error")
    assert error is not None
    assert (error.findtext(f"{M}Status"), error.findtext(f"{M}ErrorCode")) == ("2", "601")


async def test_autodiscover_s_hybrid_mailbox_is_redirect_url_to_onprem() -> None:
    async with serve(pox_s_config()) as client:
        root = await post_pox(client, pox_body("carl@contoso.com"))
    account = root.find(f"{OL}Response/{OL}Account")
    assert account is not None
    assert account.findtext(f"{OL}Action") == "redirectUrl"
    assert account.findtext(f"{OL}RedirectUrl") == (
        "https://autodiscover.contoso.com/autodiscover/autodiscover.xml"
    )


async def test_autodiscover_s_finds_mailbox_by_legacy_dn() -> None:
    async with serve(pox_s_config()) as client:
        first = await post_pox(client, pox_body("ana@contoso.com"))
        legacy = first.findtext(f"{OL}Response/{OL}User/{OL}LegacyDN") or ""
        assert legacy.startswith("/o=ExchangeLabs/")
        by_dn = pox_body("x").replace(
            "<EMailAddress>x</EMailAddress>", f"<LegacyDN>{legacy}</LegacyDN>"
        )
        again = await post_pox(client, by_dn)
    assert again.findtext(f"{OL}Response/{OL}User/{OL}AutoDiscoverSMTPAddress") == "ana@contoso.com"


# --------------------------------------------------------------------------------------------
# login.microsoftonline.com (§4.1)


def login_config(**kwargs: object) -> LoginConfig:
    return LoginConfig(
        domains={
            "contoso.com": RealmInfo(namespace_type="Managed", brand="Contoso"),
            "Fabrikam.com": RealmInfo(
                namespace_type="Federated", brand="Fabrikam", sts_host="sts.fabrikam.com"
            ),
        },
        **kwargs,
    )


async def test_getuserrealm_managed_json_fields() -> None:
    async with serve(login_config()) as client:
        default = await client.get("/getuserrealm.srf", params={"login": "ana@contoso.com"})
        explicit = await client.get(
            "/getuserrealm.srf", params={"login": "ana@contoso.com", "json": "1"}
        )
        body = json.loads(await default.text())
        assert json.loads(await explicit.text()) == body
    assert default.content_type == "application/json"
    assert body == {
        "State": 4,
        "UserState": 1,
        "Login": "ana@contoso.com",
        "NameSpaceType": "Managed",
        "DomainName": "contoso.com",
        "FederationBrandName": "Contoso",
        "CloudInstanceName": "microsoftonline.com",
        "CloudInstanceIssuerUri": "urn:federation:MicrosoftOnline",
    }


async def test_getuserrealm_federated_json_has_auth_url() -> None:
    async with serve(login_config()) as client:
        response = await client.get("/getuserrealm.srf", params={"login": "eve@fabrikam.com"})
        body = json.loads(await response.text())
    assert body["NameSpaceType"] == "Federated"
    assert body["FederationGlobalVersion"] == -1
    assert body["AuthURL"] == (
        "https://sts.fabrikam.com/adfs/ls/?username=eve%40fabrikam.com&wa=wsignin1.0"
        "&wtrealm=urn%3afederation%3aMicrosoftOnline&wctx="
    )
    assert body["DomainName"] == "fabrikam.com"


@pytest.mark.parametrize("login", ["who@nowhere.example", "nowhere.example", ""])
async def test_getuserrealm_unknown_domain(login: str) -> None:
    async with serve(login_config()) as client:
        response = await client.get("/getuserrealm.srf", params={"login": login})
        body = json.loads(await response.text())
    assert body == {"State": 4, "UserState": 1, "Login": login, "NameSpaceType": "Unknown"}


async def test_getuserrealm_accepts_a_bare_domain() -> None:
    async with serve(login_config()) as client:
        response = await client.get("/getuserrealm.srf", params={"login": "contoso.com"})
        body = json.loads(await response.text())
    assert (body["NameSpaceType"], body["DomainName"]) == ("Managed", "contoso.com")


async def test_getuserrealm_xml_federated() -> None:
    async with serve(login_config()) as client:
        response = await client.get(
            "/getuserrealm.srf", params={"login": "eve@fabrikam.com", "xml": "1"}
        )
        root = ET.fromstring(await response.read())
    assert root.tag == "RealmInfo" and root.get("Success") == "true"
    assert root.findtext("NameSpaceType") == "Federated"
    assert root.findtext("IsFederatedNS") == "true"
    assert root.findtext("DomainName") == "fabrikam.com"
    assert root.findtext("FederationBrandName") == "Fabrikam"
    assert root.findtext("CloudInstanceName") == "microsoftonline.com"
    assert root.findtext("STSAuthURL") == (
        "https://sts.fabrikam.com/adfs/services/trust/2005/usernamemixed"
    )
    assert root.findtext("MEXURL") == "https://sts.fabrikam.com/adfs/services/trust/mex"
    assert (root.findtext("AuthURL") or "").startswith("https://sts.fabrikam.com/adfs/ls/?")


async def test_getuserrealm_xml_managed_is_not_federated() -> None:
    async with serve(login_config()) as client:
        response = await client.get("/getuserrealm.srf?login=ana@contoso.com&xml=1")
        root = ET.fromstring(await response.read())
    assert root.findtext("IsFederatedNS") == "false"
    assert root.find("MEXURL") is None


async def test_userrealm_v1_managed_federated_unknown() -> None:
    async with serve(login_config()) as client:
        managed = await client.get("/common/userrealm/ana@contoso.com?api-version=1.0")
        federated = await client.get("/common/userrealm/eve@fabrikam.com?api-version=1.0")
        unknown = await client.get("/common/userrealm/x@nowhere.example?api-version=1.0")
        bad = await client.get("/common/userrealm/ana@contoso.com?api-version=9")
        bodies = [json.loads(await r.text()) for r in (managed, federated, unknown)]
    assert bodies[0] == {
        "ver": "1.0",
        "account_type": "Managed",
        "domain_name": "contoso.com",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_audience_urn": "urn:federation:MicrosoftOnline",
    }
    assert bodies[1]["account_type"] == "Federated"
    assert bodies[1]["federation_protocol"] == "WSTrust"
    assert (
        bodies[1]["federation_metadata_url"] == "https://sts.fabrikam.com/adfs/services/trust/mex"
    )
    assert bodies[1]["federation_active_auth_url"] == (
        "https://sts.fabrikam.com/adfs/services/trust/2005/usernamemixed"
    )
    assert bodies[2]["account_type"] == "Unknown"
    assert "domain_name" not in bodies[2]
    assert bad.status == 400


async def test_login_sovereign_cloud_instance_name() -> None:
    config = login_config(host="login.microsoftonline.us", cloud_instance_name="microsoftonline.us")
    async with serve(config) as client:
        response = await client.get("/getuserrealm.srf?login=ana@contoso.com")
        body = json.loads(await response.text())
    assert body["CloudInstanceName"] == "microsoftonline.us"


# --------------------------------------------------------------------------------------------
# AD FS (§4.2, §4.3)


def signing_certs(root: ET.Element, descriptor: ET.Element, use: str = "signing") -> list[bytes]:
    return [
        base64.b64decode(text)
        for key in descriptor.findall(f"{{{MD}}}KeyDescriptor[@use='{use}']")
        for text in [key.findtext(f"{{{DS}}}KeyInfo/{{{DS}}}X509Data/{{{DS}}}X509Certificate")]
        if text
    ]


async def test_adfs_metadata_publishes_signing_cert(certs: dict[str, bytes]) -> None:
    config = AdfsConfig(sts_host="sts.contoso.com", signing_cert_der=certs["signing"])
    async with serve(config) as client:
        response = await client.get("/FederationMetadata/2007-06/FederationMetadata.xml")
        raw = await response.read()
    assert response.status == 200
    assert b"xmlns:ds=" in raw
    root = ET.fromstring(raw)
    assert root.tag == f"{{{MD}}}EntityDescriptor"
    assert root.get("entityID") == "http://sts.contoso.com/adfs/services/trust"
    sts = [
        r
        for r in root.findall(f"{{{MD}}}RoleDescriptor")
        if r.get(f"{{{XSI}}}type") == "fed:SecurityTokenServiceType"
    ]
    idp = root.find(f"{{{MD}}}IDPSSODescriptor")
    assert len(sts) == 1 and idp is not None
    for descriptor in (sts[0], idp):
        assert signing_certs(root, descriptor) == [certs["signing"]]
    cert = x509.load_der_x509_certificate(signing_certs(root, idp)[0])
    assert cert.not_valid_after_utc == dt.datetime(2031, 1, 1, tzinfo=dt.UTC)


async def test_adfs_metadata_rollover_and_encryption_certs(certs: dict[str, bytes]) -> None:
    config = AdfsConfig(
        sts_host="sts.contoso.com",
        signing_cert_der=certs["signing"],
        next_signing_cert_der=certs["next"],
        encryption_cert_der=certs["encryption"],
    )
    async with serve(config) as client:
        response = await client.get("/federationmetadata/2007-06/federationmetadata.xml")
        root = ET.fromstring(await response.read())
    idp = root.find(f"{{{MD}}}IDPSSODescriptor")
    assert idp is not None
    assert signing_certs(root, idp) == [certs["signing"], certs["next"]]
    assert signing_certs(root, idp, use="encryption") == [certs["encryption"]]


async def test_adfs_mex_sign_in_page_and_probe(certs: dict[str, bytes]) -> None:
    config = AdfsConfig(sts_host="sts.contoso.com", signing_cert_der=certs["signing"])
    async with serve(config) as client:
        mex = await client.get("/adfs/services/trust/mex")
        mex_root = ET.fromstring(await mex.read())
        sign_in = await client.get("/adfs/ls/")
        sign_in_text = await sign_in.text()
        probe = await client.get("/adfs/probe")
    addresses = [
        el.get("location")
        for el in mex_root.iter("{http://schemas.xmlsoap.org/wsdl/soap12/}address")
    ]
    assert "https://sts.contoso.com/adfs/services/trust/2005/usernamemixed" in addresses
    assert mex_root.tag == "{http://schemas.xmlsoap.org/wsdl/}definitions"
    assert sign_in.status == 200 and "<form" in sign_in_text
    assert probe.status == 200


async def test_adfs_metadata_503_when_down(certs: dict[str, bytes]) -> None:
    config = AdfsConfig(
        sts_host="sts.contoso.com", signing_cert_der=certs["signing"], metadata_status=503
    )
    async with serve(config) as client:
        metadata = await client.get("/FederationMetadata/2007-06/FederationMetadata.xml")
        mex = await client.get("/adfs/services/trust/mex")
        text = await metadata.text()
    assert metadata.status == mex.status == 503
    assert "Service Unavailable" in text


# --------------------------------------------------------------------------------------------
# On-premises Exchange (hybrid)


def onprem_config() -> OnPremConfig:
    return OnPremConfig(
        host="autodiscover.contoso.com",
        mail_host="mail.contoso.com",
        mailboxes=(HYBRID, ANA),
    )


async def test_onprem_pox_challenges_with_windows_auth() -> None:
    async with serve(onprem_config()) as client:
        response = await client.post(
            "/Autodiscover/Autodiscover.xml", data=pox_body("carl@contoso.com")
        )
    assert response.status == 401
    assert challenges(response) == ["Negotiate", "NTLM", 'Basic realm="autodiscover.contoso.com"']
    assert response.headers["Server"] == "Microsoft-IIS/10.0"
    assert response.headers["X-Powered-By"] == "ASP.NET"


async def test_onprem_v2_points_at_mail_host() -> None:
    async with serve(onprem_config()) as client:
        response = await client.get(
            "/autodiscover/autodiscover.json",
            params={"Email": "carl@contoso.com", "Protocol": "activesync", "RedirectCount": "2"},
        )
        body = json.loads(await response.text())
    assert body == {
        "Protocol": "ActiveSync",
        "Url": "https://mail.contoso.com/Microsoft-Server-ActiveSync",
    }


async def test_onprem_eas_options_is_401_basic() -> None:
    async with serve(onprem_config()) as client:
        anonymous = await client.options("/Microsoft-Server-ActiveSync")
        signed_in = await client.options(
            "/Microsoft-Server-ActiveSync", headers={"Authorization": "Basic YTpi"}
        )
    assert anonymous.status == 401
    assert challenges(anonymous) == ['Basic realm="autodiscover.contoso.com"']
    assert signed_in.status == 200
    assert signed_in.headers["MS-Server-ActiveSync"] == "15.1"


async def test_onprem_pox_settings_and_cloud_redirect() -> None:
    async with serve(onprem_config()) as client:
        local = await post_pox(client, pox_body("carl@contoso.com"))
        cloud = await post_pox(client, pox_body("ana@contoso.com"))
    account = local.find(f"{OL}Response/{OL}Account")
    assert account is not None
    assert account.findtext(f"{OL}Action") == "settings"
    assert account.find(f"{OL}MicrosoftOnline") is None
    assert next(p.findtext(f"{OL}Server") for p in account.findall(f"{OL}Protocol")) == (
        "mail.contoso.com"
    )
    assert cloud.findtext(f"{OL}Response/{OL}Account/{OL}Action") == "redirectAddr"
    assert cloud.findtext(f"{OL}Response/{OL}Account/{OL}RedirectAddr") == (
        "ana@contoso.mail.onmicrosoft.com"
    )


# --------------------------------------------------------------------------------------------
# The customer's website (§2.1 step 2, KB 3049615)


async def test_website_root_and_normal_404() -> None:
    async with serve(WebsiteConfig(domain="contoso.com")) as client:
        home = await client.get("/")
        get = await client.get("/autodiscover/autodiscover.xml")
        post = await client.post("/autodiscover/autodiscover.xml", data=pox_body("a@contoso.com"))
        text = await post.text()
    assert home.status == 200 and home.content_type == "text/html"
    assert get.status == post.status == 404
    assert "Not Found" in text


async def test_website_hijack_answers_imap_from_apache() -> None:
    async with serve(WebsiteConfig(domain="contoso.com", autodiscover="hijack-imap")) as client:
        response = await client.post(
            "/AutoDiscover/AutoDiscover.xml", data=pox_body("o'brien&amp;co@contoso.com")
        )
        raw = await response.read()
    assert response.status == 200
    assert response.headers["Server"] == "Apache/2.4.41 (Ubuntu)"
    assert b"<Type>IMAP</Type>" in raw  # what RCA's red flag looks for (§1.3)
    root = ET.fromstring(raw)
    protocols = root.findall(f"{OL}Response/{OL}Account/{OL}Protocol")
    assert [p.findtext(f"{OL}Type") for p in protocols] == ["IMAP", "SMTP"]
    assert protocols[0].findtext(f"{OL}Server") == "mail.contoso.com"
    assert protocols[0].findtext(f"{OL}LoginName") == "o'brien&co@contoso.com"


async def test_website_redirect_elsewhere_and_500() -> None:
    config = WebsiteConfig(domain="contoso.com", autodiscover="redirect-elsewhere")
    async with serve(config) as client:
        moved = await client.get("/autodiscover/autodiscover.xml", allow_redirects=False)
    async with serve(WebsiteConfig(domain="contoso.com", autodiscover="500")) as client:
        broken = await client.post("/autodiscover/autodiscover.xml", data="x")
    assert moved.status == 302
    assert moved.headers["Location"] == config.redirect_target
    assert broken.status == 500


# --------------------------------------------------------------------------------------------
# Fault knobs and the request log, on every role


def every_role(faults: Faults) -> list[ServiceConfig]:
    der = make_cert("sts", 30)
    return [
        ExoConfig(mailboxes=MAILBOXES, faults=faults),
        AutodiscoverRedirectConfig(faults=faults),
        AutodiscoverSConfig(mailboxes=MAILBOXES, faults=faults),
        login_config(faults=faults),
        AdfsConfig(sts_host="sts.contoso.com", signing_cert_der=der, faults=faults),
        OnPremConfig(host="autodiscover.contoso.com", mail_host="mail.contoso.com", faults=faults),
        WebsiteConfig(domain="contoso.com", faults=faults),
    ]


ROLE_IDS = ["exo", "redirect", "autodiscover-s", "login", "adfs", "onprem", "website"]


@pytest.mark.parametrize("index", range(len(ROLE_IDS)), ids=ROLE_IDS)
async def test_fault_status_override(index: int) -> None:
    config = every_role(Faults(status_override=503, retry_after=7))[index]
    async with serve(config) as client:
        response = await client.get("/autodiscover/autodiscover.xml", allow_redirects=False)
        assert client.app is not None
        assert seen_requests(client.app)[0].path == "/autodiscover/autodiscover.xml"
    assert response.status == 503
    assert response.headers["Retry-After"] == "7"


@pytest.mark.parametrize("index", range(len(ROLE_IDS)), ids=ROLE_IDS)
async def test_fault_garbage(index: int) -> None:
    config = every_role(Faults(garbage=True))[index]
    async with serve(config) as client:
        response = await client.get("/getuserrealm.srf?login=a@contoso.com")
        raw = await response.read()
    assert response.status == 200
    assert raw == GARBAGE
    with pytest.raises(ET.ParseError):
        ET.fromstring(raw)
    with pytest.raises(ValueError):
        json.loads(raw)


async def test_fault_slow_ms_delays_the_answer() -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    async with serve(LoginConfig(faults=Faults(slow_ms=150))) as client:
        started = loop.time()
        response = await client.get("/getuserrealm.srf?login=a@contoso.com")
        elapsed = loop.time() - started
    assert response.status == 200
    assert elapsed >= 0.15


async def test_request_log_keeps_path_query_and_only_the_auth_scheme() -> None:
    async with serve(ExoConfig(mailboxes=MAILBOXES)) as client:
        await client.options(
            "/Microsoft-Server-ActiveSync?Cmd=Ping",
            headers={"Authorization": "Bearer secret.token.value", "User-Agent": "probe/1"},
        )
        assert client.app is not None
        log = list(client.app["requests"])
    assert len(log) == 1
    method, path, headers = log[0]
    assert (method, path) == ("OPTIONS", "/Microsoft-Server-ActiveSync?Cmd=Ping")
    assert headers["Authorization"] == "Bearer"
    assert headers["User-Agent"] == "probe/1"
    assert "secret" not in repr(log)


def test_build_app_rejects_an_unknown_config() -> None:
    with pytest.raises(TypeError):
        build_app(object())  # type: ignore[arg-type]
