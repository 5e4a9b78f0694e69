"""`pqlbot backfill FILE`: history from JSONL or CSV, good lines stored, bad lines named."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.pipeline import Pipeline
from storage import Database
from storage.tables import ACCOUNTS, ALERTS, EVENTS, LEADS, USERS

DAY = timedelta(days=1)


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PQLBOT_", "DATABASE_URL"))}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'bf.db'}"
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )


def _db(tmp_path: Path) -> Database:
    return Database(f"sqlite:///{tmp_path / 'bf.db'}")


def _count(db: Database, table: Any, *where: Any) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def _iso(days_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days_ago)).isoformat()


def test_csv_with_good_and_bad_lines(tmp_path: Path) -> None:
    assert _cli(tmp_path, "db", "upgrade").returncode == 0
    rows = [
        "user_id,event,timestamp,account_id,invitee_email",
        f"ada,Invite Sent,{_iso(10)},acme,b@acme.example",
        f"ada,Invite Sent,{_iso(9)},acme,c@acme.example",
        f"bob,Integration Activated,{int((datetime.now(UTC) - 8 * DAY).timestamp())},acme,",
        f",Invite Sent,{_iso(3)},acme,",  # 5: no user
        "cy,Project Created,yesterday,beta,",  # 6: bad time
        "dee,Project Created",  # 7: too few fields
        f'"eve","Core Feature Used","{_iso(1)}","beta",""',
    ]
    (tmp_path / "history.csv").write_text("\n".join(rows) + "\n")
    run = _cli(tmp_path, "backfill", "history.csv")
    assert run.returncode == 1, run.stderr  # some lines were bad
    assert "Traceback" not in run.stderr
    out = run.stdout
    assert "read 7 lines of history.csv: 4 events stored, 0 already stored, 3 bad" in out
    assert "line 5: needs a user_id" in out
    assert "line 6: timestamp" in out and "yesterday" in out
    assert "line 7: has 2 fields; the header has 5" in out
    assert "1 new PQL from this history" in out and "nothing was posted" in out
    assert "backfill: 100%" in run.stderr  # progress
    db = _db(tmp_path)
    assert _count(db, EVENTS) == 4
    with db.read() as s:
        times = {n: t for n, t in s.execute(select(EVENTS.c.name, EVENTS.c.occurred_at))}
        acme = s.execute(select(ACCOUNTS.c.id, ACCOUNTS.c.score).where(ACCOUNTS.c.external_id == "acme")).one()
    assert abs((times["Integration Activated"] - (datetime.now(UTC) - 8 * DAY)).total_seconds()) < 5  # Unix time
    assert acme.score == 45  # two invites + an integration, pooled over ada and bob
    assert _count(db, LEADS, LEADS.c.qualified.is_(True)) == 1
    assert _count(db, ALERTS) == 0  # history is recorded quietly

    # Again: the position says it is done; with --restart nothing is counted twice.
    again = _cli(tmp_path, "backfill", "history.csv")
    assert again.returncode == 0 and "was read to the end" in again.stdout
    restart = _cli(tmp_path, "backfill", "history.csv", "--restart")
    assert "0 events stored, 4 already stored, 3 bad" in restart.stdout
    assert _count(db, EVENTS) == 4


def test_jsonl_segment_and_mixpanel_exports(tmp_path: Path) -> None:
    assert _cli(tmp_path, "db", "upgrade").returncode == 0
    lines = [
        json.dumps({"type": "identify", "userId": "j1", "traits": {"email": "j1@x.example"}, "timestamp": _iso(9)}),
        json.dumps(
            {
                "type": "track",
                "userId": "j1",
                "event": "Project Created",
                "messageId": "seg-1",
                "timestamp": _iso(8),
                # A Segment export: sentAt/receivedAt of that day, not today's clock.
                "sentAt": _iso(8),
                "receivedAt": _iso(8),
            }
        ),
        json.dumps({"event": "Project Created", "properties": {"distinct_id": "mx1", "time": 1763000000}}),
        "not json",
        json.dumps({"type": "track", "userId": "j2", "event": "No Time"}),
        json.dumps({"type": "track", "userId": "null", "event": "X", "timestamp": _iso(1)}),
        "",
        json.dumps({"type": "page", "userId": "j1", "name": "Billing", "timestamp": _iso(5)}),
    ]
    (tmp_path / "export.jsonl").write_text("\n".join(lines) + "\n")
    run = _cli(tmp_path, "backfill", "export.jsonl")
    assert "4 events stored, 0 already stored, 3 bad" in run.stdout, run.stdout + run.stderr
    assert "line 4: not valid JSON" in run.stdout
    assert "line 5: timestamp is missing" in run.stdout
    assert "line 6: userId" in run.stdout
    db = _db(tmp_path)
    with db.read() as s:
        seg = s.execute(select(EVENTS.c.occurred_at, EVENTS.c.source).where(EVENTS.c.message_id == "seg-1")).one()
        mixpanel = s.execute(
            select(EVENTS.c.occurred_at).where(EVENTS.c.user_id.is_not(None), EVENTS.c.name == "Project Created")
        ).all()
        j1 = s.execute(select(USERS.c.email, USERS.c.hand_raised_at).where(USERS.c.external_id == "j1")).one()
    assert seg.source == "backfill" and abs((seg.occurred_at - (datetime.now(UTC) - 8 * DAY)).total_seconds()) < 5
    assert datetime(2025, 11, 13, tzinfo=UTC) <= min(t for (t,) in mixpanel) <= datetime(2025, 11, 14, tzinfo=UTC)
    assert j1.email == "j1@x.example" and j1.hand_raised_at is not None  # kept for context, paged no one
    assert _count(db, ALERTS) == 0


def test_an_interrupted_backfill_resumes_where_it_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot import backfill

    db = _db(tmp_path)
    db.upgrade()
    pipeline = Pipeline(db)
    pipeline.ensure_model()
    path = tmp_path / "big.csv"
    path.write_text(
        "user_id,event,timestamp\n" + "".join(f"u{i % 7},Core Feature Used,{_iso(30 - i / 10)}\n" for i in range(25))
    )
    monkeypatch.setattr(backfill, "CHUNK", 10)
    calls = {"n": 0}
    real = pipeline.ingest_quietly

    def dies_on_the_second_chunk(events: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the operator's Ctrl-C, or the machine going down
        return real(events)

    monkeypatch.setattr(pipeline, "ingest_quietly", dies_on_the_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        backfill.run(path=path, pipeline=pipeline, group_key="company_id")
    assert _count(db, EVENTS) == 10
    monkeypatch.setattr(pipeline, "ingest_quietly", real)
    out = backfill.run(path=path, pipeline=pipeline, group_key="company_id")
    assert out.resumed_at == 11  # the header and the first ten events
    assert (out.stored, out.duplicates, out.lines) == (15, 0, 15)
    assert _count(db, EVENTS) == 25


def test_backfill_refuses_a_csv_without_the_needed_columns_in_one_line(tmp_path: Path) -> None:
    assert _cli(tmp_path, "db", "upgrade").returncode == 0
    (tmp_path / "x.csv").write_text("user,name,when\nu1,Invite Sent,2026-01-01\n")
    run = _cli(tmp_path, "backfill", "x.csv")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "lacks user_id, event, timestamp" in run.stderr.strip().splitlines()[-1]
    missing = _cli(tmp_path, "backfill", "nothere.jsonl")
    assert missing.returncode == 2 and "nothere.jsonl does not exist" in missing.stderr
    (tmp_path / "h.jsonl.gz").write_bytes(gzip.compress(b"{}\n"))
    packed = _cli(tmp_path, "backfill", "h.jsonl.gz")
    assert packed.returncode == 2 and "gzip-compressed" in packed.stderr


def test_lines_nothing_could_store_are_bad_lines_and_the_rest_is_stored(tmp_path: Path) -> None:
    """NaN, Infinity and lone surrogates once aborted a whole backfill on PostgreSQL (and were
    stored as invalid JSON on SQLite); deep nesting was a traceback; a future date became today."""
    assert _cli(tmp_path, "db", "upgrade").returncode == 0
    good = {"type": "track", "userId": "g", "event": "Project Created", "timestamp": _iso(3)}
    deep: Any = 1
    for _ in range(500):
        deep = [deep]
    lines = [
        json.dumps(good)[:-1] + ', "properties": {"a": NaN}}',
        json.dumps(good)[:-1] + ', "properties": {"a": Infinity}}',
        json.dumps(good)[:-1] + ', "properties": {"a": "\\ud800"}}',
        json.dumps({**good, "properties": {"a": deep}}),
        json.dumps({**good, "timestamp": "2099-01-01T00:00:00Z"}),
        json.dumps(good),
    ]
    (tmp_path / "odd.jsonl").write_text("\n".join(lines) + "\n")
    run = _cli(tmp_path, "backfill", "odd.jsonl")
    assert "Traceback" not in run.stderr and run.returncode == 1, run.stderr
    assert "1 event stored, 0 already stored, 5 bad" in run.stdout
    for n in (1, 2, 3):
        assert f"line {n}: not valid JSON" in run.stdout
    assert "line 4: 'properties' is nested more than" in run.stdout
    assert "line 5: timestamp 2099-01-01T00:00:00Z is in the future" in run.stdout
    assert _count(_db(tmp_path), EVENTS) == 1


def test_identical_rows_are_separate_events_and_a_second_read_still_adds_none(tmp_path: Path) -> None:
    """An export that gives only dates repeats a row for each use of the feature in a day: five
    rows are five uses (the core-feature habit), not one event and four duplicates."""
    assert _cli(tmp_path, "db", "upgrade").returncode == 0
    day = (datetime.now(UTC) - DAY).date().isoformat()
    (tmp_path / "uses.csv").write_text("user_id,event,timestamp\n" + f"d1,Core Feature Used,{day}\n" * 5)
    run = _cli(tmp_path, "backfill", "uses.csv")
    assert "5 events stored, 0 already stored" in run.stdout, run.stdout + run.stderr
    again = _cli(tmp_path, "backfill", "uses.csv", "--restart")
    assert "0 events stored, 5 already stored" in again.stdout
    with _db(tmp_path).read() as s:
        assert s.scalar(select(USERS.c.score).where(USERS.c.external_id == "d1")) == 15


def test_a_resumed_backfill_keeps_repeats_before_and_after_the_stop_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot import backfill

    db = _db(tmp_path)
    db.upgrade()
    pipeline = Pipeline(db)
    pipeline.ensure_model()
    path = tmp_path / "same.csv"
    path.write_text("user_id,event,timestamp\n" + "r,Core Feature Used,2026-11-30\n" * 12)
    monkeypatch.setattr(backfill, "CHUNK", 5)
    real = pipeline.ingest_quietly
    calls = {"n": 0}

    def dies_on_the_second_chunk(events: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(events)

    monkeypatch.setattr(pipeline, "ingest_quietly", dies_on_the_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        backfill.run(path=path, pipeline=pipeline, group_key="company_id")
    monkeypatch.setattr(pipeline, "ingest_quietly", real)
    out = backfill.run(path=path, pipeline=pipeline, group_key="company_id")
    assert (out.resumed_at, out.stored, out.duplicates) == (6, 7, 0)
    assert _count(db, EVENTS) == 12


def test_a_last_line_still_being_written_is_read_whole_on_the_next_run(tmp_path: Path) -> None:
    assert _cli(tmp_path, "db", "upgrade").returncode == 0
    lines = [
        json.dumps({"type": "track", "userId": f"t{i}", "event": "Invite Sent", "timestamp": _iso(2)})
        for i in range(801)
    ]
    path = tmp_path / "growing.jsonl"  # over 64 KB, so the file is known again by its first bytes
    path.write_text("\n".join(lines[:800]) + "\n" + lines[800][:30])  # the writer is half-way through
    first = _cli(tmp_path, "backfill", "growing.jsonl")
    assert "800 events stored" in first.stdout and "line 801:" in first.stdout and "no end yet" in first.stdout
    path.write_text("\n".join(lines) + "\n")
    second = _cli(tmp_path, "backfill", "growing.jsonl")
    assert "resumed after line 800" in second.stdout, second.stdout
    assert "1 event stored, 0 already stored, 0 bad" in second.stdout
    assert _count(_db(tmp_path), EVENTS) == 801
