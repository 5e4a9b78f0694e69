"""storage.record_events: store a batch of events once each and keep aggregates current.

One call is one transaction's worth of work (the caller owns the session): events are inserted
idempotently on their message id, profiles and memberships are updated, and the per-user and
per-account aggregates behind every signal move by exactly what the new events add. Nothing
here re-reads a user's history; an account is rebuilt from its members' aggregates only when its
membership changes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, literal, or_, select, update
from sqlalchemy.orm import Session

from scoring import Event, Model, hand_raiser, is_activity, is_conversion, signal_hits
from scoring.events import ONLY_GAPS
from storage._sql import chunks, insert, many
from storage.aggregates import add_facts, later
from storage.identity import merge_users
from storage.leads import fold_member_leads
from storage.tables import (
    ACCOUNT,
    ACCOUNTS,
    EVENTS,
    FACTS,
    HITS,
    IDENTITIES,
    USER,
    USERS,
    VALUES,
    Account,
    User,
)
from storage.traits import account_columns, merge_traits, user_columns
from storage.types import UTCDateTime


@dataclass(frozen=True, slots=True)
class HandRaise:
    user_id: int
    account_id: int | None
    what: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Conversion:
    user_id: int
    account_id: int | None
    at: datetime


@dataclass
class Recorded:
    """What a batch changed: the subjects to re-score and what to tell sales about."""

    stored: int = 0
    duplicates: int = 0
    users: set[int] = field(default_factory=set)
    accounts: set[int] = field(default_factory=set)
    hand_raises: list[HandRaise] = field(default_factory=list)
    conversions: list[Conversion] = field(default_factory=list)


@dataclass
class _Delta:
    count: int = 0
    valueless: int = 0
    last_at: datetime | None = None
    values: set[str] = field(default_factory=set)
    hits: list[tuple[datetime, str | None]] = field(default_factory=list)

    def add(self, at: datetime, value: str | None, windowed: bool) -> None:
        self.count += 1
        if value is None:
            self.valueless += 1
        else:
            self.values.add(value)
        if self.last_at is None or at > self.last_at:
            self.last_at = at
        if windowed:
            self.hits.append((at, value))


def record_events(*, session: Session, events: Sequence[Event], model: Model, now: datetime) -> Recorded:
    """Store `events` (idempotently) and update every aggregate they touch."""
    out = Recorded()
    unique: dict[str, Event] = {}
    for ev in events:
        unique.setdefault(ev.message_id, ev)
    # Messages already stored (a client's retry) are acknowledged and have no effect at all: not
    # even a user or an identity link is created for them. The unique index on message_id
    # below still settles a race between two writers.
    stored = _stored_ids(session, list(unique))
    out.duplicates = len(events) - len(unique) + len(stored)
    batch = sorted((ev for mid, ev in unique.items() if mid not in stored), key=lambda e: e.timestamp)
    if not batch:
        return out

    user_of, merged, recognised = _resolve_users(session, batch, now)
    new_ids = _insert_events(session, batch, user_of)
    out.duplicates += len(batch) - len(new_ids)
    fresh = [ev for ev in batch if ev.message_id in new_ids]
    out.stored = len(fresh)
    if not fresh:
        return out

    moved = _apply_profiles(session, fresh, user_of, out) | merged
    account_of = _accounts_of(session, {u for u in user_of.values() if u is not None})
    _apply_activity(session, fresh, user_of, account_of, out)
    _apply_signals(session, model, fresh, user_of, account_of, moved)
    if moved:
        rebuild_accounts(session=session, account_ids=moved)
        out.accounts |= moved
        fold_member_leads(session=session, user_ids=out.users, now=now)

    # A visitor who looked at pricing and has just signed up: their hand counts as raised now.
    out.hand_raises.extend(HandRaise(uid, account_of.get(uid), what, at) for uid, at, what in recognised)
    for ev in fresh:
        uid = user_of.get(ev.message_id)
        if uid is None:
            continue
        what = hand_raiser(model, ev)
        if what:
            out.hand_raises.append(HandRaise(uid, account_of.get(uid), what, ev.timestamp))
        if is_conversion(model, ev):
            out.conversions.append(Conversion(uid, account_of.get(uid), ev.timestamp))
    _apply_hand_raises(session, out.hand_raises)
    _apply_conversions(session, out.conversions)
    return out


# --- identity ---------------------------------------------------------------------------------


def _resolve_users(
    session: Session, batch: Sequence[Event], now: datetime
) -> tuple[dict[str, int | None], set[int], list[tuple[int, datetime, str]]]:
    """Map each message id to the user it belongs to, creating, linking and merging users.

    Returns that map, the accounts whose pooled facts a merge changed, and the hand-raises of
    visitors who have just been recognised (user, when, what). A `group` call sent
    only with an anonymous id nobody has used (a server-side call, say) belongs to no user: it
    updates the account and makes no phantom member.
    """
    first_seen: dict[str, datetime] = {}
    for ev in batch:
        if ev.user_id:
            first_seen.setdefault(ev.user_id, ev.timestamp)
    by_external = _ensure_users(session, first_seen)

    # Two kinds of other ids live in `identities`: anonymous ids, and previous user ids an alias
    # merged into someone. They never stand in for each other.
    previous = {ev.previous_id for ev in batch if ev.kind == "alias" and ev.previous_id}
    anon_known = _identities(session, {ev.anonymous_id for ev in batch if ev.anonymous_id} | previous, "anonymous")
    previous_users = _user_ids(session, sorted(previous)) | _identities(session, previous, "user")
    anonymous = _anonymous_users(session, set(anon_known.values()))

    merged_into: dict[int, int] = {}

    def final(uid: int) -> int:
        while uid in merged_into:
            uid = merged_into[uid]
        return uid

    rebuild: set[int] = set()
    raised: list[tuple[int, datetime, str]] = []
    links: dict[str, int] = {}

    def merge(source: int, target: int) -> None:
        merged = merge_users(session=session, source=source, target=target)
        rebuild.update(merged.accounts)
        if merged.hand_raise is not None:
            raised.append((target, *merged.hand_raise))
        merged_into[source] = target

    for ev in batch:  # in event-time order
        if not ev.user_id:
            continue
        uid = final(by_external[ev.user_id])
        if ev.anonymous_id:
            owner = anon_known.get(ev.anonymous_id)
            if owner is None:
                links[ev.anonymous_id] = anon_known[ev.anonymous_id] = uid
            elif final(owner) != uid and final(owner) in anonymous:
                # The visitor's history joins the person. Two known people sharing a device
                # (the same anonymous id) are not merged unless an alias says they are one.
                merge(final(owner), uid)
        if ev.kind == "alias" and ev.previous_id:
            owner = previous_users.get(ev.previous_id) or anon_known.get(ev.previous_id)
            if owner is None:
                links[ev.previous_id] = anon_known[ev.previous_id] = uid
            elif final(owner) != uid:
                merge(final(owner), uid)
    if links:
        _link(session, {k: final(v) for k, v in links.items()})

    user_of: dict[str, int | None] = {}
    for ev in batch:
        if ev.user_id:
            user_of[ev.message_id] = final(by_external[ev.user_id])
        elif ev.anonymous_id and ev.anonymous_id in anon_known:
            user_of[ev.message_id] = final(anon_known[ev.anonymous_id])
        elif ev.anonymous_id and ev.kind != "group":
            uid = _new_anonymous_user(session, ev.anonymous_id, ev.timestamp)
            anon_known[ev.anonymous_id] = uid
            user_of[ev.message_id] = uid
        else:
            user_of[ev.message_id] = None
    return user_of, rebuild, [(final(u), at, what) for u, at, what in raised]


def _identities(session: Session, ids: set[str], kind: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for part in chunks(sorted(ids)):
        found.update(
            (a, u)
            for a, u in session.execute(
                select(IDENTITIES.c.anonymous_id, IDENTITIES.c.user_id).where(
                    IDENTITIES.c.anonymous_id.in_(part), IDENTITIES.c.kind == kind
                )
            )
        )
    return found


def _anonymous_users(session: Session, ids: set[int]) -> set[int]:
    """Which of these users are anonymous visitors (no user id of their own)."""
    out: set[int] = set()
    for part in chunks(sorted(ids)):
        out.update(session.scalars(select(USERS.c.id).where(USERS.c.id.in_(part), USERS.c.external_id.is_(None))))
    return out


def _ensure_users(session: Session, first_seen: dict[str, datetime]) -> dict[str, int]:
    """Ids of users by external id, creating the missing ones (first seen at their first event).

    A user id that was aliased into another person (an `alias` from a previous user id) keeps
    resolving to that person.
    """
    if not first_seen:
        return {}
    found = _user_ids(session, sorted(first_seen))
    missing = sorted(set(first_seen) - set(found))
    if missing:
        found.update(_identities(session, set(missing), "user"))
        missing = [m for m in missing if m not in found]
    if missing:
        _create(session, USERS, {x: first_seen[x] for x in missing}, activity_count=0)
        found.update(_user_ids(session, missing))
    return found


def _create(session: Session, table: Any, first_seen: dict[str, datetime], **extra: Any) -> None:
    """Insert users or accounts by external id; where a concurrent writer was first, theirs stays."""
    many(
        session,
        insert(session, table).on_conflict_do_nothing(index_elements=["external_id"]),
        [
            {
                "external_id": key,
                "first_seen_at": at,
                "traits": {},
                "trait_times": {},
                "breakdown": {},
                "score": 0,
                **extra,
            }
            for key, at in first_seen.items()
        ],
    )


def _user_ids(session: Session, external_ids: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for part in chunks(external_ids):
        found.update(
            (x, i)
            for x, i in session.execute(select(USERS.c.external_id, USERS.c.id).where(USERS.c.external_id.in_(part)))
        )
    return found


def _link(session: Session, links: dict[str, int]) -> None:
    for part in chunks(sorted(links)):
        session.execute(
            insert(session, IDENTITIES)
            .values([{"anonymous_id": a, "user_id": links[a], "kind": "anonymous"} for a in part])
            .on_conflict_do_nothing(index_elements=["anonymous_id"])
        )


def _new_anonymous_user(session: Session, anonymous_id: str, at: datetime) -> int:
    uid = session.execute(
        insert(session, USERS)
        .values(
            first_seen_at=at,
            traits={},
            trait_times={},
            breakdown={},
            score=0,
            activity_count=0,
        )
        .returning(USERS.c.id)
    ).scalar_one()
    linked = session.execute(
        insert(session, IDENTITIES)
        .values(anonymous_id=anonymous_id, user_id=uid)
        .on_conflict_do_nothing(index_elements=["anonymous_id"])
        .returning(IDENTITIES.c.user_id)
    ).scalar_one_or_none()
    if linked is None:  # another writer linked this anonymous id first: use theirs
        session.execute(delete(USERS).where(USERS.c.id == uid))
        return int(
            session.execute(select(IDENTITIES.c.user_id).where(IDENTITIES.c.anonymous_id == anonymous_id)).scalar_one()
        )
    return int(uid)


# --- events -----------------------------------------------------------------------------------


def _stored_properties(ev: Event) -> dict[str, Any]:
    """What is kept of a call's payload: its properties (traits for identify and group), with the
    page path it was matched by, so aggregates can be rebuilt from stored events alone."""
    if ev.kind in ("identify", "group"):
        return ev.traits or {}
    if ev.path and "path" not in ev.properties:
        return {**ev.properties, "path": ev.path}
    return ev.properties or {}


def _stored_ids(session: Session, message_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for part in chunks(message_ids, 500):
        found.update(session.scalars(select(EVENTS.c.message_id).where(EVENTS.c.message_id.in_(part))))
    return found


def _insert_events(session: Session, batch: Sequence[Event], user_of: dict[str, int | None]) -> set[str]:
    """Insert the batch; the message ids that were new (the rest were already stored)."""
    rows = [
        {
            "message_id": ev.message_id,
            "user_id": user_of.get(ev.message_id),
            "kind": ev.kind,
            "name": ev.name,
            "group_id": ev.group_id,
            "occurred_at": ev.timestamp,
            "received_at": ev.received_at,
            "properties": _stored_properties(ev),
            "source": ev.source,
            "flags": ",".join(ev.flags) or None,
        }
        for ev in batch
    ]
    stmt = insert(session, EVENTS).on_conflict_do_nothing(index_elements=["message_id"]).returning(EVENTS.c.message_id)
    return set(session.execute(stmt, rows).scalars())


# --- profiles and membership ------------------------------------------------------------------


def _apply_profiles(
    session: Session, fresh: Sequence[Event], user_of: dict[str, int | None], out: Recorded
) -> set[int]:
    """Traits (latest by event time wins, per trait) and account membership.

    Returns the accounts whose membership changed: their aggregates are rebuilt from members.
    """
    group_ids = sorted({ev.group_id for ev in fresh if ev.group_id})
    account_ids = _ensure_accounts(session, group_ids, fresh) if group_ids else {}
    # Full rows (traits are JSON) are loaded only where they can change: group calls with traits
    # for accounts; identify and group calls, and people in no account yet, for users. A track
    # call's context.groupId never moves someone already in an account, and is most of traffic.
    accounts = _load(session, Account, {account_ids[ev.group_id] for ev in fresh if ev.group_id and ev.kind == "group"})
    named = {u for ev in fresh if (u := user_of.get(ev.message_id)) is not None and ev.kind in ("identify", "group")}
    placed = {u for ev in fresh if (u := user_of.get(ev.message_id)) is not None and ev.group_id} - named
    named |= _without_account(session, placed)
    users = _load(session, User, named)
    moved: set[int] = set()
    for ev in fresh:
        uid = user_of.get(ev.message_id)
        user = users.get(uid) if uid is not None else None
        if ev.kind == "identify" and user is not None and ev.traits:
            merged = merge_traits(user.traits, user.trait_times, ev.traits, ev.timestamp, ONLY_GAPS in ev.flags)
            if merged is not None:
                user.traits, user.trait_times = merged
                for k, v in user_columns(user.traits).items():
                    setattr(user, k, v)
        if ev.group_id:
            account_id = account_ids[ev.group_id]
            account = accounts.get(account_id)
            merged = (
                merge_traits(account.traits, account.trait_times, ev.traits, ev.timestamp, ONLY_GAPS in ev.flags)
                if (account is not None and ev.kind == "group" and ev.traits)
                else None
            )
            if account is not None and merged is not None:
                account.traits, account.trait_times = merged
                for k, v in account_columns(account.traits).items():
                    setattr(account, k, v)
            out.accounts.add(account_id)
            if user is None or (ev.kind == "group" and not ev.user_id):
                continue  # a group call with no real user (a server's anonymous id) adds no member
            if ev.kind == "group":
                # The latest group call by event time decides the account.
                joins = user.account_via != "group" or user.account_since is None or ev.timestamp >= user.account_since
                via = "group"
            else:
                # context.groupId places someone in no account yet; it never moves a member (a
                # person active in two workspaces would otherwise flip between them).
                joins = user.account_id is None
                via = "context"
            if joins:
                user.account_since, user.account_via = ev.timestamp, via
                if user.account_id != account_id:
                    if user.account_id is not None:
                        moved.add(user.account_id)
                    moved.add(account_id)
                    user.account_id = account_id
    session.flush()
    return moved


def _ensure_accounts(session: Session, group_ids: list[str], fresh: Sequence[Event]) -> dict[str, int]:
    """The account id of every group id, creating the accounts that are new."""
    first: dict[str, datetime] = {}
    for ev in fresh:
        if ev.group_id:
            first.setdefault(ev.group_id, ev.timestamp)
    found = _accounts_by_external_id(session, group_ids)
    missing = [g for g in group_ids if g not in found]
    if missing:
        _create(session, ACCOUNTS, {g: first[g] for g in missing})
        found.update(_accounts_by_external_id(session, missing))
    return found


def _accounts_by_external_id(session: Session, ids: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for part in chunks(ids):
        found.update(
            session.execute(select(ACCOUNTS.c.external_id, ACCOUNTS.c.id).where(ACCOUNTS.c.external_id.in_(part))).all()
        )
    return found


def _load(session: Session, entity: Any, ids: set[int]) -> dict[int, Any]:
    """Full ORM rows by id (for the few whose traits or membership this batch can change)."""
    return {
        row.id: row
        for part in chunks(sorted(ids))
        for row in session.scalars(select(entity).where(entity.id.in_(part)))
    }


def _without_account(session: Session, user_ids: set[int]) -> set[int]:
    found: set[int] = set()
    for part in chunks(sorted(user_ids)):
        found.update(session.scalars(select(USERS.c.id).where(USERS.c.id.in_(part), USERS.c.account_id.is_(None))))
    return found


def _accounts_of(session: Session, user_ids: Iterable[int]) -> dict[int, int | None]:
    result: dict[int, int | None] = {}
    for part in chunks(sorted(user_ids)):
        result.update(
            {u: a for u, a in session.execute(select(USERS.c.id, USERS.c.account_id).where(USERS.c.id.in_(part)))}
        )
    return result


# --- activity and signals ---------------------------------------------------------------------


# Statements built once: executemany runs them per row without compiling again.
_USER_ACTIVITY = (
    update(USERS)
    .where(USERS.c.id == bindparam("b_id"))
    .values(
        activity_count=USERS.c.activity_count + bindparam("b_n"),
        last_active_at=later(USERS.c.last_active_at, bindparam("b_last", type_=UTCDateTime())),
    )
)
# An older event that arrives late moves "first seen" back.
_FIRST_SEEN = (
    update(USERS)
    .where(USERS.c.id == bindparam("b_id"), USERS.c.first_seen_at > bindparam("b_first", type_=UTCDateTime()))
    .values(first_seen_at=bindparam("b_first"))
)
_ACCOUNT_ACTIVITY = (
    update(ACCOUNTS)
    .where(ACCOUNTS.c.id == bindparam("b_id"))
    .values(last_active_at=later(ACCOUNTS.c.last_active_at, bindparam("b_last", type_=UTCDateTime())))
)
_DISTINCT_ADDED = (
    update(FACTS)
    .where(
        FACTS.c.subject_kind == bindparam("b_kind"),
        FACTS.c.subject_id == bindparam("b_id"),
        FACTS.c.signal_id == bindparam("b_signal"),
    )
    .values(distinct_count=FACTS.c.distinct_count + bindparam("b_n"))
)


def _apply_activity(
    session: Session,
    fresh: Sequence[Event],
    user_of: dict[str, int | None],
    account_of: dict[int, int | None],
    out: Recorded,
) -> None:
    per_user: dict[int, tuple[int, datetime]] = {}
    per_account: dict[int, datetime] = {}
    for ev in fresh:
        uid = user_of.get(ev.message_id)
        if uid is None:
            continue
        out.users.add(uid)
        acc = account_of.get(uid)
        if acc is not None:
            out.accounts.add(acc)
        if not is_activity(ev):
            continue
        n, last = per_user.get(uid, (0, ev.timestamp))
        per_user[uid] = (n + 1, max(last, ev.timestamp))
        if acc is not None:
            per_account[acc] = max(per_account.get(acc, ev.timestamp), ev.timestamp)
    many(session, _USER_ACTIVITY, [{"b_id": u, "b_n": n, "b_last": last} for u, (n, last) in sorted(per_user.items())])
    many(session, _ACCOUNT_ACTIVITY, [{"b_id": a, "b_last": last} for a, last in sorted(per_account.items())])
    first: dict[int, datetime] = {}
    for ev in fresh:
        uid = user_of.get(ev.message_id)
        if uid is not None and (uid not in first or ev.timestamp < first[uid]):
            first[uid] = ev.timestamp
    many(session, _FIRST_SEEN, [{"b_id": u, "b_first": at} for u, at in sorted(first.items())])


def _apply_signals(
    session: Session,
    model: Model,
    fresh: Sequence[Event],
    user_of: dict[str, int | None],
    account_of: dict[int, int | None],
    moved: set[int],
) -> None:
    deltas: dict[tuple[str, int, str], _Delta] = defaultdict(_Delta)
    for ev in fresh:
        uid = user_of.get(ev.message_id)
        if uid is None or not is_activity(ev):
            continue
        acc = account_of.get(uid)
        for hit in signal_hits(model, ev):
            windowed = hit.signal.window_days is not None
            deltas[(USER, uid, hit.signal.id)].add(ev.timestamp, hit.value, windowed)
            # Accounts being rebuilt from their members pick this event up from the user's facts.
            if acc is not None and acc not in moved:
                deltas[(ACCOUNT, acc, hit.signal.id)].add(ev.timestamp, hit.value, windowed)
    if deltas:
        apply_deltas(session, deltas)


def apply_deltas(session: Session, deltas: dict[tuple[str, int, str], _Delta]) -> None:
    """Move the aggregates by what a batch added (counts, distinct values, timed hits)."""
    keys = sorted(deltas)  # a fixed order keeps concurrent PostgreSQL writers from deadlocking
    add_facts(
        session,
        [
            {
                "subject_kind": k[0],
                "subject_id": k[1],
                "signal_id": k[2],
                "count": deltas[k].count,
                "valueless": deltas[k].valueless,
                "last_at": deltas[k].last_at,
            }
            for k in keys
        ],
    )
    value_rows = [
        {"subject_kind": k[0], "subject_id": k[1], "signal_id": k[2], "value": v}
        for k in keys
        for v in sorted(deltas[k].values)
    ]
    added: dict[tuple[str, int, str], int] = defaultdict(int)
    if value_rows:
        stmt = insert(session, VALUES)
        for row in session.execute(
            stmt.on_conflict_do_nothing().returning(VALUES.c.subject_kind, VALUES.c.subject_id, VALUES.c.signal_id),
            value_rows,
        ):
            added[(row[0], row[1], row[2])] += 1
    many(
        session,
        _DISTINCT_ADDED,
        [{"b_kind": k[0], "b_id": k[1], "b_signal": k[2], "b_n": n} for k, n in sorted(added.items())],
    )
    many(
        session,
        insert(session, HITS),
        [
            {"subject_kind": k[0], "subject_id": k[1], "signal_id": k[2], "occurred_at": at, "value": v}
            for k in keys
            for at, v in deltas[k].hits
        ],
    )


def rebuild_accounts(*, session: Session, account_ids: Iterable[int]) -> None:
    """Recompute accounts' pooled aggregates from their current members' aggregates."""
    ids = sorted(set(account_ids))
    if not ids:
        return
    members = select(USERS.c.id, USERS.c.account_id).where(USERS.c.account_id.in_(ids)).subquery()
    for table in (FACTS, VALUES, HITS):
        session.execute(delete(table).where(table.c.subject_kind == ACCOUNT, table.c.subject_id.in_(ids)))
    user_facts = and_(FACTS.c.subject_kind == USER, FACTS.c.subject_id == members.c.id)
    session.execute(
        FACTS.insert().from_select(
            ["subject_kind", "subject_id", "signal_id", "count", "valueless", "distinct_count", "last_at"],
            select(
                literal(ACCOUNT),
                members.c.account_id,
                FACTS.c.signal_id,
                func.sum(FACTS.c.count),
                func.sum(FACTS.c.valueless),
                literal(0),
                func.max(FACTS.c.last_at),
            )
            .select_from(FACTS.join(members, user_facts))
            .group_by(members.c.account_id, FACTS.c.signal_id),
        )
    )
    session.execute(
        VALUES.insert().from_select(
            ["subject_kind", "subject_id", "signal_id", "value"],
            select(literal(ACCOUNT), members.c.account_id, VALUES.c.signal_id, VALUES.c.value)
            .select_from(VALUES.join(members, and_(VALUES.c.subject_kind == USER, VALUES.c.subject_id == members.c.id)))
            .distinct(),
        )
    )
    counted = (
        select(func.count())
        .select_from(VALUES)
        .where(
            VALUES.c.subject_kind == ACCOUNT,
            VALUES.c.subject_id == FACTS.c.subject_id,
            VALUES.c.signal_id == FACTS.c.signal_id,
        )
        .scalar_subquery()
    )
    session.execute(
        update(FACTS).where(FACTS.c.subject_kind == ACCOUNT, FACTS.c.subject_id.in_(ids)).values(distinct_count=counted)
    )
    session.execute(
        HITS.insert().from_select(
            ["subject_kind", "subject_id", "signal_id", "occurred_at", "value"],
            select(
                literal(ACCOUNT), members.c.account_id, HITS.c.signal_id, HITS.c.occurred_at, HITS.c.value
            ).select_from(HITS.join(members, and_(HITS.c.subject_kind == USER, HITS.c.subject_id == members.c.id))),
        )
    )
    last = select(func.max(USERS.c.last_active_at)).where(USERS.c.account_id == ACCOUNTS.c.id).scalar_subquery()
    session.execute(update(ACCOUNTS).where(ACCOUNTS.c.id.in_(ids)).values(last_active_at=last))


# --- hand-raisers and conversions -------------------------------------------------------------


_HAND_RAISED = (
    update(USERS)
    .where(
        USERS.c.id == bindparam("b_id"),
        or_(USERS.c.hand_raised_at.is_(None), USERS.c.hand_raised_at <= bindparam("b_at", type_=UTCDateTime())),
    )
    .values(hand_raised_at=bindparam("b_at"), hand_raised_what=bindparam("b_what"))
)
_USER_CONVERTED = (
    update(USERS)
    .where(
        USERS.c.id == bindparam("b_id"),
        or_(USERS.c.customer_since.is_(None), USERS.c.customer_since > bindparam("b_at", type_=UTCDateTime())),
    )
    .values(customer_since=bindparam("b_at"))
)
_ACCOUNT_CONVERTED = (
    update(ACCOUNTS)
    .where(
        ACCOUNTS.c.id == bindparam("b_id"),
        or_(ACCOUNTS.c.customer_since.is_(None), ACCOUNTS.c.customer_since > bindparam("b_at", type_=UTCDateTime())),
    )
    .values(customer_since=bindparam("b_at"))
)


def _apply_hand_raises(session: Session, raises: Sequence[HandRaise]) -> None:
    latest: dict[int, HandRaise] = {}
    for hr in raises:
        if hr.user_id not in latest or hr.at >= latest[hr.user_id].at:
            latest[hr.user_id] = hr
    many(
        session, _HAND_RAISED, [{"b_id": u, "b_at": hr.at, "b_what": hr.what[:255]} for u, hr in sorted(latest.items())]
    )


def _apply_conversions(session: Session, conversions: Sequence[Conversion]) -> None:
    many(session, _USER_CONVERTED, [{"b_id": c.user_id, "b_at": c.at} for c in conversions])
    many(
        session,
        _ACCOUNT_CONVERTED,
        [{"b_id": c.account_id, "b_at": c.at} for c in conversions if c.account_id is not None],
    )
