"""Client Access Rules evaluated as Exchange evaluates them (exchange-online-diagnostics.md §6.1).

* Rules run in priority order, 0 first. Disabled rules are skipped.
* The first rule whose conditions all match (AND; several values of one condition: OR) and
  none of whose exceptions match (any one exempts) wins, and evaluation stops. A rule that an
  exception exempts does not win; evaluation goes on to the next rule.
* A rule without a protocol condition applies to every protocol.
* No matching rule: access is allowed.
* `Scope` `Users` covers end-user connections only; `All` also the connections Microsoft's
  middle tier makes (Outlook for iOS and Android), which otherwise bypass the rules.

mailfix does not see the person's own connection (its IP address, source port), so a condition
on those is "unknown": the verdict then lists each rule that might decide instead of guessing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from checks.tenant.policy import opath
from checks.tenant.policy._tri import Tri, all_of, any_of
from checks.tenant.policy.ipmatch import IPAddress, parse_span
from checks.tenant.policy.models import CarAuthType, CarProtocol, ClientAccessRule


@dataclass(frozen=True)
class Connection:
    """One connection as the rules see it. None / () means mailfix does not know it."""

    protocol: CarProtocol
    authentication: CarAuthType | None = None
    ip: IPAddress | None = None
    usernames: tuple[str, ...] = ()  # candidate account names, e.g. ("contoso.com\\ana",)
    attributes: Mapping[str, str | None] | None = None  # OPATH properties of the user
    middle_tier: bool = False  # Outlook for iOS/Android through Microsoft's middle tier
    source_port: int | None = None


@dataclass(frozen=True)
class RuleOutcome:
    """What one rule did with the connection."""

    rule: ClientAccessRule
    result: str  # disabled | out-of-scope | no-match | excepted | match | unknown
    unknown: tuple[str, ...] = ()  # what could not be evaluated, in words
    because: str = ""  # why it did not match / which exception exempted it, in words


@dataclass(frozen=True)
class CarVerdict:
    """`allowed`: YES / NO when certain, UNKNOWN when an unevaluable rule might decide."""

    allowed: Tri
    rule: ClientAccessRule | None  # the rule that decides (None: no rule, or not certain)
    might_deny: tuple[ClientAccessRule, ...] = ()  # deny rules that might decide instead
    outcomes: tuple[RuleOutcome, ...] = field(default_factory=tuple)

    @property
    def unknown(self) -> list[str]:
        seen: dict[str, None] = {}
        for o in self.outcomes:
            if o.result == "unknown":
                seen.update(dict.fromkeys(o.unknown))
        return list(seen)


def _eq(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


def username_matches(pattern: str, name: str) -> bool:
    """`*` is the only wildcard (New-ClientAccessRule: "*jeff*"); case is ignored."""
    rx = "".join(".*" if c == "*" else re.escape(c) for c in pattern.strip())
    return re.fullmatch(rx, name.strip(), re.IGNORECASE) is not None


class _Eval:
    """Evaluates one rule's conditions or exceptions; collects what it could not evaluate."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.unknown: list[str] = []

    def _unknown(self, what: str) -> Tri:
        self.unknown.append(what)
        return Tri.UNKNOWN

    def protocols(self, values: Sequence[str]) -> Tri:
        return Tri.of(any(_eq(v, self.conn.protocol.value) for v in values))

    def ips(self, values: Sequence[str]) -> Tri:
        if self.conn.ip is None:
            return self._unknown("the IP address the app connects from")
        bad = False
        for text in values:
            try:
                if self.conn.ip in parse_span(text):
                    return Tri.YES
            except ValueError:
                bad = True
        return self._unknown(f"an address entry mailfix cannot read ({values})") if bad else Tri.NO

    def auth(self, values: Sequence[str]) -> Tri:
        if self.conn.authentication is None:
            return self._unknown("how the app signs in (the authentication type)")
        return Tri.of(any(_eq(v, self.conn.authentication.value) for v in values))

    def usernames(self, patterns: Sequence[str]) -> Tri:
        if not self.conn.usernames:
            return self._unknown("the account name")
        return Tri.of(any(username_matches(p, n) for p in patterns for n in self.conn.usernames))

    def recipient_filter(self, text: str) -> Tri:
        if self.conn.attributes is None:
            return self._unknown("the user's directory properties (the recipient filter)")
        try:
            result = opath.evaluate(text, self.conn.attributes)
        except opath.Unsupported as exc:
            return self._unknown(f"the recipient filter “{text}” ({exc})")
        if result is Tri.UNKNOWN:
            self.unknown.append(f"the user's {', '.join(opath.properties_used(text))}")
        return result

    def ports(self, values: Sequence[str]) -> Tri:
        if self.conn.source_port is None:
            return self._unknown("the connection's source port")
        return Tri.of(str(self.conn.source_port) in {v.strip() for v in values})

    def member_of(self, values: Sequence[str]) -> Tri:
        # UserIsMemberOf is reserved for internal Microsoft use (§6.1): never evaluable.
        return self._unknown("group membership (a condition reserved for Microsoft)")


