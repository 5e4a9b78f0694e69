"""What the clock-driven messages say: reminders due, the weekly digest's figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from storage._sql import affected
from storage.summary import display_name
from storage.tables import ACCOUNT, ACCOUNTS, ALERTS, LEADS, SCORE_HISTORY, Account, Alert, Lead, User

# Alerts older than this past their reminder time get none: after pqlbot was down for a long
# time, a wave of reminders about week-old alerts would be noise, not help.
REMINDER_REACH = timedelta(days=3)
ALERT_KINDS = ("pql", "hand_raiser")


def lead_name(session: Session, lead: Lead) -> tuple[str, str]:
    """(name, kind) of what a lead is about, as sales knows it."""
    if lead.subject_kind == ACCOUNT:
        account = session.get(Account, lead.subject_id)
        return (account.name or account.external_id if account else f"account #{lead.subject_id}"), "account"
    user = session.get(User, lead.subject_id)
    return (display_name(user) if user else f"user #{lead.subject_id}"), "user"


def take_reminders(*, session: Session, now: datetime, after: timedelta) -> list[tuple[Alert, Lead]]:
    """Alerts whose lead nobody has claimed `after` their posting: each marked reminded (a
    compare-and-set, so it is taken once) and returned with its lead.

    Only a lead's latest alert is reminded; a PQL that has cooled since, a lead that became a
    customer or was folded into another is not."""
    newer = ALERTS.alias("newer")
    later_alert = (
        select(newer.c.id)
        .where(newer.c.lead_id == ALERTS.c.lead_id, newer.c.kind.in_(ALERT_KINDS), newer.c.id > ALERTS.c.id)
        .exists()
    )
    rows = session.execute(
        select(ALERTS.c.id, LEADS.c.id)
        .join(LEADS, LEADS.c.id == ALERTS.c.lead_id)
        .where(
            ALERTS.c.kind.in_(ALERT_KINDS),
            ALERTS.c.status == "sent",
            ALERTS.c.ts.is_not(None),
            ALERTS.c.reminded_at.is_(None),
            ALERTS.c.sent_at <= now - after,
            ALERTS.c.sent_at > now - after - REMINDER_REACH,
            LEADS.c.claimed_by.is_(None),
            LEADS.c.converted_at.is_(None),
            LEADS.c.merged_into.is_(None),
            or_(ALERTS.c.kind == "hand_raiser", LEADS.c.qualified.is_(True)),
            ~later_alert,
        )
        .order_by(ALERTS.c.id)
    ).all()
    out = []
    for alert_id, lead_id in rows:
        res = session.execute(
            update(ALERTS).where(ALERTS.c.id == alert_id, ALERTS.c.reminded_at.is_(None)).values(reminded_at=now)
        )
        if affected(res) != 1:
            continue
        alert, lead = session.get(Alert, alert_id), session.get(Lead, lead_id)
        if alert is not None and lead is not None:
            out.append((alert, lead))
    return out + _bundle_reminders(session=session, now=now, after=after)


def _bundle_reminders(*, session: Session, now: datetime, after: timedelta) -> list[tuple[Alert, Lead]]:
    """The leads a model change announced in one bundled message have no alert of their own:
    each still unclaimed gets its reminder (with a Claim button) in the bundle's thread."""
    bundles = session.execute(
        select(ALERTS.c.id).where(
            ALERTS.c.kind == "bundle",
            ALERTS.c.status == "sent",
            ALERTS.c.ts.is_not(None),
            ALERTS.c.reminded_at.is_(None),
            ALERTS.c.sent_at <= now - after,
            ALERTS.c.sent_at > now - after - REMINDER_REACH,
        )
    ).all()
    out = []
    for (bundle_id,) in bundles:
        res = session.execute(
            update(ALERTS).where(ALERTS.c.id == bundle_id, ALERTS.c.reminded_at.is_(None)).values(reminded_at=now)
        )
        bundle = session.get(Alert, bundle_id)
        if affected(res) != 1 or bundle is None:
            continue
        ids = [int(item["lead_id"]) for item in bundle.context.get("leads", []) if isinstance(item.get("lead_id"), int)]
        if not ids:
            continue
        own_alert = select(ALERTS.c.id).where(ALERTS.c.lead_id == LEADS.c.id, ALERTS.c.kind.in_(ALERT_KINDS)).exists()
        waiting = session.execute(
            select(LEADS.c.id)
            .where(
                LEADS.c.id.in_(ids),
                LEADS.c.claimed_by.is_(None),
                LEADS.c.converted_at.is_(None),
                LEADS.c.merged_into.is_(None),
                LEADS.c.qualified.is_(True),
                ~own_alert,  # announced since on its own: reminded there
            )
            .order_by(LEADS.c.id)
        ).all()
        for (lead_id,) in waiting:
            lead = session.get(Lead, lead_id)
            if lead is not None:
                out.append((bundle, lead))
    return out


