"""rank_causes with the tenant checks: a diagnosis that claims only what it checked (issue 6).

Synthetic findings in the shapes the Findings contract fixes (status plus `evidence["problem"]`
and the keys the rules read). Each row: what changes in a healthy world, the client, and the
cause that must lead.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checks.diagnosis import (
    CAUSES,
    DEVICE_HIGH,
    DEVICE_OR_APP,
    DEVICE_UNCHECKED,
    not_checked,
    rank_causes,
)
from checks.models import Cause, Client, Finding, Side, Status
from checks.registry import CATALOGUE_IDS
from checks.symptoms import Symptom

P, W, F, E, S = Status.PASS, Status.WARN, Status.FAIL, Status.ERROR, Status.SKIP
TENANT = (
    "tenant.account",
    "tenant.client_access_rules",
    "tenant.conditional_access",
    "tenant.devices",
    "tenant.license",
    "tenant.mailbox",
    "tenant.service_health",
    "tenant.signins",
)
NETWORK: dict[Client, tuple[str, ...]] = {
    Client.OUTLOOK: (
        "dns.mx",
        "dns.autodiscover",
        "dns.spf",
        "autodiscover.v1",
        "autodiscover.v2",
        "net.https",
        "realm.federation",
    ),
    Client.MOBILE: (
        "dns.autodiscover",
        "autodiscover.v2",
        "net.https",
        "activesync.endpoint",
        "realm.federation",
    ),
    Client.IMAP: ("net.imap", "realm.federation"),
    Client.POP: ("net.pop", "realm.federation"),
    Client.SMTP: ("net.smtp", "realm.federation"),
    Client.WEB: ("net.https", "realm.federation"),
}


def f(check: str, status: Status, **evidence: Any) -> Finding:
    if check.startswith("tenant.") and status is not S:
        evidence.setdefault("requests", [f"GET https://graph.microsoft.com/v1.0/{check}"])
    return Finding(check=check, status=status, summary=f"{check} {status}.", evidence=evidence)


def healthy(client: Client, *, tenant: bool = True) -> list[Finding]:
    """Every network check this client runs passes; the tenant checks passed (or were skipped
    by the runner for lack of settings: no evidence)."""
    out = [f(check, P) for check in NETWORK[client]]
    for check in TENANT:
        if check == "tenant.devices" and client is not Client.MOBILE:
            out.append(f(check, S))  # does not apply to this client
        else:
            out.append(f(check, P, problem=None) if tenant else f(check, S))
    return out


def world(client: Client, *changes: Finding, tenant: bool = True) -> list[Finding]:
    by_id = {x.check: x for x in healthy(client, tenant=tenant)}
    for change in changes:
        by_id[change.check] = change
    return list(by_id.values())


def ids(causes: list[Cause]) -> list[str]:
    return [c.id for c in causes]


def conf(causes: list[Cause], cause_id: str) -> float:
    return next(c.confidence for c in causes if c.id == cause_id)


NO_USER_SKIPS = (
    f("tenant.license", S, requests=["GET …/users?$filter=…"]),
    f("tenant.conditional_access", S, requests=["GET …/users?$filter=…"]),
    f("tenant.signins", S, requests=["GET …/users?$filter=…"]),
)
NO_PLAN = f(
    "tenant.license", F, problem="no-exchange-plan", skus=["O365_BUSINESS"], exchange_plan=None
)
NO_MAILBOX_BECAUSE = f(
    "tenant.mailbox",
    F,
    problem="no-mailbox",
    because="no-exchange-plan",
    licence_problem="no-exchange-plan",
)


def signins(code: int, status: Status = F, **extra: Any) -> Finding:
    failure = {"when": "2026-12-02T08:00:00Z", "code": code, "app": "Office 365 Exchange Online"}
    return f(
        "tenant.signins",
        status,
        problem="signin-failures",
        failures=[failure],
        top_code=code,
        still_failing=status is F,
        **extra,
    )


def ca(status: Status, problem: str, control: str | None = None, **extra: Any) -> Finding:
    evidence: dict[str, Any] = {"problem": problem, "policy": "Require MFA", "policy_id": "p1"}
    if control is not None:
        evidence["control"] = control
    return f("tenant.conditional_access", status, evaluated_by="mailfix", **evidence, **extra)


# (name, client, changes, top cause)
TENANT_FAULTS: list[tuple[str, Client, tuple[Finding, ...], str]] = [
    (
        "no account owns the address",
        Client.OUTLOOK,
        (f("tenant.account", F, problem="account-not-found"), *NO_USER_SKIPS),
        "account-not-found",
    ),
    (
        "account soft-deleted",
        Client.MOBILE,
        (f("tenant.account", F, problem="account-soft-deleted", days_left=21), *NO_USER_SKIPS),
        "account-deleted",
    ),
    (
        "account disabled",
        Client.OUTLOOK,
        (f("tenant.account", F, problem="account-disabled", synced_from_on_premises=False),),
        "account-disabled",
    ),
    ("no Exchange plan", Client.OUTLOOK, (NO_PLAN, NO_MAILBOX_BECAUSE), "no-exchange-licence"),
    (
        "a SKU with no mailbox (Microsoft 365 Apps)",
        Client.IMAP,
        (f("tenant.license", F, problem="sku-without-mailbox", skus=["O365_BUSINESS"]),),
        "no-exchange-licence",
    ),
    (
        "Exchange plan switched off",
        Client.MOBILE,
        (
            f(
                "tenant.license",
                F,
                problem="exchange-plan-disabled",
                provisioning_status="Disabled",
            ),
            f(
                "tenant.mailbox",
                F,
                problem="no-mailbox",
                because="no-exchange-plan",
                licence_problem="exchange-plan-disabled",
            ),
        ),
        "exchange-plan-disabled",
    ),
    (
        "Exchange plan still provisioning",
        Client.OUTLOOK,
        (f("tenant.license", F, problem="exchange-plan-pending"),),
        "exchange-plan-pending",
    ),
    (
        "no mailbox although the licence is right",
        Client.WEB,
        (f("tenant.mailbox", F, problem="no-mailbox"),),
        "no-mailbox",
    ),
    (
        "ActiveSync off for the mailbox",
        Client.MOBILE,
        (f("tenant.mailbox", F, problem="protocol-disabled", protocols_off=["ActiveSync"]),),
        "protocol-disabled",
    ),
    (
        "IMAP off for the mailbox",
        Client.IMAP,
        (f("tenant.mailbox", F, problem="protocol-disabled", protocols_off=["Imap"]),),
        "protocol-disabled",
    ),
    (
        "SMTP AUTH off",
        Client.SMTP,
        (
            f(
                "tenant.mailbox",
                F,
                problem="smtp-auth-disabled",
                org_default=True,
                mailbox_setting=None,
            ),
        ),
        "smtp-auth-disabled",
    ),
    (
        "phone quarantined",
        Client.MOBILE,
        (
            f(
                "tenant.devices",
                F,
                problem="device-quarantined",
                devices=[{"name": "iPhone", "state": "Quarantined", "reason": "Global"}],
                default_access_level="Quarantine",
                matched_rule=None,
            ),
        ),
        "device-quarantined",
    ),
    (
        "phone blocked by a device rule",
        Client.MOBILE,
        (f("tenant.devices", F, problem="device-blocked", matched_rule="Block Android"),),
        "device-blocked",
    ),
    (
        "a Client Access Rule denies IMAP",
        Client.IMAP,
        (f("tenant.client_access_rules", F, problem="car-denied", rule="No IMAP", priority=0),),
        "client-access-rule",
    ),
    (
        "Conditional Access blocks legacy authentication",
        Client.IMAP,
        (ca(F, "ca-blocked", "block"),),
        "conditional-access-block",
    ),
    (
        "Conditional Access wants MFA a password app cannot do",
        Client.POP,
        (ca(F, "ca-control-unmet", "mfa"),),
        "conditional-access-mfa",
    ),
    (
        "Conditional Access wants a compliant phone",
        Client.MOBILE,
        (ca(F, "ca-control-unmet", "compliantDevice"),),
        "conditional-access-device",
    ),
    (
        "Conditional Access wants an approved app",
        Client.MOBILE,
        (ca(F, "ca-control-unmet", "approvedApplication"),),
        "conditional-access-device",
    ),
    ("sign-ins fail: wrong password", Client.IMAP, (signins(50126),), "sign-in-wrong-password"),
    (
        "open Exchange Online incident",
        Client.OUTLOOK,
        (
            f(
                "tenant.service_health",
                F,
                problem="service-incident",
                issues=[{"id": "EX123456", "classification": "incident"}],
            ),
        ),
        "service-incident",
    ),
]


@pytest.mark.parametrize(
    ("client", "changes", "top"),
    [pytest.param(c, ch, t, id=name) for name, c, ch, t in TENANT_FAULTS],
)
def test_a_tenant_fault_leads_and_the_device_is_low(
    client: Client, changes: tuple[Finding, ...], top: str
) -> None:
    causes = rank_causes(world(client, *changes), client, None)
    assert causes[0].id == top, [(c.id, c.confidence) for c in causes]
    assert causes[0].side is CAUSES[top].side and causes[0].title == CAUSES[top].title
    assert conf(causes, DEVICE_OR_APP) <= 0.1 < causes[0].confidence
    assert causes[0].confidence >= 0.85
    assert set(causes[0].checks) <= {x.check for x in changes}


def test_every_new_tenant_cause_is_reachable() -> None:
    """Each tenant cause id of the contract (PLAN "New cause ids") is the top of some row."""
    wanted = {
        "account-not-found",
        "account-deleted",
        "account-disabled",
        "no-exchange-licence",
        "exchange-plan-disabled",
        "exchange-plan-pending",
        "no-mailbox",
        "protocol-disabled",
        "smtp-auth-disabled",
        "device-quarantined",
        "device-blocked",
        "client-access-rule",
        "conditional-access-block",
        "conditional-access-mfa",
        "conditional-access-device",
        "sign-in-wrong-password",
        "service-incident",
    }
    assert wanted <= {top for *_, top in TENANT_FAULTS}
    assert wanted | {"account-sync-error", "account-locked", "password-expired"} <= set(CAUSES)
    assert "tenant-permission-missing" in CAUSES


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        (50126, "sign-in-wrong-password"),
        (50053, "account-locked"),
        (50057, "account-disabled"),
        (53003, "conditional-access-block"),
        (53000, "conditional-access-device"),
        (53001, "conditional-access-device"),
        (53002, "conditional-access-device"),
        (50076, "conditional-access-mfa"),
        (50079, "conditional-access-mfa"),
        (50074, "conditional-access-mfa"),
        (50055, "password-expired"),
        (50144, "password-expired"),
    ],
)
def test_sign_in_codes_name_their_cause(code: int, cause: str) -> None:
    # reference §5.4, AADSTS table.
    causes = rank_causes(world(Client.OUTLOOK, signins(code)), Client.OUTLOOK, None)
    assert causes[0].id == cause and causes[0].checks == ["tenant.signins"]
    assert conf(causes, DEVICE_OR_APP) <= 0.1


def test_wrong_password_is_on_the_persons_side() -> None:
    assert CAUSES["sign-in-wrong-password"].side is Side.DEVICE
    for cause in ("account-disabled", "no-exchange-licence", "protocol-disabled"):
        assert CAUSES[cause].side is Side.ADMIN
    assert CAUSES["tenant-permission-missing"].side is Side.ADMIN


def test_sign_in_codes_corroborate_the_tenant_fact() -> None:
    findings = world(
        Client.OUTLOOK, f("tenant.account", F, problem="account-disabled"), signins(50057)
    )
    causes = rank_causes(findings, Client.OUTLOOK, None)
    assert causes[0].id == "account-disabled"
    assert causes[0].checks == ["tenant.account", "tenant.signins"]


def test_an_unknown_sign_in_code_still_rules_out_the_device() -> None:
    causes = rank_causes(world(Client.OUTLOOK, signins(50158)), Client.OUTLOOK, None)
    assert ids(causes) == [DEVICE_OR_APP] and causes[0].confidence <= 0.1


def test_earlier_sign_in_failures_do_not_stand_in_the_way() -> None:
    # The latest sign-in succeeded (warn): listed, below the device.
    causes = rank_causes(world(Client.MOBILE, signins(50126, W)), Client.MOBILE, None)
    assert ids(causes)[:2] == [DEVICE_OR_APP, "sign-in-wrong-password"]


# ---- the licence first ----------------------------------------------------------------------


def test_the_licence_ranks_first_when_it_is_why_the_mailbox_is_missing() -> None:
    causes = rank_causes(world(Client.OUTLOOK, NO_PLAN, NO_MAILBOX_BECAUSE), Client.OUTLOOK, None)
    assert ids(causes)[:2] == ["no-exchange-licence", "no-mailbox"]
    assert causes[0].checks == ["tenant.license", "tenant.mailbox"]


def test_the_licence_ranks_first_from_the_mailbox_finding_alone() -> None:
    # The licence check could not read (permission missing), the mailbox check could.
    unread = f(
        "tenant.license",
        E,
        problem="permission-missing",
        permission="LicenseAssignment.Read.All",
        grant_where="Microsoft Graph application permission",
    )
    causes = rank_causes(world(Client.MOBILE, unread, NO_MAILBOX_BECAUSE), Client.MOBILE, None)
    assert ids(causes)[0] == "no-exchange-licence"
    assert ids(causes).index("no-mailbox") < ids(causes).index("tenant-permission-missing")


@pytest.mark.parametrize(
    "other",
    [
        f("tenant.account", F, problem="account-disabled"),
        f("tenant.mailbox", F, problem="protocol-disabled", protocols_off=["Mapi"]),
        ca(F, "ca-blocked", "block"),
        signins(50126),
    ],
)
def test_the_licence_outranks_other_admin_faults(other: Finding) -> None:
    findings = world(Client.OUTLOOK, other, NO_PLAN)
    assert rank_causes(findings, Client.OUTLOOK, None)[0].id == "no-exchange-licence"


def test_a_licence_alone_without_the_mailbox_finding_still_leads() -> None:
    causes = rank_causes(world(Client.POP, NO_PLAN), Client.POP, None)
    assert causes[0].id == "no-exchange-licence" and causes[0].confidence >= 0.95


# ---- definitive tenant facts outrank network inferences ------------------------------------

NETWORK_SUSPECTS = (
    f("net.https", F, problem="tls-inspection"),
    f("dns.autodiscover", F, problem="autodiscover-dns-missing"),
    f("autodiscover.v1", F, pox_error=None, microsoft_certificate_problems=[]),
    f("realm.federation", F, problem="adfs-unreachable"),
)


@pytest.mark.parametrize(
    ("client", "changes", "top"),
    [pytest.param(c, ch, t, id=name) for name, c, ch, t in TENANT_FAULTS],
)
@pytest.mark.parametrize("symptom", [None, *Symptom])
def test_definitive_tenant_facts_outrank_network_inferences(
    client: Client, changes: tuple[Finding, ...], top: str, symptom: Symptom | None
) -> None:
    findings = world(client, *NETWORK_SUSPECTS, *changes)
    causes = rank_causes(findings, client, symptom)
    network = {"tls-inspection", "autodiscover-dns-missing", "adfs-unreachable", "exo-unreachable"}
    assert causes[0].id == top, [(c.id, c.confidence) for c in causes]
    for c in causes:
        if c.id in network:
            assert c.confidence < causes[0].confidence


# ---- warnings that stand in the way; the device; what was not checked ----------------------


def test_no_tenant_settings_caps_the_device_and_lists_what_was_not_checked() -> None:
    for client in (Client.OUTLOOK, Client.MOBILE, Client.IMAP):
        findings = world(client, tenant=False)
        causes = rank_causes(findings, client, None)
        assert ids(causes) == [DEVICE_OR_APP]
        assert causes[0].confidence == pytest.approx(DEVICE_UNCHECKED)
        skipped = not_checked(findings, client)
        expected = [c for c in TENANT if c != "tenant.devices" or client is Client.MOBILE]
        assert sorted(skipped) == sorted(expected)
        # With them, the device is back to the playbook's figure and nothing is unchecked.
        ran = world(client)
        assert rank_causes(ran, client, None)[0].confidence == pytest.approx(DEVICE_HIGH)
        assert not_checked(ran, client) == []


def test_not_checked_lists_errors_but_not_a_checks_own_skip() -> None:
    findings = world(
        Client.OUTLOOK,
        f("tenant.client_access_rules", S, reason="retired", see="tenant.conditional_access"),
        f("tenant.signins", E, problem="tenant-unavailable"),
        f("dns.mx", E, problem="dns-timeout"),
    )
    assert not_checked(findings, Client.OUTLOOK) == ["dns.mx", "tenant.signins"]


def test_a_tenant_check_that_could_not_read_caps_the_device_but_is_not_a_fault() -> None:
    findings = world(Client.MOBILE, f("tenant.service_health", E, problem="tenant-unavailable"))
    causes = rank_causes(findings, Client.MOBILE, None)
    assert ids(causes) == [DEVICE_OR_APP]
    assert causes[0].confidence == pytest.approx(DEVICE_UNCHECKED)


def test_root_hijack_stands_in_outlooks_way_even_without_the_tenant() -> None:
    hijack = f("autodiscover.v1", W, root_domain_hijack=True, customer_certificate_problems=[])
    for tenant in (True, False):
        causes = rank_causes(world(Client.OUTLOOK, hijack, tenant=tenant), Client.OUTLOOK, None)
        assert ids(causes)[:2] == ["autodiscover-root-hijack", DEVICE_OR_APP]
        assert conf(causes, DEVICE_OR_APP) <= 0.6
    # With every client at once (Outlook among them) it stands in the way too.
    causes = rank_causes(world(Client.OUTLOOK, hijack), Client.ALL, None)
    assert causes[0].id == "autodiscover-root-hijack"


def test_a_customer_hosts_bad_certificate_leaves_the_device_on_top() -> None:
    bad = f(
        "autodiscover.v1",
        W,
        root_domain_hijack=False,
        customer_certificate_problems=[{"host": "contoso.com", "reason": "expired"}],
    )
    causes = rank_causes(world(Client.OUTLOOK, bad), Client.OUTLOOK, None)
    assert ids(causes)[:2] == [DEVICE_OR_APP, "autodiscover-bad-certificate"]


@pytest.mark.parametrize("client", [Client.OUTLOOK, Client.MOBILE, Client.IMAP, Client.WEB])
def test_a_mailbox_on_premises_stands_in_the_way(client: Client) -> None:
    onprem = f("tenant.mailbox", W, problem="mailbox-on-premises", recipient_type="RemoteMailbox")
    causes = rank_causes(world(client, onprem), client, None)
    assert ids(causes)[:2] == ["hybrid-mailbox-on-premises", DEVICE_OR_APP]
    assert causes[0].checks == ["tenant.mailbox"]


@pytest.mark.parametrize(
    ("change", "cause"),
    [
        (ca(W, "ca-blocked", "block", certain=False), "conditional-access-block"),
        (ca(W, "ca-control-unmet", "compliantDevice", certain=False), "conditional-access-device"),
        (
            f("tenant.client_access_rules", W, problem="car-denied", rule="Office only"),
            "client-access-rule",
        ),
    ],
)
def test_a_policy_that_may_block_leads_but_below_definitive_faults(
    change: Finding, cause: str
) -> None:
    causes = rank_causes(world(Client.MOBILE, change), Client.MOBILE, None)
    assert ids(causes)[:2] == [cause, DEVICE_OR_APP]
    quarantined = f("tenant.devices", F, problem="device-quarantined")
    both = rank_causes(world(Client.MOBILE, change, quarantined), Client.MOBILE, None)
    assert ids(both)[0] == "device-quarantined"
    assert conf(both, cause) < conf(both, "device-quarantined")


@pytest.mark.parametrize(
    ("change", "below"),
    [
        (ca(W, "ca-requires-control", "mfa", can_satisfy="yes"), "conditional-access-mfa"),
        (
            f("tenant.account", W, problem="sync-provisioning-error", errors=["proxy"]),
            "account-sync-error",
        ),
        (f("tenant.service_health", W, problem="service-advisory"), "service-incident"),
    ],
)
def test_warnings_that_do_not_stand_in_the_way_are_listed_below_the_device(
    change: Finding, below: str
) -> None:
    causes = rank_causes(world(Client.OUTLOOK, change), Client.OUTLOOK, None)
    assert ids(causes)[:2] == [DEVICE_OR_APP, below]
    assert causes[0].confidence == pytest.approx(DEVICE_HIGH)


def test_report_only_conditional_access_is_never_a_cause() -> None:
    report_only = f(
        "tenant.conditional_access",
        P,
        problem=None,
        report_only=["Block legacy authentication (report-only)"],
        evaluated_by="mailfix",
    )
    for client in (Client.IMAP, Client.MOBILE, Client.OUTLOOK):
        causes = rank_causes(world(client, report_only), client, None)
        assert ids(causes) == [DEVICE_OR_APP]
        assert causes[0].confidence == pytest.approx(DEVICE_HIGH)


# ---- faults that cannot explain the complaint today ------------------------------------------


@pytest.mark.parametrize(
    ("later", "cause"),
    [
        (f("dns.spf", F, problem="spf-multiple"), "spf-problem"),
        (
            f("realm.federation", W, problem="adfs-token-signing-expiring"),
            "adfs-token-signing-expiring",
        ),
    ],
)
def test_a_fault_for_later_is_listed_below_the_device_even_when_something_fails(
    later: Finding, cause: str
) -> None:
    off = f("tenant.mailbox", F, problem="protocol-disabled", protocols_off=["Mapi"])
    causes = rank_causes(world(Client.OUTLOOK, later, off), Client.OUTLOOK, None)
    assert ids(causes)[0] == "protocol-disabled"
    assert ids(causes).index(cause) > ids(causes).index(DEVICE_OR_APP)
    alone = rank_causes(world(Client.OUTLOOK, later), Client.OUTLOOK, None)
    assert ids(alone)[:2] == [DEVICE_OR_APP, cause]


# ---- a missing permission -------------------------------------------------------------------


def _missing(check: str) -> Finding:
    return f(
        check,
        E,
        problem="permission-missing",
        permission="AuditLog.Read.All",
        grant_where="Microsoft Graph application permission, admin consent",
    )


def test_a_missing_permission_is_a_cause_for_the_helpdesk_below_the_device() -> None:
    findings = world(Client.OUTLOOK, _missing("tenant.signins"))
    causes = rank_causes(findings, Client.OUTLOOK, None)
    assert ids(causes) == [DEVICE_OR_APP, "tenant-permission-missing"]
    assert causes[0].confidence == pytest.approx(DEVICE_UNCHECKED)
    assert causes[1].checks == ["tenant.signins"] and causes[1].side is Side.ADMIN
    assert not_checked(findings, Client.OUTLOOK) == ["tenant.signins"]


@pytest.mark.parametrize(
    ("client", "changes", "top"),
    [pytest.param(c, ch, t, id=name) for name, c, ch, t in TENANT_FAULTS],
)
def test_a_missing_permission_never_outranks_a_definitive_fault(
    client: Client, changes: tuple[Finding, ...], top: str
) -> None:
    changed = {x.check for x in changes}
    missing = [_missing(c) for c in TENANT if c not in changed and c != "tenant.devices"][:2]
    causes = rank_causes(world(client, *missing, *changes), client, None)
    assert causes[0].id == top
    assert conf(causes, "tenant-permission-missing") < causes[0].confidence


def test_a_missing_permission_stays_below_a_fault_another_cause_explains() -> None:
    # The domain does not exist: every other cause is pushed down, the account one too; the
    # missing permission still stays below it.
    findings = world(
        Client.OUTLOOK,
        f("dns.mx", F, problem="domain-not-found"),
        f("tenant.account", F, problem="account-not-found"),
        _missing("tenant.signins"),
    )
    causes = rank_causes(findings, Client.OUTLOOK, None)
    assert causes[0].id == "domain-not-found"
    assert conf(causes, "tenant-permission-missing") < conf(causes, "account-not-found")


_FAULT_CHANGES = [changes for _, _, changes, _ in TENANT_FAULTS]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(range(len(_FAULT_CHANGES))), max_size=4, unique=True),
    st.lists(st.sampled_from(TENANT), max_size=3, unique=True),
    st.sampled_from(list(Client)),
    st.none() | st.sampled_from(list(Symptom)),
)
def test_invariants_with_tenant_findings(
    faults: list[int], missing: list[str], client: Client, symptom: Symptom | None
) -> None:
    changes = [x for i in faults for x in _FAULT_CHANGES[i]]
    changed = {x.check for x in changes}
    changes += [_missing(c) for c in missing if c not in changed]
    findings = world(Client.MOBILE, *changes)
    causes = rank_causes(findings, client, symptom)
    assert [c.id for c in causes].count(DEVICE_OR_APP) == 1
    keys = [(-c.confidence, c.id) for c in causes]
    assert keys == sorted(keys)
    assert causes == rank_causes(list(reversed(findings)), client, symptom)
    if any(x.status is F for x in changes):
        assert causes[0].id != DEVICE_OR_APP
        assert conf(causes, DEVICE_OR_APP) <= 0.1
    if "tenant-permission-missing" in ids(causes):
        permission = conf(causes, "tenant-permission-missing")
        facts = {
            spec.id
            for spec in CAUSES.values()
            for check, code in spec.found_by
            if any(
                x.check == check and x.status is F and x.evidence.get("problem") == code
                for x in findings
            )
        }
        assert all(permission < conf(causes, c) for c in facts & set(ids(causes)))


# ---- the records themselves ------------------------------------------------------------------


def test_every_record_names_real_checks() -> None:
    catalogue = set(CATALOGUE_IDS)
    for spec in CAUSES.values():
        assert set(spec.checks) <= catalogue, spec.id
        assert {check for check, _ in spec.found_by} <= set(spec.checks), spec.id
        assert spec.title[:1].isupper() or spec.title.startswith("mailfix"), spec.id


def test_codes_name_one_cause_each() -> None:
    found = [pair for spec in CAUSES.values() for pair in spec.found_by]
    assert len(found) == len(set(found))
    codes = [code for spec in CAUSES.values() for code in spec.aadsts]
    assert len(codes) == len(set(codes))
    controls = [c for spec in CAUSES.values() for c in spec.controls]
    assert len(controls) == len(set(controls))
