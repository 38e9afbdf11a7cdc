"""outlook.office365.com: Autodiscover v2 and POX, ActiveSync, EWS and MAPI front doors.

Nothing here validates a token: the sandbox has no credentials to check. A request that
carries any `Authorization` header counts as signed in where the brief needs it (EAS
OPTIONS, POX); EWS and MAPI always challenge.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from http import HTTPStatus

from aiohttp import web

from sandbox.services import base, pox, v2
from sandbox.services.configs import ExoConfig, Mailbox
from sandbox.tenant import exo_admin
from sandbox.tenant.state import TenantState

# §2.7: protocol → path on the EXO host (Rest points at outlook.office.com, from config).
_V2_PATHS = {
    "ActiveSync": "/Microsoft-Server-ActiveSync",
    "Ews": "/EWS/Exchange.asmx",
    "AutodiscoverV1": "/autodiscover/autodiscover.xml",
}
V2_PROTOCOLS = ("Rest", "ActiveSync", "Ews", "AutodiscoverV1")

# §3.1, MS-ASHTTP §3.2.5.2: what a successful OPTIONS advertises.
EAS_VERSIONS = "2.0,2.1,2.5,12.0,12.1,14.0,14.1,16.0,16.1"
EAS_COMMANDS = (
    "Sync,SendMail,SmartForward,SmartReply,GetAttachment,GetHierarchy,CreateCollection,"
    "DeleteCollection,MoveCollection,FolderSync,FolderCreate,FolderDelete,FolderUpdate,MoveItems,"
    "GetItemEstimate,MeetingResponse,Search,Settings,Ping,ItemOperations,Provision,"
    "ResolveRecipients,ValidateCert,Find"
)

# EXO's own application id and issuer in its Bearer challenge: seen in live traffic, not in the
# reference [uncertain]; the reference fixes only `Bearer authorization_uri=…` (§3.2).
_EXO_APP_ID = "00000002-0000-0ff1-ce00-000000000000"
_ISSUER = "00000001-0000-0000-c000-000000000000@*"


def bearer_challenge(login_host: str, *, token_sent: bool) -> str:
    challenge = (
        f'Bearer client_id="{_EXO_APP_ID}", trusted_issuers="{_ISSUER}", '
        'token_types="app_asserted_user_v1 service_asserted_app_v1", '
        f'authorization_uri="https://{login_host}/common/oauth2/authorize"'
    )
    # RFC 6750 §3: error="invalid_token" only when a token was presented.
    return challenge + (', error="invalid_token"' if token_sent else "")


def exo_challenges(request: web.Request, login_host: str) -> list[str]:
    token_sent = request.headers.get("Authorization", "").lower().startswith("bearer ")
    # EXO also offers Basic with an empty realm [uncertain: observed, not in the reference].
    return [bearer_challenge(login_host, token_sent=token_sent), 'Basic Realm=""']


def diagnostic_headers(host: str, counter: Iterator[int]) -> dict[str, str]:
    """EXO's diagnostic headers (§3.1), deterministic per app instance."""
    n = next(counter)
    backend = "AM0PR01MB0001"
    return {
        **base.IIS_HEADERS,
        "request-id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{host}/{n}")),
        "X-CalculatedBETarget": f"{backend}.eurprd01.prod.outlook.com",
        "X-BEServer": backend,
        "X-FEServer": "AM0PR02CA0001",
        "X-DiagInfo": backend,
    }


def make_app(config: ExoConfig, tenant: TenantState | None = None) -> web.Application:
    """`tenant`: the world's tenant, for the admin API (/adminapi/…, reference §6.3)."""
    counter = itertools.count(1)
    site = pox.Site(
        host=config.exo_host,
        microsoft_online=True,
        organisation="ExchangeLabs",
        auth_package="Basic",
        owa_auth="LiveIdFba, OAuth",
    )

    async def handle(request: web.Request) -> web.StreamResponse:
        headers = diagnostic_headers(config.exo_host, counter)
        if config.server_error is not None:
            title = f"{config.server_error} {HTTPStatus(config.server_error).phrase}"
            return base.html_page(config.server_error, title, headers)
        path = request.path.lower().rstrip("/")
        if path.startswith("/adminapi/"):
            return await exo_admin.handle(request, tenant, headers)
        if v2.is_v2_path(path):
            return _autodiscover_v2(request, config, headers, tenant)
        if path in ("/autodiscover/autodiscover.xml", "/autodiscover/autodiscover.svc"):
            if not base.has_credentials(request) or path.endswith(".svc"):
                # SOAP (.svc) is not played: it always challenges.
                return base.unauthorized(exo_challenges(request, config.login_host), headers)
            return await pox.handle(
                request,
                mailboxes=tenant.mailboxes(config.mailboxes) if tenant else config.mailboxes,
                site=site,
                decide=lambda mailbox: decide_pox(config.onprem_autodiscover_host, mailbox),
                headers=headers,
            )
        if path == "/microsoft-server-activesync":
            if request.method == "OPTIONS" and base.has_credentials(request):
                return eas_options(config.eas_version, headers)
            return base.unauthorized(exo_challenges(request, config.login_host), headers)
        if path.startswith(("/ews", "/mapi")):
            return base.unauthorized(exo_challenges(request, config.login_host), headers)
        return base.not_found(headers)

    return base.make_app(config.faults, handle)


