"""Alembic environment: run with a connection handed in by storage.db.Database.upgrade."""

from alembic import context
from sqlmodel import SQLModel

import storage.tables  # noqa: F401

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `pqlbot db upgrade` (storage.db.Database.upgrade)")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
