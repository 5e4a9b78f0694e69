"""Fault test: kill `pqlbot serve` with SIGKILL in the middle of ingest and delivery, restart it,
and prove that every event that got a 200 is stored and no alert was posted twice.

    python tools/fault_test.py [--database URL] [--kills 6] [--accounts 60]

A sender posts batches through POST /v1/batch as a Segment client would (resending what got no
answer, with the same messageIds); each account it creates crosses the threshold (a PQL alert)
and some open the billing page (a hand-raiser alert). Slack is a stand-in over HTTP that answers
posts slowly, so kills land mid-post too. The server is killed at random moments and restarted
on the same database. At the end the script waits for the outbox to drain (an alert whose
delivery was cut off waits for its lease to run out: up to two minutes) and checks. It prints
what it did and exits 1 if anything was lost or posted twice.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.demo.standin import SlackStandIn, free_port  # noqa: E402
from storage import Database  # noqa: E402
from storage.tables import ALERTS, EVENTS  # noqa: E402

WRITE_KEY = "wk_fault"
CHANNEL = "C0FAULT"


def account_messages(n: int, rng: random.Random) -> list[dict[str, Any]]:
    """Everything one account sends: it crosses 45 (two invitees, an integration); every third
    one also opens billing."""
    user, acct = f"fault-u{n}", f"fault-acct-{n}"

    def msg(kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "userId": user, "messageId": str(uuid.UUID(int=rng.getrandbits(128))), **fields}

    out = [
        msg("identify", traits={"email": f"owner{n}@fault.example", "name": f"Owner {n}"}),
        msg("group", groupId=acct, traits={"name": f"Fault Account {n}"}),
        msg(
            "track", event="Invite Sent", properties={"invitee_email": f"a{n}@fault.example"}, context={"groupId": acct}
        ),
        msg(
            "track", event="Invite Sent", properties={"invitee_email": f"b{n}@fault.example"}, context={"groupId": acct}
        ),
        msg("track", event="Integration Activated", properties={"integration": "jira"}, context={"groupId": acct}),
    ]
    if n % 3 == 0:
        out.append(msg("page", name="Billing", properties={"path": "/billing"}, context={"groupId": acct}))
    return out


class Server:
    def __init__(self, database: str, slack: SlackStandIn, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PQLBOT_", "DATABASE_URL"))},
            "DATABASE_URL": database,
            "SLACK_BOT_TOKEN": "xoxb-fault",
            "SLACK_SIGNING_SECRET": "fault-secret",
            "SLACK_API_URL": slack.api_url,
            "PQLBOT_WRITE_KEYS": WRITE_KEY,
            "PQLBOT_ALERT_CHANNEL": CHANNEL,
        }
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        log = open(self.workdir / f"serve-{self.starts}.log", "wb")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--port", str(self.port)],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.starts += 1
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if self.proc.poll() is not None:
                raise SystemExit(f"pqlbot serve exited with {self.proc.returncode}; see {log.name}")
            time.sleep(0.05)
        raise SystemExit("pqlbot serve did not start within a minute")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", help="SQLAlchemy URL (default: a new SQLite file)")
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--accounts", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--wipe", action="store_true", help="empty the PostgreSQL schema of --database first")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="pqlbot-fault-"))
    database = args.database or f"sqlite:///{workdir / 'fault.db'}"
    if args.wipe and database.startswith("postgresql"):
        from sqlalchemy import text

        wiped = Database(database)
        with wiped.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        wiped.dispose()
    slack = SlackStandIn()
    # Slack answers every post after a moment: a kill often lands between post and answer.
    slack.fail_next["chat.postMessage"] = [{"delay": 0.25} for _ in range(100_000)]
    server = Server(database, slack, workdir)
    server.start()

    messages = [m for n in range(args.accounts) for m in account_messages(n, rng)]
    batches = [messages[i : i + 12] for i in range(0, len(messages), 12)]
    acked: set[str] = set()
    resent = 0
    done = threading.Event()

    def send() -> None:
        nonlocal resent
        for batch in batches:
            while True:
                try:
                    resp = requests.post(
                        server.url + "/v1/batch", json={"batch": batch}, auth=(WRITE_KEY, ""), timeout=10
                    )
                    if resp.status_code == 200:
                        acked.update(m["messageId"] for m in batch)
                        break
                    if resp.status_code < 500:
                        raise SystemExit(f"pqlbot refused a good batch: {resp.status_code} {resp.text[:200]}")
                except requests.RequestException:
                    pass
                resent += 1  # no answer (the server was killed): send it again, as Segment does
                time.sleep(0.1)
            time.sleep(rng.uniform(0.02, 0.08))
        done.set()

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    kills = 0
    while kills < args.kills and not done.is_set():
        time.sleep(rng.uniform(0.4, 1.5))
        server.kill()
        kills += 1
        server.start()
    sender.join(600)
    print(f"sent {len(messages)} events in {len(batches)} batches; {resent} resends after {kills} SIGKILLs")

    db = Database(database)
    deadline = time.monotonic() + 200
    while time.monotonic() < deadline:
        with db.read() as s:
            open_alerts = s.scalar(select(ALERTS.c.id).where(ALERTS.c.status.in_(("pending", "sending"))).limit(1))
        if open_alerts is None:
            break
        time.sleep(1)
    server.stop()

    with db.read() as s:
        stored = set(s.scalars(select(EVENTS.c.message_id)))
        alerts = s.execute(
            select(ALERTS.c.id, ALERTS.c.kind, ALERTS.c.status, ALERTS.c.lead_id, ALERTS.c.ts, ALERTS.c.attempts)
        ).all()
    db.dispose()
    posts = [b for m, b in slack.calls if m == "chat.postMessage"]
    per_alert = collections.Counter(
        ((b.get("metadata") or {}).get("event_payload") or {}).get("alert_id") for b in posts
    )
    twice = {a: n for a, n in per_alert.items() if n > 1}
    lost = acked - stored
    unsent = [a for a in alerts if a.status != "sent"]
    pql_per_lead = collections.Counter(a.lead_id for a in alerts if a.kind == "pql")
    announced_twice = {lead: n for lead, n in pql_per_lead.items() if n > 1}
    slack.close()

    print(f"acknowledged {len(acked)} events: {len(acked & stored)} stored, {len(lost)} lost")
    resumed = sum(1 for a in alerts if a.attempts > 1)
    print(f"{resumed} alert deliveries were cut off by a kill and resumed after the restart")
    print(
        f"{len(alerts)} alerts ({sum(a.kind == 'pql' for a in alerts)} PQL, "
        f"{sum(a.kind == 'hand_raiser' for a in alerts)} hand-raiser): {len(posts)} posts to Slack, "
        f"{len(twice)} alerts posted twice, {len(unsent)} not delivered, {len(announced_twice)} leads announced twice"
    )
    expected_pql = args.accounts
    ok = not lost and not twice and not unsent and not announced_twice and pql_per_lead.total() == expected_pql
    if pql_per_lead.total() != expected_pql:
        print(f"expected {expected_pql} PQL alerts, found {pql_per_lead.total()}")
    print("PASS" if ok else f"FAIL (logs in {workdir})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