def _conditions(rule: ClientAccessRule, ev: _Eval) -> tuple[Tri, str]:
    parts: list[tuple[Tri, str]] = []
    if rule.any_of_protocols:
        parts.append((ev.protocols(rule.any_of_protocols), "the protocol is not one it covers"))
    if rule.any_of_ips:
        parts.append((ev.ips(rule.any_of_ips), "the address is not one it covers"))
    if rule.any_of_auth:
        parts.append((ev.auth(rule.any_of_auth), "the sign-in type is not one it covers"))
    if rule.username_patterns:
        parts.append((ev.usernames(rule.username_patterns), "the account name does not match"))
    if rule.user_recipient_filter:
        parts.append((ev.recipient_filter(rule.user_recipient_filter), "the user is not in it"))
    if rule.any_of_ports:
        parts.append((ev.ports(rule.any_of_ports), "the source port is not one it covers"))
    if rule.user_is_member_of:
        parts.append((ev.member_of(rule.user_is_member_of), "not a member"))
    result = all_of(t for t, _ in parts)
    why = next((w for t, w in parts if t is Tri.NO), "")
    return result, why


def _exceptions(rule: ClientAccessRule, ev: _Eval) -> tuple[Tri, str]:
    parts: list[tuple[Tri, str]] = []
    if rule.except_protocols:
        parts.append((ev.protocols(rule.except_protocols), "the protocol is exempt"))
    if rule.except_ips:
        parts.append((ev.ips(rule.except_ips), "the address is exempt"))
    if rule.except_auth:
        parts.append((ev.auth(rule.except_auth), "the sign-in type is exempt"))
    if rule.except_username_patterns:
        parts.append((ev.usernames(rule.except_username_patterns), "the account is exempt"))
    if rule.except_ports:
        parts.append((ev.ports(rule.except_ports), "the source port is exempt"))
    if rule.except_user_is_member_of:
        parts.append((ev.member_of(rule.except_user_is_member_of), "a member is exempt"))
    result = any_of(t for t, _ in parts)
    why = next((w for t, w in parts if t is Tri.YES), "")
    return result, why


def evaluate_rule(rule: ClientAccessRule, conn: Connection) -> RuleOutcome:
    if not rule.enabled:
        return RuleOutcome(rule, "disabled")
    if conn.middle_tier and (rule.scope or "").strip().lower() == "users":
        return RuleOutcome(rule, "out-of-scope", because="it covers end-user connections only")
    ev = _Eval(conn)
    cond, why_not = _conditions(rule, ev)
    if cond is Tri.NO:
        return RuleOutcome(rule, "no-match", because=why_not)
    exc, why_exempt = _exceptions(rule, ev)
    if exc is Tri.YES:
        return RuleOutcome(rule, "excepted", because=why_exempt)
    if cond is Tri.YES and exc is Tri.NO:
        return RuleOutcome(rule, "match")
    return RuleOutcome(rule, "unknown", unknown=tuple(dict.fromkeys(ev.unknown)))


def ordered(rules: Iterable[ClientAccessRule]) -> list[ClientAccessRule]:
    """Priority order (0 first); ties (never in a healthy tenant) keep the order read."""
    return sorted(rules, key=lambda r: r.priority)


def evaluate(rules: Iterable[ClientAccessRule], conn: Connection) -> CarVerdict:
    outcomes: list[RuleOutcome] = []
    maybe: list[ClientAccessRule] = []
    winner: ClientAccessRule | None = None
    for rule in ordered(rules):
        outcome = evaluate_rule(rule, conn)
        outcomes.append(outcome)
        if outcome.result == "match":
            winner = rule
            break
        if outcome.result == "unknown":
            maybe.append(rule)
    final_denies = winner.denies if winner is not None else False  # no rule: allowed
    possible = {r.denies for r in maybe} | {final_denies}
    might_deny = tuple(r for r in (*maybe, *([winner] if winner else [])) if r.denies)
    if possible == {True}:
        allowed, decided = Tri.NO, (winner if not maybe else None)
    elif possible == {False}:
        allowed, decided = Tri.YES, (winner if not maybe else None)
    else:
        allowed, decided = Tri.UNKNOWN, None
    if decided is None and not maybe and winner is not None:
        decided = winner
    return CarVerdict(allowed, decided, might_deny, tuple(outcomes))
