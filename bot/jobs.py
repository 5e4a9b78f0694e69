"""Clock-driven work: re-evaluation, unclaimed reminders, the weekly digest, the monthly report.

APScheduler triggers say when each job is due (cron times in PQLBOT_TIMEZONE, through zoneinfo,
so 09:00 stays 09:00 across daylight-saving changes). Whether a due time has run is kept in the
database, not in process memory (storage.jobs): every `pqlbot serve` process ticks, and exactly
one runs each due time. A due time missed while pqlbot was down runs once at the next tick
(several missed ones run once, as the latest). A job seen for the first time does not run for
due times before it existed (a new install posts no digest for a week it never saw).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.orm import Session

from bot.services import Services
from storage import jobs as jobs_store
from storage import outbox, queries, reports
from storage.facts import current_scores
from storage.tables import pk

log = logging.getLogger("pqlbot.jobs")

TICK_SECONDS = 30
ANCHOR = datetime(2000, 1, 3, tzinfo=UTC)  # interval jobs fall on a grid from here (a Monday)
LOOKBACK = timedelta(days=70)  # how far back a cron job's latest due time is searched
REPORT_MONTHS = 6


def latest_due(trigger: BaseTrigger, now: datetime) -> datetime | None:
    """The latest time at or before `now` that `trigger` fires (in UTC)."""
    if isinstance(trigger, IntervalTrigger):
        nxt = trigger.get_next_fire_time(None, now)
        if nxt is None:
            return None
        due = nxt if nxt <= now else nxt - trigger.interval
        return due.astimezone(UTC) if due >= trigger.start_date else None
    t = trigger.get_next_fire_time(None, now - LOOKBACK)
    last = None
    while t is not None and t <= now:
        last = t
        t = trigger.get_next_fire_time(t, t + timedelta(microseconds=1))
    return last.astimezone(UTC) if last is not None else None


@dataclass
class JobRun:
    """One due time of a job, leased to this process."""

    name: str
    due: datetime
    previous: datetime | None  # the due time before this one, by the trigger
    owner: str
    now: datetime
    completed: bool = field(default=False)

    def complete(self, session: Session) -> None:
        """Record this due time as done, in the caller's transaction (so the job's effect and
        "done" commit together: it happens exactly once). A process that lost its lease (paused
        past it while another took over) raises LeaseLost: its transaction, effect and all, is
        rolled back, because the other process has done or is doing the same work."""
        if not jobs_store.finish(session=session, name=self.name, due=self.due, owner=self.owner, now=self.now):
            raise LeaseLost(self.name)
        self.completed = True


class LeaseLost(Exception):
    """Another process holds (or has finished) this due time now."""


@dataclass(frozen=True)
class Job:
    name: str
    trigger: BaseTrigger
    run: Callable[[Services, JobRun], None]
    catch_up_first: bool  # on first sight: run for the latest due time (True) or start from it
    lease: timedelta
    # A calendar job's runs are at least this far apart: when PQLBOT_TIMEZONE moves its due
    # times (Monday 09:00 in another zone), the period that already had its run is skipped.
    min_gap: timedelta = timedelta(0)


class Scheduler:
    """Runs the jobs that are due, once per due time across every process on the database."""

    def __init__(self, services: Services, jobs: list[Job] | None = None, owner: str | None = None):
        self.services = services
        self.jobs = jobs if jobs is not None else default_jobs(services)
        self.owner = owner or f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def tick(self) -> list[str]:
        """Run what is due now; the names of the jobs this process ran."""
        ran = []
        for job in self.jobs:
            try:
                if self._run_if_due(job):
                    ran.append(job.name)
            except Exception:
                log.exception("scheduled job %s failed; it runs again at the next tick", job.name)
        return ran

    def _run_if_due(self, job: Job) -> bool:
        now = self.services.clock()
        due = latest_due(job.trigger, now)
        if due is None:
            return False
        with self.services.db.write() as s:
            last = jobs_store.known(session=s, name=job.name, initial_due=None if job.catch_up_first else due)
            if jobs_store.rewind(session=s, name=job.name, now=now, to=due, lease=job.lease):
                log.warning(
                    "%s last ran for %s, later than now (%s): the clock was ahead; going on from now",
                    job.name,
                    last.isoformat() if last else "an unknown time",
                    now.isoformat(),
                )
                return False
            if last is not None and last >= due:
                return False
            if last is not None and due - last < job.min_gap:
                log.warning(
                    "%s ran for %s, less than %s before %s (did PQLBOT_TIMEZONE change?): this period has had it",
                    job.name,
                    last.isoformat(),
                    job.min_gap,
                    due.isoformat(),
                )
                jobs_store.skip(session=s, name=job.name, due=due)
                return False
            if not jobs_store.take(session=s, name=job.name, due=due, owner=self.owner, now=now, lease=job.lease):
                return False  # another process runs it
        previous = latest_due(job.trigger, due - timedelta(microseconds=1))
        if last is not None and last < due - timedelta(days=1) and job.catch_up_first is False:
            log.info("running %s for %s, missed while pqlbot was not running", job.name, due.isoformat())
        run = JobRun(job.name, due, previous, self.owner, now)
        try:
            job.run(self.services, run)
            if not run.completed:
                with self.services.db.write() as s:
                    run.complete(s)
        except LeaseLost:
            log.warning("%s for %s was taken over by another process; this one's work is undone", job.name, due)
            return False
        except Exception as exc:
            with self.services.db.write() as s:
                jobs_store.fail(session=s, name=job.name, owner=self.owner, error=f"{type(exc).__name__}: {exc}")
            raise
        return True


# --- the jobs ---------------------------------------------------------------------------------


def reevaluate(services: Services, run: JobRun | None = None) -> None:
    """Apply time-based rules (windows sliding, inactivity) without waiting for new events."""
    result = services.pipeline.rescore_all()
    log.info(
        "re-evaluated %d users and %d accounts: %d scores changed, %d crossed, %d cooled",
        result.users,
        result.accounts,
        result.changed,
        len(result.crossed),
        len(result.cooled),
    )


def remind(services: Services, run: JobRun) -> None:
    """One reminder, in the alert's thread, for a lead nobody claimed in time."""
    hours = services.settings.claim_reminder_hours
    with services.db.write() as s:
        taken = reports.take_reminders(session=s, now=run.now, after=timedelta(hours=hours))
        for alert, lead in taken:
            name, kind = reports.lead_name(s, lead)
            score = current_scores(session=s, kind=lead.subject_kind, ids=[lead.subject_id]).get(lead.subject_id)
            outbox.enqueue(
                session=s,
                kind="reminder",
                lead_id=pk(lead),
                now=run.now,
                context={
                    "kind": "reminder",
                    "lead_id": pk(lead),
                    "of": alert.kind,
                    "channel": alert.channel,
                    "thread_ts": alert.ts,
                    "name": name,
                    "subject_kind": kind,
                    "score": score,
                    "hours": hours,
                    "alerted_at": alert.sent_at.isoformat() if alert.sent_at else None,
                    "what": alert.context.get("what"),
                },
            )
        run.complete(s)
    if taken:
        log.info("reminded sales of %d unclaimed leads", len(taken))
        services.pipeline.on_alert()


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def weekly_digest(services: Services, run: JobRun) -> None:
    start = run.previous or run.due - timedelta(days=7)
    zone = services.settings.zone
    first, last = start.astimezone(zone), (run.due - timedelta(seconds=1)).astimezone(zone)
    label = f"{first.day} {first:%b} – {last.day} {last:%b %Y}"
    with services.db.write() as s:
        d = reports.digest(session=s, start=start, end=run.due)
        context = {
            "kind": "digest",
            "start": start.isoformat(),
            "end": run.due.isoformat(),
            "zone": services.settings.timezone,
            "label": label,
            "end_label": f"{run.due.astimezone(zone):%a %-d %b %H:%M}",
            "new_pqls": d.new_pqls,
            "claimed": d.claimed,
            "claimed_by": d.claimed_by,
            "unclaimed": [{k: _iso(v) for k, v in u.items()} for u in d.unclaimed],
            "unclaimed_count": d.unclaimed_count,
            "converted": d.converted,
            "movers": d.movers,
        }
        outbox.enqueue(session=s, kind="digest", now=run.now, context=context)
        run.complete(s)
    log.info("weekly digest queued: %d new PQLs, %d claimed", len(d.new_pqls), d.claimed)
    services.pipeline.on_alert()


