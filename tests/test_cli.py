"""`mailfix diagnose` input handling: exit codes, one-line errors, no tracebacks, ever."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.cli import main
from sandbox.dns_server import DnsServer, Zone

ROOT = Path(__file__).resolve().parents[1]
MAILFIX = [sys.executable, "-m", "bot"]


@pytest.fixture(scope="module")
def empty_dns() -> Iterator[str]:
    """A DNS server on loopback that knows no name: every diagnosis ends quickly, offline."""
    loop = asyncio.new_event_loop()
    server = DnsServer(Zone(), host="127.0.0.1", port=0)
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    host, port = server.address
    yield f"{host}:{port}"
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


@pytest.fixture(scope="module")
def offline_env(empty_dns: str) -> Iterator[dict[str, str]]:
    env = {
        "MAILFIX_DNS_SERVERS": empty_dns,
        "MAILFIX_ALLOWED_PRIVATE_NETWORKS": "",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["diagnose", "not-an-address"], "invalid address"),
        (["diagnose", "a" * 70 + "@contoso.com"], "longer than 64"),
        (["diagnose", "ana@" + "b" * 300 + ".com"], "invalid address"),
        (["diagnose", "ana@contoso.com", "--client", "carrier-pigeon"], "carrier-pigeon"),
        (["diagnose", "ana@contoso.com", "--deadline", "0"], "--deadline"),
        (["diagnose", "ana@contoso.com", "--deadline", "soon"], "--deadline"),
        (["diagnose", "ana@contoso.com", "--symptom", "x" * 3000], "--symptom"),
        (["diagnose"], "address"),
        (["diagnose", "ana@contoso.com", "--bogus"], "--bogus"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    offline_env: dict[str, str], argv: list[str], needle: str
) -> None:
    code, out, err = run_main(argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("mailfix: error: ")
    assert needle in err
    assert "Traceback" not in err


def test_bad_environment_is_bad_input(offline_env: dict[str, str]) -> None:
    os.environ["MAILFIX_DNS_SERVERS"] = "not-an-ip"
    try:
        code, _, err = run_main(["diagnose", "ana@contoso.com", "--json"])
    finally:
        os.environ["MAILFIX_DNS_SERVERS"] = offline_env["MAILFIX_DNS_SERVERS"]
    assert code == 2
    assert "MAILFIX_DNS_SERVERS" in err and err.count("\n") == 1


def test_json_report_for_unknown_domain(offline_env: dict[str, str]) -> None:
    code, out, err = run_main(
        [
            "diagnose",
            "ana@nowhere-at-all.example",
            "--json",
            "--client",
            "outlook",
            "--deadline",
            "10",
        ]
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["schema"] == "mailfix.report/1"
    assert report["findings"][0]["check"] == "activesync.endpoint"
    mx = next(f for f in report["findings"] if f["check"] == "dns.mx")
    assert mx["status"] == "fail"
    assert report["causes"][0]["id"] == "domain-not-found"


def test_human_output_shows_tree(offline_env: dict[str, str]) -> None:
    code, out, err = run_main(
        ["diagnose", "ana@nowhere-at-all.example", "--client", "imap", "--deadline", "10"]
    )
    assert code == 0, err
    assert "mailfix report for ana@nowhere-at-all.example" in out
    assert "MX records" in out and "Most likely" in out
    assert "Diagnosing" in err  # progress goes to stderr
    # words, not Python values or field paths
    for raw in ("None", "True", "False", "dns.mx", "{'", '{"', "rcode"):
        assert raw not in out, raw
    assert "DNS answer code: NXDOMAIN" in out
    assert "What the helpdesk can do" in out  # the top cause's advice, in words
    # skipped checks: one line per reason
    assert out.count("needs admin consent") + out.count("Needs admin consent") <= 1


def test_version_prints_the_package_version() -> None:
    from importlib.metadata import version

    code, out, err = run_main(["--version"])
    assert code == 0, err
    assert out == f"mailfix {version('mailfix')}\n"
    proc = subprocess.run(
        [*MAILFIX, "--version"], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
    )
    assert proc.returncode == 0 and proc.stdout.startswith("mailfix ") and proc.stderr == ""


def test_no_command_shows_the_commands_and_says_what_is_missing() -> None:
    code, out, err = run_main([])
    assert code == 2
    assert "diagnose" in out and "audit" in out
    assert err == "mailfix: error: name a command: one of those listed above\n"


def test_subprocess_bad_input_has_no_traceback(offline_env: dict[str, str]) -> None:
    proc = subprocess.run(
        [*MAILFIX, "diagnose", "bad@@address", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ},
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("mailfix: error: ") and proc.stderr.count("\n") == 1


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    address=st.one_of(
        st.text(max_size=80),
        st.from_regex(r"[a-z0-9.+-]{1,20}@[a-z0-9-]{1,20}\.(com|de|example)", fullmatch=True),
        st.builds(lambda a, b: f"{a}@{b}", st.text(max_size=30), st.text(max_size=30)),
    ),
    client=st.sampled_from(["outlook", "mobile", "imap", "pop", "smtp", "web", "all", "fax", ""]),
    symptom=st.one_of(st.none(), st.text(max_size=50)),
)
def test_arbitrary_input_never_crashes(
    offline_env: dict[str, str], address: str, client: str, symptom: str | None
) -> None:
    argv = ["diagnose", address, "--client", client, "--json", "--deadline", "5"]
    if symptom is not None:
        argv += ["--symptom", symptom]
    code, out, err = run_main(argv)
    assert code in (0, 2), err
    assert "Traceback" not in err
    if code == 0:
        report = json.loads(out)
        assert report["schema"] == "mailfix.report/1"
        assert len({f["check"] for f in report["findings"]}) == len(report["findings"])
    else:
        assert out == "" and err.startswith("mailfix: error: ") and err.count("\n") == 1
