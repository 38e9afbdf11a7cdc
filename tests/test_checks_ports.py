"""net.https, net.imap, net.pop, net.smtp over real TCP/TLS on loopback, every status."""

from __future__ import annotations

from typing import Any

from _checkworld import FAST, checked, scenario

from checks.models import Client, Status
from checks.modules import ports
from sandbox.ca import CertKind
from sandbox.dns_server import DnsFaultKind
from sandbox.scenario import DnsFault, Fault, microsoft_cert

HTTPS, IMAP, POP, SMTP = ports.HTTPS, ports.IMAP, ports.POP, ports.SMTP
EXO = "outlook.office365.com"


def _ms(**roles: Any) -> dict[str, Any]:
    return roles


def steps(finding: Any) -> list[tuple[str, Status]]:
    return [(s.name, s.status) for s in finding.steps]


def test_clients() -> None:
    assert HTTPS.applies_to(Client.OUTLOOK) and HTTPS.applies_to(Client.MOBILE)
    assert HTTPS.applies_to(Client.WEB) and not HTTPS.applies_to(Client.IMAP)
    assert IMAP.clients == {Client.IMAP} and POP.clients == {Client.POP}
    assert SMTP.clients == {Client.SMTP, Client.IMAP, Client.POP}


# --- net.https --------------------------------------------------------------------------------


async def test_https_pass_with_certificate_evidence() -> None:
    async with checked(scenario()) as probe:
        f = await probe.run(HTTPS)
        ip = probe.world.ip_of(EXO)
    assert f.status is Status.PASS
    assert f.evidence["address"] == ip
    assert "Microsoft Corporation" in f.evidence["certificate"]["subject"]
    assert steps(f) == [
        (f"Resolve {EXO}", Status.PASS),
        (f"Connect to {EXO}:443", Status.PASS),
        ("TLS handshake and certificate", Status.PASS),
    ]


async def test_https_fail_when_port_refused() -> None:
    sc = scenario(microsoft=_ms(exo_https={"fault": Fault.REFUSED}))
    async with checked(sc, timeouts=FAST) as probe:
        f = await probe.run(HTTPS)
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "connect-failed"
    assert "blocks port 443" in f.summary
    assert f.steps[-1].status is Status.FAIL and f.steps[-1].name == f"Connect to {EXO}:443"
    assert any("allow outbound TCP port 443" in s for s in f.next_steps)


async def test_https_fail_when_black_holed() -> None:
    sc = scenario(microsoft=_ms(exo_https={"fault": Fault.BLACK_HOLE}))
    async with checked(sc, timeouts=FAST) as probe:
        f = await probe.run(HTTPS)
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "timeout"
    assert "silently drops" in f.summary


async def test_https_fail_tls_inspection_names_the_issuer() -> None:
    sc = scenario(microsoft=_ms(exo_https={"cert": microsoft_cert_for(CertKind.UNTRUSTED)}))
    async with checked(sc) as probe:
        f = await probe.run(HTTPS)
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "tls-inspection"
    assert f.evidence["certificate_problem"] == "untrusted"
    cert = f.evidence["certificate"]
    assert {"subject", "issuer", "not_before", "not_after"} <= set(cert)
    assert "mailfix untrusted CA" in cert["issuer"]
    assert "TLS-inspecting proxy or a captive portal" in f.summary
    assert f.steps[-1].name == "TLS handshake and certificate"


async def test_https_fail_expired_certificate_mentions_the_clock() -> None:
    sc = scenario(microsoft=_ms(exo_https={"cert": microsoft_cert_for(CertKind.EXPIRED)}))
    async with checked(sc) as probe:
        f = await probe.run(HTTPS)
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "tls-inspection"
    assert any("date and time" in s for s in f.next_steps)


async def test_https_error_when_dns_fails_for_the_microsoft_host() -> None:
    sc = scenario(dns_faults=[DnsFault(name=EXO, kind=DnsFaultKind.SERVFAIL)])
    async with checked(sc, timeouts=FAST) as probe:
        f = await probe.run(HTTPS)
    assert f.status is Status.ERROR
    assert f.evidence["problem"] == "dns-servfail"
    assert f.steps[-1].name == f"Resolve {EXO}"


