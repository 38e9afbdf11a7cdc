"""AD FS (behind its Web Application Proxy) at sts.<domain>: §4.2 endpoints, §4.3 metadata.

FederationMetadata.xml is an unsigned EntityDescriptor: real AD FS signs it with the
token-signing key, which the sandbox does not hold. Token-signing certificates appear as
KeyDescriptor use="signing" in the SecurityTokenService RoleDescriptor and in the
IDPSSODescriptor (§4.3); the token-decrypting certificate, when configured, as
use="encryption" — a checker that reads every X509Certificate would pick that one up too.
"""

from __future__ import annotations

import base64
import uuid
from xml.etree import ElementTree as ET

from aiohttp import web

from sandbox.services import base
from sandbox.services.configs import AdfsConfig

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
FED = "http://docs.oasis-open.org/wsfed/federation/200706"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
WSA = "http://www.w3.org/2005/08/addressing"
_METADATA_PREFIXES = {DS: "ds", FED: "fed", XSI: "xsi", WSA: "wsa"}

WSDL = "http://schemas.xmlsoap.org/wsdl/"
SOAP12 = "http://schemas.xmlsoap.org/wsdl/soap12/"
TNS = "http://tempuri.org/"
_MEX_PREFIXES = {WSDL: "wsdl", SOAP12: "soap12", WSA: "wsa10", TNS: "tns"}

_SAML_BINDINGS = ("HTTP-Redirect", "HTTP-POST")


def _key_descriptor(parent: ET.Element, use: str, der: bytes) -> None:
    key = base.sub(parent, f"{{{MD}}}KeyDescriptor", use=use)
    data = base.sub(base.sub(key, f"{{{DS}}}KeyInfo"), f"{{{DS}}}X509Data")
    base.sub(data, f"{{{DS}}}X509Certificate", base64.b64encode(der).decode("ascii"))


def _endpoint(parent: ET.Element, tag: str, address: str) -> None:
    reference = base.sub(base.sub(parent, tag), f"{{{WSA}}}EndpointReference")
    base.sub(reference, f"{{{WSA}}}Address", address)


def metadata(config: AdfsConfig) -> ET.Element:
    sts = f"https://{config.sts_host}"
    signing = [config.signing_cert_der]
    if config.next_signing_cert_der is not None:
        signing.append(config.next_signing_cert_der)  # secondary during rollover (§4.3)
    root = ET.Element(
        f"{{{MD}}}EntityDescriptor",
        ID="_" + str(uuid.uuid5(uuid.NAMESPACE_URL, config.sts_host)),
        # AD FS names itself with an http:// identifier even though it serves HTTPS.
        entityID=f"http://{config.sts_host}/adfs/services/trust",
    )

    sts_role = base.sub(
        root,
        f"{{{MD}}}RoleDescriptor",
        **{f"{{{XSI}}}type": "fed:SecurityTokenServiceType"},
        protocolSupportEnumeration=FED,
        ServiceDisplayName=config.display_name,
    )
    for der in signing:
        _key_descriptor(sts_role, "signing", der)
    offered = base.sub(sts_role, f"{{{FED}}}TokenTypesOffered")
    base.sub(offered, f"{{{FED}}}TokenType", Uri="urn:oasis:names:tc:SAML:2.0:assertion")
    base.sub(offered, f"{{{FED}}}TokenType", Uri="urn:oasis:names:tc:SAML:1.0:assertion")
    _endpoint(
        sts_role,
        f"{{{FED}}}SecurityTokenServiceEndpoint",
        f"{sts}/adfs/services/trust/2005/issuedtokenmixedsymmetricbasic256",
    )
    _endpoint(sts_role, f"{{{FED}}}PassiveRequestorEndpoint", f"{sts}/adfs/ls/")

    app_role = base.sub(
        root,
        f"{{{MD}}}RoleDescriptor",
        **{f"{{{XSI}}}type": "fed:ApplicationServiceType"},
        protocolSupportEnumeration=FED,
        ServiceDisplayName=config.display_name,
    )
    if config.encryption_cert_der is not None:
        _key_descriptor(app_role, "encryption", config.encryption_cert_der)
    _endpoint(
        app_role,
        f"{{{FED}}}TargetScopes",
        f"{sts}/adfs/services/trust/2005/issuedtokenmixedasymmetricbasic256",
    )
    _endpoint(app_role, f"{{{FED}}}PassiveRequestorEndpoint", f"{sts}/adfs/ls/")

    idp = base.sub(
        root,
        f"{{{MD}}}IDPSSODescriptor",
        protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol",
    )
    if config.encryption_cert_der is not None:
        _key_descriptor(idp, "encryption", config.encryption_cert_der)
    for der in signing:
        _key_descriptor(idp, "signing", der)
    for binding in _SAML_BINDINGS:
        base.sub(
            idp,
            f"{{{MD}}}SingleLogoutService",
            Binding=f"urn:oasis:names:tc:SAML:2.0:bindings:{binding}",
            Location=f"{sts}/adfs/ls/",
        )
    for name_format in ("1.1:nameid-format:emailAddress", "2.0:nameid-format:persistent"):
        base.sub(idp, f"{{{MD}}}NameIDFormat", f"urn:oasis:names:tc:SAML:{name_format}")
    for binding in _SAML_BINDINGS:
        base.sub(
            idp,
            f"{{{MD}}}SingleSignOnService",
            Binding=f"urn:oasis:names:tc:SAML:2.0:bindings:{binding}",
            Location=f"{sts}/adfs/ls/",
        )
    return root


