"""autodiscover.outlook.com (the CNAME target) and autodiscover-s.outlook.com (POX).

§2.1 step 4 and §2.3: a plain-HTTP GET to autodiscover.<domain>, CNAME'd to
autodiscover.outlook.com, is answered with a 302 to autodiscover-s.outlook.com, where the
client re-POSTs its POX request over HTTPS.
"""

from __future__ import annotations

import itertools

from aiohttp import web

from sandbox.services import base, exo, pox
from sandbox.services.configs import AutodiscoverRedirectConfig, AutodiscoverSConfig
from sandbox.tenant.state import TenantState

_POX_PATH = "/autodiscover/autodiscover.xml"


def make_redirect_app(config: AutodiscoverRedirectConfig) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        # Clients send GET (§2.1 step 4). The same answer to POST, and over HTTPS, is [uncertain]:
        # over HTTPS the certificate never names the customer's domain, so clients stop earlier.
        if request.path.lower() == _POX_PATH and request.method in ("GET", "HEAD", "POST"):
            return web.Response(
                status=302,
                headers={**base.IIS_HEADERS, "Location": config.target},
                text="",
            )
        return base.not_found(base.IIS_HEADERS)

    return base.make_app(config.faults, handle)


def make_pox_app(config: AutodiscoverSConfig, tenant: TenantState | None = None) -> web.Application:
    """`tenant`: the world's tenant; where it knows an address, its mailbox location wins."""
    counter = itertools.count(1)
    site = pox.Site(
        host=config.exo_host,
        microsoft_online=True,
        organisation="ExchangeLabs",
        auth_package="Basic",
        owa_auth="LiveIdFba, OAuth",
        deployment_id=config.tenant_id,
    )

    async def handle(request: web.Request) -> web.StreamResponse:
        headers = exo.diagnostic_headers(config.host, counter)
        path = request.path.lower()
        if path not in (_POX_PATH, "/autodiscover/autodiscover.svc"):
            return base.not_found(headers)
        if not base.has_credentials(request) or path.endswith(".svc"):
            # KB 2466333 (§1.3): the unauthenticated POX POST is met with 401 + challenges.
            return base.unauthorized(exo.exo_challenges(request, config.login_host), headers)
        return await pox.handle(
            request,
            mailboxes=tenant.mailboxes(config.mailboxes) if tenant else config.mailboxes,
            site=site,
            decide=lambda mailbox: exo.decide_pox(config.onprem_autodiscover_host, mailbox),
            headers=headers,
        )

    return base.make_app(config.faults, handle)
