"""Microsoft Graph on graph.microsoft.com (or the cloud's Graph host): what mailfix reads and the
writes its fixes make, backed by the world's `TenantState` (reference §5).

v1.0 (and the same under /beta):
  GET  /users/{id|upn}[?$select]            GET /users?$filter=…&$select=…&$top=…
  GET  /users/{id}/licenseDetails            GET /subscribedSkus
  GET  /users/{id}/mailboxSettings           (404 MailboxNotEnabledForRESTAPI without a mailbox)
  GET  /users/{id}/transitiveMemberOf        GET /groups/{id}/transitiveMembers[/<type cast>]
  POST /users/{id}/assignLicense             PATCH /users/{id}  (accountEnabled)
  GET  /directory/deletedItems/microsoft.graph.user[?$filter]
  POST /directory/deletedItems/{id}/restore
  GET  /identity/conditionalAccess/policies | /namedLocations
  GET  /auditLogs/signIns?$filter=…          GET /admin/serviceAnnouncement/issues?$filter=…
  GET  /admin/serviceAnnouncement/healthOverviews[/{name}][?$expand=issues]
beta only: POST /beta/identity/conditionalAccess/evaluate (What-If, §5.3).

Every request needs a Bearer token whose `aud` is this Graph (401 InvalidAuthenticationToken
otherwise) and whose `roles` hold a permission the request accepts (403 otherwise, §5 table).
Collections page at `TenantData.page_size` with an absolute `@odata.nextLink` ($skiptoken).
Throttling (§5.5): 429/503 with Retry-After, from `TenantData.throttles`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from sandbox.services import base
from sandbox.services.configs import Faults
from sandbox.tenant import odata, whatif
from sandbox.tenant.models import GRAPH_APP_ID, ROLE_TEMPLATES, AssignedLicense, TenantUser
from sandbox.tenant.state import TenantState
from sandbox.tenant.token import check_token

JSON_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;"
    "charset=utf-8"
)

# The properties GET /users returns without $select (Graph v1.0 user resource: "default
# properties") — accountEnabled and the licence fields only come back when selected.
DEFAULT_USER_FIELDS = (
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
)

# Which application permissions a request accepts (least privileged first; Graph permission
# reference for each API [higher-privileged alternatives from memory, uncertain]).
_READ_USERS = (
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
)
_READ_LICENCES = (
    "LicenseAssignment.Read.All",
    "User.Read.All",
    "Directory.Read.All",
    "LicenseAssignment.ReadWrite.All",
    "User.ReadWrite.All",
    "Directory.ReadWrite.All",
)
_READ_SKUS = (
    "LicenseAssignment.Read.All",
    "Organization.Read.All",
    "Directory.Read.All",
    "LicenseAssignment.ReadWrite.All",
    "Directory.ReadWrite.All",
)
_WRITE_LICENCES = (
    "LicenseAssignment.ReadWrite.All",
    "User.ReadWrite.All",
    "Directory.ReadWrite.All",
)
_WRITE_USERS = ("User.ReadWrite.All", "Directory.ReadWrite.All")
_MAILBOX_SETTINGS = ("MailboxSettings.Read", "MailboxSettings.ReadWrite")
_MEMBERS = (
    "GroupMember.Read.All",
    "Group.Read.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
)
# GET /groups/{id}/transitiveMembers (Graph v1.0 "List group transitive members", application
# permissions: GroupMember.Read.All least privileged; microsoft-graph-docs-contrib
# api-reference/v1.0/api/group-list-transitivemembers.md).
_GROUP_MEMBERS = (
    "GroupMember.Read.All",
    "Directory.Read.All",
    "Group.Read.All",
    "Group.ReadWrite.All",
    "GroupMember.ReadWrite.All",
)
# The member types an OData cast on a membership list may name (directoryObject's subtypes);
# the sandbox's groups hold users and groups only, so the others list nothing.
_MEMBER_CASTS = {
    "microsoft.graph.user": "users",
    "microsoft.graph.group": "groups",
    "microsoft.graph.device": "devices",
    "microsoft.graph.orgcontact": "contacts",
    "microsoft.graph.serviceprincipal": "servicePrincipals",
    "microsoft.graph.application": "applications",
}
_POLICIES = ("Policy.Read.All", "Policy.ReadWrite.ConditionalAccess")
_WHAT_IF = ("Policy.Read.ConditionalAccess", "Policy.Read.All")
_HEALTH = ("ServiceHealth.Read.All",)
_AUDIT = ("AuditLog.Read.All",)

# How Graph names the service of an assigned plan (assignedPlans[].service) [uncertain].
_SERVICE = {"EXCHANGE": "exchange", "SHAREPOINT": "SharePoint", "TEAMS": "TeamspaceAPI"}


class GraphError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})


def _stamp(days: float = 0, minutes: float = 0) -> str:
    when = dt.datetime.now(dt.UTC) - dt.timedelta(days=days, minutes=minutes)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- wire shapes -----------------------------------------------------------------------------


def _service_of(plan_name: str) -> str:
    for prefix, service in _SERVICE.items():
        if plan_name.startswith(prefix):
            return service
    return "MicrosoftOffice" if plan_name == "OFFICESUBSCRIPTION" else plan_name


def user_wire(state: TenantState, user: TenantUser) -> dict[str, Any]:
    """Every property the sandbox knows, as Graph names them (§5 User row)."""
    assigned: list[dict[str, Any]] = []
    provisioned: list[dict[str, Any]] = []
    for lic in user.licenses:
        sku = state.sku(lic.sku_id)
        if sku is None:
            continue
        for plan in sku.plans:
            if plan.applies_to != "User":
                continue
            status = state.plan_status(user, lic, plan)
            service = _service_of(plan.name)
            assigned.append(
                {
                    "assignedDateTime": _stamp(days=user.created_days_ago),
                    "capabilityStatus": "Deleted" if status == "Disabled" else "Enabled",
                    "service": service,
                    "servicePlanId": plan.id,
                }
            )
            if status != "Disabled":
                provisioned.append(
                    {
                        "capabilityStatus": "Enabled",
                        "provisioningStatus": "Success"
                        if status == "Success"
                        else ("Error" if status == "Error" else "PendingInput"),
                        "service": service,
                    }
                )
    upn = user.upn
    if user.deleted_days_ago is not None:
        upn = user.id.replace("-", "") + user.upn  # a deleted user's UPN (§5 Deleted users)
    given, _, surname = user.display_name.partition(" ")
    return {
        "id": user.id,
        "userPrincipalName": upn,
        "displayName": user.display_name,
        "givenName": given or None,
        "surname": surname or None,
        "mail": user.mail,
        "businessPhones": [],
        "jobTitle": None,
        "mobilePhone": None,
        "officeLocation": None,
        "preferredLanguage": "en-US",
        "accountEnabled": user.account_enabled,
        "proxyAddresses": list(user.proxy_addresses),
        "assignedLicenses": [
            {"disabledPlans": list(lic.disabled_plans), "skuId": lic.sku_id}
            for lic in user.licenses
        ],
        "assignedPlans": assigned,
        "provisionedPlans": provisioned,
        "onPremisesSyncEnabled": True if user.synced else None,
        "onPremisesImmutableId": base64.b64encode(uuid.UUID(user.id).bytes).decode()
        if user.synced
        else None,
        "onPremisesProvisioningErrors": [
            {
                "category": e.category,
                "occurredDateTime": _stamp(days=e.occurred_days_ago),
                "propertyCausingError": e.property_causing_error,
                "value": e.value,
            }
            for e in user.provisioning_errors
        ],
        "userType": user.user_type,
        "usageLocation": user.usage_location,
        "createdDateTime": _stamp(days=user.created_days_ago),
        "lastPasswordChangeDateTime": _stamp(days=40),
        "signInSessionsValidFromDateTime": _stamp(days=40),
        "deletedDateTime": _stamp(days=user.deleted_days_ago)
        if user.deleted_days_ago is not None
        else None,
    }


def _select(item: dict[str, Any], select: str | None, default: Iterable[str]) -> dict[str, Any]:
    fields = [f.strip() for f in select.split(",")] if select else list(default)
    known = {k.lower(): k for k in item}
    out: dict[str, Any] = {}
    for name in fields:
        key = known.get(name.lower())
        if key is not None:
            out[key] = item[key]
    return out


def licence_details(state: TenantState, user: TenantUser) -> list[dict[str, Any]]:
    rows = []
    for lic in user.licenses:
        sku = state.sku(lic.sku_id)
        if sku is None:
            continue
        rows.append(
            {
                "id": base64.urlsafe_b64encode(f"{user.id}:{sku.sku_id}".encode())
                .decode()
                .rstrip("="),
                "skuId": sku.sku_id,
                "skuPartNumber": sku.part_number,
                "servicePlans": [
                    {
                        "servicePlanId": plan.id,
                        "servicePlanName": plan.name,
                        "provisioningStatus": state.plan_status(user, lic, plan),
                        "appliesTo": plan.applies_to,
                    }
                    for plan in sku.plans
                ],
            }
        )
    return rows


def subscribed_skus(state: TenantState) -> list[dict[str, Any]]:
    return [
        {
            "accountName": state.data.display_name.upper(),
            "accountId": state.tenant_id,
            "appliesTo": "User",
            "capabilityStatus": sku.capability_status,
            "consumedUnits": state.consumed_units(sku.sku_id),
            "id": f"{state.tenant_id}_{sku.sku_id}",
            "prepaidUnits": {
                "enabled": sku.enabled_units,
                "suspended": 0,
                "warning": 0,
                "lockedOut": 0,
            },
            "servicePlans": [
                {
                    "servicePlanId": p.id,
                    "servicePlanName": p.name,
                    "provisioningStatus": "Success",
                    "appliesTo": p.applies_to,
                }
                for p in sku.plans
            ],
            "skuId": sku.sku_id,
            "skuPartNumber": sku.part_number,
            "subscriptionIds": [str(uuid.uuid5(uuid.NAMESPACE_URL, sku.sku_id))],
        }
        for sku in state.data.skus
    ]


def mailbox_settings(user: TenantUser) -> dict[str, Any]:
    return {
        "archiveFolder": base64.b64encode(uuid.UUID(user.id).bytes).decode(),
        "timeZone": "Pacific Standard Time",
        "delegateMeetingMessageDeliveryOptions": "sendToDelegateOnly",
        "dateFormat": "M/d/yyyy",
        "timeFormat": "h:mm tt",
        "userPurpose": "user",
        "automaticRepliesSetting": {
            "status": "disabled",
            "externalAudience": "all",
            "internalReplyMessage": "",
            "externalReplyMessage": "",
        },
        "language": {"locale": "en-US", "displayName": "English (United States)"},
        "workingHours": {
            "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
            "startTime": "08:00:00.0000000",
            "endTime": "17:00:00.0000000",
            "timeZone": {"name": "Pacific Standard Time"},
        },
    }


def signin_wire(state: TenantState, event: Any, n: int) -> dict[str, Any]:
    ok = event.error_code == 0
    user = state.find_user(event.upn)
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"signin/{event.upn}/{n}")),
        "createdDateTime": _stamp(minutes=event.minutes_ago),
        "userDisplayName": user.display_name if user else event.upn,
        "userPrincipalName": event.upn,
        "userId": user.id if user else None,
        "appId": event.app_id,
        "appDisplayName": event.app_display_name,
        "ipAddress": event.ip_address,
        "clientAppUsed": event.client_app_used,
        "correlationId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"corr/{event.upn}/{n}")),
        "conditionalAccessStatus": event.conditional_access_status,
        "isInteractive": True,
        "riskDetail": "none",
        "riskLevelAggregated": "none",
        "riskLevelDuringSignIn": "none",
        "riskState": "none",
        "riskEventTypes_v2": [],
        "resourceDisplayName": event.resource_display_name,
        "resourceId": event.resource_id,
        "status": {
            "errorCode": event.error_code,
            "failureReason": event.failure_reason if not ok else None,
            "additionalDetails": event.additional_details,
        },
        "deviceDetail": {
            "deviceId": "",
            "displayName": "",
            "operatingSystem": event.operating_system,
            "browser": event.browser,
            "isCompliant": event.is_compliant,
            "isManaged": event.is_managed,
            "trustType": "",
        },
        "location": {
            "city": event.city,
            "state": "",
            "countryOrRegion": event.country,
            "geoCoordinates": {"altitude": None, "latitude": None, "longitude": None},
        },
        "appliedConditionalAccessPolicies": [
            {
                "id": p.id,
                "displayName": p.display_name,
                "enforcedGrantControls": list(p.enforced_grant_controls),
                "enforcedSessionControls": [],
                "result": p.result,
            }
            for p in event.applied_policies
        ],
    }


def issue_wire(issue: Any) -> dict[str, Any]:
    return {
        "startDateTime": _stamp(minutes=issue.started_minutes_ago),
        "endDateTime": None,
        "lastModifiedDateTime": _stamp(minutes=max(issue.started_minutes_ago - 20, 0)),
        "title": issue.title,
        "id": issue.id,
        "impactDescription": issue.impact_description or issue.title,
        "classification": issue.classification,
        "origin": "microsoft",
        "status": issue.status,
        "service": issue.service,
        "feature": issue.feature,
        "featureGroup": issue.feature_group,
        "isResolved": issue.is_resolved,
        "highImpact": None,
        "details": [],
        "posts": [
            {
                "createdDateTime": _stamp(minutes=issue.started_minutes_ago),
                "postType": "regular",
                "description": {
                    "contentType": "html",
                    "content": f"Title: {issue.title}<br><br>User impact: "
                    f"{issue.impact_description or issue.title}",
                },
            }
        ],
    }


# ---- the application -------------------------------------------------------------------------


def make_app(host: str, faults: Faults, state: TenantState | None) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        headers = _headers(request, state)
        try:
            return await _dispatch(request, host, state, headers)
        except GraphError as exc:
            return _error(exc, headers)

    return base.make_app(faults, handle)


def _headers(request: web.Request, state: TenantState | None) -> dict[str, str]:
    n = state.next_number() if state is not None else 0
    client_request = request.headers.get("client-request-id") or str(uuid.uuid4())
    return {
        "request-id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"graph/{id(state)}/{n}")),
        "client-request-id": client_request,
        "x-ms-ags-diagnostic": json.dumps(
            {
                "ServerInfo": {
                    "DataCenter": "West US 2",
                    "Slice": "E",
                    "Ring": "1",
                    "ScaleUnit": "000",
                    "RoleInstance": "MWH0EPF0005A1B2",
                }
            },
            separators=(",", ":"),
        ),
        "Strict-Transport-Security": "max-age=31536000",
        "Cache-Control": "no-cache",
    }


def _error(exc: GraphError, headers: Mapping[str, str]) -> web.Response:
    body = {
        "error": {
            "code": exc.code,
            "message": exc.message,
            "innerError": {
                "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": headers.get("request-id", ""),
                "client-request-id": headers.get("client-request-id", ""),
            },
        }
    }
    return _json(body, status=exc.status, headers={**headers, **exc.headers})


def _json(
    body: object, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body, separators=(",", ":")).encode(),
        headers={**dict(headers or {}), "Content-Type": JSON_TYPE},
    )


def _not_found_segment(segment: str) -> GraphError:
    return GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")


def _no_resource(key: str) -> GraphError:
    # §5 / PLAN wire facts: 404 Request_ResourceNotFound for a missing user.
    return GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{key}' does not exist or one of its queried reference-property objects are "
        "not present.",
    )


def _denied() -> GraphError:
    return GraphError(
        403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
    )


def _require(
    roles: set[str], accepted: Iterable[str], denial: Callable[[], GraphError] = _denied
) -> None:
    if not roles & set(accepted):
        raise denial()


async def _dispatch(
    request: web.Request, host: str, state: TenantState | None, headers: dict[str, str]
) -> web.Response:
    segments = [s for s in request.path.split("/") if s]
    if not segments or segments[0].lower() not in ("v1.0", "beta"):
        raise GraphError(400, "BadRequest", "Invalid version: " + (segments[0] if segments else ""))
    version = segments[0].lower()
    rest = segments[1:]
    if not rest:
        raise _not_found_segment(version)
    if state is None:
        # A Graph with no tenant behind it: every token is for a tenant it does not know.
        raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure.")
    checked = check_token(
        state, request.headers.get("Authorization"), {state.hosts.graph_audience, GRAPH_APP_ID}
    )
    if checked.claims is None:
        raise GraphError(
            401,
            "InvalidAuthenticationToken",
            checked.error,
            {
                "WWW-Authenticate": f'Bearer realm="", authorization_uri="https://'
                f'{state.hosts.login}/common/oauth2/authorize", client_id="{GRAPH_APP_ID}"'
            },
        )
    throttle = state.throttled("graph", request.path)
    if throttle is not None:
        code, message = (
            ("TooManyRequests", "Too many requests.")
            if throttle.status == 429
            else ("serviceNotAvailable", "Service unavailable.")
        )
        raise GraphError(throttle.status, code, message, {"Retry-After": str(throttle.retry_after)})
    roles = set(checked.claims.get("roles") or [])
    ctx = _Ctx(request, host, version, state, roles, headers)
    return await ctx.route(rest)


class _Ctx:
    def __init__(  # noqa: PLR0917 (one place builds it)
        self,
        request: web.Request,
        host: str,
        version: str,
        state: TenantState,
        roles: set[str],
        headers: dict[str, str],
    ) -> None:
        self.request, self.host, self.version = request, host, version
        self.state, self.roles, self.headers = state, roles, headers
        self.method = request.method.upper()

    # -- helpers --

    def q(self, name: str) -> str | None:
        return self.request.query.get(name) or self.request.query.get(name.lstrip("$"))

    def context(self, fragment: str) -> str:
        return f"https://{self.host}/{self.version}/$metadata#{fragment}"

    def ok(self, body: dict[str, Any]) -> web.Response:
        return _json(body, headers=self.headers)

    def only(self, *methods: str) -> None:
        if self.method not in methods:
            raise GraphError(
                405, "Request_BadRequest", f"The HTTP method '{self.method}' is not allowed."
            )  # [uncertain: code for a wrong verb]

    def page(self, items: list[dict[str, Any]], fragment: str) -> web.Response:
        """One page of a collection: $filter already applied; $top and $skiptoken here."""
        size = self.state.data.page_size
        top = self.q("$top")
        if top is not None:
            try:
                size = min(size, max(1, int(top)))
            except ValueError:
                raise GraphError(400, "BadRequest", f"Invalid value '{top}' for $top.") from None
        offset = 0
        token = self.q("$skiptoken")
        if token:
            try:
                offset = int(base64.urlsafe_b64decode(token + "==").decode().split(":", 1)[1])
            except (ValueError, IndexError):
                raise GraphError(400, "BadRequest", "Invalid $skiptoken.") from None
        chunk = items[offset : offset + size]
        body: dict[str, Any] = {"@odata.context": self.context(fragment)}
        if (
            self.q("$count") == "true"
            and self.request.headers.get("ConsistencyLevel", "").lower() == "eventual"
        ):
            body["@odata.count"] = len(items)
        body["value"] = chunk
        if offset + size < len(items):
            params = [(k, v) for k, v in self.request.query.items() if k.lower() != "$skiptoken"]
            skip = (
                base64.urlsafe_b64encode(f"sandbox:{offset + size}".encode()).decode().rstrip("=")
            )
            params.append(("$skiptoken", skip))
            query = urlencode(params, quote_via=quote, safe="$")
            body["@odata.nextLink"] = f"https://{self.host}{self.request.path}?{query}"
        return self.ok(body)

    def filtered(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            keep = odata.parse(self.q("$filter"))
        except odata.FilterError as exc:
            raise GraphError(400, "Request_UnsupportedQuery", str(exc)) from None
        return [i for i in items if keep(i)]

    def user(self, key: str) -> TenantUser:
        user = self.state.find_user(key)
        if user is None:
            raise _no_resource(key)
        return user

    async def body(self) -> dict[str, Any]:
        try:
            data = await self.request.json()
        except (ValueError, UnicodeDecodeError):
            raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from None
        if not isinstance(data, dict):
            raise GraphError(400, "BadRequest", "Unable to read JSON request payload.")
        return data

    # -- routes --

    async def route(self, rest: list[str]) -> web.Response:
        head = rest[0].lower()
        low = [s.lower() for s in rest]
        if head == "users":
            return await self.users(rest[1:])
        if head == "subscribedskus" and len(rest) == 1:
            self.only("GET")
            _require(self.roles, _READ_SKUS)
            return self.page(self.filtered(subscribed_skus(self.state)), "subscribedSkus")
        if low[:2] == ["directory", "deleteditems"]:
            return await self.deleted(rest[2:])
        if head == "groups" and len(rest) in (3, 4) and low[2] == "transitivemembers":
            self.only("GET")
            _require(self.roles, _GROUP_MEMBERS)
            return self.transitive_members(rest[1], low[3] if len(rest) == 4 else None)
        if low[:2] == ["identity", "conditionalaccess"] and len(rest) == 3:
            return await self.conditional_access(low[2])
        if low[:2] == ["auditlogs", "signins"] and len(rest) == 2:
            self.only("GET")
            return self.signins()
        if low[:2] == ["admin", "serviceannouncement"] and len(rest) >= 3:
            self.only("GET")
            _require(self.roles, _HEALTH)
            return self.health(rest[2:])
        raise _not_found_segment(
            rest[0] if head not in ("directory", "identity", "auditlogs", "admin") else rest[-1]
        )

    async def users(self, rest: list[str]) -> web.Response:
        if not rest:
            self.only("GET")
            _require(self.roles, _READ_USERS)
            rows = [user_wire(self.state, u) for u in self.state.live_users()]
            rows = self.filtered(rows)
            select = self.q("$select")
            rows = [_select(r, select, DEFAULT_USER_FIELDS) for r in rows]
            fragment = f"users({select})" if select else "users"
            return self.page(rows, fragment)
        key = rest[0]
        sub = rest[1].lower() if len(rest) > 1 else ""
        if len(rest) > 2:
            raise _not_found_segment(rest[2])
        if not sub:
            if self.method == "PATCH":
                return await self.patch_user(key)
            self.only("GET")
            _require(self.roles, _READ_USERS)
            user = self.user(key)
            select = self.q("$select")
            body = {
                "@odata.context": self.context(
                    f"users({select})/$entity" if select else "users/$entity"
                )
            }
            body.update(_select(user_wire(self.state, user), select, DEFAULT_USER_FIELDS))
            return self.ok(body)
        if sub == "licensedetails":
            self.only("GET")
            _require(self.roles, _READ_LICENCES)
            user = self.user(key)
            return self.page(
                licence_details(self.state, user), f"users('{user.id}')/licenseDetails"
            )
        if sub == "mailboxsettings":
            self.only("GET")
            _require(self.roles, _MAILBOX_SETTINGS)
            user = self.user(key)
            if not self.state.has_exo_mailbox(user):
                # §5 Mailbox existence row: 404 MailboxNotEnabledForRESTAPI.
                raise GraphError(
                    404,
                    "MailboxNotEnabledForRESTAPI",
                    "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
                )
            body = {"@odata.context": self.context(f"users('{user.id}')/mailboxSettings")}
            body.update(mailbox_settings(user))
            return self.ok(body)
        if sub == "transitivememberof":
            self.only("GET")
            _require(self.roles, _MEMBERS)
            user = self.user(key)
            return self.page(self.filtered(self.member_of(user)), "directoryObjects")
        if sub == "assignlicense":
            self.only("POST")
            _require(self.roles, _WRITE_LICENCES)
            return await self.assign_license(self.user(key))
        raise _not_found_segment(rest[1])

    async def patch_user(self, key: str) -> web.Response:
        # Enabling an account: User.EnableDisableAccount.All + User.Read.All, or a ReadWrite
        # permission (PLAN least-privilege list).
        enable_only = "User.EnableDisableAccount.All" in self.roles and bool(
            self.roles & {"User.Read.All", "Directory.Read.All"}
        )
        if not enable_only:
            _require(self.roles, _WRITE_USERS)
        user = self.user(key)
        data = await self.body()
        unknown = set(data) - {"accountEnabled"}
        if unknown and enable_only and not self.roles & set(_WRITE_USERS):
            raise _denied()
        if unknown:
            raise GraphError(400, "Request_BadRequest", "The sandbox changes only accountEnabled.")
        value = data.get("accountEnabled")
        if not isinstance(value, bool):
            raise GraphError(
                400,
                "Request_BadRequest",
                "Invalid value specified for property 'accountEnabled' of resource 'User'.",
            )
        if user.synced:
            # Directory-synced objects are mastered on-premises.
            raise GraphError(
                400,
                "Request_BadRequest",
                "Unable to update the specified properties for on-premises mastered Directory "
                "Sync objects or objects currently undergoing migration.",
            )
        if user.account_enabled != value:
            self.state.replace_user(
                user.model_copy(update={"account_enabled": value}),
                f"PATCH {user.upn} accountEnabled={value}",
            )
        return web.Response(status=204, headers=self.headers)

    async def assign_license(self, user: TenantUser) -> web.Response:
        data = await self.body()
        add = data.get("addLicenses")
        remove = data.get("removeLicenses")
        if not isinstance(add, list) or not isinstance(remove, list):
            raise GraphError(
                400,
                "Request_BadRequest",
                "Invalid value specified for property 'addLicenses' of resource 'User'.",
            )
        licences = {lic.sku_id: lic for lic in user.licenses}
        for item in add:
            sku_id = str((item or {}).get("skuId", "")).lower()
            sku = self.state.sku(sku_id)
            if sku is None:
                raise GraphError(
                    400,
                    "Request_BadRequest",
                    f"License {sku_id} does not correspond to a valid company License.",
                )  # [uncertain wording]
            if not user.usage_location:
                # §5 User row: an empty usageLocation blocks licence assignment.
                raise GraphError(
                    400,
                    "Request_BadRequest",
                    "License assignment cannot be done for user with invalid usage location.",
                )
            if sku_id not in licences and self.state.consumed_units(sku_id) >= sku.enabled_units:
                raise GraphError(
                    400,
                    "Request_BadRequest",
                    f"Subscription for license {sku.part_number} does not have enough units.",
                )  # [uncertain wording]
            disabled = tuple(str(p).lower() for p in (item.get("disabledPlans") or []))
            licences[sku_id] = AssignedLicense(sku_id=sku_id, disabled_plans=disabled)
        for sku_id in remove:
            licences.pop(str(sku_id).lower(), None)
        new = user.model_copy(update={"licenses": tuple(licences.values())})
        if new != user:
            self.state.replace_user(new, f"assignLicense {user.upn} {sorted(licences)}")
        body = {"@odata.context": self.context("users/$entity")}
        body.update(_select(user_wire(self.state, new), None, DEFAULT_USER_FIELDS))
        return self.ok(body)

    async def deleted(self, rest: list[str]) -> web.Response:
        if not rest:
            raise _not_found_segment("deletedItems")
        head = rest[0]
        if head.lower() == "microsoft.graph.user" and len(rest) == 1:
            self.only("GET")
            _require(self.roles, _READ_USERS)
            rows = [user_wire(self.state, u) for u in self.state.deleted_users()]
            rows = self.filtered(rows)
            select = self.q("$select")
            if select:
                rows = [_select(r, select, ()) for r in rows]
            return self.page(rows, "directoryObjects/microsoft.graph.user")
        user = self.state.find_user(head, deleted=True)
        if len(rest) == 2 and rest[1].lower() == "restore":
            self.only("POST")
            _require(self.roles, _WRITE_USERS)
            if user is None:
                raise _no_resource(head)
            if self.state.find_user(user.upn) is not None:
                raise GraphError(
                    400,
                    "Request_BadRequest",
                    "Another object with the same value for property userPrincipalName already "
                    "exists.",
                )
            restored = user.model_copy(update={"deleted_days_ago": None})
            self.state.replace_user(restored, f"restore {user.upn}")
            body = {
                "@odata.context": self.context("directoryObjects/$entity"),
                "@odata.type": "#microsoft.graph.user",
            }
            body.update(_select(user_wire(self.state, restored), None, DEFAULT_USER_FIELDS))
            return self.ok(body)
        if len(rest) == 1:
            self.only("GET")
            _require(self.roles, _READ_USERS)
            if user is None:
                raise _no_resource(head)
            body = {
                "@odata.context": self.context("directoryObjects/$entity"),
                "@odata.type": "#microsoft.graph.user",
            }
            body.update(user_wire(self.state, user))
            return self.ok(body)
        raise _not_found_segment(rest[-1])

    # -- groups and roles --

    def _groups_of(self, object_id: str) -> list[str]:
        """Ids of every group `object_id` belongs to, directly or through nesting."""
        found: list[str] = []
        frontier = [object_id]
        while frontier:
            current = frontier.pop()
            for group in self.state.data.groups:
                if current in group.members and group.id not in found:
                    found.append(group.id)
                    frontier.append(group.id)
        return found

    def member_of(self, user: TenantUser) -> list[dict[str, Any]]:
        groups = {g.id: g for g in self.state.data.groups}
        rows: list[dict[str, Any]] = [
            {
                "@odata.type": "#microsoft.graph.group",
                "id": gid,
                "displayName": groups[gid].display_name,
                "securityEnabled": True,
                "mailEnabled": False,
                "groupTypes": [],
            }
            for gid in self._groups_of(user.id)
        ]
        for role in user.roles:
            rows.append(
                {
                    "@odata.type": "#microsoft.graph.directoryRole",
                    "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.state.tenant_id}/{role}")),
                    "displayName": role,
                    "description": None,
                    "roleTemplateId": ROLE_TEMPLATES[role],
                }
            )
        return rows

    def member_ids(self, group_id: str) -> list[str]:
        """Every member of `group_id`, through nested groups (404 for a group that is not)."""
        groups = {g.id: g for g in self.state.data.groups}
        if group_id not in groups:
            raise _no_resource(group_id)
        seen: list[str] = []
        frontier = [group_id]
        while frontier:
            for member in groups[frontier.pop()].members:
                if member not in seen:
                    seen.append(member)
                    if member in groups:
                        frontier.append(member)
        return seen

    def transitive_members(self, group_id: str, cast: str | None) -> web.Response:
        """`/groups/{id}/transitiveMembers[/microsoft.graph.<type>]`, paged.

        An OData cast needs the advanced query parameters (the `ConsistencyLevel: eventual`
        header and `$count=true`; group-list-transitivemembers.md and aad-advanced-queries.md);
        cast to users, the rows are users (`$select` applies) and the context `users`.
        """
        if cast is None:
            return self.page(self.filtered(self.members(group_id)), "directoryObjects")
        if cast not in _MEMBER_CASTS:
            raise _not_found_segment(cast)
        ids = self.member_ids(group_id)
        advanced = (
            self.request.headers.get("ConsistencyLevel", "").lower() == "eventual"
            and self.q("$count") == "true"
        )
        if not advanced:  # [the exact message uncertain]
            raise GraphError(
                400,
                "Request_UnsupportedQuery",
                "OData cast on a membership list is only supported with the ConsistencyLevel "
                "header set to eventual and $count=true.",
            )
        select = self.q("$select")
        rows: list[dict[str, Any]] = []
        if cast == "microsoft.graph.user":
            users = [self.state.find_user(i) for i in ids]
            rows = [user_wire(self.state, u) for u in users if u is not None]
            rows = [_select(r, select, DEFAULT_USER_FIELDS) for r in self.filtered(rows)]
            if not self.roles & set(_READ_USERS):
                # Without a user-reading permission Graph still lists them, with the id only
                # ("limited information returned for inaccessible member objects").
                rows = [{k: (v if k == "id" else None) for k, v in r.items()} for r in rows]
        elif cast == "microsoft.graph.group":
            rows = [r for r in self.members(group_id) if r["@odata.type"] == f"#{cast}"]
            rows = [_select(r, select, ("id", "displayName")) for r in self.filtered(rows)]
        fragment = _MEMBER_CASTS[cast]
        return self.page(rows, f"{fragment}({select})" if select else fragment)

    def members(self, group_id: str) -> list[dict[str, Any]]:
        groups = {g.id: g for g in self.state.data.groups}
        seen = self.member_ids(group_id)
        rows: list[dict[str, Any]] = []
        for member in seen:
            if member in groups:
                rows.append(
                    {
                        "@odata.type": "#microsoft.graph.group",
                        "id": member,
                        "displayName": groups[member].display_name,
                    }
                )
                continue
            user = self.state.find_user(member)
            if user is not None:
                rows.append(
                    {
                        "@odata.type": "#microsoft.graph.user",
                        "id": user.id,
                        "displayName": user.display_name,
                        "userPrincipalName": user.upn,
                        "accountEnabled": user.account_enabled,
                    }
                )
        return rows

    # -- Conditional Access --

    async def conditional_access(self, what: str) -> web.Response:
        if what == "evaluate":
            if self.version != "beta":
                raise _not_found_segment("evaluate")
            self.only("POST")
            _require(self.roles, _WHAT_IF)
            if not self.state.data.what_if:
                raise GraphError(
                    400, "BadRequest", "What If evaluation is not available for this tenant."
                )  # [uncertain: how a tenant without What-If answers]
            body = await self.body()
            results = whatif.evaluate(self.state, body, self._groups_of)
            return self.ok(
                {
                    "@odata.context": self.context(
                        "Collection(microsoft.graph.whatIfAnalysisResult)"
                    ),
                    "value": results,
                }
            )
        self.only("GET")
        # Missing Policy.Read.All: Graph's CA API answers AccessDenied with this text, as
        # reported in Microsoft365DSC/Microsoft365DSC#3556 and
        # hugobatista/zerotrust-ca-powertoys#8.
        _require(
            self.roles,
            _POLICIES,
            lambda: GraphError(
                403,
                "AccessDenied",
                "You cannot perform the requested operation, required scopes are missing in the "
                "token.",
            ),
        )
        if what == "policies":
            rows = self.filtered([dict(p) for p in self.state.data.ca_policies])
            return self.page(rows, "identity/conditionalAccess/policies")
        if what == "namedlocations":
            rows = self.filtered([dict(p) for p in self.state.data.named_locations])
            return self.page(rows, "identity/conditionalAccess/namedLocations")
        raise _not_found_segment(what)

    # -- activity --

    def signins(self) -> web.Response:
        if not self.roles & set(_AUDIT):
            # As reported in microsoftgraph/microsoft-graph-explorer-v4#2731 and #3165.
            raise GraphError(
                403,
                "Authentication_MSGraphPermissionMissing",
                "Calling principal does not have required MSGraph permissions AuditLog.Read.All",
            )
        if not self.roles & {"Directory.Read.All", "Directory.ReadWrite.All"}:
            # §5 Sign-ins row: AuditLog.Read.All and Directory.Read.All; the error as reported
            # in microsoftgraph/microsoft-graph-docs#2789 (Graph checks the premium licence
            # through the directory).
            raise GraphError(
                403,
                "Authentication_ApplicationHasNoDirectoryReadAccess",
                "Failed to do premium license check from ADGraph",
            )
        if not self.state.data.premium:
            raise GraphError(
                403,
                "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                "Neither tenant is B2C or tenant doesn't have premium license",
            )  # §5 Sign-ins row: the tenant needs Entra ID P1/P2
        events = sorted(self.state.data.signins, key=lambda e: e.minutes_ago)  # newest first
        rows = [signin_wire(self.state, e, n) for n, e in enumerate(events)]
        return self.page(self.filtered(rows), "auditLogs/signIns")

    def health(self, rest: list[str]) -> web.Response:
        what = rest[0].lower()
        issues = [issue_wire(i) for i in self.state.data.issues]
        if what == "issues" and len(rest) == 1:
            return self.page(self.filtered(issues), "admin/serviceAnnouncement/issues")
        if what == "issues" and len(rest) == 2:
            found = next((i for i in issues if i["id"].lower() == rest[1].lower()), None)
            if found is None:
                raise _no_resource(rest[1])
            return self.ok(
                {
                    "@odata.context": self.context("admin/serviceAnnouncement/issues/$entity"),
                    **found,
                }
            )
        if what == "healthoverviews":
            services = sorted(
                {i["service"] for i in issues} | {"Exchange Online", "Microsoft Entra"}
            )

            def overview(name: str) -> dict[str, Any]:
                open_issues = [i for i in issues if i["service"] == name and not i["isResolved"]]
                worst = next(
                    (i["status"] for i in open_issues if i["classification"] == "incident"),
                    open_issues[0]["status"] if open_issues else "serviceOperational",
                )
                row: dict[str, Any] = {"service": name, "status": worst, "id": name}
                if "issues" in (self.q("$expand") or "").lower():
                    row["issues"] = [i for i in issues if i["service"] == name]
                return row

            if len(rest) == 1:
                return self.page(
                    [overview(s) for s in services], "admin/serviceAnnouncement/healthOverviews"
                )
            name = rest[1]
            match = next((s for s in services if s.lower() == name.lower()), None)
            if match is None:
                raise _no_resource(name)
            return self.ok(
                {
                    "@odata.context": self.context(
                        "admin/serviceAnnouncement/healthOverviews/$entity"
                    ),
                    **overview(match),
                }
            )
        raise _not_found_segment(rest[0])