async def test_https_error_when_the_guard_refuses_the_address() -> None:
    # The world's addresses are loopback but not on the allowed list: nothing is sent.
    async with checked(scenario(), allowed_private_networks=[]) as probe:
        f = await probe.run(HTTPS)
        seen = probe.world.requests(EXO)
    assert f.status is Status.ERROR
    assert f.evidence["problem"] == "blocked-address"
    assert seen == []


def microsoft_cert_for(kind: CertKind) -> Any:
    from checks.settings import Cloud

    return microsoft_cert(Cloud.GLOBAL, kind=kind)


# --- net.imap / net.pop -----------------------------------------------------------------------


async def test_imap_pass_reads_greeting_and_never_signs_in() -> None:
    async with checked(scenario()) as probe:
        f = await probe.run(IMAP)
        log = " ".join(probe.world.log(EXO).mail).upper()
    assert f.status is Status.PASS
    assert f.evidence["greeting"].startswith("* OK The Microsoft Exchange IMAP4 service is ready")
    assert f.evidence["tls_version"].startswith("TLS")
    assert [s.status for s in f.steps] == [Status.PASS] * 3
    assert "LOGIN" not in log.replace("LOGOUT", "") and "AUTHENTICATE" not in log


async def test_imap_fail_when_port_refused() -> None:
    sc = scenario(microsoft=_ms(exo_imap={"fault": Fault.REFUSED}))
    async with checked(sc, timeouts=FAST) as probe:
        f = await probe.run(IMAP)
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "connect-failed"
    assert f.summary == (
        "IMAP (port 993) on outlook.office365.com cannot be reached: a firewall or the network "
        "blocks port 993."
    )


async def test_imap_fail_when_black_holed() -> None:
    sc = scenario(microsoft=_ms(exo_imap={"fault": Fault.BLACK_HOLE}))
    async with checked(sc, timeouts=FAST) as probe:
        f = await probe.run(IMAP)
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "timeout"
    assert "blocks port 993" in f.summary


async def test_imap_fail_on_wrong_certificate() -> None:
    sc = scenario(microsoft=_ms(exo_imap={"cert": microsoft_cert_for(CertKind.WRONG_NAME)}))
    async with checked(sc) as probe:
        f = await probe.run(IMAP)
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "tls-inspection"
    assert f.evidence["certificate_problem"] == "hostname"


async def test_imap_fail_on_bye_greeting() -> None:
    sc = scenario(microsoft=_ms(exo_imap={"mail": {"greeting": "* BYE Server busy, try later"}}))
    async with checked(sc) as probe:
        f = await probe.run(IMAP)
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "service-refused"
    assert "* BYE Server busy" in f.summary


async def test_imap_fail_on_a_foreign_greeting() -> None:
    sc = scenario(microsoft=_ms(exo_imap={"mail": {"greeting": "SSH-2.0-OpenSSH_9.6"}}))
    async with checked(sc) as probe:
        f = await probe.run(IMAP)
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "protocol"
    assert f.evidence["stage"] == "greeting"
    assert f.evidence["greeting"] == "SSH-2.0-OpenSSH_9.6"


async def test_imap_fail_on_garbage() -> None:
    sc = scenario(microsoft=_ms(exo_imap={"mail": {"garbage_greeting": True}}))
    async with checked(sc, timeouts=FAST) as probe:
        f = await probe.run(IMAP)
    assert f.status is Status.FAIL
    assert f.evidence["stage"] == "greeting"


async def test_imap_error_when_dns_fails() -> None:
    sc = scenario(dns_faults=[DnsFault(name=EXO, kind=DnsFaultKind.SILENT)])
    async with checked(sc, timeouts=FAST) as probe:
        f = await probe.run(IMAP)
    assert f.status is Status.ERROR
    assert f.evidence["problem"] == "dns-timeout"


