"""tenant.client_access_rules and tenant.conditional_access over real HTTP against the sandbox
tenant (login, Graph v1.0 and beta What-If, the Exchange admin API on loopback, paging at 2).

Every status of both checks: skip (rules retired or none, no account), pass, fail, warn (a
policy or rule that depends on what mailfix cannot see), error (a missing permission); both
evaluators (Graph's What-If and mailfix's own), named in `evaluated_by`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from _checkworld import Probe, checked, scenario

from checks.models import Client, Finding, Status
from checks.modules.tenant import access
from sandbox.tenant.build import tenant_data
from sandbox.tenant.models import (
    MAILFIX_GRAPH_PERMISSIONS,
    ClientAccessRule,
    Group,
    Throttle,
    ca_policy,
    ip_location,
    stable_id,
)

CAR, CA = access.CLIENT_ACCESS_RULES, access.CONDITIONAL_ACCESS
ANA_ID = stable_id("user", "ana@contoso.com")
GRAPH = "https://graph.microsoft.com"
WHAT_IF = f"POST {GRAPH}/beta/identity/conditionalAccess/evaluate"

ALLOW_PS = ClientAccessRule(
    name="Always Allow Remote PowerShell",
    priority=0,
    action="AllowAccess",
    any_of_protocols=("RemotePowerShell",),
)
BLOCK_IMAP = ClientAccessRule(name="Block IMAP", priority=1, any_of_protocols=("IMAP4",))
BLOCK_LEGACY = ca_policy(
    "Block legacy authentication", client_app_types=("exchangeActiveSync", "other")
)
MFA_ALL = ca_policy("Require MFA for everyone", controls=("mfa",))


@asynccontextmanager
async def tenant(**fields: Any) -> AsyncIterator[Probe]:
    sc = scenario().model_copy(update={"tenant": tenant_data(**fields)})
    async with checked(sc) as probe:
        yield probe


def without(*permissions: str) -> dict[str, Any]:
    return {
        "graph_permissions": tuple(p for p in MAILFIX_GRAPH_PERMISSIONS if p not in permissions)
    }


async def run(
    probe: Probe,
    check: Any,
    client: Client = Client.ALL,
    *,
    symptom: str | None = None,
    address: str | None = None,
) -> Finding:
    ctx = dataclasses.replace(probe.context(client=client, address=address), symptom=symptom)
    ctx.deadline = time.monotonic() + 30
    finding = await probe.run(check, ctx=ctx)
    requests = finding.evidence["requests"]
    assert requests, "every tenant finding names the requests that decided it"
    assert all(r.startswith(("GET https://", "POST https://")) for r in requests), requests
    if finding.status is not Status.SKIP:
        assert "problem" in finding.evidence
    text = f"{finding.summary} {' '.join(finding.next_steps)}"
    assert "{" not in text and "conditions." not in text  # words, not JSON or field paths
    return finding


# --- tenant.client_access_rules ---------------------------------------------------------------


async def test_car_skip_when_the_cmdlet_is_retired() -> None:
    async with tenant() as probe:  # client_access_rules=None: Get-ClientAccessRule is gone
        f = await run(probe, CAR, Client.IMAP)
    assert f.status is Status.SKIP
    assert f.evidence["reason"] == "retired" and f.evidence["see"] == "tenant.conditional_access"
    assert "retired" in f.summary and "Conditional Access" in f.summary
    assert any("Get-ClientAccessRule" in r for r in f.evidence["requests"])


async def test_car_skip_when_the_tenant_has_none() -> None:
    async with tenant(client_access_rules=()) as probe:
        f = await run(probe, CAR, Client.IMAP)
    assert f.status is Status.SKIP and f.evidence["reason"] == "none"
    assert "no Client Access Rules" in f.summary


async def test_car_fail_names_the_rule_that_denies_imap() -> None:
    async with tenant(client_access_rules=(ALLOW_PS, BLOCK_IMAP)) as probe:
        f = await run(probe, CAR, Client.IMAP)
    assert f.status is Status.FAIL and f.evidence["problem"] == "car-denied"
    assert (f.evidence["rule"], f.evidence["priority"]) == ("Block IMAP", 1)
    assert f.evidence["protocol"] == "IMAP4" and f.evidence["certain"] is True
    assert f.summary == (
        "The Client Access Rule “Block IMAP” (priority 1) denies an IMAP app signing in with a "
        "password (legacy authentication) over IMAP4."
    )
    assert any("Test-ClientAccessRule" in s for s in f.next_steps)


async def test_car_pass_for_outlook_when_only_imap_is_denied() -> None:
    async with tenant(client_access_rules=(ALLOW_PS, BLOCK_IMAP)) as probe:
        f = await run(probe, CAR, Client.OUTLOOK)
    assert f.status is Status.PASS and f.evidence["problem"] is None
    assert {e["protocol"] for e in f.evidence["evaluated"]} == {
        "OutlookAnywhere",
        "ExchangeWebServices",
    }
    assert f.summary == (
        "No Client Access Rule denies Outlook for Windows over OutlookAnywhere and "
        "ExchangeWebServices; the tenant's enabled rules: “Always Allow Remote PowerShell” and "
        "“Block IMAP”."
    )


async def test_car_priority_order_an_earlier_allow_wins() -> None:
    allow_imap = ClientAccessRule(
        name="Allow IMAP", priority=0, action="AllowAccess", any_of_protocols=("IMAP4",)
    )
    block_all = ClientAccessRule(name="Block everything", priority=1)
    async with tenant(client_access_rules=(block_all, allow_imap)) as probe:
        f = await run(probe, CAR, Client.IMAP)
    assert f.status is Status.PASS
    assert "“Allow IMAP” (priority 0) allows an IMAP app" in f.summary


async def test_car_exception_exempts_and_the_next_rule_decides() -> None:
    rules = (
        ClientAccessRule(
            name="Block basic EAS",
            priority=0,
            any_of_protocols=("ExchangeActiveSync",),
            except_any_of_protocols=("ExchangeActiveSync",),
        ),
        ClientAccessRule(name="Block POP", priority=1, any_of_protocols=("POP3",)),
    )
    async with tenant(client_access_rules=rules) as probe:
        phone = await run(probe, CAR, Client.MOBILE)
        pop = await run(probe, CAR, Client.POP)
    assert phone.status is Status.PASS
    assert pop.status is Status.FAIL and pop.evidence["rule"] == "Block POP"


async def test_car_warn_when_an_address_exception_decides() -> None:
    rule = ClientAccessRule(
        name="Block outside the office",
        priority=1,
        except_any_of_client_ip_addresses_or_ranges=("198.51.100.0/24", "2001:db8:100::/48"),
    )
    async with tenant(client_access_rules=(ALLOW_PS, rule)) as probe:
        f = await run(probe, CAR, Client.IMAP)
    assert f.status is Status.WARN and f.evidence["problem"] == "car-denied"
    assert f.evidence["certain"] is False and f.evidence["rule"] == "Block outside the office"
    assert f.evidence["unevaluated"] == ["the IP address the app connects from"]
    assert "may deny" in f.summary and "cannot see" in f.summary


async def test_car_recipient_filter_it_cannot_read_is_not_guessed() -> None:
    # The sandbox's Get-User has no Department: the filter cannot be evaluated.
    rule = ClientAccessRule(
        name="Block POP for Sales",
        priority=0,
        any_of_protocols=("POP3",),
        user_recipient_filter="Department -eq 'Sales'",
    )
    async with tenant(client_access_rules=(rule,)) as probe:
        f = await run(probe, CAR, Client.POP)
    assert f.status is Status.WARN and f.evidence["certain"] is False
    assert f.evidence["unevaluated"] == ["the user's Department"]
    assert any("Get-User" in r for r in f.evidence["requests"])


async def test_car_outlook_mobile_bypasses_a_users_scoped_rule() -> None:
    rule = ClientAccessRule(name="Block all end users", priority=0, scope="Users")
    async with tenant(client_access_rules=(rule,)) as probe:
        outlook_app = await run(probe, CAR, Client.MOBILE, symptom="Outlook app on my iPhone")
        phone_mail = await run(probe, CAR, Client.MOBILE, symptom="iPhone mail app")
    assert outlook_app.status is Status.PASS
    assert (
        phone_mail.status is Status.FAIL and phone_mail.evidence["protocol"] == "ExchangeActiveSync"
    )


async def test_car_disabled_rule_is_skipped() -> None:
    rule = ClientAccessRule(
        name="Block IMAP (off)", priority=0, enabled=False, any_of_protocols=("IMAP4",)
    )
    async with tenant(client_access_rules=(rule,)) as probe:
        f = await run(probe, CAR, Client.IMAP)
    assert f.status is Status.PASS
    assert f.evidence["rules"] == [
        {"rule": "Block IMAP (off)", "priority": 0, "action": "DenyAccess", "enabled": False}
    ]


async def test_car_smtp_is_not_covered() -> None:
    async with tenant(client_access_rules=(ALLOW_PS, BLOCK_IMAP)) as probe:
        f = await run(probe, CAR, Client.SMTP)
    assert f.status is Status.PASS and "do not cover" in f.summary


async def test_car_error_without_exchange_manage_as_app() -> None:
    async with tenant(client_access_rules=(BLOCK_IMAP,), app={"exo_permissions": ()}) as probe:
        f = await run(probe, CAR, Client.IMAP)
    assert f.status is Status.ERROR and f.evidence["problem"] == "permission-missing"
    assert f.evidence["permission"] == "Exchange.ManageAsApp"
    assert "Exchange.ManageAsApp" in f.summary


async def test_car_error_without_an_exchange_role_is_not_mistaken_for_retirement() -> None:
    # Without an Entra role every cmdlet is "not recognized", as a retired one is: mailfix
    # tries another cmdlet before calling Client Access Rules retired.
    async with tenant(client_access_rules=(BLOCK_IMAP,), app={"directory_roles": ()}) as probe:
        f = await run(probe, CAR, Client.IMAP)
    assert f.status is Status.ERROR and f.evidence["problem"] == "permission-missing"
    assert f.evidence["permission"] == "Global Reader"


# --- tenant.conditional_access ----------------------------------------------------------------


async def test_ca_pass_without_policies_by_what_if() -> None:
    async with tenant() as probe:
        f = await run(probe, CA, Client.OUTLOOK)
    assert f.status is Status.PASS and f.evidence["problem"] is None
    assert f.evidence["evaluated_by"] == "what-if"
    assert f.evidence["requests"][-1] == WHAT_IF
    assert f.summary == (
        "No enabled Conditional Access policy blocks Outlook for Windows for this person."
    )


async def test_ca_fail_block_legacy_for_imap() -> None:
    async with tenant(ca_policies=(BLOCK_LEGACY,)) as probe:
        f = await run(probe, CA, Client.IMAP)
    assert f.status is Status.FAIL and f.evidence["problem"] == "ca-blocked"
    assert f.evidence["policy"] == "Block legacy authentication"
    assert f.evidence["policy_id"] == BLOCK_LEGACY["id"]
    assert f.evidence["client_app_type"] == "other"
    assert f.evidence["evaluated_by"] == "what-if"
    assert "blocks an IMAP app signing in with a password" in f.summary
    assert f.next_steps[0].startswith(
        "You: your organisation's policy blocks this kind of app: it signs in with a password"
    )


async def test_ca_fail_block_legacy_for_the_phone_mail_app_by_mailfix() -> None:
    async with tenant(ca_policies=(BLOCK_LEGACY,), what_if=False) as probe:
        f = await run(probe, CA, Client.MOBILE)
    assert f.status is Status.FAIL and f.evidence["problem"] == "ca-blocked"
    assert f.evidence["evaluated_by"] == "mailfix"
    assert f.evidence["client_app_type"] == "exchangeActiveSync"
    requests = f.evidence["requests"]
    assert WHAT_IF in requests  # tried first, refused with 400
    assert f"GET {GRAPH}/v1.0/identity/conditionalAccess/policies" in requests


async def test_ca_block_legacy_leaves_outlook_and_modern_imap_alone() -> None:
    async with tenant(ca_policies=(BLOCK_LEGACY,)) as probe:
        outlook = await run(probe, CA, Client.OUTLOOK)
        modern = await run(
            probe, CA, Client.IMAP, symptom="Thunderbird shows a Microsoft sign-in page"
        )
    assert outlook.status is Status.PASS
    assert modern.status is Status.PASS
    assert modern.evidence["client_app_type"] == "mobileAppsAndDesktopClients"


async def test_ca_fail_mfa_that_legacy_imap_can_never_do() -> None:
    async with tenant(ca_policies=(MFA_ALL,)) as probe:
        f = await run(probe, CA, Client.IMAP)
    assert f.status is Status.FAIL and f.evidence["problem"] == "ca-control-unmet"
    assert (f.evidence["control"], f.evidence["can_satisfy"]) == ("mfa", "never")
    assert "requires multifactor authentication (MFA)" in f.summary
    assert "can never do multifactor authentication" in f.detail


async def test_ca_warn_mfa_that_outlook_can_do() -> None:
    async with tenant(ca_policies=(MFA_ALL,)) as probe:
        f = await run(probe, CA, Client.OUTLOOK)
    assert f.status is Status.WARN and f.evidence["problem"] == "ca-requires-control"
    assert (f.evidence["control"], f.evidence["can_satisfy"]) == ("mfa", "yes")
    assert f.evidence["legacy_can_satisfy"] is False
    assert "legacy authentication cannot do multifactor authentication" in f.detail
    assert "aka.ms/mysecurityinfo" in f.next_steps[0]


async def test_ca_report_only_never_blocks() -> None:
    report_only = ca_policy(
        "Block legacy authentication (report-only)",
        state="enabledForReportingButNotEnforced",
        client_app_types=("exchangeActiveSync", "other"),
    )
    async with tenant(ca_policies=(report_only,)) as probe:
        f = await run(probe, CA, Client.IMAP)
    assert f.status is Status.PASS
    assert f.evidence["report_only"] == ["Block legacy authentication (report-only)"]


def _nested_exemption() -> tuple[dict[str, Any], tuple[Group, ...]]:
    exempt = Group(
        id=stable_id("group", "legacy-exempt"),
        display_name="Legacy auth exemptions",
        members=(stable_id("group", "scanners"),),
    )
    scanners = Group(
        id=stable_id("group", "scanners"), display_name="Scanner accounts", members=(ANA_ID,)
    )
    policy = ca_policy(
        "Block legacy authentication (with exemptions)",
        client_app_types=("exchangeActiveSync", "other"),
        exclude_groups=(exempt.id,),
    )
    return policy, (exempt, scanners)


async def test_ca_nested_group_exclusion_beats_all_users_both_evaluators() -> None:
    policy, groups = _nested_exemption()
    async with tenant(ca_policies=(policy,), groups=groups) as probe:
        by_graph = await run(probe, CA, Client.IMAP)
    async with tenant(ca_policies=(policy,), groups=groups, what_if=False) as probe:
        by_mailfix = await run(probe, CA, Client.IMAP)
    assert (by_graph.status, by_graph.evidence["evaluated_by"]) == (Status.PASS, "what-if")
    assert (by_mailfix.status, by_mailfix.evidence["evaluated_by"]) == (Status.PASS, "mailfix")
    assert any(
        r.startswith(f"GET {GRAPH}/v1.0/users/{ANA_ID}/transitiveMemberOf")
        for r in by_mailfix.evidence["requests"]
    )


async def test_ca_error_when_groups_decide_and_cannot_be_read() -> None:
    policy, groups = _nested_exemption()
    app = without("GroupMember.Read.All", "Directory.Read.All")
    async with tenant(ca_policies=(policy,), groups=groups, what_if=False, app=app) as probe:
        f = await run(probe, CA, Client.IMAP)
    assert f.status is Status.ERROR and f.evidence["problem"] == "permission-missing"
    assert f.evidence["permission"] == "GroupMember.Read.All"


async def test_ca_warn_when_the_policy_depends_on_the_person_s_address() -> None:
    office = ip_location("Head office", "198.51.100.0/24", "2001:db8:100::/48")
    policy = ca_policy(
        "Block access from outside the office",
        include_locations=("All",),
        exclude_locations=(office["id"],),
    )
    async with tenant(ca_policies=(policy,), named_locations=(office,)) as probe:
        by_graph = await run(probe, CA, Client.IMAP)
    async with tenant(ca_policies=(policy,), named_locations=(office,), what_if=False) as probe:
        by_mailfix = await run(probe, CA, Client.IMAP)
    for f in (by_graph, by_mailfix):
        assert f.status is Status.WARN and f.evidence["problem"] == "ca-blocked"
        assert f.evidence["certain"] is False
        assert f.evidence["policy"] == "Block access from outside the office"
        assert f.evidence["unevaluated"] == ["the IP address the person connects from"]
        assert "may block" in f.summary
        # Where the person connects from decides, not the kind of app.
        assert f.next_steps[0].startswith("You: your organisation allows this only from")
    assert any("namedLocations" in r for r in by_mailfix.evidence["requests"])


async def test_ca_compliant_phone_the_activesync_app_cannot_prove() -> None:
    compliant = ca_policy(
        "Phones must be compliant",
        client_app_types=("mobileAppsAndDesktopClients", "exchangeActiveSync"),
        include_platforms=("iOS", "android"),
        controls=("compliantDevice",),
    )
    async with tenant(ca_policies=(compliant,)) as probe:
        unknown_phone = await run(probe, CA, Client.MOBILE)
        iphone = await run(probe, CA, Client.MOBILE, symptom="the mail app on my iPhone")
        outlook = await run(probe, CA, Client.MOBILE, symptom="Outlook on my iPhone")
    # Which phone is unknown: the policy may apply (iOS and Android only).
    assert unknown_phone.status is Status.WARN
    assert unknown_phone.evidence["unevaluated"] == ["the device's operating system"]
    # An iPhone's built-in ActiveSync app cannot pass device state: never compliant.
    assert iphone.status is Status.FAIL and iphone.evidence["control"] == "compliantDevice"
    assert iphone.evidence["platform"] == "iOS"
    # Outlook on a managed iPhone can be compliant: something to check, not a block.
    assert outlook.status is Status.WARN
    assert outlook.evidence["problem"] == "ca-requires-control"
    assert outlook.evidence["can_satisfy"] == "depends"


async def test_ca_client_all_reports_the_app_that_fares_worst() -> None:
    async with tenant(ca_policies=(MFA_ALL,)) as probe:
        f = await run(probe, CA, Client.ALL)
    assert f.status is Status.FAIL and f.evidence["problem"] == "ca-control-unmet"
    assert f.evidence["app"] == "the phone's built-in mail app (Exchange ActiveSync)"
    assert [a["outcome"] for a in f.evidence["apps"]] == [
        "requires-control",
        "control-unmet",
        "control-unmet",
        "requires-control",
    ]


async def test_ca_falls_back_to_mailfix_without_the_what_if_permission() -> None:
    app = without("Policy.Read.ConditionalAccess", "Policy.Read.All")
    async with tenant(ca_policies=(BLOCK_LEGACY,), app=app) as probe:
        f = await run(probe, CA, Client.IMAP)
    # Neither What-If nor the policies can be read: name the permission to grant.
    assert f.status is Status.ERROR and f.evidence["problem"] == "permission-missing"
    assert f.evidence["permission"] == "Policy.Read.All"
    assert "Policy.Read.All" in f.summary


async def test_ca_what_if_also_runs_on_policy_read_all() -> None:
    app = without("Policy.Read.ConditionalAccess")
    fields = {"graph_permissions": (*app["graph_permissions"],)}
    # Policy.Read.All also allows What-If, so the sandbox answers it: evaluated by Graph.
    async with tenant(ca_policies=(BLOCK_LEGACY,), app=fields) as probe:
        f = await run(probe, CA, Client.IMAP)
    assert f.status is Status.FAIL and f.evidence["evaluated_by"] == "what-if"


async def test_ca_skip_without_an_account() -> None:
    async with tenant(ca_policies=(BLOCK_LEGACY,)) as probe:
        f = await run(probe, CA, Client.IMAP, address="nobody@contoso.com")
    assert f.status is Status.SKIP and f.evidence["see"] == "tenant.account"


async def test_throttled_past_retries_is_an_error_not_a_verdict() -> None:
    throttles = (
        Throttle(service="graph", path="conditionalaccess", times=-1, retry_after=0),
        Throttle(service="exo", path="get-clientaccessrule", times=-1, retry_after=0),
    )
    async with tenant(
        ca_policies=(BLOCK_LEGACY,), client_access_rules=(BLOCK_IMAP,), throttles=throttles
    ) as probe:
        ca_finding = await run(probe, CA, Client.IMAP)
        car_finding = await run(probe, CAR, Client.IMAP)
    for f in (ca_finding, car_finding):
        assert f.status is Status.ERROR and f.evidence["problem"] == "tenant-unavailable"


async def test_throttled_once_then_answered() -> None:
    throttles = (
        Throttle(service="graph", path="conditionalaccess/evaluate", times=1, retry_after=0),
    )
    async with tenant(ca_policies=(BLOCK_LEGACY,), throttles=throttles) as probe:
        f = await run(probe, CA, Client.IMAP)
    assert f.status is Status.FAIL and f.evidence["evaluated_by"] == "what-if"
