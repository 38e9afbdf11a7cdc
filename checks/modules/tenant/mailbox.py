"""tenant.mailbox and tenant.devices (Exchange Online admin API, reference §6.2–6.4, §3.3).

tenant.mailbox: is there an Exchange Online mailbox (Get-CASMailbox), or is it still on the
organisation's own Exchange (hybrid: an EXO MailUser for a synced account), or none at all —
and are the switches this client needs on: ActiveSyncEnabled and OutlookMobileEnabled (phones),
ImapEnabled, PopEnabled, MAPIEnabled + EwsEnabled (Outlook), OWAEnabled (web), and SMTP AUTH
(`SmtpClientAuthenticationDisabled` on the mailbox; `null` there means the organisation's
Get-TransportConfig value applies) for apps that send with SMTP AUTH.
tenant.devices: the person's phones (Get-MobileDevice) with access state and reason
(Quarantined, Blocked; Global = the organisation default, Individual = the mailbox's own
allow/block lists, DeviceRule = a device access rule, named), and the organisation default.
Nothing here changes the tenant; fixes are proposals (checks.remedies).
"""

from __future__ import annotations

import asyncio
from typing import Any

from checks.models import Client, Finding, Side, Status
from checks.remedies import propose
from checks.spec import EVERY_CLIENT, Check, CheckContext
from checks.tenant import reads
from checks.tenant.errors import TenantError
from checks.tenant.findings import tenant_error_finding
from checks.tenant.licensing import assess
from checks.tenant.models import ActiveSyncDeviceAccessRule, CasMailbox, MobileDevice

# protocol name (as the proposals spell it) -> (CasMailbox field, what people call it)
SWITCHES: dict[str, tuple[str, str]] = {
    "ActiveSync": ("active_sync_enabled", "Exchange ActiveSync (the phone's built-in mail app)"),
    "OutlookMobile": ("outlook_mobile_enabled", "Outlook for iOS and Android"),
    "Imap": ("imap_enabled", "IMAP"),
    "Pop": ("pop_enabled", "POP"),
    "Mapi": ("mapi_enabled", "MAPI (how Outlook for Windows connects)"),
    "Ews": ("ews_enabled", "Exchange Web Services (Outlook for Mac and Autodiscover lookups)"),
    "Owa": ("owa_enabled", "Outlook on the web"),
}
# Which switches each client needs. For `all`, the everyday ones; IMAP, POP and SMTP AUTH are
# often off on purpose, so they are reported but do not fail the check.
NEEDS: dict[Client, tuple[str, ...]] = {
    Client.MOBILE: ("ActiveSync", "OutlookMobile"),
    Client.IMAP: ("Imap",),
    Client.POP: ("Pop",),
    Client.OUTLOOK: ("Mapi", "Ews"),
    Client.WEB: ("Owa",),
    Client.SMTP: (),
    Client.ALL: ("Mapi", "Ews", "Owa", "ActiveSync", "OutlookMobile"),
}
SMTP_CLIENTS = frozenset({Client.SMTP, Client.IMAP, Client.POP})  # they send with SMTP AUTH
# An EXO recipient that is not a mailbox here: the mailbox lives on-premises (§6.4).
REMOTE_TYPES = frozenset({"MailUser", "RemoteUserMailbox", "RemoteSharedMailbox"})


def _off(cas: CasMailbox, names: tuple[str, ...]) -> list[str]:
    return [n for n in names if getattr(cas, SWITCHES[n][0]) is False]


# SMTP AUTH is listed with the switches when an IMAP or POP app has both off (one fix for all).
SMTP_AUTH = "SmtpClientAuth"
SMTP_AUTH_WORDS = "Authenticated SMTP (SMTP AUTH, which this app uses to send mail)"


def _words(names: list[str]) -> str:
    said = [SMTP_AUTH_WORDS if n == SMTP_AUTH else SWITCHES[n][1] for n in names]
    return said[0] if len(said) == 1 else ", ".join(said[:-1]) + " and " + said[-1]


