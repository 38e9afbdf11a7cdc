"""tenant.client_access_rules and tenant.conditional_access: who may connect, and how.

tenant.client_access_rules (reference §6.1): Get-ClientAccessRule through the Exchange admin
API, evaluated for this person's protocol and sign-in type as Exchange evaluates them
(`checks.tenant.policy.car`). Client Access Rules were deprecated for every Exchange Online
organisation in September 2025: where the cmdlet is gone or the tenant has no rules the
finding is `skip` and points to Conditional Access, their replacement.

tenant.conditional_access (§5.2, §5.3): the enabled policies that cover Exchange Online for
this person and their app. Graph's What-If evaluation (beta `conditionalAccess/evaluate`,
Policy.Read.ConditionalAccess) where the tenant allows it, else mailfix's own evaluator on the
policies and named locations (Policy.Read.All) and the person's transitive groups and roles
(GroupMember.Read.All). Evidence `evaluated_by` says which.

mailfix runs away from the person's device: it does not know the IP address, country or
device the person connects from, so conditions on those are reported as not evaluated,
never guessed. Both checks read; neither changes anything in the tenant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from checks.models import Finding, Side, Status, Step
from checks.spec import EVERY_CLIENT, Check, CheckContext
from checks.tenant import reads, tenant_client
from checks.tenant.client import EXO_PERMISSION, TenantClient, recording
from checks.tenant.errors import PermissionMissing, TenantError, TenantNotFound
from checks.tenant.findings import tenant_error_finding
from checks.tenant.policy import ca, car, opath
from checks.tenant.policy._tri import Tri
from checks.tenant.policy.context import AppContext, contexts
from checks.tenant.policy.models import (
    EXCHANGE_ONLINE_APP_ID,
    ClientAccessRule,
    ClientAppType,
    ConditionalAccessPolicy,
    NamedLocation,
    PolicyState,
)

# Words for grant controls (Graph names, §5.2).
CONTROL_WORDS = {
    "block": "blocks access",
    "mfa": "multifactor authentication (MFA)",
    "compliantDevice": "a device marked compliant (managed with Intune)",
    "domainJoinedDevice": "a Microsoft Entra hybrid-joined computer",
    "approvedApplication": "an approved client app (such as Outlook for iOS and Android)",
    "compliantApplication": "an app protection policy (such as Outlook for iOS and Android "
    "under Intune)",
    "passwordChange": "a password change",
    "authenticationStrength": "a particular strength of multifactor authentication",
    "termsOfUse": "accepting the terms of use",
}

_CAR_RETIRED = (
    "Client Access Rules were deprecated for every Exchange Online organisation in "
    "September 2025; Conditional Access replaces them (see the Conditional Access finding)."
)
_RETIRED_WORDS = (
    "not recognized",
    "isn't recognized",
    "is not recognized",
    "deprecated",
    "retired",
    "no longer",
    "not supported",
    "isn't supported",
    "not available",
    "isn't available",
)
CA_PORTAL = "Entra admin center > Protection > Conditional Access > Policies"
# How the Entra admin center names the client app types (What If, policy conditions).
_PORTAL_CLIENT_APP = {
    ClientAppType.BROWSER: "Browser",
    ClientAppType.MODERN: "Mobile apps and desktop clients",
    ClientAppType.EAS: "Exchange ActiveSync clients",
    ClientAppType.OTHER: "Other clients",
}


def _control_words(control: str) -> str:
    if control.startswith("custom:"):
        return f"the custom control {control[7:]}"
    return CONTROL_WORDS.get(control, control)


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


# ---- reads (each once per diagnosis) ---------------------------------------------------------


async def _memo(ctx: CheckContext, key: str, read: Any) -> Any:
    async def run() -> tuple[Any, tuple[str, ...]]:
        client = await tenant_client(ctx)
        with recording() as sent:
            value = await read(client)
        return value, tuple(sent)

    return await ctx.memo(f"tenant.read.policy.{key}", run)


async def _car_rules(ctx: CheckContext) -> tuple[list[ClientAccessRule], tuple[str, ...]]:
    async def read(client: TenantClient) -> list[ClientAccessRule]:
        rows = await client.exo("Get-ClientAccessRule")
        return [ClientAccessRule.model_validate(r) for r in rows]

    result: tuple[list[ClientAccessRule], tuple[str, ...]] = await _memo(ctx, "car", read)
    return result


async def _recipient_properties(
    ctx: CheckContext, rules: list[ClientAccessRule]
) -> tuple[dict[str, str | None] | None, tuple[str, ...]]:
    """The OPATH properties the rules' recipient filters read (Get-User, Get-Mailbox)."""
    wanted = sorted(
        {
            p
            for r in rules
            if r.enabled and r.user_recipient_filter
            for p in opath.properties_used(r.user_recipient_filter)
        }
    )
    if not wanted:
        return {}, ()

    async def read(client: TenantClient) -> dict[str, str | None] | None:
        identity = ctx.address.address
        try:
            out: dict[str, str | None] = {}
            user_props = [p for p in wanted if not p.startswith("CustomAttribute")]
            if user_props:
                rows = await client.exo("Get-User", {"Identity": identity})
                row = rows[0] if rows else {}
                # A property Exchange did not return stays unknown (not empty).
                out.update({p: _text(row[p]) for p in user_props if p in row})
            custom = [p for p in wanted if p.startswith("CustomAttribute")]
            if custom:
                rows = await client.exo("Get-Mailbox", {"Identity": identity})
                row = rows[0] if rows else {}
                out.update({p: _text(row[p]) for p in custom if p in row})
            return out
        except TenantError:
            return None  # the filter is then "not evaluated", and the finding says so

    result: tuple[dict[str, str | None] | None, tuple[str, ...]] = await _memo(
        ctx, "recipient-props", read
    )
    return result


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


