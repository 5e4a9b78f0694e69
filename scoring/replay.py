"""Replaying history with a model, and choosing a threshold from what happened.

Pure: events go in (in time order per subject), scores come out. `calibrate` compares, for each
candidate threshold, who would have been a PQL with who went on to become a customer.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from scoring.evaluate import Facts, evaluate
from scoring.events import Event
from scoring.matching import is_activity, signal_hits
from scoring.model import Model


@dataclass
class _State:
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    valueless: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    values: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    window: dict[str, deque[tuple[datetime, str | None]]] = field(default_factory=lambda: defaultdict(deque))
    last_active: datetime | None = None


class Replayer:
    """Scores subjects event by event, remembering each one's peak score."""

    def __init__(self, model: Model):
        self.model = model
        self._states: dict[Hashable, _State] = {}
        self.peaks: dict[Hashable, int] = {}
        self.first_seen: dict[Hashable, datetime] = {}

    def add(self, subject: Hashable, event: Event) -> int | None:
        """Count one event for `subject` (events of a subject must come in time order); its score
        just after the event, or None when the event is not product use."""
        self.first_seen.setdefault(subject, event.timestamp)
        if not is_activity(event):
            return None
        state = self._states.setdefault(subject, _State())
        at = event.timestamp
        state.last_active = at if state.last_active is None or at > state.last_active else state.last_active
        for hit in signal_hits(self.model, event):
            sid = hit.signal.id
            if hit.signal.window_days is not None:
                state.window[sid].append((at, hit.value))
            else:
                state.counts[sid] += 1
                if hit.value is None:
                    state.valueless[sid] += 1
                else:
                    state.values[sid].add(hit.value)
        score = evaluate(self.model, self._facts(state, at), at).total
        if score > self.peaks.get(subject, score - 1):
            self.peaks[subject] = score
        return score

    def _facts(self, state: _State, now: datetime) -> Facts:
        measures: dict[str, int] = {}
        for signal in self.model.signals:
            sid = signal.id
            if signal.is_inactivity:
                continue
            if signal.window_days is not None:
                hits = state.window[sid]
                since = now - timedelta(days=signal.window_days)
                while hits and hits[0][0] <= since:
                    hits.popleft()
                if signal.distinct_property:
                    measures[sid] = len({v for _, v in hits if v is not None}) + sum(1 for _, v in hits if v is None)
                else:
                    measures[sid] = len(hits)
            elif signal.distinct_property:
                measures[sid] = len(state.values[sid]) + state.valueless[sid]
            else:
                measures[sid] = state.counts[sid]
        return Facts(measures=measures, last_active_at=state.last_active)


@dataclass(frozen=True, slots=True)
class Row:
    threshold: int
    pqls: int
    converted: int
    precision: float
    recall: float
    lift: float
    per_week: float

    @property
    def f1(self) -> float:
        return (
            2 * self.precision * self.recall / (self.precision + self.recall) if self.precision + self.recall else 0.0
        )


def calibrate(
    peaks: Mapping[Hashable, int], customers: set[Hashable], population: int, weeks: float, thresholds: Iterable[int]
) -> list[Row]:
    """For each threshold: how many would have been PQLs, how many of those became customers,
    precision, recall, lift over the base conversion rate, and alerts per week."""
    base = len(customers) / population if population else 0.0
    rows = []
    for t in sorted(set(thresholds)):
        pqls = [s for s, peak in peaks.items() if peak >= t]
        hit = sum(1 for s in pqls if s in customers)
        precision = hit / len(pqls) if pqls else 0.0
        recall = hit / len(customers) if customers else 0.0
        rows.append(
            Row(
                t,
                len(pqls),
                hit,
                precision,
                recall,
                precision / base if base else 0.0,
                len(pqls) / weeks if weeks > 0 else float(len(pqls)),
            )
        )
    return rows


def suggest(rows: Iterable[Row], min_precision: float | None = None) -> Row | None:
    """The threshold to use: the lowest meeting `min_precision`, else the best F1 (ties: higher);
    only thresholds that do better than the base conversion rate."""
    # A threshold whose PQLs convert no more often than everyone does (lift 1.0: every subject
    # a PQL, say) tells sales nothing; it is never suggested, however good its recall.
    useful = [r for r in rows if r.pqls and r.lift > 1.0 + 1e-9]
    if min_precision is not None:
        meeting = [r for r in useful if r.precision >= min_precision]
        return min(meeting, key=lambda r: r.threshold) if meeting else None
    best = max(useful, key=lambda r: (r.f1, r.threshold), default=None)
    return best if best is not None and best.f1 > 0 else None  # no threshold caught a customer


def candidate_thresholds(model: Model) -> list[int]:
    """Every score a subject can reach (sums of positive signal points), the live threshold too."""
    sums = {0}
    for s in model.signals:
        if s.points > 0:
            sums |= {x + s.points for x in sums}
    return sorted(x for x in sums | {model.threshold} if x > 0)