async def _mailbox(ctx: CheckContext) -> Finding:
    try:
        read = await reads.cas_mailbox(ctx)
    except TenantError as exc:
        return tenant_error_finding(MAILBOX, exc, reading="mailbox settings")
    requests = list(read.requests)
    cas = read.value
    address = ctx.address.display
    if cas is None:
        return await _no_mailbox(ctx, requests)
    mailbox = cas.primary_smtp_address or ctx.address.address
    needed = NEEDS[ctx.client]
    off = _off(cas, needed)
    evidence: dict[str, Any] = {
        "mailbox": mailbox,
        "switches": {n: getattr(cas, SWITCHES[n][0]) for n in SWITCHES},
        "smtp_client_authentication_disabled": cas.smtp_client_authentication_disabled,
        "requests": requests,
    }
    if ctx.client is Client.ALL:
        evidence["also_off"] = _off(cas, ("Imap", "Pop"))
    if off and ctx.client in SMTP_CLIENTS:
        smtp_off, org_disabled, more = await _smtp_auth_also_off(ctx, cas)
        evidence["requests"] = requests + more
        if org_disabled is not None:
            evidence["org_default"] = org_disabled
        if smtp_off:
            off = [*off, SMTP_AUTH]
    if off:
        return MAILBOX.finding(
            Status.FAIL,
            f"{_words(off)} {'is' if len(off) == 1 else 'are'} switched off for {address}'s "
            "mailbox, so this app cannot connect.",
            evidence={**evidence, "problem": "protocol-disabled", "protocols_off": off},
            next_steps=[
                f"An administrator turns on {_words(off)} for this mailbox: Microsoft 365 admin "
                "center > Users > Active users > the person > Mail > Manage email apps "
                "(mailfix has prepared this fix for approval).",
                "The change takes effect within about an hour; then the app connects again "
                "without being set up anew.",
            ],
            remediation=propose.enable_protocol(mailbox, protocols=off),
        )
    if ctx.client in SMTP_CLIENTS:
        return await _smtp_auth(ctx, cas, mailbox, evidence)
    on = [n for n in needed if getattr(cas, SWITCHES[n][0]) is not False]
    what = f"; {_words(on)} {'is' if len(on) == 1 else 'are'} on" if on else ""
    return MAILBOX.finding(
        Status.PASS,
        f"{address} has an Exchange Online mailbox{what}.",
        evidence={**evidence, "problem": None},
    )


async def _smtp_auth_also_off(
    ctx: CheckContext, cas: CasMailbox
) -> tuple[bool, bool | None, list[str]]:
    """For an app whose protocol is off: is SMTP AUTH off too (so the one fix switches it on as
    well)? (off, the organisation's setting when it was read, the requests). A failed read of
    the organisation's setting leaves SMTP AUTH out; the check after the fix reports it."""
    setting = cas.smtp_client_authentication_disabled
    if setting is not None:
        return setting, None, []
    try:
        transport = await reads.transport_config(ctx)
    except TenantError:
        return False, None, []
    org = transport.value.smtp_client_authentication_disabled
    return bool(org), org, list(transport.requests)


async def _smtp_auth(
    ctx: CheckContext, cas: CasMailbox, mailbox: str, evidence: dict[str, Any]
) -> Finding:
    setting = cas.smtp_client_authentication_disabled
    org_disabled: bool | None = None
    requests = list(evidence["requests"])
    if setting is None:
        try:
            transport = await reads.transport_config(ctx)
        except TenantError as exc:
            return tenant_error_finding(
                MAILBOX, exc, requests, reading="organisation's SMTP AUTH setting"
            )
        requests += transport.requests
        org_disabled = transport.value.smtp_client_authentication_disabled
    disabled = setting if setting is not None else bool(org_disabled)
    evidence = {
        **evidence,
        "requests": requests,
        "org_default": org_disabled,
        "mailbox_setting": setting,
    }
    address = ctx.address.display
    if disabled:
        where = (
            "for this mailbox"
            if setting is True
            else "for the whole organisation, and this mailbox follows that setting"
        )
        return MAILBOX.finding(
            Status.FAIL,
            f"Authenticated SMTP (SMTP AUTH), which this app uses to send mail, is switched off "
            f"{where}.",
            evidence={**evidence, "problem": "smtp-auth-disabled"},
            next_steps=[
                "An administrator turns on Authenticated SMTP for this mailbox only (safer than "
                "for everyone): Microsoft 365 admin center > Users > Active users > the person > "
                "Mail > Manage email apps > Authenticated SMTP (mailfix has prepared this fix "
                "for approval).",
                "Microsoft is retiring password (Basic) sign-in for SMTP AUTH; an app or "
                "device that can sign in with a Microsoft account page (OAuth) keeps working "
                "longer.",
            ],
            remediation=propose.enable_protocol(mailbox, "SmtpClientAuth"),
        )
    needed = NEEDS[ctx.client]
    on = f"{_words(list(needed))} and Authenticated SMTP are" if needed else "Authenticated SMTP is"
    return MAILBOX.finding(
        Status.PASS,
        f"{address} has an Exchange Online mailbox; {on} on.",
        evidence={**evidence, "problem": None},
    )


