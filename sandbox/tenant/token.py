"""Entra ID's app-only side on the login host: tokens, OpenID metadata, instance discovery.

POST /{tenant}/oauth2/v2.0/token          client_credentials, client_secret or client_assertion
GET  /{tenant}/v2.0/.well-known/openid-configuration   (and the v1 form without /v2.0)
GET  /{tenant}/discovery/v2.0/keys         the signing keys (JWKS)
GET  /common/discovery/instance            msal's instance discovery (api-version 1.0 / 1.1)

`{tenant}` is the tenant id or one of its domains (reference §5: client credentials to
https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token, scope <resource>/.default).
Access tokens are RS256 JWTs in the v1.0 shape app-only tokens for Graph and Exchange have:
`aud` the resource (https://graph.microsoft.com, https://outlook.office365.com), `roles` the
application permissions granted on that resource, `wids` the Entra roles of the service
principal, `appidacr` 1 (secret) or 2 (certificate). Claim set: Entra ID access token
reference, from memory [uncertain in detail]. Error bodies are Entra's OAuth error JSON with
AADSTS codes (§5.4 table for 700016; the others — 7000215 wrong secret, 7000222 expired secret,
700027 bad assertion, 90002 unknown tenant, 1002012 scope without /.default, 500011 unknown
resource, 70003 grant type — as Entra's error-code reference lists them [uncertain wording]).
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.services import base
from sandbox.tenant.build import app_certificate, rsa_self_signed
from sandbox.tenant.hosts import TenantHosts
from sandbox.tenant.models import EXO_APP_ID, GRAPH_APP_ID, ROLE_TEMPLATES
from sandbox.tenant.state import TenantState

TOKEN_LIFETIME = 3599  # seconds (expires_in of a client-credentials token) [uncertain]
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


# ---- the signing key -----------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    private: rsa.RSAPrivateKey
    cert_der: bytes

    @property
    def kid(self) -> str:
        return _b64url(hashlib.sha1(self.cert_der).digest())  # noqa: S324 (x5t is SHA-1)

    @property
    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwk(self, issuer: str) -> dict[str, Any]:
        numbers = self.private.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": _b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": _b64url(numbers.e.to_bytes(3, "big")),
            "x5c": [base64.b64encode(self.cert_der).decode()],
            "issuer": issuer,
        }


@functools.cache
def signing_key() -> SigningKey:
    """The process-wide token-signing key (RSA, as Entra signs with RS256)."""
    key, cert = rsa_self_signed("accounts.accesscontrol.windows.net")
    return SigningKey(key, cert.public_bytes(serialization.Encoding.DER))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# ---- tokens --------------------------------------------------------------------------------


def resource_of(scope: str, hosts: TenantHosts) -> str | None:
    """The resource a `<resource>/.default` scope names, as the token's `aud`; None if unknown."""
    resource = scope.removesuffix("/.default").rstrip("/").lower()
    graph = {hosts.graph_audience.lower(), GRAPH_APP_ID}
    exo = {hosts.exo_audience.lower(), EXO_APP_ID}
    if resource in graph:
        return hosts.graph_audience
    if resource in exo:
        return hosts.exo_audience
    return None


def issue_token(
    state: TenantState, audience: str, *, certificate: bool, now: float | None = None
) -> str:
    app = state.data.app
    hosts = state.hosts
    granted = app.graph_permissions if audience == hosts.graph_audience else app.exo_permissions
    issued = int(now if now is not None else time.time())
    issuer = f"https://{hosts.sts_issuer}/{state.tenant_id}/"
    claims: dict[str, Any] = {
        "aud": audience,
        "iss": issuer,
        "iat": issued,
        "nbf": issued,
        "exp": issued + TOKEN_LIFETIME,
        "aio": "E2NgYPg" + uuid.uuid4().hex[:16],
        "app_displayname": app.display_name,
        "appid": app.client_id,
        "appidacr": "2" if certificate else "1",
        "idp": issuer,
        "idtyp": "app",
        "oid": app.service_principal_id,
        "rh": "0.ASo" + uuid.uuid4().hex[:12] + ".",
        "sub": app.service_principal_id,
        "tid": state.tenant_id,
        "uti": _b64url(uuid.uuid4().bytes)[:22],
        "ver": "1.0",
    }
    if granted:  # an app token carries `roles` only when some were granted [uncertain]
        claims["roles"] = sorted(granted)
    if app.directory_roles:
        claims["wids"] = [ROLE_TEMPLATES[r] for r in app.directory_roles]
    key = signing_key()
    return jwt.encode(
        claims, key.private, algorithm="RS256", headers={"x5t": key.kid, "kid": key.kid}
    )


