"""dns.mx, dns.autodiscover, dns.spf against a real DNS server on loopback, every status."""

from __future__ import annotations

import time

import pytest
from _checkworld import FAST, checked, scenario

from checks.diagnosis import rank_causes
from checks.models import Client, Status
from checks.modules import dns
from checks.net.seam import Timeouts
from checks.settings import Cloud
from sandbox.dns_server import DnsFaultKind
from sandbox.scenario import DnsFault, Host, Record

MX, AUTODISCOVER, SPF = dns.MX, dns.AUTODISCOVER, dns.SPF


# --- dns.mx -----------------------------------------------------------------------------------


async def test_mx_pass_when_every_mx_is_exchange_online() -> None:
    sc = scenario(mx=["contoso-com.mail.protection.outlook.com", "contoso-com.o-v1.mx.microsoft"])
    async with checked(sc) as probe:
        f = await probe.run(MX)
    assert f.status is Status.PASS
    assert f.evidence["mx"] == [
        "0 contoso-com.mail.protection.outlook.com",
        "10 contoso-com.o-v1.mx.microsoft",
    ]


async def test_mx_warn_names_the_foreign_hosts() -> None:
    sc = scenario(mx=["eu-smtp-inbound-1.mimecast.com", "contoso-com.mail.protection.outlook.com"])
    async with checked(sc) as probe:
        f = await probe.run(MX)
    assert f.status is Status.WARN
    assert f.evidence["elsewhere"] == ["eu-smtp-inbound-1.mimecast.com"]
    assert f.evidence["problem"] == "mx-not-exchange-online"
    assert "eu-smtp-inbound-1.mimecast.com" in f.summary
    assert "bypass" in f.summary


async def test_mx_fail_without_mx() -> None:
    async with checked(scenario(mx=None)) as probe:
        f = await probe.run(MX)
    assert f.status is Status.FAIL
    assert f.evidence == {"mx": [], "problem": "mx-missing"}
    assert "contoso-com.mail.protection.outlook.com" in f.next_steps[0]


async def test_mx_fail_on_null_mx() -> None:
    sc = scenario(mx=None, records=[Record(name="contoso.com", rdtype="MX", value="0 .")])
    async with checked(sc) as probe:
        f = await probe.run(MX)
    assert f.status is Status.FAIL
    assert "null MX" in f.summary


async def test_mx_and_spf_fail_when_the_domain_does_not_exist() -> None:
    async with checked(scenario()) as probe:
        mx = await probe.run(MX, address="ana@contoso-typo.com")
        spf = await probe.run(SPF, address="ana@contoso-typo.com")
    for f in (mx, spf):
        assert f.status is Status.FAIL
        assert f.evidence["problem"] == "domain-not-found"
        assert f.evidence["rcode"] == "NXDOMAIN"
        assert "does not exist" in f.summary


async def test_mx_error_when_dns_fails() -> None:
    sc = scenario(dns_faults=[DnsFault(name="contoso.com", kind=DnsFaultKind.SERVFAIL)])
    async with checked(sc, timeouts=FAST) as probe:
        f = await probe.run(MX)
    assert f.status is Status.ERROR
    assert f.evidence["problem"] == "dns-servfail"
    assert f.next_steps


async def test_mx_error_when_dns_is_silent() -> None:
    faults = [DnsFault(name="contoso.com", kind=DnsFaultKind.SILENT, rdtype="MX")]
    async with checked(scenario(dns_faults=faults), timeouts=FAST) as probe:
        f = await probe.run(MX)
    assert f.status is Status.ERROR
    assert f.evidence["problem"] == "dns-timeout"


# --- dns.autodiscover -------------------------------------------------------------------------


async def test_autodiscover_pass_direct_cname() -> None:
    async with checked(scenario()) as probe:
        f = await probe.run(AUTODISCOVER)
    assert f.status is Status.PASS
    assert f.evidence["cname_chain"] == ["autodiscover.outlook.com"]


