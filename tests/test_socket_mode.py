"""Socket Mode: with SLACK_APP_TOKEN, Slack's requests come over a WebSocket pqlbot opens (no
public URL), while ingest stays on HTTP. Slack's side is a local WebSocket server speaking
Socket Mode's envelopes and acks."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp import WSMsgType, web

from bot.demo.standin import free_port
from tests.fakes import FakeSlack, texts

WRITE_KEY = "wk_socket"
CHANNEL = "C0SOCKET"


class SocketSlack:
    """Slack's Socket Mode end: hands out envelopes, records the acks."""

    def __init__(self) -> None:
        self.port = free_port()
        self.acks: list[dict[str, Any]] = []
        self.connected = threading.Event()
        self._ws: web.WebSocketResponse | None = None
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        threading.Thread(target=self._run, args=(started,), daemon=True).start()
        started.wait(10)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/link"

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)

        async def link(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            self._ws = ws
            await ws.send_str(json.dumps({"type": "hello", "num_connections": 1}))
            self.connected.set()
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self.acks.append(json.loads(msg.data))
            return ws

        app = web.Application()
        app.router.add_get("/link", link)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        started.set()
        self._loop.run_forever()

    def send(self, envelope: dict[str, Any]) -> None:
        assert self._ws is not None
        asyncio.run_coroutine_threadsafe(self._ws.send_str(json.dumps(envelope)), self._loop).result(10)

    def ack_for(self, envelope_id: str, wait: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            for ack in self.acks:
                if ack.get("envelope_id") == envelope_id:
                    return ack
            time.sleep(0.02)
        raise AssertionError(f"no ack for {envelope_id}; acks: {self.acks}")


@pytest.fixture
def socket_server(tmp_path: Path) -> Iterator[tuple[str, FakeSlack, SocketSlack]]:
    slack = FakeSlack()
    socket = SocketSlack()
    slack.socket_url = socket.url
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PQLBOT_", "DATABASE_URL"))}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'socket.db'}",
        SLACK_BOT_TOKEN="xoxb-socket",
        SLACK_APP_TOKEN="xapp-1-socket",  # and no SLACK_SIGNING_SECRET: Socket Mode needs none
        SLACK_API_URL=slack.api_url,
        PQLBOT_WRITE_KEYS=WRITE_KEY,
        PQLBOT_ALERT_CHANNEL=CHANNEL,
    )
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "--port", str(port)], env=env, cwd=tmp_path, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not socket.connected.is_set():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((tmp_path / "serve.log").read_text())
            time.sleep(0.05)
        yield url, slack, socket
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
        slack.close()


def test_slash_command_and_claim_over_socket_mode_while_ingest_stays_on_http(
    socket_server: tuple[str, FakeSlack, SocketSlack],
) -> None:
    url, slack, socket = socket_server
    page = {
        "type": "page",
        "userId": "sock-ann",
        "name": "Billing",
        "properties": {"path": "/billing"},
        "context": {"groupId": "sock-acme", "traits": {"email": "ann@sock.example"}},
        "messageId": str(uuid.uuid4()),
    }
    r = requests.post(f"{url}/v1/batch", json={"batch": [page]}, auth=(WRITE_KEY, ""), timeout=10)
    assert r.status_code == 200
    deadline = time.monotonic() + 10
    while not [b for b in slack.posted() if b.get("channel") == CHANNEL]:
        assert time.monotonic() < deadline, "no hand-raiser alert"
        time.sleep(0.05)
    alert = next(b for b in slack.posted() if b.get("channel") == CHANNEL)
    assert alert["text"].startswith("Hand-raiser")
    blocks = alert["blocks"] if isinstance(alert["blocks"], list) else json.loads(alert["blocks"])

    envelope_id = str(uuid.uuid4())
    socket.send(
        {
            "envelope_id": envelope_id,
            "type": "slash_commands",
            "accepts_response_payload": True,
            "payload": {
                "command": "/pql",
                "text": "top",
                "user_id": "UREP0001",
                "team_id": "T0ACME",
                "channel_id": "C0WORK",
                "response_url": slack.response_url("socket-top"),
                "trigger_id": "1.2.3",
            },
        }
    )
    assert socket.ack_for(envelope_id)["envelope_id"] == envelope_id
    answer = slack.wait_response("socket-top")
    assert "ann@sock.example" in texts(answer) or "sock-acme" in texts(answer)

    # The Claim button, pressed in Slack, arrives as an interactive envelope.
    button = next(e for b in blocks if b.get("type") == "actions" for e in b["elements"])
    claim_id = str(uuid.uuid4())
    socket.send(
        {
            "envelope_id": claim_id,
            "type": "interactive",
            "accepts_response_payload": False,
            "payload": {
                "type": "block_actions",
                "user": {"id": "UREP0002", "name": "rep"},
                "team": {"id": "T0ACME"},
                "channel": {"id": CHANNEL},
                "container": {"type": "message", "channel_id": CHANNEL, "message_ts": "1700000001.000100"},
                "message": {"ts": "1700000001.000100", "text": alert["text"], "blocks": blocks},
                "response_url": slack.response_url("socket-claim"),
                "trigger_id": "4.5.6",
                "actions": [{**button, "action_ts": "1700000002.0001"}],
            },
        }
    )
    socket.ack_for(claim_id)
    deadline = time.monotonic() + 10
    while "Claimed by <@UREP0002>" not in texts(slack.posted("chat.update")) + texts(slack.replies()):
        assert time.monotonic() < deadline, (slack.posted("chat.update"), slack.replies())
        time.sleep(0.05)


def test_a_refused_app_token_stops_serve_in_one_line(tmp_path: Path) -> None:
    slack = FakeSlack()  # no socket_url: apps.connections.open answers not_allowed_token_type
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PQLBOT_", "DATABASE_URL"))}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}",
        SLACK_BOT_TOKEN="xoxb-socket",
        SLACK_APP_TOKEN="xapp-1-wrong",
        SLACK_API_URL=slack.api_url,
    )
    try:
        run = subprocess.run(
            [sys.executable, "-m", "bot", "serve", "--port", str(free_port())],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        slack.close()
    assert run.returncode == 2
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("pqlbot:")]
    assert len(lines) == 1 and "SLACK_APP_TOKEN was refused by Slack (not_allowed_token_type)" in lines[0]
    assert "Traceback" not in run.stderr
