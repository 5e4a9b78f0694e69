"""A pytest plugin for running the black-box acceptance suite on PostgreSQL:

    ACCEPTANCE_DATABASE_URL=postgresql+psycopg://... pytest -p tools.acceptance_pg ../shared/acceptance

The suite's servers all use ACCEPTANCE_DATABASE_URL; each of its tests expects a new database,
as it gets with SQLite. This empties the schema before every test (so the URL must name a
database kept for tests)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text


@pytest.fixture(autouse=True)
def _empty_postgres_schema() -> Iterator[None]:
    url = os.environ.get("ACCEPTANCE_DATABASE_URL", "")
    if url.startswith("postgresql"):
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    yield
