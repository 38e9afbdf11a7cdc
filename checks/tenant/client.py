"""The tenant client: Microsoft Graph and the Exchange Online admin API, app-only, on the seam.

Requests go through `Network.request` (the seam's httpx: our resolver, our CA bundle, the
address guard at every hop). Tokens come from `checks.tenant.auth` (msal on the same seam).

- Graph: https://{graph}/v1.0/… (beta only where asked: Conditional Access What-If), reference §5.
- Exchange: POST https://{exo}/adminapi/beta/{tenant}/InvokeCommand with the cmdlet envelope,
  X-AnchorMailbox APP:SystemMailbox{bb558c35-…}@{tenant} and Prefer odata.maxpagesize, §6.3 (a).
- Paging: `@odata.nextLink` is followed (GET again for Graph, POST the same body again for
  Exchange) up to `MAX_PAGES`, and only to the host the first request went to: the bearer token
  never leaves Graph or Exchange.
- Throttling (§5.5): 429 and 503/504 wait `Retry-After` (seconds or an HTTP date; else 1, 2,
  4 s), at most `MAX_RETRIES` times, and never past the diagnosis deadline: a wait that would
  pass it raises `Throttled` at once.
- 401: the token is dropped from msal's cache and fetched again, once.
- 403 (and Exchange's missing role): `PermissionMissing` naming the least-privileged permission
  or role for that request and where an admin grants it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from checks.cloud import CloudHosts
from checks.net.errors import NetError
from checks.net.seam import Network
from checks.net.types import HttpResponse
from checks.settings import CheckSettings
from checks.tenant import auth
from checks.tenant.errors import (
    PermissionMissing,
    TenantAuthFailed,
    TenantError,
    TenantNotFound,
    TenantUnavailable,
    Throttled,
)

MAX_PAGES = 50  # a page set longer than this is cut (servers may page at 2 items)
MAX_RETRIES = 3  # waits after a 429 / 503 / 504 before giving up
MAX_EXO_REDIRECTS = 3
MAX_WAIT = 30.0  # seconds; a longer Retry-After is not worth a diagnosis
BACKOFF = (1.0, 2.0, 4.0)  # when the server gives no Retry-After
DEADLINE_MARGIN = 0.5  # seconds kept free before the deadline for the request after the wait

# The app-only mailbox Exchange anchors admin calls to (reference §6.3 (a)).
EXO_ANCHOR = "APP:SystemMailbox{{bb558c35-97f1-4cb9-8ff7-d53741dc928c}}@{tenant}"

GRAPH_GRANT = (
    "Microsoft Graph application permission: Entra admin center > App registrations > the "
    "mailfix app > API permissions > Add a permission > Microsoft Graph > Application "
    "permissions, then Grant admin consent"
)
EXO_PERMISSION = "Exchange.ManageAsApp"
EXO_GRANT = (
    "application permission of Office 365 Exchange Online: Entra admin center > App "
    "registrations > the mailfix app > API permissions > Add a permission > APIs my "
    "organization uses > Office 365 Exchange Online > Application permissions > "
    "Exchange.ManageAsApp, then Grant admin consent"
)
EXO_READ_ROLE = "Global Reader"
EXO_WRITE_ROLE = "Exchange Recipient Administrator"


def exo_role_grant(role: str) -> str:
    return (
        f"Microsoft Entra role for the app: Entra admin center > Roles and administrators > "
        f"{role} > Add assignments > the mailfix app (Exchange.ManageAsApp alone is not enough)"
    )


# Least-privileged application permission per Graph request (PLAN "Least-privilege
# permissions"; Graph permission reference). First match wins; paths are lower-cased, no base.
_GRAPH_PERMISSIONS: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (method, re.compile(pattern), permission)
    for method, pattern, permission in (
        ("GET", r"^/users/[^/]+/mailboxsettings", "MailboxSettings.Read"),
        ("GET", r"^/users/[^/]+/licensedetails", "LicenseAssignment.Read.All"),
        ("GET", r"^/users/[^/]+/(transitivememberof|memberof)", "GroupMember.Read.All"),
        ("POST", r"^/users/[^/]+/assignlicense", "LicenseAssignment.ReadWrite.All"),
        ("PATCH", r"^/users/[^/]+$", "User.EnableDisableAccount.All"),
        ("GET", r"^/users", "User.Read.All"),
        ("POST", r"^/directory/deleteditems/[^/]+/restore", "User.ReadWrite.All"),
        ("GET", r"^/directory/deleteditems", "User.Read.All"),
        ("GET", r"^/auditlogs/signins", "AuditLog.Read.All"),
        ("*", r"^/admin/serviceannouncement", "ServiceHealth.Read.All"),
        ("POST", r"^/identity/conditionalaccess/evaluate", "Policy.Read.ConditionalAccess"),
        ("*", r"^/identity/conditionalaccess", "Policy.Read.All"),
        ("*", r"^/groups", "GroupMember.Read.All"),
        ("*", r"^/(rolemanagement|directoryroles)", "RoleManagement.Read.Directory"),
        ("*", r"^/subscribedskus", "LicenseAssignment.Read.All"),
        ("*", r"^/domains", "Domain.Read.All"),
    )
)
_KNOWN_PERMISSIONS = frozenset(p for _, _, p in _GRAPH_PERMISSIONS) | {
    "Directory.Read.All",
    "User.ReadWrite.All",
    "Policy.Read.All",
}
_PERMISSION_WORD = re.compile(r"\b[A-Z][A-Za-z]+(?:\.[A-Z][A-Za-z]+){1,3}\b")
# Sign-in logs through Graph need a premium tenant (reference §5: "tenant needs Entra ID P1/P2").
_NON_PREMIUM = "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
# Sign-in logs without Directory.Read.All: Graph cannot read the directory to check the licence
# (as reported in microsoftgraph/microsoft-graph-docs#2789).
_NO_DIRECTORY_READ = "Authentication_ApplicationHasNoDirectoryReadAccess"

_RECORDERS: contextvars.ContextVar[tuple[list[str], ...]] = contextvars.ContextVar(
    "tenant_recorders", default=()
)


def graph_permission(method: str, path: str) -> str:
    """The least-privileged Graph application permission for `method path` (no base, no query)."""
    lowered = path.lower().split("?", 1)[0]
    for want, pattern, permission in _GRAPH_PERMISSIONS:
        if want in ("*", method) and pattern.search(lowered):
            return permission
    return "Directory.Read.All"


def _quote_path(path: str) -> str:
    if not path.startswith("/"):
        path = "/" + path
    return quote(path, safe="/@:'()=,$!*+;~")


def _query(params: Mapping[str, str] | None) -> str:
    if not params:
        return ""
    # Graph wants %20 for spaces in $filter (not '+'); OData keys keep their '$'.
    return "?" + "&".join(
        f"{quote(k, safe='$')}={quote(str(v), safe=chr(39) + '@:,()/$*')}"
        for k, v in params.items()
    )


@contextlib.contextmanager
def recording() -> Iterator[list[str]]:
    """Collect the requests made inside this block (by this task and tasks it starts)."""
    sink: list[str] = []
    token = _RECORDERS.set((*_RECORDERS.get(), sink))
    try:
        yield sink
    finally:
        _RECORDERS.reset(token)


def _error_body(response: HttpResponse) -> tuple[str | None, str]:
    """(code, message) from a Graph or Exchange error body; never raises."""
    try:
        data = json.loads(response.body.decode("utf-8", errors="replace"))
    except ValueError:
        return None, ""
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return None, ""
    code = error.get("code")
    parts = [str(error.get("message") or "")]
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and detail.get("message"):
            parts.append(str(detail["message"]))
    inner = error.get("innererror") or error.get("innerError")
    if isinstance(inner, dict):
        internal = inner.get("internalException")
        if isinstance(internal, dict) and internal.get("message"):
            parts.append(str(internal["message"]))
    message = " ".join(p for p in parts if p)
    return (str(code) if code else None), message[:500]


def _retry_after(response: HttpResponse) -> float | None:
    return auth._retry_after(response.headers.get("retry-after"))


class TenantClient:
    """One per diagnosis (see `checks.tenant.tenant_client`); the msal application behind it
    is shared by the whole process. `last_requests` lists every resource request it made."""

    def __init__(
        self,
        settings: CheckSettings,
        net: Network,
        cloud: CloudHosts,
        *,
        deadline: float | None = None,  # time.monotonic() value no wait may pass
    ) -> None:
        self.settings = settings
        self.net = net
        self.cloud = cloud
        self.deadline = deadline
        self.last_requests: list[str] = []
        self.login_requests: list[str] = []  # what msal sent (URLs only), for evidence
        self._tokens: dict[str, auth.Token] = {}
        self._token_locks: dict[str, asyncio.Lock] = {}
        self._token_errors: dict[str, TenantError] = {}

    @property
    def tenant(self) -> str:
        return self.settings.tenant_id or ""

    # -- tokens --------------------------------------------------------------------------------

    async def _token(self, scope: str) -> str:
        lock = self._token_locks.setdefault(scope, asyncio.Lock())
        async with lock:
            failed = self._token_errors.get(scope)
            if failed is not None:  # one refusal per diagnosis is enough; do not ask again
                raise failed
            token = self._tokens.get(scope)
            if token is None or token.expires_at - 60 < time.monotonic():
                token = await self._acquire(scope)
                self.login_requests.extend(token.requests)
                self._tokens[scope] = token
            return token.value

    async def _acquire(self, scope: str) -> auth.Token:
        """msal's token, waiting out a throttled token request like any other (bounded)."""
        attempt = 0
        while True:
            try:
                return await auth.acquire_token(
                    self.settings, self.cloud, self.net, scope, deadline=self.deadline
                )
            except Throttled as exc:
                wait = exc.retry_after or BACKOFF[min(attempt, len(BACKOFF) - 1)]
                remaining = self._remaining()
                if (
                    attempt >= MAX_RETRIES
                    or wait > MAX_WAIT
                    or (remaining is not None and wait > remaining - DEADLINE_MARGIN)
                ):
                    raise
                attempt += 1
                await asyncio.sleep(wait)
            except TenantError as exc:
                self._token_errors[scope] = exc
                raise

    def _drop_token(self, scope: str) -> None:
        token = self._tokens.pop(scope, None)
        if token is not None:
            auth.forget_token(self.settings, self.cloud, token.value)

    # -- Graph ---------------------------------------------------------------------------------

    def graph_url(
        self, path: str, params: Mapping[str, str] | None = None, *, beta: bool = False
    ) -> str:
        version = "beta" if beta else "v1.0"
        return f"https://{self.cloud.graph}/{version}{_quote_path(path)}{_query(params)}"

    async def graph_get(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        beta: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """GET one Graph object. `path` is unencoded (the client percent-encodes it)."""
        data = await self._graph("GET", self.graph_url(path, params, beta=beta), path, headers)
        return data or {}

    async def graph_list(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        beta: bool = False,
        headers: Mapping[str, str] | None = None,
        max_pages: int = MAX_PAGES,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """GET a Graph collection, following @odata.nextLink (at most `max_pages` pages; with
        `limit`, no further page once that many items are in)."""
        url: str | None = self.graph_url(path, params, beta=beta)
        items: list[dict[str, Any]] = []
        pages = 0
        while url is not None and pages < max_pages and (limit is None or len(items) < limit):
            data = await self._graph("GET", url, path, headers) or {}
            pages += 1
            value = data.get("value")
            if not isinstance(value, list):
                raise TenantUnavailable(
                    "Graph answered a list request without a value list", request=f"GET {url}"
                )
            items.extend(v for v in value if isinstance(v, dict))
            url = self._next_link(data, self.cloud.graph, f"GET {url}")
        return items

    async def graph_post(
        self, path: str, body: Mapping[str, Any], *, beta: bool = False
    ) -> dict[str, Any] | None:
        """POST to Graph; None for 204 No Content."""
        return await self._graph("POST", self.graph_url(path, beta=beta), path, None, body)

    async def graph_patch(
        self, path: str, body: Mapping[str, Any], *, beta: bool = False
    ) -> dict[str, Any] | None:
        """PATCH a Graph object (executors only; the checks change nothing)."""
        return await self._graph("PATCH", self.graph_url(path, beta=beta), path, None, body)

    async def _graph(
        self,
        method: str,
        url: str,
        path: str,
        headers: Mapping[str, str] | None,
        body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        send = {"Accept": "application/json", **(headers or {})}
        content = None
        if body is not None:
            content = json.dumps(body).encode()
            send["Content-Type"] = "application/json"
        response = await self._send(method, url, send, content, self.cloud.graph_scope)
        label = f"{method} {url}"
        if response.status < 300:
            return self._json(response, label)
        code, message = _error_body(response)
        if response.status == 403 or code == _NON_PREMIUM:
            raise self._graph_permission_error(method, path, code, message, label)
        if response.status == 401:
            raise TenantAuthFailed(
                f"Microsoft Graph refused mailfix's token ({code or 'HTTP 401'}).",
                request=label,
                code=code,
            )
        if response.status == 404:
            raise TenantNotFound(message or "not found", request=label, code=code)
        if response.status >= 500:
            raise TenantUnavailable(
                f"Microsoft Graph answered HTTP {response.status}", request=label, code=code
            )
        raise TenantError(
            f"Microsoft Graph refused the request (HTTP {response.status}"
            f"{', ' + code if code else ''}): {message}",
            request=label,
            code=code,
        )

    def _graph_permission_error(
        self, method: str, path: str, code: str | None, message: str, label: str
    ) -> PermissionMissing:
        if code == _NON_PREMIUM:
            return PermissionMissing(
                "The tenant has no Microsoft Entra ID P1 or P2 licence, which Graph needs to "
                "return sign-in logs.",
                request=label,
                permission="Microsoft Entra ID P1 or P2",
                grant_where="a tenant licence (Microsoft 365 admin center > Billing), "
                "not an app permission",
                code=code,
            )
        permission = graph_permission(method, path)
        if code == _NO_DIRECTORY_READ:
            permission = "Directory.Read.All"
        named = [w for w in _PERMISSION_WORD.findall(message) if w in _KNOWN_PERMISSIONS]
        if named and permission not in named:
            permission = named[0]
        grant = GRAPH_GRANT
        if permission == "AuditLog.Read.All":
            grant += " (sign-in logs also need Directory.Read.All)"
        return PermissionMissing(
            f"mailfix's app lacks the Microsoft Graph permission {permission}.",
            request=label,
            permission=permission,
            grant_where=grant,
            code=code,
        )

    # -- Exchange Online admin API ------------------------------------------------------------

    async def exo(
        self, cmdlet: str, parameters: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Run one Exchange cmdlet through InvokeCommand; every page's `value`, concatenated.

        Raises TenantNotFound when Exchange says the object does not exist (e.g. no mailbox),
        PermissionMissing for Exchange.ManageAsApp (401) or the Entra role (403).
        """
        body = json.dumps(
            {"CmdletInput": {"CmdletName": cmdlet, "Parameters": dict(parameters or {})}}
        ).encode()
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json; charset=utf-8",
            "X-AnchorMailbox": EXO_ANCHOR.format(tenant=self.tenant),
            "Prefer": "odata.maxpagesize=1000",
        }
        url: str | None = self.cloud.exo_admin_url(self.tenant)
        items: list[dict[str, Any]] = []
        pages = 0
        redirects = 0
        while url is not None and pages < MAX_PAGES:
            label = f"POST {url} {cmdlet}"
            response = await self._send("POST", url, headers, body, self.cloud.exo_scope, cmdlet)
            moved = self._exo_redirect(response)
            if moved is not None and redirects < MAX_EXO_REDIRECTS:
                redirects += 1
                url = moved  # the front door sends some tenants to a backend host (§6.3 (a))
                continue
            pages += 1
            if response.status >= 300:
                raise self._exo_error(response, cmdlet, label)
            data = self._json(response, label) or {}
            value = data.get("value")
            if isinstance(value, list):
                items.extend(v for v in value if isinstance(v, dict))
            elif data and "value" not in data:
                items.append(data)  # a single object without the collection envelope
            url = self._next_link(data, self.cloud.exo, label)
        return items

    def _exo_redirect(self, response: HttpResponse) -> str | None:
        """Where a 301/302/307/308 sends the POST, if it stays on the EXO host or below it
        (the token's audience); None otherwise."""
        if response.status not in (301, 302, 307, 308):
            return None
        location = response.headers.get("location")
        if not location:
            return None
        target = urlsplit(urljoin(response.url, location))
        host = (target.hostname or "").lower()
        exo = self.cloud.exo.lower()
        if target.scheme != "https" or not (host == exo or host.endswith("." + exo)):
            return None
        return target.geturl()

    def _exo_error(self, response: HttpResponse, cmdlet: str, label: str) -> TenantError:
        code, message = _error_body(response)
        lowered = message.lower()
        writes = not cmdlet.lower().startswith("get-")
        role = EXO_WRITE_ROLE if writes else EXO_READ_ROLE
        if response.status == 401:
            return PermissionMissing(
                f"Exchange Online refused mailfix's app: it lacks {EXO_PERMISSION}.",
                request=label,
                permission=EXO_PERMISSION,
                grant_where=EXO_GRANT,
                code=code,
            )
        if (
            response.status == 403
            or "not recognized as" in lowered
            or "isn't recognized" in lowered
        ):
            return PermissionMissing(
                f"Exchange Online refused {cmdlet}: mailfix's app has no Entra role that "
                f"allows it ({role} would).",
                request=label,
                permission=role,
                grant_where=exo_role_grant(role),
                code=code,
            )
        if (
            response.status == 404
            or "managementobjectnotfoundexception" in lowered
            or "couldn't be found" in lowered
            or "could not be found" in lowered
        ):
            return TenantNotFound(message or "not found", request=label, code=code)
        if response.status >= 500:
            return TenantUnavailable(
                f"Exchange Online answered HTTP {response.status}", request=label, code=code
            )
        return TenantError(
            f"Exchange Online refused {cmdlet} (HTTP {response.status}): {message}",
            request=label,
            code=code,
        )

    # -- transport -----------------------------------------------------------------------------

    def _next_link(self, data: Mapping[str, Any], host: str, label: str) -> str | None:
        link = data.get("@odata.nextLink")
        if not link:
            return None
        parts = urlsplit(str(link))
        if parts.scheme != "https" or (parts.hostname or "").lower() != host.lower():
            raise TenantUnavailable(
                f"refused to follow a next-page link to {parts.hostname or 'nowhere'}: the "
                "token goes to Microsoft's own host only",
                request=label,
            )
        return str(link)

    @staticmethod
    def _json(response: HttpResponse, label: str) -> dict[str, Any] | None:
        if response.status == 204 or not response.body.strip():
            return None
        if response.truncated:
            raise TenantUnavailable("the answer was too large to read", request=label)
        try:
            data = json.loads(response.body.decode("utf-8", errors="replace"))
        except ValueError:
            raise TenantUnavailable("the answer was not JSON", request=label) from None
        if not isinstance(data, dict):
            raise TenantUnavailable("the answer was not a JSON object", request=label)
        return data

    def _remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def _record(self, label: str) -> None:
        self.last_requests.append(label)
        for sink in _RECORDERS.get():
            sink.append(label)

    async def _send(  # noqa: PLR0917
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes | None,
        scope: str,
        what: str | None = None,
    ) -> HttpResponse:
        """One request with a bearer token, 401 refresh and the throttling loop."""
        label = f"{method} {url}" + (f" {what}" if what else "")
        refreshed = False
        attempt = 0
        while True:
            token = await self._token(scope)
            send = {**headers, "Authorization": f"Bearer {token}"}
            remaining = self._remaining()
            timeout = self.net.timeouts.total
            if remaining is not None:
                if remaining <= 0:
                    raise Throttled(
                        "the diagnosis deadline passed before the request",
                        request=label,
                        retry_after=0.0,
                    )
                timeout = min(timeout, remaining)
            self._record(label)
            try:
                response = await self.net.request(
                    method,
                    url,
                    headers=send,
                    content=content,
                    follow_redirects=method == "GET",
                    timeout=timeout,
                )
            except NetError as exc:
                raise TenantUnavailable(
                    f"could not reach {urlsplit(url).hostname}: {exc}", request=label
                ) from exc
            if response.status == 401 and not refreshed:
                refreshed = True
                self._drop_token(scope)
                continue
            if response.status in (429, 503, 504):
                wait = _retry_after(response)
                given = wait is not None
                if wait is None:
                    wait = BACKOFF[min(attempt, len(BACKOFF) - 1)]
                remaining = self._remaining()
                past_deadline = remaining is not None and wait > remaining - DEADLINE_MARGIN
                if attempt >= MAX_RETRIES or wait > MAX_WAIT or past_deadline:
                    host = urlsplit(url).hostname
                    if past_deadline:
                        why = "the wait would pass the diagnosis deadline"
                    elif wait > MAX_WAIT:
                        why = f"longer than the {MAX_WAIT:g} s mailfix waits"
                    else:
                        why = f"still busy after {attempt + 1} tries"
                    if response.status == 429 or given:
                        raise Throttled(
                            f"{host} is throttling mailfix (asked to wait {wait:g} s; {why}).",
                            request=label,
                            retry_after=wait,
                        )
                    raise TenantUnavailable(
                        f"{host} answered HTTP {response.status} ({why}).", request=label
                    )
                attempt += 1
                await asyncio.sleep(wait)
                continue
            return response