def mex(config: AdfsConfig) -> ET.Element:
    """WS-MetadataExchange: a WSDL naming the WS-Trust active endpoints (§4.2)."""
    root = ET.Element(f"{{{WSDL}}}definitions", name="SecurityTokenService", targetNamespace=TNS)
    service = base.sub(root, f"{{{WSDL}}}service", name="SecurityTokenService")
    ports = (
        ("UserNameWSTrustBinding_IWSTrustFeb2005Async", "2005/usernamemixed"),
        ("WindowsTransportBinding_IWSTrustFeb2005Async", "2005/windowstransport"),
        ("UserNameWSTrustBinding_IWSTrust13Async", "13/usernamemixed"),
    )
    for name, path in ports:
        port = base.sub(service, f"{{{WSDL}}}port", name=name, binding=f"tns:{name}")
        address = f"https://{config.sts_host}/adfs/services/trust/{path}"
        base.sub(port, f"{{{SOAP12}}}address", location=address)
        reference = base.sub(port, f"{{{WSA}}}EndpointReference")
        base.sub(reference, f"{{{WSA}}}Address", address)
    return root


_SIGN_IN = """<!DOCTYPE html><html lang="en"><head><title>Sign In</title></head><body>
<form method="post" id="loginForm" autocomplete="off" action="/adfs/ls/">
<input id="userNameInput" name="UserName" type="email" placeholder="someone@example.com">
<input id="passwordInput" name="Password" type="password" placeholder="Password">
<span id="submitButton" role="button">Sign in</span>
<input id="optionForms" type="hidden" name="AuthMethod" value="FormsAuthentication">
</form></body></html>"""

# HTTP.sys answers for AD FS when the service (or the WAP in front of it) is down.
_HTTPSYS_503 = (
    '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN""http://www.w3.org/TR/html4/strict.dtd">'
    "<HTML><HEAD><TITLE>Service Unavailable</TITLE></HEAD><BODY><h2>Service Unavailable</h2>"
    "<hr><p>HTTP Error 503. The service is unavailable.</p></BODY></HTML>"
)


def make_app(config: AdfsConfig) -> web.Application:
    sts = f"https://{config.sts_host}/adfs"

    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.path.lower()
        if path in (
            "/federationmetadata/2007-06/federationmetadata.xml",
            "/adfs/services/trust/mex",
        ):
            if config.metadata_status != 200:
                # §1.3: "Failed to retrieve ADFS metadata … HTTP 503" (AD FS/WAP down).
                return web.Response(
                    status=config.metadata_status, text=_HTTPSYS_503, content_type="text/html"
                )
            if path.endswith("mex"):
                return base.xml_response(mex(config), prefixes=_MEX_PREFIXES)
            return base.xml_response(metadata(config), prefixes=_METADATA_PREFIXES)
        if path in ("/adfs/ls", "/adfs/ls/"):
            return web.Response(text=_SIGN_IN, content_type="text/html")
        if path == "/adfs/probe":
            return web.Response(status=200)  # load-balancer probe (§4.2, [uncertain])
        if path == "/adfs/.well-known/openid-configuration":
            return base.json_response(
                {
                    "issuer": sts,
                    "authorization_endpoint": f"{sts}/oauth2/authorize/",
                    "token_endpoint": f"{sts}/oauth2/token/",
                    "jwks_uri": f"{sts}/discovery/keys",
                    "response_types_supported": ["code", "id_token", "code id_token"],
                }
            )
        return base.not_found()

    return base.make_app(config.faults, handle)
