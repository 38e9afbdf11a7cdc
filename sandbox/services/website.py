"""The customer's own web server at <domain> / www.<domain>.

Outlook tries https://<domain>/autodiscover/autodiscover.xml before autodiscover.<domain>
(§2.1 step 2, §2.2 step 6). A normal site answers 404 there. KB 3049615: a hosting panel
that answers Autodiscover itself (200, Outlook-schema XML whose Protocol Type is IMAP,
served by Apache) hijacks Outlook's lookup (§1.3).
"""

from __future__ import annotations

import re
from xml.etree import ElementTree as ET
from xml.sax.saxutils import unescape

from aiohttp import web

from sandbox.services import base, pox
from sandbox.services.configs import WebsiteConfig

_EMAIL = re.compile(rb"<(?:\w+:)?EMailAddress>\s*([^<\s]+)\s*</", re.IGNORECASE)


def _apache_page(config: WebsiteConfig, status: int, title: str, text: str) -> web.Response:
    body = (
        f'<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head><title>{status} {title}'
        f"</title></head><body>\n<h1>{title}</h1>\n<p>{text}</p>\n<hr>\n"
        f"<address>{config.server_header} Server at {config.domain} Port 443</address>\n"
        "</body></html>\n"
    )
    return web.Response(
        status=status, text=body, content_type="text/html", headers={"Server": config.server_header}
    )


def hijack_xml(config: WebsiteConfig, email: str) -> ET.Element:
    """What a hosting panel's Autodiscover answers: IMAP and SMTP, no Exchange (KB 3049615)."""
    root = ET.Element(f"{{{pox.RESP_BASE}}}Autodiscover")
    response = base.sub(root, f"{{{pox.RESP_OUTLOOK}}}Response")

    def el(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
        return base.sub(parent, f"{{{pox.RESP_OUTLOOK}}}{tag}", text)

    el(el(response, "User"), "DisplayName", email)
    account = el(response, "Account")
    el(account, "AccountType", "email")
    el(account, "Action", "settings")
    server = config.imap_host or f"mail.{config.domain}"
    for kind, port in (("IMAP", "993"), ("SMTP", "465")):
        proto = el(account, "Protocol")
        el(proto, "Type", kind)
        el(proto, "Server", server)
        el(proto, "Port", port)
        el(proto, "DomainRequired", "off")
        el(proto, "LoginName", email)
        el(proto, "SPA", "off")
        el(proto, "SSL", "on")
        el(proto, "AuthRequired", "on")
    return root


def make_app(config: WebsiteConfig) -> web.Application:
    server = {"Server": config.server_header}

    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.path.lower()
        if path == "/autodiscover/autodiscover.xml":
            return await _autodiscover(request, config)
        if path in ("/", "/index.html") and request.method in ("GET", "HEAD"):
            page = (
                f"<!DOCTYPE html><html><head><title>{config.domain}</title></head>"
                "<body><h1>Welcome</h1></body></html>"
            )
            return web.Response(text=page, content_type="text/html", headers=server)
        return _apache_page(
            config, 404, "Not Found", "The requested URL was not found on this server."
        )

    return base.make_app(config.faults, handle)


async def _autodiscover(request: web.Request, config: WebsiteConfig) -> web.Response:
    match config.autodiscover:
        case "hijack-imap":
            found = _EMAIL.search(await request.read())
            # The panel echoes the address back; undo the request's XML escaping first so the
            # answer (escaped again on the way out) carries the same address.
            email = (
                unescape(found.group(1).decode("utf-8", "replace"), {"&apos;": "'", "&quot;": '"'})
                if found
                else ""
            )
            return base.xml_response(
                hijack_xml(config, email), headers={"Server": config.server_header}
            )
        case "redirect-elsewhere":
            return web.Response(
                status=302,
                headers={"Server": config.server_header, "Location": config.redirect_target},
            )
        case "500":
            return _apache_page(
                config,
                500,
                "Internal Server Error",
                "The server encountered an internal error or misconfiguration and was unable "
                "to complete your request.",
            )
    return _apache_page(config, 404, "Not Found", "The requested URL was not found on this server.")
