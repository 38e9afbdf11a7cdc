"""Address parsing: clear refusals, IDNA normalisation."""

from __future__ import annotations

import os
import subprocess
import sys

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


# --- hidden characters: refused by name, never stripped (issue 8, item 4) ----------------------

BIDI = [0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069]
INVISIBLE = [0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF]


@pytest.mark.parametrize("code", BIDI)
@pytest.mark.parametrize("where", ["local", "domain", "edge"])
def test_text_direction_controls_are_refused(code: int, where: str) -> None:
    char = chr(code)
    text = {
        "local": f"an{char}a@contoso.com",
        "domain": f"ana@con{char}toso.com",
        "edge": f"{char}ana@contoso.com",
    }[where]
    with pytest.raises(InvalidAddress) as caught:
        parse_address(text)
    message = str(caught.value)
    assert "text-direction" in message and f"U+{code:04X}" in message
    assert char not in message  # the message never carries the control itself


@pytest.mark.parametrize("code", INVISIBLE)
@pytest.mark.parametrize("where", ["local", "domain"])
def test_invisible_characters_are_refused_not_silently_removed(code: int, where: str) -> None:
    char = chr(code)
    text = f"an{char}a@contoso.com" if where == "local" else f"ana@con{char}toso.com"
    with pytest.raises(InvalidAddress, match="invisible character") as caught:
        parse_address(text)
    assert f"U+{code:04X}" in str(caught.value)
    assert char not in str(caught.value)


def test_undecodable_bytes_are_bad_input() -> None:
    # What Python makes of $'ana\x80@contoso.com' on a UTF-8 command line (surrogateescape).
    text = b"ana\x80@contoso.com".decode("utf-8", "surrogateescape")
    with pytest.raises(InvalidAddress, match="not valid text"):
        parse_address(text)


def _cli(*args: bytes) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "LC_ALL": "C.UTF-8"}
    code = "import sys; from bot.cli import main; main(sys.argv[1:])"
    return subprocess.run(
        [sys.executable, "-c", code, *args], check=False, capture_output=True, env=env, timeout=60
    )


@pytest.mark.parametrize(
    ("argument", "reason"),
    [
        (b"ana\x80@contoso.com", b"not valid text"),
        ("ana\u202e@contoso.com".encode(), b"text-direction"),
        ("an\u200ba@contoso.com".encode(), b"invisible character"),
    ],
)
def test_the_cli_refuses_them_with_exit_2_and_one_line(argument: bytes, reason: bytes) -> None:
    done = _cli(b"diagnose", argument)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.decode("utf-8", "replace").splitlines()
    assert len(lines) == 1, lines
    assert reason in done.stderr
    assert b"Traceback" not in done.stderr
    assert done.stdout == b""
