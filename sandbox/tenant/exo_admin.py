"""The Exchange Online admin API on the EXO host: POST /adminapi/beta/{tenant}/InvokeCommand.

Reference §6.3 (a): body {"CmdletInput":{"CmdletName":…,"Parameters":{…}}}, a Bearer token for
https://outlook.office365.com (the cloud's EXO host), `X-AnchorMailbox`, `Prefer:
odata.maxpagesize=N`; answer {"value":[…], "@odata.nextLink": …} (POST the same body again);
warnings in `@adminapi.warnings`; errors {"error":{"code","message","details":[{"message"}],
"innererror":{…,"internalException":{"message"}}}}. Multi-valued parameters add/remove with
{"@odata.type":"#Exchange.GenericHashTable","add":…}.

The app needs Exchange.ManageAsApp (401 without it [uncertain: observed as UnAuthorized]) and an
Entra role (§6.3); a cmdlet outside the app's roles does not exist for it: "The term '…' is not
recognized as the name of a cmdlet" (Windows PowerShell's CommandNotFoundException text; that a
missing role shows this way: Microsoft365DSC/Microsoft365DSC#3510). A retired cmdlet such as
Get-ClientAccessRule (§6.1) gives the same error. HTTP statuses of cmdlet errors (400, 404 for a
missing object) are [uncertain]; the message texts are Exchange PowerShell's.

Cmdlets: Get-CASMailbox, Set-CASMailbox, Get-Mailbox, Get-User, Get-Recipient, Get-MobileDevice,
Get-ActiveSyncOrganizationSettings, Get-ActiveSyncDeviceAccessRule, Get-ClientAccessRule,
Get-TransportConfig (fields §6.2, §6.4, §3.3).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from sandbox.services import base
from sandbox.tenant.models import EXO_APP_ID, ROLE_TEMPLATES, CasSettings, TenantUser
from sandbox.tenant.state import TenantState
from sandbox.tenant.token import check_token

BACKEND_DC = "AM0PR01A001DC01.EURPRD01.PROD.OUTLOOK.COM"

_READ_ROLES = {
    "Global Administrator",
    "Global Reader",
    "Exchange Administrator",
    "Exchange Recipient Administrator",
    "Helpdesk Administrator",
    "Security Reader",
    "Compliance Administrator",
}
_WRITE_ROLES = {
    "Global Administrator",
    "Exchange Administrator",
    "Exchange Recipient Administrator",
}
_ROLE_BY_TEMPLATE = {v: k for k, v in ROLE_TEMPLATES.items()}

# Set-CASMailbox switches the sandbox plays: wire name -> CasSettings field (§6.2).
CAS_SWITCHES = {
    "ActiveSyncEnabled": "active_sync_enabled",
    "OWAEnabled": "owa_enabled",
    "PopEnabled": "pop_enabled",
    "ImapEnabled": "imap_enabled",
    "MAPIEnabled": "mapi_enabled",
    "EwsEnabled": "ews_enabled",
    "OutlookMobileEnabled": "outlook_mobile_enabled",
    "SmtpClientAuthenticationDisabled": "smtp_client_authentication_disabled",
}
CAS_LISTS = {
    "ActiveSyncAllowedDeviceIDs": "active_sync_allowed_device_ids",
    "ActiveSyncBlockedDeviceIDs": "active_sync_blocked_device_ids",
}


class CmdletError(Exception):
    def __init__(self, status: int, exception: str, message: str, code: str = "BadRequest") -> None:
        super().__init__(message)
        self.status, self.exception, self.message, self.code = status, exception, message, code


def _not_recognized(cmdlet: str) -> CmdletError:
    return CmdletError(
        400,
        "System.Management.Automation.CommandNotFoundException",
        f"The term '{cmdlet}' is not recognized as the name of a cmdlet, function, script file, "
        "or operable program. Check the spelling of the name, or if a path was included, verify "
        "that the path is correct and try again.",
    )


def _not_found(identity: str) -> CmdletError:
    return CmdletError(
        404,
        "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException",
        f"The operation couldn't be performed because object '{identity}' couldn't be found on "
        f"'{BACKEND_DC}'.",
        code="NotFound",
    )


def _error_body(err: CmdletError) -> dict[str, Any]:
    text = f"|{err.exception}|{err.message}"
    return {
        "error": {
            "code": err.code,
            "message": text,
            "details": [{"code": "Context", "target": "", "message": f"Ex6F9304{text}"}],
            "innererror": {
                "message": text,
                "type": "Microsoft.Exchange.Admin.OData.Core.ODataServiceException",
                "internalException": {"message": err.message, "type": err.exception},
            },
        }
    }


# ---- wire objects --------------------------------------------------------------------------


def _alias(user: TenantUser) -> str:
    return user.upn.split("@", 1)[0]


def _primary(user: TenantUser) -> str:
    for p in user.proxy_addresses:
        if p.startswith("SMTP:"):
            return p[5:]
    return user.mail or user.upn


def _addresses(user: TenantUser) -> list[str]:
    return list(user.proxy_addresses) or [f"SMTP:{_primary(user)}"]


def cas_wire(state: TenantState, user: TenantUser) -> dict[str, Any]:
    cas = user.cas
    return {
        "Identity": _alias(user),
        "Name": _alias(user),
        "DisplayName": user.display_name,
        "PrimarySmtpAddress": _primary(user),
        "EmailAddresses": _addresses(user),
        "ExternalDirectoryObjectId": user.id,
        "Guid": user.id,
        "ActiveSyncEnabled": cas.active_sync_enabled,
        "ActiveSyncMailboxPolicy": "Default",
        "ActiveSyncAllowedDeviceIDs": list(cas.active_sync_allowed_device_ids),
        "ActiveSyncBlockedDeviceIDs": list(cas.active_sync_blocked_device_ids),
        "HasActiveSyncDevicePartnership": bool(user.devices),
        "ActiveSyncDebugLogging": False,
        "OWAEnabled": cas.owa_enabled,
        "OWAforDevicesEnabled": True,
        "PopEnabled": cas.pop_enabled,
        "ImapEnabled": cas.imap_enabled,
        "MAPIEnabled": cas.mapi_enabled,
        "MapiHttpEnabled": None,
        "EwsEnabled": cas.ews_enabled,
        "EwsAllowOutlook": None,
        "EwsAllowMacOutlook": None,
        "OutlookMobileEnabled": cas.outlook_mobile_enabled,
        "MacOutlookEnabled": True,
        "OneWinNativeOutlookEnabled": True,
        "UniversalOutlookEnabled": True,
        "ECPEnabled": True,
        "SmtpClientAuthenticationDisabled": cas.smtp_client_authentication_disabled,
        "IsValid": True,
    }


def mailbox_wire(user: TenantUser) -> dict[str, Any]:
    return {
        "Identity": _alias(user),
        "Name": _alias(user),
        "Alias": _alias(user),
        "DisplayName": user.display_name,
        "UserPrincipalName": user.upn,
        "PrimarySmtpAddress": _primary(user),
        "EmailAddresses": _addresses(user),
        "RecipientType": "UserMailbox",
        "RecipientTypeDetails": "UserMailbox",
        "AccountDisabled": not user.account_enabled,
        "IsMailboxEnabled": True,
        "IsDirSynced": user.synced,
        "WhenSoftDeleted": None,
        "ExternalDirectoryObjectId": user.id,
        "Guid": user.id,
        "ExchangeGuid": user.id,
    }


def _recipient_type(state: TenantState, user: TenantUser) -> str:
    if state.has_exo_mailbox(user):
        return "UserMailbox"
    if user.mailbox == "onprem":
        return "MailUser"  # hybrid: the mailbox lives on-premises (§6.4)
    return "User"


def user_wire(state: TenantState, user: TenantUser) -> dict[str, Any]:
    kind = _recipient_type(state, user)
    return {
        "Identity": _alias(user),
        "Name": _alias(user),
        "DisplayName": user.display_name,
        "UserPrincipalName": user.upn,
        "WindowsEmailAddress": user.mail or "",
        "RecipientType": kind,
        "RecipientTypeDetails": kind,
        "AccountDisabled": not user.account_enabled,
        "IsDirSynced": user.synced,
        "ExternalDirectoryObjectId": user.id,
        "Guid": user.id,
    }


def recipient_wire(state: TenantState, user: TenantUser) -> dict[str, Any]:
    kind = _recipient_type(state, user)
    row = {
        "Identity": _alias(user),
        "Name": _alias(user),
        "Alias": _alias(user),
        "DisplayName": user.display_name,
        "PrimarySmtpAddress": _primary(user),
        "EmailAddresses": _addresses(user),
        "RecipientType": kind,
        "RecipientTypeDetails": kind,
        "ExternalDirectoryObjectId": user.id,
        "ExternalEmailAddress": None,
    }
    if kind == "MailUser":
        domain = state.data.initial_domain.split(".", 1)[0]
        row["ExternalEmailAddress"] = f"SMTP:{_alias(user)}@{domain}.mail.onmicrosoft.com"
    return row


def devices_wire(state: TenantState, user: TenantUser) -> list[dict[str, Any]]:
    rows = []
    now = dt.datetime.now(dt.UTC)
    for device in user.devices:
        access = state.device_access(user, device)
        name = device.friendly_name or device.device_model
        rows.append(
            {
                # §3.3: user\ExchangeActiveSyncDevices\<Type>§<Name>§<id>
                "Identity": f"{_alias(user)}\\ExchangeActiveSyncDevices\\"
                f"{device.device_type}§{name}§{device.device_id}",
                "FriendlyName": device.friendly_name,
                "DeviceId": device.device_id,
                "DeviceType": device.device_type,
                "DeviceModel": device.device_model,
                "DeviceOS": device.device_os,
                "DeviceUserAgent": device.user_agent,
                "DeviceImei": None,
                "DeviceMobileOperator": "",
                "DeviceTelephoneNumber": None,
                "DeviceOSLanguage": "en-US",
                "FirstSyncTime": (now - dt.timedelta(days=device.first_sync_days_ago)).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                ),
                "UserDisplayName": user.display_name,
                "DeviceAccessState": access.state,
                "DeviceAccessStateReason": access.reason,
                "DeviceAccessControlRule": access.rule,
                "ClientType": device.client_type,
                "ClientVersion": device.eas_version,
                "DeviceActiveSyncVersion": device.eas_version,
                "IsManaged": False,
                "IsCompliant": False,
                "IsDisabled": False,
            }
        )
    return rows


# ---- cmdlets -------------------------------------------------------------------------------

Params = dict[str, Any]


def _param(params: Params, name: str) -> Any:
    for key, value in params.items():
        if key.lower() == name.lower():
            return value
    return None


def _mailbox_user(state: TenantState, identity: Any) -> TenantUser:
    text = str(identity or "")
    user = state.resolve_recipient(text) if text else None
    if user is None or not state.has_exo_mailbox(user):
        raise _not_found(text)
    return user


def _all_mailboxes(state: TenantState) -> list[TenantUser]:
    return [u for u in state.live_users() if state.has_exo_mailbox(u)]


def _check_params(cmdlet: str, params: Params, allowed: set[str]) -> None:
    lowered = {a.lower() for a in allowed}
    for key in params:
        if key.lower() not in lowered:
            raise CmdletError(
                400,
                "System.Management.Automation.ParameterBindingException",
                f"A parameter cannot be found that matches parameter name '{key}'.",
            )


def _list_value(current: tuple[str, ...], value: Any) -> tuple[str, ...]:
    """A multi-valued parameter: a GenericHashTable {add, remove}, a list, a string or null."""
    if value is None:
        return ()
    if isinstance(value, Mapping):
        items = list(current)

        def values(key: str) -> list[str]:
            raw = next((v for k, v in value.items() if k.lower() == key), None)
            if raw is None:
                return []
            return [str(v) for v in raw] if isinstance(raw, list) else [str(raw)]

        for add in values("add"):
            if add not in items:
                items.append(add)
        for remove in values("remove"):
            if remove in items:
                items.remove(remove)
        return tuple(items)
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return (str(value),)


def set_cas_mailbox(
    state: TenantState, params: Params, warnings: list[str]
) -> list[dict[str, Any]]:
    _check_params("Set-CASMailbox", params, {"Identity", *CAS_SWITCHES, *CAS_LISTS})
    identity = _param(params, "Identity")
    user = _mailbox_user(state, identity)
    update: dict[str, Any] = {}
    changes: list[str] = []
    for wire, field in CAS_SWITCHES.items():
        present = any(k.lower() == wire.lower() for k in params)
        if not present:
            continue
        value = _param(params, wire)
        nullable = wire == "SmtpClientAuthenticationDisabled"
        if not isinstance(value, bool) and not (nullable and value is None):
            raise CmdletError(
                400,
                "System.Management.Automation.ParameterBindingException",
                f"Cannot process argument transformation on parameter '{wire}'. Cannot convert "
                f'value "{value}" to type "System.Boolean".',
            )
        update[field] = value
        changes.append(f"{wire}={value}")
    for wire, field in CAS_LISTS.items():
        if any(k.lower() == wire.lower() for k in params):
            update[field] = _list_value(getattr(user.cas, field), _param(params, wire))
            changes.append(f"{wire}={list(update[field])}")
    state.count_write("Set-CASMailbox", user.upn, [c.partition("=")[0] for c in changes])
    cas: CasSettings = user.cas.model_copy(update=update)
    if cas == user.cas:
        # What Exchange says when a Set-* changes nothing (so applying twice is visible).
        warnings.append(
            f"The command completed successfully but no settings of '{_alias(user)}' have been "
            "modified."
        )
        return []
    state.replace_user(
        user.model_copy(update={"cas": cas}), f"Set-CASMailbox {user.upn} {' '.join(changes)}"
    )
    return []


def run(
    state: TenantState, cmdlet: str, params: Params, roles: set[str], warnings: list[str]
) -> list[dict[str, Any]]:
    name = cmdlet.strip()
    low = name.lower()
    table: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "get-casmailbox": lambda: _get_each(state, params, "Get-CASMailbox", cas_wire),
        "get-mailbox": lambda: _get_each(
            state, params, "Get-Mailbox", lambda s, u: mailbox_wire(u)
        ),
        "get-user": lambda: _get_directory(state, params, "Get-User", user_wire),
        "get-recipient": lambda: _get_directory(state, params, "Get-Recipient", recipient_wire),
        "get-mobiledevice": lambda: _get_devices(state, params),
        "get-activesyncorganizationsettings": lambda: [_org_settings(state)],
        "get-activesyncdeviceaccessrule": lambda: [
            {
                "Identity": r.name,
                "Name": r.name,
                "Characteristic": r.characteristic,
                "QueryString": r.query_string,
                "AccessLevel": r.access_level,
                "IsValid": True,
            }
            for r in state.data.device_rules
        ],
        "get-clientaccessrule": lambda: _car(state, name),
        "get-transportconfig": lambda: [
            {
                "Identity": "Transport Settings",
                "Name": "Transport Settings",
                "SmtpClientAuthenticationDisabled": state.smtp_client_authentication_disabled,
                "MaxSendSize": "35 MB (36,700,160 bytes)",
                "MaxReceiveSize": "36 MB (37,748,736 bytes)",
            }
        ],
        "set-casmailbox": lambda: set_cas_mailbox(state, params, warnings),
    }
    action = table.get(low)
    if action is None:
        raise _not_recognized(name)
    needed = _WRITE_ROLES if low.startswith("set-") else _READ_ROLES
    if not roles & needed:
        # A cmdlet outside the app's Entra role is not there for it (§6.3; see the docstring).
        raise _not_recognized(name)
    return action()


def _get_each(
    state: TenantState,
    params: Params,
    cmdlet: str,
    wire: Callable[[TenantState, TenantUser], dict[str, Any]],
) -> list[dict[str, Any]]:
    _check_params(cmdlet, params, {"Identity", "ResultSize"})
    identity = _param(params, "Identity")
    if identity is not None:
        return [wire(state, _mailbox_user(state, identity))]
    return [wire(state, u) for u in _all_mailboxes(state)]


def _get_directory(
    state: TenantState,
    params: Params,
    cmdlet: str,
    wire: Callable[[TenantState, TenantUser], dict[str, Any]],
) -> list[dict[str, Any]]:
    _check_params(cmdlet, params, {"Identity", "ResultSize"})
    identity = _param(params, "Identity")
    if identity is None:
        users = list(state.live_users())
    else:
        found = state.resolve_recipient(str(identity))
        if found is None or (cmdlet == "Get-Recipient" and _recipient_type(state, found) == "User"):
            raise _not_found(str(identity))
        users = [found]
    return [wire(state, u) for u in users]


def _get_devices(state: TenantState, params: Params) -> list[dict[str, Any]]:
    _check_params("Get-MobileDevice", params, {"Mailbox", "Identity", "ResultSize"})
    mailbox = _param(params, "Mailbox")
    if mailbox is not None:
        return devices_wire(state, _mailbox_user(state, mailbox))
    rows: list[dict[str, Any]] = []
    for user in _all_mailboxes(state):
        rows.extend(devices_wire(state, user))
    identity = _param(params, "Identity")
    if identity is not None:
        rows = [r for r in rows if str(identity) in (r["Identity"], r["DeviceId"])]
        if not rows:
            raise _not_found(str(identity))
    return rows


def _org_settings(state: TenantState) -> dict[str, Any]:
    return {
        "Identity": "Mobile Mailbox Settings",
        "Name": "Mobile Mailbox Settings",
        "DefaultAccessLevel": state.default_access_level,
        "AllowAccessForUnSupportedPlatform": False,
        "AdminMailRecipients": [],
        "UserMailInsert": None,
        "OtaNotificationMailInsert": None,
        "IsValid": True,
    }


def _car(state: TenantState, name: str) -> list[dict[str, Any]]:
    rules = state.data.client_access_rules
    if rules is None:
        raise _not_recognized(name)  # retired (§6.1): the cmdlet is gone
    return [
        {
            "Identity": r.name,
            "Name": r.name,
            "Priority": r.priority,
            "Enabled": r.enabled,
            "DatacenterAdminsOnly": False,
            "Action": r.action,
            "AnyOfClientIPAddressesOrRanges": list(r.any_of_client_ip_addresses_or_ranges),
            "ExceptAnyOfClientIPAddressesOrRanges": list(
                r.except_any_of_client_ip_addresses_or_ranges
            ),
            "AnyOfSourceTcpPortNumbers": [],
            "ExceptAnyOfSourceTcpPortNumbers": [],
            "UsernameMatchesAnyOfPatterns": list(r.username_matches_any_of_patterns),
            "ExceptUsernameMatchesAnyOfPatterns": list(r.except_username_matches_any_of_patterns),
            "UserIsMemberOf": [],
            "ExceptUserIsMemberOf": [],
            "AnyOfAuthenticationTypes": list(r.any_of_authentication_types),
            "ExceptAnyOfAuthenticationTypes": list(r.except_any_of_authentication_types),
            "AnyOfProtocols": list(r.any_of_protocols),
            "ExceptAnyOfProtocols": list(r.except_any_of_protocols),
            "UserRecipientFilter": r.user_recipient_filter,
            "Scope": r.scope,
            "IsValid": True,
        }
        for r in sorted(rules, key=lambda r: r.priority)
    ]


# ---- the endpoint --------------------------------------------------------------------------


async def _held_back(state: TenantState, cmdlet: str) -> None:
    """Wait before answering when a test asked (`TenantState.hold`); the cmdlet has run."""
    seconds = state.take_hold("exo", cmdlet.strip())
    if seconds <= 0:
        return
    state.held += 1
    try:
        await asyncio.sleep(seconds)
    finally:
        state.held -= 1


def _json(body: object, status: int, headers: Mapping[str, str]) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body, separators=(",", ":")).encode(),
        headers={
            **headers,
            "Content-Type": "application/json;odata.metadata=minimal;charset=utf-8",
        },
    )


async def handle(
    request: web.Request, state: TenantState | None, headers: dict[str, str]
) -> web.Response:
    """/adminapi/beta/{tenant}/InvokeCommand on the EXO host."""
    segments = [s for s in request.path.split("/") if s]
    if (
        len(segments) != 4
        or segments[1].lower() != "beta"
        or segments[3].lower() != "invokecommand"
    ):
        return base.not_found(headers)
    exo = state.hosts.exo if state is not None else request.host
    login = state.hosts.login if state else "login.microsoftonline.com"
    challenge = {
        "WWW-Authenticate": f'Bearer client_id="{EXO_APP_ID}", '
        f'authorization_uri="https://{login}/common/oauth2/authorize"'
    }
    if state is None or not state.is_tenant(segments[2]):
        return _json(
            _error_body(
                CmdletError(
                    401, "UnauthorizedAccessException", "The tenant is not valid.", "Unauthorized"
                )
            ),
            401,
            {**headers, **challenge},
        )
    if request.method != "POST":
        return _json(
            _error_body(
                CmdletError(
                    405,
                    "HttpMethodNotAllowed",
                    "The HTTP method is not allowed.",
                    "MethodNotAllowed",
                )
            ),
            405,
            headers,
        )
    checked = check_token(
        state, request.headers.get("Authorization"), {state.hosts.exo_audience, EXO_APP_ID}
    )
    claims = checked.claims
    if claims is None or "Exchange.ManageAsApp" not in (claims.get("roles") or []):
        message = checked.error or "The app does not have the Exchange.ManageAsApp permission."
        return _json(
            _error_body(CmdletError(401, "UnauthorizedAccessException", message, "Unauthorized")),
            401,
            {**headers, **challenge},
        )
    try:
        data = await request.json()
        cmdlet_input = data["CmdletInput"]
        cmdlet = str(cmdlet_input["CmdletName"])
        params = dict(cmdlet_input.get("Parameters") or {})
    except (ValueError, KeyError, TypeError, AttributeError):
        return _json(
            _error_body(
                CmdletError(
                    400, "ArgumentException", "The request body is not a valid CmdletInput."
                )
            ),
            400,
            headers,
        )
    throttle = state.throttled("exo", cmdlet)
    if throttle is not None:
        err = CmdletError(
            throttle.status,
            "ThrottlingException",
            "Too many requests. Please retry after some time.",
            "TooManyRequests",
        )
        return _json(
            _error_body(err), throttle.status, {**headers, "Retry-After": str(throttle.retry_after)}
        )
    roles = {_ROLE_BY_TEMPLATE[w] for w in claims.get("wids") or [] if w in _ROLE_BY_TEMPLATE}
    warnings: list[str] = []
    try:
        rows = run(state, cmdlet, params, roles, warnings)
    except CmdletError as err:
        return _json(_error_body(err), err.status, headers)
    await _held_back(state, cmdlet)
    size = state.data.page_size
    prefer = request.headers.get("Prefer", "")
    if "odata.maxpagesize=" in prefer:
        with contextlib.suppress(ValueError):
            size = min(size, max(1, int(prefer.split("odata.maxpagesize=", 1)[1].split(",")[0])))
    offset = 0
    token = request.query.get("$skiptoken")
    if token:
        try:
            offset = int(base64.urlsafe_b64decode(token + "==").decode().split(":", 1)[1])
        except (ValueError, IndexError):
            offset = 0
    body: dict[str, Any] = {
        "@odata.context": f"https://{exo}/adminapi/beta/{state.tenant_id}/$metadata#Collection(Exchange.GenericHashTable)",
        "adminapi.warnings@odata.type": "#Collection(String)",
        "@adminapi.warnings": warnings,
        "value": rows[offset : offset + size],
    }
    if offset + size < len(rows):
        skip = base64.urlsafe_b64encode(f"exo:{offset + size}".encode()).decode().rstrip("=")
        body["@odata.nextLink"] = (
            f"https://{exo}/adminapi/beta/{segments[2]}/InvokeCommand?$skiptoken={skip}"
        )
    return _json(body, 200, headers)