# ---- tenant.client_access_rules ----------------------------------------------------------------


def _usernames(ctx: CheckContext, upn: str | None) -> tuple[str, ...]:
    """Candidate account names for UsernameMatchesAnyOfPatterns (`domain\\user`, §6.1)."""
    names: list[str] = []
    for address in dict.fromkeys(a for a in (upn, ctx.address.address) if a):
        local, _, domain = address.partition("@")
        names.extend([f"{domain}\\{local}", address])
    return tuple(dict.fromkeys(names))


def _is_retired(exc: TenantError) -> bool:
    text = f"{exc} {exc.code or ''}".lower()
    return any(w in text for w in _RETIRED_WORDS)


async def _role_works(ctx: CheckContext) -> bool:
    """Does another Get- cmdlet work with mailfix's Exchange role? (then the cmdlet is gone)."""
    try:
        await reads.cas_mailbox(ctx)
    except PermissionMissing:
        return False
    except TenantError:
        return True
    return True


def _rule_evidence(rule: ClientAccessRule) -> dict[str, Any]:
    return {"rule": rule.label, "priority": rule.priority, "action": rule.action}


async def _client_access_rules(ctx: CheckContext) -> Finding:
    check = CLIENT_ACCESS_RULES
    try:
        rules, requests = await _car_rules(ctx)
    except PermissionMissing as exc:
        # Exchange answers "not recognized" both for a cmdlet outside the app's role and for
        # one that no longer exists. If other cmdlets work, this one is gone.
        if exc.permission != EXO_PERMISSION and await _role_works(ctx):
            return _car_skip(check, [exc.request], retired=True)
        return tenant_error_finding(check, exc, reading="Client Access Rules")
    except TenantError as exc:
        if isinstance(exc, TenantNotFound) or _is_retired(exc):
            return _car_skip(check, [exc.request], retired=True)
        return tenant_error_finding(check, exc, reading="Client Access Rules")
    if not rules:
        return _car_skip(check, list(requests), retired=False)

    upn: str | None = None
    try:
        lookup = (await reads.user(ctx)).value
        upn = lookup.user.user_principal_name if lookup.user else None
    except TenantError:
        upn = None  # the account name then comes from the address alone
    attributes, attr_requests = await _recipient_properties(ctx, rules)
    requests = (*requests, *attr_requests)

    judged: list[tuple[AppContext, str, car.CarVerdict]] = []
    uncovered: list[AppContext] = []
    for app in contexts(ctx.client, ctx.symptom):
        if not app.protocols:
            uncovered.append(app)
        for protocol in app.protocols:
            conn = car.Connection(
                protocol=protocol,
                authentication=app.authentication,
                ip=None,  # mailfix's own address is not the person's
                usernames=_usernames(ctx, upn),
                attributes=attributes,
                middle_tier=app.middle_tier,
            )
            judged.append((app, protocol.value, car.evaluate(rules, conn)))
    enabled = [r for r in car.ordered(rules) if r.enabled]
    base: dict[str, Any] = {
        "requests": list(dict.fromkeys(requests)),
        "rules": [{**_rule_evidence(r), "enabled": r.enabled} for r in car.ordered(rules)],
        "evaluated": [
            {
                "app": app.label,
                "protocol": protocol,
                "allowed": {Tri.YES: True, Tri.NO: False}.get(v.allowed),
                "rule": v.rule.label if v.rule else None,
            }
            for app, protocol, v in judged
        ],
    }
    steps = [
        Step(
            name=f"{app.label}: {protocol}",
            status={Tri.YES: Status.PASS, Tri.NO: Status.FAIL}.get(v.allowed, Status.WARN),
            detail=_car_step_detail(v),
        )
        for app, protocol, v in judged
    ]
    admin_steps = [
        "An Exchange administrator reviews the rule in Exchange Online PowerShell "
        "(Get-ClientAccessRule | Format-List Name,Priority,Enabled,Action,AnyOf*,Except*) and "
        "tests this connection with Test-ClientAccessRule -User, -Protocol, "
        "-AuthenticationType, -RemoteAddress and -RemotePort.",
        "Changes to Client Access Rules take up to an hour to apply (the first rule up to 24 "
        "hours).",
        "Client Access Rules are deprecated in Exchange Online: move what the rule enforces to "
        "a Conditional Access policy.",
    ]
    denied = [(a, p, v) for a, p, v in judged if v.allowed is Tri.NO]
    if denied:
        app, proto, verdict = denied[0]
        rule = verdict.rule or verdict.might_deny[0]
        return check.finding(
            Status.FAIL,
            f"The Client Access Rule “{rule.label}” (priority {rule.priority}) denies "
            f"{app.label} over {proto}.",
            detail="Exchange applies the first rule, in priority order, whose conditions match "
            "and whose exceptions do not; this one denies access.",
            evidence={
                **base,
                "problem": "car-denied",
                **_rule_evidence(rule),
                "protocol": proto,
                "certain": True,
            },
            steps=steps,
            next_steps=[
                f"You: ask your IT helpdesk; the rule “{rule.label}” in your organisation's "
                "Exchange Online settings blocks this app, and nothing on your device changes "
                "that.",
                *admin_steps,
            ],
        )
    maybe = [(a, p, v) for a, p, v in judged if v.allowed is Tri.UNKNOWN]
    if maybe:
        app, proto, verdict = maybe[0]
        rule = verdict.might_deny[0]
        unknown = verdict.unknown
        return check.finding(
            Status.WARN,
            f"The Client Access Rule “{rule.label}” (priority {rule.priority}) may deny "
            f"{app.label} over {proto}; whether it does depends on {_join(unknown)}, which "
            "mailfix cannot see.",
            detail="mailfix runs on its own network, not on the person's device, so it cannot "
            "evaluate conditions on where the app connects from.",
            evidence={
                **base,
                "problem": "car-denied",
                **_rule_evidence(rule),
                "protocol": proto,
                "certain": False,
                "might_deny": [r.label for r in verdict.might_deny],
                "unevaluated": unknown,
            },
            steps=steps,
            next_steps=admin_steps,
        )
    names = [f"“{r.label}”" for r in enabled]
    covered = _join(list(dict.fromkeys(p for _, p, _ in judged)))
    who = _join(list(dict.fromkeys(a.label for a, _, _ in judged)))
    allowing = [v.rule for _, _, v in judged if v.rule is not None and not v.rule.denies]
    if not judged:
        summary = (
            f"Client Access Rules do not cover {uncovered[0].label} (they apply to IMAP, POP, "
            "ActiveSync, Outlook and the web, not to SMTP)."
        )
    elif allowing:
        summary = (
            f"The Client Access Rule “{allowing[0].label}” (priority {allowing[0].priority}) "
            f"allows {who} over {covered}; no earlier rule denies it."
        )
    elif not enabled:
        summary = f"Every Client Access Rule of this tenant is disabled; none applies to {who}."
    else:
        noun = "rule" if len(enabled) == 1 else "rules"
        summary = (
            f"No Client Access Rule denies {who} over {covered}; the tenant's enabled {noun}: "
            f"{_join(names)}."
        )
    return check.finding(Status.PASS, summary, evidence={**base, "problem": None}, steps=steps)


