"""Rebuilding the per-signal aggregates from stored events, after a model change alters which
events a signal counts (a new signal, other event names, a distinct property, a window).

Weights and thresholds never need this: re-scoring reads the aggregates as they are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from scoring import Event, Model, signal_hits
from storage.ingest import _Delta, apply_deltas, rebuild_accounts
from storage.tables import ACCOUNTS, EVENTS, FACTS, HITS, USER, VALUES

ACTIVITY = ("track", "page", "screen")
CHUNK = 5000

Progress = Callable[[int, int], None]


def rebuild_facts(*, session: Session, model: Model, progress: Progress | None = None) -> int:
    """Recompute every user's and account's aggregates from all stored events; events read."""
    for table in (FACTS, VALUES, HITS):
        session.execute(delete(table))
    total = int(
        session.scalar(
            select(func.count()).select_from(EVENTS).where(EVENTS.c.kind.in_(ACTIVITY), EVENTS.c.user_id.is_not(None))
        )
        or 0
    )
    done = 0
    last_id = 0
    while True:
        rows = session.execute(
            select(
                EVENTS.c.id, EVENTS.c.user_id, EVENTS.c.kind, EVENTS.c.name, EVENTS.c.occurred_at, EVENTS.c.properties
            )
            .where(EVENTS.c.id > last_id, EVENTS.c.kind.in_(ACTIVITY), EVENTS.c.user_id.is_not(None))
            .order_by(EVENTS.c.id)
            .limit(CHUNK)
        ).all()
        if not rows:
            break
        deltas: dict[tuple[str, int, str], _Delta] = defaultdict(_Delta)
        for event_id, user_id, kind, name, at, properties in rows:
            event = _event(event_id, kind, name, at, properties or {})
            for hit in signal_hits(model, event):
                deltas[(USER, user_id, hit.signal.id)].add(at, hit.value, hit.signal.window_days is not None)
        if deltas:
            apply_deltas(session, deltas)
        last_id = rows[-1][0]
        done += len(rows)
        if progress is not None:
            progress(done, total)
    rebuild_accounts(session=session, account_ids=list(session.scalars(select(ACCOUNTS.c.id))))
    return done


def _event(event_id: int, kind: str, name: str | None, at: datetime, properties: dict[str, object]) -> Event:
    path = properties.get("path")
    return Event(
        message_id=str(event_id),
        kind=kind,  # type: ignore[arg-type]  # stored events only have the kinds ingest allows
        timestamp=at,
        received_at=at,
        name=name,
        path=path if isinstance(path, str) else None,
        properties=properties,
    )
