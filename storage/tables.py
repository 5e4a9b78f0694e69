"""The tables. Instants are UTC (`UTCDateTime`); text columns have limits that match ingest's."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Column, ForeignKey, Index, Table, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.types import BigId, JSONType, UTCDateTime

USER = "u"
ACCOUNT = "a"


def _json(nullable: bool = False) -> Any:
    return Field(default_factory=dict, sa_column=Column(JSONType, nullable=nullable))


def _at(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


class Account(SQLModel, table=True):
    __tablename__ = "accounts"

    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(max_length=255, unique=True)
    name: str | None = Field(default=None, max_length=255)
    # The name as lookups compare it (case-folded in Python: SQLite's lower() is ASCII only).
    name_key: str | None = Field(default=None, max_length=600, index=True)
    domain: str | None = Field(default=None, max_length=255, index=True)
    traits: dict[str, Any] = _json()
    trait_times: dict[str, Any] = _json()
    score: int = Field(default=0, index=True)
    breakdown: dict[str, Any] = _json()
    last_active_at: datetime | None = _at()
    first_seen_at: datetime = _at(nullable=False)
    customer_since: datetime | None = _at()


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    external_id: str | None = Field(default=None, max_length=255, unique=True)
    email: str | None = Field(default=None, max_length=320, index=True)
    name: str | None = Field(default=None, max_length=255)
    role: str | None = Field(default=None, max_length=255)
    traits: dict[str, Any] = _json()
    trait_times: dict[str, Any] = _json()
    account_id: int | None = Field(default=None, sa_column=Column(ForeignKey("accounts.id"), nullable=True, index=True))
    account_since: datetime | None = _at()
    # "group": set by a group call (the latest wins); "context": by context.groupId on an event,
    # which only places someone who is in no account yet.
    account_via: str | None = Field(default=None, max_length=16)
    score: int = Field(default=0, index=True)
    breakdown: dict[str, Any] = _json()
    activity_count: int = 0
    last_active_at: datetime | None = _at()
    first_seen_at: datetime = _at(nullable=False)
    hand_raised_at: datetime | None = _at()
    hand_raised_what: str | None = Field(default=None, max_length=255)
    customer_since: datetime | None = _at()


class Identity(SQLModel, table=True):
    """Another id a user arrived under: an anonymous id, or (kind "user") a previous user id an
    alias merged into them. Only the latter stands in for a userId."""

    __tablename__ = "identities"

    anonymous_id: str = Field(primary_key=True, max_length=255)
    user_id: int = Field(sa_column=Column(ForeignKey("users.id"), nullable=False, index=True))
    kind: str = Field(default="anonymous", max_length=16)


class StoredEvent(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_user_time", "user_id", "occurred_at"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    message_id: str = Field(max_length=255, unique=True)
    # None for a group call that belongs to no user (account traits only).
    user_id: int | None = Field(default=None, sa_column=Column(ForeignKey("users.id"), nullable=True))
    kind: str = Field(max_length=16)
    name: str | None = Field(default=None, max_length=255)
    group_id: str | None = Field(default=None, max_length=255)
    occurred_at: datetime = _at(nullable=False)
    received_at: datetime = _at(nullable=False)
    properties: dict[str, Any] = _json()
    source: str = Field(default="segment", max_length=16)
    flags: str | None = Field(default=None, max_length=64)


class Fact(SQLModel, table=True):
    """Per subject (user or account) and signal: all-time count, distinct values, latest hit."""

    __tablename__ = "facts"

    subject_kind: str = Field(primary_key=True, max_length=1)
    subject_id: int = Field(primary_key=True)
    signal_id: str = Field(primary_key=True, max_length=64)
    count: int = 0
    valueless: int = 0
    distinct_count: int = 0
    last_at: datetime | None = _at()


class FactValue(SQLModel, table=True):
    """A distinct value (an invitee, an integration) seen for a subject's signal."""

    __tablename__ = "fact_values"

    subject_kind: str = Field(primary_key=True, max_length=1)
    subject_id: int = Field(primary_key=True)
    signal_id: str = Field(primary_key=True, max_length=64)
    value: str = Field(primary_key=True, max_length=200)