async def _no_mailbox(ctx: CheckContext, requests: list[str]) -> Finding:
    address = ctx.address.display
    synced = False
    recipient_type: str | None = None
    licence_problem: str | None = None
    try:
        found = await reads.user(ctx)
        requests += found.requests
        user = found.value.user
        if user is not None:
            synced = user.synced_from_on_premises
            licences = await reads.licenses(ctx, user.id)
            requests += licences.requests
            licence_problem = assess(licences.value, user).problem
    except TenantError:
        pass  # the account and licence checks report their own errors
    try:
        rec = await reads.recipient(ctx)
        requests += rec.requests
        if rec.value is not None:
            recipient_type = str(rec.value.get("RecipientTypeDetails") or "") or None
    except TenantError:
        pass
    requests = list(dict.fromkeys(requests))
    if recipient_type in REMOTE_TYPES and synced:
        return MAILBOX.finding(
            Status.WARN,
            f"{address}'s mailbox is on the organisation's own Exchange server, not in Exchange "
            "Online, so mailfix's Exchange Online checks say nothing about it.",
            evidence={
                "problem": "mailbox-on-premises",
                "recipient_type": recipient_type,
                "synced_from_on_premises": synced,
                "requests": requests,
            },
            next_steps=[
                "The person's apps should connect to the organisation's own Exchange server: "
                "the on-premises Exchange administrator checks the mailbox and its protocols.",
                "If the mailbox was meant to move to Exchange Online, an administrator checks "
                "the migration batch in the Exchange admin center.",
            ],
        )
    evidence: dict[str, Any] = {
        "problem": "no-mailbox",
        "recipient_type": recipient_type,
        "synced_from_on_premises": synced,
        "requests": requests,
    }
    steps = [
        "An administrator gives the person a licence that includes Exchange Online; the mailbox "
        "is created a few minutes later.",
    ]
    summary = f"{address} has no mailbox in Exchange Online."
    if licence_problem is not None:
        evidence["because"] = "no-exchange-plan"
        evidence["licence_problem"] = licence_problem
        summary = (
            f"{address} has no mailbox in Exchange Online, because no licence gives it an "
            "Exchange Online plan that is on."
        )
        steps = ["Fix the licence first (see the licence finding); the mailbox follows."]
    else:
        steps.append(
            "If the licence is in place, an administrator checks the mailbox in the Exchange "
            "admin center (it may have been deleted or be an inactive mailbox)."
        )
    return MAILBOX.finding(Status.FAIL, summary, evidence=evidence, next_steps=steps)


# --- tenant.devices ---------------------------------------------------------------------------

_LEVEL_FOR_STATE = {"Quarantined": "Quarantine", "Blocked": "Block", "Allowed": "Allow"}
_CHARACTERISTIC = {
    "DeviceModel": "device_model",
    "DeviceType": "device_type",
    "DeviceOS": "device_os",
    "UserAgent": "device_user_agent",
}


def _device_name(device: MobileDevice) -> str:
    return device.friendly_name or device.device_model or device.device_type or device.device_id


def matched_rule(device: MobileDevice, rules: list[ActiveSyncDeviceAccessRule]) -> str | None:
    """The device access rule behind a DeviceRule state, by the name Exchange gives, else by
    the rule whose characteristic matches the device and whose level gives its state."""
    if device.device_access_state_reason != "DeviceRule":
        return None
    named = device.device_access_control_rule
    if named:
        for rule in rules:
            if named in (rule.identity, rule.name):
                return rule.name or rule.identity
        return named
    level = _LEVEL_FOR_STATE.get(device.device_access_state or "")
    for rule in rules:
        field = _CHARACTERISTIC.get(rule.characteristic or "")
        value = getattr(device, field) if field else None
        if (
            value
            and rule.query_string
            and value.lower() == rule.query_string.lower()
            and (level is None or rule.access_level == level)
        ):
            return rule.name or rule.identity
    return None


