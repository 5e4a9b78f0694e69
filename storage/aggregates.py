"""Writing the per-signal aggregates: shared by ingest (new events) and identity (merges)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import case, or_
from sqlalchemy.orm import Session

from storage._sql import insert, many
from storage.tables import FACTS


def later(column: Any, value: Any) -> Any:
    """SQL for `max(column, value)` that treats NULL as older than anything."""
    return case((or_(column.is_(None), column < value), value), else_=column)


def add_facts(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Add counts to (subject, signal) aggregates, creating them as needed.

    Each row: subject_kind, subject_id, signal_id, count, valueless, last_at. Distinct counts
    are kept by whoever inserts the distinct values.
    """
    stmt = insert(session, FACTS)
    ex = stmt.excluded
    many(
        session,
        stmt.on_conflict_do_update(
            index_elements=["subject_kind", "subject_id", "signal_id"],
            set_={
                "count": FACTS.c.count + ex.count,
                "valueless": FACTS.c.valueless + ex.valueless,
                "last_at": later(FACTS.c.last_at, ex.last_at),
            },
        ),
        [{**row, "distinct_count": 0} for row in rows],
    )
