"""Rules of the house: only bot/ may import the chat SDKs; cards/ knows no network."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAT_SDKS = ("slack_bolt", "slack_sdk", "botbuilder", "botframework", "microsoft_agents")
NETWORK = ("httpx", "httpcore", "aiohttp", "socket", "dns", "ssl", "checks.net", "checks.runner")


def imported_modules(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def offenders(package: str, banned: tuple[str, ...]) -> list[str]:
    return [
        f"{path}: {name}"
        for path, names in imported_modules(package).items()
        for name in sorted(names)
        if any(name == b or name.startswith(b + ".") for b in banned)
    ]


@pytest.mark.parametrize("package", ["checks", "dialogs", "cards", "sandbox"])
def test_no_chat_sdk_outside_bot(package: str) -> None:
    assert offenders(package, CHAT_SDKS) == []


def test_cards_know_no_network() -> None:
    assert offenders("cards", NETWORK) == []


def test_botbuilder_lives_in_the_teams_package() -> None:
    """The SDK is archived upstream: a move to the Microsoft 365 Agents SDK stays in bot/teams/."""
    users = [
        p
        for p, names in imported_modules("bot").items()
        if any(n.startswith(("botbuilder", "botframework")) for n in names)
    ]
    assert users, "no module imports botbuilder: the check looks in the wrong place"
    assert all(p.startswith("bot/teams/") for p in users), users
