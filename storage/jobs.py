"""Scheduled jobs' shared state: which due time ran last, and who holds the lease on the next.

Every pqlbot process runs the same scheduler; the database decides which one runs a due time.
`take` is a compare-and-set on the job's row, so of any number of processes exactly one gets
the lease for a due time; `finish` records that due time as done. A job whose effect is one
transaction (a digest, a report, reminders) calls `finish` inside that transaction, so the
effect and "done" commit together: a crash before the commit leaves the lease to run out and
the due time to be run again, a crash after it leaves nothing to redo.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from storage._sql import affected, insert
from storage.tables import JOB_STATE, JobState


def known(*, session: Session, name: str, initial_due: datetime | None) -> datetime | None:
    """The job's last due time that ran; a job seen for the first time starts at `initial_due`
    (so a new install does not run a digest for a week it never saw)."""
    session.execute(
        insert(session, JOB_STATE)
        .values(name=name, last_due=initial_due)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    return session.scalar(select(JOB_STATE.c.last_due).where(JOB_STATE.c.name == name))


def take(*, session: Session, name: str, due: datetime, owner: str, now: datetime, lease: timedelta) -> bool:
    """Lease the run of `name` for `due` to `owner`: True for exactly one caller, and only while
    `due` has not run and no other lease is live."""
    res = session.execute(
        update(JOB_STATE)
        .where(
            JOB_STATE.c.name == name,
            or_(JOB_STATE.c.last_due.is_(None), JOB_STATE.c.last_due < due),
            or_(JOB_STATE.c.lease_until.is_(None), JOB_STATE.c.lease_until < now, JOB_STATE.c.lease_owner == owner),
        )
        .values(lease_owner=owner, lease_until=now + lease, last_started_at=now)
    )
    return affected(res) == 1


def finish(*, session: Session, name: str, due: datetime, owner: str, now: datetime) -> bool:
    """Record `due` as run (only by the lease holder, and never moving backwards)."""
    res = session.execute(
        update(JOB_STATE)
        .where(
            JOB_STATE.c.name == name,
            JOB_STATE.c.lease_owner == owner,
            or_(JOB_STATE.c.last_due.is_(None), JOB_STATE.c.last_due < due),
        )
        .values(last_due=due, lease_owner=None, lease_until=None, last_finished_at=now, last_error=None)
    )
    return affected(res) == 1


def rewind(*, session: Session, name: str, now: datetime, to: datetime | None, lease: timedelta) -> bool:
    """Undo what a clock running ahead left behind: a last due time later than `now` becomes
    `to`, and a lease that runs out further ahead than a lease can is dropped. True when either
    was found (without this, the job would wait for the wrong clock's date to come round)."""
    ahead = session.execute(
        update(JOB_STATE).where(JOB_STATE.c.name == name, JOB_STATE.c.last_due > now).values(last_due=to)
    )
    stale = session.execute(
        update(JOB_STATE)
        .where(JOB_STATE.c.name == name, JOB_STATE.c.lease_until > now + lease)
        .values(lease_owner=None, lease_until=None)
    )
    return affected(ahead) + affected(stale) > 0


def skip(*, session: Session, name: str, due: datetime) -> None:
    """Record `due` as done without running it."""
    session.execute(
        update(JOB_STATE)
        .where(JOB_STATE.c.name == name, or_(JOB_STATE.c.last_due.is_(None), JOB_STATE.c.last_due < due))
        .values(last_due=due)
    )


def fail(*, session: Session, name: str, owner: str, error: str) -> None:
    """Give the lease back after a failure: the due time runs again at the next tick."""
    session.execute(
        update(JOB_STATE)
        .where(and_(JOB_STATE.c.name == name, JOB_STATE.c.lease_owner == owner))
        .values(lease_owner=None, lease_until=None, last_error=error[:500])
    )


@dataclass(frozen=True, slots=True)
class JobStatus:
    name: str
    last_due: datetime | None
    last_finished_at: datetime | None
    last_error: str | None


def statuses(*, session: Session) -> list[JobStatus]:
    return [
        JobStatus(j.name, j.last_due, j.last_finished_at, j.last_error)
        for j in session.scalars(select(JobState).order_by(JobState.name))  # type: ignore[arg-type]
    ]