@dataclass(frozen=True)
class TokenCheck:
    claims: dict[str, Any] | None
    error: str  # "" when valid; else Graph's InvalidAuthenticationToken message


def check_token(state: TenantState, authorization: str | None, audiences: set[str]) -> TokenCheck:
    """Validate a Bearer token for a resource: signature, lifetime, audience, tenant."""
    if not authorization or not authorization.lower().startswith("bearer "):
        return TokenCheck(None, "Access token is empty.")
    token = authorization.split(" ", 1)[1].strip()
    key = signing_key()
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.public_pem,
            algorithms=["RS256"],
            options={"verify_aud": False, "require": ["exp", "aud", "tid"]},
            leeway=60,
        )
    except jwt.ExpiredSignatureError:
        return TokenCheck(None, "Lifetime validation failed, the token is expired.")
    except jwt.InvalidTokenError:
        return TokenCheck(None, "Invalid JWT token. The token is malformed or its signature fails.")
    if str(claims.get("aud", "")).lower() not in {a.lower() for a in audiences}:
        return TokenCheck(None, "Access token validation failure. Invalid audience.")
    if claims.get("tid") != state.tenant_id:
        return TokenCheck(None, "Access token validation failure. Invalid issuer.")
    return TokenCheck(claims, "")


# ---- Entra's OAuth error bodies -------------------------------------------------------------


def oauth_error(  # noqa: PLR0917 (mirrors the error body's fields)
    state_or_none: TenantState | None,
    status: int,
    error: str,
    code: int,
    description: str,
    headers: Mapping[str, str],
) -> web.Response:
    trace = str(uuid.uuid4())
    correlation = str(uuid.uuid4())
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    body = {
        "error": error,
        "error_description": (
            f"AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {correlation} "
            f"Timestamp: {stamp}"
        ),
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"https://{_login_host(state_or_none)}/error?code={code}",
    }
    return base.json_response(body, status=status, headers=headers)


def _login_host(state: TenantState | None) -> str:
    return state.hosts.login if state is not None else "login.microsoftonline.com"


def _unknown_tenant(
    state: TenantState | None, name: str, headers: Mapping[str, str]
) -> web.Response:
    return oauth_error(
        state,
        400,
        "invalid_tenant",
        90002,
        f"Tenant '{name}' not found. Check to make sure you have the correct tenant ID and are "
        "signing into the correct cloud. Check with your subscription administrator, this may "
        "happen if there are no active subscriptions for the tenant.",
        headers,
    )


# ---- the endpoints -------------------------------------------------------------------------


def openid_configuration(login: str, tenant: str, v2: bool, hosts: TenantHosts) -> dict[str, Any]:
    """The OpenID configuration document (v2.0 endpoint unless `v2` is False)."""
    base_url = f"https://{login}/{tenant}"
    oauth = f"{base_url}/oauth2/v2.0" if v2 else f"{base_url}/oauth2"
    doc: dict[str, Any] = {
        "token_endpoint": f"{oauth}/token",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "jwks_uri": f"{base_url}/discovery/v2.0/keys" if v2 else f"{base_url}/discovery/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{base_url}/v2.0" if v2 else f"https://{hosts.sts_issuer}/{tenant}/",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": f"https://{hosts.graph}/oidc/userinfo",
        "authorization_endpoint": f"{oauth}/authorize",
        "device_authorization_endpoint": f"{oauth}/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{oauth}/logout",
        "claims_supported": [
            "sub",
            "iss",
            "cloud_instance_name",
            "cloud_instance_host_name",
            "cloud_graph_host_name",
            "msgraph_host",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "acr",
            "nonce",
            "preferred_username",
            "name",
            "tid",
            "ver",
            "at_hash",
            "c_hash",
            "email",
        ],
        "kerberos_endpoint": f"{base_url}/kerberos",
        "tenant_region_scope": "NA",
        "cloud_instance_name": hosts.cloud_instance_name,
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": hosts.graph,
        "rbac_url": "https://pas.windows.net",
    }
    return doc


# msal's instance metadata (api-version 1.1): which login hosts are aliases of one another.
_INSTANCE_METADATA = [
    {
        "preferred_network": "login.microsoftonline.com",
        "preferred_cache": "login.windows.net",
        "aliases": [
            "login.microsoftonline.com",
            "login.windows.net",
            "login.microsoft.com",
            "sts.windows.net",
        ],
    },
    {
        "preferred_network": "login.partner.microsoftonline.cn",
        "preferred_cache": "login.partner.microsoftonline.cn",
        "aliases": ["login.partner.microsoftonline.cn", "login.chinacloudapi.cn"],
    },
    {
        "preferred_network": "login.microsoftonline.us",
        "preferred_cache": "login.microsoftonline.us",
        "aliases": ["login.microsoftonline.us", "login.usgovcloudapi.net"],
    },
    {
        "preferred_network": "login-us.microsoftonline.com",
        "preferred_cache": "login-us.microsoftonline.com",
        "aliases": ["login-us.microsoftonline.com"],
    },
]