def _car_step_detail(verdict: car.CarVerdict) -> str:
    if verdict.rule is not None:
        verb = "denies" if verdict.rule.denies else "allows"
        return f"rule “{verdict.rule.label}” (priority {verdict.rule.priority}) {verb}"
    if verdict.allowed is Tri.UNKNOWN:
        return f"depends on {_join(verdict.unknown)}"
    if verdict.allowed is Tri.NO:
        return "denied by a rule whose conditions mailfix cannot see"
    return "no rule matches: allowed"


def _car_skip(check: Check, requests: list[str], *, retired: bool) -> Finding:
    if retired:
        summary = (
            "This tenant no longer has Client Access Rules (the cmdlet is retired in Exchange "
            "Online); Conditional Access decides instead."
        )
    else:
        summary = "This tenant has no Client Access Rules; Conditional Access decides instead."
    return check.finding(
        Status.SKIP,
        summary,
        detail=_CAR_RETIRED,
        evidence={
            "requests": [r for r in requests if r],
            "reason": "retired" if retired else "none",
            "see": "tenant.conditional_access",
        },
    )


# ---- tenant.conditional_access ------------------------------------------------------------------


@dataclass(frozen=True)
class _Judged:
    app: AppContext
    verdict: ca.CaVerdict


async def _policies(
    ctx: CheckContext,
) -> tuple[list[ConditionalAccessPolicy], list[NamedLocation], tuple[str, ...]]:
    async def read(client: TenantClient) -> tuple[list[ConditionalAccessPolicy], bool]:
        rows = await client.graph_list("/identity/conditionalAccess/policies")
        policies = [ConditionalAccessPolicy.model_validate(r) for r in rows]
        uses_locations = any(
            p.conditions.locations is not None
            and bool(
                p.conditions.locations.include_locations or p.conditions.locations.exclude_locations
            )
            for p in policies
        )
        return policies, uses_locations

    (policies, wants_locations), requests = await _memo(ctx, "ca", read)
    named: list[NamedLocation] = []
    if wants_locations:
        named, sent = await _named_locations(ctx)
        requests = (*requests, *sent)
    return policies, named, requests


