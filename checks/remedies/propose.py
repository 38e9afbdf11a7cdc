"""Builders of the typed fixes an admin may approve (issue 6 item 4; PLAN "Remediations").

Tenant checks call these when a finding is something an admin can fix, and put the result in
`Finding.remediation`. A builder only describes the fix: what, the exact operation and target,
the precondition the executor checks first, an idempotency key (the same fix for the same
object always has the same key), whether it is hard to undo, and which checks to run again.
Nothing here talks to the tenant; `checks.remedies.executors` does, after approval.

Operations (reference exchange-online-diagnostics.md):
- protocol switches: `Set-CASMailbox <u> -ActiveSyncEnabled $true` …,
  `-SmtpClientAuthenticationDisabled $false` (§6.2); every switch a finding lists goes in one
  call (`-MAPIEnabled $true -EwsEnabled $true`), so one approval fixes them all;
- releasing a quarantined phone: `Set-CASMailbox <u> -ActiveSyncAllowedDeviceIDs @{Add="<id>"}`
  (§3.3), sent over InvokeCommand as a `#Exchange.GenericHashTable` (§6.3 (a));
- licences: Graph `POST /users/{id}/assignLicense` (a user without `usageLocation` cannot be
  licensed, §5);
- accounts: Graph `PATCH /users/{id}` `{"accountEnabled": true}`;
  `POST /directory/deletedItems/{id}/restore` (soft-deleted users, 30 days, §5).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from checks.models import Remediation

ENABLE_PROTOCOL = "enable-protocol"
RELEASE_DEVICE = "release-device"
ENABLE_EXCHANGE_PLAN = "enable-exchange-plan"
ASSIGN_LICENSE = "assign-license"
ENABLE_ACCOUNT = "enable-account"
RESTORE_USER = "restore-user"

KINDS: tuple[str, ...] = (
    ENABLE_PROTOCOL,
    RELEASE_DEVICE,
    ENABLE_EXCHANGE_PLAN,
    ASSIGN_LICENSE,
    ENABLE_ACCOUNT,
    RESTORE_USER,
)

ASSIGN_LICENSE_PATH = "/users/{user_id}/assignLicense"
USER_PATH = "/users/{user_id}"
RESTORE_PATH = "/directory/deletedItems/{deleted_id}/restore"


@dataclass(frozen=True)
class Protocol:
    """One per-mailbox switch of Get-/Set-CASMailbox (reference §6.2)."""

    name: str  # the builder's name: "ActiveSync"
    parameter: str  # the Set-CASMailbox parameter: "ActiveSyncEnabled"
    on: bool  # the value that switches the protocol on
    words: str  # what an admin calls it
    short: str  # what the person calls it
    again: str  # what the person does once it is on


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            "ActiveSync",
            "ActiveSyncEnabled",
            True,
            "Exchange ActiveSync (the phone's built-in mail app)",
            "ActiveSync",
            "add the account again on your phone",
        ),
        Protocol("Imap", "ImapEnabled", True, "IMAP", "IMAP", "try your mail app again"),
        Protocol("Pop", "PopEnabled", True, "POP", "POP", "try your mail app again"),
        Protocol(
            "Mapi", "MAPIEnabled", True, "MAPI (Outlook for Windows)", "Outlook", "restart Outlook"
        ),
        Protocol(
            "Ews",
            "EwsEnabled",
            True,
            "Exchange Web Services",
            "Exchange Web Services",
            "restart your mail app",
        ),
        Protocol(
            "Owa",
            "OWAEnabled",
            True,
            "Outlook on the web",
            "Outlook on the web",
            "sign in to Outlook on the web again",
        ),
        Protocol(
            "OutlookMobile",
            "OutlookMobileEnabled",
            True,
            "Outlook for iOS and Android",
            "Outlook for iOS and Android",
            "open Outlook on your phone again",
        ),
        # $true disabled, $false enabled, $null follows Get-TransportConfig (§6.2)
        Protocol(
            "SmtpClientAuth",
            "SmtpClientAuthenticationDisabled",
            False,
            "SMTP AUTH (sending from a mail app or device)",
            "Sending mail from your app or device",
            "send a test message from your app or device",
        ),
    )
}


def _ps(value: Any) -> str:
    """A PowerShell literal for the operation text."""
    if isinstance(value, bool):
        return "$true" if value else "$false"
    return '"' + str(value).replace('"', '`"') + '"'


def _body(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "))


def _required(**values: str) -> None:
    for name, value in values.items():
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name} must be a non-empty string")


def license_body(sku_id: str, disabled_plans: list[str]) -> dict[str, Any]:
    """The assignLicense body: one SKU added with these plans switched off, nothing removed."""
    return {
        "addLicenses": [{"skuId": sku_id, "disabledPlans": list(disabled_plans)}],
        "removeLicenses": [],
    }


def protocol_set(
    protocol: str | None = None, protocols: Sequence[str] | None = None
) -> list[Protocol]:
    """The protocols of an enable-protocol fix: `protocol` (the single-protocol form) or
    `protocols` (several, one Set-CASMailbox call), known names only, each once, in the order
    of `PROTOCOLS` (so the same set is always the same fix)."""
    if protocol is not None and protocols is not None:
        raise ValueError("give protocol or protocols, not both")
    if protocols is None:
        _required(protocol=protocol or "")
        names = [protocol or ""]
    else:
        if isinstance(protocols, str) or not protocols:
            raise ValueError("protocols must be a non-empty list of protocol names")
        names = list(protocols)
    unknown = [n for n in names if not isinstance(n, str) or n not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown protocol {unknown[0]!r}; one of {', '.join(PROTOCOLS)}")
    wanted = set(names)
    return [p for p in PROTOCOLS.values() if p.name in wanted]


def joined(words: Sequence[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    said = list(dict.fromkeys(words))
    return said[0] if len(said) == 1 else ", ".join(said[:-1]) + " and " + said[-1]


def enable_protocol(
    mailbox: str, protocol: str | None = None, protocols: Sequence[str] | None = None
) -> Remediation:
    """Switch protocols on for a mailbox in one `Set-CASMailbox` call.

    `protocol` is one protocol (params `{"mailbox", "protocol"}`, the form stored before
    several could be combined); `protocols` is every protocol a finding lists. A set of one is
    built in the single-protocol form, so its params and idempotency key stay as they were.
    Several: params `{"mailbox", "protocols": [...]}` in `PROTOCOLS` order, and the key names
    the set sorted (`enable-protocol:<mailbox>:Ews+Mapi`).
    """
    _required(mailbox=mailbox)
    specs = protocol_set(protocol, protocols)
    switches = " ".join(f"-{s.parameter} {_ps(s.on)}" for s in specs)
    words = joined([s.words for s in specs])
    params: dict[str, Any]
    if len(specs) == 1:
        params = {"mailbox": mailbox, "protocol": specs[0].name}
    else:
        params = {"mailbox": mailbox, "protocols": [s.name for s in specs]}
    key = "+".join(sorted(s.name for s in specs))
    return Remediation(
        id=ENABLE_PROTOCOL,
        title=f"Switch {words} on for {mailbox}",
        api="exo",
        action="Set-CASMailbox",
        params=params,
        target=mailbox,
        operation=f"Set-CASMailbox -Identity {_ps(mailbox)} {switches}",
        precondition=(
            f"The Exchange Online mailbox {mailbox} exists and {words} "
            f"{'is' if len(specs) == 1 else 'are'} not already on for it"
            + ("" if len(specs) == 1 else " (only the switches still off are sent)")
            + "."
        ),
        idempotency_key=f"{ENABLE_PROTOCOL}:{mailbox.lower()}:{key}",
        verify=["tenant.mailbox"],
    )


def release_device(mailbox: str, device_id: str) -> Remediation:
    """Let a quarantined phone sync: add its DeviceId to the mailbox's allowed devices."""
    _required(mailbox=mailbox, device_id=device_id)
    return Remediation(
        id=RELEASE_DEVICE,
        title=f"Let the phone {device_id} sync with {mailbox}",
        api="exo",
        action="Set-CASMailbox",
        params={"mailbox": mailbox, "device_id": device_id},
        target=mailbox,
        operation=(
            f"Set-CASMailbox -Identity {_ps(mailbox)} "
            f"-ActiveSyncAllowedDeviceIDs @{{Add={_ps(device_id)}}}"
        ),
        precondition=(
            f"The Exchange Online mailbox {mailbox} exists, has synced with this phone, and "
            "the phone is neither on its list of allowed devices yet nor on its list of "
            "blocked devices."
        ),
        idempotency_key=f"{RELEASE_DEVICE}:{mailbox.lower()}:{device_id}",
        verify=["tenant.devices"],
    )


