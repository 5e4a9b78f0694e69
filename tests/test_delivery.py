"""Delivery when Slack's answer never comes back: the alert is found, not posted twice."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from storage.tables import ALERTS
from tests.support import LiveServer
from tests.test_slack import northwind, wait_for


def _alerts(server: LiveServer) -> list[dict]:  # type: ignore[type-arg]
    with server.runtime.db.read() as s:
        return [dict(r._mapping) for r in s.execute(select(ALERTS).order_by(ALERTS.c.id))]


def _retry_now(server: LiveServer) -> None:
    server.clock.advance(timedelta(minutes=2))  # past the backoff
    server.runtime.delivery.wake()


def test_a_post_whose_answer_timed_out_is_found_not_posted_again(server: LiveServer) -> None:
    server.runtime.delivery.poster.timeout = 1
    server.slack.fail_next["chat.postMessage"] = [{"delay": 2}]  # Slack posts it, answers too late
    northwind(server)
    assert wait_for(lambda: (_alerts(server) or [{}])[0].get("last_error"), timeout=10)
    assert _alerts(server)[0]["last_error"].startswith("uncertain")
    time.sleep(1.5)  # Slack's late answer is out; the message is in the channel
    _retry_now(server)
    assert wait_for(lambda: _alerts(server)[0]["status"] == "sent", timeout=10)
    assert len(server.slack.posted()) == 1, "posted once, found the second time"
    alert = _alerts(server)[0]
    assert alert["ts"] == server.slack.messages[0]["ts"] and alert["channel"] == server.slack.messages[0]["channel"]
    history = server.slack.posted("conversations.history")
    assert history and history[0].get("include_all_metadata") in (True, "true", "1")


def test_without_history_access_it_posts_again_and_says_so(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.runtime.delivery.poster.timeout = 1
    server.slack.fail_next["chat.postMessage"] = [{"delay": 2}]
    server.slack.fail_next["conversations.history"] = [{"body": {"ok": False, "error": "missing_scope"}}]
    northwind(server)
    assert wait_for(lambda: (_alerts(server) or [{}])[0].get("last_error"), timeout=10)
    time.sleep(1.5)
    with caplog.at_level(logging.WARNING, logger="pqlbot.delivery"):
        _retry_now(server)
        assert wait_for(lambda: _alerts(server)[0]["status"] == "sent", timeout=10)
    assert len(server.slack.posted()) == 2
    assert "cannot check whether alert 1 reached Slack (missing_scope)" in caplog.text


def test_an_alert_slack_never_takes_is_given_up_after_a_day_and_reported(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    import requests

    failing = {"body": {"ok": False, "error": "channel_not_found"}}
    server.slack.fail_next["chat.postMessage"] = [dict(failing) for _ in range(100)]
    northwind(server)
    assert wait_for(lambda: _alerts(server) and _alerts(server)[0]["attempts"] >= 1, timeout=10)
    with caplog.at_level(logging.ERROR, logger="pqlbot.delivery"):
        for _ in range(40):  # an hour apart at most (the backoff's cap), past a day
            server.clock.advance(timedelta(hours=1))
            server.runtime.delivery.wake()
            time.sleep(0.05)
            if _alerts(server)[0]["status"] == "failed":
                break
    alert = _alerts(server)[0]
    assert alert["status"] == "failed" and alert["last_error"] == "Slack answered channel_not_found"
    assert "giving up" in caplog.text and "PQLBOT_ALERT_CHANNEL" in caplog.text
    health = requests.get(server.url + "/healthz", timeout=10).json()
    assert health["details"]["alerts"]["failed"] == 1
    assert health["details"]["alerts"]["last_failure"]["error"] == "Slack answered channel_not_found"
    attempts = alert["attempts"]
    server.clock.advance(timedelta(days=2))
    server.settle()
    assert _alerts(server)[0]["attempts"] == attempts, "no more tries after giving up"


def test_healthz_shows_when_each_scheduled_job_last_ran(server: LiveServer) -> None:
    import requests

    from bot.jobs import Scheduler

    assert requests.get(server.url + "/healthz", timeout=10).json()["details"]["jobs"] == {}
    Scheduler(server.runtime.services).tick()
    jobs = requests.get(server.url + "/healthz", timeout=10).json()["details"]["jobs"]
    assert set(jobs) == {"reevaluate", "reminders", "weekly_digest", "monthly_report"}
    assert jobs["reevaluate"]["last_finished"] is not None and "last_error" not in jobs["reevaluate"]
    assert jobs["weekly_digest"]["last_finished"] is None  # a new install waits for its first Monday


def test_slacks_retry_after_a_timeout_repeats_nothing(server: LiveServer) -> None:
    """The first request changes the model and answers; Slack's retry of it (it gave up waiting)
    neither changes anything again nor sends a second answer."""
    import urllib.parse

    from tests.support import ADMIN

    def body(name: str) -> str:
        return urllib.parse.urlencode(
            {
                "command": "/pql",
                "text": "weight integration_activated 30",
                "user_id": ADMIN,
                "team_id": "T0ACME",
                "channel_id": "C0WORK",
                "response_url": server.slack.response_url(name),
                "trigger_id": "1.1.x",
            }
        )

    form = "application/x-www-form-urlencoded"
    first = server.signed(body("first"), form)
    assert first.status_code == 200
    assert "Model *v2* is live" in str(server.slack.wait_response("first"))
    retried = server.signed(
        body("retry"), form, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    )
    assert retried.status_code == 200 and retried.headers.get("X-Slack-No-Retry") == "1"
    server.settle()
    assert not [p for p, _ in server.slack.responses if p.endswith("/retry")]
    assert "v3" not in server.command("model history")


def test_logs_at_info_carry_no_emails_or_secrets(server: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    import requests

    from tests.support import SIGNING_SECRET, WRITE_KEY

    with caplog.at_level(logging.DEBUG, logger="pqlbot"):
        northwind(server)  # identify with an email, a PQL alert
        wait_for(lambda: server.slack.posted())
        server.command("claim ada@northwind.example")
        server.command("score ada@northwind.example")
        requests.post(server.url + "/v1/batch", json={"batch": []}, auth=("wrong-key", ""), timeout=10)
        bad = {
            "batch": [{"type": "identify", "userId": "u-x", "traits": {"email": "x@secret.example"}, "timestamp": "no"}]
        }
        requests.post(server.url + "/v1/batch", json=bad, auth=(WRITE_KEY, ""), timeout=10)
        server.settle()
    info = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    assert "lead" in info  # the log does say what happened
    for secret in ("@northwind.example", "x@secret.example", WRITE_KEY, "wrong-key", SIGNING_SECRET, "xoxb-test"):
        assert secret not in info, secret
