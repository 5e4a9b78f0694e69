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
from storage.tables import ACCOUNT, ALERTS, LEADS, USER, USERS, Account, Lead, User, pk
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
    """Split users into (their accounts, identified users with no account): what sales works.

    An anonymous visitor with no account is nobody sales can call: not a lead until identified
    (their history then joins the person, who crosses and is alerted then)."""
    accounts: set[int] = set()
    lone: set[int] = set()
    for part in chunks(sorted(set(user_ids))):
        rows = session.execute(
            select(USERS.c.id, USERS.c.account_id, USERS.c.external_id, USERS.c.email).where(USERS.c.id.in_(part))
        )
        for uid, acc, external_id, email in rows:
            if acc is not None:
                accounts.add(acc)
            elif external_id or email:
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
    *, session: Session, kind: str, scores: Mapping[int, Score], now: datetime, announce: bool = True
) -> tuple[list[Transition], list[Transition]]:
    """Move leads across the threshold: (newly crossed, cooled). Customers are not leads.

    `announce=False` (a quiet backfill) records the crossing without claiming an alert for it."""
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
            if not announce:
                crossed.append(Transition(pk(lead), kind, i, score, announce=False))
                continue
            # A lead that wobbles around the threshold (a user active in two workspaces, an
            # admin trying 45, 46, 45) is announced once, not on every crossing.
            announced = session.execute(
                update(LEADS)
                .where(
                    LEADS.c.id == lead.id,
                    or_(LEADS.c.pql_alerted_at.is_(None), LEADS.c.pql_alerted_at <= now - REALERT_AFTER),
                )
                .values(
                    pql_alerted_at=now,
                    first_alerted_at=func.coalesce(LEADS.c.first_alerted_at, literal(now, UTCDateTime())),
                    score_at_alert=score.total,
                    breakdown_at_alert=compact_breakdown(score),
                )
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
        .values(
            hand_raise_alerted_at=now,
            first_alerted_at=func.coalesce(LEADS.c.first_alerted_at, literal(now, UTCDateTime())),
        )
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
    lead_id = resolve(session=session, lead_id=lead_id)
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


RETIRED = "m"  # subject_kind of a lead folded into another (merged_into says which)


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return min((x for x in (a, b) if x is not None), default=None)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return max((x for x in (a, b) if x is not None), default=None)


def merge_leads(*, session: Session, source_id: int, target_id: int) -> None:
    """Fold one lead into another, keeping what sales already knows: the claim, the alert (and
    its snapshot), the PQL cohort. The source stays as a pointer so Claim buttons already posted
    for it act on the target."""
    if source_id == target_id:
        return
    src = session.get(Lead, source_id)
    dst = session.get(Lead, target_id)
    if src is None or dst is None:
        return
    dst.qualified = dst.qualified or src.qualified
    if dst.qualified:
        dst.cooled_at = None
    dst.first_qualified_at = _earliest(dst.first_qualified_at, src.first_qualified_at)
    dst.first_alerted_at = _earliest(dst.first_alerted_at, src.first_alerted_at)
    dst.qualified_at = _latest(dst.qualified_at, src.qualified_at)
    if src.pql_alerted_at and (dst.pql_alerted_at is None or src.pql_alerted_at > dst.pql_alerted_at):
        dst.pql_alerted_at, dst.score_at_alert = src.pql_alerted_at, src.score_at_alert
        dst.breakdown_at_alert = src.breakdown_at_alert
    if dst.claimed_by is None and src.claimed_by is not None:
        dst.claimed_by, dst.claimed_at = src.claimed_by, src.claimed_at
    dst.hand_raised_at = _latest(dst.hand_raised_at, src.hand_raised_at)
    dst.hand_raise_alerted_at = _latest(dst.hand_raise_alerted_at, src.hand_raise_alerted_at)
    dst.converted_at = _earliest(dst.converted_at, src.converted_at)
    session.flush()
    session.execute(update(ALERTS).where(ALERTS.c.lead_id == source_id).values(lead_id=target_id))
    session.execute(update(LEADS).where(LEADS.c.merged_into == source_id).values(merged_into=target_id))
    src.merged_into, src.qualified = target_id, False
    src.subject_kind, src.subject_id = RETIRED, source_id  # frees the subject for a lead of its own
    session.flush()


def fold_member_leads(*, session: Session, user_ids: Iterable[int], now: datetime) -> None:
    """A user who joins an account brings their lead along: sales works the account now."""
    ids = sorted(set(user_ids))
    for part in chunks(ids):
        rows = session.execute(
            select(LEADS.c.id, USERS.c.account_id)
            .join(USERS, (LEADS.c.subject_kind == USER) & (LEADS.c.subject_id == USERS.c.id))
            .where(USERS.c.id.in_(part), USERS.c.account_id.is_not(None))
        ).all()
        for lead_id, account_id in rows:
            target = ensure_leads(session=session, kind=ACCOUNT, ids=[account_id], now=now)[account_id]
            merge_leads(session=session, source_id=lead_id, target_id=pk(target))


def resolve(*, session: Session, lead_id: int) -> int:
    """The lead a (possibly folded) lead id stands for now."""
    for _ in range(100):
        merged = session.scalar(select(LEADS.c.merged_into).where(LEADS.c.id == lead_id))
        if merged is None:
            return lead_id
        lead_id = merged
    return lead_id