async def test_autodiscover_pass_through_a_chain() -> None:
    sc = scenario(
        autodiscover="autodiscover.contoso-dns.net",
        records=[
            Record(
                name="autodiscover.contoso-dns.net",
                rdtype="CNAME",
                value="autodiscover.outlook.com",
            )
        ],
    )
    async with checked(sc) as probe:
        f = await probe.run(AUTODISCOVER)
    assert f.status is Status.PASS
    assert f.evidence["cname_chain"] == ["autodiscover.contoso-dns.net", "autodiscover.outlook.com"]


async def test_autodiscover_warn_on_premises_cname() -> None:
    sc = scenario(autodiscover="mail.contoso.com", hosts=[Host(names=("mail.contoso.com",))])
    async with checked(sc) as probe:
        f = await probe.run(AUTODISCOVER)
    assert f.status is Status.WARN
    assert f.evidence["problem"] == "autodiscover-dns-elsewhere"
    assert f.evidence["looks_on_premises"] is True
    assert "mail.contoso.com" in f.summary
    assert "on-premises Exchange" in f.detail
    assert any("CNAME autodiscover → autodiscover.outlook.com" in s for s in f.next_steps)


async def test_autodiscover_warn_a_record_reads_as_hybrid() -> None:
    sc = scenario(autodiscover=None, hosts=[Host(names=("autodiscover.contoso.com",))])
    async with checked(sc) as probe:
        f = await probe.run(AUTODISCOVER)
    address = probe.world.ip_of("autodiscover.contoso.com")
    assert f.status is Status.WARN
    assert f.evidence["addresses"] == [address]
    assert address in f.summary
    assert f.evidence["looks_on_premises"] is True


async def test_autodiscover_warn_web_host_is_not_called_exchange() -> None:
    sc = scenario(
        autodiscover="sites.hosting-co.net", hosts=[Host(names=("sites.hosting-co.net",))]
    )
    async with checked(sc) as probe:
        f = await probe.run(AUTODISCOVER)
    assert f.status is Status.WARN
    assert f.evidence["looks_on_premises"] is False
    assert "does not look like Exchange" in f.detail


async def test_autodiscover_follows_the_configured_cloud() -> None:
    # The worldwide target is wrong for a GCC High tenant: ctx.cloud decides, nothing else.
    sc = scenario(
        cloud=Cloud.GCCHIGH,
        autodiscover="autodiscover.outlook.com",
        hosts=[Host(names=("autodiscover.outlook.com",))],
    )
    async with checked(sc) as probe:
        f = await probe.run(AUTODISCOVER)
    assert f.status is Status.WARN
    assert "autodiscover.office365.us" in f.summary
    assert "another Microsoft name" in f.detail

    async with checked(scenario(cloud=Cloud.CHINA)) as probe:
        china = await probe.run(AUTODISCOVER)
    assert china.status is Status.PASS
    assert china.evidence["cname_chain"] == ["autodiscover.partner.outlook.cn"]


async def test_autodiscover_fail_without_record() -> None:
    async with checked(scenario(autodiscover=None)) as probe:
        f = await probe.run(AUTODISCOVER)
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "autodiscover-dns-missing"
    assert f.next_steps[0].startswith(
        "Ask whoever runs DNS for contoso.com to add CNAME autodiscover → autodiscover.outlook.com"
    )


async def test_autodiscover_fail_on_dangling_cname() -> None:
    async with checked(scenario(autodiscover="old-exchange.contoso.com")) as probe:
        f = await probe.run(AUTODISCOVER)
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "autodiscover-dns-missing"
    assert "old-exchange.contoso.com, which does not exist" in f.summary


async def test_autodiscover_error_when_dns_fails() -> None:
    faults = [DnsFault(name="autodiscover.contoso.com", kind=DnsFaultKind.REFUSED)]
    async with checked(scenario(dns_faults=faults), timeouts=FAST) as probe:
        f = await probe.run(AUTODISCOVER)
    assert f.status is Status.ERROR
    assert f.evidence["problem"] == "dns-refused"


