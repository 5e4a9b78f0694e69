"""Read-side queries for Slack commands: the top leads, finding people and accounts."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from sqlmodel import col

from storage.summary import display_name
from storage.tables import ACCOUNT, ACCOUNTS, LEADS, USER, Account, Identity, User, pk
from storage.traits import domain_of, name_key


@dataclass(frozen=True, slots=True)
class TopRow:
    kind: str
    subject_id: int
    external_id: str
    name: str
    score: int
    account: str | None
    best_user: str | None
    best_user_score: int | None
    qualified: bool
    claimed_by: str | None


def top(*, session: Session, limit: int, kinds: tuple[str, ...] = (ACCOUNT, USER)) -> list[TopRow]:
    """The highest-scoring leads (accounts, and users in no account), customers left out."""
    rows: list[TopRow] = []
    if ACCOUNT in kinds:
        lead = LEADS.alias("l")
        q = (
            select(
                ACCOUNTS.c.id,
                ACCOUNTS.c.external_id,
                ACCOUNTS.c.name,
                ACCOUNTS.c.score,
                lead.c.qualified,
                lead.c.claimed_by,
            )
            .outerjoin(lead, (lead.c.subject_kind == ACCOUNT) & (lead.c.subject_id == ACCOUNTS.c.id))
            # A lead: it scores, or sales already knows it (alerted, claimed, raised a hand).
            .where(ACCOUNTS.c.customer_since.is_(None), or_(ACCOUNTS.c.score > 0, lead.c.id.is_not(None)))
            .order_by(ACCOUNTS.c.score.desc(), ACCOUNTS.c.id)
            .limit(limit)
        )
        accounts = session.execute(q).all()
        best = _best_users(session, [a.id for a in accounts])
        for a in accounts:
            user = best.get(a.id)
            rows.append(
                TopRow(
                    ACCOUNT,
                    a.id,
                    a.external_id,
                    a.name or a.external_id,
                    a.score,
                    a.name or a.external_id,
                    display_name(user) if user else None,
                    user.score if user else None,
                    bool(a.qualified),
                    a.claimed_by,
                )
            )
    if USER in kinds:
        lead = LEADS.alias("l")
        q = (
            select(User, lead.c.qualified, lead.c.claimed_by)
            .outerjoin(lead, (lead.c.subject_kind == USER) & (lead.c.subject_id == col(User.id)))
            .where(
                col(User.account_id).is_(None),
                col(User.customer_since).is_(None),
                or_(col(User.score) > 0, lead.c.id.is_not(None)),
            )
            .order_by(col(User.score).desc(), col(User.id))
            .limit(limit)
        )
        for row in session.execute(q).all():
            lone: User = row[0]
            qualified, claimed_by = row[1], row[2]
            rows.append(
                TopRow(
                    USER,
                    pk(lone),
                    lone.external_id or f"#{lone.id}",
                    display_name(lone),
                    lone.score,
                    None,
                    None,
                    None,
                    bool(qualified),
                    claimed_by,
                )
            )
    rows.sort(key=lambda r: (-r.score, r.kind, r.subject_id))
    return rows[:limit]


def _best_users(session: Session, account_ids: list[int]) -> dict[int, User]:
    if not account_ids:
        return {}
    ranked = (
        select(
            col(User.id),
            func.row_number()
            .over(
                partition_by=col(User.account_id),
                order_by=(col(User.score).desc(), col(User.activity_count).desc(), col(User.id)),
            )
            .label("rank"),
        )
        .where(
            col(User.account_id).in_(account_ids),
            or_(col(User.external_id).is_not(None), col(User.email).is_not(None)),  # someone sales can reach
        )
        .subquery()
    )
    users = session.scalars(select(User).join(ranked, ranked.c.id == col(User.id)).where(ranked.c.rank == 1))
    return {int(u.account_id): u for u in users}  # type: ignore[arg-type]


def find_user(*, session: Session, query: str) -> User | None:
    """A user by email, user id or anonymous id."""
    q = query.strip()
    if not q:
        return None
    found = session.scalars(select(User).where(col(User.external_id) == q)).first()
    if found is None and "@" in q:
        found = session.scalars(
            select(User)
            .where(col(User.email) == q.casefold())
            .order_by(col(User.last_active_at).desc().nulls_last(), col(User.id))
        ).first()
    if found is None:
        found = session.scalars(
            select(User).join(Identity, col(Identity.user_id) == col(User.id)).where(col(Identity.anonymous_id) == q)
        ).first()
    return found


def find_accounts(*, session: Session, query: str, limit: int = 6, partial: bool = True) -> list[Account]:
    """Accounts by id, name (case-insensitive, exact before partial) or email domain; without
    `partial`, only exact matches."""
    q = " ".join(query.split())
    if not q:
        return []
    exact = session.scalars(select(Account).where(col(Account.external_id) == q)).first()
    if exact is not None:
        return [exact]
    by_name = session.scalars(
        select(Account).where(col(Account.name_key) == name_key(q)).order_by(col(Account.score).desc()).limit(limit)
    ).all()
    if by_name:
        return list(by_name)
    domain = domain_of(q)
    if domain:
        by_domain = session.scalars(select(Account).where(col(Account.domain) == domain).limit(limit)).all()
        if by_domain:
            return list(by_domain)
        # No account says its domain: the accounts whose members sign in with that email domain.
        by_email = session.scalars(
            select(Account)
            .where(
                col(Account.id).in_(
                    select(col(User.account_id)).where(col(User.email).like("%@" + _like(domain), escape="\\"))
                )
            )
            .order_by(col(Account.score).desc())
            .limit(limit)
        ).all()
        if by_email:
            return list(by_email)
    if not partial:
        return []
    pattern = "%" + _like(name_key(q)) + "%"
    return list(
        session.scalars(
            select(Account)
            .where(
                or_(
                    col(Account.name_key).like(pattern, escape="\\"),
                    func.lower(col(Account.external_id)).like(pattern, escape="\\"),
                )
            )
            .order_by(col(Account.score).desc())
            .limit(limit)
        )
    )


def account_members(*, session: Session, account_id: int, limit: int = 200) -> list[Any]:
    return list(
        session.scalars(
            select(User).where(col(User.account_id) == account_id).order_by(col(User.score).desc()).limit(limit)
        )
    )


@dataclass(frozen=True, slots=True)
class MonthRow:
    month: str  # "2026-11", in the reporting time zone
    pqls: int
    converted: int
    median_days: float | None

    @property
    def rate(self) -> float:
        return self.converted / self.pqls if self.pqls else 0.0


# A conversion dated over a week before sales was first alerted (an import from a CRM, say) was a
# customer already, not a PQL that converted. The week's grace allows for late data: a date-only
# row is midnight, and events may reach pqlbot days after they happened.
ALREADY_CUSTOMER = timedelta(days=7)


def conversion_by_month(*, session: Session, months: int, now: datetime, zone: tzinfo) -> list[MonthRow]:
    """PQL-to-customer conversion by monthly cohort: the month sales was first alerted to a lead
    (a threshold crossing or a raised hand), in `zone`; days to convert count from that alert."""
    local_now = now.astimezone(zone)
    year, month = local_now.year, local_now.month - (months - 1)
    while month < 1:
        year, month = year - 1, month + 12
    start = datetime(year, month, 1, tzinfo=zone)
    keys = []
    y, m = year, month
    for _ in range(months):
        keys.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    cohorts: dict[str, list[float | None]] = {k: [] for k in keys}
    cohort = func.coalesce(LEADS.c.first_alerted_at, LEADS.c.first_qualified_at)
    rows = session.execute(
        select(cohort, LEADS.c.converted_at, LEADS.c.first_alerted_at).where(
            cohort.is_not(None),
            cohort >= start,
            LEADS.c.merged_into.is_(None),  # a lead folded into another counts there
        )
    )
    for first, converted, alerted in rows:
        key = first.astimezone(zone).strftime("%Y-%m")
        if converted is not None and alerted is not None and converted < alerted - ALREADY_CUSTOMER:
            continue  # a customer already when sales was alerted: not a PQL that converted
        if key in cohorts:
            days = max(0.0, (converted - first).total_seconds() / 86400) if converted else None
            cohorts[key].append(days)
    out = []
    for key in keys:
        values = cohorts[key]
        done = sorted(d for d in values if d is not None)
        out.append(MonthRow(key, len(values), len(done), statistics.median(done) if done else None))
    return out


def _like(text: str) -> str:
    """`text` for a LIKE pattern, its wildcards taken literally (escape character: backslash)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
