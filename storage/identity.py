"""Identity: one person, however many ids they arrived under.

An anonymous visitor's history joins the user when an `identify` (or any call carrying both ids)
or an `alias` links the anonymous id to a user id; an `alias` from a previous user id merges that
user too. Merging moves events and aggregates, never counts anything twice, and keeps the old id
pointing at the person so later events under it land in the right place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, literal, select, update
from sqlalchemy.orm import Session

from storage._sql import insert
from storage.aggregates import add_facts
from storage.leads import merge_leads
from storage.tables import (
    EVENTS,
    FACTS,
    HITS,
    IDENTITIES,
    LEADS,
    USER,
    VALUES,
    User,
)
from storage.traits import user_columns

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Merged:
    accounts: set[int]  # whose pooled facts must be rebuilt
    hand_raise: tuple[datetime, str] | None  # the folded visitor's hand-raise, if any


def merge_users(*, session: Session, source: int, target: int) -> Merged:
    """Fold user `source` into user `target`."""
    src = session.get(User, source)
    dst = session.get(User, target)
    if source == target or src is None or dst is None:
        return Merged(set(), None)
    accounts = {a for a in (src.account_id, dst.account_id) if a is not None}
    raised = (src.hand_raised_at, src.hand_raised_what or "the pricing page") if src.hand_raised_at else None
    session.flush()

    session.execute(update(EVENTS).where(EVENTS.c.user_id == source).values(user_id=target))
    session.execute(update(IDENTITIES).where(IDENTITIES.c.user_id == source).values(user_id=target))
    if src.external_id:  # an aliased previous user id keeps finding this person
        session.execute(
            insert(session, IDENTITIES)
            .values(anonymous_id=src.external_id, user_id=target, kind="user")
            .on_conflict_do_nothing(index_elements=["anonymous_id"])
        )
    _merge_facts(session, source, target)
    _merge_profile(src, dst)
    _merge_leads(session, source, target)
    session.delete(src)
    session.flush()
    return Merged(accounts, raised)


def _merge_facts(session: Session, source: int, target: int) -> None:
    rows = session.execute(
        select(FACTS.c.signal_id, FACTS.c.count, FACTS.c.valueless, FACTS.c.last_at).where(
            FACTS.c.subject_kind == USER, FACTS.c.subject_id == source
        )
    )
    add_facts(
        session,
        [
            {
                "subject_kind": USER,
                "subject_id": target,
                "signal_id": sid,
                "count": count,
                "valueless": valueless,
                "last_at": last_at,
            }
            for sid, count, valueless, last_at in rows
        ],
    )
    session.execute(
        insert(session, VALUES)
        .from_select(
            ["subject_kind", "subject_id", "signal_id", "value"],
            select(literal(USER), literal(target), VALUES.c.signal_id, VALUES.c.value).where(
                VALUES.c.subject_kind == USER, VALUES.c.subject_id == source
            ),
        )
        .on_conflict_do_nothing()
    )
    for table in (FACTS, VALUES):
        session.execute(delete(table).where(table.c.subject_kind == USER, table.c.subject_id == source))
    session.execute(
        update(HITS).where(HITS.c.subject_kind == USER, HITS.c.subject_id == source).values(subject_id=target)
    )
    counted = (
        select(func.count())
        .select_from(VALUES)
        .where(VALUES.c.subject_kind == USER, VALUES.c.subject_id == target, VALUES.c.signal_id == FACTS.c.signal_id)
        .scalar_subquery()
    )
    session.execute(
        update(FACTS).where(FACTS.c.subject_kind == USER, FACTS.c.subject_id == target).values(distinct_count=counted)
    )


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return min((x for x in (a, b) if x is not None), default=None)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return max((x for x in (a, b) if x is not None), default=None)


def _merge_profile(src: User, dst: User) -> None:
    traits: dict[str, Any] = dict(dst.traits)
    times: dict[str, Any] = dict(dst.trait_times)
    for key, value in src.traits.items():
        src_at, dst_at = src.trait_times.get(key), times.get(key)
        if key not in traits or (src_at and dst_at and datetime.fromisoformat(src_at) > datetime.fromisoformat(dst_at)):
            traits[key] = value
            if src_at:
                times[key] = src_at
    dst.traits, dst.trait_times = traits, times
    for k, v in user_columns(traits).items():
        setattr(dst, k, v)
    dst.activity_count += src.activity_count
    dst.last_active_at = _latest(dst.last_active_at, src.last_active_at)
    dst.first_seen_at = _earliest(dst.first_seen_at, src.first_seen_at) or dst.first_seen_at
    dst.customer_since = _earliest(dst.customer_since, src.customer_since)
    if src.hand_raised_at and (dst.hand_raised_at is None or src.hand_raised_at > dst.hand_raised_at):
        dst.hand_raised_at, dst.hand_raised_what = src.hand_raised_at, src.hand_raised_what
    if src.account_id is not None and (dst.account_id is None or _membership(src) > _membership(dst)):
        # A group call's membership beats one from context.groupId; then the more recent wins.
        dst.account_id, dst.account_since, dst.account_via = src.account_id, src.account_since, src.account_via


def _membership(user: User) -> tuple[bool, datetime]:
    return (user.account_via == "group", user.account_since or _EPOCH)


def _merge_leads(session: Session, source: int, target: int) -> None:
    """The folded user's lead (if any) joins the target's, or becomes it."""
    src = session.execute(select(LEADS.c.id).where(LEADS.c.subject_kind == USER, LEADS.c.subject_id == source)).scalar()
    if src is None:
        return
    dst = session.execute(select(LEADS.c.id).where(LEADS.c.subject_kind == USER, LEADS.c.subject_id == target)).scalar()
    if dst is None:
        session.execute(update(LEADS).where(LEADS.c.id == src).values(subject_id=target))
    else:
        merge_leads(session=session, source_id=src, target_id=dst)
