"""Profile traits: merged per trait, the latest by event time wins (not arrival order)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

MAX_TRAITS = 100


def merge_traits(
    current: dict[str, Any], times: dict[str, Any], new: dict[str, Any], at: datetime, only_gaps: bool = False
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """`new` traits seen at `at`, merged into copies of `current` and its per-trait `times`.
    With `only_gaps` (a $set_once), a trait already held is kept whatever its time.

    Returns the merged (traits, times), or None when nothing changed. The inputs are left as they
    are: the caller assigns the copies, which is how the ORM notices the change.
    """
    traits, stamps = dict(current), dict(times)
    stamp = at.isoformat()
    changed = False
    for key, value in new.items():
        if key not in traits and len(traits) >= MAX_TRAITS:
            continue
        if only_gaps and traits.get(key) is not None:
            continue
        seen = stamps.get(key)
        if seen is not None and datetime.fromisoformat(seen) > at:
            continue  # an older identify arriving late does not overwrite a newer value
        if traits.get(key) != value or seen != stamp:
            traits[key] = value
            stamps[key] = stamp
            changed = True
    return (traits, stamps) if changed else None


# Control characters, and characters that change how text around them is shown (bidi overrides
# that reverse a name, zero-width spaces that hide one): never stored in a display column.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def printable(value: str) -> str:
    """`value` with control, bidi and zero-width characters replaced by spaces, spaces folded."""
    return " ".join(_UNSAFE.sub(" ", value).split())


def _text(value: Any, limit: int) -> str | None:
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = printable(str(value))
    return text[:limit] or None


def user_columns(traits: dict[str, Any]) -> dict[str, Any]:
    email = _text(traits.get("email"), 1000)
    email = email.casefold() if email and "@" in email else None
    name = _text(traits.get("name"), 255)
    if not name:
        parts = [_text(traits.get(k), 120) for k in ("firstName", "first_name", "lastName", "last_name")]
        name = " ".join(p for p in parts if p)[:255] or None
    # Apps send the job title as `title` and the in-app role (admin, owner, billing) as `role`:
    # keep both, so neither hides that someone can buy.
    roles = [_text(traits.get(k), 120) for k in ("title", "job_title", "role")]
    role = " · ".join(dict.fromkeys(r for r in roles if r))[:255] or None
    # Case-folding can lengthen text (ß → ss): an address that no longer fits is not an address.
    return {"email": email if email and len(email) <= 320 else None, "name": name, "role": role}


def domain_of(value: Any) -> str | None:
    """`acme.com` from `https://www.acme.com/about`, `acme.com` or `ann@acme.com`; else None."""
    text = _text(value, 1000)
    if not text:
        return None
    text = text.casefold()
    if "@" in text and "/" not in text:
        text = text.rsplit("@", 1)[1]
    try:
        host = urlsplit(text if "//" in text else f"//{text}").hostname or ""
    except ValueError:  # "[::1", "http://[oops": not a host
        return None
    host = host.removeprefix("www.").rstrip(".")  # "acme.com." is acme.com
    return host if "." in host and len(host) <= 255 else None


def name_key(name: str) -> str:
    """How names are compared: case-folded with Unicode rules (SQLite's lower() is ASCII only)."""
    return printable(name).casefold()[:600]


def account_columns(traits: dict[str, Any]) -> dict[str, Any]:
    name = _text(traits.get("name"), 255)
    return {
        "name": name,
        "name_key": name_key(name) if name else None,
        "domain": domain_of(traits.get("domain") or traits.get("website")),
    }
