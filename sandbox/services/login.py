"""login.microsoftonline.com (or a sovereign login host): home-realm discovery, §4.1, and the
tenant side (tokens, OpenID metadata, instance discovery: `sandbox.tenant.token`).

GET /getuserrealm.srf?login=<user-or-domain>[&json=1|&xml=1]
GET /common/userrealm/<user>?api-version=1.0|2.0
The numeric State/UserState values (4/1 managed, 3/2 federated) are as public tooling shows
them [uncertain]; field names are the reference's.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree as ET

from aiohttp import web

from sandbox.services import base
from sandbox.services.configs import LoginConfig, RealmInfo
from sandbox.tenant import token
from sandbox.tenant.state import TenantState

_UNKNOWN = RealmInfo(namespace_type="Unknown")


def _realm(config: LoginConfig, login: str) -> tuple[str, RealmInfo]:
    domain = login.rpartition("@")[2].lower()
    return domain, config.domains.get(domain, _UNKNOWN)


def _sts_urls(sts_host: str) -> dict[str, str]:
    """AD FS endpoints a federated realm points at (§4.1, §4.2)."""
    return {
        "passive": f"https://{sts_host}/adfs/ls/",
        "mex": f"https://{sts_host}/adfs/services/trust/mex",
        "active": f"https://{sts_host}/adfs/services/trust/2005/usernamemixed",
    }


def auth_url(sts_host: str, login: str) -> str:
    # §4.1 example:
    # …/adfs/ls/?username=…&wa=wsignin1.0&wtrealm=urn%3afederation%3aMicrosoftOnline&wctx=
    return (
        f"{_sts_urls(sts_host)['passive']}?username={quote(login, safe='')}"
        "&wa=wsignin1.0&wtrealm=urn%3afederation%3aMicrosoftOnline&wctx="
    )


def getuserrealm(config: LoginConfig, login: str) -> dict[str, Any]:
    """getuserrealm.srf fields, in the order the service writes them."""
    domain, realm = _realm(config, login)
    if realm.namespace_type == "Unknown":
        return {"State": 4, "UserState": 1, "Login": login, "NameSpaceType": "Unknown"}
    federated = realm.namespace_type == "Federated" and realm.sts_host is not None
    body: dict[str, Any] = {
        "State": 3 if federated else 4,
        "UserState": 2 if federated else 1,
        "Login": login,
        "NameSpaceType": realm.namespace_type,
        "DomainName": domain,
    }
    if federated and realm.sts_host is not None:
        body["FederationGlobalVersion"] = -1
        body["AuthURL"] = auth_url(realm.sts_host, login)
    body["FederationBrandName"] = realm.brand or domain
    body["CloudInstanceName"] = config.cloud_instance_name
    body["CloudInstanceIssuerUri"] = config.cloud_instance_issuer_uri
    return body


def getuserrealm_xml(config: LoginConfig, login: str) -> ET.Element:
    """The `&xml=1` form: adds IsFederatedNS and, when federated, STSAuthURL and MEXURL."""
    fields = getuserrealm(config, login)
    _, realm = _realm(config, login)
    root = ET.Element("RealmInfo", Success="true")
    for name, value in fields.items():
        base.sub(root, name, str(value))
        if name == "NameSpaceType":
            federated = value == "Federated"
            base.sub(root, "IsFederatedNS", "true" if federated else "false")
    if fields["NameSpaceType"] == "Federated" and realm.sts_host is not None:
        urls = _sts_urls(realm.sts_host)
        base.sub(root, "STSAuthURL", urls["active"])
        base.sub(root, "FederationProtocol", realm.federation_protocol)
        base.sub(root, "MEXURL", urls["mex"])
    return root


def userrealm(config: LoginConfig, login: str, api_version: str) -> dict[str, Any] | None:
    """/common/userrealm/<user>; None for an api-version we do not play."""
    domain, realm = _realm(config, login)
    federated = realm.namespace_type == "Federated" and realm.sts_host is not None
    if api_version == "1.0":
        body: dict[str, Any] = {"ver": "1.0", "account_type": realm.namespace_type}
        if realm.namespace_type != "Unknown":
            body["domain_name"] = domain
        if federated and realm.sts_host is not None:
            urls = _sts_urls(realm.sts_host)
            body["federation_protocol"] = realm.federation_protocol
            body["federation_metadata_url"] = urls["mex"]
            body["federation_active_auth_url"] = urls["active"]
        body["cloud_instance_name"] = config.cloud_instance_name
        body["cloud_audience_urn"] = config.cloud_instance_issuer_uri
        return body
    if api_version == "2.0":
        # §4.1: NameSpaceType/AuthURL/FederationBrandName/TenantBrandingInfo; exact set [uncertain].
        body = {"NameSpaceType": realm.namespace_type, "Login": login}
        if realm.namespace_type != "Unknown":
            body["DomainName"] = domain
            body["FederationBrandName"] = realm.brand or domain
            body["TenantBrandingInfo"] = None
        if federated and realm.sts_host is not None:
            body["AuthURL"] = auth_url(realm.sts_host, login)
        body["cloud_instance_name"] = config.cloud_instance_name
        return body
    return None


def _headers(config: LoginConfig, counter: Iterator[int]) -> dict[str, str]:
    n = next(counter)
    return {
        "x-ms-request-id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{config.host}/{n}")),
        "x-ms-ests-server": "2.1.00000.0 - SANDBOX ProdSlices",
        "Cache-Control": "no-store, no-cache",
    }


def make_app(config: LoginConfig, tenant: TenantState | None = None) -> web.Application:
    """`tenant`: the world's tenant, for tokens and the metadata msal reads
    (sandbox.tenant.token)."""
    counter = itertools.count(1)

    async def handle(request: web.Request) -> web.StreamResponse:
        headers = _headers(config, counter)
        answer = await token.handle(request, tenant, config.host, headers)
        if answer is not None:
            return answer
        path = request.path.lower()
        if path == "/getuserrealm.srf":
            login = base.query_param(request, "login") or ""
            if base.query_param(request, "xml") == "1":
                return base.xml_response(getuserrealm_xml(config, login), headers=headers)
            return base.json_response(getuserrealm(config, login), headers=headers)
        if path.startswith("/common/userrealm/"):
            login = request.path[len("/common/userrealm/") :]
            body = userrealm(config, login, base.query_param(request, "api-version") or "")
            if body is None:
                # Error shape for a bad api-version is [uncertain]; OAuth-style error JSON.
                error = {
                    "error": "invalid_request",
                    "error_description": "Unsupported api-version.",
                }
                return base.json_response(error, status=400, headers=headers)
            return base.json_response(body, headers=headers)
        return base.not_found(headers)

    return base.make_app(config.faults, handle)
