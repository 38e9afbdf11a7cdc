"""The Slack app manifest and the Teams app package, built for one public base URL.

`mailfix manifests --url https://bot.contoso.com --out DIR` writes:
- `slack-manifest.yaml`: paste it into api.slack.com -> Create New App -> From a manifest
  (`_metadata.major_version: 1`, the format of the app configuration pages; reference A10);
- `mailfix-teams.zip`: `manifest.json` (Teams manifest v1.30), `color.png` (192×192) and
  `outline.png` (32×32, white on transparent) at the zip root, ready for Teams -> Apps ->
  Manage your apps -> Upload an app (reference B9).

Everything is built in code from dicts and dumped by the YAML / JSON libraries, so nothing the
URL holds can change the structure. The icons are drawn here too (a tiny PNG encoder), so the
package needs no binary files in the repository. Output is byte-for-byte reproducible: fixed zip
timestamps, no clock.
"""

from __future__ import annotations

import io
import ipaddress
import json
import logging
import re
import struct
import uuid
import zipfile
import zlib
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

log = logging.getLogger(__name__)

NAME = "mailfix"
SLACK_FILE = "slack-manifest.yaml"
TEAMS_FILE = "mailfix-teams.zip"
TEAMS_SCHEMA = "https://developer.microsoft.com/json-schemas/teams/v1.30/MicrosoftTeams.schema.json"
TEAMS_MANIFEST_VERSION = "1.30"
PLACEHOLDER_BOT_ID = "00000000-0000-0000-0000-000000000000"
ACCENT = "#2B5797"
SLACK_BACKGROUND = "#1D3F73"
SHORT_DESCRIPTION = "Finds why a mail app cannot reach an Exchange Online mailbox."
FULL_DESCRIPTION = (
    "mailfix asks a few questions, then checks what Microsoft's Remote Connectivity Analyzer "
    "checks - DNS, Autodiscover, the network path to Exchange Online, sign-in federation - "
    "without ever asking for a password. It shows the most likely cause with its evidence and "
    "the next steps for your mail app, and hands the case to the helpdesk with one click."
)
# The Slack scopes the bot uses (bot/slack.py): the command, posting and editing its messages,
# posting where it was not invited, opening DMs, reading profiles to prefill the address, and
# the helpdesk channel's name for the person's receipt.
SLACK_SCOPES = (
    "commands",
    "chat:write",
    "chat:write.public",
    "im:write",
    "users:read",
    "users:read.email",
    "channels:read",
)
# Declared in the manifest, asked for by an OAuth install only when needed: approvers given as
# a Slack user group (S…).
SLACK_OPTIONAL_SCOPES = ("usergroups:read",)
# The Teams command menu (§B7: titles of at most 12 characters).
TEAMS_COMMANDS = (
    ("mailfix", "Check why a mail app cannot connect: mailfix [address]"),
    ("help", "What mailfix does and how to start it"),
)
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


# --- the URL ---------------------------------------------------------------------------------


def base_url(url: str) -> tuple[str, str]:
    """`(base URL without a trailing slash, host)`, or ValueError saying what is wrong.

    Slack and Teams call the bot from the internet over HTTPS, so the URL must be https with a
    public DNS name: no IP literal, no single-label or `.local` name, no credentials, query or
    fragment. A path is kept (a reverse proxy may serve the bot under one).
    """
    if not isinstance(url, str) or len(url) > 2000 or any(c.isspace() for c in url):
        raise ValueError("--url must be an https:// URL without spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"--url is not a valid URL: {exc}") from exc
    if parts.scheme != "https":
        raise ValueError("--url must start with https:// (Slack and Teams only call HTTPS)")
    if parts.username is not None or parts.password is not None:
        raise ValueError("--url must not contain a user name or password")
    if parts.query or parts.fragment:
        raise ValueError("--url must not have a query or a fragment")
    host = (parts.hostname or "").rstrip(".")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        raise ValueError("--url needs a DNS name, not an IP address (Teams validDomains)")
    try:
        host = host.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise ValueError(f"--url host {host!r} is not a valid DNS name") from exc
    labels = host.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"--url host {host!r} is not a public DNS name")
    if labels[-1] in ("local", "localhost", "internal", "test", "invalid") or labels[-1].isdigit():
        raise ValueError(f"--url host {host!r} is not reachable from Slack or Teams")
    netloc = host if port is None else f"{host}:{port}"
    path = parts.path.rstrip("/")
    return f"https://{netloc}{path}", host