async def _named_locations(ctx: CheckContext) -> tuple[list[NamedLocation], tuple[str, ...]]:
    async def read(client: TenantClient) -> list[NamedLocation]:
        rows = await client.graph_list("/identity/conditionalAccess/namedLocations")
        return [NamedLocation.model_validate(r) for r in rows]

    result: tuple[list[NamedLocation], tuple[str, ...]] = await _memo(ctx, "locations", read)
    return result


async def _memberships(
    ctx: CheckContext, user_id: str
) -> tuple[frozenset[str], frozenset[str], tuple[str, ...]]:
    """Transitive groups and directory roles (role template ids) of the user."""

    async def read(client: TenantClient) -> tuple[frozenset[str], frozenset[str]]:
        rows = await client.graph_list(f"/users/{user_id}/transitiveMemberOf")
        groups: set[str] = set()
        roles: set[str] = set()
        for row in rows:
            kind = str(row.get("@odata.type") or "").lower()
            if kind.endswith("directoryrole"):
                if row.get("roleTemplateId"):
                    roles.add(str(row["roleTemplateId"]))
            elif row.get("id"):
                groups.add(str(row["id"]))
        return frozenset(groups), frozenset(roles)

    (groups, roles), requests = await _memo(ctx, f"members.{user_id}", read)
    return groups, roles, requests


def _what_if_body(user_id: str, app: AppContext) -> dict[str, Any]:
    conditions: dict[str, Any] = {"clientAppType": ca.CLIENT_APP_TYPE[app.app].value}
    if app.platform is not None:
        conditions["devicePlatform"] = app.platform.value
    # No ipAddress or country: mailfix does not know them (§5.3: omitted details can't be
    # evaluated for policies that use them).
    return {
        "signInIdentity": {"@odata.type": "#microsoft.graph.userSignIn", "userId": user_id},
        "signInContext": {
            "@odata.type": "#microsoft.graph.applicationContext",
            "includeApplications": [EXCHANGE_ONLINE_APP_ID],
        },
        "signInConditions": conditions,
        "appliedPoliciesOnly": False,
    }


