"""What a hostile or careless sender did to the Mixpanel, PostHog and Segment routes, each once a
500, a lost event or a wrong trait. A refusal is a clear 4xx that stores nothing."""

from __future__ import annotations

import base64
import gzip
import json
import logging
import socket
import urllib.parse
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from storage.tables import EVENTS, USERS
from tests.support import WRITE_KEY, LiveServer


def _count(server: LiveServer) -> int:
    with server.runtime.db.read() as s:
        return int(s.execute(select(func.count()).select_from(EVENTS)).scalar_one())


def _user_traits(server: LiveServer, external_id: str) -> dict[str, Any]:
    with server.runtime.db.read() as s:
        return dict(s.execute(select(USERS.c.traits).where(USERS.c.external_id == external_id)).scalar_one())


def _mixpanel_form(server: LiveServer, route: str, data: str) -> requests.Response:
    return requests.post(server.url + f"/mixpanel/{route}", data={"data": data}, timeout=10)


def _track(distinct_id: str = "mx-1", **props: Any) -> dict[str, Any]:
    return {"event": "Project Created", "properties": {"token": WRITE_KEY, "distinct_id": distinct_id, **props}}


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/track", "/mixpanel/import"])
def test_a_basic_header_that_is_not_ascii_is_refused_not_a_500(server: LiveServer, path: str) -> None:
    r = requests.post(
        server.url + path,
        data=b"{}",
        headers={"Authorization": b"Basic \xc3\xa9", "Content-Type": "application/json"},  # type: ignore[dict-item]
        timeout=10,
    )
    assert r.status_code in (400, 401), r.text
    assert _count(server) == 0


def test_mixpanel_bodies_the_standard_parser_would_take_but_nothing_could_store_are_400(server: LiveServer) -> None:
    deep = "[" * 1100 + "]" * 1100
    bodies = {
        "not base64 and not ASCII": "é",
        "nested 1,100 levels": json.dumps([_track()])[:-3] + f', "x": {deep}' + "}}]",
        "a lone surrogate": json.dumps([_track(p="\ud800")]),
        "NaN": json.dumps([_track(p=float("nan"))]),
        "Infinity": json.dumps([_track(p=float("inf"))]),
    }
    for what, data in bodies.items():
        r = _mixpanel_form(server, "track", data)
        assert r.status_code == 400, (what, r.status_code, r.text)
        assert r.json()["status"] == 0 and r.json()["error"], what
    assert _count(server) == 0
    r = _mixpanel_form(server, "track", json.dumps([_track(p=123456789012345678901234567890)]))
    assert r.json() == {"status": 1}  # an integer over 64 bits is kept as a number, not a crash
    assert _count(server) == 1


def test_an_unreadable_page_url_keeps_the_page_view_without_a_path(server: LiveServer) -> None:
    page = {
        "event": "$mp_web_page_view",
        "properties": {"token": WRITE_KEY, "distinct_id": "u", "$current_url": "http://[x"},
    }
    assert _mixpanel_form(server, "track", json.dumps([page])).json() == {"status": 1}
    capture = {
        "api_key": WRITE_KEY,
        "event": "$pageview",
        "distinct_id": "u",
        "properties": {"$current_url": "http://[x"},
    }
    assert requests.post(server.url + "/posthog/capture/", json=capture, timeout=10).json() == {"status": 1}
    assert _count(server) == 2


def test_every_mixpanel_record_needs_a_project_token(server: LiveServer) -> None:
    untokened = {"event": "Project Created", "properties": {"distinct_id": "b"}}
    numbered = {"event": "Project Created", "properties": {"distinct_id": "c", "token": 123}}
    for stray in (untokened, numbered):
        r = _mixpanel_form(server, "track", json.dumps([_track("a"), stray]))
        assert r.status_code == 401 and "project token" in r.json()["error"]
    assert _count(server) == 0


def test_set_once_fills_a_gap_and_never_overwrites(server: LiveServer) -> None:
    from mixpanel import Consumer, Mixpanel
    from posthog import Posthog

    base = server.url + "/mixpanel"
    mp = Mixpanel(WRITE_KEY, consumer=Consumer(events_url=f"{base}/track", people_url=f"{base}/engage", retry_limit=0))
    mp.people_set("mx-ada", {"$email": "ada@acme.example"})
    mp.people_set_once("mx-ada", {"$email": "impostor@acme.example", "plan_at_signup": "free"})
    assert _user_traits(server, "mx-ada") == {"email": "ada@acme.example", "plan_at_signup": "free"}

    ph = Posthog(WRITE_KEY, host=server.url + "/posthog", sync_mode=True)
    ph.capture(distinct_id="ph-bo", event="$set", properties={"$set": {"email": "bo@beta.example"}})
    ph.capture(distinct_id="ph-bo", event="Project Created", properties={"$set_once": {"email": "x@beta.example"}})
    ph.flush()
    assert _user_traits(server, "ph-bo")["email"] == "bo@beta.example"


