"""Whom sales should contact in an account, and why.

In product-led sales the buyer is often not the most active user: someone who opened billing
or upgrade pages is asking to talk; failing that, whoever the product says is an admin, owner
or billing contact; failing that, the most active member, the champion.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

_BUYER_ROLE = re.compile(
    r"\b(admin|administrator|owner|billing|finance|founder|ceo|cto|head|vp|director)\b", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class Member:
    user_id: str
    display: str
    score: int
    activity_count: int
    last_active_at: datetime | None
    role: str | None = None
    hand_raised_at: datetime | None = None
    hand_raised_what: str | None = None


@dataclass(frozen=True, slots=True)
class Contact:
    member: Member
    reason: str
    champion: Member | None  # the most active member, when that is someone else


def _activity_key(m: Member) -> tuple[int, int, float]:
    return (m.activity_count, m.score, m.last_active_at.timestamp() if m.last_active_at else 0.0)


def champion(members: Sequence[Member]) -> Member | None:
    """The most active member (most product use, then score, then most recent)."""
    active = [m for m in members if m.activity_count > 0]
    return max(active, key=_activity_key) if active else None


def is_buyer_role(role: str | None) -> bool:
    return bool(role and _BUYER_ROLE.search(role))


def choose_contact(members: Sequence[Member]) -> Contact | None:
    """The member to contact first, with the reason a rep can repeat."""
    if not members:
        return None
    top = champion(members)
    raised = [m for m in members if m.hand_raised_at is not None]
    if raised:
        pick = max(raised, key=lambda m: m.hand_raised_at.timestamp() if m.hand_raised_at else 0.0)
        what = pick.hand_raised_what or "the upgrade or billing page"
        reason = f"raised a hand ({what})"
    else:
        buyers = [m for m in members if is_buyer_role(m.role)]
        if buyers:
            pick = max(buyers, key=_activity_key)
            reason = f"role says {pick.role}"
        elif top is not None:
            pick = top
            reason = "most active member"
        else:
            pick = max(members, key=lambda m: m.score)
            reason = "highest score"
    other = top if top is not None and top.user_id != pick.user_id else None
    return Contact(member=pick, reason=reason, champion=other)
