"""Every analytics source, each through its vendor's own client library, into Slack alerts."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from storage.tables import ACCOUNTS, EVENTS, USERS
from tests.support import WRITE_KEY, LiveServer, live_server

SECRET = "whsec-test-shared"


@pytest.fixture
def hook_server(tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(f"sqlite:///{tmp_path / 'hook.db'}", PQLBOT_SEGMENT_WEBHOOK_SECRET=SECRET) as srv:
        yield srv


def _wait_alert(server: LiveServer, prefix: str, wait: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        server.runtime.delivery.wake()
        found = [a for a in server.alerts() if a["text"].startswith(prefix)]
        if found:
            return found[-1]
        time.sleep(0.05)
    raise AssertionError(f"no {prefix} alert; posted: {[a['text'] for a in server.alerts()]}")


def _blocks_text(alert: dict[str, Any]) -> str:
    return json.dumps(alert.get("blocks", []))


def _rows(server: LiveServer, query: Any) -> list[Any]:
    with server.runtime.db.read() as s:
        return list(s.execute(query))


# --- Mixpanel --------------------------------------------------------------------------------


def _mixpanel(server: LiveServer, token: str = WRITE_KEY) -> Any:
    from mixpanel import Consumer, Mixpanel

    base = server.url + "/mixpanel"
    consumer = Consumer(
        events_url=f"{base}/track",
        people_url=f"{base}/engage",
        groups_url=f"{base}/groups",
        import_url=f"{base}/import",
        retry_limit=0,
    )
    return Mixpanel(token, consumer=consumer)


def test_mixpanel_client_events_people_and_groups_end_in_an_account_pql_alert(server: LiveServer) -> None:
    mp = _mixpanel(server)
    mp.group_set("company_id", "acme", {"$name": "Acme Corp", "plan": "free"})
    mp.people_set("mx-ada", {"$email": "ada@acme.example", "$name": "Ada", "company_id": "acme"})
    mp.people_set("mx-bob", {"$email": "bob@acme.example", "$name": "Bob", "company_id": ["acme"]})
    mp.track("mx-ada", "Invite Sent", {"invitee_email": "c@acme.example", "company_id": "acme"})
    mp.track("mx-bob", "Invite Sent", {"invitee_email": "d@acme.example", "company_id": "acme"})
    mp.track("mx-bob", "Integration Activated", {"integration": "github", "company_id": "acme"})
    alert = _wait_alert(server, "PQL")
    assert "Acme Corp" in alert["text"] + _blocks_text(alert)
    assert "ada@acme.example" in _blocks_text(alert) or "Ada" in _blocks_text(alert)
    rows = _rows(server, select(EVENTS.c.source, EVENTS.c.name).where(EVENTS.c.kind == "track"))
    assert {r.source for r in rows} == {"mixpanel"} and len(rows) == 3
    (acct,) = _rows(server, select(ACCOUNTS.c.name, ACCOUNTS.c.traits).where(ACCOUNTS.c.external_id == "acme"))
    assert acct.name == "Acme Corp" and acct.traits["plan"] == "free"


def test_mixpanel_insert_id_deduplicates_and_time_may_be_seconds_or_milliseconds(server: LiveServer) -> None:
    mp = _mixpanel(server)
    insert = uuid.uuid4().hex
    at = datetime.now(UTC) - timedelta(days=2)
    mp.track("mx-t", "Project Created", {"$insert_id": insert, "time": at.timestamp()})
    mp.track("mx-t", "Project Created", {"$insert_id": insert, "time": at.timestamp()})  # a retry
    mp.track("mx-t", "Project Created", {"time": int(at.timestamp() * 1000)})
    rows = _rows(server, select(EVENTS.c.occurred_at).where(EVENTS.c.name == "Project Created"))
    assert len(rows) == 2
    for (occurred,) in rows:
        assert abs((occurred - at).total_seconds()) < 1


def test_mixpanel_import_with_a_project_token_is_stored(server: LiveServer) -> None:
    mp = _mixpanel(server)
    at = int((datetime.now(UTC) - timedelta(days=10)).timestamp())
    mp.import_data("unused-api-key", "mx-old", "Core Feature Used", at, api_secret="a-secret")
    rows = _rows(server, select(EVENTS.c.occurred_at, EVENTS.c.source).where(EVENTS.c.name == "Core Feature Used"))
    assert len(rows) == 1 and rows[0].source == "mixpanel"


def test_mixpanel_page_view_on_billing_is_a_hand_raiser(server: LiveServer) -> None:
    mp = _mixpanel(server)
    mp.people_set("mx-cy", {"$email": "cy@beta.example", "company_id": "beta"})
    mp.track("mx-cy", "$mp_web_page_view", {"$current_url": "https://app.example/billing/plans", "company_id": "beta"})
    alert = _wait_alert(server, "Hand-raiser")
    assert "cy@beta.example" in _blocks_text(alert) + alert["text"]


def test_mixpanel_refusals_say_status_0_with_the_problem(server: LiveServer) -> None:
    from mixpanel import MixpanelException

    with pytest.raises(MixpanelException, match="project token"):
        _mixpanel(server, token="not-a-key").track("x", "Invite Sent")
    url = server.url + "/mixpanel/track"
    r = requests.post(url, data={"data": "{not json"}, timeout=10)
    assert r.status_code == 400 and r.json()["status"] == 0 and r.json()["error"].startswith("`data` is not valid JSON")
    r = requests.post(url, data={"verbose": "1"}, timeout=10)
    assert r.json()["status"] == 0 and "data" in r.json()["error"]
    bad = [
        {"event": "Invite Sent", "properties": {"token": WRITE_KEY, "distinct_id": "ok"}},
        {"event": "Invite Sent", "properties": {"token": WRITE_KEY, "distinct_id": "null"}},
    ]
    r = requests.post(url, data={"data": json.dumps(bad)}, timeout=10)
    assert r.status_code == 400 and r.json()["status"] == 0
    assert r.json()["error"].startswith("record 1: distinct_id")
    r = requests.post(
        url, data={"data": json.dumps([{**bad[0], "properties": {**bad[0]["properties"], "time": "soon"}}])}
    )
    assert r.status_code == 400 and "time" in r.json()["error"]
    assert _rows(server, select(EVENTS.c.id)) == []  # nothing of a refused request was stored


def test_mixpanel_base64_data_from_older_clients_is_read(server: LiveServer) -> None:
    import base64

    record = {"event": "Project Created", "properties": {"token": WRITE_KEY, "distinct_id": "mx-b64"}}
    data = base64.b64encode(json.dumps(record).encode()).decode()
    r = requests.post(server.url + "/mixpanel/track", data={"data": data}, timeout=10)
    assert r.json() == {"status": 1}
    assert len(_rows(server, select(EVENTS.c.id).where(EVENTS.c.name == "Project Created"))) == 1


def test_mixpanel_json_body_and_gzip_are_read(server: LiveServer) -> None:
    import gzip

    records = [
        {"event": "Project Created", "properties": {"token": WRITE_KEY, "distinct_id": f"mx-j{i}"}} for i in range(3)
    ]
    body = gzip.compress(json.dumps(records).encode())
    r = requests.post(
        server.url + "/mixpanel/import",
        data=body,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        auth=("service-account-secret", ""),
        timeout=10,
    )
    assert r.json() == {"status": 1}, r.text
    assert len(_rows(server, select(EVENTS.c.id).where(EVENTS.c.name == "Project Created"))) == 3


# --- RudderStack ------------------------------------------------------------------------------


def test_rudderstack_client_with_gzip_ends_in_a_pql_alert(server: LiveServer) -> None:
    from rudderstack.analytics.client import Client

    rs = Client(write_key=WRITE_KEY, host=server.url, sync_mode=True, gzip=True, max_retries=0)
    rs.identify("rs-ann", {"email": "ann@gamma.example", "name": "Ann"})
    rs.group("rs-ann", "gamma", {"name": "Gamma Inc"})
    rs.track("rs-ann", "Invite Sent", {"invitee_email": "x@gamma.example"})
    rs.track("rs-ann", "Invite Sent", {"invitee_email": "y@gamma.example"})
    rs.track("rs-ann", "Integration Activated", {"integration": "slack"})
    rs.flush()
    alert = _wait_alert(server, "PQL")
    assert "Gamma Inc" in alert["text"] + _blocks_text(alert)


# --- PostHog ----------------------------------------------------------------------------------


def _posthog(server: LiveServer, key: str = WRITE_KEY, gzip: bool = False) -> Any:
    from posthog import Posthog

    return Posthog(key, host=server.url + "/posthog", sync_mode=True, max_retries=0, gzip=gzip)


@pytest.mark.parametrize("gzip", [False, True])
def test_posthog_client_pageview_on_upgrade_is_a_hand_raiser_in_its_company(server: LiveServer, gzip: bool) -> None:
    ph = _posthog(server, gzip=gzip)
    ph.group_identify("company", "delta", {"name": "Delta LLC"}, distinct_id="ph-dee")
    ph.set(distinct_id="ph-dee", properties={"email": "dee@delta.example", "name": "Dee"})
    ph.capture(
        "$pageview",
        distinct_id="ph-dee",
        properties={"$current_url": "https://app.example/upgrade?plan=team"},
        groups={"company": "delta"},
    )
    alert = _wait_alert(server, "Hand-raiser")
    shown = alert["text"] + _blocks_text(alert)
    assert "Delta LLC" in shown and "dee@delta.example" in shown


def test_posthog_capture_with_groups_pools_the_account_and_identify_links_the_visitor(server: LiveServer) -> None:
    ph = _posthog(server)
    anon = str(uuid.uuid4())
    ph.capture(
        "Invite Sent", distinct_id=anon, properties={"invitee_email": "p@eps.example", "$process_person_profile": False}
    )
    ph.capture(
        "$identify",
        distinct_id="ph-eve",
        properties={"$anon_distinct_id": anon, "$set": {"email": "eve@eps.example"}},
        groups={"company": "eps"},
    )
    ph.capture(
        "Invite Sent", distinct_id="ph-eve", properties={"invitee_email": "q@eps.example"}, groups={"company": "eps"}
    )
    ph.capture(
        "Integration Activated", distinct_id="ph-eve", properties={"integration": "jira"}, groups={"company": "eps"}
    )
    alert = _wait_alert(server, "PQL")
    assert "eps" in alert["text"] + _blocks_text(alert)
    users = _rows(server, select(USERS.c.external_id, USERS.c.email))
    assert ("ph-eve", "eve@eps.example") in [tuple(u) for u in users]
    assert len(users) == 1, users  # the visitor joined Eve: no second person


def test_posthog_refusals(server: LiveServer) -> None:
    r = requests.post(server.url + "/posthog/batch/", json={"api_key": "nope", "batch": []}, timeout=10)
    assert r.status_code == 401 and "api_key" in r.json()["detail"]
    body = {"api_key": WRITE_KEY, "batch": [{"event": "x", "distinct_id": "a"}, {"event": "", "distinct_id": "b"}]}
    r = requests.post(server.url + "/posthog/batch/", json=body, timeout=10)
    assert r.status_code == 400 and r.json()["detail"].startswith("event 1: event")
    r = requests.post(
        server.url + "/posthog/capture/", json={"api_key": WRITE_KEY, "event": "Project Created"}, timeout=10
    )
    assert r.status_code == 400 and "distinct_id" in r.json()["detail"]
    r = requests.post(
        server.url + "/posthog/capture/",
        json={"api_key": WRITE_KEY, "event": "Project Created", "distinct_id": "ph-1"},
        timeout=10,
    )
    assert r.json() == {"status": 1}
    assert len(_rows(server, select(EVENTS.c.id))) == 1


# --- Segment webhooks -------------------------------------------------------------------------


def _signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {
        "X-Signature": hmac.new(secret.encode(), body, hashlib.sha1).hexdigest(),
        "Content-Type": "application/json",
    }


def test_segment_webhook_verified_hand_raiser_alerts(hook_server: LiveServer) -> None:
    message = {
        "type": "page",
        "userId": "wh-fay",
        "name": "Pricing",
        "properties": {"path": "/pricing"},
        "context": {"groupId": "zeta", "traits": {"email": "fay@zeta.example"}},
        "messageId": "wh-1",
        "timestamp": datetime.now(UTC).isoformat(),
    }
    body = json.dumps(message).encode()
    url = hook_server.url + "/ingest/segment-webhook"
    assert requests.post(url, data=body, headers=_signed(body), timeout=10).json() == {"success": True}
    alert = _wait_alert(hook_server, "Hand-raiser")
    assert "wh-fay" in alert["text"] + _blocks_text(alert)
    # The same message again (Segment retries) posts nothing new and stores nothing twice.
    assert requests.post(url, data=body, headers=_signed(body), timeout=10).status_code == 200
    hook_server.settle(0.5)
    assert len([a for a in hook_server.alerts() if a["text"].startswith("Hand-raiser")]) == 1


def test_segment_webhook_refuses_a_wrong_or_missing_signature(hook_server: LiveServer, server: LiveServer) -> None:
    body = json.dumps({"type": "track", "userId": "u", "event": "Invite Sent"}).encode()
    url = hook_server.url + "/ingest/segment-webhook"
    for headers in ({}, _signed(body, "other-secret"), {"X-Signature": "zz"}):
        r = requests.post(url, data=body, headers=headers, timeout=10)
        assert r.status_code == 401 and "X-Signature" in r.json()["error"]
    tampered = body.replace(b"Invite", b"Xnvite")
    assert requests.post(url, data=tampered, headers=_signed(body), timeout=10).status_code == 401
    assert _rows(hook_server, select(EVENTS.c.id)) == []
    # No secret configured: the route is closed.
    r = requests.post(server.url + "/ingest/segment-webhook", data=body, headers=_signed(body), timeout=10)
    assert r.status_code == 401 and "PQLBOT_SEGMENT_WEBHOOK_SECRET" in r.json()["error"]
    bad = b'{"type": "track", "event": "Invite Sent"}'
    r = requests.post(url, data=bad, headers=_signed(bad), timeout=10)
    assert r.status_code == 400 and "userId" in r.json()["error"]
