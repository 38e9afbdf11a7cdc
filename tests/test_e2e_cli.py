"""End to end: `mailfix diagnose --json` in a subprocess against every catalogue scenario.

The CLI is configured ONLY through the three environment variables a world built by someone
else would set (DNS servers, CA bundle, allowed networks; plus MAILFIX_CLOUD for sovereign
worlds), with the real Microsoft host names and ports — exactly the contract in DESIGN.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from checks.registry import CATALOGUE_IDS
from sandbox.catalogue import CATALOGUE
from sandbox.scenario import Expectation, Scenario
from sandbox.world import World

ROOT = Path(__file__).resolve().parents[1]

CASES = [
    pytest.param(scenario, expectation, id=f"{scenario.id}-{expectation.client.value}")
    for scenario in CATALOGUE.values()
    for expectation in scenario.expect
]


def test_enough_end_to_end_scenarios() -> None:
    assert len(CATALOGUE) >= 20
    assert len(CASES) >= 20


async def run_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MAILFIX_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**clean, **env},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize(("scenario", "expectation"), CASES)
async def test_cli_json_against_world(scenario: Scenario, expectation: Expectation) -> None:
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("needs permission to bind ports 53/80/443 on loopback (run as root)")
    async with World(scenario) as world:
        assert not world.port_map, "the CLI must see the real ports, configured by env only"
        code, out, err = await run_cli(
            world.env(),
            "diagnose",
            scenario.address,
            "--client",
            expectation.client.value,
            "--json",
            "--deadline",
            "20",
        )
    assert code == 0, err
    report = json.loads(out)
    assert report["schema"] == "mailfix.report/1"
    assert [f["check"] for f in report["findings"]] == list(CATALOGUE_IDS)
    statuses = {f["check"]: f["status"] for f in report["findings"]}
    wanted = {check: status.value for check, status in expectation.statuses.items()}
    assert {c: statuses[c] for c in wanted} == wanted, _explain(report)
    assert report["causes"][0]["id"] == expectation.top_cause, _explain(report)
    listed = {c["id"] for c in report["causes"]}
    assert set(expectation.also) <= listed, _explain(report)
    for finding in report["findings"]:
        if finding["status"] in ("fail", "warn"):
            assert finding["evidence"], f"{finding['check']} {finding['status']} has no evidence"
            assert finding["next_steps"], f"{finding['check']} {finding['status']} has no steps"


def _explain(report: dict[str, object]) -> str:
    findings = report["findings"]
    assert isinstance(findings, list)
    lines = [f"{f['check']}: {f['status']} — {f['summary']}" for f in findings]
    causes = report["causes"]
    assert isinstance(causes, list)
    lines += [f"cause {c['id']} {c['confidence']}" for c in causes[:5]]
    return "\n".join(lines)
