"""Client Access Rules, evaluated as Exchange does (reference §6.1), table-driven.

Each case is a tenant's rules (as Get-ClientAccessRule returns them) and one connection; the
expected verdict is what the documented semantics say: priority order (0 first), the first
rule whose conditions all match and no exception matches wins and stops, any exception
exempts and evaluation goes on, no protocol condition means every protocol, disabled rules
are skipped, Scope Users leaves Microsoft's middle tier alone.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from checks.tenant.policy import car, opath
from checks.tenant.policy._tri import Tri
from checks.tenant.policy.ipmatch import parse_span
from checks.tenant.policy.models import CarAuthType, CarProtocol, ClientAccessRule

P = CarProtocol
A = CarAuthType


def rule(name: str, priority: int, action: str = "DenyAccess", **wire: Any) -> ClientAccessRule:
    return ClientAccessRule.model_validate(
        {"Name": name, "Priority": priority, "Action": action, "Enabled": True, **wire}
    )


def conn(
    protocol: CarProtocol = P.IMAP4,
    auth: CarAuthType | None = A.BASIC,
    ip: str | None = None,
    **kw: Any,
) -> car.Connection:
    return car.Connection(
        protocol=protocol,
        authentication=auth,
        ip=ipaddress.ip_address(ip) if ip else None,
        **kw,
    )


ALLOW_PS = rule(
    "Always Allow Remote PowerShell", 0, "AllowAccess", AnyOfProtocols=["RemotePowerShell"]
)

# (id, rules, connection, allowed, deciding rule name or None)
CASES: list[tuple[str, list[ClientAccessRule], car.Connection, Tri, str | None]] = [
    ("no rules: allowed", [], conn(), Tri.YES, None),
    (
        "deny without protocol condition covers every protocol",
        [rule("Block all", 1)],
        conn(P.EAS, A.OAUTH),
        Tri.NO,
        "Block all",
    ),
    (
        "protocol condition not met: next rule",
        [rule("Block POP", 0, AnyOfProtocols=["POP3"])],
        conn(P.IMAP4),
        Tri.YES,
        None,
    ),
    (
        "values of one condition are OR",
        [rule("Block POP+IMAP", 0, AnyOfProtocols=["POP3", "IMAP4"])],
        conn(P.IMAP4),
        Tri.NO,
        "Block POP+IMAP",
    ),
    (
        "conditions are AND: protocol matches, auth type does not",
        [
            rule(
                "Basic IMAP",
                0,
                AnyOfProtocols=["IMAP4"],
                AnyOfAuthenticationTypes=["BasicAuthentication"],
            )
        ],
        conn(P.IMAP4, A.OAUTH),
        Tri.YES,
        None,
    ),
    (
        "conditions are AND: both match",
        [
            rule(
                "Basic IMAP",
                0,
                AnyOfProtocols=["IMAP4"],
                AnyOfAuthenticationTypes=["BasicAuthentication"],
            )
        ],
        conn(P.IMAP4, A.BASIC),
        Tri.NO,
        "Basic IMAP",
    ),
    (
        "priority order: allow at 0 beats deny at 1 (first match wins and stops)",
        [
            rule("Deny IMAP", 1, AnyOfProtocols=["IMAP4"]),
            rule("Allow IMAP", 0, "AllowAccess", AnyOfProtocols=["IMAP4"]),
        ],
        conn(P.IMAP4),
        Tri.YES,
        "Allow IMAP",
    ),
    (
        "priority order: deny at 0 beats allow at 1",
        [
            rule("Allow IMAP", 1, "AllowAccess", AnyOfProtocols=["IMAP4"]),
            rule("Deny IMAP", 0, AnyOfProtocols=["IMAP4"]),
        ],
        conn(P.IMAP4),
        Tri.NO,
        "Deny IMAP",
    ),
    (
        "disabled rule skipped",
        [rule("Deny all (off)", 0, Enabled=False)],
        conn(),
        Tri.YES,
        None,
    ),
    (
        "disabled higher-priority allow does not save the connection",
        [rule("Allow (off)", 0, "AllowAccess", Enabled=False), rule("Deny all", 1)],
        conn(),
        Tri.NO,
        "Deny all",
    ),
    (
        "exception exempts, evaluation continues to the next rule",
        [
            rule(
                "Deny EAS except OAuth",
                0,
                AnyOfProtocols=["ExchangeActiveSync"],
                ExceptAnyOfAuthenticationTypes=["OAuthAuthentication"],
            ),
            rule("Deny all", 1),
        ],
        conn(P.EAS, A.OAUTH),
        Tri.NO,
        "Deny all",
    ),
    (
        "exception exempts and no later rule: allowed",
        [
            rule(
                "Deny EAS except OAuth",
                0,
                AnyOfProtocols=["ExchangeActiveSync"],
                ExceptAnyOfAuthenticationTypes=["OAuthAuthentication"],
            )
        ],
        conn(P.EAS, A.OAUTH),
        Tri.YES,
        None,
    ),
    (
        "exceptions are OR: the protocol exception alone exempts",
        [
            rule(
                "Deny except OWA/EAS",
                0,
                ExceptAnyOfProtocols=["OutlookWebApp", "ExchangeActiveSync"],
                ExceptAnyOfAuthenticationTypes=["AdfsAuthentication"],
            )
        ],
        conn(P.OWA, None),
        Tri.YES,
        None,
    ),
    (
        "exception not met: rule wins",
        [rule("Deny except OWA", 0, ExceptAnyOfProtocols=["OutlookWebApp"])],
        conn(P.POP3),
        Tri.NO,
        "Deny except OWA",
    ),
    (
        "IP condition with a known IPv4 inside a CIDR",
        [rule("Deny office net", 0, AnyOfClientIPAddressesOrRanges=["192.0.2.0/24"])],
        conn(ip="192.0.2.77"),
        Tri.NO,
        "Deny office net",
    ),
    (
        "IP range a-b, address outside",
        [rule("Deny range", 0, AnyOfClientIPAddressesOrRanges=["192.0.2.10-192.0.2.20"])],
        conn(ip="192.0.2.21"),
        Tri.YES,
        None,
    ),
    (
        "IPv6 CIDR exception exempts",
        [rule("Deny outside", 0, ExceptAnyOfClientIPAddressesOrRanges=["2001:db8:abcd::/48"])],
        conn(ip="2001:db8:abcd:12::5"),
        Tri.YES,
        None,
    ),
    (
        "IPv6 address outside the excepted range: denied",
        [rule("Deny outside", 0, ExceptAnyOfClientIPAddressesOrRanges=["2001:db8:abcd::/48"])],
        conn(ip="2001:db8:ffff::5"),
        Tri.NO,
        "Deny outside",
    ),
    (
        "IP exception with unknown IP: cannot tell",
        [rule("Deny outside office", 0, ExceptAnyOfClientIPAddressesOrRanges=["198.51.100.0/24"])],
        conn(),
        Tri.UNKNOWN,
        None,
    ),
    (
        "unknown-IP allow rule before a sure deny: cannot tell",
        [
            rule(
                "Allow office", 0, "AllowAccess", AnyOfClientIPAddressesOrRanges=["198.51.100.0/24"]
            ),
            rule("Deny IMAP", 1, AnyOfProtocols=["IMAP4"]),
        ],
        conn(),
        Tri.UNKNOWN,
        None,
    ),
    (
        "unknown-IP deny rule, then a sure deny: denied either way",
        [
            rule("Deny from X", 0, AnyOfClientIPAddressesOrRanges=["203.0.113.0/24"]),
            rule("Deny IMAP", 1, AnyOfProtocols=["IMAP4"]),
        ],
        conn(),
        Tri.NO,
        None,
    ),
    (
        "unknown-IP rule for another protocol does not matter",
        [
            rule(
                "Deny OWA from X",
                0,
                AnyOfProtocols=["OutlookWebApp"],
                AnyOfClientIPAddressesOrRanges=["203.0.113.0/24"],
            )
        ],
        conn(P.IMAP4),
        Tri.YES,
        None,
    ),
    (
        "username wildcard pattern matches",
        [rule("Deny jeff", 0, UsernameMatchesAnyOfPatterns=["*jeff*"])],
        conn(usernames=("contoso.com\\jeff",)),
        Tri.NO,
        "Deny jeff",
    ),
    (
        "username exception exempts the admin",
        [
            rule(
                "Deny EAS",
                0,
                AnyOfProtocols=["ExchangeActiveSync"],
                ExceptUsernameMatchesAnyOfPatterns=["*admin*"],
            )
        ],
        conn(P.EAS, A.OAUTH, usernames=("contoso.com\\it-admin",)),
        Tri.YES,
        None,
    ),
    (
        "recipient filter Department -eq 'Sales' matches",
        [
            rule(
                "Deny Sales POP",
                0,
                AnyOfProtocols=["POP3"],
                UserRecipientFilter="Department -eq 'Sales'",
            )
        ],
        conn(P.POP3, attributes={"Department": "sales"}),
        Tri.NO,
        "Deny Sales POP",
    ),
    (
        "recipient filter does not match another department",
        [
            rule(
                "Deny Sales POP",
                0,
                AnyOfProtocols=["POP3"],
                UserRecipientFilter="Department -eq 'Sales'",
            )
        ],
        conn(P.POP3, attributes={"Department": "Finance"}),
        Tri.YES,
        None,
    ),
    (
        "recipient filter without the user's properties: cannot tell",
        [
            rule(
                "Deny Sales POP",
                0,
                AnyOfProtocols=["POP3"],
                UserRecipientFilter="Department -eq 'Sales'",
            )
        ],
        conn(P.POP3),
        Tri.UNKNOWN,
        None,
    ),
    (
        "recipient filter mailfix cannot parse: cannot tell",
        [rule("Odd filter", 0, UserRecipientFilter="MemberOfGroup -eq 'CN=x'")],
        conn(attributes={"Department": "Sales"}),
        Tri.UNKNOWN,
        None,
    ),
    (
        "middle tier (Outlook mobile) bypasses a Scope Users rule",
        [rule("Deny all users", 0, Scope="Users")],
        conn(P.REST, A.OAUTH, middle_tier=True),
        Tri.YES,
        None,
    ),
    (
        "Scope All covers the middle tier too",
        [rule("Deny all", 0, Scope="All")],
        conn(P.REST, A.OAUTH, middle_tier=True),
        Tri.NO,
        "Deny all",
    ),
    (
        "the safety rule for Remote PowerShell does not allow IMAP",
        [ALLOW_PS, rule("Deny everything else", 1)],
        conn(P.IMAP4),
        Tri.NO,
        "Deny everything else",
    ),
    (
        "auth type unknown for a rule on auth types: cannot tell",
        [
            rule(
                "Deny basic OWA",
                0,
                AnyOfProtocols=["OutlookWebApp"],
                AnyOfAuthenticationTypes=["BasicAuthentication"],
            )
        ],
        conn(P.OWA, None),
        Tri.UNKNOWN,
        None,
    ),
]


@pytest.mark.parametrize(
    ("rules", "connection", "allowed", "deciding"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_client_access_rules(
    rules: list[ClientAccessRule], connection: car.Connection, allowed: Tri, deciding: str | None
) -> None:
    verdict = car.evaluate(rules, connection)
    assert verdict.allowed is allowed
    assert (verdict.rule.label if verdict.rule else None) == deciding


def test_evaluation_stops_at_the_first_match() -> None:
    rules = [rule("First", 0, AnyOfProtocols=["IMAP4"]), rule("Second", 1), rule("Third", 2)]
    verdict = car.evaluate(rules, conn(P.IMAP4))
    assert [o.rule.label for o in verdict.outcomes] == ["First"]
    assert verdict.outcomes[0].result == "match"


def test_unknown_names_what_was_not_evaluated() -> None:
    rules = [
        rule("Deny outside office", 0, ExceptAnyOfClientIPAddressesOrRanges=["198.51.100.0/24"])
    ]
    verdict = car.evaluate(rules, conn())
    assert verdict.unknown == ["the IP address the app connects from"]
    assert [r.label for r in verdict.might_deny] == ["Deny outside office"]


def test_wire_shapes_single_string_and_bool_text() -> None:
    r = ClientAccessRule.model_validate(
        {
            "Name": "x",
            "Priority": "3",
            "Enabled": "False",
            "Action": "DenyAccess",
            "AnyOfProtocols": "POP3",
        }
    )
    assert (r.priority, r.enabled, r.any_of_protocols, r.denies) == (3, False, ["POP3"], True)


@pytest.mark.parametrize(
    ("text", "inside", "outside"),
    [
        ("192.0.2.1", "192.0.2.1", "192.0.2.2"),
        ("192.0.2.1-192.0.2.9", "192.0.2.9", "192.0.2.10"),
        ("10.0.0.0/8", "10.255.255.255", "11.0.0.0"),
        ("2001:db8::/32", "2001:db8:ffff::1", "2001:db9::1"),
        ("2001:db8::1-2001:db8::ff", "2001:db8::80", "2001:db8::100"),
    ],
)
def test_ip_spans(text: str, inside: str, outside: str) -> None:
    span = parse_span(text)
    assert ipaddress.ip_address(inside) in span
    assert ipaddress.ip_address(outside) not in span


def test_ipv4_mapped_ipv6_client_matches_ipv4_range() -> None:
    assert ipaddress.ip_address("::ffff:192.0.2.5") in parse_span("192.0.2.0/24")


@pytest.mark.parametrize("bad", ["192.0.2.9-192.0.2.1", "10.0.0.1-2001:db8::1", "not an ip"])
def test_bad_spans_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_span(bad)


@pytest.mark.parametrize(
    ("text", "attrs", "expected"),
    [
        ("Department -eq 'Sales'", {"Department": "Sales"}, Tri.YES),
        ("{Department -ne 'Sales'}", {"Department": "Sales"}, Tri.NO),
        ("City -like 'Lon*'", {"City": "London"}, Tri.YES),
        (
            "Department -eq 'Sales' -and City -eq 'Paris'",
            {"Department": "Sales", "City": "Rome"},
            Tri.NO,
        ),
        (
            "Department -eq 'Sales' -or City -eq 'Paris'",
            {"Department": "HR", "City": "Paris"},
            Tri.YES,
        ),
        ("-not (Office -eq 'HQ')", {"Office": "HQ"}, Tri.NO),
        ("CustomAttribute7 -eq 'vip'", {}, Tri.UNKNOWN),
        ("Company -eq $null", {"Company": None}, Tri.YES),
    ],
)
def test_opath_simple_filters(text: str, attrs: dict[str, str | None], expected: Tri) -> None:
    assert opath.evaluate(text, attrs) is expected


@pytest.mark.parametrize(
    "text", ["Department -gt 'A'", "Title -eq 'x'", "Department -eq", "(City -eq 'a'"]
)
def test_opath_refuses_what_it_does_not_know(text: str) -> None:
    with pytest.raises(opath.Unsupported):
        opath.evaluate(text, {"Department": "A", "City": "a"})
