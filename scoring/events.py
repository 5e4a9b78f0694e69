"""The one internal event type every source is translated into at the edge."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Kind = Literal["track", "identify", "group", "page", "screen", "alias"]
ACTIVITY_KINDS: frozenset[str] = frozenset({"track", "page", "screen"})
# A flag on an identify or group call whose traits only fill gaps (Mixpanel's and PostHog's
# $set_once): a trait the person or account already has is kept.
ONLY_GAPS = "set_once"


@dataclass(frozen=True, slots=True)
class Event:
    """A normalised usage event.

    `timestamp` is the instant it happened (already corrected for client clock skew, UTC);
    `received_at` is when pqlbot received it. `name` is the track event name, or the
    page/screen name. `path` is the page path where one was sent.
    """

    message_id: str
    kind: Kind
    timestamp: datetime
    received_at: datetime
    user_id: str | None = None
    anonymous_id: str | None = None
    name: str | None = None
    path: str | None = None
    group_id: str | None = None
    previous_id: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)
    source: str = "segment"
    flags: tuple[str, ...] = ()