def instance_discovery(
    request: web.Request, login: str, headers: Mapping[str, str]
) -> web.Response:
    """GET /common/discovery/instance?api-version=…&authorization_endpoint=…"""
    endpoint = base.query_param(request, "authorization_endpoint") or ""
    parts = urlsplit(endpoint)
    segments = [s for s in parts.path.split("/") if s]
    known = {a for group in _INSTANCE_METADATA for a in group["aliases"]}
    if parts.scheme != "https" or (parts.hostname or "") not in known | {login} or not segments:
        return oauth_error(
            None,
            400,
            "invalid_instance",
            50049,
            "Unknown or invalid instance.",
            headers,
        )
    tenant = segments[0]
    v2 = "v2.0" in segments
    discovery = (
        f"https://{parts.hostname}/{tenant}/v2.0/.well-known/openid-configuration"
        if v2
        else f"https://{parts.hostname}/{tenant}/.well-known/openid-configuration"
    )
    version = base.query_param(request, "api-version") or "1.0"
    body: dict[str, Any] = {"tenant_discovery_endpoint": discovery, "api-version": version}
    if version == "1.1":
        body["metadata"] = _INSTANCE_METADATA
    return base.json_response(body, headers=headers)


async def token_endpoint(
    request: web.Request, state: TenantState | None, tenant: str, headers: Mapping[str, str]
) -> web.Response:
    if request.method != "POST":
        return oauth_error(
            state,
            400,
            "invalid_request",
            900561,
            "The endpoint only accepts POST requests.",
            headers,
        )
    if state is None or not state.is_tenant(tenant):
        return _unknown_tenant(state, tenant, headers)
    throttle = state.throttled("login", "token")
    if throttle is not None:
        return base.json_response(
            {
                "error": "temporarily_unavailable",
                "error_description": "AADSTS90033: A transient error has occurred. "
                "Please try again.",
            },
            status=throttle.status,
            headers={**headers, "Retry-After": str(throttle.retry_after)},
        )
    form = await request.post()

    def get(name: str) -> str:
        return str(form.get(name, ""))

    app = state.data.app
    if get("grant_type") != "client_credentials":
        return oauth_error(
            state,
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
            headers,
        )
    client_id = get("client_id").lower()
    if client_id != app.client_id.lower():
        # §5.4: 700016 UnauthorizedClient_DoesNotMatchRequest.
        return oauth_error(
            state,
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{get('client_id')}' was not found in the directory "
            f"'{state.data.display_name}'. This can happen if the application has not been "
            "installed by the administrator of the tenant or consented to by any user in the "
            "tenant. You may have sent your authentication request to the wrong tenant.",
            headers,
        )
    certificate = False
    if get("client_assertion"):
        if get("client_assertion_type") != ASSERTION_TYPE:
            return oauth_error(
                state,
                400,
                "invalid_request",
                700025,
                "Client is public so neither 'client_assertion' nor 'client_secret' should be "
                "presented.",
                headers,
            )
        problem = _check_assertion(state, get("client_assertion"), tenant)
        if problem is not None:
            code, text = problem
            return oauth_error(state, 401, "invalid_client", code, text, headers)
        certificate = True
    elif get("client_secret"):
        secret = next((s for s in app.secrets if s.value == get("client_secret")), None)
        if secret is None:
            return oauth_error(
                state,
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                "the client secret value, not the client secret ID, for a secret added to app "
                f"'{app.client_id}'.",
                headers,
            )
        if secret.expired:
            return oauth_error(
                state,
                401,
                "invalid_client",
                7000222,
                f"The provided client secret keys for app '{app.client_id}' are expired. Visit "
                "the Azure portal to create new keys for your app.",
                headers,
            )
    else:
        return oauth_error(
            state,
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or "
            "'client_secret'.",
            headers,
        )
    scope = get("scope").strip()
    if not scope.endswith("/.default") or " " in scope:
        return oauth_error(
            state,
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope} is not valid. Client credential flows must "
            "have a scope value with /.default suffixed to the resource identifier "
            "(application ID URI).",
            headers,
        )
    audience = resource_of(scope, state.hosts)
    if audience is None:
        resource = scope.removesuffix("/.default")
        return oauth_error(
            state,
            400,
            "invalid_resource",
            500011,
            f"The resource principal named {resource} was not found in the tenant named "
            f"{state.data.display_name}. This can happen if the application has not been "
            "installed by the administrator of the tenant or consented to by any user in the "
            "tenant. You might have sent your authentication request to the wrong tenant.",
            headers,
        )
    token = issue_token(state, audience, certificate=certificate)
    body = {
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME,
        "ext_expires_in": TOKEN_LIFETIME,
        "access_token": token,
    }
    return base.json_response(body, headers=headers)


