"""Autodiscover v2: the unauthenticated JSON endpoint (reference §2.7).

Both request forms are accepted:
  /autodiscover/autodiscover.json/v1.0/{email}?Protocol=P
  /autodiscover/autodiscover.json?Email={email}&Protocol=P&RedirectCount=n
Protocol names are matched case-insensitively and echoed back in their canonical spelling.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web

from sandbox.services.base import json_response, query_param

JSON_PATH = "/autodiscover/autodiscover.json"
_PATH_FORM = JSON_PATH + "/v1.0/"


@dataclass(frozen=True)
class V2Request:
    email: str
    protocol: str  # canonical spelling, e.g. "ActiveSync"
    protocol_as_sent: str
    redirect_count: int | None


def is_v2_path(lower_path: str) -> bool:
    return lower_path == JSON_PATH or lower_path.startswith(_PATH_FORM)


def parse(
    request: web.Request, supported: tuple[str, ...], headers: Mapping[str, str]
) -> V2Request | web.Response:
    """The request, or the 400 answer for it."""
    path = request.path  # percent-decoded: a path-form address may arrive as user%40domain
    if path.lower().startswith(_PATH_FORM):
        email = path[len(_PATH_FORM) :]
    else:
        email = query_param(request, "Email") or ""
    sent = query_param(request, "Protocol") or ""
    canonical = {name.lower(): name for name in supported}.get(sent.lower())
    if canonical is None:
        # §2.7: HTTP 400 InvalidProtocol (exact EXO wording [uncertain]).
        return json_response(
            {
                "ErrorCode": "InvalidProtocol",
                "ErrorMessage": f"The given protocol value '{sent}' is invalid. "
                f"Supported values are '{','.join(supported)}'",
            },
            status=400,
            headers=headers,
        )
    if "@" not in email.strip("@"):
        # Missing or malformed address: the error code and text are [uncertain].
        return json_response(
            {
                "ErrorCode": "InvalidUser",
                "ErrorMessage": "The email address is missing or invalid.",
            },
            status=400,
            headers=headers,
        )
    count_text = query_param(request, "RedirectCount")
    count = int(count_text) if count_text and count_text.isdigit() else None
    return V2Request(email.lower(), canonical, sent, count)


def redirect_url(host: str, email: str, protocol: str, redirect_count: int) -> str:
    """The query form, as EXO writes it in a hybrid 302 (§2.7)."""
    return (
        f"https://{host}{JSON_PATH}?Email={quote(email, safe='@')}"
        f"&Protocol={quote(protocol)}&RedirectCount={redirect_count}"
    )


def moved(location: str, headers: Mapping[str, str]) -> web.Response:
    href = html.escape(location, quote=True)
    body = (
        "<html><head><title>Object moved</title></head>"
        f'<body><h2>Object moved to <a href="{href}">here</a>.</h2></body></html>'
    )
    return web.Response(
        status=302, text=body, content_type="text/html", headers={**headers, "Location": location}
    )