async def test_autodiscover_walk_stops_at_the_expected_target() -> None:
    # Where autodiscover.outlook.com points next is Microsoft's business: a lookup there that
    # fails must not turn a correct record into an error.
    faults = [DnsFault(name="autodiscover.outlook.com", kind=DnsFaultKind.SILENT, rdtype="CNAME")]
    async with checked(scenario(dns_faults=faults), timeouts=FAST) as probe:
        f = await probe.run(AUTODISCOVER)
        queries = probe.world.dns_queries
    assert f.status is Status.PASS
    assert f.evidence["cname_chain"] == ["autodiscover.outlook.com"]
    assert ("udp", "autodiscover.outlook.com", "CNAME") not in queries


async def test_autodiscover_error_keeps_the_partial_chain() -> None:
    sc = scenario(
        autodiscover="autodiscover.contoso-dns.net",
        dns_faults=[DnsFault(name="autodiscover.contoso-dns.net", kind=DnsFaultKind.SERVFAIL)],
    )
    async with checked(sc, timeouts=FAST) as probe:
        f = await probe.run(AUTODISCOVER)
    assert f.status is Status.ERROR
    assert f.evidence["problem"] == "dns-servfail"
    assert f.evidence["cname_chain"] == ["autodiscover.contoso-dns.net"]
    assert f.evidence["name"] == "autodiscover.contoso.com"


async def test_autodiscover_warn_survives_a_server_that_drops_aaaa() -> None:
    sc = scenario(
        autodiscover="mail.contoso.com",
        hosts=[Host(names=("mail.contoso.com",))],
        dns_faults=[DnsFault(name="mail.contoso.com", kind=DnsFaultKind.SILENT, rdtype="AAAA")],
    )
    async with checked(sc, timeouts=FAST) as probe:
        f = await probe.run(AUTODISCOVER)
    assert f.status is Status.WARN
    assert f.evidence["problem"] == "autodiscover-dns-elsewhere"
    assert f.evidence["addresses"] == [probe.world.ip_of("mail.contoso.com")]


async def test_autodiscover_error_when_aaaa_fails_and_a_is_empty() -> None:
    sc = scenario(
        autodiscover="mail.contoso.com",
        records=[Record(name="mail.contoso.com", rdtype="TXT", value='"no address"')],
        dns_faults=[DnsFault(name="mail.contoso.com", kind=DnsFaultKind.SERVFAIL, rdtype="AAAA")],
    )
    async with checked(sc, timeouts=FAST) as probe:
        f = await probe.run(AUTODISCOVER)
    assert f.status is Status.ERROR  # no A records, and AAAA unknown: could not decide
    assert f.evidence["problem"] == "dns-servfail"


# --- dns.spf ----------------------------------------------------------------------------------


async def test_spf_pass_direct() -> None:
    async with checked(scenario()) as probe:
        f = await probe.run(SPF)
    assert f.status is Status.PASS
    assert f.evidence["spf"] == ["v=spf1 include:spf.protection.outlook.com -all"]  # not MS=…


async def test_spf_pass_through_a_nested_include() -> None:
    sc = scenario(
        spf=["v=spf1 ip4:192.0.2.1 include:_spf.contoso.com ~all"],
        records=[
            Record(
                name="_spf.contoso.com",
                rdtype="TXT",
                value="v=spf1 include:spf.protection.outlook.com -all",
            )
        ],
    )
    async with checked(sc) as probe:
        f = await probe.run(SPF)
    assert f.status is Status.PASS
    assert f.evidence["included"] == "through _spf.contoso.com"


async def test_spf_warn_without_exchange_online() -> None:
    async with checked(scenario(spf=["v=spf1 include:_spf.google.com ~all"])) as probe:
        f = await probe.run(SPF)
    assert f.status is Status.WARN
    assert f.evidence["problem"] == "spf-no-exchange-online"
    assert "include:spf.protection.outlook.com" in f.next_steps[0]


