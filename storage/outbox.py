"""The alert outbox: rows written in the scoring transaction, delivered (once) by a worker."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from storage._sql import affected
from storage.tables import ALERTS, Alert

PENDING, SENDING, SENT, FAILED = "pending", "sending", "sent", "failed"


def enqueue(*, session: Session, kind: str, context: dict[str, Any], now: datetime, lead_id: int | None = None) -> int:
    alert = Alert(lead_id=lead_id, kind=kind, context=context, status=PENDING, next_attempt_at=now, created_at=now)
    session.add(alert)
    session.flush()
    return int(alert.id)  # type: ignore[arg-type]


def _due(now: datetime) -> Any:
    return or_(
        and_(ALERTS.c.status == PENDING, ALERTS.c.next_attempt_at <= now),
        # a worker that died mid-delivery leaves its lease to run out
        and_(ALERTS.c.status == SENDING, ALERTS.c.lease_until < now),
    )


def take_due(*, session: Session, now: datetime, lease: timedelta, limit: int = 20) -> list[Alert]:
    """Lease up to `limit` due alerts to this worker; each is leased to exactly one worker."""
    ids = session.scalars(select(ALERTS.c.id).where(_due(now)).order_by(ALERTS.c.id).limit(limit)).all()
    taken = []
    for alert_id in ids:
        res = session.execute(
            update(ALERTS)
            .where(ALERTS.c.id == alert_id, _due(now))
            .values(status=SENDING, lease_until=now + lease, attempts=ALERTS.c.attempts + 1)
        )
        if affected(res) == 1:
            taken.append(alert_id)
    if not taken:
        return []
    return list(session.scalars(select(Alert).where(col(Alert.id).in_(taken)).order_by(col(Alert.id))))


def mark_sent(*, session: Session, alert_id: int, channel: str, ts: str, now: datetime) -> None:
    session.execute(
        update(ALERTS)
        .where(ALERTS.c.id == alert_id)
        .values(status=SENT, channel=channel, ts=ts, sent_at=now, lease_until=None, last_error=None)
    )


def mark_retry(*, session: Session, alert_id: int, error: str, next_at: datetime, give_up: bool) -> None:
    session.execute(
        update(ALERTS)
        .where(ALERTS.c.id == alert_id)
        .values(
            status=FAILED if give_up else PENDING, next_attempt_at=next_at, lease_until=None, last_error=error[:500]
        )
    )


def delivered_for_lead(*, session: Session, lead_id: int) -> Sequence[Alert]:
    return session.scalars(
        select(Alert)
        .where(col(Alert.lead_id) == lead_id, col(Alert.status) == SENT, col(Alert.ts).is_not(None))
        .order_by(col(Alert.id))
    ).all()


BUNDLE_REACH = timedelta(days=30)


def delivered_bundles_with(*, session: Session, lead_id: int, now: datetime) -> list[Alert]:
    """Recent bundled announcements (after a model change) that list this lead."""
    bundles = session.scalars(
        select(Alert).where(
            col(Alert.kind) == "bundle",
            col(Alert.status) == SENT,
            col(Alert.ts).is_not(None),
            col(Alert.created_at) >= now - BUNDLE_REACH,
        )
    )
    return [b for b in bundles if any(item.get("lead_id") == lead_id for item in b.context.get("leads", []))]


def by_message(*, session: Session, channel: str, ts: str) -> Alert | None:
    return session.scalars(select(Alert).where(col(Alert.channel) == channel, col(Alert.ts) == ts)).first()


def get(*, session: Session, alert_id: int) -> Alert | None:
    return session.get(Alert, alert_id)


def counts(*, session: Session) -> dict[str, int]:
    return {status: n for status, n in session.execute(select(ALERTS.c.status, func.count()).group_by(ALERTS.c.status))}


def last_failure(*, session: Session) -> dict[str, Any] | None:
    """The latest alert given up on (after a day of retries): when, and what Slack said."""
    alert = session.scalars(
        select(Alert).where(col(Alert.status) == FAILED).order_by(col(Alert.id).desc()).limit(1)
    ).first()
    if alert is None:
        return None
    return {
        "alert": alert.id,
        "kind": alert.kind,
        "created_at": alert.created_at.isoformat(),
        "error": alert.last_error,
    }
