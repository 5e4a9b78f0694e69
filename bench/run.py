"""pqlbot's performance, measured beside the machine's own limits in one run.

    python bench/run.py            # full sizes: 100,000 users, 10,000 accounts, 10 million events
    python bench/run.py --scale 0.05   # the same at 5% of the sizes, for a quick look

Everything runs on this machine, now: a bare ASGI endpoint and a raw SQLite executemany give the
ingest ceiling; the real `pqlbot serve` (a subprocess, SQLite in a temporary folder) is measured
against it and against the targets of issue 7. Slack is a stand-in over HTTP in this process.
Figures are printed as they are measured; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.demo.standin import SlackStandIn, free_port  # noqa: E402

WRITE_KEY = "wk_bench"
SECRET = "bench-signing-secret"
ADMIN = "UBENCHADM"
CHANNEL = "C0BENCH"
SENDERS = 8
BATCH = 100


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def line(name: str, value: str, note: str = "") -> None:
    print(f"  {name:<46} {value:>16}  {note}", flush=True)


# --- traffic ------------------------------------------------------------------------------------


def batches(n_events: int, users: int, accounts: int, rng: random.Random, start: datetime) -> list[bytes]:
    """Segment batches of 100 track events from `users` people in `accounts` workspaces."""
    names = ["Core Feature Used"] * 6 + ["Project Created", "Dashboard Viewed", "Report Exported", "Invite Sent"]
    out = []
    for b in range(0, n_events, BATCH):
        msgs = []
        for i in range(min(BATCH, n_events - b)):
            u = rng.randrange(users)
            name = rng.choice(names)
            props: dict[str, Any] = {"feature": "dashboard", "plan": "free"}
            if name == "Invite Sent":
                props["invitee_email"] = f"t{rng.randrange(10**6)}@bench.example"
            msgs.append(
                {
                    "type": "track",
                    "userId": f"bu{u}",
                    "event": name,
                    "properties": props,
                    "context": {"groupId": f"ba{u % accounts}", "library": {"name": "bench"}},
                    "messageId": str(uuid.UUID(int=rng.getrandbits(128))),
                    "timestamp": (start + timedelta(milliseconds=b + i)).isoformat(),
                }
            )
        out.append(json.dumps({"batch": msgs}).encode())
    return out


def send_all(url: str, bodies: list[bytes], senders: int = SENDERS) -> tuple[float, list[float], int]:
    """Post every body from `senders` threads (keep-alive sessions): (seconds, latencies, errors)."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    it = iter(bodies)

    def worker() -> None:
        nonlocal errors
        s = requests.Session()
        s.auth = (WRITE_KEY, "")
        while True:
            with lock:
                body = next(it, None)
            if body is None:
                return
            t = time.perf_counter()
            r = s.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=120)
            dt = time.perf_counter() - t
            with lock:
                latencies.append(dt)
                if r.status_code != 200:
                    errors += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, latencies, errors


# --- servers ------------------------------------------------------------------------------------

BARE_APP = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def read(request):
    await request.body()
    return JSONResponse({"success": True})

