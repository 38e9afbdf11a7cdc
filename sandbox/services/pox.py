"""POX Autodiscover (plain-old-XML), shared by EXO, autodiscover-s and on-prem Exchange.

Request and response shapes: reference §2.4 (request), §2.5 (Outlook provider), §2.6
(MobileSync provider). Namespaces are the `http://` form the wire uses (reference preamble).
Errors travel as XML in a 200 answer; ErrorCode values per MS-OXDSCLI (§2.5).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal
from xml.etree import ElementTree as ET

from aiohttp import web

from sandbox.services.base import sub, xml_response
from sandbox.services.configs import Mailbox

_SCHEMAS = "http://schemas.microsoft.com/exchange/autodiscover"
REQ_OUTLOOK = f"{_SCHEMAS}/outlook/requestschema/2006"
REQ_MOBILESYNC = f"{_SCHEMAS}/mobilesync/requestschema/2006"
RESP_BASE = f"{_SCHEMAS}/responseschema/2006"
RESP_OUTLOOK = f"{_SCHEMAS}/outlook/responseschema/2006a"
RESP_MOBILESYNC = f"{_SCHEMAS}/mobilesync/responseschema/2006"

Provider = Literal["outlook", "mobilesync"]
_RESPONSE_SCHEMA: dict[Provider, str] = {"outlook": RESP_OUTLOOK, "mobilesync": RESP_MOBILESYNC}

# ErrorCode → Message. 500 text is EXO's (§2.3, §2.5); 600/601 wording is [uncertain].
MESSAGES = {
    500: "The email address can't be found.",
    600: "Invalid Request",
    601: "The requested schema is not available.",
}


@dataclass(frozen=True)
class PoxRequest:
    provider: Provider
    email: str | None
    legacy_dn: str | None


@dataclass(frozen=True)
class PoxFault:
    code: int  # 600 invalid request, 601 provider/schema not available
    provider: Provider | None  # None when the body is not even a POX request


def parse_request(body: bytes) -> PoxRequest | PoxFault:
    if b"<!DOCTYPE" in body.upper():
        return PoxFault(600, None)  # no DTDs: nothing to expand, and Exchange refuses them too
    try:
        # Safe enough without defusedxml: DTDs are refused above, and only our own tests and
        # checks talk to the sandbox.
        root = ET.fromstring(body)  # noqa: S314
    except ET.ParseError:
        return PoxFault(600, None)
    providers: dict[str, Provider] = {
        f"{{{REQ_OUTLOOK}}}Autodiscover": "outlook",
        f"{{{REQ_MOBILESYNC}}}Autodiscover": "mobilesync",
    }
    provider = providers.get(root.tag)
    if provider is None:
        return PoxFault(600, None)
    ns = REQ_OUTLOOK if provider == "outlook" else REQ_MOBILESYNC
    request = root.find(f"{{{ns}}}Request")
    if request is None:
        return PoxFault(600, provider)
    email = (request.findtext(f"{{{ns}}}EMailAddress") or "").strip() or None
    legacy_dn = (request.findtext(f"{{{ns}}}LegacyDN") or "").strip() or None
    schema = (request.findtext(f"{{{ns}}}AcceptableResponseSchema") or "").strip()
    if email is None and legacy_dn is None:
        return PoxFault(600, provider)
    if schema != _RESPONSE_SCHEMA[provider]:
        return PoxFault(601, provider)
    return PoxRequest(provider, email.lower() if email else None, legacy_dn)


# What the directory decided for one address.
@dataclass(frozen=True)
class Settings:
    mailbox: Mailbox


@dataclass(frozen=True)
class RedirectUrl:
    url: str


@dataclass(frozen=True)
class RedirectAddr:
    address: str


@dataclass(frozen=True)
class NotFound:
    pass


Outcome = Settings | RedirectUrl | RedirectAddr | NotFound


@dataclass(frozen=True)
class Site:
    """Where the settings a server hands out point, and how it labels itself."""

    host: str  # EWS / MAPI / EAS host in the answer
    microsoft_online: bool  # <MicrosoftOnline>True</MicrosoftOnline> for EXO (§2.5)
    organisation: str  # LegacyDN /o=… (EXO: ExchangeLabs)
    auth_package: str  # EXPR AuthPackage
    owa_auth: str  # OWAUrl AuthenticationMethod
    deployment_id: str | None = None


def find_mailbox(mailboxes: Iterable[Mailbox], request: PoxRequest, site: Site) -> Mailbox | None:
    for mailbox in mailboxes:
        if request.email is not None and request.email in (mailbox.address, mailbox.smtp):
            return mailbox
        if (
            request.legacy_dn is not None
            and request.legacy_dn.lower() == legacy_dn(mailbox, site).lower()
        ):
            return mailbox
    return None


def legacy_dn(mailbox: Mailbox, site: Site) -> str:
    alias = mailbox.smtp.partition("@")[0]
    cn = f"{mailbox.mailbox_guid.replace('-', '')}-{alias}" if site.microsoft_online else alias
    group = "Exchange Administrative Group (FYDIBOHF23SPDLT)"
    return f"/o={site.organisation}/ou={group}/cn=Recipients/cn={cn}"


async def handle(
    request: web.Request,
    *,
    mailboxes: Iterable[Mailbox],
    site: Site,
    decide: Callable[[Mailbox | None], Outcome],
    headers: dict[str, str],
) -> web.Response:
    """Answer one authenticated POX request (authentication is the caller's job)."""
    # Only POST carries a request body; a GET with credentials is an invalid request.
    parsed = (
        parse_request(await request.read()) if request.method == "POST" else PoxFault(600, None)
    )
    if isinstance(parsed, PoxFault):
        return xml_response(error_xml(parsed.code, parsed.provider, key="fault"), headers=headers)
    mailbox = find_mailbox(mailboxes, parsed, site)
    outcome = decide(mailbox)
    mapi = request.headers.get("X-MapiHttpCapability", "").strip() not in ("", "0")
    key = parsed.email or parsed.legacy_dn or ""
    root = (
        outlook_xml(outcome, site, mapi=mapi, key=key)
        if parsed.provider == "outlook"
        else mobilesync_xml(outcome, site, key=key)
    )
    return xml_response(root, headers=headers)


def _error_stamp(key: str) -> dict[str, str]:
    # Real servers stamp wall-clock time and a random id; ours derive both from the request
    # so that answers are reproducible.
    crc = zlib.crc32(key.encode())
    time = f"{crc % 24:02d}:{crc // 24 % 60:02d}:{crc // 1440 % 60:02d}.{crc % 100:02d}"
    return {"Time": time, "Id": str(crc)}


def error_xml(code: int, provider: Provider | None, *, key: str) -> ET.Element:
    """Error answer.

    Outlook form (and unparseable bodies): Response in the *base* namespace (§2.5).
    MobileSync form: Action/Error with Status 2 = protocol error, as in the §2.6 example.
    """
    root = ET.Element(f"{{{RESP_BASE}}}Autodiscover")
    message = MESSAGES.get(code, "")
    if provider == "mobilesync":
        response = sub(root, f"{{{RESP_MOBILESYNC}}}Response")
        sub(response, f"{{{RESP_MOBILESYNC}}}Culture", "en:us")
        error = sub(sub(response, f"{{{RESP_MOBILESYNC}}}Action"), f"{{{RESP_MOBILESYNC}}}Error")
        sub(error, f"{{{RESP_MOBILESYNC}}}Status", "2")
        sub(error, f"{{{RESP_MOBILESYNC}}}Message", message)
        sub(error, f"{{{RESP_MOBILESYNC}}}DebugData")
        sub(error, f"{{{RESP_MOBILESYNC}}}ErrorCode", str(code))
        return root
    error = sub(sub(root, f"{{{RESP_BASE}}}Response"), f"{{{RESP_BASE}}}Error", **_error_stamp(key))
    sub(error, f"{{{RESP_BASE}}}ErrorCode", str(code))
    sub(error, f"{{{RESP_BASE}}}Message", message)
    sub(error, f"{{{RESP_BASE}}}DebugData")
    return root


def outlook_xml(outcome: Outcome, site: Site, *, mapi: bool, key: str) -> ET.Element:
    """Outlook provider answer (§2.5): settings, redirectAddr or redirectUrl."""
    if isinstance(outcome, NotFound):
        return error_xml(500, "outlook", key=key)
    root = ET.Element(f"{{{RESP_BASE}}}Autodiscover")
    response = sub(root, f"{{{RESP_OUTLOOK}}}Response")

    def el(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
        return sub(parent, f"{{{RESP_OUTLOOK}}}{tag}", text, **attrib)

    if isinstance(outcome, Settings):
        mailbox = outcome.mailbox
        user = el(response, "User")
        el(user, "DisplayName", mailbox.display_name or mailbox.smtp)
        el(user, "LegacyDN", legacy_dn(mailbox, site))
        el(user, "AutoDiscoverSMTPAddress", mailbox.smtp)
        if site.deployment_id:
            el(user, "DeploymentId", site.deployment_id)
    account = el(response, "Account")
    el(account, "AccountType", "email")
    if isinstance(outcome, RedirectAddr):
        el(account, "Action", "redirectAddr")
        el(account, "RedirectAddr", outcome.address)
        return root
    if isinstance(outcome, RedirectUrl):
        el(account, "Action", "redirectUrl")
        el(account, "RedirectUrl", outcome.url)
        return root
    el(account, "Action", "settings")
    if site.microsoft_online:
        el(account, "MicrosoftOnline", "True")
    base = f"https://{site.host}"
    mailbox_id = f"{outcome.mailbox.mailbox_guid}@{outcome.mailbox.smtp.partition('@')[2]}"
    if mapi:  # only when the client sent X-MapiHttpCapability: 1 (§2.4, §2.5)
        proto = el(account, "Protocol", Type="mapiHttp", Version="1")
        for part, path in (("MailStore", "emsmdb"), ("AddressBook", "nspi")):
            url = f"{base}/mapi/{path}/?MailboxId={mailbox_id}"
            block = el(proto, part)
            el(block, "InternalUrl", url)
            el(block, "ExternalUrl", url)
    expr = el(account, "Protocol")
    el(expr, "Type", "EXPR")
    el(expr, "Server", site.host)
    el(expr, "SSL", "On")
    el(expr, "AuthPackage", site.auth_package)
    el(expr, "ASUrl", f"{base}/EWS/Exchange.asmx")
    el(expr, "EwsUrl", f"{base}/EWS/Exchange.asmx")
    el(expr, "OOFUrl", f"{base}/EWS/Exchange.asmx")
    el(expr, "OABUrl", f"{base}/OAB/{outcome.mailbox.mailbox_guid}/")
    web_proto = el(account, "Protocol")
    el(web_proto, "Type", "WEB")
    for side in ("Internal", "External"):
        el(el(web_proto, side), "OWAUrl", f"{base}/owa/", AuthenticationMethod=site.owa_auth)
    return root


def mobilesync_xml(outcome: Outcome, site: Site, *, key: str) -> ET.Element:
    """MobileSync provider answer (§2.6): Settings/Server or Redirect."""
    if isinstance(outcome, NotFound | RedirectUrl):
        # MobileSync has no URL redirect; an address this server cannot serve is "not found".
        return error_xml(500, "mobilesync", key=key)
    root = ET.Element(f"{{{RESP_BASE}}}Autodiscover")
    response = sub(root, f"{{{RESP_MOBILESYNC}}}Response")

    def el(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
        return sub(parent, f"{{{RESP_MOBILESYNC}}}{tag}", text)

    el(response, "Culture", "en:us")
    if isinstance(outcome, RedirectAddr):
        el(el(response, "Action"), "Redirect", outcome.address)
        return root
    mailbox = outcome.mailbox
    user = el(response, "User")
    el(user, "DisplayName", mailbox.display_name or mailbox.smtp)
    el(user, "EMailAddress", mailbox.smtp)
    server = el(el(el(response, "Action"), "Settings"), "Server")
    url = f"https://{site.host}/Microsoft-Server-ActiveSync"
    el(server, "Type", "MobileSync")
    el(server, "Url", url)
    el(server, "Name", url)
    return root
