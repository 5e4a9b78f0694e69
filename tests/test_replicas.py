"""Two `pqlbot serve` processes on one PostgreSQL, as N replicas behind a load balancer run:
they share nothing in memory, yet post every alert once, agree on claims and run each
scheduled job once."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from slack_sdk.signature import SignatureVerifier

from bot.demo.standin import free_port
from tests.conftest import POSTGRES_URL, _reset_postgres
from tests.fakes import FakeSlack
from tests.support import CHANNEL, SIGNING_SECRET, WRITE_KEY

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="PQLBOT_TEST_POSTGRES_URL is not set")


class Replica:
    def __init__(self, tmp: Path, slack: FakeSlack, n: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"replica{n}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PQLBOT_", "DATABASE_URL"))}
        env.update(
            DATABASE_URL=str(POSTGRES_URL),
            SLACK_BOT_TOKEN="xoxb-test",
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_URL=slack.api_url,
            PQLBOT_WRITE_KEYS=WRITE_KEY,
            PQLBOT_ALERT_CHANNEL=CHANNEL,
        )
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "-v", "serve", "--port", str(self.port)],
            cwd=tmp,
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(self.log.read_text())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)
        self._out.close()

    def command(self, slack: FakeSlack, text: str, user: str) -> str:
        name = f"r{uuid.uuid4().hex[:8]}"
        body = urllib.parse.urlencode(
            {
                "command": "/pql",
                "text": text,
                "user_id": user,
                "team_id": "T0ACME",
                "channel_id": "C0WORK",
                "response_url": slack.response_url(name),
                "trigger_id": "1.1.x",
            }
        )
        ts = str(int(time.time()))
        sig = SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=ts, body=body) or ""
        resp = requests.post(
            self.url + "/slack/events",
            data=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": sig,
            },
            timeout=30,
        )
        assert resp.status_code == 200
        return str(slack.wait_response(name))


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[Replica, Replica, FakeSlack]]:
    assert POSTGRES_URL
    _reset_postgres(POSTGRES_URL)
    slack = FakeSlack()
    first = Replica(tmp_path, slack, 1)
    second = Replica(tmp_path, slack, 2)
    try:
        yield first, second, slack
    finally:
        first.stop()
        second.stop()
        slack.close()


def _account(n: int) -> list[dict[str, object]]:
    user, acct = f"rep-u{n}", f"rep-acct-{n}"

    def msg(kind: str, **fields: object) -> dict[str, object]:
        return {"type": kind, "userId": user, "messageId": str(uuid.uuid4()), **fields}

    return [
        msg("identify", traits={"email": f"owner{n}@replica.example"}),
        msg("group", groupId=acct, traits={"name": f"Replica {n}"}),
        msg("track", event="Invite Sent", properties={"invitee_email": f"a{n}@x.example"}, context={"groupId": acct}),
        msg("track", event="Invite Sent", properties={"invitee_email": f"b{n}@x.example"}, context={"groupId": acct}),
        msg("track", event="Integration Activated", properties={"integration": "jira"}, context={"groupId": acct}),
        msg("page", name="Billing", properties={"path": "/billing"}, context={"groupId": acct}),
    ]


def test_two_replicas_post_once_agree_on_claims_and_run_jobs_once(replicas: tuple[Replica, Replica, FakeSlack]) -> None:
    first, second, slack = replicas
    # Each account's events split across both replicas, as a load balancer would.
    for n in range(12):
        messages = _account(n)
        for i, msg in enumerate(messages):
            target = (first, second)[(n + i) % 2]
            resp = requests.post(target.url + "/v1/batch", json={"batch": [msg]}, auth=(WRITE_KEY, ""), timeout=30)
            assert resp.status_code == 200
    deadline = time.time() + 30
    while time.time() < deadline and len(slack.posted()) < 24:
        time.sleep(0.1)
    time.sleep(1)  # both delivery workers had their chance to post anything twice
    posts = slack.posted()
    ids = collections.Counter(p["metadata"]["event_payload"]["alert_id"] for p in posts)
    assert len(ids) == 24 and set(ids.values()) == {1}, ids  # 12 PQL + 12 hand-raiser alerts, once each
    assert sum(p["text"].startswith("PQL") for p in posts) == 12

    # Three reps claim the same account at the same moment, through both replicas.
    answers: dict[str, str] = {}
    barrier = threading.Barrier(3)

    def claim(rep: str, replica: Replica) -> None:
        barrier.wait()
        answers[rep] = replica.command(slack, "claim rep-acct-3", rep)

    threads = [
        threading.Thread(target=claim, args=(rep, r))
        for rep, r in (("UREPA0001", first), ("UREPB0002", second), ("UREPC0003", first))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    winners = [rep for rep, text in answers.items() if "You claimed" in text]
    assert len(winners) == 1, answers
    for rep, text in answers.items():
        if rep not in winners:
            assert winners[0] in text, text  # told who holds it

    # The scheduler's first tick in each process: the re-evaluation ran in exactly one.
    logs = first.log.read_text() + second.log.read_text()
    assert logs.count("re-evaluated") == 1, logs[-3000:]
