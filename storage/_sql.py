"""Small SQL helpers shared by the storage modules (dialect-specific upserts, chunking)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

T = TypeVar("T")

# SQLite allows 32,766 bound parameters a statement; stay well below for wide rows.
CHUNK = 400


def chunks(items: Sequence[T] | Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def insert(session: Session, table: Table) -> Any:
    """An INSERT that knows ON CONFLICT on both SQLite and PostgreSQL."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def affected(result: Any) -> int:
    """Rows an UPDATE or DELETE changed (how a compare-and-set knows it won)."""
    return int(getattr(result, "rowcount", 0) or 0)


def many(session: Session, statement: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Run one statement for many parameter sets (executemany): compiled once, sent in batches."""
    if rows:
        session.connection().execute(statement, list(rows))
