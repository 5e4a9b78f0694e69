"""A real pqlbot server on a local port, driven over HTTP as Segment and Slack drive it."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
import uvicorn
from slack_sdk.signature import SignatureVerifier

from bot.app import Runtime
from bot.demo.standin import free_port
from bot.settings import Settings
from tests.fakes import FakeSlack, texts

SIGNING_SECRET = "test-signing-secret"
WRITE_KEY = "wk_test"
CHANNEL = "C0ALERTS"
ADMIN = "UADMIN01"


class Clock:
    """A settable clock for the server under test (thread-safe)."""

    def __init__(self, now: datetime | None = None):
        self._now = now or datetime.now(UTC).replace(microsecond=0)
        self._real = now is None
        self._lock = threading.Lock()
        self._offset = timedelta()

    def __call__(self) -> datetime:
        with self._lock:
            if self._real:
                return datetime.now(UTC) + self._offset
            return self._now + self._offset

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._offset += delta


def make_settings(db_url: str, slack: FakeSlack, **extra: Any) -> Settings:
    values = {
        "DATABASE_URL": db_url,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "PQLBOT_WRITE_KEYS": WRITE_KEY,
        "PQLBOT_ALERT_CHANNEL": CHANNEL,
        "PQLBOT_ADMINS": ADMIN,
        **extra,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


class LiveServer:
    def __init__(self, runtime: Runtime, slack: FakeSlack, clock: Clock):
        self.runtime, self.slack, self.clock = runtime, slack, clock
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            runtime.asgi(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self._n = 0

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    # --- ingest --------------------------------------------------------------------------------
    def post(
        self,
        path: str,
        payload: Any = None,
        *,
        key: str | None = WRITE_KEY,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        data = raw if raw is not None else json.dumps(payload).encode()
        return requests.post(
            self.url + path,
            data=data,
            auth=(key, "") if key is not None else None,
            headers={"Content-Type": "application/json", **(headers or {})},
            timeout=30,
        )

    def segment(self, **kw: Any) -> Any:
        from segment.analytics.client import Client

        return Client(write_key=WRITE_KEY, host=self.url, sync_mode=True, **kw)

    # --- slack ---------------------------------------------------------------------------------
    def signed(
        self,
        body: str,
        content_type: str,
        *,
        timestamp: int | None = None,
        headers: dict[str, str] | None = None,
        secret: str = SIGNING_SECRET,
    ) -> requests.Response:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        sig = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
        h = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sig or "",
            **(headers or {}),
        }
        return requests.post(self.url + "/slack/events", data=body.encode(), headers=h, timeout=30)

    def command(self, text: str, user: str = "UREP0001", wait: float = 5.0) -> str:
        """Run `/pql <text>`; the text of what came back to the user."""
        self._n += 1
        name = f"cmd{self._n}"
        form = {
            "token": "legacy",
            "team_id": "T0ACME",
            "team_domain": "acme",
            "channel_id": "C0WORK",
            "channel_name": "sales",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/pql",
            "text": text,
            "api_app_id": "A0PQL",
            "response_url": self.slack.response_url(name),
            "trigger_id": f"{self._n}.1.x",
        }
        resp = self.signed(urllib.parse.urlencode(form), "application/x-www-form-urlencoded")
        assert resp.status_code == 200, resp.text
        return texts(self.wait_response(name, wait))

    def wait_response(self, name: str, wait: float = 5.0) -> dict[str, Any]:
        return self.slack.wait_response(name, wait)

    def click(
        self, message: dict[str, Any], button: dict[str, Any], user: str = "UREP0001", ephemeral: bool = False
    ) -> tuple[requests.Response, str]:
        self._n += 1
        name = f"click{self._n}"
        payload = {
            "type": "block_actions",
            "team": {"id": "T0ACME", "domain": "acme"},
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0ACME"},
            "api_app_id": "A0PQL",
            "token": "legacy",
            "trigger_id": f"{self._n}.2.y",
            "container": {
                "type": "message",
                "message_ts": message.get("_ts", ""),
                "channel_id": CHANNEL,
                "is_ephemeral": ephemeral,
            },
            "channel": {"id": CHANNEL, "name": "sales-alerts"},
            "message": {
                "type": "message",
                "ts": message.get("_ts", ""),
                "text": message.get("text", ""),
                "blocks": message.get("blocks"),
            },
            "response_url": self.slack.response_url(name),
            "actions": [
                {
                    "type": "button",
                    "action_id": button.get("action_id"),
                    "block_id": button.get("_block_id"),
                    "value": button.get("value", ""),
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        resp = self.signed(
            urllib.parse.urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded"
        )
        return resp, name

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts posted to the alert channel, each with the `_ts` Slack gave it."""
        with self.slack.lock:
            out = []
            n = 0
            for method, body in self.slack.calls:
                if method in ("chat.postMessage", "chat.update", "chat.postEphemeral"):
                    n += 1
                    if method == "chat.postMessage" and body.get("channel") == CHANNEL:
                        out.append({**body, "_ts": f"{1_700_000_000 + n}.000100"})
            return out

    def wait_alerts(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = self.alerts()
            if len(found) >= n:
                return found
            time.sleep(0.02)
        return self.alerts()

    def settle(self, seconds: float = 0.5) -> None:
        """Give the delivery worker time to post anything pending."""
        self.runtime.delivery.wake()
        time.sleep(seconds)


@contextmanager
def live_server(db_url: str, *, clock: Clock | None = None, **settings: Any) -> Iterator[LiveServer]:
    slack = FakeSlack()
    clock = clock or Clock()
    runtime = Runtime(make_settings(db_url, slack, **settings), clock=clock, run_scheduler=False)
    runtime.prepare()
    server = LiveServer(runtime, slack, clock).start()
    try:
        yield server
    finally:
        server.stop()
        slack.close()


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'pqlbot.db'}"
