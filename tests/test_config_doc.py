"""docs/configuration.md is generated from the settings model and must not go stale."""

from __future__ import annotations

from pathlib import Path

from bot.config_doc import render
from bot.settings import Settings

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_the_configuration_reference_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is stale: run .venv/bin/python -m bot.config_doc > "
        "docs/configuration.md"
    )


def test_every_setting_is_described_once_in_words() -> None:
    text = DOC.read_text(encoding="utf-8")
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no description"
        assert text.count(f"| `MAILFIX_{name.upper()}` |") == 1
    assert "None" not in text and "SecretStr" not in text
