"""Every sandbox scenario, diagnosed for real on loopback, renders to valid cards everywhere.

The progress card is rendered after every finished check (as the bot would update it), and
the results card for Teams, a Slack message and a Slack modal; each one is validated against
the official Adaptive Card schema / slack_sdk and the platform limits.
"""

from __future__ import annotations

from typing import Any

import pytest
from cards_helpers import validate_adaptive, validate_slack

from cards import Target, render
from cards.data import FindingLine, ProgressData, ResultsData
from checks.models import Client, Finding
from checks.net.seam import Network, Timeouts
from checks.registry import CATALOGUE as CHECKS
from checks.runner import diagnose
from dialogs.models import CardSpec
from sandbox.catalogue import CATALOGUE as SCENARIOS
from sandbox.world import World

TITLES = {c.id: c.title for c in CHECKS}
# Short timeouts: black-hole scenarios must not take the default 20 s per exchange.
FAST = Timeouts(dns=1.0, connect=1.0, read=1.0, total=3.0)


def _validate(out: dict[str, Any], target: Target) -> None:
    if target is Target.ADAPTIVE:
        validate_adaptive(out)
    elif target is Target.SLACK_MESSAGE:
        validate_slack(out, "message")
    else:
        validate_slack(out, "modal")


@pytest.mark.parametrize("scenario_id", sorted(SCENARIOS))
async def test_scenario_cards_validate(scenario_id: str) -> None:
    sc = SCENARIOS[scenario_id]
    client = sc.expect[0].client if sc.expect else Client.OUTLOOK
    finished: list[FindingLine] = []
    progress_cards: list[dict[str, Any]] = []

    def on_progress(finding: Finding, done: int, total: int) -> None:
        finished.append(
            FindingLine(
                check=finding.check,
                title=TITLES.get(finding.check, finding.check),
                status=finding.status,
                summary=finding.summary,
            )
        )
        data = ProgressData(
            address=sc.address,
            client_label=client.value,
            total=total,
            done=done,
            running=[],
            finished=finished,
        )
        for target in (Target.ADAPTIVE, Target.SLACK_MESSAGE):
            card = render(CardSpec(template="progress", data=data.model_dump(mode="json")), target)
            _validate(card, target)
            progress_cards.append(card)

    async with (
        World(sc) as world,
        Network(world.settings(), timeouts=FAST, port_map=world.port_map) as net,
    ):
        report = await diagnose(
            sc.address,
            client,
            settings=net.settings,
            net=net,
            deadline=10.0,
            on_progress=on_progress,
        )

    assert progress_cards, "the runner reported no progress"
    data = ResultsData(
        diagnosis_id="d-" + scenario_id,
        address=report.address,
        client=client,
        client_label=client.value,
        symptom_label=None,
        report=report,
        next_steps=["Close the app and open it again."],
        check_titles=TITLES,
    )
    spec = CardSpec(template="results", data=data.model_dump(mode="json"))
    top = report.top_cause
    assert top is not None, "DESIGN.md: there is always a top cause (device-or-app at least)"
    for target in (Target.ADAPTIVE, Target.SLACK_MESSAGE, Target.SLACK_MODAL):
        out = render(spec, target)
        _validate(out, target)
        if target is Target.ADAPTIVE:
            head = out["body"][2]["items"][0]["text"]
            assert head.startswith("**Most likely:** ")
        else:
            head = out["blocks"][2]["text"]["text"]
            assert head.startswith("*Most likely:* ")
        # the top cause is the first thing after the title lines, whatever the card left out
        assert top.title.split()[0] in head
