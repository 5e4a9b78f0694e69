"""Make untrusted input safe to store and show: ids, names, timestamps, nested properties."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from storage.traits import printable

MAX_ID = 255
MAX_NAME = 200
MAX_PATH = 1000
MAX_DEPTH = 32  # objects inside a message (properties within the message count as two levels)
JUNK_IDS = frozenset({"null", "undefined", "none", "nil", "nan", "true", "false", "0", "[object object]", "{}", "[]"})
_INVISIBLE = re.compile(r"[\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ISO = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})(?:[Tt ](?P<hm>\d{2}:\d{2})(?::(?P<s>\d{2})(?:\.(?P<frac>\d+))?)?)?"
    r"(?P<tz>[Zz]|[+-]\d{2}(?::?\d{2})?)?$"
)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
FUTURE_TOLERANCE = timedelta(minutes=5)


class FieldError(ValueError):
    """A field that cannot be used; str() names the field and the problem."""


def text(value: Any, field: str, *, limit: int = MAX_NAME, required: bool = False) -> str | None:
    """A display string: control characters become spaces, runs of spaces fold, length capped."""
    if value is None:
        if required:
            raise FieldError(f"{field} is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise FieldError(f"{field} must be a string")
    cleaned = printable(str(value))
    if not cleaned:
        if required:
            raise FieldError(f"{field} is empty")
        return None
    return cleaned[:limit]


def has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None


def escape_controls(text: str) -> str:
    """`text` with each control character written as its escape (a line break as `\\n`)."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def identifier(value: Any, field: str) -> str | None:
    """A user, anonymous, group or message id: a non-junk string (numbers are accepted as text)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise FieldError(f"{field} must be a string")
    raw = str(value).strip()
    if not raw or raw.casefold() in JUNK_IDS:
        raise FieldError(f"{field} is {str(value)[:40]!r}, which is not a real id")
    if _CONTROL.search(raw):
        raise FieldError(f"{field} contains control characters")
    if _INVISIBLE.search(raw):
        raise FieldError(f"{field} contains invisible characters (zero-width or direction marks)")
    if len(raw) > MAX_ID:
        raise FieldError(f"{field} is longer than {MAX_ID} characters")
    return raw


def mapping(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FieldError(f"{field} must be an object")
    return sanitize(value)  # type: ignore[no-any-return]


def depth(value: Any) -> int:
    """How deeply objects and arrays nest in `value` (iteratively: no recursion limit to hit)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in item)
    return deepest


def sanitize(value: Any) -> Any:
    """NUL characters cannot be stored (PostgreSQL refuses them): drop them, at any depth.

    Callers bound the depth first (MAX_DEPTH), so the recursion here stays shallow.
    """
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, dict):
        return {sanitize(str(k)): sanitize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [sanitize(v) for v in value]
    return value


def timestamp(value: Any, field: str) -> datetime | None:
    """An ISO 8601 instant with any offset (naive means UTC).

    Lenient where clients differ and nothing is lost: a lowercase `t`/`z`, more than six
    fractional digits (cut to microseconds) and a leap second (`23:59:60`, read as the last
    microsecond of that minute).
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise FieldError(f"{field} must be an ISO 8601 string")
    raw = value.strip()
    m = _ISO.match(raw)
    if not m:
        raise FieldError(f"{field} is {raw[:40]!r}, which is not an ISO 8601 date-time")
    seconds = m.group("s") or "00"
    leap = seconds == "60"
    frac = (m.group("frac") or "")[:6]
    text = f"{m.group('date')}T{m.group('hm') or '00:00'}:{'59' if leap else seconds}"
    if leap:
        text += ".999999"
    elif frac:
        text += "." + frac
    tz = (m.group("tz") or "").upper()
    try:
        parsed = datetime.fromisoformat(text + ("+00:00" if tz in ("", "Z") else tz))
    except ValueError:
        raise FieldError(f"{field} is {raw[:40]!r}, which is not a valid date-time") from None
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:  # the last day of year 9999 west of UTC: later than anything, clamped later
        return LATEST
    if parsed < EARLIEST:
        raise FieldError(f"{field} is before 1970")
    return parsed


def event_time(ts: datetime | None, sent_at: datetime | None, received_at: datetime) -> tuple[datetime, bool]:
    """When it happened, corrected for the client's clock the way Segment does it.

    `timestamp = receivedAt - (sentAt - timestamp)`. A time still in the future after that is
    clamped to the receive time (returned flag True when it was more than a few minutes ahead).
    """
    if ts is None:
        return received_at, False
    if sent_at is not None:
        try:
            ts = received_at - (sent_at - ts)
        except OverflowError:
            ts = received_at
    if ts > received_at:
        return received_at, ts - received_at > FUTURE_TOLERANCE
    return (ts if ts >= EARLIEST else EARLIEST), False