def _version() -> str:
    try:
        return metadata.version("mailfix")
    except metadata.PackageNotFoundError:
        return "0.1.0"


# --- Slack -----------------------------------------------------------------------------------


def slack_manifest(url: str) -> dict[str, Any]:
    base, _ = base_url(url)
    events = f"{base}/slack/events"
    return {
        "_metadata": {"major_version": 1, "minor_version": 1},
        "display_information": {
            "name": NAME,
            "description": SHORT_DESCRIPTION,
            "background_color": SLACK_BACKGROUND,
        },
        "features": {
            "app_home": {
                "home_tab_enabled": True,
                "messages_tab_enabled": True,
                "messages_tab_read_only_enabled": False,
            },
            "bot_user": {"display_name": NAME, "always_online": True},
            "slash_commands": [
                {
                    "command": "/mailfix",
                    "url": events,
                    "description": "Find why a mail app cannot reach its mailbox",
                    "usage_hint": "[name@contoso.com]",
                    "should_escape": False,
                }
            ],
        },
        "oauth_config": {
            # Where a multi-workspace install comes back (MAILFIX_SLACK_CLIENT_ID is set).
            "redirect_urls": [f"{base}/slack/oauth_redirect"],
            "scopes": {"bot": [*SLACK_SCOPES, *SLACK_OPTIONAL_SCOPES]},
        },
        "settings": {
            "event_subscriptions": {"request_url": events, "bot_events": ["app_home_opened"]},
            "interactivity": {"is_enabled": True, "request_url": events},
            "org_deploy_enabled": False,
            "socket_mode_enabled": False,
            "token_rotation_enabled": False,
        },
    }


def slack_yaml(url: str) -> str:
    header = (
        "# Slack app manifest for mailfix (generated by `mailfix manifests`; do not edit).\n"
        "# api.slack.com/apps -> Create New App -> From a manifest -> paste this.\n"
    )
    body = yaml.safe_dump(
        slack_manifest(url), sort_keys=False, allow_unicode=True, default_flow_style=False
    )
    return header + body


# --- Teams -----------------------------------------------------------------------------------


def teams_manifest(url: str, bot_id: str | None = None) -> dict[str, Any]:
    base, host = base_url(url)
    bot_id = _bot_id(bot_id)
    # Stable per bot and URL: regenerating the package updates the same app in Teams.
    app_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{base}#mailfix-teams-app#{bot_id.lower()}"))
    return {
        "$schema": TEAMS_SCHEMA,
        "manifestVersion": TEAMS_MANIFEST_VERSION,
        "version": _version(),
        "id": app_id,
        "developer": {
            "name": "mailfix",
            "websiteUrl": base,
            "privacyUrl": f"{base}/privacy",
            "termsOfUseUrl": f"{base}/terms",
        },
        "name": {"short": NAME, "full": "mailfix - mail connection checks"},
        "description": {"short": SHORT_DESCRIPTION, "full": FULL_DESCRIPTION},
        "icons": {"color": "color.png", "outline": "outline.png"},
        "accentColor": ACCENT,
        "bots": [
            {
                "botId": bot_id,
                "scopes": ["personal", "team", "groupChat"],
                "commandLists": [
                    {
                        "scopes": ["personal", "team", "groupChat"],
                        "commands": [
                            {"title": title, "description": text} for title, text in TEAMS_COMMANDS
                        ],
                    }
                ],
                "isNotificationOnly": False,
                "supportsFiles": False,
            }
        ],
        "validDomains": [host],
    }


def _bot_id(bot_id: str | None) -> str:
    if bot_id is None:
        from bot.settings import Settings  # noqa: PLC0415  (reads the environment)

        bot_id = Settings().teams_app_id
    if not bot_id:
        log.warning(
            "MAILFIX_TEAMS_APP_ID is not set: the Teams package uses the placeholder bot id %s; "
            "set it to the Azure Bot's app id and generate the package again before uploading.",
            PLACEHOLDER_BOT_ID,
        )
        return PLACEHOLDER_BOT_ID
    if not _GUID.match(bot_id):
        raise ValueError("MAILFIX_TEAMS_APP_ID must be the Azure Bot's app id (a GUID)")
    return bot_id.lower()


