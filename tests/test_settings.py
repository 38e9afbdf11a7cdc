"""Environment parsing for the network settings (DESIGN.md, "Environment")."""

from __future__ import annotations

import ipaddress

import pytest
from pydantic import ValidationError

from checks.settings import CheckSettings, Cloud, DnsServer


def test_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("MAILFIX_DNS_SERVERS", "127.0.0.53:5353, [::1]:53,127.0.0.54")
    monkeypatch.setenv("MAILFIX_CA_BUNDLE", str(bundle))
    monkeypatch.setenv("MAILFIX_ALLOWED_PRIVATE_NETWORKS", "127.77.0.0/16,::1/128")
    monkeypatch.setenv("MAILFIX_CLOUD", "gcchigh")
    s = CheckSettings()
    assert s.dns_servers == [
        DnsServer("127.0.0.53", 5353),
        DnsServer("::1", 53),
        DnsServer("127.0.0.54", 53),
    ]
    assert s.ca_bundle == bundle
    assert s.allowed_private_networks == [
        ipaddress.ip_network("127.77.0.0/16"),
        ipaddress.ip_network("::1/128"),
    ]
    assert s.cloud is Cloud.GCCHIGH


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAILFIX_DNS_SERVERS", "not-an-ip"),
        ("MAILFIX_DNS_SERVERS", "127.0.0.1:99999"),
        ("MAILFIX_ALLOWED_PRIVATE_NETWORKS", "300.1.0.0/16"),
        ("MAILFIX_CLOUD", "mars"),
        ("MAILFIX_CA_BUNDLE", "/nonexistent/ca.pem"),
    ],
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        CheckSettings()