async def test_pop_pass_and_fail() -> None:
    async with checked(scenario()) as probe:
        ok = await probe.run(POP)
    assert ok.status is Status.PASS
    assert ok.evidence["greeting"].startswith("+OK")

    sc = scenario(microsoft=_ms(exo_pop={"fault": Fault.REFUSED}))
    async with checked(sc, timeouts=FAST) as probe:
        refused = await probe.run(POP)
    assert refused.status is Status.FAIL
    assert "blocks port 995" in refused.summary

    sc = scenario(microsoft=_ms(exo_pop={"mail": {"greeting": "-ERR too many connections"}}))
    async with checked(sc) as probe:
        err = await probe.run(POP)
    assert err.status is Status.FAIL
    assert err.evidence["problem"] == "service-refused"


# --- net.smtp ---------------------------------------------------------------------------------

SMTP_HOST = "smtp.office365.com"


async def test_smtp_pass_walks_every_stage_and_never_authenticates() -> None:
    async with checked(scenario()) as probe:
        f = await probe.run(SMTP)
        log = " ".join(probe.world.log(SMTP_HOST).mail).upper()
    assert f.status is Status.PASS
    assert steps(f) == [
        (f"Connect to {SMTP_HOST}:587", Status.PASS),
        ("Greeting (220)", Status.PASS),
        ("EHLO", Status.PASS),
        ("STARTTLS offered", Status.PASS),
        ("STARTTLS handshake and certificate", Status.PASS),
        ("AUTH offered after TLS", Status.PASS),
    ]
    assert "STARTTLS" in f.evidence["extensions"]
    assert "AUTH" not in f.evidence["extensions"]  # EXO offers AUTH only after TLS
    assert "XOAUTH2" in f.evidence["auth_mechanisms"]
    assert "AUTH " not in log and "STARTTLS" in log


async def test_smtp_fail_when_port_blocked() -> None:
    sc = scenario(microsoft=_ms(smtp={"fault": Fault.REFUSED}))
    async with checked(sc, timeouts=FAST) as probe:
        f = await probe.run(SMTP)
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "connect-failed"
    assert f.evidence["stage"] == "connect"
    assert "blocks port 587" in f.summary
    assert any("internet providers" in s for s in f.next_steps)


async def test_smtp_fail_when_starttls_is_stripped() -> None:
    sc = scenario(microsoft=_ms(smtp={"mail": {"starttls_offered": False}}))
    async with checked(sc) as probe:
        f = await probe.run(SMTP)
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "smtp-starttls-broken"
    assert f.evidence["stage"] == "starttls"
    assert steps(f)[-1] == ("STARTTLS offered", Status.FAIL)
    assert "inspection" in f.next_steps[0]


async def test_smtp_masked_banner_names_the_firewall() -> None:
    mail = {"starttls_offered": False, "greeting": "220 ******************************"}
    async with checked(scenario(microsoft=_ms(smtp={"mail": mail}))) as probe:
        f = await probe.run(SMTP)
    assert f.status is Status.FAIL
    assert "Cisco ASA" in f.detail


async def test_smtp_fail_when_starttls_breaks() -> None:
    sc = scenario(microsoft=_ms(smtp={"mail": {"starttls_broken": True}}))
    async with checked(sc, timeouts=FAST) as probe:
        f = await probe.run(SMTP)
    assert f.status is Status.FAIL
    assert f.evidence["stage"] == "tls"
    assert steps(f)[-1] == ("STARTTLS handshake and certificate", Status.FAIL)


async def test_smtp_fail_tls_inspection_after_starttls() -> None:
    sc = scenario(microsoft=_ms(smtp={"cert": microsoft_cert_for(CertKind.UNTRUSTED)}))
    async with checked(sc) as probe:
        f = await probe.run(SMTP)
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "tls-inspection"
    assert f.evidence["stage"] == "tls"
    assert "issuer" in f.evidence["certificate"]


async def test_smtp_fail_without_auth_after_tls() -> None:
    sc = scenario(microsoft=_ms(smtp={"mail": {"auth_after_tls": False}}))
    async with checked(sc) as probe:
        f = await probe.run(SMTP)
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "smtp-no-auth"
    assert steps(f)[-1] == ("AUTH offered after TLS", Status.FAIL)


async def test_smtp_fail_when_greeting_refuses() -> None:
    sc = scenario(microsoft=_ms(smtp={"mail": {"greeting": "554 5.7.1 Service unavailable"}}))
    async with checked(sc) as probe:
        f = await probe.run(SMTP)
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "service-refused"
    assert "554" in f.summary