def enable_exchange_plan(
    user_id: str, sku_id: str, plan_id: str, still_disabled: list[str]
) -> Remediation:
    """Switch a licence's Exchange Online plan back on, keeping the other plans as they are.

    `still_disabled` is the SKU's disabledPlans without `plan_id` when the finding was made;
    the executor recomputes it from the user's licences at the time it applies the fix.
    """
    _required(user_id=user_id, sku_id=sku_id, plan_id=plan_id)
    rest = [p for p in still_disabled if p != plan_id]
    body = license_body(sku_id, rest)
    return Remediation(
        id=ENABLE_EXCHANGE_PLAN,
        title="Switch the Exchange Online plan back on in the user's licence",
        api="graph",
        action=f"POST {ASSIGN_LICENSE_PATH}",
        params={
            "user_id": user_id,
            "sku_id": sku_id,
            "plan_id": plan_id,
            "still_disabled": rest,
        },
        target=user_id,
        operation=f"POST /v1.0/users/{user_id}/assignLicense {_body(body)}",
        precondition=(
            f"The user {user_id} has the licence {sku_id} with the plan {plan_id} switched "
            "off, and a usage location."
        ),
        idempotency_key=f"{ENABLE_EXCHANGE_PLAN}:{user_id}:{sku_id}:{plan_id}",
        verify=["tenant.license", "tenant.mailbox"],
    )


