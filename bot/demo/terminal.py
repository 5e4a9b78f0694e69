"""Block Kit messages drawn in a terminal, roughly as Slack shows them."""

from __future__ import annotations

import re
import shutil
import textwrap
import time
from typing import Any

EMOJI = {
    "fire": "🔥",
    "raised_hand": "✋",
    "white_check_mark": "✅",
    "bar_chart": "📊",
    "arrow_up": "⬆",
    "arrow_down": "⬇",
    "mag": "🔍",
    "white_circle": "⚪",
}
_ENTITY = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")


class Style:
    def __init__(self, color: bool):
        self.color = color

    def bold(self, text: str) -> str:
        return f"\033[1m{text}\033[0m" if self.color else text

    def dim(self, text: str) -> str:
        return f"\033[2m{text}\033[0m" if self.color else text

    def button(self, text: str) -> str:
        return f"\033[30;42m {text} \033[0m" if self.color else f"[ {text} ]"


def mrkdwn(text: str, style: Style, now: float | None = None) -> str:
    """Slack mrkdwn to terminal text: mentions, links, emoji, bold, entities. Relative dates are
    as a reader sees them at `now` (a Unix time; default: the wall clock)."""

    def entity(m: re.Match[str]) -> str:
        target, label = m.group(1), m.group(2)
        if target.startswith("!date^"):
            return _ago(target, label or "", now)
        if target.startswith("@"):
            return "@" + target[1:]
        if target.startswith("#"):
            return "#" + (label or target[1:])
        return label or target

    text = _ENTITY.sub(entity, text)
    text = re.sub(r":([a-z_]+):", lambda m: EMOJI.get(m.group(1), m.group(0)), text)
    text = re.sub(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])", lambda m: style.bold(m.group(1)), text)
    text = re.sub(r"`([^`\n]+)`", r"\1", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _ago(token: str, fallback: str, now: float | None = None) -> str:
    """`<!date^UNIX^{ago}|fallback>` as Slack shows it to a reader at `now`."""
    try:
        seconds = (time.time() if now is None else now) - int(token.split("^")[1])
    except (IndexError, ValueError):
        return fallback
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


def draw(message: dict[str, Any], style: Style, width: int | None = None, now: float | None = None) -> str:
    """`message` as a terminal card; relative dates as a reader saw them at `now` (Unix time)."""
    width = width or min(100, shutil.get_terminal_size((100, 24)).columns)
    inner = width - 4
    lines: list[str] = []

    def add(text: str, dim: bool = False) -> None:
        for para in text.split("\n"):
            wrapped = textwrap.wrap(para, inner, subsequent_indent="  ") or [""]
            lines.extend(style.dim(w) if dim else w for w in wrapped)

    for block in message.get("blocks") or []:
        kind = block.get("type")
        if kind == "header":
            add(style.bold(mrkdwn(block["text"]["text"], style, now)))
        elif kind == "section":
            if block.get("text"):
                add(mrkdwn(block["text"]["text"], style, now))
            for f in block.get("fields") or []:
                add(mrkdwn(f["text"], style, now))
            acc = block.get("accessory")
            if acc and acc.get("type") == "button":
                lines.append(style.button(acc["text"]["text"]))
        elif kind == "context":
            add(" · ".join(mrkdwn(e.get("text", ""), style, now) for e in block.get("elements", [])), dim=True)
        elif kind == "actions":
            lines.append(
                "  ".join(
                    style.button(e["text"]["text"]) for e in block.get("elements", []) if e.get("type") == "button"
                )
            )
        elif kind == "divider":
            lines.append("─" * inner)
    if not lines:
        add(mrkdwn(message.get("text", ""), style, now))
    top = "┌" + "─" * (width - 2) + "┐"
    bottom = "└" + "─" * (width - 2) + "┘"
    return "\n".join([top, *("│ " + ln for ln in lines), bottom])
