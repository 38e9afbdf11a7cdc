"""Address parsing: clear refusals, IDNA normalisation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checks.address import InvalidAddress, parse_address


@pytest.mark.parametrize(
    ("text", "address", "display"),
    [
        ("ana@contoso.com", "ana@contoso.com", "ana@contoso.com"),
        ("  Ana@CONTOSO.com ", "Ana@contoso.com", "Ana@contoso.com"),
        ("mailto:ana@contoso.com", "ana@contoso.com", "ana@contoso.com"),
        ("jörg@bücher-beispiel.de", "jörg@xn--bcher-beispiel-gsb.de", "jörg@bücher-beispiel.de"),
        ("ana@xn--bcher-kva.de", "ana@xn--bcher-kva.de", "ana@bücher.de"),
        ("a.b+tag@sub.contoso.co.uk", "a.b+tag@sub.contoso.co.uk", "a.b+tag@sub.contoso.co.uk"),
    ],
)
def test_valid(text: str, address: str, display: str) -> None:
    mail = parse_address(text)
    assert mail.address == address
    assert mail.display == display


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("ana", "name@domain"),
        ("ana@@contoso.com", "name@domain"),
        ("@contoso.com", "nothing before"),
        ("ana@", "no domain"),
        ("ana@localhost", "at least one dot"),
        ("ana@1.2.3.4", "IP address"),
        ("ana@[::1]", "IP address"),
        ("a b@contoso.com", "spaces"),
        ("ana@contoso..com", "not a valid name"),
        ("ana@-contoso.com", "not a valid name"),
        ("a" * 65 + "@contoso.com", "longer than 64"),
        ("ana@" + "a" * 64 + ".com", "not a valid name"),
        ("ana@" + ".".join(["abcdefghij"] * 25) + ".com", "too long"),
        ("ana@contoso.123", "top-level"),
        ("an\x00a@contoso.com", "control"),
        ('"quoted"@contoso.com', "not allowed"),
        ("x" * 10000, "too long"),
    ],
)
def test_invalid(text: str, reason: str) -> None:
    with pytest.raises(InvalidAddress, match=reason):
        parse_address(text)


@given(st.text(max_size=300))
def test_never_crashes(text: str) -> None:
    try:
        mail = parse_address(text)
    except InvalidAddress as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert len(mail.address.encode()) <= 254
        assert mail.domain.isascii()