def _reason_words(device: dict[str, Any], default_level: str | None) -> str:
    reason, rule, state = device["reason"], device["rule"], device["state"].lower()
    if reason == "Global":
        return (
            f"the organisation's default for new phones is {default_level or 'not Allow'}, so "
            f"every phone without an explicit approval is {state}"
        )
    if reason == "DeviceRule":
        return f"the device access rule {rule or '(unnamed)'} applies to this phone"
    if reason == "Individual":
        return f"an administrator {state} this phone for this mailbox"
    if reason == "Policy":
        return "the mobile device mailbox policy does not allow it"
    return f"Exchange gives the reason {reason or 'unknown'}"


async def _devices(ctx: CheckContext) -> Finding:
    try:
        cas = await reads.cas_mailbox(ctx)
    except TenantError as exc:
        return tenant_error_finding(DEVICES, exc, reading="phones that sync with the mailbox")
    if cas.value is None:
        return DEVICES.finding(
            Status.SKIP,
            "There is no Exchange Online mailbox, so no phone can sync with it (see the mailbox "
            "finding).",
            evidence={"requests": list(cas.requests)},
        )
    try:
        devices, org, rules = await asyncio.gather(
            reads.mobile_devices(ctx), reads.activesync_org(ctx), reads.device_rules(ctx)
        )
    except TenantError as exc:
        return tenant_error_finding(
            DEVICES, exc, cas.requests, reading="phones that sync with the mailbox"
        )
    requests = list(dict.fromkeys([*devices.requests, *org.requests, *rules.requests]))
    default_level = org.value.default_access_level
    listed: list[dict[str, Any]] = [
        {
            "name": _device_name(d),
            "device_id": d.device_id,
            "state": d.device_access_state or "Unknown",
            "reason": d.device_access_state_reason,
            "rule": matched_rule(d, rules.value),
            "client_type": d.client_type,
        }
        for d in devices.value
    ]
    evidence: dict[str, Any] = {
        "devices": listed,
        "default_access_level": default_level,
        "rules": [r.name or r.identity for r in rules.value],
        "requests": requests,
    }
    mailbox = cas.value.primary_smtp_address or ctx.address.address
    for state, problem in (("Quarantined", "device-quarantined"), ("Blocked", "device-blocked")):
        hit = [d for d in listed if d["state"] == state]
        if not hit:
            continue
        first = hit[0]
        names = ", ".join(d["name"] for d in hit)
        why = _reason_words(first, default_level)
        steps: list[str]
        if state == "Quarantined":
            steps = [
                f"An administrator allows the phone {first['name']}: Exchange admin center > "
                "Mobile > Quarantined devices > Allow (mailfix has prepared this fix for "
                "approval).",
                "Once it is allowed the phone syncs within minutes; the account does not need "
                "to be set up again.",
            ]
        else:
            steps = [
                f"An administrator decides whether {first['name']} may sync: if yes, they "
                "remove the block (the mailbox's blocked list, or the device access rule) in "
                "the Exchange admin center > Mobile.",
                "Until then, use Outlook on the web from a browser.",
            ]
        return DEVICES.finding(
            Status.FAIL,
            f"{names} {'is' if len(hit) == 1 else 'are'} {state.lower()} by Exchange Online: "
            f"{why}.",
            evidence={**evidence, "problem": problem, "matched_rule": first["rule"]},
            next_steps=steps,
            remediation=propose.release_device(mailbox, first["device_id"])
            if state == "Quarantined"
            else None,
        )
    if not listed:
        note = ""
        if default_level in ("Quarantine", "Block"):
            note = (
                f" New phones are {'quarantined' if default_level == 'Quarantine' else 'blocked'}"
                " by the organisation's default until an administrator allows them."
            )
        return DEVICES.finding(
            Status.PASS,
            f"No phone has synced with this mailbox yet.{note}",
            evidence={**evidence, "problem": None, "matched_rule": None},
        )
    return DEVICES.finding(
        Status.PASS,
        f"Exchange Online allows the phone{'s' if len(listed) > 1 else ''} "
        f"{', '.join(d['name'] for d in listed)}.",
        evidence={**evidence, "problem": None, "matched_rule": None},
    )


MAILBOX = Check(
    id="tenant.mailbox",
    title="Mailbox and protocols",
    side=Side.ADMIN,
    clients=EVERY_CLIENT,
    run=_mailbox,
    needs_tenant=True,
)
DEVICES = Check(
    id="tenant.devices",
    title="Quarantined devices",
    side=Side.ADMIN,
    clients=frozenset({Client.MOBILE}),
    run=_devices,
    needs_tenant=True,
)

CHECKS: tuple[Check, ...] = (MAILBOX, DEVICES)
