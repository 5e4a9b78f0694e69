"""Facts for scoring, read from the aggregates (never from raw events), and scores saved back."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, case, func, or_, select, update
from sqlalchemy.orm import Session

from scoring import Facts, Model, Score
from storage._sql import chunks, insert, many
from storage.tables import ACCOUNT, ACCOUNTS, FACTS, HITS, SCORE_HISTORY, USERS


def subject_table(kind: str) -> Any:
    return ACCOUNTS if kind == ACCOUNT else USERS


def load_facts(*, session: Session, kind: str, ids: Iterable[int], model: Model, now: datetime) -> dict[int, Facts]:
    """Each subject's facts at `now`: per-signal measures and when it was last active."""
    ids = sorted(set(ids))
    measures: dict[int, dict[str, int]] = {i: {} for i in ids}
    last_active: dict[int, datetime | None] = {}
    table = subject_table(kind)
    all_time = {s.id: s for s in model.signals if not s.is_inactivity and s.window_days is None}
    windowed = [s for s in model.signals if not s.is_inactivity and s.window_days is not None]
    for part in chunks(ids, 500):
        for sid, last, first in session.execute(
            select(table.c.id, table.c.last_active_at, table.c.first_seen_at).where(table.c.id.in_(part))
        ):
            last_active[sid] = last or first
        if all_time:
            rows = session.execute(
                select(
                    FACTS.c.subject_id, FACTS.c.signal_id, FACTS.c.count, FACTS.c.valueless, FACTS.c.distinct_count
                ).where(
                    FACTS.c.subject_kind == kind, FACTS.c.subject_id.in_(part), FACTS.c.signal_id.in_(list(all_time))
                )
            )
            for sid, signal_id, count, valueless, distinct in rows:
                signal = all_time[signal_id]
                measures[sid][signal_id] = (distinct + valueless) if signal.distinct_property else count
        if windowed:
            window_of = or_(
                *[
                    and_(HITS.c.signal_id == s.id, HITS.c.occurred_at > now - timedelta(days=s.window_days or 0))
                    for s in windowed
                ]
            )
            rows = session.execute(
                select(
                    HITS.c.subject_id,
                    HITS.c.signal_id,
                    func.count(),
                    func.count(func.distinct(HITS.c.value)),
                    func.sum(case((HITS.c.value.is_(None), 1), else_=0)),
                )
                .where(HITS.c.subject_kind == kind, HITS.c.subject_id.in_(part), HITS.c.occurred_at <= now, window_of)
                .group_by(HITS.c.subject_id, HITS.c.signal_id)
            )
            by_id = {s.id: s for s in windowed}
            for sid, signal_id, count, distinct, valueless in rows:
                signal = by_id[signal_id]
                measures[sid][signal_id] = (
                    (int(distinct) + int(valueless or 0)) if signal.distinct_property else int(count)
                )
    return {i: Facts(measures=measures[i], last_active_at=last_active.get(i)) for i in ids if i in last_active}


def compact_breakdown(score: Score) -> dict[str, Any]:
    """What is stored with each subject: the total, and each signal's measure and whether it fired."""
    return {"total": score.total, "signals": {r.id: [r.measure, r.fired, r.points] for r in score.breakdown}}


def save_scores(*, session: Session, kind: str, scores: Mapping[int, Score], now: datetime | None = None) -> None:
    """Store current scores; for accounts, also today's point of their score history."""
    if not scores:
        return
    table = subject_table(kind)
    stmt = (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(score=bindparam("b_score"), breakdown=bindparam("b_breakdown"))
    )
    rows = [{"b_id": i, "b_score": s.total, "b_breakdown": compact_breakdown(s)} for i, s in sorted(scores.items())]
    for part in chunks(rows, 500):
        session.connection().execute(stmt, part)
    if kind == ACCOUNT and now is not None:
        history = insert(session, SCORE_HISTORY)
        many(
            session,
            history.on_conflict_do_update(index_elements=["account_id", "day"], set_={"score": history.excluded.score}),
            [{"account_id": i, "day": now.date(), "score": s.total} for i, s in sorted(scores.items())],
        )


def score_a_week_ago(*, session: Session, account_id: int, now: datetime) -> int | None:
    """The account's score at the end of the day a week ago (None: no history that far back)."""
    return session.scalar(
        select(SCORE_HISTORY.c.score)
        .where(SCORE_HISTORY.c.account_id == account_id, SCORE_HISTORY.c.day <= (now - timedelta(days=7)).date())
        .order_by(SCORE_HISTORY.c.day.desc())
        .limit(1)
    )


def subject_ids(*, session: Session, kind: str, after: int, limit: int) -> list[int]:
    table = subject_table(kind)
    return list(session.scalars(select(table.c.id).where(table.c.id > after).order_by(table.c.id).limit(limit)))


def current_scores(*, session: Session, kind: str, ids: Iterable[int]) -> dict[int, int]:
    table = subject_table(kind)
    out: dict[int, int] = {}
    for part in chunks(sorted(set(ids)), 500):
        out.update({i: s for i, s in session.execute(select(table.c.id, table.c.score).where(table.c.id.in_(part)))})
    return out


def without_account(*, session: Session, ids: Iterable[int]) -> set[int]:
    """Identified users in no account (an anonymous visitor is not a lead of their own)."""
    out: set[int] = set()
    for part in chunks(sorted(set(ids)), 500):
        out.update(
            session.scalars(
                select(USERS.c.id).where(
                    USERS.c.id.in_(part),
                    USERS.c.account_id.is_(None),
                    or_(USERS.c.external_id.is_not(None), USERS.c.email.is_not(None)),
                )
            )
        )
    return out
