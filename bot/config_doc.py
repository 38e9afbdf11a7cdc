"""docs/configuration.md, generated from the settings model (its fields' docstrings).

    .venv/bin/python -m bot.config_doc > docs/configuration.md

tests/test_config_doc.py fails when the file is stale or a setting has no description, so the
reference cannot drift from the code.
"""

from __future__ import annotations

import enum
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from bot.settings import Settings

# Sections, in order: a title and the field-name prefixes (or names) that belong to it.
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Network (every connection mailfix makes)", ("dns_servers", "ca_bundle", "allowed_", "cloud")),
    ("Tenant (admin consent: tenant checks and fixes)", ("tenant_id", "client_")),
    ("Slack", ("slack_",)),
    ("Teams", ("teams_",)),
    (
        "Helpdesk and approval",
        ("helpdesk_", "approvers", "proposal_", "two_approvers", "pattern_", "retention_"),
    ),
    ("Storage", ("state_dir", "database_url")),
    ("The server", ("",)),  # everything else
)

HEADER = """# Configuration

Every setting is an environment variable with the prefix `MAILFIX_` (pydantic-settings; one
model, `bot/settings.py`). Secrets are never logged. Checks get settings as an argument and never
read the environment. Lists are comma-separated.

This file is generated from the settings model: `.venv/bin/python -m bot.config_doc >
docs/configuration.md` (a test fails when it is stale).
"""


TABLE_HEAD = "| variable | value | default | meaning |\n|---|---|---|---|"


def _kind(annotation: Any) -> str:
    """The value's kind in words."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return _kind(args[0])
    if typing.get_origin(annotation) is typing.Annotated:
        return _kind(args[0])
    if typing.get_origin(annotation) is list:
        return "list"
    if isinstance(annotation, type):
        if issubclass(annotation, SecretStr):
            return "secret"
        if issubclass(annotation, enum.Enum):
            return " \\| ".join(f"`{m.value}`" for m in annotation)
        if issubclass(annotation, bool):
            return "true / false"
        if issubclass(annotation, int):
            return "whole number"
        if issubclass(annotation, float):
            return "number"
        if issubclass(annotation, Path):
            return "file path"
    return "text"


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
        return "—" if value == [] else f"`{value}`"
    value = field.default
    if value is None or value == "":
        return "—"
    if isinstance(value, enum.Enum):
        return f"`{value.value}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _section(name: str) -> str:
    for title, prefixes in SECTIONS:
        if any(name.startswith(p) for p in prefixes):
            return title
    raise AssertionError("the last section takes every name")


def render() -> str:
    rows: dict[str, list[str]] = {title: [] for title, _ in SECTIONS}
    for name, field in Settings.model_fields.items():
        if not field.description:
            raise ValueError(f"setting {name} has no description (a docstring under it)")
        text = " ".join(field.description.split()).replace("|", "\\|")
        variable = f"`MAILFIX_{name.upper()}`"
        default = "`~/.local/state/mailfix`" if name == "state_dir" else _default(field)
        rows[_section(name)].append(
            f"| {variable} | {_kind(field.annotation)} | {default} | {text} |"
        )
    parts = [HEADER.rstrip()]
    for title, _ in SECTIONS:
        if rows[title]:
            parts += ["", f"## {title}", "", TABLE_HEAD, *rows[title]]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    print(render(), end="")