async def test_spf_warn_unverified_when_an_include_cannot_be_read() -> None:
    sc = scenario(
        spf=["v=spf1 include:_spf.contoso.com include:_spf.vendor.net ~all"],
        records=[Record(name="_spf.vendor.net", rdtype="TXT", value='"v=spf1 a -all"')],
        dns_faults=[DnsFault(name="_spf.contoso.com", kind=DnsFaultKind.SERVFAIL)],
    )
    async with checked(sc, timeouts=FAST) as probe:
        f = await probe.run(SPF)
    assert f.status is Status.WARN
    assert f.summary.startswith("mailfix could not verify whether the SPF record of contoso.com")
    assert "does not include" not in f.summary
    assert f.evidence["problem"] == "spf-unverified"
    assert f.evidence["unverified_includes"] == ["_spf.contoso.com"]
    causes = rank_causes([f], Client.OUTLOOK, None)
    assert "spf-problem" in [c.id for c in causes]


async def test_spf_includes_of_one_level_are_read_concurrently() -> None:
    # Ten silent includes: one after the other they would cost 10 x the DNS timeout (and the
    # check's 10 s limit); concurrently, about one DNS timeout.
    silent = [f"_spf{i}.contoso.com" for i in range(10)]
    sc = scenario(
        spf=["v=spf1 " + " ".join(f"include:{n}" for n in silent) + " -all"],
        dns_faults=[DnsFault(name=n, kind=DnsFaultKind.SILENT) for n in silent],
    )
    async with checked(sc, timeouts=FAST) as probe:
        started = time.monotonic()
        f = await probe.run(SPF)
        elapsed = time.monotonic() - started
    assert f.status is Status.WARN
    assert f.evidence["unverified_includes"] == silent
    assert elapsed < 4 * FAST.dns


async def test_spf_walk_is_bounded_by_the_checks_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only 0.5 s of the check's time left for the walk: a silent include (3 s DNS timeout) is
    # given up on in time and reported as unverified.
    monkeypatch.setattr(dns, "SPF_WALK_MARGIN", SPF.timeout - 0.5)
    sc = scenario(
        spf=["v=spf1 include:_spf.contoso.com -all"],
        dns_faults=[DnsFault(name="_spf.contoso.com", kind=DnsFaultKind.SILENT)],
    )
    slow = Timeouts(dns=3.0, connect=1.0, read=1.0, total=5.0)
    async with checked(sc, timeouts=slow) as probe:
        started = time.monotonic()
        f = await probe.run(SPF)
        elapsed = time.monotonic() - started
    assert f.status is Status.WARN
    assert f.evidence["unverified_includes"] == ["_spf.contoso.com"]
    assert elapsed < 1.5


async def test_spf_fail_without_spf() -> None:
    async with checked(scenario(spf=[])) as probe:
        f = await probe.run(SPF)
    assert f.status is Status.FAIL
    assert f.evidence == {"spf": [], "problem": "spf-missing"}


async def test_spf_fail_with_two_records() -> None:
    two = ["v=spf1 include:spf.protection.outlook.com -all", "v=spf1 include:mailgun.org ~all"]
    async with checked(scenario(spf=two)) as probe:
        f = await probe.run(SPF)
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "spf-multiple"
    assert sorted(f.evidence["spf"]) == sorted(two)


async def test_spf_sovereign_include() -> None:
    async with checked(scenario(cloud=Cloud.GCCHIGH)) as probe:
        f = await probe.run(SPF)
    assert f.status is Status.PASS
    assert "spf.protection.office365.us" in f.summary


async def test_spf_error_when_dns_fails() -> None:
    faults = [DnsFault(name="contoso.com", kind=DnsFaultKind.GARBAGE, rdtype="TXT")]
    async with checked(scenario(dns_faults=faults), timeouts=FAST) as probe:
        f = await probe.run(SPF)
    assert f.status is Status.ERROR
    assert f.evidence["problem"].startswith("dns-")


async def test_dns_checks_through_the_runner() -> None:
    from checks.runner import run_checks  # the lead's engine: imported late, it is young

    async with checked(scenario(autodiscover=None)) as probe:
        ctx = probe.context(client=Client.OUTLOOK)
        findings = await run_checks(ctx, list(dns.CHECKS), deadline=10)
    assert [(f.check, f.status) for f in findings] == [
        ("dns.mx", Status.PASS),
        ("dns.autodiscover", Status.FAIL),
        ("dns.spf", Status.PASS),
    ]
