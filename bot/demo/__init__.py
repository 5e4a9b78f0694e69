"""`pqlbot demo`: the whole pipeline on a bundled event stream, no Slack account, no network.

A real `pqlbot serve` (in this process) on a local port, SQLite in a temporary folder, and a
stand-in for Slack's Web API on another local port. The sample stream goes through the real
ingest route, gzip and all; the alerts that reach the stand-in are drawn in the terminal, and
then `/pql top` is asked the way Slack asks it, signed.
"""

from __future__ import annotations

import gzip
import json
import logging
import secrets
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from base64 import b64encode
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from bot.clock import utcnow
from bot.demo.standin import SlackStandIn, free_port
from bot.demo.terminal import Style, draw
from scoring.model import default_model

CHANNEL = "C0DEMOALERTS"
ADMIN = "UDEMOADMIN"
BATCH = 100


def load_stream(end: datetime | None = None) -> list[dict[str, Any]]:
    """The bundled stream, its timestamps moved so that it ends at `end` (now)."""
    end = end or utcnow()
    raw = resources.files("bot.demo").joinpath("events.jsonl.gz").read_bytes()
    out = []
    for line in gzip.decompress(raw).decode("utf-8").splitlines():
        msg = json.loads(line)
        ago = msg.pop("_ago")
        msg["timestamp"] = (end - timedelta(seconds=ago)).isoformat()
        out.append(msg)
    return out