def test_placeholder_and_long_dedupe_ids_never_drop_a_different_event(server: LiveServer) -> None:
    long_a, long_b = "x" * 250 + "a", "x" * 250 + "b"
    records = [_track("u1", **{"$insert_id": i}) for i in ("undefined", "undefined", "null", long_a, long_b)]
    assert _mixpanel_form(server, "track", json.dumps(records)).json() == {"status": 1}
    assert _count(server) == 5
    again = [_track("u1", **{"$insert_id": long_a})]  # a retry of a long id is still one event
    assert _mixpanel_form(server, "track", json.dumps(again)).json() == {"status": 1}
    assert _count(server) == 5
    batch = {
        "api_key": WRITE_KEY,
        "batch": [{"event": "Project Created", "distinct_id": "p", "uuid": "null"} for _ in range(2)],
    }
    assert requests.post(server.url + "/posthog/batch/", json=batch, timeout=10).json() == {"status": 1}
    assert _count(server) == 7


def test_write_key_in_the_body_gets_the_contract_s_400_and_413(server: LiveServer) -> None:
    r = server.post("/v1/batch", {"writeKey": WRITE_KEY, "batch": [{"type": "track"}]}, key=None)
    assert r.status_code == 400 and "message 0" in r.json()["error"]
    big = {"writeKey": WRITE_KEY, "type": "track", "userId": "u", "event": "E", "properties": {"x": "y" * 40_000}}
    assert server.post("/v1/track", big, key=None).status_code == 413
    r = server.post("/v1/batch", {"writeKey": "wrong", "batch": []}, key=None)
    assert r.status_code == 401
    assert _count(server) == 0


def test_a_client_cannot_write_a_line_of_its_own_into_the_log(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    deep: Any = "x"
    for _ in range(40):
        deep = [deep]
    forged = "\n2026-12-04 INFO pqlbot: FORGED"
    with caplog.at_level(logging.INFO, logger="pqlbot"):
        r = server.post("/v1/batch", {"batch": [{"type": "track", "userId": "x", "event": "X", forged: deep}]})
    assert r.status_code == 400
    refusals = [rec.getMessage() for rec in caplog.records if "refused" in rec.getMessage()]
    assert refusals and all("\n" not in line for line in refusals)
    assert any("FORGED" in line for line in refusals)  # still said, escaped on its one line


def test_posthog_batch_limit_counts_events_sent_not_messages_made(server: LiveServer) -> None:
    events = [
        {"event": "Core Feature Used", "distinct_id": f"ph-{i % 50}", "properties": {"$set": {"plan": "free"}}}
        for i in range(3000)
    ]
    r = requests.post(server.url + "/posthog/batch/", json={"api_key": WRITE_KEY, "batch": events}, timeout=60)
    assert r.json() == {"status": 1}, r.text
    assert _count(server) == 6000  # each event and the identify its $set made
    too_big = {"api_key": WRITE_KEY, "batch": [{"event": "E", "distinct_id": "a", "properties": {"p": "x" * 33_000}}]}
    r = requests.post(server.url + "/posthog/batch/", json=too_big, timeout=10)
    assert r.status_code == 413 and r.json()["detail"].startswith("event 0")


def test_posthog_js_gzip_in_the_query_and_base64_forms_are_read(server: LiveServer) -> None:
    event = {"api_key": WRITE_KEY, "event": "Project Created", "distinct_id": "js-1"}
    r = requests.post(
        server.url + "/posthog/batch/?compression=gzip-js",
        data=gzip.compress(json.dumps({"batch": [event], "api_key": WRITE_KEY}).encode()),
        headers={"Content-Type": "text/plain"},
        timeout=10,
    )
    assert r.json() == {"status": 1}, r.text
    form = urllib.parse.urlencode({"data": base64.b64encode(json.dumps(event).encode()).decode()})
    r = requests.post(
        server.url + "/posthog/capture/?compression=base64",
        data=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert r.json() == {"status": 1}, r.text
    r = requests.post(server.url + "/posthog/batch/?compression=lz64", data=b"N4Ig", timeout=10)
    assert r.status_code == 415 and "lz64" in r.json()["detail"]
    assert _count(server) == 2


def test_a_sender_that_hangs_up_mid_body_is_not_an_error(server: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(
                b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Authorization: Basic " + base64.b64encode(WRITE_KEY.encode() + b":") + b"\r\n"
                b'Content-Length: 1000\r\n\r\n{"batch": ['
            )
        assert server.post("/v1/batch", {"batch": []}).status_code == 200  # answered after it
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