async def test_smtp_fail_on_garbage() -> None:
    sc = scenario(microsoft=_ms(smtp={"mail": {"garbage_greeting": True}}))
    async with checked(sc, timeouts=FAST) as probe:
        f = await probe.run(SMTP)
    assert f.status is Status.FAIL
    assert f.evidence["stage"] == "greeting"


async def test_smtp_fail_when_silent_after_connect() -> None:
    sc = scenario(microsoft=_ms(smtp={"fault": Fault.BLACK_HOLE}))
    async with checked(sc, timeouts=FAST) as probe:
        f = await probe.run(SMTP)
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "timeout"


async def test_smtp_error_when_dns_fails() -> None:
    sc = scenario(dns_faults=[DnsFault(name=SMTP_HOST, kind=DnsFaultKind.SERVFAIL)])
    async with checked(sc, timeouts=FAST) as probe:
        f = await probe.run(SMTP)
    assert f.status is Status.ERROR
    assert f.evidence["problem"] == "dns-servfail"


async def test_sovereign_hosts_come_from_the_cloud() -> None:
    from checks.settings import Cloud

    async with checked(scenario(cloud=Cloud.GCCHIGH)) as probe:
        smtp = await probe.run(SMTP)
        imap = await probe.run(IMAP)
    assert smtp.status is Status.PASS and smtp.evidence["host"] == "smtp.office365.us"
    assert imap.status is Status.PASS and imap.evidence["host"] == "outlook.office365.us"


async def test_https_fail_when_dns_denies_the_microsoft_host() -> None:
    # A DNS filter answering NXDOMAIN for Microsoft's name blocks Outlook as surely as a firewall.
    async with checked(scenario(with_microsoft=False), timeouts=FAST) as probe:
        f = await probe.run(HTTPS)
    assert f.status is Status.FAIL
    assert f.evidence["problem"] == "dns-nxdomain"
    assert "DNS filter" in f.summary


def test_explain_covers_every_seam_error() -> None:
    from checks.modules._explain import explain
    from checks.net import errors as e

    cases: list[tuple[e.NetError, Status, str]] = [
        (e.DnsError("x", name="h.example", reason="nxdomain"), Status.FAIL, "dns-nxdomain"),
        (e.DnsError("x", name="h.example", reason="timeout"), Status.ERROR, "dns-timeout"),
        (e.DnsError("x", name="h.example", reason="weird"), Status.ERROR, "dns-failure"),
        (
            e.BlockedAddress("x", host="h.example", addresses=["10.0.0.1"]),
            Status.ERROR,
            "blocked-address",
        ),
        (e.ConnectFailed("x", host="h.example"), Status.FAIL, "connect-failed"),
        (e.NetTimeout("x", host="h.example"), Status.FAIL, "timeout"),
        (
            e.CertificateInvalid("x", host="h.example", reason="hostname", cert=None),
            Status.FAIL,
            "certificate-hostname",
        ),
        (
            e.CertificateInvalid("x", host="h.example", reason="odd", cert=None),
            Status.FAIL,
            "certificate-invalid",
        ),
        (e.TlsFailed("x", host="h.example"), Status.FAIL, "tls-failed"),
        (e.ProtocolViolation("x", host="h.example"), Status.FAIL, "protocol"),
        (e.ResponseTooLarge("x", host="h.example"), Status.FAIL, "too-large"),
        (e.TooManyRedirects("x", host="h.example"), Status.FAIL, "redirects"),
        (e.NetError("x", host="h.example"), Status.ERROR, "network"),
    ]
    for exc, status, problem in cases:
        why = explain(exc, host="h.example", port=443, service="HTTPS")
        assert (why.status, why.problem) == (status, problem), exc
        assert why.evidence["problem"] == problem and why.evidence["port"] == 443
        assert why.summary.endswith(".") and why.next_steps
        assert "password" not in why.summary.lower()
    forced = explain(e.NetTimeout("x"), host="h.example", status=Status.ERROR)
    assert forced.status is Status.ERROR
