"""What every sandbox HTTP role shares: request recording, fault knobs, response helpers.

Each role is one catch-all handler that dispatches on the lower-cased path, because the
servers it plays (IIS for Exchange and AD FS) match paths case-insensitively — RCA asks for
`/Autodiscover/Autodiscover.xml`, Outlook for `/autodiscover/autodiscover.xml` (§1.3, §2.1).
"""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import NamedTuple
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

from aiohttp import web

from sandbox.services.configs import Faults

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Headers kept in the request log. Authorization is reduced to its scheme: never log tokens.
_RECORDED = (
    "Host",
    "Authorization",
    "Content-Type",
    "User-Agent",
    "Accept",
    "X-MapiHttpCapability",
    "X-ClientCanHandle",
    "MS-ASProtocolVersion",
    "X-AnchorMailbox",
)

GARBAGE = b"\x1f\x8b\x08\x00\xff\xfe<<not-a-protocol-answer>>\x00\r\n}{"

IIS_HEADERS: Mapping[str, str] = {"Server": "Microsoft-IIS/10.0", "X-Powered-By": "ASP.NET"}


class SeenRequest(NamedTuple):
    """One request as the app received it. `path` is the raw path with its query string."""

    method: str
    path: str
    headers: dict[str, str]


def seen_requests(app: web.Application) -> list[SeenRequest]:
    """The requests `app` has seen, oldest first (also `app["requests"]`)."""
    requests: list[SeenRequest] = app["requests"]
    return requests


def _record(request: web.Request) -> SeenRequest:
    kept: dict[str, str] = {}
    for name in _RECORDED:
        value = request.headers.get(name)
        if value is None:
            continue
        if name == "Authorization":
            value = value.split(" ", 1)[0]  # scheme only
        kept[name] = value
    return SeenRequest(request.method, request.raw_path, kept)


def make_app(faults: Faults, role: Handler) -> web.Application:
    """An application whose every request is recorded, then faulted or handed to `role`."""

    @web.middleware
    async def record_and_fault(request: web.Request, handler: Handler) -> web.StreamResponse:
        seen_requests(request.app).append(_record(request))
        if faults.slow_ms:
            await asyncio.sleep(faults.slow_ms / 1000)
        if faults.status_override is not None:
            return fault_response(faults)
        if faults.garbage:
            return web.Response(status=200, body=GARBAGE, content_type="text/plain")
        return await handler(request)

    app = web.Application(middlewares=[record_and_fault])
    # The brief's contract is `app["requests"]`; aiohttp nudges towards AppKey, but a plain
    # string key keeps the request log readable from tests and the world helper alike.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        app["requests"] = []
    app.router.add_route("*", "/{tail:.*}", role)
    return app


def fault_response(faults: Faults) -> web.Response:
    status = faults.status_override or 503
    headers = {"Retry-After": str(faults.retry_after)} if faults.retry_after is not None else {}
    reason = web.Response(status=status).reason
    body = f"<html><body><h1>{status} {reason}</h1></body></html>"
    return web.Response(status=status, text=body, content_type="text/html", headers=headers)


def xml_bytes(root: ET.Element, prefixes: Mapping[str, str] | None = None) -> bytes:
    """Serialise an ElementTree built with `{uri}local` tags the way Microsoft servers write it.

    Namespaces not in `prefixes` (uri → prefix) become default namespaces (`xmlns="…"`),
    re-declared where they change — the nested-default style of Autodiscover answers (§2.5),
    which ElementTree cannot produce (it invents `ns0:`). Prefixed namespaces are declared once
    on the root so QName-valued attributes (`xsi:type="fed:…"`) resolve. Text and attribute
    values are escaped, so addresses echoed from a request cannot break the document.
    """
    prefixes = dict(prefixes or {})
    out: list[str] = ['<?xml version="1.0" encoding="utf-8"?>']

    def split(tag: str) -> tuple[str, str]:
        if tag.startswith("{"):
            uri, _, local = tag[1:].partition("}")
            return uri, local
        return "", tag

    def qname(uri: str, local: str) -> str:
        return f"{prefixes[uri]}:{local}" if uri in prefixes else local

    def walk(element: ET.Element, default_ns: str, is_root: bool) -> None:
        uri, local = split(element.tag)
        parts = [qname(uri, local)]
        if uri not in prefixes and uri != default_ns:
            parts.append(f"xmlns={quoteattr(uri)}")
            default_ns = uri
        if is_root:
            parts += [f"xmlns:{p}={quoteattr(u)}" for u, p in prefixes.items()]
        for name, value in element.attrib.items():
            a_uri, a_local = split(name)
            parts.append(f"{qname(a_uri, a_local) if a_uri else a_local}={quoteattr(value)}")
        out.append("<" + " ".join(parts))
        if element.text is None and len(element) == 0:
            out.append("/>")
            return
        out.append(">" + escape(element.text or ""))
        for child in element:
            walk(child, default_ns, False)
        out.append(f"</{parts[0]}>")

    walk(root, "", True)
    return "".join(out).encode()


def xml_response(
    root: ET.Element,
    *,
    prefixes: Mapping[str, str] | None = None,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    content_type: str = "text/xml",
) -> web.Response:
    return web.Response(
        status=status,
        body=xml_bytes(root, prefixes),
        content_type=content_type,
        charset="utf-8",
        headers=dict(headers or {}),
    )


def sub(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrib)
    if text is not None:
        element.text = text
    return element


def html_page(status: int, title: str, headers: Mapping[str, str] | None = None) -> web.Response:
    body = (
        f"<!DOCTYPE html><html><head><title>{title}</title></head>"
        f"<body><h1>{title}</h1></body></html>"
    )
    return web.Response(
        status=status, text=body, content_type="text/html", headers=dict(headers or {})
    )


def not_found(headers: Mapping[str, str] | None = None) -> web.Response:
    return html_page(404, "404 - File or directory not found.", headers)


def unauthorized(
    challenges: Iterable[str], headers: Mapping[str, str] | None = None
) -> web.Response:
    """401 carrying one `WWW-Authenticate` header per challenge, the way IIS sends them."""
    response = html_page(
        401, "401 - Unauthorized: Access is denied due to invalid credentials.", headers
    )
    for challenge in challenges:
        response.headers.add("WWW-Authenticate", challenge)
    return response


def query_param(request: web.Request, name: str) -> str | None:
    """ASP.NET reads query names case-insensitively (`Email` = `email`)."""
    for key, value in request.query.items():
        if key.lower() == name.lower():
            return value
    return None


def has_credentials(request: web.Request) -> bool:
    return bool(request.headers.get("Authorization", "").strip())


def json_response(
    body: object, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body, separators=(",", ":")),
        content_type="application/json",
        charset="utf-8",
        headers=dict(headers or {}),
    )
