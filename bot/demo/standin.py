"""A stand-in for Slack's Web API on a local port: records what pqlbot posts, answers like Slack."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SlackStandIn:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.responses: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._ts = int(time.time())
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
                path = self.path.split("?")[0]
                if path.startswith("/response/"):
                    with standin._lock:
                        standin.responses[path.rsplit("/", 1)[-1]] = body
                    data = b"ok"
                else:
                    method = path.rsplit("/", 1)[-1]
                    with standin._lock:
                        standin.calls.append((method, body))
                        standin._ts += 1
                        ts = body.get("ts") or f"{standin._ts}.000100"
                    data = json.dumps(
                        {
                            "ok": True,
                            "channel": body.get("channel"),
                            "ts": ts,
                            "team_id": "T0DEMO",
                            "user_id": "UDEMOBOT",
                        }
                    ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def response_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/response/{name}"

    def posted(self, method: str) -> list[dict[str, Any]]:
        with self._lock:
            return [b for m, b in self.calls if m == method]

    def wait_response(self, name: str, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if name in self.responses:
                    return self.responses[name]
            time.sleep(0.05)
        raise RuntimeError(f"no answer to /pql {name} within {timeout:.0f} s")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