# What-If analysisReasons naming conditions on details mailfix cannot give Graph (§5.3:
# "Sign-in details you omit can't be evaluated for policies that use that condition").
_UNSEEN = {
    "notEnoughInformation": "details Graph's What-If could not evaluate",
    "location": "the IP address the person connects from",
    "devicePlatform": "the device's operating system",
    "devices": "the device's properties (the device filter)",
    "signInRisk": "the sign-in risk Entra ID assigns",
    "userRisk": "the account's user risk",
    "insiderRisk": "the account's insider risk",
    "authenticationFlow": "how the sign-in was transferred (authentication flows)",
    "time": "the time of the sign-in",
}


def _supplied(reasons: set[str], app: AppContext) -> bool:
    """Did mailfix tell Graph a detail behind `reasons`? (then the mismatch is real)"""
    return "devicePlatform" in reasons and app.platform is not None


def _reasons(value: Any) -> set[str]:
    if isinstance(value, list):
        return {str(v).strip() for v in value}
    return {v.strip() for v in str(value or "").split(",") if v.strip()}


async def _what_if(
    ctx: CheckContext, user_id: str, apps: list[AppContext]
) -> tuple[list[_Judged], tuple[str, ...]]:
    """Graph's own evaluation; raises TenantError when the tenant does not allow it."""

    async def read(client: TenantClient) -> list[list[dict[str, Any]]]:
        out = []
        for app in apps:
            data = await client.graph_post(
                "/identity/conditionalAccess/evaluate", _what_if_body(user_id, app), beta=True
            )
            value = (data or {}).get("value")
            if not isinstance(value, list):
                raise TenantError("What-If answered without a list of results")
            out.append([v for v in value if isinstance(v, dict)])
        return out

    key = "whatif." + ",".join(f"{a.app.value}/{a.platform}" for a in apps)
    answers, requests = await _memo(ctx, key, read)
    named: dict[str, NamedLocation] = {}
    if any(
        row.get("policyApplies") is not True
        and "notEnoughInformation" in _reasons(row.get("analysisReasons"))
        and (row.get("conditions") or {}).get("locations")
        for rows in answers
        for row in rows
    ):
        # To say which detail is missing (an address or a country), read the named locations
        # when the app may (Policy.Read.All); else the words stay general.
        try:
            locations, sent = await _named_locations(ctx)
            named = {loc.id: loc for loc in locations}
            requests = (*requests, *sent)
        except TenantError:
            named = {}
    judged: list[_Judged] = []
    for app, rows in zip(apps, answers, strict=True):
        sign_in = ca.SignIn(user_id=user_id, app=app.app, platform=app.platform)
        enabled: list[ca.PolicyResult] = []
        report_only: list[ca.PolicyResult] = []
        for row in rows:
            policy = ConditionalAccessPolicy.model_validate(row)
            reasons = _reasons(row.get("analysisReasons"))
            unknown: tuple[str, ...] = ()
            if row.get("policyApplies") is True:
                applies = Tri.YES
            elif reasons and reasons <= set(_UNSEEN) and not _supplied(reasons, app):
                # It does not apply only for want of what mailfix could not tell Graph.
                applies = Tri.UNKNOWN
                words = [_UNSEEN[r] for r in sorted(reasons) if r != "notEnoughInformation"]
                if "notEnoughInformation" in reasons:
                    words = [*ca.unseen(policy, sign_in, named), *words] or [
                        _UNSEEN["notEnoughInformation"]
                    ]
                unknown = tuple(dict.fromkeys(words))
            else:
                applies = Tri.NO
            result = ca.PolicyResult(policy, applies, unknown=unknown)
            if policy.state == PolicyState.ENABLED:
                enabled.append(result)
            elif policy.state == PolicyState.REPORT_ONLY:
                report_only.append(result)
        judged.append(_Judged(app, ca.combine(enabled, sign_in, report_only)))
    return judged, requests


def _needs_memberships(policies: list[ConditionalAccessPolicy]) -> bool:
    for p in policies:
        u = p.conditions.users
        if (
            p.state != PolicyState.DISABLED
            and u is not None
            and (u.include_groups or u.exclude_groups or u.include_roles or u.exclude_roles)
        ):
            return True
    return False


