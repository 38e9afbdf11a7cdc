"""The customer's own Exchange Server (hybrid): autodiscover.<domain> and mail.<domain>.

IIS in front, Windows authentication: unauthenticated POX, EWS and MAPI get Negotiate, NTLM
and Basic challenges; ActiveSync OPTIONS gets Basic (§2.1, §3.1, §3.2). Autodiscover v2
answers without authentication, pointing at mail.<domain> (§2.7).
"""

from __future__ import annotations

from aiohttp import web

from sandbox.services import base, exo, pox, v2
from sandbox.services.configs import Mailbox, OnPremConfig

_V2_PATHS = {
    "ActiveSync": "/Microsoft-Server-ActiveSync",
    "Ews": "/EWS/Exchange.asmx",
    "Rest": "/api",
}


def _windows_challenges(host: str) -> list[str]:
    return ["Negotiate", "NTLM", f'Basic realm="{host}"']


def decide_pox(config: OnPremConfig, mailbox: Mailbox | None) -> pox.Outcome:
    if mailbox is None or mailbox.location == "none":
        return pox.NotFound()
    if mailbox.location == "exo":
        # Remote mailbox: on-prem points Outlook at the cloud routing address (§2.5 redirectAddr).
        routing = (
            config.cloud_routing_domain or f"{mailbox.domain.split('.')[0]}.mail.onmicrosoft.com"
        )
        return pox.RedirectAddr(f"{mailbox.smtp.partition('@')[0]}@{routing}")
    return pox.Settings(mailbox)


def make_app(config: OnPremConfig) -> web.Application:
    site = pox.Site(
        host=config.mail_host,
        microsoft_online=False,
        organisation="First Organization",  # Exchange setup's default organisation name
        auth_package="Ntlm",
        owa_auth="Fba",
    )
    headers = dict(base.IIS_HEADERS)

    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.path.lower().rstrip("/")
        if v2.is_v2_path(path):
            return _autodiscover_v2(request, config)
        if path in ("/autodiscover/autodiscover.xml", "/autodiscover/autodiscover.svc"):
            if not base.has_credentials(request) or path.endswith(".svc"):
                return base.unauthorized(_windows_challenges(config.host), headers)
            return await pox.handle(
                request,
                mailboxes=config.mailboxes,
                site=site,
                decide=lambda mailbox: decide_pox(config, mailbox),
                headers=headers,
            )
        if path == "/microsoft-server-activesync":
            if request.method == "OPTIONS" and base.has_credentials(request):
                return exo.eas_options(config.eas_version, headers)
            return base.unauthorized([f'Basic realm="{config.host}"'], headers)
        if path.startswith(("/ews", "/mapi")):
            return base.unauthorized(_windows_challenges(config.host), headers)
        if path == "":
            return web.Response(status=302, headers={**headers, "Location": "/owa/"})
        if path == "/owa":
            return base.html_page(200, "Outlook", headers)
        return base.not_found(headers)

    return base.make_app(config.faults, handle)


def _autodiscover_v2(request: web.Request, config: OnPremConfig) -> web.Response:
    headers = dict(base.IIS_HEADERS)
    parsed = v2.parse(request, exo.V2_PROTOCOLS, headers)
    if isinstance(parsed, web.Response):
        return parsed
    if parsed.protocol == "AutodiscoverV1":
        url = f"https://{config.host}/autodiscover/autodiscover.xml"
    else:
        url = f"https://{config.mail_host}{_V2_PATHS[parsed.protocol]}"
    return base.json_response({"Protocol": parsed.protocol, "Url": url}, headers=headers)
