"""Time without events: decay, reminders, digests, reports and the scheduler, under freezegun.

The runtime's clock is the wall clock, so freezegun moves everything: scoring, the scheduler's
due times and the database's leases. Jobs run through the real scheduler (`Scheduler.tick`, the
function APScheduler calls every 30 seconds), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from freezegun import freeze_time
from sqlalchemy import select

from bot.jobs import Scheduler
from storage.tables import ACCOUNTS, JOB_STATE
from tests.fakes import texts
from tests.support import CHANNEL
from tests.timekit import deliver, event, leads, outbox, runtime, send, team, tick

START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
NORTHWIND = "acct-northwind"


def account_score(rt, external_id: str = NORTHWIND) -> int:  # type: ignore[no-untyped-def]
    with rt.db.read() as s:
        return int(s.scalar(select(ACCOUNTS.c.score).where(ACCOUNTS.c.external_id == external_id)))


def pql(rt) -> None:  # type: ignore[no-untyped-def]
    """Northwind crosses 45: invited two teammates (+25), activated an integration (+20)."""
    team(rt)
    send(rt, event("u-ada", "Integration Activated", group=NORTHWIND, integration="github"))


def test_the_14_day_edge_is_reached_with_no_events(db_url: str) -> None:
    with freeze_time(START) as clock, runtime(db_url) as (rt, slack):
        pql(rt)
        assert account_score(rt) == 45 and leads(rt)[0]["qualified"]
        clock.tick(timedelta(days=14) - timedelta(minutes=1))
        tick(rt)
        assert account_score(rt) == 45, "13 days 23 hours idle is not 14 days"
        clock.tick(timedelta(minutes=1))
        tick(rt)
        assert account_score(rt) == 30, "14 days idle: -15, with no new event"
        lead = leads(rt)[0]
        assert not lead["qualified"] and lead["cooled_at"] is not None
        # Back in the product: the lead crosses anew and sales hears about it again.
        deliver(rt)
        posted = len(slack.posted())
        send(rt, event("u-ada", "Core Feature Used", group=NORTHWIND))
        assert leads(rt)[0]["qualified"]
        deliver(rt)
        assert len(slack.posted()) == posted + 1 and slack.posted()[-1]["text"].startswith("PQL")


def test_the_7_day_window_slides_without_events(db_url: str) -> None:
    with freeze_time(START) as clock, runtime(db_url) as (rt, _):
        team(rt)  # +25
        send(rt, *[event("u-ada", "Core Feature Used", group=NORTHWIND) for _ in range(5)])  # +15
        send(rt, *[event("u-ada", "Project Created", group=NORTHWIND, project_id=f"p{i}") for i in range(3)])  # +10
        assert account_score(rt) == 50 and leads(rt)[0]["qualified"]
        clock.tick(timedelta(days=7) - timedelta(minutes=1))
        tick(rt)
        assert account_score(rt) == 50
        clock.tick(timedelta(minutes=2))
        tick(rt)
        assert account_score(rt) == 35, "last week's core uses fell out of the 7-day window"
        assert not leads(rt)[0]["qualified"], "the lead cooled"


def _story(rt, clock) -> None:  # type: ignore[no-untyped-def]
    """Three accounts over three weeks: one goes quiet, one loses its weekly habit, one stays."""
    for n, acct in enumerate(("acct-a", "acct-b", "acct-c")):
        user = f"u-{acct}"
        send(
            rt,
            event(user, kind="group", group=acct, name=acct.upper()),
            event(user, "Invite Sent", group=acct, invitee_email=f"x@{acct}.example"),
            event(user, "Invite Sent", group=acct, invitee_email=f"y@{acct}.example"),
            *[event(user, "Core Feature Used", group=acct) for _ in range(5 if n else 0)],
            *([event(user, "Integration Activated", group=acct, integration="jira")] if n != 1 else []),
        )
        clock.tick(timedelta(hours=5))
    for _ in range(4):  # acct-c keeps using the product every few days
        clock.tick(timedelta(days=3))
        send(rt, event("u-acct-c", "Core Feature Used", group="acct-c"))


def _state(rt) -> list[tuple]:  # type: ignore[no-untyped-def,type-arg]
    with rt.db.read() as s:
        scores = sorted(s.execute(select(ACCOUNTS.c.external_id, ACCOUNTS.c.score)).all())
    return scores + sorted((lead["subject_id"], lead["qualified"]) for lead in leads(rt))


def test_hourly_or_once_after_a_long_gap_gives_the_same_result(tmp_path) -> None:  # type: ignore[no-untyped-def]
    end = START + timedelta(days=25)
    results = []
    for every in (timedelta(hours=1), None):
        with freeze_time(START) as clock, runtime(f"sqlite:///{tmp_path}/{bool(every)}.db") as (rt, _):
            _story(rt, clock)
            scheduler = Scheduler(rt.services, owner="test")
            if every:
                while datetime.now(UTC) < end:
                    clock.tick(every)
                    scheduler.tick()
            else:
                clock.move_to(end)
                scheduler.tick()
            results.append(_state(rt))
    assert results[0] == results[1]
    assert [score for _, score in results[0][:3]] != [0, 0, 0]


def test_an_unclaimed_lead_gets_one_reminder_in_its_alert_thread_after_24_hours(db_url: str) -> None:
    with freeze_time(START) as clock, runtime(db_url) as (rt, slack):
        pql(rt)
        deliver(rt)
        assert len(slack.posted()) == 1
        alert_ts = outbox(rt, "pql")[0]["ts"]
        scheduler = Scheduler(rt.services, owner="test")
        clock.tick(timedelta(hours=24) - timedelta(minutes=6))
        scheduler.tick()
        deliver(rt)
        assert len(slack.posted()) == 1, "no reminder before 24 hours"
        clock.tick(timedelta(minutes=6))
        scheduler.tick()
        deliver(rt)
        reminder = slack.posted()[-1]
        assert len(slack.posted()) == 2
        assert reminder["thread_ts"] == alert_ts and reminder["channel"] == CHANNEL
        assert "Northwind Traders" in texts(reminder) and "24 hours" in texts(reminder)
        assert any(b.get("action_id") == "claim_lead" for blk in reminder["blocks"] for b in blk.get("elements", []))
        for step in (timedelta(minutes=5), timedelta(hours=1), timedelta(days=1), timedelta(days=3)):
            clock.tick(step)
            scheduler.tick()
            deliver(rt)
        assert len(slack.posted()) == 2, "never a second reminder"


def test_a_claimed_lead_gets_no_reminder(db_url: str) -> None:
    from storage import leads as leads_store

    with freeze_time(START) as clock, runtime(db_url) as (rt, slack):
        pql(rt)
        deliver(rt)
        with rt.db.write() as s:
            leads_store.claim(session=s, lead_id=leads(rt)[0]["id"], user="UREP0001", now=datetime.now(UTC))
        clock.tick(timedelta(hours=25))
        tick(rt)
        deliver(rt)
        assert len(slack.posted()) == 1


def _due_runs(rt, name: str) -> datetime | None:  # type: ignore[no-untyped-def]
    with rt.db.read() as s:
        return s.scalar(select(JOB_STATE.c.last_due).where(JOB_STATE.c.name == name))


def test_weekly_digest_is_monday_0900_local_across_a_dst_change(db_url: str) -> None:
    # New York moves its clocks forward on Sunday 8 March 2026: Monday 09:00 is 14:00 UTC on
    # 2 March and 13:00 UTC on 9 March.
    with (
        freeze_time("2026-03-02 13:59:00") as clock,
        runtime(db_url, PQLBOT_TIMEZONE="America/New_York") as (rt, slack),
    ):
        scheduler = Scheduler(rt.services, owner="test")
        scheduler.tick()
        assert outbox(rt, "digest") == [], "a new install posts no digest for a week it never saw"
        clock.move_to("2026-03-02 14:00:00")
        assert "weekly_digest" in scheduler.tick()
        assert len(outbox(rt, "digest")) == 1
        clock.move_to("2026-03-09 12:30:00")  # 08:30 in New York: this week's digest is not out yet
        pql(rt)
        clock.move_to("2026-03-09 12:59:00")
        scheduler.tick()
        assert len(outbox(rt, "digest")) == 1
        clock.move_to("2026-03-09 13:00:00")  # 09:00 EDT
        assert "weekly_digest" in scheduler.tick()
        digests = outbox(rt, "digest")
        assert len(digests) == 2
        week = digests[1]["context"]
        assert datetime.fromisoformat(week["start"]) == datetime(2026, 3, 2, 14, tzinfo=UTC)
        assert datetime.fromisoformat(week["end"]) == datetime(2026, 3, 9, 13, tzinfo=UTC)
        assert [p["name"] for p in week["new_pqls"]] == ["Northwind Traders"]
        clock.move_to("2026-03-09 14:00:00")
        scheduler.tick()
        assert len(outbox(rt, "digest")) == 2, "09:00 EST no longer exists this week"
        deliver(rt)
        posted = [m for m in slack.posted() if m["text"].startswith("Weekly PQL digest")]
        assert len(posted) == 2 and "Northwind Traders" in texts(posted[1])
        assert "1 new PQL" in posted[1]["text"] and "1 waiting for a claim" in posted[1]["text"]


def test_monthly_report_counts_cohorts_by_local_month_across_a_dst_change(db_url: str) -> None:
    # New York moves its clocks back on Sunday 1 November 2026. A lead first alerted at 23:30 on
    # 31 October in New York (03:30 UTC on 1 November) is an October PQL; the report for October
    # is due at 09:00 EST on 1 November, 14:00 UTC.
    with (
        freeze_time("2026-10-20 12:00:00") as clock,
        runtime(db_url, PQLBOT_TIMEZONE="America/New_York") as (rt, slack),
    ):
        scheduler = Scheduler(rt.services, owner="test")
        scheduler.tick()
        clock.move_to("2026-11-01 03:30:00")
        pql(rt)
        clock.move_to("2026-11-01 13:00:00")  # 08:00 EST
        scheduler.tick()
        assert outbox(rt, "report") == []
        clock.move_to("2026-11-01 14:00:00")
        assert "monthly_report" in scheduler.tick()
        (report,) = outbox(rt, "report")
        rows = {r["month"]: r["pqls"] for r in report["context"]["rows"]}
        assert rows["2026-10"] == 1 and "2026-11" not in rows
        assert report["context"]["month"] == "October 2026"
        deliver(rt)
        assert any(m["text"].startswith("Monthly PQL report for October 2026") for m in slack.posted())


def _a_first_monday_digest(db_url: str, clock: Any) -> None:
    """A new install at 08:00 on Monday 2 March 2026 (UTC) posts its first digest at 09:00."""
    with runtime(db_url) as (rt, _):
        scheduler = Scheduler(rt.services, owner="first")
        scheduler.tick()
        clock.move_to("2026-03-02 09:00:00")
        assert "weekly_digest" in scheduler.tick()


def test_a_job_missed_during_downtime_runs_once_after_a_restart(db_url: str) -> None:
    with freeze_time("2026-03-02 08:00:00") as clock:
        _a_first_monday_digest(db_url, clock)
        # pqlbot is down for three Mondays, then starts again (a new process).
        clock.move_to("2026-03-25 10:00:00")
        with runtime(db_url) as (rt, _):
            restarted = Scheduler(rt.services, owner="second")
            assert "weekly_digest" in restarted.tick()
            assert "weekly_digest" not in restarted.tick()
            digests = outbox(rt, "digest")
            assert len(digests) == 2, "three missed Mondays make one digest, not three"
            assert datetime.fromisoformat(digests[1]["context"]["end"]) == datetime(2026, 3, 23, 9, tzinfo=UTC)
            assert _due_runs(rt, "weekly_digest") == datetime(2026, 3, 23, 9, tzinfo=UTC)


def _together(*schedulers: Scheduler) -> list[str]:
    """Tick every scheduler at the same moment, each in its own thread; all the jobs they ran."""
    ran: list[list[str]] = [[] for _ in schedulers]
    barrier = threading.Barrier(len(schedulers))

    def run(i: int) -> None:
        barrier.wait()
        ran[i] = schedulers[i].tick()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(schedulers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return [job for names in ran for job in names]


def test_two_schedulers_on_one_database_run_each_job_once(db_url: str) -> None:
    with freeze_time("2026-03-03 08:00:00") as clock, runtime(db_url) as (a, slack), runtime(db_url) as (b, _):
        pql(a)
        deliver(a)
        schedulers = [Scheduler(a.services, owner="a"), Scheduler(b.services, owner="b")]
        assert sorted(_together(*schedulers)) == ["reevaluate", "reminders"]
        clock.move_to("2026-03-04 08:05:00")  # the alert has waited a day: a reminder is due
        assert sorted(_together(*schedulers)) == ["reevaluate", "reminders"]
        assert len(outbox(a, "reminder")) == 1
        clock.move_to("2026-03-09 09:00:00")  # Monday: the digest is due
        assert sorted(_together(*schedulers)) == ["reevaluate", "reminders", "weekly_digest"]
        assert len(outbox(a, "digest")) == 1
        deliver(a)
        deliver(b)
        texts_posted = [m["text"] for m in slack.posted()]
        assert sum(t.startswith("Reminder") for t in texts_posted) == 1
        assert sum(t.startswith("Weekly PQL digest") for t in texts_posted) == 1


def test_a_clock_that_ran_a_year_ahead_does_not_stop_the_jobs(db_url: str) -> None:
    """An NTP or VM glitch once left last_due a year ahead: every job waited for that date."""
    with freeze_time("2026-03-02 08:00:00") as clock, runtime(db_url) as (rt, _):
        scheduler = Scheduler(rt.services, owner="a")
        scheduler.tick()
        clock.move_to("2027-03-01 09:30:00")  # the glitch: a Monday a year ahead
        scheduler.tick()
        clock.move_to("2026-03-02 08:10:00")  # corrected
        scheduler.tick()  # notices, and goes on from now
        clock.move_to("2026-03-02 09:15:00")
        assert "reevaluate" in scheduler.tick()
        clock.move_to("2026-03-09 09:00:00")
        assert "weekly_digest" in scheduler.tick()
        assert _due_runs(rt, "weekly_digest") == datetime(2026, 3, 9, 9, tzinfo=UTC)


def test_a_process_paused_past_its_lease_posts_nothing_twice(db_url: str) -> None:
    from bot import jobs

    with freeze_time("2026-03-02 08:00:00") as clock, runtime(db_url) as (a, _), runtime(db_url) as (b, _):
        first, second = Scheduler(a.services, owner="a"), Scheduler(b.services, owner="b")
        first.tick()
        clock.move_to("2026-03-09 09:00:00")
        real = jobs.weekly_digest

        def paused(services, run):  # type: ignore[no-untyped-def]
            clock.tick(timedelta(minutes=30))  # a GC pause or a frozen VM, past the lease
            assert "weekly_digest" in second.tick()  # the other replica takes the due time over
            real(services, run)  # then this one wakes up and finishes its own

        first.jobs = [
            j if j.name != "weekly_digest" else jobs.Job(j.name, j.trigger, paused, j.catch_up_first, j.lease)
            for j in first.jobs
        ]
        assert "weekly_digest" not in first.tick()
        assert len(outbox(a, "digest")) == 1


def test_leads_a_model_change_announced_together_each_get_a_reminder_in_its_thread(db_url: str) -> None:
    from bot import model_admin

    with freeze_time(START) as clock, runtime(db_url) as (rt, slack):
        for n in (1, 2):
            send(
                rt,
                event(f"u-{n}", kind="identify", email=f"p{n}@solo{n}.example", name=f"Solo {n}"),
                event(f"u-{n}", "Integration Activated", integration="github"),
            )
        model_admin.set_threshold(rt.services, value="20", by="UADMIN01")
        deliver(rt)
        (bundle,) = outbox(rt, "bundle")
        scheduler = Scheduler(rt.services, owner="test")
        scheduler.tick()
        for step in (timedelta(hours=24), timedelta(hours=6), timedelta(days=1)):
            clock.tick(step)
            scheduler.tick()
            deliver(rt)
        reminders = [m for m in slack.posted() if m["text"].startswith("Reminder")]
        assert sorted(texts(m).split("*")[1] for m in reminders) == ["Solo 1", "Solo 2"]
        assert all(m["thread_ts"] == bundle["ts"] for m in reminders)


def test_moving_the_time_zone_west_posts_no_second_digest_that_week(db_url: str) -> None:
    with freeze_time("2026-03-02 08:00:00") as clock:
        _a_first_monday_digest(db_url, clock)
        # The same Monday, restarted with the team's own zone: 09:00 there is 17:00 UTC.
        clock.move_to("2026-03-02 17:05:00")
        with runtime(db_url, PQLBOT_TIMEZONE="America/Los_Angeles") as (rt, _):
            scheduler = Scheduler(rt.services, owner="la")
            assert not {"weekly_digest", "monthly_report"} & set(scheduler.tick())
            assert len(outbox(rt, "digest")) == 1
            clock.move_to("2026-03-09 16:05:00")  # next Monday 09:05 in Los Angeles (PDT)
            assert "weekly_digest" in scheduler.tick()
            assert len(outbox(rt, "digest")) == 2