def _severity(j: _Judged) -> int:
    """Certain block, certain unmet control, possible block, possible unmet, to do, allowed."""
    v = j.verdict
    order = {
        (ca.Outcome.BLOCKED, True): 0,
        (ca.Outcome.CONTROL_UNMET, True): 1,
        (ca.Outcome.BLOCKED, False): 2,
        (ca.Outcome.CONTROL_UNMET, False): 3,
        (ca.Outcome.REQUIRES_CONTROL, True): 4,
    }
    return order.get((v.outcome, v.certain), 5)


def _worst(judged: list[_Judged]) -> _Judged:
    return min(judged, key=_severity)  # min keeps the first of equals: the order judged


async def _conditional_access(ctx: CheckContext) -> Finding:
    check = CONDITIONAL_ACCESS
    try:
        lookup_read = await reads.user(ctx)
    except TenantError as exc:
        return tenant_error_finding(check, exc, reading="account that owns the address")
    user = lookup_read.value.user
    requests: list[str] = list(lookup_read.requests)
    if user is None:
        return check.finding(
            Status.SKIP,
            "No account owns this address, so there is no sign-in for Conditional Access to "
            "judge (see the account finding).",
            evidence={"requests": requests, "see": "tenant.account"},
        )
    apps = contexts(ctx.client, ctx.symptom)
    is_guest = (user.user_type or "Member").lower() == "guest"
    evaluated_by = "what-if"
    what_if_note = ""
    judged: list[_Judged] = []
    missing: PermissionMissing | None = None
    try:
        judged, sent = await _what_if(ctx, user.id, apps)
        requests.extend(sent)
    except TenantError as exc:
        # Not allowed (Policy.Read.ConditionalAccess missing), not available (beta), or
        # refused: mailfix evaluates the policies itself.
        requests.append(exc.request)
        evaluated_by = "mailfix"
        what_if_note = (
            f"Graph's What-If evaluation was not available ({exc}); mailfix evaluated the "
            "policies itself."
        )
    if evaluated_by == "mailfix":
        try:
            policies, named, sent = await _policies(ctx)
        except TenantError as exc:
            return tenant_error_finding(
                check, exc, [*requests, exc.request], reading="Conditional Access policies"
            )
        requests.extend(sent)
        groups: frozenset[str] | None = frozenset()
        roles: frozenset[str] | None = frozenset()
        if _needs_memberships(policies):
            try:
                groups, roles, sent = await _memberships(ctx, user.id)
                requests.extend(sent)
            except PermissionMissing as exc:
                missing = exc
                requests.append(exc.request)
                groups = roles = None
            except TenantError as exc:
                requests.append(exc.request)
                groups = roles = None
        for app in apps:
            sign_in = ca.SignIn(
                user_id=user.id,
                app=app.app,
                groups=groups,
                roles=roles,
                is_guest=is_guest,
                platform=app.platform,
            )
            judged.append(_Judged(app, ca.evaluate(policies, sign_in, named)))
    requests = [r for r in dict.fromkeys(requests) if r]
    chosen = _worst(judged)
    verdict = chosen.verdict
    if (
        missing is not None
        and not (verdict.certain and verdict.outcome is not ca.Outcome.ALLOWED)
        and any(j.verdict.unknown for j in judged)
    ):
        # The groups decide and mailfix may not read them: say what to grant.
        return tenant_error_finding(
            check, missing, requests, reading="groups the person belongs to"
        )
    return _ca_finding(
        check,
        chosen,
        judged,
        evaluated_by=evaluated_by,
        what_if_note=what_if_note,
        requests=requests,
    )


def _ca_evidence(
    j: _Judged, judged: list[_Judged], evaluated_by: str, requests: list[str]
) -> dict[str, Any]:
    v = j.verdict
    return {
        "requests": requests,
        "evaluated_by": evaluated_by,
        "app": j.app.label,
        "client_app_type": ca.CLIENT_APP_TYPE[j.app.app].value,
        "platform": j.app.platform.value if j.app.platform else None,
        "applying": [r.policy.name for r in v.applying],
        "might_apply": [r.policy.name for r in v.results if r.applies is Tri.UNKNOWN],
        "report_only": [r.policy.name for r in v.report_only],
        "unevaluated": v.unknown,
        "apps": [
            {"app": x.app.label, "outcome": x.verdict.outcome.value, "certain": x.verdict.certain}
            for x in judged
        ],
    }