def assign_license(user_id: str, sku_id: str) -> Remediation:
    """Assign a licence (a SKU the tenant has) with every plan on."""
    _required(user_id=user_id, sku_id=sku_id)
    body = license_body(sku_id, [])
    return Remediation(
        id=ASSIGN_LICENSE,
        title="Assign a licence that includes an Exchange Online mailbox",
        api="graph",
        action=f"POST {ASSIGN_LICENSE_PATH}",
        params={"user_id": user_id, "sku_id": sku_id},
        target=user_id,
        operation=f"POST /v1.0/users/{user_id}/assignLicense {_body(body)}",
        precondition=(
            f"The user {user_id} does not have the licence {sku_id} yet and has a usage "
            "location (Microsoft 365 cannot license a user without one)."
        ),
        idempotency_key=f"{ASSIGN_LICENSE}:{user_id}:{sku_id}",
        verify=["tenant.license", "tenant.mailbox"],
    )


def enable_account(user_id: str, upn: str) -> Remediation:
    """Let a cloud-only account sign in again (`accountEnabled: true`)."""
    _required(user_id=user_id, upn=upn)
    return Remediation(
        id=ENABLE_ACCOUNT,
        title=f"Let {upn} sign in again (enable the account)",
        api="graph",
        action=f"PATCH {USER_PATH}",
        params={"user_id": user_id, "upn": upn},
        target=user_id,
        operation=f"PATCH /v1.0/users/{user_id} {_body({'accountEnabled': True})}",
        precondition=(
            f"The account {upn} exists, is disabled, and is managed in the cloud (an account "
            "synced from on-premises is enabled in Active Directory)."
        ),
        idempotency_key=f"{ENABLE_ACCOUNT}:{user_id}",
        hard_to_undo=True,
        verify=["tenant.account"],
    )


def restore_user(deleted_id: str, upn: str) -> Remediation:
    """Bring back a soft-deleted user (within 30 days of deletion).

    `upn` may be the deleted object's UPN, which Graph prefixes with the object id without
    dashes (reference §5, Deleted users); the proposal keeps the address the person had.
    """
    _required(deleted_id=deleted_id, upn=upn)
    prefix = deleted_id.replace("-", "").lower()
    if upn.lower().startswith(prefix) and "@" in upn[len(prefix) :]:
        upn = upn[len(prefix) :]
    return Remediation(
        id=RESTORE_USER,
        title=f"Restore the deleted user {upn}",
        api="graph",
        action=f"POST {RESTORE_PATH}",
        params={"deleted_id": deleted_id, "upn": upn},
        target=deleted_id,
        operation=f"POST /v1.0/directory/deletedItems/{deleted_id}/restore",
        precondition=(
            f"The user {upn} is in the deleted items (soft-deleted less than 30 days ago) and "
            "was not synced from on-premises (those are restored in Active Directory)."
        ),
        idempotency_key=f"{RESTORE_USER}:{deleted_id}",
        hard_to_undo=True,
        verify=["tenant.account", "tenant.license", "tenant.mailbox"],
    )
