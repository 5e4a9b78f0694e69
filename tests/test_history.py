"""History the business cares about, from the command line: conversions imported from billing or
a CRM, the monthly report, and choosing the threshold by replaying what happened."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from storage.tables import ACCOUNTS, LEADS, MODEL_VERSIONS, USERS
from tests.timekit import event, runtime, send

NOW = datetime.now(UTC).replace(microsecond=0)
EARLIER = NOW - timedelta(days=3)
YESTERDAY = (NOW - timedelta(days=1)).date().isoformat()


def pqlbot(tmp_path: Path, url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PQLBOT_", "DATABASE_URL"))}
    env["DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        input=stdin,
    )


def _account(rt, acct: str, *, invites: int = 0, integration: bool = False, core: int = 0) -> None:  # type: ignore[no-untyped-def]
    user = f"u-{acct}"
    send(
        rt,
        event(user, kind="identify", at=EARLIER, email=f"owner@{acct}.example", name=f"Owner {acct}"),
        event(user, kind="group", group=acct, at=EARLIER, name=acct.upper()),
        *[
            event(user, "Invite Sent", group=acct, at=EARLIER, invitee_email=f"p{i}@{acct}.example")
            for i in range(invites)
        ],
        *([event(user, "Integration Activated", group=acct, at=EARLIER, integration="jira")] if integration else []),
        *[event(user, "Core Feature Used", group=acct, at=EARLIER) for _ in range(core)],
    )


@pytest.fixture
def history(tmp_path: Path) -> str:
    """Five accounts three days ago; acct-a bought yesterday (Subscription Started)."""
    url = f"sqlite:///{tmp_path}/history.db"
    with runtime(url) as (rt, _):
        _account(rt, "acct-a", invites=2, integration=True)  # 45: a PQL
        _account(rt, "acct-b", invites=2, integration=True)  # 45: a PQL
        _account(rt, "acct-c", integration=True)  # 20
        _account(rt, "acct-d", core=1)  # 0
        _account(rt, "acct-e", invites=2)  # 25
        send(rt, event("u-acct-a", "Subscription Started", group="acct-a", at=NOW - timedelta(days=1), plan="team"))
    return url


def _customers(url: str) -> dict[str, datetime]:
    from storage import Database

    db = Database(url)
    try:
        with db.read() as s:
            return {
                a: c for a, c in s.execute(select(ACCOUNTS.c.external_id, ACCOUNTS.c.customer_since)) if c is not None
            }
    finally:
        db.dispose()


def test_conversions_import_by_account_user_and_email(tmp_path: Path, history: str) -> None:
    csv = tmp_path / "billing.csv"
    csv.write_text(
        "\ufeffAccount ID;Converted At\nacct-c;" + YESTERDAY + "\nacct-unknown;" + YESTERDAY + "\n", encoding="utf-8"
    )
    first = pqlbot(tmp_path, history, "conversions", "import", str(csv))
    assert first.returncode == 0, first.stderr
    assert "recorded 1 account" in first.stdout and "1 not found" in first.stdout and "acct-unknown" in first.stdout
    assert set(_customers(history)) == {"acct-a", "acct-c"}
    again = pqlbot(tmp_path, history, "conversions", "import", str(csv))
    assert "recorded 0 accounts" in again.stdout and "1 was already recorded" in again.stdout, again.stdout
    # By email (any case) and by user id; a later date never moves a conversion.
    by_user = tmp_path / "crm.csv"
    by_user.write_text(f"email,converted_at\nOWNER@ACCT-E.EXAMPLE,{YESTERDAY}\n", encoding="utf-8")
    assert pqlbot(tmp_path, history, "conversions", "import", str(by_user)).returncode == 0
    later = tmp_path / "later.csv"
    later.write_text(f"user_id,converted_at\nu-acct-a,{NOW.date().isoformat()}\n", encoding="utf-8")
    before = _customers(history)["acct-a"]
    out = pqlbot(tmp_path, history, "conversions", "import", str(later))
    assert "already recorded" in out.stdout
    after = _customers(history)
    assert after["acct-a"] == before and "acct-e" in after


def test_a_conversion_marks_the_lead_and_keeps_the_time_from_alert(tmp_path: Path, history: str) -> None:
    csv = tmp_path / "c.csv"
    bought = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    csv.write_text(f"acct-b,{bought}\n", encoding="utf-8")  # no header: id, date
    out = pqlbot(tmp_path, history, "conversions", "import", str(csv))
    assert out.returncode == 0 and "recorded 1 account" in out.stdout, (out.stdout, out.stderr)
    assert "1 of them was a PQL" in out.stdout, out.stdout
    from storage import Database

    db = Database(history)
    with db.read() as s:
        (lead,) = s.execute(
            select(LEADS).join(ACCOUNTS, ACCOUNTS.c.id == LEADS.c.subject_id).where(ACCOUNTS.c.external_id == "acct-b")
        ).all()
    db.dispose()
    assert lead.converted_at == datetime.fromisoformat(bought)
    assert lead.first_alerted_at is not None and lead.converted_at > lead.first_alerted_at
    report = pqlbot(tmp_path, history, "report", "--months", "2")
    assert report.returncode == 0
    month = lead.first_alerted_at.strftime("%Y-%m")
    (row,) = [ln for ln in report.stdout.splitlines() if ln.startswith(month)]
    assert row.split()[1:4] == ["2", "2", "100%"], report.stdout  # acct-a and acct-b: both PQLs, both bought


def test_a_bad_conversions_file_is_refused_whole(tmp_path: Path, history: str) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text(
        f"account_id,converted_at\nacct-c,{YESTERDAY}\n,{YESTERDAY}\nacct-d,next tuesday\nacct-e,2999-01-01\n",
        encoding="utf-8",
    )
    before = _customers(history)
    out = pqlbot(tmp_path, history, "conversions", "import", str(csv))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "3 rows cannot be read; nothing was recorded" in out.stderr
    for problem in ("line 3: no account_id", "line 4: converted_at 'next tuesday'", "line 5: converted_at 2999"):
        assert problem in out.stderr, out.stderr
    assert _customers(history) == before, "nothing stored changed"
    for content, words in (
        (b"", "empty"),
        (b"name,when\nx,y\n", "must name the columns"),
        (b"\xff\xfe\x00a", "not UTF-8"),
    ):
        path = tmp_path / "x.csv"
        path.write_bytes(content)
        out = pqlbot(tmp_path, history, "conversions", "import", str(path))
        assert out.returncode == 1 and words in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_calibrate_prints_its_table_and_suggests_the_best_threshold(tmp_path: Path, history: str) -> None:
    csv = tmp_path / "c.csv"
    csv.write_text(f"account_id,converted_at\nacct-c,{YESTERDAY}\n", encoding="utf-8")
    pqlbot(tmp_path, history, "conversions", "import", str(csv))
    out = pqlbot(tmp_path, history, "calibrate")
    assert out.returncode == 0, out.stderr
    assert "replayed 11 events of 5 accounts" in out.stdout, out.stdout
    assert "2 of them became customers: a base conversion rate of 40.0%" in out.stdout
    rows = {ln.split()[0]: ln.split()[1:7] for ln in out.stdout.splitlines() if ln.strip()[:1].isdigit()}
    # threshold: PQLs, converted, precision, recall, lift, alerts/week
    assert rows["20"][:5] == ["4", "2", "50%", "100%", "1.2x"], out.stdout
    assert rows["25"][:4] == ["3", "1", "33%", "50%"]
    assert rows["45"][:4] == ["2", "1", "50%", "50%"]
    assert "← live" in out.stdout and "suggested threshold: 20" in out.stdout
    strict = pqlbot(tmp_path, history, "calibrate", "--min-precision", "90%")
    assert strict.returncode == 0 and "no threshold reaches a precision of 90%" in strict.stdout


def test_calibrate_apply_is_an_audited_model_change(tmp_path: Path, history: str) -> None:
    out = pqlbot(tmp_path, history, "calibrate", "--min-precision", "0.5", "--apply")
    assert out.returncode == 0, out.stderr
    assert "suggested threshold: 45" in out.stdout and "threshold 45" not in out.stdout.split("suggested")[0]
    # acct-a (45) bought; acct-b (45) did not; nothing below 45 converted without the CSV: the
    # lowest threshold with precision >= 50% is 45, which is already live.
    assert "already" in out.stdout
    csv = tmp_path / "c.csv"
    csv.write_text(f"account_id,converted_at\nacct-c,{YESTERDAY}\n", encoding="utf-8")
    pqlbot(tmp_path, history, "conversions", "import", str(csv))
    out = pqlbot(tmp_path, history, "calibrate", "--apply")
    assert out.returncode == 0 and "model v2 is live" in out.stdout and "threshold 45 → 20" in out.stdout, out.stdout
    from storage import Database

    db = Database(history)
    with db.read() as s:
        latest = s.execute(select(MODEL_VERSIONS).order_by(MODEL_VERSIONS.c.id.desc()).limit(1)).one()
        users = s.scalar(select(USERS.c.id).limit(1))
    db.dispose()
    assert latest.source == "calibrate" and latest.created_by.startswith("cli:") and latest.body["threshold"] == 20
    assert users is not None


def test_calibrate_refuses_bad_options_in_one_line(tmp_path: Path, history: str) -> None:
    for args, words in (
        (("--since", "yesterday"), "--since"),
        (("--since", "2999-01-01"), "in the future"),
        (("--min-precision", "abc"), "--min-precision"),
        (("--min-precision", "150%"), "between 0 and 100%"),
        (("--min-precision", "2"), "ambiguous"),
    ):
        out = pqlbot(tmp_path, history, "calibrate", *args)
        assert out.returncode == 1 and words in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    out = pqlbot(tmp_path, history, "calibrate", "--level", "teams")
    assert out.returncode == 2 and "--level" in out.stderr and "Traceback" not in out.stderr


def test_a_customer_before_the_alert_is_not_a_pql_that_converted(tmp_path: Path, history: str) -> None:
    """A CRM row dated months before sales was alerted once counted as a conversion in 0 days."""
    csv = tmp_path / "old.csv"
    csv.write_text("account_id,converted_at\nacct-b,2026-06-01\n", encoding="utf-8")
    dry = pqlbot(tmp_path, history, "conversions", "import", "--dry-run", str(csv))
    assert "would record 1 account" in dry.stdout and "acct-b" not in _customers(history)
    out = pqlbot(tmp_path, history, "conversions", "import", str(csv))
    assert "recorded 1 account" in out.stdout and "was a PQL" not in out.stdout, out.stdout
    assert "acct-b" in _customers(history)
    report = pqlbot(tmp_path, history, "report", "--months", "2")
    month = NOW.strftime("%Y-%m")
    (row,) = [ln for ln in report.stdout.splitlines() if ln.startswith(month)]
    assert row.split()[1:4] == ["1", "1", "100%"], report.stdout  # acct-a only: acct-b bought before


def test_calibrate_with_customers_no_threshold_caught_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/quiet.db"
    with runtime(url) as (rt, _):
        _account(rt, "acct-q", core=1)
    csv = tmp_path / "q.csv"
    csv.write_text(f"account_id,converted_at\nacct-q,{YESTERDAY}\n", encoding="utf-8")
    assert pqlbot(tmp_path, url, "conversions", "import", str(csv)).returncode == 0
    for extra in ((), ("--apply",)):
        out = pqlbot(tmp_path, url, "calibrate", *extra)
        assert "Traceback" not in out.stderr, out.stderr
        assert "no threshold can be suggested" in out.stdout