def _check_assertion(state: TenantState, assertion: str, tenant: str) -> tuple[int, str] | None:
    """(AADSTS code, text) when the client assertion fails, None when it proves the app."""
    app = state.data.app
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.InvalidTokenError:
        return 50027, "JWT token is invalid or malformed."
    cert = None
    registered = list(app.certificates)
    if app.sandbox_certificate:
        registered.append(app_certificate().der)
    for der in registered:
        sha1 = _b64url(hashlib.sha1(der).digest())  # noqa: S324 (x5t is SHA-1 by definition)
        sha256 = _b64url(hashlib.sha256(der).digest())
        # Thumbprints are base64url; msal keeps the padding (accepted either way here).
        x5t = str(header.get("x5t") or "").rstrip("=")
        x5t256 = str(header.get("x5t#S256") or "").rstrip("=")
        if sha1 == x5t or sha256 == x5t256:
            cert = x509.load_der_x509_certificate(der)
            break
    if cert is None:
        thumb = header.get("x5t") or header.get("x5t#S256") or ""
        return (
            700027,
            f"The certificate with identifier used to sign the client assertion is not "
            f"registered on application. [Reason - The key was not found., Thumbprint of key "
            f"used by client: '{thumb}']",
        )
    login = state.hosts.login
    audiences = [
        f"https://{login}/{name}/oauth2/v2.0/token"
        for name in (state.tenant_id, state.data.initial_domain, *state.data.domains, tenant)
    ]
    try:
        claims = jwt.decode(
            assertion,
            cert.public_key(),  # type: ignore[arg-type]
            algorithms=["RS256", "PS256"],
            audience=audiences,
            options={"require": ["exp", "aud", "iss", "sub"]},
            leeway=300,
        )
    except jwt.ExpiredSignatureError:
        return 700024, "Client assertion is not within its valid time range."
    except jwt.InvalidAudienceError:
        return (
            700212,
            "No matching federated identity record found for presented assertion audience.",
        )
    except jwt.InvalidTokenError:
        return 700027, "Client assertion failed signature validation."
    if (
        str(claims.get("iss", "")).lower() != app.client_id.lower()
        or str(claims.get("sub", "")).lower() != app.client_id.lower()
    ):
        return (
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter.",
        )
    return None


def jwks(state: TenantState | None, login: str, tenant: str) -> dict[str, Any]:
    key = signing_key()
    issuer = f"https://{login}/{state.tenant_id if state else tenant}/v2.0"
    return {"keys": [key.jwk(issuer)]}


async def handle(
    request: web.Request, state: TenantState | None, login: str, headers: Mapping[str, str]
) -> web.Response | None:
    """The tenant-side endpoints of the login host; None when the path is not one of them."""
    path = request.path
    lowered = path.lower().rstrip("/")
    segments = [s for s in path.split("/") if s]
    if lowered == "/common/discovery/instance":
        return instance_discovery(request, login, headers)
    if len(segments) < 2:
        return None
    tenant, rest = segments[0], "/".join(segments[1:]).lower()
    if rest in ("oauth2/v2.0/token",):
        return await token_endpoint(request, state, tenant, headers)
    if rest in ("v2.0/.well-known/openid-configuration", ".well-known/openid-configuration"):
        v2 = rest.startswith("v2.0")
        generic = tenant.lower() in ("common", "organizations", "consumers")
        if generic:
            doc = openid_configuration(login, "{tenantid}", v2, _hosts(state, login))
            if v2:
                # The multi-tenant document names the tenant as a placeholder [uncertain].
                doc["token_endpoint"] = f"https://{login}/{tenant}/oauth2/v2.0/token"
                doc["authorization_endpoint"] = f"https://{login}/{tenant}/oauth2/v2.0/authorize"
            return base.json_response(doc, headers=headers)
        if state is None or not state.is_tenant(tenant):
            return _unknown_tenant(state, tenant, headers)
        doc = openid_configuration(login, state.tenant_id, v2, state.hosts)
        return base.json_response(doc, headers=headers)
    if rest in ("discovery/v2.0/keys", "discovery/keys"):
        return base.json_response(jwks(state, login, tenant), headers=headers)
    return None


def _hosts(state: TenantState | None, login: str) -> TenantHosts:
    if state is not None:
        return state.hosts
    from sandbox.tenant.hosts import TENANT_HOSTS  # noqa: PLC0415

    return next(
        (h for h in TENANT_HOSTS.values() if h.login == login),
        TENANT_HOSTS[next(iter(TENANT_HOSTS))],
    )