def monthly_report(services: Services, run: JobRun) -> None:
    zone = services.settings.zone
    # The report is about the months that have ended: the latest is the one before `due`.
    last_day = run.due.astimezone(zone) - timedelta(days=1)
    with services.db.write() as s:
        rows = queries.conversion_by_month(session=s, months=REPORT_MONTHS, now=last_day, zone=zone)
        context = {
            "kind": "report",
            "month": last_day.strftime("%B %Y"),
            "zone": services.settings.timezone,
            "rows": [
                {"month": r.month, "pqls": r.pqls, "converted": r.converted, "median_days": r.median_days} for r in rows
            ],
        }
        outbox.enqueue(session=s, kind="report", now=run.now, context=context)
        run.complete(s)
    log.info("monthly conversion report for %s queued", context["month"])
    services.pipeline.on_alert()


def default_jobs(services: Services) -> list[Job]:
    settings = services.settings
    zone = settings.zone
    every = settings.reevaluate_minutes
    return [
        Job(
            "reevaluate",
            IntervalTrigger(minutes=every, start_date=ANCHOR, timezone=UTC),
            reevaluate,
            catch_up_first=True,
            lease=timedelta(minutes=max(30, every)),
        ),
        Job(
            "reminders",
            IntervalTrigger(minutes=5, start_date=ANCHOR, timezone=UTC),
            remind,
            catch_up_first=True,
            lease=timedelta(minutes=10),
        ),
        Job(
            "weekly_digest",
            CronTrigger(day_of_week="mon", hour=9, minute=0, timezone=zone),
            weekly_digest,
            catch_up_first=False,
            lease=timedelta(minutes=10),
            min_gap=timedelta(days=6),
        ),
        Job(
            "monthly_report",
            CronTrigger(day=1, hour=9, minute=0, timezone=zone),
            monthly_report,
            catch_up_first=False,
            lease=timedelta(minutes=10),
            min_gap=timedelta(days=27),
        ),
    ]


def scheduler(services: Services) -> AsyncIOScheduler:
    """APScheduler ticks the database-leased scheduler; the first tick runs at start (so a job
    missed during downtime runs then), the next every TICK_SECONDS."""
    jobs = Scheduler(services)
    sched = AsyncIOScheduler(timezone=UTC)

    async def _tick() -> None:
        await anyio.to_thread.run_sync(jobs.tick)

    sched.add_job(
        _tick,
        IntervalTrigger(seconds=TICK_SECONDS),
        id="tick",
        coalesce=True,
        max_instances=1,
        misfire_grace_time=TICK_SECONDS,
        next_run_time=datetime.now(UTC),
    )
    return sched