def batches(stream: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The stream in batches as a busy client would send them, a batch ending right after a
    hand-raise, so the replayed clock says it happened a moment ago, as it would live."""
    raisers = default_model().hand_raisers
    pages = {p.casefold() for p in raisers.pages}
    events = {e.casefold() for e in raisers.events}
    out: list[list[dict[str, Any]]] = [[]]
    for msg in stream:
        out[-1].append(msg)
        path = str((msg.get("properties") or {}).get("path", ""))
        raised = (msg["type"] == "track" and str(msg.get("event", "")).casefold() in events) or (
            msg["type"] == "page"
            and (str(msg.get("name", "")).casefold() in pages or path.startswith(tuple(raisers.paths)))
        )
        if raised or len(out[-1]) >= BATCH:
            out.append([])
    return [b for b in out if b]


class ReplayClock:
    """The server's clock during the replay: it follows the stream, so six weeks of product use
    are scored as they would have been live (windows slide, people go quiet, hands are fresh)."""

    def __init__(self, start: datetime):
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def set(self, now: datetime) -> None:
        with self._lock:
            self.now = max(self.now, now)


def _post(url: str, key: str, messages: list[dict[str, Any]], sent_at: datetime) -> None:
    body = gzip.compress(json.dumps({"batch": messages, "sentAt": sent_at.isoformat()}).encode())
    req = urllib.request.Request(
        url + "/v1/batch",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "Authorization": "Basic " + b64encode(f"{key}:".encode()).decode(),
        },
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        if resp.status != 200:
            raise RuntimeError(f"ingest answered {resp.status}")


class _Progress:
    def __init__(self, total: int, out: Any):
        self.total, self.out, self.tty = total, out, out.isatty()
        self.last = -1

    def update(self, done: int) -> None:
        pct = done * 100 // max(1, self.total)
        if self.tty:
            bar = "█" * (pct // 4) + "░" * (25 - pct // 4)
            self.out.write(f"\r  replaying events {bar} {pct:3d}%  {done:,}/{self.total:,}")
            self.out.flush()
            if done >= self.total:
                self.out.write("\n")
        elif pct // 25 != self.last // 25 or done >= self.total:
            self.out.write(f"  replayed {done:,} of {self.total:,} events ({pct}%)\n")
        self.last = pct


def run_demo(verbose: bool = False, out: Any = None, database: str | None = None) -> int:
    import uvicorn

    from bot.app import Runtime
    from bot.settings import Settings

    out = out or sys.stdout
    style = Style(color=out.isatty())
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    started = time.monotonic()
    end = utcnow()
    stream = load_stream(end)
    clock = ReplayClock(datetime.fromisoformat(stream[0]["timestamp"]))
    out.write(
        style.bold("pqlbot demo") + f": {len(stream):,} events from a product-led SaaS, "
        f"{sum(1 for m in stream if m['type'] == 'identify')} people, "
        f"{len({m['groupId'] for m in stream if m['type'] == 'group'})} accounts, over six weeks.\n"
    )
    key, secret = "wk_demo_" + secrets.token_hex(8), secrets.token_hex(16)
    standin = SlackStandIn()
    with tempfile.TemporaryDirectory(prefix="pqlbot-demo-") as tmp:
        db_path = Path(database).resolve() if database else Path(tmp) / "demo.db"
        values: dict[str, Any] = {
            "DATABASE_URL": f"sqlite:///{db_path}",
            "SLACK_BOT_TOKEN": "xoxb-demo",
            "SLACK_SIGNING_SECRET": secret,
            "SLACK_API_URL": standin.api_url,
            "PQLBOT_WRITE_KEYS": key,
            "PQLBOT_ALERT_CHANNEL": CHANNEL,
            "PQLBOT_ADMINS": ADMIN,
        }
        settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
        runtime = Runtime(settings, clock=clock, run_scheduler=False)
        runtime.prepare()
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                runtime.asgi(), host="127.0.0.1", port=port, log_level="warning", lifespan="on", access_log=False
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the demo server did not start")
            time.sleep(0.02)
        url = f"http://127.0.0.1:{port}"
        out.write(f"  pqlbot is serving on {url}; Slack's Web API is a stand-in on {standin.api_url}\n")
        try:
            progress = _Progress(len(stream), out)
            sent = 0
            arrived: list[float] = []  # when each alert reached Slack, on the replay's clock
            for batch in batches(stream):
                clock.set(datetime.fromisoformat(batch[-1]["timestamp"]))
                _post(url, key, batch, clock())
                sent += len(batch)
                progress.update(sent)
                _drain(runtime)
                posted = len(standin.posted("chat.postMessage"))
                arrived.extend([clock().timestamp()] * (posted - len(arrived)))
            clock.set(end)
            runtime.pipeline.rescore_all()  # what the hourly re-evaluation would have done by now
            _drain(runtime)
            alerts = standin.posted("chat.postMessage")
            ingest_seconds = time.monotonic() - started
            arrived.extend([clock().timestamp()] * (len(alerts) - len(arrived)))
            out.write("\n" + style.bold(f"#sales-alerts: {len(alerts)} alerts, each as it read when it arrived") + "\n")
            for msg, at in zip(alerts, arrived, strict=False):
                out.write(draw(msg, style, now=at) + "\n")
            out.write("\n" + style.bold("/pql top") + "\n")
            answer = _ask(url, secret, standin, "top")
            out.write(draw(answer, style) + "\n")
            # An admin tunes the model: a preview first (nothing changes), then the change, which
            # re-scores everyone and announces the leads it pushes over in one message.
            for text, user in (("preview threshold 35", "UDEMOREP"), ("threshold 35", ADMIN)):
                out.write("\n" + style.bold(f"/pql {text}") + (" (by an admin)" if user == ADMIN else "") + "\n")
                out.write(draw(_ask(url, secret, standin, text, user=user), style) + "\n")
            clock.set(utcnow())
            _drain(runtime)
            for msg in standin.posted("chat.postMessage")[len(alerts) :]:
                out.write(draw(msg, style) + "\n")
            _calibration(runtime, out, style)
            pql = sum(1 for a in alerts if str(a.get("text", "")).startswith("PQL"))
            hands = sum(1 for a in alerts if str(a.get("text", "")).startswith("Hand-raiser"))
            out.write(
                f"\nReplayed {len(stream):,} events through POST /v1/batch in {ingest_seconds:.1f} s: "
                f"{pql} PQL alerts and {hands} hand-raiser alerts. Total {time.monotonic() - started:.1f} s.\n"
            )
            if database:
                out.write(
                    f"The demo's database is kept in {db_path}: try `DATABASE_URL=sqlite:///{db_path} pqlbot report`.\n"
                )
            out.write("Next: create the Slack app from manifest.yml and run `pqlbot serve` (see README.md).\n")
        finally:
            server.should_exit = True
            thread.join(10)
            standin.close()
    return 0


def _calibration(runtime: Any, out: Any, style: Style) -> None:
    """What `pqlbot calibrate` says of this history: which threshold would have found the
    accounts that went on to buy."""
    from bot import calibrate

    with runtime.db.read() as s:
        model = runtime.pipeline.live_model(s).model
    result = calibrate.replay(runtime.db, model, level="accounts", since=None, now=runtime.pipeline.clock())
    out.write("\n" + style.bold("pqlbot calibrate") + " (replays the history with the live model)\n")
    out.write(
        f"  {result.customers} of {result.population} accounts became customers "
        f"(base rate {result.customers / max(1, result.population):.0%})\n"
    )
    for line in calibrate.table(result):
        out.write("  " + line + "\n")
    best = result.suggestion
    if best is not None:
        out.write(
            f"  suggested threshold: {best.threshold} (best F1: precision {best.precision:.0%}, "
            f"recall {best.recall:.0%}); `pqlbot calibrate --apply` would make it live\n"
        )


def _drain(runtime: Any, timeout: float = 30.0) -> None:
    """Wait until the delivery worker has posted every alert in the outbox."""
    from storage import outbox

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with runtime.db.read() as s:
            counts = outbox.counts(session=s)
        if not counts.get("pending") and not counts.get("sending"):
            return
        runtime.delivery.wake()
        time.sleep(0.01)


def _ask(url: str, secret: str, standin: SlackStandIn, text: str, user: str = "UDEMOREP") -> dict[str, Any]:
    """Run `/pql <text>` exactly as Slack sends it (signed), and return the reply."""
    name = f"ask{len(standin.responses)}"
    from slack_sdk.signature import SignatureVerifier

    form = urllib.parse.urlencode(
        {
            "command": "/pql",
            "text": text,
            "user_id": user,
            "user_name": "demo",
            "team_id": "T0DEMO",
            "channel_id": "C0DEMOWORK",
            "api_app_id": "A0DEMO",
            "response_url": standin.response_url(name),
            "trigger_id": "1.2.3",
        }
    )
    ts = str(int(time.time()))
    sig = SignatureVerifier(secret).generate_signature(timestamp=ts, body=form) or ""
    req = urllib.request.Request(
        url + "/slack/events",
        data=form.encode(),
        method="POST",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sig,
        },
    )
    with urllib.request.urlopen(req, timeout=30):
        pass
    return standin.wait_response(name)
