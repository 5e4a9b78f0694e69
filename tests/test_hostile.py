"""Regression tests for what a hostile or careless client sent us, each once a real failure."""

from __future__ import annotations

import gzip
import json
import time
import urllib.parse
from pathlib import Path

import requests
from sqlalchemy import func, select

from storage.tables import ACCOUNTS, EVENTS, USERS
from tests.fakes import texts
from tests.support import LiveServer


def _count(server: LiveServer, table: object) -> int:
    with server.runtime.db.read() as s:
        return int(s.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_batch_level_context_traits_are_not_copied_into_every_message(server: LiveServer, tmp_path: Path) -> None:
    batch = {
        "batch": [{"type": "identify", "userId": f"amp{i}"} for i in range(50)],
        "context": {"traits": {"blob": "x" * 300_000}, "groupId": "acct-shared"},
    }
    r = server.post("/v1/batch", batch)
    assert r.status_code == 200, r.text
    with server.runtime.db.read() as s:
        sizes = [len(json.dumps(p)) for p in s.execute(select(EVENTS.c.properties)).scalars()]
        traits = [len(json.dumps(t)) for t in s.execute(select(USERS.c.traits)).scalars()]
    assert sizes and max(sizes) < 1000 and max(traits) < 1000
    assert "acct-shared" in server.command("score amp7")  # the batch's groupId still applies


def test_a_website_that_is_not_a_url_does_not_sink_the_batch(server: LiveServer) -> None:
    batch = {
        "batch": [
            {"type": "track", "userId": "innocent", "event": "Project Created", "messageId": "m-ok"},
            {
                "type": "group",
                "userId": "u-g",
                "groupId": "acct-odd",
                "traits": {"name": "Odd", "website": "http://[oops"},
            },
            {"type": "group", "userId": "u-h", "groupId": "acct-odd2", "traits": {"domain": "[::1"}},
        ]
    }
    assert server.post("/v1/batch", batch).status_code == 200
    assert "innocent" in server.command("score innocent")
    assert "Odd" in server.command("account acct-odd")
    assert "No account matches" in server.command("account http://[x")


def test_case_folding_never_overflows_a_column(any_server: LiveServer) -> None:
    """`ß` folds to `ss`: a value cut to its column's size and then folded would not fit (PostgreSQL)."""
    r = any_server.post(
        "/v1/batch",
        {
            "batch": [
                {"type": "identify", "userId": "cf1", "traits": {"email": "ﬃ" * 300 + "@x.example", "name": "ß" * 300}},
                {
                    "type": "group",
                    "userId": "cf1",
                    "groupId": "acct-cf",
                    "traits": {"name": "Fold", "domain": "ß" * 200 + ".com"},
                },
            ]
        },
    )
    assert r.status_code == 200, r.text
    answer = any_server.command("score cf1")
    assert "scores 0" in answer and "ßß" in answer and "ffiffi" not in answer  # the too-long email is dropped
    assert "Fold" in any_server.command("account acct-cf")


def test_a_repeated_message_creates_nothing(server: LiveServer) -> None:
    msg = {"type": "track", "userId": "first", "event": "Project Created", "messageId": "m-same"}
    assert server.post("/v1/batch", {"batch": [msg]}).status_code == 200
    users = _count(server, USERS)
    retry = {**msg, "userId": "someone-else", "anonymousId": "anon-x", "context": {"groupId": "acct-x"}}
    assert server.post("/v1/batch", {"batch": [retry]}).status_code == 200
    assert _count(server, USERS) == users
    assert _count(server, ACCOUNTS) == 0


def test_lenient_timestamps_and_junk_message_ids_are_stored(server: LiveServer) -> None:
    batch = {
        "batch": [
            {"type": "track", "userId": "t1", "event": "A", "timestamp": "2025-06-30T23:59:60Z", "messageId": "m-leap"},
            {
                "type": "track",
                "userId": "t1",
                "event": "B",
                "timestamp": "2025-06-30t10:00:00.123456789123z",
                "messageId": "m-lower",
            },
            {"type": "track", "userId": "t1", "event": "C", "messageId": "null"},
            {"type": "track", "userId": "t1", "event": "D", "messageId": "undefined"},
        ]
    }
    assert server.post("/v1/batch", batch).status_code == 200, server.post("/v1/batch", batch).text
    with server.runtime.db.read() as s:
        rows = {m: t for m, t in s.execute(select(EVENTS.c.message_id, EVENTS.c.occurred_at))}
    assert rows["m-leap"].isoformat() == "2025-06-30T23:59:59.999999+00:00"
    assert rows["m-lower"].isoformat() == "2025-06-30T10:00:00.123456+00:00"
    assert len(rows) == 4  # the two without a real id were stored under fresh ids


def test_several_gzip_members_are_read_and_trailing_bytes_refused(server: LiveServer) -> None:
    one = gzip.compress(b'{"batch": [{"type": "track", "userId": "gz", "event": "Project Created"}')
    two = gzip.compress(b', {"type": "track", "userId": "gz", "event": "Project Created"}]}')
    r = server.post("/v1/batch", raw=one + two, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert "2 of 3" in server.command("score gz")
    r = server.post("/v1/batch", raw=gzip.compress(b'{"batch": []}') + b"garbage", headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400 and "after its gzip" in r.json()["error"]


def test_names_cannot_hide_or_reverse_text(server: LiveServer) -> None:
    server.post(
        "/v1/identify", {"userId": "rtl", "traits": {"name": "Eve\u202egnp.exe\u200b\u2066", "email": "eve@x.example"}}
    )
    answer = server.command("score rtl")
    assert "\u202e" not in answer and "\u200b" not in answer and "\u2066" not in answer
    assert "Eve gnp.exe" in answer


def test_unsigned_or_malformed_slack_requests_are_refused_not_crashed(server: LiveServer) -> None:
    url = server.url + "/slack/events"
    for body, ctype in (
        (b"[1]", "application/json"),
        (b"null", "application/json"),
        (b"payload=1", "application/x-www-form-urlencoded"),
    ):
        assert requests.post(url, data=body, headers={"Content-Type": ctype}, timeout=10).status_code == 401
    for ts in ("abc", "1.5", "9" * 400):
        r = requests.post(
            url, data=b"x", headers={"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": "v0=" + "0" * 64}, timeout=10
        )
        assert r.status_code == 401
    r = requests.post(
        url,
        data=b"x",
        headers={
            "X-Slack-Request-Timestamp": str(int(time.time())),
            "X-Slack-Signature": "v0=é".encode().decode("latin-1"),
        },
        timeout=10,
    )
    assert r.status_code == 401
    # Signed, but not a body Bolt can read: 400, not 500.
    for body in ("payload=1", "payload=null", "payload=" + urllib.parse.quote("[1]")):
        assert server.signed(body, "application/x-www-form-urlencoded").status_code == 400
    assert server.signed("[1]", "application/json").status_code in (400, 404)


def test_numbers_are_plain_ascii_whole_numbers(server: LiveServer) -> None:
    for text in ("top ²", "top --5", "top ٣", "top ５", "top 4_8", "stats ²"):
        answer = server.command(text)
        assert "1 to" in answer and "Sorry" not in answer, (text, answer)
    assert "Sorry" not in server.command("top +5")


def test_a_button_that_is_not_a_lead_is_answered_politely(server: LiveServer) -> None:
    message = {"text": "x", "blocks": [], "_ts": "1.1"}
    for value in ("9" * 30, "abc", "-1", "1_0"):
        resp, name = server.click(message, {"action_id": "claim_lead", "value": value, "_block_id": "claim"})
        assert resp.status_code == 200
        assert "not a lead" in texts(server.wait_response(name))


def test_analytics_js_short_routes_and_cors(server: LiveServer) -> None:
    """analytics.js posts text/plain JSON to /v1/t, /v1/i, /v1/p, /v1/g, /v1/a, /v1/s and /v1/b."""
    origin = {"Origin": "https://app.example", "Content-Type": "text/plain"}
    body = {"writeKey": "wk_test", "userId": "js-1", "event": "Project Created", "type": "track"}
    for path in ("/v1/t", "/v1/t", "/v1/t"):
        body["messageId"] = f"js-{path}-{time.monotonic_ns()}"
        r = requests.post(server.url + path, data=json.dumps(body), headers=origin, timeout=10)
        assert r.status_code == 200, r.text
        assert r.headers.get("access-control-allow-origin") == "*"
    batch = {
        "writeKey": "wk_test",
        "batch": [{"type": "page", "userId": "js-1", "name": "Pricing", "properties": {"path": "/pricing"}}],
    }
    assert requests.post(server.url + "/v1/b", data=json.dumps(batch), headers=origin, timeout=10).status_code == 200
    preflight = requests.options(
        server.url + "/v1/b",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
        timeout=10,
    )
    assert preflight.status_code == 200 and preflight.headers.get("access-control-allow-origin") == "*"
    assert "js-1 scores 10" in server.command("score js-1")
    assert any(a["text"].startswith("Hand-raiser") for a in server.wait_alerts(1))
    # Slack's endpoint does not answer browsers.
    r = requests.options(
        server.url + "/slack/events",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert "access-control-allow-origin" not in r.headers
