"""Facts in, score out: pure, explainable, evaluated at a given `now`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from scoring.model import Model, Signal


@dataclass(frozen=True, slots=True)
class Facts:
    """What is known of a user or an account at `now`.

    `measures` maps a signal id to how many matching events (or distinct values) fall in the
    signal's window; `last_active_at` is the latest track/page/screen call (or, for someone
    who has not used the product yet, when they were first seen).
    """

    measures: Mapping[str, int] = field(default_factory=dict)
    last_active_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SignalResult:
    id: str
    label: str
    points: int
    fired: bool
    measure: int
    needed: int

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "label": self.label,
            "points": self.points,
            "fired": self.fired,
            "measure": self.measure,
            "needed": self.needed,
        }


@dataclass(frozen=True, slots=True)
class Score:
    total: int
    breakdown: tuple[SignalResult, ...]
    threshold: int

    @property
    def qualified(self) -> bool:
        return self.total >= self.threshold

    @property
    def fired(self) -> tuple[SignalResult, ...]:
        return tuple(r for r in self.breakdown if r.fired)

    def as_dict(self) -> dict[str, object]:
        return {"total": self.total, "threshold": self.threshold, "breakdown": [r.as_dict() for r in self.breakdown]}


def idle_days(last_active_at: datetime | None, now: datetime) -> int | None:
    if last_active_at is None:
        return None
    return max(0, (now - last_active_at) // timedelta(days=1))


def _result(signal: Signal, facts: Facts, now: datetime) -> SignalResult:
    if signal.inactive_days is not None:
        days = signal.inactive_days
        last = facts.last_active_at
        # "No activity in the last N days": an event exactly N days ago is outside the window.
        fired = last is not None and now - last >= timedelta(days=days)
        return SignalResult(signal.id, signal.label, signal.points, fired, idle_days(last, now) or 0, days)
    measure = max(0, int(facts.measures.get(signal.id, 0)))
    return SignalResult(signal.id, signal.label, signal.points, measure >= signal.min_count, measure, signal.min_count)


def evaluate(model: Model, facts: Facts, now: datetime) -> Score:
    """Score `facts` with `model` at `now`: the total and every signal's part in it."""
    breakdown = tuple(_result(s, facts, now) for s in model.signals)
    total = sum(r.points for r in breakdown if r.fired)
    return Score(total=total, breakdown=breakdown, threshold=model.threshold)


def crossed(previous_total: int | None, current_total: int, threshold: int) -> bool:
    """True when a score reaches the threshold from below (or from nothing)."""
    return current_total >= threshold and (previous_total is None or previous_total < threshold)