def _ca_steps(judged: list[_Judged]) -> list[Step]:
    status = {
        ca.Outcome.BLOCKED: Status.FAIL,
        ca.Outcome.CONTROL_UNMET: Status.FAIL,
        ca.Outcome.REQUIRES_CONTROL: Status.WARN,
        ca.Outcome.ALLOWED: Status.PASS,
    }
    steps = []
    for j in judged:
        v = j.verdict
        for r in v.results:
            if r.applies is Tri.NO:
                detail = f"does not apply: {r.why_not}" if r.why_not else "does not apply"
                st = Status.PASS
            elif r.applies is Tri.UNKNOWN:
                detail = f"may apply, depending on {_join(list(r.unknown))}"
                st = Status.WARN
            else:
                detail = "applies"
                st = status[v.outcome] if v.deciding and v.deciding.result is r else Status.PASS
            steps.append(Step(name=f"{j.app.label}: “{r.policy.name}”", status=st, detail=detail))
        for r in v.report_only:
            steps.append(
                Step(
                    name=f"{j.app.label}: “{r.policy.name}” (report-only)",
                    status=Status.PASS,
                    detail="report-only: logged, never enforced",
                )
            )
    return steps


def _ca_finding(
    check: Check,
    j: _Judged,
    judged: list[_Judged],
    *,
    evaluated_by: str,
    what_if_note: str,
    requests: list[str],
) -> Finding:
    v = j.verdict
    evidence = _ca_evidence(j, judged, evaluated_by, requests)
    steps = _ca_steps(judged)
    portal_type = _PORTAL_CLIENT_APP[ca.CLIENT_APP_TYPE[j.app.app]]
    admin = (
        f"An administrator opens {CA_PORTAL} and runs What If for this person with cloud app "
        f"Office 365 Exchange Online and client app “{portal_type}”; the sign-in logs show "
        "the policy that applied."
    )
    detail_extra = f" {what_if_note}" if what_if_note else ""
    if v.outcome is ca.Outcome.ALLOWED or v.deciding is None:
        evidence["problem"] = None
        n = len(v.applying)
        summary = f"No enabled Conditional Access policy blocks {j.app.label} for this person" + (
            f" ({n} apply without blocking)." if n else "."
        )
        if v.unknown:
            summary += f" Not evaluated: {_join(v.unknown)}."
        return check.finding(
            Status.PASS,
            summary,
            detail=(what_if_note or "").strip(),
            evidence=evidence,
            steps=steps,
        )
    q = v.deciding
    policy = q.policy
    evidence.update(policy=policy.name, policy_id=policy.id, certain=v.certain)
    if v.outcome is ca.Outcome.BLOCKED:
        evidence["problem"] = "ca-blocked"
        if v.certain:
            summary = f"The Conditional Access policy “{policy.name}” blocks {j.app.label}."
        else:
            summary = (
                f"The Conditional Access policy “{policy.name}” may block {j.app.label}: it "
                f"applies depending on {_join(list(q.result.unknown))}, which mailfix cannot see."
            )
        you = _you_steps(j.app, policy, "block")
        return check.finding(
            Status.FAIL if v.certain else Status.WARN,
            summary,
            detail=(
                "An enabled policy that covers Exchange Online, this person and this kind of app "
                + ("grants no access" if v.certain else "would grant no access where it applies")
                + ": any block wins over every other policy."
                + detail_extra
            ),
            evidence=evidence,
            steps=steps,
            next_steps=[*you, admin],
        )
    words = _control_words(q.control)
    evidence["control"] = q.control
    evidence["controls"] = list(q.controls)
    evidence["operator"] = q.operator
    evidence["legacy_can_satisfy"] = ca.can_meet(q.control, ca.AppKind.LEGACY) is not ca.Can.NEVER
    evidence["can_satisfy"] = {ca.Can.NEVER: "never", ca.Can.DEPENDS: "depends", ca.Can.YES: "yes"}[
        q.can
    ]
    legacy_note = (
        "Legacy authentication (a password sent by IMAP, POP or SMTP, or the phone's "
        "ActiveSync mail app) can never do multifactor authentication or prove the device's "
        "state, so it can never meet this policy."
    )
    if v.outcome is ca.Outcome.CONTROL_UNMET:
        evidence["problem"] = "ca-control-unmet"
        if v.certain:
            summary = (
                f"The Conditional Access policy “{policy.name}” requires {words}, which "
                f"{j.app.label} can never provide."
            )
        else:
            summary = (
                f"The Conditional Access policy “{policy.name}” may require {words}, which "
                f"{j.app.label} can never provide; whether it applies depends on "
                f"{_join(list(q.result.unknown))}, which mailfix cannot see."
            )
        return check.finding(
            Status.FAIL if v.certain else Status.WARN,
            summary,
            detail=(legacy_note if j.app.app in (ca.AppKind.LEGACY, ca.AppKind.EAS) else "")
            + detail_extra,
            evidence=evidence,
            steps=steps,
            next_steps=[*_you_steps(j.app, policy, q.control), admin],
        )
    evidence["problem"] = "ca-requires-control"
    how = (
        "Expect a Microsoft sign-in window asking for it, and complete it."
        if q.can is ca.Can.YES
        else "Whether the app meets it depends on the device, which mailfix cannot see."
    )
    return check.finding(
        Status.WARN,
        f"The Conditional Access policy “{policy.name}” requires {words} for {j.app.label}. " + how,
        detail=(
            "This app can meet it. An app that signs in with only a password (IMAP, POP or SMTP "
            "with legacy authentication) never could: legacy authentication cannot do "
            "multifactor authentication or prove the device's state." + detail_extra
        ),
        evidence=evidence,
        steps=steps,
        next_steps=_requires_steps(q.control),
    )


