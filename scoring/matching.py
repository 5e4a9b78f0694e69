"""Which signals an event feeds, and whether it raises a hand or converts."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from scoring.events import ACTIVITY_KINDS, Event
from scoring.model import Model, Signal, normalise_name

MAX_VALUE_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Hit:
    """One event counting towards one signal; `value` is its distinct-property value, if any."""

    signal: Signal
    value: str | None


def is_activity(event: Event) -> bool:
    """Track, page and screen calls are product use; identify/group/alias are profile updates."""
    return event.kind in ACTIVITY_KINDS


def page_path(event: Event) -> str | None:
    """The page path: the event's path, else `properties.path`, else the path of `properties.url`."""
    if event.path:
        return event.path
    path = event.properties.get("path")
    if isinstance(path, str) and path.startswith("/"):
        return path
    url = event.properties.get("url")
    if isinstance(url, str) and url:
        try:
            return urlsplit(url).path or None
        except ValueError:
            return None
    return None


def _value(event: Event, prop: str) -> str | None:
    raw = event.properties.get(prop)
    if raw is None or isinstance(raw, (dict, list)):
        return None
    text = " ".join(str(raw).split()).casefold()
    return text[:MAX_VALUE_LENGTH] or None


def signal_hits(model: Model, event: Event) -> list[Hit]:
    """Every signal this event counts towards (empty for profile calls)."""
    ix = model._index
    found: list[Signal] = []
    if event.kind == "track" and event.name:
        found.extend(ix.by_event.get(normalise_name(event.name), ()))
    elif event.kind in ("page", "screen"):
        if event.name:
            found.extend(ix.by_page.get(normalise_name(event.name), ()))
        path = page_path(event)
        if path and ix.path_signals:
            lowered = path.casefold()
            found.extend(s for prefix, s in ix.path_signals if lowered.startswith(prefix) and s not in found)
    return [Hit(s, _value(event, s.distinct_property) if s.distinct_property else None) for s in found]


def hand_raiser(model: Model, event: Event) -> str | None:
    """What the person opened, if this event is a hand-raiser (upgrade, billing, pricing)."""
    ix = model._index
    if event.kind == "track" and event.name and normalise_name(event.name) in ix.hand_events:
        return event.name
    if event.kind in ("page", "screen"):
        path = page_path(event)
        if event.name and normalise_name(event.name) in ix.hand_pages:
            return f"{event.name} page ({path})" if path else f"{event.name} page"
        if path and any(path.casefold().startswith(p) for p in ix.hand_paths):
            return f"{event.name} page ({path})" if event.name else f"page {path}"
    return None


def is_conversion(model: Model, event: Event) -> bool:
    return event.kind == "track" and bool(event.name) and normalise_name(event.name or "") in model._index.conversions
