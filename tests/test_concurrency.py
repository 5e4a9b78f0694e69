"""Many writers at once (threads here; replicas in production): no 5xx, totals stay true."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import select

from storage.ingest import rebuild_accounts
from storage.tables import ACCOUNTS
from tests.support import LiveServer


def _msg(kind: str, user: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "userId": user, "messageId": str(uuid.uuid4()), **extra}


def _account_scores(server: LiveServer) -> dict[str, int]:
    with server.runtime.db.read() as s:
        return {e: sc for e, sc in s.execute(select(ACCOUNTS.c.external_id, ACCOUNTS.c.score))}


def test_parallel_moves_and_events_leave_every_account_equal_to_its_members(any_server: LiveServer) -> None:
    """Users move between accounts while their events arrive, 40 requests at a time."""
    users = [f"u{i}" for i in range(8)]
    requests_ = []
    for round_ in range(5):
        for n, user in enumerate(users):
            account = f"acct-{(n + round_) % 3}"
            requests_.append({"batch": [_msg("group", user, groupId=account, traits={"name": account})]})
            requests_.append(
                {
                    "batch": [
                        *[_msg("track", user, event="Core Feature Used") for _ in range(3)],
                        _msg("track", user, event="Project Created"),
                        _msg(
                            "track",
                            user,
                            event="Invite Sent",
                            properties={"invitee_email": f"{user}-{round_}@x.example"},
                        ),
                    ]
                }
            )
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(lambda body: any_server.post("/v1/batch", body).status_code, requests_))
    assert statuses.count(200) == len(requests_), sorted(set(statuses))
    any_server.runtime.pipeline.rescore_all()
    before = _account_scores(any_server)
    # Recompute every account from its members' aggregates from scratch: nothing may change.
    with any_server.runtime.db.write(scoring=True) as s:
        rebuild_accounts(session=s, account_ids=list(s.scalars(select(ACCOUNTS.c.id))))
    any_server.runtime.pipeline.rescore_all()
    assert _account_scores(any_server) == before


def test_a_user_working_in_two_workspaces_is_announced_once_per_workspace(any_server: LiveServer) -> None:
    client = any_server.segment()
    client.identify("nomad", {"email": "nomad@x.example"})
    client.track("nomad", "Invite Sent", {"invitee_email": "a@x.example"}, context={"groupId": "ws-a"})
    client.track("nomad", "Invite Sent", {"invitee_email": "b@x.example"}, context={"groupId": "ws-a"})
    client.track("nomad", "Integration Activated", {"integration": "github"}, context={"groupId": "ws-a"})
    for i in range(6):
        client.page(
            "nomad",
            name="Dashboard",
            properties={"path": "/app"},
            context={"groupId": "ws-b" if i % 2 == 0 else "ws-a"},
        )
    client.flush()
    any_server.settle(1.0)
    pql = [a for a in any_server.alerts() if a["text"].startswith("PQL")]
    assert len(pql) <= 2, [a["text"] for a in pql]


def test_fifty_parallel_requests_during_a_full_rescore_lose_nothing(any_server: LiveServer) -> None:
    """Ingest keeps answering 200, and stores every event, while everyone is being re-scored."""
    import threading

    from sqlalchemy import func

    from storage.tables import EVENTS

    seed = [
        {
            "batch": [
                _msg("identify", f"s{i}", traits={"email": f"s{i}@x.example"}),
                _msg("group", f"s{i}", groupId=f"a{i % 40}"),
            ]
        }
        for i in range(400)
    ]
    with ThreadPoolExecutor(max_workers=10) as pool:
        assert set(pool.map(lambda b: any_server.post("/v1/batch", b).status_code, seed)) == {200}
    stop = threading.Event()
    rescores = []

    def rescore() -> None:
        while not stop.is_set():
            rescores.append(any_server.runtime.pipeline.rescore_all())

    worker = threading.Thread(target=rescore)
    worker.start()
    try:
        bodies = [
            {"batch": [_msg("track", f"s{(i * 7 + j) % 400}", event="Core Feature Used") for j in range(10)]}
            for i in range(50)
        ]
        with ThreadPoolExecutor(max_workers=50) as pool:
            statuses = list(pool.map(lambda b: any_server.post("/v1/batch", b).status_code, bodies))
    finally:
        stop.set()
        worker.join(120)
    assert statuses == [200] * 50
    assert rescores, "a re-score ran meanwhile"
    with any_server.runtime.db.read() as s:
        stored = s.scalar(select(func.count()).select_from(EVENTS).where(EVENTS.c.kind == "track"))
    assert stored == 500


def test_batches_written_together_still_fail_alone(server: LiveServer) -> None:
    """Batches that queue behind a write are written as one transaction; when that transaction
    fails, only the sender whose batch caused it gets an error and every other batch is stored."""
    import threading
    import time

    from sqlalchemy import func, text

    from storage.tables import EVENTS

    db = server.runtime.db
    with db.write() as s:  # a storage rule the poisoned batch breaks (as a constraint would)
        s.execute(
            text(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON events WHEN NEW.message_id = 'poison' "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        )
    bodies = [{"batch": [_msg("track", f"g{i}", event="Core Feature Used")]} for i in range(12)]
    bodies[7]["batch"].append({**_msg("track", "g7", event="Core Feature Used"), "messageId": "poison"})
    statuses: dict[int, int] = {}

    def send(i: int) -> None:
        statuses[i] = server.post("/v1/batch", bodies[i]).status_code

    # Hold the write lock so all twelve queue up behind it and are written as a group.
    with db._write_lock:
        threads = [threading.Thread(target=send, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(server.runtime.pipeline._waiting) < 11 and time.monotonic() < deadline:
            time.sleep(0.01)
        queued = len(server.runtime.pipeline._waiting)
    for t in threads:
        t.join(30)
    assert queued >= 2, "the batches did not queue up into a group"
    assert statuses.pop(7) >= 500
    assert set(statuses.values()) == {200}
    with db.read() as s:
        users = set(s.scalars(select(text("users.external_id")).select_from(text("users"))))
        stored = s.scalar(select(func.count()).select_from(EVENTS))
    assert stored == 11
    assert "g7" not in users and {f"g{i}" for i in range(12) if i != 7} <= users
