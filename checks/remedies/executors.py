"""One executor per operation: read the current state, decide, and (unless a dry run) write.

Every executor
- checks its precondition by reading the current state first (the reads are in the result);
- is idempotent: when the state already holds it answers `already-done` and sends no write;
- refuses, saying why, when a precondition does not hold — and for an account synced from
  on-premises Active Directory where the change belongs there (enabling, restoring);
- acts only on the remediation's `id` and `params`, validated here: the free-text fields
  (`operation`, `title`) are for people and are never executed.

Wire facts (reference exchange-online-diagnostics.md): Set-CASMailbox switches and the
`#Exchange.GenericHashTable` add form for ActiveSyncAllowedDeviceIDs over InvokeCommand (§3.3,
§6.2, §6.3 (a)); Graph assignLicense, `accountEnabled`, deleted items and restore, and
`usageLocation` blocking licence assignment (§5). Documented Graph statuses of the writes:
assignLicense 200, PATCH user 204, restore 200.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from checks.cloud import CloudHosts
from checks.models import Remediation
from checks.remedies import propose
from checks.remedies.results import Outcome, PlannedRequest
from checks.tenant.client import TenantClient
from checks.tenant.errors import TenantNotFound
from checks.tenant.models import CasMailbox, MobileDevice, TransportConfig, User

USER_SELECT = (
    "id,userPrincipalName,mail,accountEnabled,onPremisesSyncEnabled,usageLocation,assignedLicenses"
)
DELETED_SELECT = "id,userPrincipalName,mail,onPremisesSyncEnabled,deletedDateTime"

_OBJECT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@'-]{0,254}$")  # a GUID, or a UPN in a path
_DEVICE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # EAS DeviceId: letters and digits
_MAILBOX = re.compile(r"^[^\s@/\\?#]+@[^\s@/\\?#]+$")


class InvalidProposal(ValueError):
    """The remediation cannot be executed as given (unknown operation, bad or missing params)."""


# --- params -----------------------------------------------------------------------------------


class _Params(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


def _object_id(value: str) -> str:
    if not _OBJECT_ID.match(value) or ".." in value:
        raise ValueError("is not a directory object id")
    return value


def _mailbox(value: str) -> str:
    if not _MAILBOX.match(value):
        raise ValueError("is not a mailbox address")
    return value


def _device_id(value: str) -> str:
    if not _DEVICE_ID.match(value):
        raise ValueError("is not an ActiveSync device id")
    return value


def _protocol(value: str) -> str:
    if value not in propose.PROTOCOLS:
        raise ValueError(f"is not one of {', '.join(propose.PROTOCOLS)}")
    return value


ObjectId = Annotated[str, AfterValidator(_object_id)]
MailboxAddress = Annotated[str, AfterValidator(_mailbox)]
DeviceId = Annotated[str, AfterValidator(_device_id)]
ProtocolName = Annotated[str, AfterValidator(_protocol)]


class EnableProtocolParams(_Params):
    """`protocol` (one; the form stored before fixes combined protocols) or `protocols`
    (several, switched on in one Set-CASMailbox call)."""

    mailbox: MailboxAddress
    protocol: ProtocolName | None = None
    protocols: Annotated[list[ProtocolName], Field(min_length=1, max_length=16)] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> EnableProtocolParams:
        if (self.protocol is None) == (self.protocols is None):
            raise ValueError("give protocol (one) or protocols (several), not both or neither")
        return self

    @property
    def specs(self) -> list[propose.Protocol]:
        """The protocols, each once, in `propose.PROTOCOLS` order."""
        return propose.protocol_set(self.protocol, self.protocols)


class ReleaseDeviceParams(_Params):
    mailbox: MailboxAddress
    device_id: DeviceId


class EnableExchangePlanParams(_Params):
    user_id: ObjectId
    sku_id: ObjectId
    plan_id: ObjectId
    still_disabled: list[str] = []


class AssignLicenseParams(_Params):
    user_id: ObjectId
    sku_id: ObjectId


class EnableAccountParams(_Params):
    user_id: ObjectId
    upn: str


class RestoreUserParams(_Params):
    deleted_id: ObjectId
    upn: str


# --- where requests go ------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoints:
    """Absolute URLs for one cloud and tenant (the client's, or placeholders for a plan)."""

    graph_base: str  # https://graph.microsoft.com/v1.0
    exo_url: str  # https://outlook.office365.com/adminapi/beta/{tenant}/InvokeCommand

    @classmethod
    def of(cls, cloud: CloudHosts, tenant: str | None) -> Endpoints:
        return cls(cloud.graph_base, cloud.exo_admin_url(tenant or "{tenantId}"))

    @classmethod
    def of_client(cls, client: TenantClient) -> Endpoints:
        return cls.of(client.cloud, client.tenant)

    def graph(
        self, method: Literal["POST", "PATCH"], path: str, body: dict[str, Any] | None
    ) -> PlannedRequest:
        url = self.graph_base + quote(path, safe="/@:'()=,$!*+;~")
        return PlannedRequest(api="graph", method=method, url=url, body=body, path=path)

    def exo(self, cmdlet: str, parameters: dict[str, Any]) -> PlannedRequest:
        body = {"CmdletInput": {"CmdletName": cmdlet, "Parameters": parameters}}
        return PlannedRequest(api="exo", method="POST", url=self.exo_url, body=body)


# --- what an executor decides -----------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """`outcome` None: the precondition holds and `writes` are needed."""

    outcome: Outcome | None
    writes: list[PlannedRequest] = field(default_factory=list)
    detail: str = ""  # for the admin
    subject: str | None = None  # the person's address, when the reads showed it
    done: str = ""  # what applying does, when it is less than `Executor.done` says (admin)


ON_PREMISES = (
    "{upn} is synced from on-premises Active Directory, so {what} has to happen there: "
    "{how}. mailfix does not change synced accounts in the cloud (the next sync would undo it)."
)


@dataclass(frozen=True)
class Executor:
    kind: str
    params: type[_Params]
    plan: Callable[[Any, Endpoints], list[PlannedRequest]]  # the writes, before reading state
    decide: Callable[[Any, TenantClient, Endpoints], Awaitable[Decision]]
    state: Callable[[Any], str]  # the state the fix brings, in words for the person
    next_step: Callable[[Any], str]  # what the person does once it holds
    done: Callable[[Any], str]  # what was done, for the admin

    def parse(self, remediation: Remediation) -> Any:
        try:
            return self.params.model_validate(remediation.params)
        except ValidationError as exc:
            problems = "; ".join(
                "{} {}".format(
                    ".".join(str(p) for p in e["loc"]) or "params",
                    e["msg"].removeprefix("Value error, "),
                )
                for e in exc.errors()
            )
            raise InvalidProposal(f"the {self.kind} proposal is incomplete: {problems}") from None


# --- shared reads -----------------------------------------------------------------------------


async def _user(client: TenantClient, user_id: str) -> User | None:
    try:
        data = await client.graph_get(f"/users/{user_id}", {"$select": USER_SELECT})
    except TenantNotFound:
        return None
    return User.model_validate(data)


async def _cas_mailbox(client: TenantClient, mailbox: str) -> CasMailbox | None:
    try:
        rows = await client.exo("Get-CASMailbox", {"Identity": mailbox})
    except TenantNotFound:
        return None
    return CasMailbox.model_validate(rows[0]) if rows else None


def _no_mailbox(mailbox: str) -> Decision:
    return Decision(
        Outcome.REFUSED,
        detail=(
            f"Exchange Online has no mailbox {mailbox}: it may still be on-premises (then "
            "change it in the on-premises Exchange admin center) or have no licence yet."
        ),
    )


def _no_user(user_id: str) -> Decision:
    return Decision(
        Outcome.REFUSED,
        detail=f"Microsoft Entra ID has no user {user_id} (deleted, or the id is wrong).",
    )


def _who(user: User) -> str:
    return user.mail or user.user_principal_name


# --- enable a mailbox protocol (Set-CASMailbox, §6.2) -----------------------------------------


def _switches(mailbox: str, specs: list[propose.Protocol]) -> dict[str, Any]:
    return {"Identity": mailbox, **{s.parameter: s.on for s in specs}}


def _protocol_plan(p: EnableProtocolParams, at: Endpoints) -> list[PlannedRequest]:
    return [at.exo("Set-CASMailbox", _switches(p.mailbox, p.specs))]


def _are(items: list[Any]) -> str:
    return "is" if len(items) == 1 else "are"


async def _org_smtp_auth_on(client: TenantClient) -> bool:
    """Get-TransportConfig: SMTP AUTH is on for the organisation (what `$null` follows)."""
    try:
        rows = await client.exo("Get-TransportConfig")
    except TenantNotFound:
        rows = []
    org = TransportConfig.model_validate(rows[0]) if rows else None
    return org is not None and org.smtp_client_authentication_disabled is False


async def _protocol_decide(
    p: EnableProtocolParams, client: TenantClient, at: Endpoints
) -> Decision:
    specs = p.specs
    cas = await _cas_mailbox(client, p.mailbox)
    if cas is None:
        return _no_mailbox(p.mailbox)
    subject = cas.primary_smtp_address or p.mailbox
    current = cas.model_dump(by_alias=True)
    off: list[propose.Protocol] = []
    on: list[str] = []  # already on, in words
    why: list[str] = []
    for spec in specs:
        value = current.get(spec.parameter)
        if value is spec.on:
            on.append(spec.words)
            continue
        if spec.name == "SmtpClientAuth" and value is None:
            # $null: the organisation's Get-TransportConfig value applies (§6.2)
            if await _org_smtp_auth_on(client):
                on.append(f"{spec.words} (through the organisation's setting)")
                continue
            reason = "the mailbox follows the organisation's setting, which switches it off"
        else:
            reason = f"it is off for {p.mailbox}"
        off.append(spec)
        why.append(reason if len(specs) == 1 else f"{spec.words}: {reason}")
    if not off:
        return Decision(
            Outcome.ALREADY_DONE,
            detail=f"{propose.joined(on)} {_are(on)} already on for {p.mailbox}; nothing was sent.",
            subject=subject,
        )
    if len(specs) == 1:
        return Decision(None, _protocol_plan(p, at), detail=why[0], subject=subject)
    detail = "; ".join(why)
    done = ""
    if on:
        detail += f"; {propose.joined(on)} {_are(on)} already on and {_are(on)} left alone"
        done = _protocol_done(p.mailbox, off) + (
            f" {propose.joined(on)} {'was' if len(on) == 1 else 'were'} already on."
        )
    return Decision(
        None,
        [at.exo("Set-CASMailbox", _switches(p.mailbox, off))],
        detail=detail,
        subject=subject,
        done=done,
    )


def _protocol_done(mailbox: str, specs: list[propose.Protocol]) -> str:
    words = propose.joined([s.words for s in specs])
    switches = " ".join(f"-{s.parameter}" for s in specs)
    return f"Switched {words} on for {mailbox} (Set-CASMailbox {switches})."


# --- release a quarantined phone (ActiveSyncAllowedDeviceIDs @{Add=…}, §3.3, §6.3) ------------


def _device_plan(p: ReleaseDeviceParams, at: Endpoints) -> list[PlannedRequest]:
    add = {"@odata.type": "#Exchange.GenericHashTable", "add": p.device_id}
    return [at.exo("Set-CASMailbox", {"Identity": p.mailbox, "ActiveSyncAllowedDeviceIDs": add})]


async def _device_decide(p: ReleaseDeviceParams, client: TenantClient, at: Endpoints) -> Decision:
    cas = await _cas_mailbox(client, p.mailbox)
    if cas is None:
        return _no_mailbox(p.mailbox)
    subject = cas.primary_smtp_address or p.mailbox
    wanted = p.device_id.lower()
    if wanted in {d.lower() for d in cas.active_sync_allowed_device_ids or []}:
        return Decision(
            Outcome.ALREADY_DONE,
            detail=f"The phone {p.device_id} is already allowed for {p.mailbox}; nothing was sent.",
            subject=subject,
        )
    if wanted in {d.lower() for d in cas.active_sync_blocked_device_ids or []}:
        return Decision(
            Outcome.REFUSED,
            detail=(
                f"An admin put the phone {p.device_id} on {p.mailbox}'s list of blocked devices. "
                "mailfix does not override that: take it off the blocked list first if the phone "
                "should sync."
            ),
            subject=subject,
        )
    try:
        rows = await client.exo("Get-MobileDevice", {"Mailbox": p.mailbox})
    except TenantNotFound:
        rows = []
    devices = [MobileDevice.model_validate(r) for r in rows if r.get("DeviceId")]
    if not any(d.device_id.lower() == wanted for d in devices):
        return Decision(
            Outcome.REFUSED,
            detail=(
                f"No phone with the id {p.device_id} has tried to sync with {p.mailbox}, so "
                "there is nothing to let in (it may have been removed)."
            ),
            subject=subject,
        )
    return Decision(
        None, _device_plan(p, at), detail="the phone is not allowed yet", subject=subject
    )


# --- licences (assignLicense, §5) -------------------------------------------------------------


def _licence_request(
    at: Endpoints, user_id: str, sku_id: str, disabled: list[str]
) -> PlannedRequest:
    path = propose.ASSIGN_LICENSE_PATH.format(user_id=user_id)
    return at.graph("POST", path, propose.license_body(sku_id, disabled))


NO_USAGE_LOCATION = (
    "{who} has no usage location, and Microsoft 365 cannot license a user without one: set it "
    "first (Microsoft 365 admin center > Users > the user > Account > Usage location)."
)


def _plan_plan(p: EnableExchangePlanParams, at: Endpoints) -> list[PlannedRequest]:
    rest = [x for x in p.still_disabled if x != p.plan_id]
    return [_licence_request(at, p.user_id, p.sku_id, rest)]


async def _plan_decide(
    p: EnableExchangePlanParams, client: TenantClient, at: Endpoints
) -> Decision:
    user = await _user(client, p.user_id)
    if user is None:
        return _no_user(p.user_id)
    who = _who(user)
    held = next((a for a in user.assigned_licenses if a.sku_id == p.sku_id), None)
    if held is None:
        return Decision(
            Outcome.REFUSED,
            detail=f"{who} no longer has the licence {p.sku_id}; assign a licence instead.",
            subject=who,
        )
    if p.plan_id not in held.disabled_plans:
        return Decision(
            Outcome.ALREADY_DONE,
            detail=f"The Exchange Online plan is already on in {who}'s licence; nothing was sent.",
            subject=who,
        )
    if not user.usage_location:
        return Decision(Outcome.REFUSED, detail=NO_USAGE_LOCATION.format(who=who), subject=who)
    # The other plans stay as they are now (not as they were when the finding was made).
    rest = [x for x in held.disabled_plans if x != p.plan_id]
    return Decision(
        None,
        [_licence_request(at, p.user_id, p.sku_id, rest)],
        detail="the plan is switched off in the licence",
        subject=who,
    )


def _assign_plan(p: AssignLicenseParams, at: Endpoints) -> list[PlannedRequest]:
    return [_licence_request(at, p.user_id, p.sku_id, [])]


async def _assign_decide(p: AssignLicenseParams, client: TenantClient, at: Endpoints) -> Decision:
    user = await _user(client, p.user_id)
    if user is None:
        return _no_user(p.user_id)
    who = _who(user)
    if any(a.sku_id == p.sku_id for a in user.assigned_licenses):
        return Decision(
            Outcome.ALREADY_DONE,
            detail=f"{who} already has the licence {p.sku_id}; nothing was sent.",
            subject=who,
        )
    if not user.usage_location:
        return Decision(Outcome.REFUSED, detail=NO_USAGE_LOCATION.format(who=who), subject=who)
    return Decision(None, _assign_plan(p, at), detail="the user lacks the licence", subject=who)


# --- accounts (§5) ----------------------------------------------------------------------------


def _enable_plan(p: EnableAccountParams, at: Endpoints) -> list[PlannedRequest]:
    return [
        at.graph("PATCH", propose.USER_PATH.format(user_id=p.user_id), {"accountEnabled": True})
    ]


async def _enable_decide(p: EnableAccountParams, client: TenantClient, at: Endpoints) -> Decision:
    user = await _user(client, p.user_id)
    if user is None:
        return _no_user(p.user_id)
    who = _who(user)
    if user.account_enabled:
        return Decision(
            Outcome.ALREADY_DONE,
            detail=f"The account {user.user_principal_name} is already enabled; nothing was sent.",
            subject=who,
        )
    if user.synced_from_on_premises:
        return Decision(
            Outcome.REFUSED,
            detail=ON_PREMISES.format(
                upn=user.user_principal_name,
                what="enabling it",
                how="enable the account in Active Directory Users and Computers and let "
                "Microsoft Entra Connect sync it",
            ),
            subject=who,
        )
    return Decision(None, _enable_plan(p, at), detail="the account is disabled", subject=who)


def _restore_plan(p: RestoreUserParams, at: Endpoints) -> list[PlannedRequest]:
    return [at.graph("POST", propose.RESTORE_PATH.format(deleted_id=p.deleted_id), {})]


async def _restore_decide(p: RestoreUserParams, client: TenantClient, at: Endpoints) -> Decision:
    try:
        data = await client.graph_get(
            f"/directory/deletedItems/{p.deleted_id}", {"$select": DELETED_SELECT}
        )
    except TenantNotFound:
        live = await _user(client, p.deleted_id)
        if live is not None:
            return Decision(
                Outcome.ALREADY_DONE,
                detail=f"{live.user_principal_name} is not deleted (already restored); "
                "nothing was sent.",
                subject=_who(live),
            )
        return Decision(
            Outcome.REFUSED,
            detail=(
                f"{p.upn} is no longer among the deleted users: deleted users can be restored "
                "for 30 days, after which they are gone for good."
            ),
        )
    gone = User.model_validate(data)
    if gone.synced_from_on_premises:
        return Decision(
            Outcome.REFUSED,
            detail=ON_PREMISES.format(
                upn=p.upn,
                what="restoring it",
                how="restore the account from the Active Directory Recycle Bin and let "
                "Microsoft Entra Connect sync it",
            ),
        )
    return Decision(None, _restore_plan(p, at), detail="the user is soft-deleted", subject=p.upn)


# --- the table --------------------------------------------------------------------------------


def _protocol_state(p: EnableProtocolParams) -> str:
    specs = p.specs
    return f"{propose.joined([s.short for s in specs])} {_are(specs)} switched on for your mailbox"


EXECUTORS: dict[str, Executor] = {
    e.kind: e
    for e in (
        Executor(
            propose.ENABLE_PROTOCOL,
            EnableProtocolParams,
            _protocol_plan,
            _protocol_decide,
            _protocol_state,
            lambda p: propose.joined([s.again for s in p.specs]),
            lambda p: _protocol_done(p.mailbox, p.specs),
        ),
        Executor(
            propose.RELEASE_DEVICE,
            ReleaseDeviceParams,
            _device_plan,
            _device_decide,
            lambda p: "Your phone is allowed to sync with your mailbox",
            lambda p: "open the mail app on your phone and give it a minute",
            lambda p: f"Added the phone {p.device_id} to {p.mailbox}'s allowed devices.",
        ),
        Executor(
            propose.ENABLE_EXCHANGE_PLAN,
            EnableExchangePlanParams,
            _plan_plan,
            _plan_decide,
            lambda p: "The mailbox part of your licence is switched on",
            lambda p: (
                "your mailbox can take a little while to come back; then try your mail app again"
            ),
            lambda p: "Switched the Exchange Online plan back on in the user's licence.",
        ),
        Executor(
            propose.ASSIGN_LICENSE,
            AssignLicenseParams,
            _assign_plan,
            _assign_decide,
            lambda p: "You have a licence that includes a mailbox",
            lambda p: "the mailbox can take a while to be ready; then try your mail app again",
            lambda p: f"Assigned the licence {p.sku_id} to the user.",
        ),
        Executor(
            propose.ENABLE_ACCOUNT,
            EnableAccountParams,
            _enable_plan,
            _enable_decide,
            lambda p: "Your account can sign in",
            lambda p: "sign in to your mail app with your usual password",
            lambda p: f"Enabled the account {p.upn}.",
        ),
        Executor(
            propose.RESTORE_USER,
            RestoreUserParams,
            _restore_plan,
            _restore_decide,
            lambda p: "Your account is restored",
            lambda p: (
                "sign in again with your usual password; your mailbox can take a little "
                "while to come back"
            ),
            lambda p: f"Restored the deleted user {p.upn}.",
        ),
    )
}


def executor_for(remediation: Remediation) -> Executor:
    found = EXECUTORS.get(remediation.id)
    if found is None:
        raise InvalidProposal(
            f"unknown fix {remediation.id!r}; mailfix knows {', '.join(EXECUTORS)}"
        )
    return found