app = Starlette(routes=[Route("/v1/batch", read, methods=["POST"])])
"""


class Server:
    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, port: int):
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(cwd / f"server-{port}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                requests.get(self.url + "/healthz", timeout=1)
                return
            except requests.RequestException:
                if self.proc.poll() is not None:
                    raise SystemExit(f"server exited; see {self.log.name}") from None
                time.sleep(0.1)
        raise SystemExit("server did not start")

    def peak_memory_mb(self) -> float:
        for row in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if row.startswith("VmHWM:"):
                return int(row.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@contextmanager
def pqlbot(db: Path, slack: SlackStandIn, workdir: Path) -> Iterator[Server]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PQLBOT_", "DATABASE_URL"))}
    env.update(
        DATABASE_URL=f"sqlite:///{db}",
        SLACK_BOT_TOKEN="xoxb-bench",
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=slack.api_url,
        PQLBOT_WRITE_KEYS=WRITE_KEY,
        PQLBOT_ALERT_CHANNEL=CHANNEL,
        PQLBOT_ADMINS=ADMIN,
    )
    server = Server([sys.executable, "-m", "bot", "serve", "--port", str(port)], env, workdir, port)
    try:
        yield server
    finally:
        server.stop()


def command(server: Server, slack: SlackStandIn, text: str, user: str = "UBENCHREP") -> float:
    """Run `/pql <text>` as Slack sends it; seconds until its answer reached the response URL."""
    from slack_sdk.signature import SignatureVerifier

    name = uuid.uuid4().hex
    body = urllib.parse.urlencode(
        {
            "command": "/pql",
            "text": text,
            "user_id": user,
            "team_id": "T0BENCH",
            "channel_id": "C0WORK",
            "response_url": slack.response_url(name),
            "trigger_id": "1.2.3",
        }
    )
    ts = str(int(time.time()))
    sig = SignatureVerifier(SECRET).generate_signature(timestamp=ts, body=body) or ""
    started = time.monotonic()
    requests.post(
        server.url + "/slack/events",
        data=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sig,
        },
        timeout=300,
    )
    deadline = started + 600
    while name not in slack.responded:
        if time.monotonic() > deadline:
            raise SystemExit(f"/pql {text} was not answered")
        time.sleep(0.001)
    return slack.responded[name] - started


# --- the big database ---------------------------------------------------------------------------


def seed(
    db: Path,
    users: int,
    accounts: int,
    events: int,
    rng: random.Random,
    now: datetime,
    first: int = 0,
    days: tuple[int, int] = (0, 90),
    names: tuple[str, ...] = ("Core Feature Used",) * 6
    + ("Project Created", "Dashboard Viewed", "Report Exported", "Invite Sent"),
) -> None:
    """Stored history written straight into pqlbot's tables (what years of ingest leave behind):
    users in accounts and `events` track events between `days` ago (aggregates are rebuilt by
    pqlbot's own code afterwards)."""
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    iso = "%Y-%m-%d %H:%M:%S.%f"
    if first == 0:
        stamp = (now - timedelta(days=90)).strftime(iso)
        con.executemany(
            "INSERT INTO accounts (id, external_id, name, name_key, traits, trait_times, score, breakdown,"
            " first_seen_at) VALUES (?, ?, ?, ?, '{}', '{}', 0, '{}', ?)",
            [(a + 1, f"sa{a}", f"Account {a}", f"account {a}", stamp) for a in range(accounts)],
        )
        con.executemany(
            "INSERT INTO users (id, external_id, email, name, traits, trait_times, account_id, account_via, score,"
            " breakdown, activity_count, first_seen_at) VALUES (?, ?, ?, ?, '{}', '{}', ?, 'group', 0, '{}', 0, ?)",
            [(u + 1, f"su{u}", f"user{u}@seed.example", f"User {u}", u % accounts + 1, stamp) for u in range(users)],
        )
        con.commit()
    span = (days[1] - days[0]) * 86400
    chunk = 200_000
    done = 0
    while done < events:
        rows = []
        for i in range(min(chunk, events - done)):
            u = rng.randrange(users) + 1
            at = (now - timedelta(days=days[0], seconds=rng.randrange(span))).strftime(iso)
            rows.append(
                (
                    f"seed-{first + done + i}",
                    u,
                    "track",
                    rng.choice(names),
                    at,
                    at,
                    '{"feature": "dashboard"}',
                )
            )
        con.executemany(
            "INSERT INTO events (message_id, user_id, kind, name, occurred_at, received_at, properties, source)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 'segment')",
            rows,
        )
        con.commit()
        done += len(rows)
        print(f"\r  seeding events: {first + done:,}", end="", flush=True)
    print()
    con.close()


def rebuild(db: Path) -> float:
    """Aggregates and scores from the seeded events, with pqlbot's own rebuild (timed)."""
    code = (
        "from storage import Database; from storage.rebuild import rebuild_facts; from bot.pipeline import Pipeline\n"
        f"db = Database('sqlite:///{db}'); p = Pipeline(db); live = p.ensure_model()\n"
        "with db.write(scoring=True) as s: rebuild_facts(session=s, model=live.model)\n"
        "p.rescore_all()\n"
    )
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    return time.perf_counter() - started


# --- the run ------------------------------------------------------------------------------------


def measure_ingest(url: str, bodies: list[bytes]) -> tuple[float, float, float, int]:
    seconds, lat, errors = send_all(url, bodies)
    events = sum(b.count(b'"messageId"') for b in bodies)
    return events / seconds, pct(lat, 50) * 1000, pct(lat, 99) * 1000, errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full sizes (default 1)")
    parser.add_argument("--ingest-events", type=int, default=60_000, help="events sent per ingest figure")
    args = parser.parse_args()
    rng = random.Random(42)
    scale = args.scale
    users, accounts, stored = int(100_000 * scale), int(10_000 * scale), int(10_000_000 * scale)
    n = max(2000, int(args.ingest_events * min(1.0, scale * 4)))
    now = datetime.now(UTC)
    work = Path(tempfile.mkdtemp(prefix="pqlbot-bench-"))
    print(
        f"pqlbot bench on {platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}; scale {scale:g} ({users:,} users, {accounts:,} accounts, "
        f"{stored:,} stored events); {n:,} events per ingest figure; work in {work}",
        flush=True,
    )
    bodies = batches(n, users=max(1000, users // 10), accounts=max(100, accounts // 10), rng=rng, start=now)

    print("ceiling (the same bodies, nothing but reading them / inserting their rows)")
    (work / "bare.py").write_text(BARE_APP)
    port = free_port()
    bare = Server(
        [sys.executable, "-m", "uvicorn", "bare:app", "--port", str(port), "--log-level", "warning", "--no-access-log"],
        dict(os.environ),
        work,
        port,
    )
    http_rate, p50, p99, _ = measure_ingest(bare.url + "/v1/batch", bodies)
    bare.stop()
    line("bare ASGI endpoint reading /v1/batch bodies", f"{http_rate:,.0f} ev/s", f"p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    con = sqlite3.connect(work / "raw.db")
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, message_id TEXT UNIQUE, user_id TEXT, name TEXT,"
        " occurred_at TEXT, properties TEXT)"
    )
    rows = [
        (m["messageId"], m["userId"], m["event"], m["timestamp"], json.dumps(m["properties"]))
        for b in bodies
        for m in json.loads(b)["batch"]
    ]
    started = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        con.executemany(
            "INSERT INTO events (message_id, user_id, name, occurred_at, properties) VALUES (?, ?, ?, ?, ?)",
            rows[i : i + BATCH],
        )
        con.commit()
    sqlite_rate = len(rows) / (time.perf_counter() - started)
    con.close()
    line("raw SQLite executemany, a commit per 100 rows", f"{sqlite_rate:,.0f} ev/s")
    ceiling = 1 / (1 / http_rate + 1 / sqlite_rate)
    line("ceiling (both in series)", f"{ceiling:,.0f} ev/s")

    slack = SlackStandIn()
    print("pqlbot serve on a new SQLite database")
    with pqlbot(work / "fresh.db", slack, work) as server:
        rate, p50, p99, errors = measure_ingest(server.url + "/v1/batch", bodies)
        line(
            "ingest /v1/batch, 100-event batches",
            f"{rate:,.0f} ev/s",
            f"{rate / ceiling:.0%} of the ceiling (target 25% and 20,000 ev/s); p50 {p50:.0f} ms, p99 {p99:.0f} ms"
            + (f"; {errors} errors" if errors else ""),
        )
        singles = [
            json.dumps({**json.loads(b)["batch"][0], "messageId": str(uuid.uuid4())}).encode()
            for b in bodies[: max(20, len(bodies) // 2)]
            for _ in range(5)
        ]
        seconds, lat, _ = send_all(server.url + "/v1/track", singles)
        line("single events /v1/track", f"{len(singles) / seconds:,.0f} req/s", f"p50 {pct(lat, 50) * 1000:.1f} ms")
        lat = []
        for i in range(60):
            msg = {
                "type": "page",
                "userId": f"hand-{i}",
                "name": "Billing",
                "properties": {"path": "/billing"},
                "context": {"groupId": f"hand-acct-{i}"},
                "messageId": str(uuid.uuid4()),
            }
            before = len(slack.arrived)
            started = time.monotonic()
            requests.post(server.url + "/v1/batch", json={"batch": [msg]}, auth=(WRITE_KEY, ""), timeout=30)
            while len(slack.arrived) == before:
                time.sleep(0.0005)
            lat.append(slack.arrived[before] - started)
        line(
            "hand-raiser event in → chat.postMessage",
            f"p99 {pct(lat, 99) * 1000:,.0f} ms",
            f"p50 {pct(lat, 50) * 1000:.0f} ms (target p99 under 1,000 ms)",
        )
        line("server peak memory", f"{server.peak_memory_mb():,.0f} MB")

    print(f"a big history: {users:,} users in {accounts:,} accounts")
    big = work / "big.db"
    subprocess.run(
        [sys.executable, "-m", "bot", "db", "upgrade"],
        cwd=work,
        env={**os.environ, "DATABASE_URL": f"sqlite:///{big}"},
        check=True,
        capture_output=True,
    )
    ingest_at: dict[int, float] = {}
    seeded = 0
    # The first tenth is the last 90 days of the scorecard's own events, folded into aggregates by
    # pqlbot's rebuild. The other nine tenths are older history (90 days to three years back) of
    # events no signal counts, so every aggregate stays exactly right without a second rebuild:
    # ten times the stored events with the same recent activity, which is what "scoring cost
    # must not grow with history" is about.
    phases = (
        (stored // 10, (0, 90), ("Core Feature Used",) * 6 + ("Project Created", "Dashboard Viewed", "Invite Sent")),
        (stored, (90, 1095), ("Dashboard Viewed", "Report Exported", "Settings Viewed")),
    )
    for target, days, names in phases:
        started = time.perf_counter()
        seed(big, users, accounts, target - seeded, rng, now, first=seeded, days=days, names=names)
        seeded = target
        seconds = rebuild(big) if days[0] == 0 else 0.0
        line(
            f"seeded to {seeded:,} events" + ("; aggregates rebuilt" if seconds else " (older history)"),
            f"{time.perf_counter() - started:,.0f} s",
            f"rebuild {seconds:.0f} s" if seconds else "",
        )
        fresh = batches(n // 2, users=users, accounts=accounts, rng=rng, start=now)
        with pqlbot(big, slack, work) as server:
            rate, p50, p99, _ = measure_ingest(server.url + "/v1/batch", fresh)
            ingest_at[seeded] = rate
            line(f"ingest with {seeded:,} events stored", f"{rate:,.0f} ev/s", f"p50 {p50:.0f} ms, p99 {p99:.0f} ms")
            if target == stored:
                for text in ("top", "score su17"):
                    lat = [command(server, slack, text) for _ in range(30)]
                    line(
                        f"/pql {text.split()[0]} latency",
                        f"p99 {pct(lat, 99) * 1000:,.0f} ms",
                        f"p50 {pct(lat, 50) * 1000:.0f} ms" + (" (target p99 under 300 ms)" if text == "top" else ""),
                    )
                seconds = command(server, slack, "weight core_feature_habit 16", user=ADMIN)
                line("full re-score after a weight change", f"{seconds:,.1f} s", "target under 30 s")
                line("server peak memory", f"{server.peak_memory_mb():,.0f} MB", "target under 500 MB")
    low, high = ingest_at[stored // 10], ingest_at[stored]
    line(
        f"ingest at {stored:,} vs {stored // 10:,} stored",
        f"{high / low:.0%}",
        "target: within 20% (80% or more)",
    )
    slack.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
