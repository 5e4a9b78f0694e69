"""Engine set-up: SQLite (WAL, busy timeout, one writer at a time) or PostgreSQL; migrations."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlmodel import Session, create_engine

import storage.tables  # noqa: F401  (registers the tables on SQLModel.metadata)

SQLITE_BUSY_TIMEOUT_MS = 30_000
SCORING_LOCK = 0x70716C626F74  # "pqlbot": the advisory lock key for scoring transactions


class DatabaseURLError(ValueError):
    """A DATABASE_URL pqlbot cannot use."""


def normalise_url(raw: str) -> URL:
    """Parse a database URL; PostgreSQL URLs use psycopg 3 whatever driver they name."""
    try:
        url = make_url(raw.strip())
    except ValueError:  # a port that is not a number
        raise DatabaseURLError("has a port that is not a number") from None
    except ArgumentError:
        raise DatabaseURLError(
            "is not a database URL (like sqlite:///pqlbot.db or postgresql://user@host/db)"
        ) from None
    backend = url.get_backend_name()
    if backend in ("postgres", "postgresql"):
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if url.drivername != "sqlite":
            return url.set(drivername="sqlite")
        return url
    raise DatabaseURLError(f"uses {backend!r}; pqlbot supports sqlite and postgresql")


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see _on_begin).
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A writer takes the write lock up front: a deferred transaction that later writes can
        # fail at once with SQLITE_BUSY in WAL mode instead of waiting its turn.
        immediate = conn.get_execution_options().get("pqlbot_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """One database: sessions for reading and writing, migrations, a health check."""

    def __init__(self, url: str | URL, *, pool_size: int = 10):
        self.url = normalise_url(str(url)) if isinstance(url, str) else url
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            db_path = self.url.database
            if db_path and db_path != ":memory:":
                parent = Path(db_path).expanduser().resolve().parent
                if not parent.is_dir():
                    raise DatabaseURLError(f"names a SQLite file in {parent}, which does not exist")
            self.engine = create_engine(
                self.url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True
            )
            _sqlite_setup(self.engine)
        else:
            self.engine = create_engine(
                self.url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, hide_parameters=True
            )
        self._write_engine = self.engine.execution_options(pqlbot_write=True)
        # SQLite has one writer; queueing writers here is cheaper than spinning on busy_timeout.
        self._write_lock: Any = threading.Lock() if self.is_sqlite else nullcontext()

    @contextmanager
    def write(self, *, scoring: bool = False) -> Iterator[Session]:
        """A write transaction: committed when the block ends, rolled back on error.

        `scoring=True` is for work that moves aggregates, memberships and scores (ingest,
        re-scoring, model changes). Such transactions run one at a time across every process on
        the database: on SQLite the write lock does that anyway; on PostgreSQL a transaction-level
        advisory lock does, so two replicas never interleave a membership move with the events
        that depend on it (which left account totals wrong and deadlocked).
        """
        with self._write_lock, Session(self._write_engine, expire_on_commit=False) as session:
            try:
                if scoring and not self.is_sqlite:
                    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCORING_LOCK})
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session. Rows loaded in it stay readable after the block (closing a
        session detaches them but, unlike a rollback, does not expire what was loaded)."""
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    def upgrade(self) -> None:
        """Bring the schema to the newest migration (creates it on an empty database)."""
        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        with self._write_lock, self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def revision(self) -> str | None:
        """The schema version this database is at (None: pqlbot has not set it up)."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def dispose(self) -> None:
        self.engine.dispose()
