"""The container and compose files say what docs/deployment.md promises.

No Docker engine runs here, so these read the files: a non-root image that serves, two
replicas on PostgreSQL behind one port, and an env template naming only real settings.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from bot.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def _known_variables() -> set[str]:
    return {f"MAILFIX_{name.upper()}" for name in Settings.model_fields}


def test_the_image_runs_as_a_user_that_is_not_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users, "the Dockerfile never switches away from root"
    assert users[-1] not in {"root", "0"}
    assert re.search(r'^CMD \["serve"\]', text, flags=re.MULTILINE)
    assert "/readyz" in text  # the health check asks the readiness endpoint


def test_compose_runs_two_replicas_on_postgres_behind_one_port() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    bot = services["mailfix"]
    assert bot["deploy"]["replicas"] == 2
    assert bot["environment"]["MAILFIX_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert "ports" not in bot, "replicas must not publish a port of their own"
    assert [p for s in services.values() for p in s.get("ports", [])] == ["8080:8080"]
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "proxy_pass $mailfix" in conf and "http://mailfix:3978" in conf


def test_every_variable_in_the_templates_is_a_real_setting() -> None:
    known = _known_variables()
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    named = set(compose["services"]["mailfix"]["environment"])
    for line in (ROOT / "deploy" / "mailfix.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            named.add(line.split("=", 1)[0])
    named |= set(re.findall(r"\b(MAILFIX_[A-Z_]+)=", (ROOT / "Dockerfile").read_text()))
    assert named - known == set()
