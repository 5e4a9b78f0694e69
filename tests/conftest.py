"""Fixtures: real databases (SQLite always, PostgreSQL when PQLBOT_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from storage import Database
from tests.support import LiveServer, live_server, sqlite_url

POSTGRES_URL = os.environ.get("PQLBOT_TEST_POSTGRES_URL")


def _reset_postgres(url: str) -> None:
    db = Database(url)
    with db.engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    db.dispose()


def _params() -> list[object]:
    return [
        "sqlite",
        pytest.param(
            "postgresql", marks=pytest.mark.skipif(not POSTGRES_URL, reason="PQLBOT_TEST_POSTGRES_URL is not set")
        ),
    ]


@pytest.fixture(params=_params())
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    assert POSTGRES_URL
    _reset_postgres(POSTGRES_URL)
    return POSTGRES_URL


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    database.upgrade()
    yield database
    database.dispose()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(sqlite_url(tmp_path)) as s:
        yield s


@pytest.fixture
def any_server(db_url: str) -> Iterator[LiveServer]:
    """A live server on each database."""
    with live_server(db_url) as s:
        yield s
