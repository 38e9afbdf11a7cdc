"""The Slack manifest and the Teams package, against the official schemas (read offline).

Schemas are vendored in `tests/schemas/` (source and version in its README), never downloaded.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from referencing import Registry, Resource

from bot.cli import main
from bot.manifests import (
    PLACEHOLDER_BOT_ID,
    SLACK_FILE,
    TEAMS_COMMANDS,
    TEAMS_FILE,
    base_url,
    slack_yaml,
    teams_package,
    write_manifests,
)

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "tests" / "schemas"
URL = "https://bot.example.com"
BOT_ID = "9e4cbd1c-6d2f-4f51-8b5a-7a0e1c4b2f11"
SLACK_REMOTE = "https://raw.githubusercontent.com/slackapi/manifest-schema/v0.5.0/schemas/"


def _load(name: str) -> dict[str, Any]:
    path = SCHEMAS / name
    assert path.is_file(), f"missing vendored schema {path}"
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


def teams_validator() -> Draft7Validator:
    """Draft 7 (the file says draft-04 but uses `const` and `if`/`then`; README)."""
    schema = _load("teams-manifest-v1.30.schema.json")
    # Python's `re` has no `\p{L}` (schemas/README.md): the one pattern that uses it is
    # rewritten with an equivalent class ("a Unicode letter" = a word char minus digits and _).
    text = json.dumps(schema)
    assert text.count("\\\\p{L}") == 2
    pattern = "^[\\\\p{L}][\\\\p{L}0-9._]*$"
    assert pattern in text
    text = text.replace(pattern, "^[^\\\\W\\\\d_][\\\\w.]*$")
    schema = json.loads(text)
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def slack_validators() -> list[Draft7Validator]:
    """The dispatcher (remote $refs mapped to the vendored files) and the v1 schema itself."""
    v1 = _load("slack-manifest-1.0.0.schema.json")
    v2 = _load("slack-manifest-2.0.0.schema.json")
    registry: Registry[Any] = Registry().with_resources(
        [
            (SLACK_REMOTE + "manifest.schema.1.0.0.json", Resource.from_contents(v1)),
            (SLACK_REMOTE + "manifest.schema.2.0.0.json", Resource.from_contents(v2)),
        ]
    )
    dispatcher = _load("slack-manifest.schema.json")
    return [Draft7Validator(dispatcher, registry=registry), Draft7Validator(v1)]


def errors(validator: Draft7Validator, document: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def png_size(data: bytes) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from the IHDR chunk, checking its CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    body = data[16:29]
    (crc,) = struct.unpack(">I", data[29:33])
    assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
    width, height, depth, colour = struct.unpack(">IIBB", body[:10])
    assert data.endswith(b"IEND\xaeB`\x82")
    return width, height, depth, colour


def alpha_values(data: bytes) -> set[int]:
    """Every alpha value of an 8-bit RGBA PNG written with filter 0 (ours)."""
    width, height, _, _ = png_size(data)
    idat, offset = b"", 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if kind == b"IDAT":
            idat += data[offset + 8 : offset + 8 + length]
        offset += 12 + length
    raw = zlib.decompress(idat)
    stride = 1 + 4 * width
    assert len(raw) == stride * height
    return {raw[row * stride + 1 + 4 * x + 3] for row in range(height) for x in range(width)}


# --- Teams -----------------------------------------------------------------------------------


def test_the_teams_package_is_valid_and_flat(tmp_path: Path) -> None:
    written = write_manifests(URL, tmp_path, bot_id=BOT_ID)
    assert written == [tmp_path / SLACK_FILE, tmp_path / TEAMS_FILE]
    with zipfile.ZipFile(tmp_path / TEAMS_FILE) as archive:
        assert sorted(archive.namelist()) == ["color.png", "manifest.json", "outline.png"]
        manifest = json.loads(archive.read("manifest.json"))
        color, outline = archive.read("color.png"), archive.read("outline.png")

    assert errors(teams_validator(), manifest) == []
    assert manifest["$schema"].endswith("/teams/v1.30/MicrosoftTeams.schema.json")
    assert manifest["manifestVersion"] == "1.30"
    (bot,) = manifest["bots"]
    assert bot["botId"] == BOT_ID
    assert set(bot["scopes"]) == {"personal", "team", "groupChat"}
    assert bot["isNotificationOnly"] is False and bot["supportsFiles"] is False
    titles = [c["title"] for cl in bot["commandLists"] for c in cl["commands"]]
    assert titles == ["mailfix", "help"] and all(len(t) <= 12 for t in titles)
    assert len(manifest["developer"]["name"]) <= 32
    assert len(manifest["name"]["short"]) <= 30
    assert len(manifest["description"]["short"]) <= 80
    assert manifest["validDomains"] == ["bot.example.com"]
    assert manifest["icons"] == {"color": "color.png", "outline": "outline.png"}

    assert png_size(color) == (192, 192, 8, 6)
    assert png_size(outline) == (32, 32, 8, 6)
    assert alpha_values(color) == {255}
    assert alpha_values(outline) >= {0, 255}  # transparent background, opaque outline


def test_the_app_id_is_stable_per_bot_and_url() -> None:
    def app_id(url: str, bot: str) -> str:
        with zipfile.ZipFile(io.BytesIO(teams_package(url, bot))) as archive:
            return str(json.loads(archive.read("manifest.json"))["id"])

    assert app_id(URL, BOT_ID) == app_id(URL + "/", BOT_ID.upper())
    assert app_id(URL, BOT_ID) != app_id("https://bot.contoso.com", BOT_ID)
    assert app_id(URL, BOT_ID) != app_id(URL, PLACEHOLDER_BOT_ID)
    assert teams_package(URL, BOT_ID) == teams_package(URL, BOT_ID)  # reproducible bytes


def test_without_a_bot_id_the_placeholder_is_used_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("MAILFIX_TEAMS_APP_ID", raising=False)
    with caplog.at_level(logging.WARNING, logger="bot.manifests"):
        write_manifests(URL, tmp_path)
    assert "placeholder bot id" in caplog.text
    with zipfile.ZipFile(tmp_path / TEAMS_FILE) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["bots"][0]["botId"] == PLACEHOLDER_BOT_ID

    monkeypatch.setenv("MAILFIX_TEAMS_APP_ID", BOT_ID)
    write_manifests(URL, tmp_path)
    with zipfile.ZipFile(tmp_path / TEAMS_FILE) as archive:
        assert json.loads(archive.read("manifest.json"))["bots"][0]["botId"] == BOT_ID

    monkeypatch.setenv("MAILFIX_TEAMS_APP_ID", "not-a-guid")
    with pytest.raises(ValueError, match="GUID"):
        write_manifests(URL, tmp_path)


def test_the_manifest_commands_are_what_the_bot_understands() -> None:
    from botbuilder.schema import Activity, ChannelAccount, ConversationAccount

    from bot.teams import command_of

    for title, _ in TEAMS_COMMANDS:
        activity = Activity(
            type="message",
            text=title,
            recipient=ChannelAccount(id="28:bot"),
            conversation=ConversationAccount(id="a:1", conversation_type="personal"),
        )
        assert command_of(activity) is not None, title


# --- Slack -----------------------------------------------------------------------------------


def test_the_slack_manifest_is_valid(tmp_path: Path) -> None:
    write_manifests(URL, tmp_path, bot_id=BOT_ID)
    manifest = yaml.safe_load((tmp_path / SLACK_FILE).read_text(encoding="utf-8"))
    for validator in slack_validators():
        assert errors(validator, manifest) == []
    assert manifest["_metadata"]["major_version"] == 1

    events = "https://bot.example.com/slack/events"
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == "/mailfix" and command["url"] == events
    assert command["usage_hint"]
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert manifest["features"]["app_home"]["messages_tab_enabled"] is True
    assert manifest["features"]["bot_user"]["display_name"] == "mailfix"
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert scopes >= {
        "commands",
        "chat:write",
        "chat:write.public",
        "im:write",
        "users:read",
        "users:read.email",
    }
    settings = manifest["settings"]
    assert settings["interactivity"] == {"is_enabled": True, "request_url": events}
    assert settings["event_subscriptions"] == {
        "request_url": events,
        "bot_events": ["app_home_opened"],
    }
    assert settings["socket_mode_enabled"] is False
    assert settings["token_rotation_enabled"] is False


def test_the_validators_do_reject_broken_manifests() -> None:
    """The schema checks above can fail: a broken manifest of each kind is refused."""
    slack = yaml.safe_load(slack_yaml(URL))
    broken = copy.deepcopy(slack)
    broken["features"]["slash_commands"][0]["command"] = "mailfix"  # no leading slash
    broken["settings"]["surprise"] = True
    for validator in slack_validators():
        assert len(errors(validator, broken)) >= 1

    with zipfile.ZipFile(io.BytesIO(teams_package(URL, BOT_ID))) as archive:
        teams = json.loads(archive.read("manifest.json"))
    teams["manifestVersion"] = "1.17"
    teams["bots"][0]["scopes"] = ["groupchat"]  # the enum is camelCase
    teams["name"]["short"] = "x" * 31
    found = errors(teams_validator(), teams)
    assert len(found) >= 3, found


def test_a_path_prefix_is_kept_and_odd_hosts_are_refused() -> None:
    assert base_url("https://Bot.Example.com:8443/mailfix/") == (
        "https://bot.example.com:8443/mailfix",
        "bot.example.com",
    )
    assert base_url("https://bücher.example/") == (
        "https://xn--bcher-kva.example",
        "xn--bcher-kva.example",
    )
    for bad in (
        "http://bot.example.com",
        "bot.example.com",
        "https://",
        "https://localhost",
        "https://127.0.0.1",
        "https://[::1]/",
        "https://bot.local",
        "https://user:secret@bot.example.com",
        "https://bot.example.com/?x=1",
        "https://bot.example.com/#frag",
        "https://bot.exa mple.com",
        "https://bot_example.com",
        "https://bot.example.com:99999",
        "ftp://bot.example.com",
    ):
        with pytest.raises(ValueError):
            base_url(bad)


# --- the checked-in copy and the CLI ------------------------------------------------------------


def test_the_checked_in_copy_matches_the_generator(tmp_path: Path) -> None:
    from bot.manifests import write_readable_copy

    fresh = write_readable_copy(URL, tmp_path)
    for path in fresh:
        committed = ROOT / "manifests" / path.relative_to(tmp_path)
        assert committed.is_file(), f"{committed} is missing: run python -m bot.manifests"
        assert committed.read_bytes() == path.read_bytes(), (
            f"{committed} is stale: run python -m bot.manifests"
        )


def test_cli_writes_both_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILFIX_TEAMS_APP_ID", BOT_ID)
    out = tmp_path / "out"
    main(["manifests", "--url", URL, "--out", str(out)])
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / SLACK_FILE), str(out / TEAMS_FILE)]
    assert yaml.safe_load((out / SLACK_FILE).read_text(encoding="utf-8"))["display_information"]
    with zipfile.ZipFile(out / TEAMS_FILE) as archive:
        assert json.loads(archive.read("manifest.json"))["bots"][0]["botId"] == BOT_ID


@pytest.mark.parametrize("url", ["http://bot.example.com", "not a url", "https://127.0.0.1"])
def test_cli_refuses_bad_urls_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["manifests", "--url", url, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("mailfix: error: ") and err.count("\n") == 1
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


# --- the repository stands alone ------------------------------------------------------------


def test_the_vendored_schemas_are_all_listed_with_their_source() -> None:
    readme = (SCHEMAS / "README.md").read_text(encoding="utf-8")
    files = sorted(p.name for p in SCHEMAS.glob("*.json"))
    assert files == [
        "adaptive-card-1.5.json",
        "adaptive-card-host-config.json",
        "slack-manifest-1.0.0.schema.json",
        "slack-manifest-2.0.0.schema.json",
        "slack-manifest.schema.json",
        "teams-manifest-v1.30.schema.json",
    ]
    for name in files:
        assert f"| {name} | https://github.com/" in readme, f"{name}: source not noted"
        json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    # byte-for-byte copies: git must not rewrite the Teams file's CRLF line endings
    assert b"\r\n" in (SCHEMAS / "teams-manifest-v1.30.schema.json").read_bytes()
    assert (SCHEMAS / ".gitattributes").read_text(encoding="utf-8").split() == ["*", "-text"]


def test_nothing_in_the_repository_reads_outside_it() -> None:
    """`git clone` alone must be enough: no path to a sibling `shared/` folder anywhere."""
    import re
    import subprocess

    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    sibling = "sha" + "red"  # spelled apart so this test does not find itself
    outside = re.compile(
        rf"\.\./{sibling}|/work/{sibling}|[\"']{sibling}[\"']\s*/|/\s*[\"']{sibling}[\"']"
    )
    offenders = []
    for name in filter(None, tracked):
        path = ROOT / name.decode()
        if path.suffix not in {".py", ".toml", ".cfg", ".ini", ".yaml", ".yml", ".sh", ".js"} and (
            path.name not in {"Makefile", "Dockerfile", "run"}
        ):
            continue
        if not path.is_file():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if outside.search(line):
                offenders.append(f"{name.decode()}:{number}: {line.strip()}")
    assert offenders == []