def eas_options(server_version: str, headers: dict[str, str]) -> web.Response:
    """200 to OPTIONS /Microsoft-Server-ActiveSync, headers exactly as §3.1."""
    return web.Response(
        status=200,
        headers={
            **headers,
            "Allow": "OPTIONS,POST",
            "MS-Server-ActiveSync": server_version,
            "MS-ASProtocolVersions": EAS_VERSIONS,
            "MS-ASProtocolCommands": EAS_COMMANDS,
            "Public": "OPTIONS,POST",
        },
    )


def _find(mailboxes: tuple[Mailbox, ...], email: str) -> Mailbox | None:
    return next((m for m in mailboxes if email in (m.address, m.smtp)), None)


def _autodiscover_v2(
    request: web.Request,
    config: ExoConfig,
    headers: dict[str, str],
    tenant: TenantState | None = None,
) -> web.Response:
    parsed = v2.parse(request, V2_PROTOCOLS, headers)
    if isinstance(parsed, web.Response):
        return parsed
    boxes = tenant.mailboxes(config.mailboxes) if tenant is not None else config.mailboxes
    mailbox = _find(boxes, parsed.email)
    next_count = parsed.redirect_count + 1 if parsed.redirect_count is not None else 3
    if mailbox is not None and mailbox.location == "onprem":
        # §2.7 hybrid: 302 to the on-prem query form. The doc's example carries RedirectCount=3;
        # we count up from the client's value and use 3 when it sent none [uncertain].
        host = config.onprem_autodiscover_host or f"autodiscover.{mailbox.domain}"
        location = v2.redirect_url(host, parsed.email, parsed.protocol_as_sent, next_count)
        return v2.moved(location, headers)
    if (
        mailbox is not None
        and mailbox.location == "exo"
        and parsed.protocol == "AutodiscoverV1"
        and mailbox.smtp != parsed.email
    ):
        # §2.7 [code; uncertain]: an alias is answered with a 302 naming the primary address.
        count = (parsed.redirect_count or 0) + 1
        location = v2.redirect_url(config.exo_host, mailbox.smtp, parsed.protocol_as_sent, count)
        return v2.moved(location, headers)
    if (mailbox is None or mailbox.location == "none") and config.unknown_address == "not-found":
        return base.json_response(
            {"ErrorCode": "UserNotFound", "ErrorMessage": "The user could not be found."},
            status=404,
            headers=headers,
        )
    # Known EXO mailbox, or an address EXO does not know with unknown_address="generic":
    # the generic EXO URL (see ExoConfig).
    url = (
        config.rest_url
        if parsed.protocol == "Rest"
        else f"https://{config.exo_host}{_V2_PATHS[parsed.protocol]}"
    )
    return base.json_response({"Protocol": parsed.protocol, "Url": url}, headers=headers)


def decide_pox(onprem_autodiscover_host: str | None, mailbox: Mailbox | None) -> pox.Outcome:
    """What EXO's POX endpoint answers for one directory entry (§2.3, §2.5)."""
    if mailbox is None or mailbox.location == "none":
        return pox.NotFound()  # ErrorCode 500 "The email address can't be found."
    if mailbox.location == "onprem":
        # Hybrid mail user: send Outlook to the customer's own Autodiscover [uncertain].
        host = onprem_autodiscover_host or f"autodiscover.{mailbox.domain}"
        return pox.RedirectUrl(f"https://{host}/autodiscover/autodiscover.xml")
    return pox.Settings(mailbox)