def _you_steps(app: AppContext, policy: ConditionalAccessPolicy, control: str) -> list[str]:
    """What the person can do, from what the policy targets."""
    c = policy.conditions
    targets_app_type = bool(c.client_app_types) and "all" not in c.client_app_types
    where = c.locations is not None and bool(c.locations.include_locations)
    alternative = (
        "Use Outlook, or an app that signs in with a Microsoft account page (modern "
        "authentication), instead."
        if app.app is not ca.AppKind.EAS
        else "Use Outlook for iOS and Android instead, or ask the helpdesk which app is allowed."
    )
    if control == "block":
        if targets_app_type and app.app in (ca.AppKind.LEGACY, ca.AppKind.EAS):
            kind = (
                "signs in with a password (legacy authentication)"
                if app.app is ca.AppKind.LEGACY
                else "is the phone's built-in mail app"
            )
            return [
                f"You: your organisation's policy blocks this kind of app: it {kind}. {alternative}"
            ]
        if where:
            return [
                "You: your organisation allows this only from certain places (such as the "
                "office network). Try again from there, or ask the helpdesk which network or VPN "
                "to use.",
            ]
        return ["You: your organisation's policy blocks this; ask the helpdesk what is allowed."]
    if app.app in (ca.AppKind.LEGACY, ca.AppKind.EAS):
        what = (
            "signs in with a password (legacy authentication)"
            if app.app is ca.AppKind.LEGACY
            else "is the phone's built-in mail app"
        )
        return [
            f"You: this app {what}, which can never provide {_control_words(control)}. "
            f"{alternative}"
        ]
    return [
        f"You: this app cannot provide {_control_words(control)}; ask the helpdesk which app "
        "your organisation allows.",
    ]


def _requires_steps(control: str) -> list[str]:
    if control in ("mfa", "authenticationStrength"):
        return [
            "You: when the app shows a Microsoft sign-in window, complete the extra "
            "verification (Authenticator app, text or call). If you have not set it up, go "
            "to https://aka.ms/mysecurityinfo first.",
        ]
    if control == "compliantDevice":
        return [
            "You: the device must be enrolled in your organisation's device management "
            "(Intune / Company Portal) and marked compliant; the Company Portal app shows "
            "what is missing.",
        ]
    if control in ("approvedApplication", "compliantApplication"):
        return ["You: use Outlook for iOS and Android, which your organisation approves."]
    return [f"You: the policy asks for {_control_words(control)}; ask the helpdesk."]


CLIENT_ACCESS_RULES = Check(
    "tenant.client_access_rules",
    "Client Access Rules",
    Side.ADMIN,
    EVERY_CLIENT,
    _client_access_rules,
    timeout=20.0,
    needs_tenant=True,
)
CONDITIONAL_ACCESS = Check(
    "tenant.conditional_access",
    "Conditional Access",
    Side.IDENTITY,
    EVERY_CLIENT,
    _conditional_access,
    timeout=25.0,
    needs_tenant=True,
)

CHECKS: tuple[Check, ...] = (CLIENT_ACCESS_RULES, CONDITIONAL_ACCESS)
