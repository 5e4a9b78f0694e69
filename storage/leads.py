"""Lead state: crossings, cooling, hand-raiser cooldowns and claims, each a compare-and-set.

Every change of state is one conditional UPDATE, so two writers (threads or processes) can
never both see the same crossing, both alert on the same hand-raiser or both claim a lead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, literal, or_, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from scoring import Score
from storage._sql import affected, chunks, insert
from storage.facts import compact_breakdown, subject_table
from storage.tables import ACCOUNT, LEADS, USERS, Account, Lead, User, pk
from storage.types import UTCDateTime

# A lead that crosses again this soon after its last PQL alert is re-qualified without a new one.
REALERT_AFTER = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Transition:
    lead_id: int
    kind: str
    subject_id: int
    score: Score
    announce: bool = True  # False: crossed again soon after an alert, so no new alert


def lead_subjects(*, session: Session, user_ids: Iterable[int]) -> tuple[set[int], set[int]]:
    """Split users into (their accounts, users with no account): what sales works as leads."""
    accounts: set[int] = set()
    lone: set[int] = set()
    for part in chunks(sorted(set(user_ids))):
        for uid, acc in session.execute(select(USERS.c.id, USERS.c.account_id).where(USERS.c.id.in_(part))):
            if acc is not None:
                accounts.add(acc)
            else:
                lone.add(uid)
    return accounts, lone


def ensure_leads(*, session: Session, kind: str, ids: Iterable[int], now: datetime) -> dict[int, Lead]:
    ids = sorted(set(ids))
    for part in chunks(ids):
        session.execute(
            insert(session, LEADS)
            .values([{"subject_kind": kind, "subject_id": i, "qualified": False, "created_at": now} for i in part])
            .on_conflict_do_nothing(index_elements=["subject_kind", "subject_id"])
        )
    return leads_for(session=session, kind=kind, ids=ids)


def leads_for(*, session: Session, kind: str, ids: Iterable[int]) -> dict[int, Lead]:
    found: dict[int, Lead] = {}
    for part in chunks(sorted(set(ids))):
        for lead in session.scalars(select(Lead).where(col(Lead.subject_kind) == kind, col(Lead.subject_id).in_(part))):
            found[lead.subject_id] = lead
    return found


def customers(*, session: Session, kind: str, ids: Iterable[int]) -> set[int]:
    table = subject_table(kind)
    out: set[int] = set()
    for part in chunks(sorted(set(ids))):
        out.update(session.scalars(select(table.c.id).where(table.c.id.in_(part), table.c.customer_since.is_not(None))))
    return out


def update_leads(
    *, session: Session, kind: str, scores: Mapping[int, Score], now: datetime
) -> tuple[list[Transition], list[Transition]]:
    """Move leads across the threshold: (newly crossed, cooled). Customers are not leads."""
    if not scores:
        return [], []
    existing = leads_for(session=session, kind=kind, ids=scores)
    skip = customers(session=session, kind=kind, ids=[i for i, s in scores.items() if s.qualified])
    rising = [
        i for i, s in scores.items() if s.qualified and i not in skip and not (i in existing and existing[i].qualified)
    ]
    falling = [i for i, s in scores.items() if not s.qualified and i in existing and existing[i].qualified]
    crossed: list[Transition] = []
    cooled: list[Transition] = []
    if rising:
        leads = ensure_leads(session=session, kind=kind, ids=rising, now=now)
        for i in sorted(rising):
            score = scores[i]
            lead = leads[i]
            res = session.execute(
                update(LEADS)
                .where(LEADS.c.id == lead.id, LEADS.c.qualified.is_(False))
                .values(
                    qualified=True,
                    qualified_at=now,
                    first_qualified_at=func.coalesce(LEADS.c.first_qualified_at, literal(now, UTCDateTime())),
                    cooled_at=None,
                )
            )
            if affected(res) != 1:
                continue  # another writer crossed it first
            # A lead that wobbles around the threshold (a user active in two workspaces, an
            # admin trying 45, 46, 45) is announced once, not on every crossing.
            announced = session.execute(
                update(LEADS)
                .where(
                    LEADS.c.id == lead.id,
                    or_(LEADS.c.pql_alerted_at.is_(None), LEADS.c.pql_alerted_at <= now - REALERT_AFTER),
                )
                .values(pql_alerted_at=now, score_at_alert=score.total, breakdown_at_alert=compact_breakdown(score))
            )
            crossed.append(Transition(pk(lead), kind, i, score, announce=affected(announced) == 1))
    for i in sorted(falling):
        lead = existing[i]
        res = session.execute(
            update(LEADS)
            .where(LEADS.c.id == lead.id, LEADS.c.qualified.is_(True))
            .values(qualified=False, cooled_at=now)
        )
        if affected(res) == 1:
            cooled.append(Transition(pk(lead), kind, i, scores[i]))
    return crossed, cooled


def take_hand_raise(
    *, session: Session, kind: str, subject_id: int, at: datetime, now: datetime, cooldown: timedelta
) -> int | None:
    """Record a hand-raise on a lead; the lead id if an alert is due (outside the cooldown)."""
    lead = ensure_leads(session=session, kind=kind, ids=[subject_id], now=now)[subject_id]
    session.execute(
        update(LEADS)
        .where(LEADS.c.id == lead.id, or_(LEADS.c.hand_raised_at.is_(None), LEADS.c.hand_raised_at < at))
        .values(hand_raised_at=at)
    )
    res = session.execute(
        update(LEADS)
        .where(
            LEADS.c.id == lead.id,
            or_(LEADS.c.hand_raise_alerted_at.is_(None), LEADS.c.hand_raise_alerted_at <= now - cooldown),
        )
        .values(hand_raise_alerted_at=now)
    )
    return pk(lead) if affected(res) == 1 else None


def mark_converted(*, session: Session, kind: str, subject_id: int, at: datetime) -> None:
    session.execute(
        update(LEADS)
        .where(
            LEADS.c.subject_kind == kind,
            LEADS.c.subject_id == subject_id,
            or_(LEADS.c.converted_at.is_(None), LEADS.c.converted_at > at),
        )
        .values(converted_at=at)
    )


@dataclass(frozen=True, slots=True)
class ClaimResult:
    lead: Lead
    won: bool  # False: someone (`lead.claimed_by`) already held it


def claim(*, session: Session, lead_id: int, user: str, now: datetime) -> ClaimResult | None:
    res = session.execute(
        update(LEADS).where(LEADS.c.id == lead_id, LEADS.c.claimed_by.is_(None)).values(claimed_by=user, claimed_at=now)
    )
    lead = session.get(Lead, lead_id, populate_existing=True)
    if lead is None:
        return None
    return ClaimResult(lead=lead, won=affected(res) == 1)


def lead_of_subject(*, session: Session, kind: str, subject_id: int) -> Lead | None:
    return session.scalars(
        select(Lead).where(col(Lead.subject_kind) == kind, col(Lead.subject_id) == subject_id)
    ).first()


def subject_row(*, session: Session, kind: str, subject_id: int) -> Any:
    return session.get(Account if kind == ACCOUNT else User, subject_id)


def claims(*, session: Session, lead_ids: Iterable[int]) -> dict[int, str]:
    """Who holds each of these leads (unclaimed ones are left out)."""
    out: dict[int, str] = {}
    for part in chunks(sorted(set(lead_ids))):
        out.update(
            {
                i: c
                for i, c in session.execute(
                    select(LEADS.c.id, LEADS.c.claimed_by).where(LEADS.c.id.in_(part), LEADS.c.claimed_by.is_not(None))
                )
            }
        )
    return out
