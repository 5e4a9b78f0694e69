"""Block Kit messages from Jinja2 templates, escaped for Slack and held to Slack's limits.

A template writes a stream of JSON values: first `{"text": ...}` (the notification fallback),
then one JSON object per block. Every `{{ value }}` is escaped for mrkdwn (`&`, `<`, `>`, once)
and for JSON, unless it is `Trusted` (markup pqlbot built itself, such as a user mention).
HTML autoescape is not used: it is the wrong escaping for Slack.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_FIELD = 2000
MAX_HEADER = 150
MAX_BUTTON = 75
MAX_CONTEXT = 2000
MAX_TEXT = 3000  # the fallback `text`: Slack allows 40,000, notifications show far less
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SLACK_ID = re.compile(r"^[UW][A-Z0-9]{2,40}$")


class Trusted(str):
    """Text already escaped for Slack and JSON: a mention pqlbot built, or a macro's output."""


def escape(value: Any) -> str:
    """Escape for Slack mrkdwn: exactly `&`, `<` and `>`."""
    text = _CONTROL.sub("", str(value))
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _finalize(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Trusted):
        return str(value)
    return json.dumps(escape(value), ensure_ascii=False)[1:-1]


def short(value: Any, limit: int = 80) -> str:
    """Shorten a name to `limit` characters (before escaping, so no entity is ever cut)."""
    text = " ".join(str(value).split()) if value is not None else ""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def mention(user_id: Any) -> Trusted | str:
    """`<@U123>` for a real Slack user id; anything else is shown as plain, escaped text."""
    text = str(user_id or "")
    return Trusted(f"<@{text}>") if _SLACK_ID.match(text) else text


def code(value: Any) -> str:
    """A value to show inside `code`: a backtick in it would end the code span early."""
    return str(value).replace("`", "'")


def signed(points: int) -> str:
    return f"+{points}" if points > 0 else str(points)


def when(value: str | datetime | None, now: datetime | None = None) -> str:
    """`3 hours ago` (or a date for old times), from an ISO string or datetime."""
    if value is None:
        return "never"
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    if now is None:
        return at.strftime("%Y-%m-%d %H:%M UTC")
    seconds = (now - at).total_seconds()
    if seconds < 0:
        return at.strftime("%Y-%m-%d %H:%M UTC")
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            if unit == "day" and n > 60:
                return at.strftime("%Y-%m-%d")
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


def ago(value: str | datetime | None) -> Trusted | str:
    """A time Slack shows in each reader's own terms (`3 hours ago`), correct whenever the message
    is read; the fallback is the UTC time."""
    if value is None:
        return "never"
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return Trusted(f"<!date^{int(at.timestamp())}^{{ago}}|{at.strftime('%Y-%m-%d %H:%M UTC')}>")


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


_env = Environment(
    loader=PackageLoader("bot", "templates"),
    autoescape=False,
    finalize=_finalize,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(
    short=short, mention=mention, signed=signed, when=when, ago=ago, plural=plural, trusted=Trusted, code=code
)


@dataclass
class Message:
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)

    def as_kwargs(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}


def render(template: str, **context: Any) -> Message:
    """Render `template` into a message Slack will accept."""
    out = _env.get_template(template).render(**context)
    decoder = json.JSONDecoder()
    values: list[Any] = []
    pos = 0
    while True:
        while pos < len(out) and out[pos].isspace():
            pos += 1
        if pos >= len(out):
            break
        value, pos = decoder.raw_decode(out, pos)
        values.append(value)
    head, blocks = values[0], values[1:]
    return fit(Message(text=str(head.get("text", "")), blocks=blocks))


def cut(text: str, limit: int) -> str:
    """Shorten escaped mrkdwn to `limit` characters without splitting an entity or a `<...>` token."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    amp = head.rfind("&")
    if amp != -1 and ";" not in head[amp:]:
        head = head[:amp]
    lt = head.rfind("<")
    if lt != -1 and ">" not in head[lt:]:
        head = head[:lt]
    return head.rstrip() + "…"


def _fit_text(obj: dict[str, Any] | None, limit: int) -> None:
    if obj and isinstance(obj.get("text"), str):
        obj["text"] = cut(obj["text"], limit) or "…"
        if obj.get("type") == "mrkdwn":
            # Never let Slack turn text into links or mentions on its own: only the <...>
            # sequences pqlbot wrote itself (mentions, dates) are formatting.
            obj["verbatim"] = True


def fit(message: Message) -> Message:
    """Hold a message to Block Kit's limits: shorten what is long, end long lists with a count."""
    blocks = message.blocks
    if len(blocks) > MAX_BLOCKS:
        dropped = len(blocks) - (MAX_BLOCKS - 1)
        blocks = [
            *blocks[: MAX_BLOCKS - 1],
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"…and {dropped} more"}]},
        ]
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            _fit_text(block.get("text"), MAX_HEADER)
        elif kind == "section":
            _fit_text(block.get("text"), MAX_SECTION)
            fields = block.get("fields") or []
            if len(fields) > 10:
                block["fields"] = fields[:10]
            for f in block.get("fields") or []:
                _fit_text(f, MAX_FIELD)
            accessory = block.get("accessory")
            if isinstance(accessory, dict) and accessory.get("type") == "button":
                _fit_text(accessory.get("text"), MAX_BUTTON)
        elif kind == "context":
            elements = block.get("elements") or []
            block["elements"] = elements[:10]
            for el in block["elements"]:
                _fit_text(el, MAX_CONTEXT)
        elif kind == "actions":
            block["elements"] = (block.get("elements") or [])[:25]
            for el in block["elements"]:
                _fit_text(el.get("text"), MAX_BUTTON)
    return Message(text=cut(message.text, MAX_TEXT) or "pqlbot", blocks=blocks)