@dataclass
class Digest:
    new_pqls: list[dict[str, Any]] = field(default_factory=list)
    claimed: int = 0
    claimed_by: dict[str, int] = field(default_factory=dict)
    unclaimed: list[dict[str, Any]] = field(default_factory=list)
    unclaimed_count: int = 0
    converted: list[dict[str, Any]] = field(default_factory=list)
    movers: list[dict[str, Any]] = field(default_factory=list)


LIST = 5  # names shown per section; the rest are counted


def digest(*, session: Session, start: datetime, end: datetime) -> Digest:
    """The week [start, end) for sales: new PQLs, claims, what waits unclaimed, conversions and
    the accounts whose score moved most."""
    d = Digest()
    live = LEADS.c.merged_into.is_(None)
    new = session.scalars(
        select(Lead)
        .where(live, LEADS.c.first_alerted_at >= start, LEADS.c.first_alerted_at < end)
        .order_by(LEADS.c.first_alerted_at)
    ).all()
    for lead in new:
        name, kind = lead_name(session, lead)
        d.new_pqls.append(
            {
                "name": name,
                "kind": kind,
                "score": lead.score_at_alert,
                "hand_raiser": lead.score_at_alert is None,
                "claimed_by": lead.claimed_by,
            }
        )
    for who, n in session.execute(
        select(LEADS.c.claimed_by, func.count())
        .where(LEADS.c.claimed_at >= start, LEADS.c.claimed_at < end)
        .group_by(LEADS.c.claimed_by)
    ):
        d.claimed += int(n)
        d.claimed_by[str(who)] = int(n)
    waiting = and_(
        live,
        LEADS.c.claimed_by.is_(None),
        LEADS.c.converted_at.is_(None),
        LEADS.c.first_alerted_at < end,
        or_(LEADS.c.qualified.is_(True), LEADS.c.hand_raise_alerted_at >= end - timedelta(days=30)),
    )
    d.unclaimed_count = int(session.scalar(select(func.count()).select_from(LEADS).where(waiting)) or 0)
    for lead in session.scalars(select(Lead).where(waiting).order_by(LEADS.c.first_alerted_at).limit(LIST)):
        name, kind = lead_name(session, lead)
        d.unclaimed.append({"name": name, "kind": kind, "since": lead.first_alerted_at})
    for lead in session.scalars(
        select(Lead)
        .where(live, LEADS.c.converted_at >= start, LEADS.c.converted_at < end)
        .order_by(LEADS.c.converted_at)
    ):
        name, kind = lead_name(session, lead)
        days = (
            (lead.converted_at - lead.first_alerted_at).total_seconds() / 86400
            if lead.converted_at and lead.first_alerted_at
            else None
        )
        d.converted.append({"name": name, "kind": kind, "days": days, "claimed_by": lead.claimed_by})
    d.movers = _movers(session, start, end)
    return d


def _movers(session: Session, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Accounts (not customers) whose score changed most over the week, largest move first."""
    before_day, end_day = (start - timedelta(days=1)).date(), end.date()
    moved = select(SCORE_HISTORY.c.account_id).where(SCORE_HISTORY.c.day > before_day, SCORE_HISTORY.c.day <= end_day)
    out: list[tuple[int, str, int, int]] = []
    for account in session.scalars(
        select(Account).where(ACCOUNTS.c.id.in_(moved), ACCOUNTS.c.customer_since.is_(None))
    ):
        was, now = _score_on(session, account.id, before_day), _score_on(session, account.id, end_day)
        if was != now:
            out.append((abs(now - was), account.name or account.external_id, was, now))
    out.sort(key=lambda m: (-m[0], m[1]))
    return [{"name": name, "kind": "account", "was": was, "now": now} for _, name, was, now in out[:LIST]]


def _score_on(session: Session, account_id: int | None, day: date) -> int:
    """The account's score at the end of `day` (0 before its history starts)."""
    score = session.scalar(
        select(SCORE_HISTORY.c.score)
        .where(SCORE_HISTORY.c.account_id == account_id, SCORE_HISTORY.c.day <= day)
        .order_by(SCORE_HISTORY.c.day.desc())
        .limit(1)
    )
    return int(score or 0)
