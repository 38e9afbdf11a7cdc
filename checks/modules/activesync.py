"""Does Exchange Online's ActiveSync endpoint answer like ActiveSync? (phones' native mail apps)

An unauthenticated OPTIONS, as the Remote Connectivity Analyzer's ActiveSync test does before
signing in (exchange-online-diagnostics.md §1.3 step 3, §3.1-3.2): Exchange Online answers 401
with a `WWW-Authenticate` challenge (or 200 with the MS-AS* headers). Anything else means
something in between answers in its place — a proxy rewriting OPTIONS, a captive portal — or
the service is unhealthy (5xx). Redirects are not followed: where they lead is the evidence.
"""

from __future__ import annotations

from typing import Any

from checks.models import Client, Finding, Side, Status, Step
from checks.modules._explain import explain
from checks.net.errors import NetError
from checks.net.types import HttpResponse
from checks.spec import Check, CheckContext

PATH = "/Microsoft-Server-ActiveSync"

# Headers worth showing. Never Authorization or cookies: we never send the first and do not
# need the second.
_SHOWN = (
    "www-authenticate",
    "ms-server-activesync",
    "ms-asprotocolversions",
    "ms-asprotocolcommands",
    "allow",
    "public",
    "retry-after",
    "x-ms-backoffduration",
    "location",
    "server",
    "via",
    "content-type",
    "x-feserver",
    "x-diaginfo",
    "request-id",
)

_PROXY_STEPS = [
    "Ask the network team whether a proxy, web filter or firewall handles traffic to "
    "{host}, and to let /Microsoft-Server-ActiveSync through untouched (no rewriting of "
    "OPTIONS requests).",
    "mailfix tested from the network it runs on; if the phone fails the same way, try it on "
    "another network (mobile data instead of Wi-Fi): if it works there, the problem is on "
    "the usual one.",
]


def _headers(resp: HttpResponse) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in _SHOWN:
        value = resp.header(name)
        if value is not None:
            out[name] = value if len(value) <= 300 else value[:299] + "…"
    return out


async def _endpoint(ctx: CheckContext) -> Finding:
    host = ctx.cloud.exo
    url = f"https://{host}{PATH}"
    step_name = f"OPTIONS {url}"
    try:
        resp = await ctx.net.request("OPTIONS", url, follow_redirects=False, max_body=64 * 1024)
    except NetError as exc:
        why = explain(exc, host=host, port=443, service="ActiveSync", microsoft=True)
        return why.finding(
            ENDPOINT,
            evidence={"url": url},
            steps=[why.step(step_name)],
        )
    headers = _headers(resp)
    status = resp.status
    evidence: dict[str, Any] = {"url": url, "status": status, "headers": headers}
    challenge = resp.header("www-authenticate")
    versions = resp.header("ms-asprotocolversions")

    def verdict(status_: Status, summary: str, problem: str | None = None, **kw: Any) -> Finding:
        ev = {**evidence, "problem": problem} if problem else evidence
        step = Step(name=step_name, status=status_, detail=f"HTTP {status}")
        return ENDPOINT.finding(status_, summary, evidence=ev, steps=[step], **kw)

    proxy_steps = [s.format(host=host) for s in _PROXY_STEPS]
    if status == 401 and challenge:
        return verdict(
            Status.PASS,
            f"The ActiveSync endpoint on {host} answers and asks for sign-in, as it should.",
        )
    if status == 200 and versions:
        return verdict(
            Status.PASS,
            f"The ActiveSync endpoint on {host} answers with protocol versions {versions}.",
        )
    if status >= 500:
        retry = resp.header("retry-after") or resp.header("x-ms-backoffduration")
        later = f" (it asks to retry after {retry})" if retry else ""
        if status == 503:
            return verdict(
                Status.FAIL,
                f"Exchange Online's ActiveSync service reports it is unavailable (HTTP 503)"
                f"{later}.",
                "service-degraded",
                detail="A 503 comes from the service side: Microsoft's servers are busy or "
                "having an incident. Nothing on the phone will fix it.",
                next_steps=[
                    "Check Service health in the Microsoft 365 admin center for Exchange Online.",
                    "Try again later; if it lasts, an administrator opens a case with Microsoft.",
                ],
            )
        gateway = status in (502, 504)
        return verdict(
            Status.FAIL,
            f"The ActiveSync endpoint answered with a server error (HTTP {status}){later}.",
            "activesync-blocked" if gateway else "service-degraded",
            detail="502 and 504 usually come from a proxy or gateway between the network "
            "mailfix runs on and Microsoft that could not reach it."
            if gateway
            else "",
            next_steps=proxy_steps
            if gateway
            else ["Check Service health in the Microsoft 365 admin center for Exchange Online."],
        )
    if 300 <= status < 400:
        where = resp.header("location") or "nowhere"
        return verdict(
            Status.FAIL,
            f"The ActiveSync request was redirected to {where}: a captive portal or a proxy is "
            "answering in Microsoft's place.",
            "activesync-blocked",
            next_steps=[
                "mailfix tested from the network it runs on. If the phone fails too on hotel or "
                "guest Wi-Fi, open a web page and accept the portal's terms first.",
                *proxy_steps,
            ],
        )
    if status == 407:
        return verdict(
            Status.FAIL,
            "A proxy on the network mailfix runs on wants its own sign-in (HTTP 407) before "
            "letting ActiveSync through; phones cannot do that.",
            "activesync-blocked",
            next_steps=proxy_steps,
        )
    if status == 200:
        what = "without the ActiveSync headers (MS-ASProtocolVersions)"
    elif status == 401:
        what = "with 401 but no sign-in challenge (WWW-Authenticate)"
    else:
        what = f"with HTTP {status}"
    return verdict(
        Status.FAIL,
        f"Something answered the ActiveSync request {what}: not Exchange ActiveSync, most likely "
        "a proxy or firewall rewriting or blocking it.",
        "activesync-blocked",
        detail="Exchange Online answers an unauthenticated OPTIONS with 401 and a challenge; "
        "a missing MS-Server-ActiveSync header means a firewall, reverse proxy or URL filter "
        "is blocking or rewriting OPTIONS.",
        next_steps=proxy_steps,
    )


ENDPOINT = Check(
    "activesync.endpoint",
    "ActiveSync endpoint",
    Side.NETWORK,
    frozenset({Client.MOBILE}),
    _endpoint,
    timeout=15.0,
)

CHECKS: tuple[Check, ...] = (ENDPOINT,)
