"""SQLModel tables and the queries on them. Functions are keyword-only and take a `session`."""

from storage.db import Database, DatabaseURLError
from storage.tables import ACCOUNT, USER

__all__ = ["ACCOUNT", "USER", "Database", "DatabaseURLError"]