def teams_package(url: str, bot_id: str | None = None) -> bytes:
    """The zip Teams accepts: manifest.json, color.png and outline.png at its root."""
    files = {
        "manifest.json": (json.dumps(teams_manifest(url, bot_id), indent=2) + "\n").encode(),
        "color.png": color_icon(),
        "outline.png": outline_icon(),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


# --- icons: a tiny PNG encoder ---------------------------------------------------------------


def png(width: int, height: int, rgba: list[list[tuple[int, int, int, int]]]) -> bytes:
    """An 8-bit RGBA PNG (colour type 6), one zlib stream, filter 0 on every row."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    raw = b"".join(b"\x00" + b"".join(struct.pack("4B", *px) for px in row) for row in rgba)
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def _envelope(size: int, margin: float, stroke: float) -> list[list[bool]]:
    """Which pixels of a `size`² square draw an envelope outline (box plus the flap's V)."""
    left, right = margin * size, (1 - margin) * size
    top, bottom = (0.5 - 0.32 * (1 - 2 * margin)) * size, (0.5 + 0.32 * (1 - 2 * margin)) * size
    middle_x, flap_y = size / 2, top + (bottom - top) * 0.55
    half = stroke * size / 2
    grid = []
    for y in range(size):
        row = []
        for x in range(size):
            cx, cy = x + 0.5, y + 0.5
            inside = left - half <= cx <= right + half and top - half <= cy <= bottom + half
            edge = inside and (
                abs(cx - left) <= half
                or abs(cx - right) <= half
                or abs(cy - top) <= half
                or abs(cy - bottom) <= half
            )
            flap = False
            if left <= cx <= right and top <= cy <= flap_y + half:
                # distance to the line from a top corner to the flap's tip
                ax = left if cx <= middle_x else right
                dx, dy = middle_x - ax, flap_y - top
                length = (dx * dx + dy * dy) ** 0.5
                flap = abs(dy * (cx - ax) - dx * (cy - top)) / length <= half
            row.append(edge or flap)
        grid.append(row)
    return grid


def color_icon() -> bytes:
    """192×192: a white envelope on the accent colour (Teams: the full-colour icon)."""
    size = 192
    accent = tuple(int(ACCENT[i : i + 2], 16) for i in (1, 3, 5))
    background = (*accent, 255)
    white = (255, 255, 255, 255)
    shape = _envelope(size, 0.2, 0.045)
    pixels = [[white if on else background for on in row] for row in shape]
    return png(size, size, pixels)  # type: ignore[arg-type]


def outline_icon() -> bytes:
    """32×32: the envelope in white on a transparent background (Teams: the outline icon)."""
    size = 32
    shape = _envelope(size, 0.09, 0.07)
    pixels = [[(255, 255, 255, 255) if on else (0, 0, 0, 0) for on in row] for row in shape]
    return png(size, size, pixels)


# --- writing ---------------------------------------------------------------------------------


def write_manifests(url: str, out: Path, *, bot_id: str | None = None) -> list[Path]:
    """Write the Slack manifest and the Teams package for `url` into `out`; their paths.

    ValueError for a URL Slack or Teams cannot call (not https, no public DNS name) or a
    `MAILFIX_TEAMS_APP_ID` that is not a GUID. `bot_id` None reads MAILFIX_TEAMS_APP_ID.
    """
    slack = slack_yaml(url)
    package = teams_package(url, bot_id)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / SLACK_FILE, out / TEAMS_FILE]
    written[0].write_text(slack, encoding="utf-8")
    written[1].write_bytes(package)
    return written


def write_readable_copy(url: str, out: Path) -> list[Path]:
    """The checked-in copy under `manifests/`: the Slack YAML and the Teams files unzipped."""
    out = Path(out)
    (out / "teams").mkdir(parents=True, exist_ok=True)
    written = [out / SLACK_FILE]
    written[0].write_text(slack_yaml(url), encoding="utf-8")
    with zipfile.ZipFile(io.BytesIO(teams_package(url, PLACEHOLDER_BOT_ID))) as archive:
        for name in archive.namelist():
            path = out / "teams" / name
            path.write_bytes(archive.read(name))
            written.append(path)
    return written


if __name__ == "__main__":  # regenerate the checked-in example: python -m bot.manifests
    for path in write_readable_copy(
        "https://bot.example.com", Path(__file__).resolve().parents[1] / "manifests"
    ):
        print(path)
