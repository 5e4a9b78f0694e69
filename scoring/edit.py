"""Edits to a model, and what changed between two models, in words an admin reads.

Pure: every function returns a new model (models are immutable) or raises ModelError.
"""

from __future__ import annotations

import re

from scoring.model import Model, Signal, model_from_dict, model_to_dict, normalise_name


def _validated(data: dict[str, object]) -> Model:
    return model_from_dict(data)


def with_weight(model: Model, signal_id: str, points: int) -> Model:
    data = model_to_dict(model)
    for signal in data["signals"]:
        if signal["id"] == signal_id:
            signal["points"] = points
    return _validated(data)


def with_threshold(model: Model, threshold: int) -> Model:
    data = model_to_dict(model)
    data["threshold"] = threshold
    return _validated(data)


def with_signal(model: Model, signal: dict[str, object]) -> Model:
    data = model_to_dict(model)
    data["signals"].append(signal)
    return _validated(data)


def without_signal(model: Model, signal_id: str) -> Model:
    data = model_to_dict(model)
    data["signals"] = [s for s in data["signals"] if s["id"] != signal_id]
    return _validated(data)


LISTS = {"event": "events", "page": "pages", "path": "paths"}


def hand_raiser_lists(model: Model) -> dict[str, tuple[str, ...]]:
    hr = model.hand_raisers
    return {"event": hr.events, "page": hr.pages, "path": hr.paths}


def find_hand_raiser(model: Model, what: str, name: str) -> str | None:
    """The entry of that list naming `name` (compared as pqlbot matches names), if any."""
    for entry in hand_raiser_lists(model)[what]:
        same = entry.casefold() == name.casefold() if what == "path" else normalise_name(entry) == normalise_name(name)
        if same:
            return entry
    return None


def with_hand_raiser(model: Model, what: str, name: str) -> Model:
    data = model_to_dict(model)
    data["hand_raisers"][LISTS[what]] = [*data["hand_raisers"][LISTS[what]], name]
    return _validated(data)


def without_hand_raiser(model: Model, what: str, name: str) -> Model:
    data = model_to_dict(model)
    entry = find_hand_raiser(model, what, name)
    data["hand_raisers"][LISTS[what]] = [e for e in data["hand_raisers"][LISTS[what]] if e != entry]
    return _validated(data)


def count_signal(signal_id: str, event: str, min_count: int, points: int, window_days: int | None) -> dict[str, object]:
    """A simple count signal as `/pql signal add` makes it, labelled in plain words."""
    label = f"{event} {min_count}+ time{'s' if min_count != 1 else ''}"
    if window_days:
        label += f" in {window_days} day{'s' if window_days != 1 else ''}"
    signal: dict[str, object] = {
        "id": signal_id,
        "label": label[:100],
        "events": [event],
        "min_count": min_count,
        "points": points,
    }
    if window_days:
        signal["window_days"] = window_days
    return signal


def _signal_words(s: Signal) -> str:
    if s.is_inactivity:
        return f"no activity in {s.inactive_days} days"
    what = ", ".join([*s.events, *s.pages, *(f"{p}…" for p in s.paths)])
    distinct = f" distinct {s.distinct_property} of" if s.distinct_property else ""
    return f"{s.min_count}+{distinct} {what}, {s.describe_window()}"


def diff(old: Model, new: Model) -> list[str]:
    """Each difference between two models as one line: what an audit log and a reply show."""
    lines: list[str] = []
    if old.threshold != new.threshold:
        lines.append(f"threshold {old.threshold} → {new.threshold}")
    before = {s.id: s for s in old.signals}
    after = {s.id: s for s in new.signals}
    for sid, s in after.items():
        if sid not in before:
            lines.append(f"signal {sid} added: {_signal_words(s)}, {s.points:+d}")
            continue
        b = before[sid]
        if b.points != s.points:
            lines.append(f"weight of {sid} {b.points:+d} → {s.points:+d}")
        if b.label != s.label:
            lines.append(f"label of {sid} '{b.label}' → '{s.label}'")
        if _signal_words(b) != _signal_words(s):
            lines.append(f"signal {sid}: {_signal_words(b)} → {_signal_words(s)}")
    lines.extend(f"signal {sid} removed" for sid in before if sid not in after)
    old_hr, new_hr = hand_raiser_lists(old), hand_raiser_lists(new)
    for what in ("event", "page", "path"):
        lines.extend(f"hand-raiser {what} '{x}' added" for x in new_hr[what] if x not in old_hr[what])
        lines.extend(f"hand-raiser {what} '{x}' removed" for x in old_hr[what] if x not in new_hr[what])
    if old.hand_raisers.cooldown_hours != new.hand_raisers.cooldown_hours:
        lines.append(f"hand-raiser cooldown {old.hand_raisers.cooldown_hours} h → {new.hand_raisers.cooldown_hours} h")
    if set(old.conversions.events) != set(new.conversions.events):
        lines.append(
            f"conversion events {', '.join(old.conversions.events) or 'none'} → "
            f"{', '.join(new.conversions.events) or 'none'}"
        )
    if [s.id for s in old.signals] != [s.id for s in new.signals] and not lines:
        lines.append("signals reordered")
    return lines


SIGNAL_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
