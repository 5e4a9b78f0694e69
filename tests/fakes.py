"""Slack faked at the HTTP boundary: a real local server standing in for the Web API."""

from __future__ import annotations

import json
from typing import Any

from bot.demo.standin import SlackStandIn


def texts(obj: Any) -> str:
    """All human-readable text of a message (its text and every text inside its blocks)."""
    out: list[str] = []

    def walk(o: Any) -> None:
        if isinstance(o, dict):
            for k, v in o.items():
                if k in ("text", "value") and isinstance(v, str):
                    out.append(v)
                else:
                    walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
        elif isinstance(o, str):
            try:
                walk(json.loads(o))
            except ValueError:
                pass

    walk(obj)
    return "\n".join(out)


def blocks_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = message.get("blocks") or []
    return json.loads(blocks) if isinstance(blocks, str) else blocks


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for block in blocks_of(message):
        elements = list(block.get("elements") or [])
        if block.get("accessory"):
            elements.append(block["accessory"])
        found += [
            {**el, "_block_id": block.get("block_id")}
            for el in elements
            if isinstance(el, dict) and el.get("type") == "button"
        ]
    return found


class FakeSlack(SlackStandIn):
    """The package's Slack stand-in, with tests' predictable timestamps (1700000001.000100, ...)."""

    def __init__(self) -> None:
        super().__init__(first_ts=1_700_000_000)
