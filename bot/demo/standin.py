"""A stand-in for Slack's Web API on a local port: records what pqlbot sends, answers like Slack.

`pqlbot demo` draws what it receives; the tests use it as the fake Slack at the HTTP boundary
(`fail_next` makes the next call of a method fail the way Slack can: 429, 5xx, `ok: false`, or
answer late: `{"delay": seconds}`).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A caller that went away before its answer (pqlbot killed, a client timeout) is part of
        what the stand-in is for; anything else is still printed."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class SlackStandIn:
    """Web API calls go to `/api/<method>`; `response_url(name)` gives a URL for Bolt's respond()."""

    def __init__(self, first_ts: int | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.responses: list[tuple[str, dict[str, Any]]] = []
        self.fail_next: dict[str, list[dict[str, Any]]] = {}
        self.messages: list[dict[str, Any]] = []  # what conversations.history answers
        self.arrived: list[float] = []  # time.monotonic() of each call, for latency figures
        self.responded: dict[str, float] = {}  # response_url name -> time.monotonic() of its answer
        self.socket_url: str | None = None  # what apps.connections.open hands out (Socket Mode)
        self.lock = threading.Lock()
        self._ts = int(time.time()) if first_ts is None else first_ts
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8", "replace")
                if "json" in self.headers.get("Content-Type", ""):
                    body = json.loads(raw or "{}")
                else:
                    body = {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}
                # Some Web API methods (users.info) are called with GET and a query string.
                body.update({k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).items()})
                path = self.path.split("?")[0]
                if path.startswith("/response/"):
                    with standin.lock:
                        standin.responses.append((path, body))
                        standin.responded[path.rsplit("/", 1)[-1]] = time.monotonic()
                    return self._send(200, "ok", "text/plain")
                method = path.rsplit("/", 1)[-1]
                with standin.lock:
                    standin.calls.append((method, body))
                    standin.arrived.append(time.monotonic())
                    planned = standin.fail_next.get(method)
                    failure = planned.pop(0) if planned else None
                if failure is not None:
                    time.sleep(failure.get("delay", 0))
                    if "body" in failure:
                        return self._send(
                            failure.get("status", 200),
                            json.dumps(failure["body"]),
                            "application/json",
                            failure.get("headers"),
                        )
                return self._send(200, json.dumps(standin.answer(method, body)), "application/json")

            do_GET = do_POST

            def _send(self, status: int, text: str, ctype: str, headers: dict[str, str] | None = None) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = _Server(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def response_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/response/{name}"

    def answer(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {"ok": True, "team_id": "T0ACME", "user_id": "UBOT0001", "bot_id": "B0BOT", "team": "Acme"}
        if method in ("chat.postMessage", "chat.update", "chat.postEphemeral"):
            with self.lock:
                self._ts += 1
                ts = body.get("ts") or f"{self._ts}.000100"
                if method == "chat.postMessage":
                    meta = body.get("metadata")
                    self.messages.append(
                        {
                            "channel": body.get("channel"),
                            "ts": ts,
                            "thread_ts": body.get("thread_ts"),
                            "text": body.get("text"),
                            "metadata": json.loads(meta) if isinstance(meta, str) else meta,
                        }
                    )
            return {"ok": True, "channel": body.get("channel"), "ts": ts}
        if method in ("conversations.history", "conversations.replies"):
            # Newest first, as Slack answers; metadata only when asked for.
            with self.lock:
                found = [
                    {k: v for k, v in m.items() if k != "metadata" or body.get("include_all_metadata")}
                    for m in reversed(self.messages)
                    if m["channel"] == body.get("channel")
                    and (method == "conversations.history" or m["thread_ts"] == body.get("ts"))
                ]
            return {"ok": True, "messages": found, "has_more": False}
        if method == "apps.connections.open":
            if self.socket_url is None:
                return {"ok": False, "error": "not_allowed_token_type"}
            return {"ok": True, "url": self.socket_url}
        if method == "users.info":
            uid = body.get("user", "U0")
            return {"ok": True, "user": {"id": uid, "is_admin": False, "is_owner": False}}
        return {"ok": True}

    def posted(self, method: str = "chat.postMessage") -> list[dict[str, Any]]:
        with self.lock:
            return [b for m, b in self.calls if m == method]

    def replies(self) -> list[dict[str, Any]]:
        """Everything that went back to a person: ephemeral posts and response_url posts."""
        with self.lock:
            return [b for m, b in self.calls if m == "chat.postEphemeral"] + [b for _, b in self.responses]

    def wait_response(self, name: str, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [b for p, b in self.responses if p.endswith("/" + name)]
            if found:
                return found[-1]
            time.sleep(0.02)
        raise TimeoutError(f"no answer at response_url {name!r} within {timeout:.0f} s")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
