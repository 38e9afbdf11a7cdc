"""Run the checks a fix affects again, to show their new status (issue 6 item 4, issue 7).

The package's `__init__` does not import this module: the catalogue imports the tenant checks,
which import `checks.remedies.propose`.
"""

from __future__ import annotations

from collections.abc import Sequence

from checks.models import Client, Finding, Remediation
from checks.net.seam import Network
from checks.registry import CATALOGUE
from checks.remedies import propose
from checks.remedies.api import canonical
from checks.remedies.results import FixResult
from checks.runner import diagnose
from checks.settings import CheckSettings

# The client family whose checks look at a protocol (the mailbox check reports only the
# switches the client needs).
PROTOCOL_CLIENT: dict[str, Client] = {
    "ActiveSync": Client.MOBILE,
    "OutlookMobile": Client.MOBILE,
    "Imap": Client.IMAP,
    "Pop": Client.POP,
    "SmtpClientAuth": Client.SMTP,
    "Mapi": Client.OUTLOOK,
    "Ews": Client.OUTLOOK,
    "Owa": Client.WEB,
}


def recheck_client(remediation: Remediation) -> Client:
    """The client to diagnose for when re-running the checks behind `remediation`."""
    if remediation.id == propose.ENABLE_PROTOCOL:
        return _protocols_client(remediation)
    if remediation.id == propose.RELEASE_DEVICE:
        return Client.MOBILE
    return Client.ALL


def _protocols_client(remediation: Remediation) -> Client:
    """One protocol: its client. Several: the client they all belong to (MAPI and EWS:
    Outlook); SMTP AUTH goes with IMAP or POP (those clients check it too); else every client."""
    params = remediation.params
    many = params.get("protocols")
    names = [str(n) for n in many] if isinstance(many, list) else [str(params.get("protocol"))]
    clients = {PROTOCOL_CLIENT.get(n, Client.ALL) for n in names}
    if len(clients) == 2 and Client.SMTP in clients and clients & {Client.IMAP, Client.POP}:
        clients.discard(Client.SMTP)
    return clients.pop() if len(clients) == 1 else Client.ALL


def recheck_address(remediation: Remediation, result: FixResult | None = None) -> str | None:
    """The person's address: the mailbox or UPN in the proposal, else what the fix read."""
    for key in ("mailbox", "upn"):
        value = remediation.params.get(key)
        if isinstance(value, str) and "@" in value:
            return value
    if result is not None and result.subject and "@" in result.subject:
        return result.subject
    return None


def with_dependencies(check_ids: Sequence[str]) -> list[str]:
    """`check_ids` and every check they depend on, in catalogue order."""
    by_id = {c.id: c for c in CATALOGUE}
    wanted: set[str] = set()
    todo = [c for c in check_ids if c in by_id]
    while todo:
        check_id = todo.pop()
        if check_id in wanted:
            continue
        wanted.add(check_id)
        todo.extend(by_id[check_id].depends_on)
    return [c.id for c in CATALOGUE if c.id in wanted]


async def recheck(
    remediation: Remediation,
    address: str,
    *,
    settings: CheckSettings,
    client: Client | None = None,
    net: Network | None = None,
    deadline: float = 30.0,
) -> list[Finding]:
    """Run the checks `remediation` names in `verify` (with what they depend on) for `address`;
    return their findings, in the order of `verify`."""
    fix = canonical(remediation)
    ids = with_dependencies(fix.verify)
    checks = [c for c in CATALOGUE if c.id in ids]
    report = await diagnose(
        address,
        client or recheck_client(fix),
        settings=settings,
        net=net,
        checks=checks,
        deadline=deadline,
    )
    return [report.finding(check_id) for check_id in fix.verify if check_id in ids]
