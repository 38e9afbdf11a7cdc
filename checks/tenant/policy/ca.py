"""Conditional Access evaluated for one sign-in to Exchange Online (reference §5.2).

* A policy applies only if every configured condition matches: users (with transitive groups
  and roles), cloud apps, client app types, platforms, locations, and the rest. In each
  condition an exclusion beats an inclusion.
* Only `enabled` policies are enforced; report-only policies (`enabledForReportingButNotEnforced`)
  never block and disabled ones are ignored.
* All applying policies are enforced together: any `block` wins; otherwise every policy's grant
  requirement must be met, each policy's controls combined by its `operator` (AND / OR).

mailfix reads the tenant's policies but does not see the sign-in itself (IP address, country,
device compliance, risk), so conditions on those are UNKNOWN, and the verdict says which.
Whether a client can ever meet a control follows Microsoft's statement that legacy
authentication clients (the "Other clients" and "Exchange ActiveSync" client app types) don't
support MFA and don't pass device state, so grant controls block them (Entra ID documentation,
"Block legacy authentication with Conditional Access"; reference §5.4: legacy clients can't do MFA).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum

from checks.tenant.policy._tri import Tri, any_of
from checks.tenant.policy.ipmatch import IPAddress, parse_span
from checks.tenant.policy.models import (
    EXCHANGE_ONLINE_APP_ID,
    CaConditions,
    ClientAppType,
    ConditionalAccessPolicy,
    NamedLocation,
    Platform,
    PolicyState,
)

OFFICE365 = "Office365"  # the app group that includes Exchange Online (§5.2)
# "MFA trusted IPs" from the legacy MFA service settings appear under this id; Graph does not
# list their ranges.
MFA_TRUSTED_IPS_ID = "00000000-0000-0000-0000-000000000000"
# Platforms Exchange ActiveSync's "supported" subset covers (easSupported, §5.2).
_EAS_SUPPORTED = frozenset({Platform.IOS, Platform.ANDROID, Platform.WINDOWS_PHONE})


class AppKind(StrEnum):
    """What signs in, as far as meeting grant controls goes."""

    LEGACY = "legacy"  # IMAP/POP/SMTP (or anything) with a password: client app type `other`
    EAS = "exchange-activesync"  # a phone's built-in mail app over ActiveSync
    OUTLOOK_DESKTOP = "outlook-desktop"
    OUTLOOK_MOBILE = "outlook-mobile"
    BROWSER = "browser"
    MODERN_APP = "modern-app"  # another app that signs in with a Microsoft account page


CLIENT_APP_TYPE: dict[AppKind, ClientAppType] = {
    AppKind.LEGACY: ClientAppType.OTHER,
    AppKind.EAS: ClientAppType.EAS,
    AppKind.OUTLOOK_DESKTOP: ClientAppType.MODERN,
    AppKind.OUTLOOK_MOBILE: ClientAppType.MODERN,
    AppKind.BROWSER: ClientAppType.BROWSER,
    AppKind.MODERN_APP: ClientAppType.MODERN,
}


@dataclass(frozen=True)
class SignIn:
    """The sign-in being judged. None means mailfix does not know it."""

    user_id: str
    app: AppKind
    groups: frozenset[str] | None = None  # transitive group ids
    roles: frozenset[str] | None = None  # directory role template ids
    is_guest: bool | None = False
    platform: Platform | None = None
    ip: IPAddress | None = None
    country: str | None = None  # ISO 3166 two letters
    app_id: str = EXCHANGE_ONLINE_APP_ID

    @property
    def client_app_type(self) -> ClientAppType:
        return CLIENT_APP_TYPE[self.app]


@dataclass(frozen=True)
class PolicyResult:
    policy: ConditionalAccessPolicy
    applies: Tri
    why_not: str = ""  # the first condition that does not match, in words
    unknown: tuple[str, ...] = ()  # what could not be evaluated, in words


# ---- conditions ------------------------------------------------------------------------------


class _Conditions:
    def __init__(self, sign_in: SignIn, locations: Mapping[str, NamedLocation]) -> None:
        self.s = sign_in
        self.locations = locations
        self.unknown: list[str] = []

    def _unknown(self, what: str) -> Tri:
        self.unknown.append(what)
        return Tri.UNKNOWN

    # users -------------------------------------------------------------------------------
    def _ids(self, wanted: Sequence[str], have: frozenset[str] | None, what: str) -> Tri:
        if not wanted:
            return Tri.NO
        if have is None:
            return self._unknown(what)
        return Tri.of(any(w in have for w in wanted))

    def _guest(self, present: bool) -> Tri:
        if not present:
            return Tri.NO
        if self.s.is_guest is None:
            return self._unknown("whether the account is a guest")
        if not self.s.is_guest:
            return Tri.NO
        return self._unknown("which kind of guest account it is")

    def _user_list(self, values: Sequence[str]) -> Tri:
        out = Tri.NO
        for v in values:
            if v in ("All", self.s.user_id):
                return Tri.YES
            if v == "GuestsOrExternalUsers":
                if self.s.is_guest is None:
                    out = out | self._unknown("whether the account is a guest")
                elif self.s.is_guest:
                    return Tri.YES
        return out

    def users(self, c: CaConditions) -> tuple[Tri, str]:
        u = c.users
        if u is None:
            return Tri.NO, "it targets no users"
        include = any_of(
            [
                self._user_list([v for v in u.include_users if v != "None"]),
                self._ids(u.include_groups, self.s.groups, "the account's group memberships"),
                self._ids(u.include_roles, self.s.roles, "the account's directory roles"),
                self._guest(bool(u.include_guests)),
            ]
        )
        if include is Tri.NO:
            return Tri.NO, "it does not include this person"
        exclude = any_of(
            [
                self._user_list(u.exclude_users),
                self._ids(u.exclude_groups, self.s.groups, "the account's group memberships"),
                self._ids(u.exclude_roles, self.s.roles, "the account's directory roles"),
                self._guest(bool(u.exclude_guests)),
            ]
        )
        if exclude is Tri.YES:
            return Tri.NO, "it excludes this person"
        return include & ~exclude, ""

    # cloud apps -------------------------------------------------------------------------
    def applications(self, c: CaConditions) -> tuple[Tri, str]:
        a = c.applications
        if a is None or not a.include_applications:
            return Tri.NO, "it covers no cloud app (only user actions or contexts)"
        target = self.s.app_id.lower()

        def names_exo(values: Sequence[str], *, all_counts: bool) -> bool:
            for v in values:
                if v.lower() == target or v == OFFICE365 or (all_counts and v == "All"):
                    return True
            return False

        if names_exo(a.exclude_applications, all_counts=False):
            return Tri.NO, "it excludes Exchange Online"
        if not names_exo(a.include_applications, all_counts=True):
            return Tri.NO, "it does not cover Exchange Online"
        if a.application_filter:
            return self._unknown("the filter on app attributes"), ""
        return Tri.YES, ""

    # client app types -------------------------------------------------------------------
    def client_apps(self, c: CaConditions) -> tuple[Tri, str]:
        types = c.client_app_types
        if not types or ClientAppType.ALL.value in types:
            return Tri.YES, ""
        mine = self.s.client_app_type
        if mine.value in types:
            return Tri.YES, ""
        if mine is ClientAppType.EAS and ClientAppType.EAS_SUPPORTED.value in types:
            if self.s.platform is None:
                return self._unknown("whether the phone is an ActiveSync-supported platform"), ""
            if self.s.platform in _EAS_SUPPORTED:
                return Tri.YES, ""
        return Tri.NO, "it does not cover this kind of app"

    # platforms --------------------------------------------------------------------------
    def platforms(self, c: CaConditions) -> tuple[Tri, str]:
        p = c.platforms
        if p is None or not p.include_platforms:
            return Tri.YES, ""
        mine = self.s.platform
        if mine is None:
            if p.include_platforms == [Platform.ALL.value] and not p.exclude_platforms:
                return Tri.YES, ""
            return self._unknown("the device's operating system"), ""
        if mine.value in p.exclude_platforms:
            return Tri.NO, "it excludes this device's operating system"
        if Platform.ALL.value in p.include_platforms or mine.value in p.include_platforms:
            return Tri.YES, ""
        return Tri.NO, "it does not cover this device's operating system"

    # locations --------------------------------------------------------------------------
    def _in_location(self, entry: str) -> Tri:
        if entry == "All":
            return Tri.YES
        if entry == "AllTrusted":
            trusted = [loc for loc in self.locations.values() if loc.is_trusted]
            return any_of(self._in_named(loc) for loc in trusted) | self._trusted_ips_unknown()
        if entry == MFA_TRUSTED_IPS_ID:
            return self._trusted_ips_unknown()
        loc = self.locations.get(entry)
        if loc is None:
            return self._unknown(f"a named location mailfix could not read ({entry})")
        return self._in_named(loc)

    def _trusted_ips_unknown(self) -> Tri:
        # "All trusted locations" also covers the MFA service's trusted IPs, which Graph does
        # not list: inside them is only ever "unknown", never "no".
        if self.s.ip is None:
            return self._unknown("the IP address the person connects from")
        return Tri.NO

    def _in_named(self, loc: NamedLocation) -> Tri:
        name = loc.display_name or loc.id
        if loc.kind == "ip":
            if self.s.ip is None:
                return self._unknown("the IP address the person connects from")
            bad = False
            for r in loc.ip_ranges:
                try:
                    if self.s.ip in parse_span(r.cidr_address):
                        return Tri.YES
                except ValueError:
                    bad = True
            return self._unknown(f"an address range of “{name}”") if bad else Tri.NO
        if loc.kind == "country":
            if (loc.country_lookup_method or "clientIpAddress") != "clientIpAddress":
                return self._unknown(f"the phone's GPS location (“{name}”)")
            if self.s.country is None:
                return self._unknown("the country the person connects from")
            if not self.s.country:
                return Tri.of(loc.include_unknown_countries)
            return Tri.of(self.s.country.upper() in {c.upper() for c in loc.countries_and_regions})
        return self._unknown(f"the named location “{name}” (a kind mailfix does not know)")

    def locations_(self, c: CaConditions) -> tuple[Tri, str]:
        loc = c.locations
        if loc is None or not loc.include_locations:
            return Tri.YES, ""
        include = any_of(self._in_location(e) for e in loc.include_locations)
        if include is Tri.NO:
            return Tri.NO, "it does not cover where the person connects from"
        exclude = any_of(self._in_location(e) for e in loc.exclude_locations)
        if exclude is Tri.YES:
            return Tri.NO, "it excludes where the person connects from"
        return include & ~exclude, ""

    # the rest ---------------------------------------------------------------------------
    def others(self, c: CaConditions) -> tuple[Tri, str]:
        ca = c.client_applications or {}
        if ca.get("includeServicePrincipals"):
            return Tri.NO, "it is for apps signing in as themselves, not for people"
        out = Tri.YES
        if c.sign_in_risk_levels:
            out = out & self._unknown("the sign-in risk Entra ID assigns")
        if c.user_risk_levels:
            out = out & self._unknown("the account's user risk")
        if c.insider_risk_levels:
            out = out & self._unknown("the account's insider risk")
        if c.devices and (c.devices.get("deviceFilter") or c.devices.get("includeDevices")):
            out = out & self._unknown("the device's properties (the device filter)")
        if c.authentication_flows:
            out = out & self._unknown("how the sign-in was transferred (authentication flows)")
        for name in c.unknown_conditions():
            out = out & self._unknown(f"a condition mailfix does not know ({name})")
        return out, ""


def evaluate_policy(
    policy: ConditionalAccessPolicy,
    sign_in: SignIn,
    locations: Mapping[str, NamedLocation] | None = None,
) -> PolicyResult:
    """Does `policy` apply to `sign_in`? (Its state is not looked at here.)"""
    conds = _Conditions(sign_in, locations or {})
    c = policy.conditions
    result = Tri.YES
    for check in (
        conds.users,
        conds.applications,
        conds.client_apps,
        conds.platforms,
        conds.locations_,
        conds.others,
    ):
        tri, why = check(c)
        if tri is Tri.NO:
            return PolicyResult(policy, Tri.NO, why_not=why)
        result = result & tri
    return PolicyResult(policy, result, unknown=tuple(dict.fromkeys(conds.unknown)))


def unseen(
    policy: ConditionalAccessPolicy,
    sign_in: SignIn,
    locations: Mapping[str, NamedLocation] | None = None,
) -> list[str]:
    """What mailfix cannot see among the policy's conditions other than users (words).

    For a policy another evaluator (Graph's What-If) found "not enough information" for: the
    users condition it judged itself; the rest names what is missing.
    """
    conds = _Conditions(sign_in, locations or {})
    c = policy.conditions
    for check in (conds.applications, conds.client_apps, conds.platforms, conds.locations_):
        check(c)
    conds.others(c)
    return list(dict.fromkeys(conds.unknown))


# ---- grant controls --------------------------------------------------------------------------


class Can(Enum):
    """Can this app ever meet a control?"""

    NEVER = 0
    DEPENDS = 1  # on the device or its management, which mailfix cannot see
    YES = 2  # the person can do it when asked (e.g. complete MFA)


_MODERN = frozenset(
    {AppKind.OUTLOOK_DESKTOP, AppKind.OUTLOOK_MOBILE, AppKind.BROWSER, AppKind.MODERN_APP}
)
_MOBILE = frozenset({Platform.IOS, Platform.ANDROID})


def can_meet(control: str, app: AppKind, platform: Platform | None = None) -> Can:
    """Whether `app` can satisfy `control` (Graph's names: mfa, compliantDevice …)."""
    if control == "block":
        return Can.NEVER
    if app not in _MODERN:
        # Legacy clients (Other, Exchange ActiveSync): no MFA, no device state, no prompts.
        return Can.NEVER
    if control in ("mfa", "authenticationStrength", "passwordChange", "termsOfUse"):
        return Can.YES  # interactive: the Microsoft sign-in page asks for it
    if control == "compliantDevice":
        return Can.DEPENDS
    if control == "domainJoinedDevice":
        # Hybrid-joined devices are Windows computers [Entra ID docs, not in the team reference].
        if platform is None or platform is Platform.WINDOWS:
            return Can.DEPENDS
        return Can.NEVER
    if control in ("approvedApplication", "compliantApplication"):
        # Approved client apps / app protection: iOS and Android apps only, e.g. Outlook for
        # iOS and Android [Entra ID docs, not in the team reference].
        if app is AppKind.OUTLOOK_MOBILE:
            return Can.YES if control == "approvedApplication" else Can.DEPENDS
        if app is AppKind.BROWSER and (platform is None or platform in _MOBILE):
            return Can.DEPENDS  # Microsoft Edge on the phone
        return Can.NEVER
    return Can.DEPENDS  # custom controls and anything newer


@dataclass(frozen=True)
class Requirement:
    """One applying policy's grant requirement, judged for the app."""

    result: PolicyResult
    controls: tuple[str, ...]
    operator: str
    can: Can
    control: str  # the control the verdict names (the unmet one, or the one to do)

    @property
    def policy(self) -> ConditionalAccessPolicy:
        return self.result.policy


def requirement(result: PolicyResult, sign_in: SignIn) -> Requirement | None:
    """The grant requirement of an applying policy; None when it requires nothing."""
    grant = result.policy.grant_controls
    if grant is None or not grant.controls():
        return None
    controls = tuple(grant.controls())
    operator = "AND" if grant.operator.strip().upper() == "AND" else "OR"
    if "block" in controls:
        return Requirement(result, controls, operator, Can.NEVER, "block")
    answers = [(c, can_meet(c, sign_in.app, sign_in.platform)) for c in controls]
    if operator == "AND":
        can = min((a for _, a in answers), key=lambda a: a.value)
        named = next(c for c, a in answers if a is can)
    else:
        can = max((a for _, a in answers), key=lambda a: a.value)
        named = next(c for c, a in answers if a is can)
    return Requirement(result, controls, operator, can, named)


# ---- all policies together -------------------------------------------------------------------


class Outcome(StrEnum):
    BLOCKED = "blocked"
    CONTROL_UNMET = "control-unmet"
    REQUIRES_CONTROL = "requires-control"
    ALLOWED = "allowed"


@dataclass(frozen=True)
class CaVerdict:
    outcome: Outcome
    certain: bool  # False: the deciding policy applies only if an unevaluable condition holds
    deciding: Requirement | None
    results: tuple[PolicyResult, ...]  # enabled policies
    report_only: tuple[PolicyResult, ...] = ()  # report-only policies that (might) apply
    requirements: tuple[Requirement, ...] = field(default_factory=tuple)

    @property
    def unknown(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.results:
            if r.applies is Tri.UNKNOWN:
                seen.update(dict.fromkeys(r.unknown))
        return list(seen)

    @property
    def applying(self) -> list[PolicyResult]:
        return [r for r in self.results if r.applies is Tri.YES]


def combine(
    results: Iterable[PolicyResult], sign_in: SignIn, report_only: Iterable[PolicyResult] = ()
) -> CaVerdict:
    """All applying enabled policies together: block first, then controls the app can't meet."""
    enabled = tuple(results)
    reqs = [
        req
        for r in enabled
        if r.applies is not Tri.NO and (req := requirement(r, sign_in)) is not None
    ]
    sure = [q for q in reqs if q.result.applies is Tri.YES]
    maybe = [q for q in reqs if q.result.applies is Tri.UNKNOWN]
    ro = tuple(r for r in report_only if r.applies is not Tri.NO)

    def first(qs: list[Requirement], pred: Callable[[Requirement], bool]) -> Requirement | None:
        return next((q for q in qs if pred(q)), None)

    def block(q: Requirement) -> bool:
        return q.control == "block"

    def never(q: Requirement) -> bool:
        return q.can is Can.NEVER

    steps: list[tuple[list[Requirement], Callable[[Requirement], bool], Outcome, bool]] = [
        (sure, block, Outcome.BLOCKED, True),
        (sure, never, Outcome.CONTROL_UNMET, True),
        (maybe, block, Outcome.BLOCKED, False),
        (maybe, never, Outcome.CONTROL_UNMET, False),
    ]
    for qs, pred, outcome, certain in steps:
        hit = first(qs, pred)
        if hit is not None:
            return CaVerdict(outcome, certain, hit, enabled, ro, tuple(reqs))
    if sure:
        # Prefer what the person can do themselves (MFA) over device management.
        hit = max(sure, key=lambda q: q.can.value)
        return CaVerdict(Outcome.REQUIRES_CONTROL, True, hit, enabled, ro, tuple(reqs))
    return CaVerdict(Outcome.ALLOWED, True, None, enabled, ro, tuple(reqs))


def evaluate(
    policies: Iterable[ConditionalAccessPolicy],
    sign_in: SignIn,
    locations: Iterable[NamedLocation] = (),
) -> CaVerdict:
    """Judge every policy for `sign_in`: enabled ones enforced, report-only ones listed."""
    by_id = {loc.id: loc for loc in locations}
    enabled: list[PolicyResult] = []
    report_only: list[PolicyResult] = []
    for p in policies:
        if p.state == PolicyState.ENABLED:
            enabled.append(evaluate_policy(p, sign_in, by_id))
        elif p.state == PolicyState.REPORT_ONLY:
            report_only.append(evaluate_policy(p, sign_in, by_id))
    return combine(enabled, sign_in, report_only)
