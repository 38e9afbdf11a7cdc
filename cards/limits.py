"""Platform limits a rendered card must respect, checked without any chat SDK.

The renderer uses these to pick how much detail fits; tests use them next to the official
schema (Adaptive Cards) and slack_sdk's validators (Block Kit).
Sources: reference/chat-platforms.md §A3, §A4, §A9 (Slack), §B8 (Teams).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

SlackKind = Literal["message", "modal", "home"]

SLACK_MAX_BLOCKS: dict[SlackKind, int] = {"message": 50, "modal": 100, "home": 100}
SLACK_SECTION_TEXT = 3000
SLACK_TEXT_OBJECT = 3000
SLACK_SECTION_FIELDS = 10
SLACK_FIELD_TEXT = 2000
SLACK_HEADER_TEXT = 150
SLACK_CONTEXT_ELEMENTS = 10
SLACK_ACTIONS_ELEMENTS = 25
SLACK_BUTTON_TEXT = 75
SLACK_BUTTON_VALUE = 2000
SLACK_ID = 255
SLACK_LABEL = 2000
SLACK_PLACEHOLDER = 150
SLACK_OPTION_TEXT = 75
SLACK_OPTION_VALUE = 150
SLACK_OPTIONS = 100
SLACK_MODAL_TEXT = 24  # title / submit / close
SLACK_PRIVATE_METADATA = 3000
SLACK_FALLBACK_TEXT = 40_000
SLACK_VIEW_BYTES = 250_000
# Not documented: bolt-js #2509 saw `msg_blocks_too_long` at ~13k chars of block text in one
# message. Stay below it with a margin.
SLACK_MESSAGE_TOTAL_TEXT = 12_000

# Teams: ~28 KB per message historically (BotFramework-Services #228, msteams-docs #6659;
# Workflows webhooks enforce 28,672 bytes). Keep a margin for the activity envelope.
TEAMS_CARD_BYTES = 28_000
ADAPTIVE_VERSION = "1.5"


def serialized_size(obj: Any) -> int:
    """Bytes of the compact UTF-8 JSON the platform will receive."""
    return len(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode())


def _texts(block: dict[str, Any]) -> Iterator[str]:
    """Every text-object string inside a block (for the aggregate length)."""
    stack: list[Any] = [block]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") in ("plain_text", "mrkdwn") and isinstance(node.get("text"), str):
                yield node["text"]
            else:
                stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _text_len(obj: Any) -> int:
    return len(obj["text"]) if isinstance(obj, dict) and isinstance(obj.get("text"), str) else 0


def _block_problems(i: int, b: dict[str, Any]) -> list[str]:
    p: list[str] = []
    kind = b.get("type")
    where = f"block {i} ({kind})"
    if len(b.get("block_id", "")) > SLACK_ID:
        p.append(f"{where}: block_id over {SLACK_ID}")
    if kind == "section":
        if _text_len(b.get("text")) > SLACK_SECTION_TEXT:
            p.append(f"{where}: text over {SLACK_SECTION_TEXT}")
        fields = b.get("fields", [])
        if len(fields) > SLACK_SECTION_FIELDS:
            p.append(f"{where}: more than {SLACK_SECTION_FIELDS} fields")
        p += [f"{where}: field over {SLACK_FIELD_TEXT}" for f in fields if _text_len(f) > 2000]
        if "text" not in b and not fields:
            p.append(f"{where}: needs text or fields")
    elif kind == "header":
        if _text_len(b.get("text")) > SLACK_HEADER_TEXT:
            p.append(f"{where}: text over {SLACK_HEADER_TEXT}")
    elif kind == "context":
        elements = b.get("elements", [])
        if not 1 <= len(elements) <= SLACK_CONTEXT_ELEMENTS:
            p.append(f"{where}: needs 1..{SLACK_CONTEXT_ELEMENTS} elements")
        p += [f"{where}: element text too long" for e in elements if _text_len(e) > 3000]
    elif kind == "actions":
        elements = b.get("elements", [])
        if not 1 <= len(elements) <= SLACK_ACTIONS_ELEMENTS:
            p.append(f"{where}: needs 1..{SLACK_ACTIONS_ELEMENTS} elements")
        for e in elements:
            if _text_len(e.get("text")) > SLACK_BUTTON_TEXT:
                p.append(f"{where}: button text over {SLACK_BUTTON_TEXT}")
            if len(e.get("value", "")) > SLACK_BUTTON_VALUE:
                p.append(f"{where}: button value over {SLACK_BUTTON_VALUE}")
            if len(e.get("action_id", "")) > SLACK_ID:
                p.append(f"{where}: action_id over {SLACK_ID}")
    elif kind == "input":
        if _text_len(b.get("label")) > SLACK_LABEL or _text_len(b.get("hint")) > SLACK_LABEL:
            p.append(f"{where}: label/hint over {SLACK_LABEL}")
        el = b.get("element", {})
        if _text_len(el.get("placeholder")) > SLACK_PLACEHOLDER:
            p.append(f"{where}: placeholder over {SLACK_PLACEHOLDER}")
        options = el.get("options", [])
        if len(options) > SLACK_OPTIONS:
            p.append(f"{where}: more than {SLACK_OPTIONS} options")
        for o in options:
            if _text_len(o.get("text")) > SLACK_OPTION_TEXT:
                p.append(f"{where}: option text over {SLACK_OPTION_TEXT}")
            if len(o.get("value", "")) > SLACK_OPTION_VALUE:
                p.append(f"{where}: option value over {SLACK_OPTION_VALUE}")
    return p


def slack_problems(payload: dict[str, Any], kind: SlackKind) -> list[str]:
    """Every documented Block Kit limit the payload breaks (empty list: it fits)."""
    p: list[str] = []
    blocks: list[dict[str, Any]] = payload.get("blocks", [])
    if not 1 <= len(blocks) <= SLACK_MAX_BLOCKS[kind]:
        p.append(f"{len(blocks)} blocks, allowed 1..{SLACK_MAX_BLOCKS[kind]} per {kind}")
    for i, b in enumerate(blocks):
        p += _block_problems(i, b)
    if kind == "message":
        text = payload.get("text")
        if not isinstance(text, str) or not text.strip():
            p.append("message needs a top-level text fallback")
        elif len(text) > SLACK_FALLBACK_TEXT:
            p.append(f"fallback text over {SLACK_FALLBACK_TEXT}")
        total = sum(len(t) for b in blocks for t in _texts(b))
        if total > SLACK_MESSAGE_TOTAL_TEXT:
            p.append(f"{total} chars of block text, keep under {SLACK_MESSAGE_TOTAL_TEXT}")
    else:
        if payload.get("type") != kind:
            p.append(f"view type must be {kind!r}")
        for key in ("title", "submit", "close"):
            if _text_len(payload.get(key)) > SLACK_MODAL_TEXT:
                p.append(f"{key} over {SLACK_MODAL_TEXT}")
        if len(payload.get("private_metadata", "")) > SLACK_PRIVATE_METADATA:
            p.append(f"private_metadata over {SLACK_PRIVATE_METADATA}")
        if serialized_size(payload) > SLACK_VIEW_BYTES:
            p.append(f"view over {SLACK_VIEW_BYTES} bytes")
    return p


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def adaptive_problems(card: dict[str, Any]) -> list[str]:
    """Size and structure rules the schema cannot express (empty list: it fits)."""
    p: list[str] = []
    if card.get("type") != "AdaptiveCard" or card.get("version") != ADAPTIVE_VERSION:
        p.append(f"not an AdaptiveCard {ADAPTIVE_VERSION}")
    size = serialized_size(card)
    if size > TEAMS_CARD_BYTES:
        p.append(f"card is {size} bytes, Teams allows about {TEAMS_CARD_BYTES}")
    ids: list[str] = []
    targets: list[str] = []
    for node in _walk(card):
        kind = node.get("type")
        if isinstance(kind, str) and isinstance(node.get("id"), str):
            ids.append(node["id"])
        if kind == "Action.ToggleVisibility":
            for t in node.get("targetElements", []):
                targets.append(t if isinstance(t, str) else t.get("elementId", ""))
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        p.append(f"duplicate element ids: {dupes}")
    missing = sorted(set(targets) - set(ids))
    if missing:
        p.append(f"toggle targets without an element: {missing}")
    return p
