"""Slack faked at the HTTP boundary: a real local server standing in for the Web API."""

from __future__ import annotations

import json
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def texts(obj: Any) -> str:
    """All human-readable text of a message (its text and every text inside its blocks)."""
    out: list[str] = []

    def walk(o: Any) -> None:
        if isinstance(o, dict):
            for k, v in o.items():
                if k in ("text", "value") and isinstance(v, str):
                    out.append(v)
                else:
                    walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
        elif isinstance(o, str):
            try:
                walk(json.loads(o))
            except ValueError:
                pass

    walk(obj)
    return "\n".join(out)


def blocks_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = message.get("blocks") or []
    return json.loads(blocks) if isinstance(blocks, str) else blocks


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for block in blocks_of(message):
        elements = list(block.get("elements") or [])
        if block.get("accessory"):
            elements.append(block["accessory"])
        found += [
            {**el, "_block_id": block.get("block_id")}
            for el in elements
            if isinstance(el, dict) and el.get("type") == "button"
        ]
    return found


class FakeSlack:
    """Records Web API calls and response_url posts; answers as Slack does; can be told to fail."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.responses: list[tuple[str, dict[str, Any]]] = []
        self.fail_next: dict[str, list[dict[str, Any]]] = {}
        self.lock = threading.Lock()
        self._ts = 1_700_000_000
        self.port = free_port()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode("utf-8", "replace")
                if "json" in self.headers.get("Content-Type", ""):
                    body = json.loads(raw or "{}")
                else:
                    body = {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}
                path = self.path.split("?")[0]
                if path.startswith("/response/"):
                    with fake.lock:
                        fake.responses.append((path, body))
                    return self._send(200, "ok", "text/plain")
                method = path.rsplit("/", 1)[-1]
                with fake.lock:
                    fake.calls.append((method, body))
                    injected = fake.fail_next.get(method)
                    planned = injected.pop(0) if injected else None
                if planned is not None:
                    return self._send(
                        planned.get("status", 200),
                        json.dumps(planned["body"]),
                        "application/json",
                        planned.get("headers"),
                    )
                return self._send(200, json.dumps(fake.answer(method, body)), "application/json")

            def _send(self, status: int, text: str, ctype: str, headers: dict[str, str] | None = None) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
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
            return {"ok": True, "channel": body.get("channel"), "ts": ts}
        if method == "users.info":
            uid = body.get("user", "U0")
            return {"ok": True, "user": {"id": uid, "is_admin": False, "is_owner": False}}
        return {"ok": True}

    def posted(self, method: str = "chat.postMessage") -> list[dict[str, Any]]:
        with self.lock:
            return [b for m, b in self.calls if m == method]

    def replies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [b for m, b in self.calls if m == "chat.postEphemeral"] + [b for _, b in self.responses]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