class FactHit(SQLModel, table=True):
    """A timed hit of a windowed signal; counted inside the rolling window, pruned after it."""

    __tablename__ = "fact_hits"
    __table_args__ = (Index("ix_fact_hits_subject", "subject_kind", "subject_id", "signal_id", "occurred_at"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    subject_kind: str = Field(max_length=1)
    subject_id: int
    signal_id: str = Field(max_length=64)
    occurred_at: datetime = _at(nullable=False)
    value: str | None = Field(default=None, max_length=200)


class Lead(SQLModel, table=True):
    """What sales works: an account, or a user who belongs to none."""

    __tablename__ = "leads"
    __table_args__ = (UniqueConstraint("subject_kind", "subject_id"),)

    id: int | None = Field(default=None, primary_key=True)
    subject_kind: str = Field(max_length=1)
    subject_id: int
    qualified: bool = False
    first_qualified_at: datetime | None = _at()  # the cohort a PQL counts in
    qualified_at: datetime | None = _at()  # the latest crossing
    pql_alerted_at: datetime | None = _at()  # the latest crossing that was announced
    cooled_at: datetime | None = _at()
    score_at_alert: int | None = None
    breakdown_at_alert: dict[str, Any] | None = _json(nullable=True)
    claimed_by: str | None = Field(default=None, max_length=32)
    claimed_at: datetime | None = _at()
    hand_raised_at: datetime | None = _at()
    hand_raise_alerted_at: datetime | None = _at()
    # The first alert of either kind: the monthly cohort a PQL counts in, and where the time to
    # convert is measured from.
    first_alerted_at: datetime | None = _at()
    converted_at: datetime | None = _at()
    created_at: datetime = _at(nullable=False)
    # Set when this lead was folded into another (a user who joined an account, two people who
    # turned out to be one): Claim buttons already posted for it act on that lead.
    merged_into: int | None = None


class Alert(SQLModel, table=True):
    """The outbox: an alert recorded with the change that caused it, delivered by a worker."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int | None = Field(default=None, sa_column=Column(ForeignKey("leads.id"), nullable=True, index=True))
    kind: str = Field(max_length=16)
    status: str = Field(default="pending", max_length=16)
    context: dict[str, Any] = _json()
    channel: str | None = Field(default=None, max_length=32)
    ts: str | None = Field(default=None, max_length=32)
    attempts: int = 0
    next_attempt_at: datetime = _at(nullable=False)
    lease_until: datetime | None = _at()
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = _at(nullable=False)
    sent_at: datetime | None = _at()
    # When the unclaimed-lead reminder was queued in this alert's thread (at most once).
    reminded_at: datetime | None = _at()


class ScoreHistory(SQLModel, table=True):
    """An account's score at the end of each day it changed (for the week-on-week trend)."""

    __tablename__ = "score_history"

    account_id: int = Field(primary_key=True)
    day: date = Field(primary_key=True)
    score: int


class ModelVersion(SQLModel, table=True):
    """Every version of the scoring model; the highest id is live."""

    __tablename__ = "model_versions"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _at(nullable=False)
    created_by: str = Field(max_length=64)
    source: str = Field(max_length=16)
    summary: str = Field(default="", max_length=1000)
    body: dict[str, Any] = _json()


class JobState(SQLModel, table=True):
    """A scheduled job's progress, shared by every pqlbot process on the database.

    `last_due` is the latest due time that has run; a process runs a due time only after taking
    the lease (a compare-and-set), so two processes never both run it."""

    __tablename__ = "job_state"

    name: str = Field(primary_key=True, max_length=64)
    last_due: datetime | None = _at()
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = _at()
    last_started_at: datetime | None = _at()
    last_finished_at: datetime | None = _at()
    last_error: str | None = Field(default=None, max_length=500)


class BackfillPosition(SQLModel, table=True):
    """How far `pqlbot backfill` has read a file (found again by a digest of its start), so an
    interrupted backfill resumes where it stopped."""

    __tablename__ = "backfill_positions"

    file_key: str = Field(primary_key=True, max_length=64)
    path: str = Field(max_length=1000)
    byte_offset: int = Field(default=0, sa_column=Column(BigId, nullable=False))
    line: int = 0
    stored: int = 0
    duplicates: int = 0
    bad: int = 0
    updated_at: datetime = _at(nullable=False)
    finished_at: datetime | None = _at()


def _table(model: type[SQLModel]) -> Table:
    return model.__table__  # type: ignore[attr-defined, no-any-return]


# Core handles for set-based statements (bulk inserts, upserts, aggregates).
ACCOUNTS = _table(Account)
USERS = _table(User)
IDENTITIES = _table(Identity)
EVENTS = _table(StoredEvent)
FACTS = _table(Fact)
VALUES = _table(FactValue)
HITS = _table(FactHit)
LEADS = _table(Lead)
ALERTS = _table(Alert)
MODEL_VERSIONS = _table(ModelVersion)
SCORE_HISTORY = _table(ScoreHistory)
JOB_STATE = _table(JobState)
BACKFILL = _table(BackfillPosition)


def pk(row: Account | User | Lead | Alert | ModelVersion) -> int:
    """The id of a row that has been stored (flushed)."""
    if row.id is None:
        raise ValueError(f"{type(row).__name__} has not been stored yet")
    return int(row.id)
