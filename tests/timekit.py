"""Helpers for tests of time: a pqlbot runtime whose clock is the wall clock (so freezegun moves
it), events sent through its pipeline, and its outbox delivered to a fake Slack over HTTP."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from bot.app import Runtime
from bot.jobs import Scheduler
from scoring import Event
from storage.tables import ALERTS, LEADS
from tests.fakes import FakeSlack
from tests.support import make_settings

_ids = itertools.count(1)


@contextmanager
def runtime(db_url: str, **settings: Any) -> Iterator[tuple[Runtime, FakeSlack]]:
    """A pqlbot process (without its HTTP server): pipeline, delivery, scheduler state."""
    slack = FakeSlack()
    rt = Runtime(make_settings(db_url, slack, **settings), run_scheduler=False)
    rt.prepare()
    try:
        yield rt, slack
    finally:
        rt.db.dispose()
        slack.close()


def event(
    user: str,
    name: str | None = None,
    *,
    kind: str = "track",
    group: str | None = None,
    at: datetime | None = None,
    **props: Any,
) -> Event:
    """A track event `name` with properties; or (kind identify or group) a call whose traits are
    the keyword arguments, `name` among them. It happens `at` (default: now)."""
    now = at or datetime.now(UTC)
    call = kind in ("identify", "group")
    traits = {**props, **({"name": name} if name is not None else {})} if call else {}
    return Event(
        message_id=f"t-{next(_ids)}",
        kind=kind,  # type: ignore[arg-type]
        timestamp=now,
        received_at=now,
        user_id=user,
        name=None if call else name,
        group_id=group,
        properties={} if call else props,
        traits=traits,
    )


def send(rt: Runtime, *events: Event) -> None:
    rt.pipeline.ingest(list(events))


def team(rt: Runtime, account: str = "acct-northwind", name: str = "Northwind Traders") -> None:
    """An account whose first member invited two teammates (+25)."""
    send(
        rt,
        event("u-ada", kind="identify", email="ada@northwind.example", name="Ada Lovelace"),
        event("u-ada", kind="group", group=account, name=name),
        event("u-ada", "Invite Sent", group=account, invitee_email="grace@northwind.example"),
        event("u-ada", "Invite Sent", group=account, invitee_email="alan@northwind.example"),
    )


def deliver(rt: Runtime) -> int:
    """Post everything due in the outbox to the fake Slack, as the delivery worker does."""
    return asyncio.run(rt.delivery.deliver_due())


def tick(rt: Runtime, scheduler: Scheduler | None = None) -> list[str]:
    return (scheduler or Scheduler(rt.services, owner="test")).tick()


def outbox(rt: Runtime, kind: str) -> list[dict[str, Any]]:
    with rt.db.read() as s:
        return [dict(r._mapping) for r in s.execute(select(ALERTS).where(ALERTS.c.kind == kind).order_by(ALERTS.c.id))]


def leads(rt: Runtime) -> list[dict[str, Any]]:
    with rt.db.read() as s:
        return [dict(r._mapping) for r in s.execute(select(LEADS).order_by(LEADS.c.id))]
