"""The adoption summary alerts and `/pql account` show: what the team adopted, whom to contact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from sqlmodel import col

from scoring import Facts, Model, Signal, evaluate
from scoring.contact import Member, choose_contact
from storage.facts import load_facts, score_a_week_ago
from storage.tables import ACCOUNT, FACTS, HITS, USER, USERS, VALUES, Account, User

MAX_MEMBERS_READ = 500
SHOWN_DRIVERS = 5
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SHOWN_VALUES = 5


def display_name(user: User | Any) -> str:
    """How a person is named to sales: name, else email, else their id."""
    if user.name:
        return str(user.name)
    if user.email:
        return str(user.email)
    if user.external_id:
        return str(user.external_id)
    return f"anonymous visitor #{user.id}"


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _person(user: User, model: Model | None = None) -> dict[str, Any]:
    person: dict[str, Any] = {
        "id": user.external_id or f"#{user.id}",
        "display": display_name(user),
        "email": user.email,
        "role": user.role,
        "score": user.score,
        "last_active_at": _iso(user.last_active_at),
    }
    if model is not None:
        person["did"] = contributions(user, model)
    return person


def contributions(user: User, model: Model) -> list[str]:
    """What a member added to the team's signals, e.g. `Invite Sent ×2`, from their last score."""
    measures = (user.breakdown or {}).get("signals", {})
    out = []
    for signal in model.signals:
        if signal.is_inactivity:
            continue
        measure = (measures.get(signal.id) or [0])[0]
        if measure:
            what = (signal.events or signal.pages or signal.paths or (signal.label,))[0]
            out.append(f"{what} ×{measure}")
    return out


def _signals(
    session: Session, model: Model, kind: str, subject_id: int, facts: Facts, now: datetime
) -> tuple[list[dict[str, Any]], int]:
    score = evaluate(model, facts, now)
    out = []
    for r in score.breakdown:
        signal = model.signal(r.id)
        values: list[str] = []
        if signal is not None and signal.distinct_property and r.measure:
            values = list(
                session.scalars(
                    select(VALUES.c.value)
                    .where(
                        VALUES.c.subject_kind == kind,
                        VALUES.c.subject_id == subject_id,
                        VALUES.c.signal_id == r.id,
                    )
                    .order_by(VALUES.c.value)
                    .limit(SHOWN_VALUES + 1)
                )
            )
        out.append(
            {
                **r.as_dict(),
                "window": signal.describe_window() if signal else "",
                "inactivity": bool(signal and signal.is_inactivity),
                "values": values,
            }
        )
    return out, score.total


def _member(user: User) -> Member:
    return Member(
        user_id=str(user.id),
        display=display_name(user),
        score=user.score,
        activity_count=user.activity_count,
        last_active_at=user.last_active_at,
        role=user.role,
        hand_raised_at=user.hand_raised_at,
        hand_raised_what=user.hand_raised_what,
    )


def summary(*, session: Session, kind: str, subject_id: int, model: Model, now: datetime) -> dict[str, Any]:
    """Everything a rep needs about a lead, as plain data (stored with alerts, rendered anywhere)."""
    facts = load_facts(session=session, kind=kind, ids=[subject_id], model=model, now=now)[subject_id]
    signals, total = _signals(session, model, kind, subject_id, facts, now)
    since_7d, since_30d = now - timedelta(days=7), now - timedelta(days=30)
    if kind == ACCOUNT:
        account = session.get(Account, subject_id)
        assert account is not None
        subject = {
            "kind": "account",
            "id": account.external_id,
            "name": account.name or account.external_id,
            "domain": account.domain,
            "plan": _plain(account.traits.get("plan")),
            "seats": _seats(account.traits.get("seats") or account.traits.get("employees")),
            "customer": account.customer_since is not None,
        }
        users = list(
            session.scalars(
                select(User)
                .where(col(User.account_id) == subject_id)
                .order_by(col(User.activity_count).desc(), col(User.id))
                .limit(MAX_MEMBERS_READ)
            )
        )
        total_members, active_7d, active_30d = session.execute(
            select(
                func.count(),
                func.count().filter(USERS.c.last_active_at > since_7d),
                func.count().filter(USERS.c.last_active_at > since_30d),
            ).where(USERS.c.account_id == subject_id)
        ).one()
    else:
        user = session.get(User, subject_id)
        assert user is not None
        subject = {
            "kind": "user",
            "id": user.external_id or f"#{user.id}",
            "name": display_name(user),
            "email": user.email,
            "plan": None,
            "seats": None,
            "domain": None,
            "customer": user.customer_since is not None,
        }
        users = [user]
        total_members = 1
        active_7d = int(bool(user.last_active_at and user.last_active_at > since_7d))
        active_30d = int(bool(user.last_active_at and user.last_active_at > since_30d))
    # Only people sales can reach are named (an anonymous visitor is counted, never named).
    users = [u for u in users if u.external_id or u.email]
    by_id = {str(u.id): u for u in users}
    contact = choose_contact([_member(u) for u in users])
    drivers = []
    for sig in signals:
        if sig["fired"] and not sig["inactivity"]:
            signal = model.signal(sig["id"])
            if signal is not None:
                names, count = _drivers(session, signal, kind, subject_id, now)
                drivers.append({"signal": sig["label"], "members": names, "more": max(0, count - len(names))})
    raised = max((u for u in users if u.hand_raised_at), key=lambda u: u.hand_raised_at or _EPOCH, default=None)
    week_ago = score_a_week_ago(session=session, account_id=subject_id, now=now) if kind == ACCOUNT else None
    return {
        "subject": subject,
        "score": total,
        "threshold": model.threshold,
        "signals": signals,
        "members": {"total": int(total_members), "active_7d": int(active_7d), "active_30d": int(active_30d)},
        "top_users": [_person(u, model) for u in sorted(users, key=lambda u: (-u.score, -u.activity_count))[:5]],
        "drivers": drivers,
        "contact": None if contact is None else {**_person(by_id[contact.member.user_id]), "reason": contact.reason},
        "champion": None if contact is None or contact.champion is None else _person(by_id[contact.champion.user_id]),
        "hand_raise": None
        if raised is None
        else {**_person(raised), "what": raised.hand_raised_what, "at": _iso(raised.hand_raised_at)},
        "invites": _invites(session, model, kind, subject_id),
        "trend": {"week_ago": week_ago, "delta": None if week_ago is None else total - week_ago},
        "at": now.isoformat(),
    }


def _drivers(session: Session, signal: Signal, kind: str, subject_id: int, now: datetime) -> tuple[list[str], int]:
    """The (identified) members whose own events feed this signal, most active first, and how many
    members do in all."""
    members = USERS.c.account_id == subject_id if kind == ACCOUNT else USERS.c.id == subject_id
    # Correlated on the member (EXISTS on the subject's own index rows): the cost follows the
    # account's size, not how many people in the whole product ever fed the signal.
    if signal.window_days is None:
        feeds = select(FACTS.c.subject_id).where(
            FACTS.c.subject_kind == USER,
            FACTS.c.subject_id == USERS.c.id,
            FACTS.c.signal_id == signal.id,
            FACTS.c.count > 0,
        )
    else:
        feeds = select(HITS.c.subject_id).where(
            HITS.c.subject_kind == USER,
            HITS.c.subject_id == USERS.c.id,
            HITS.c.signal_id == signal.id,
            HITS.c.occurred_at <= now,
            HITS.c.occurred_at > now - timedelta(days=signal.window_days),
        )
    fed = (members, feeds.exists())
    count = int(session.scalar(select(func.count()).select_from(USERS).where(*fed)) or 0)
    named = session.scalars(
        select(User)
        .where(*fed, or_(col(User.external_id).is_not(None), col(User.email).is_not(None)))
        .order_by(col(User.activity_count).desc(), col(User.id))
        .limit(SHOWN_DRIVERS)
    )
    return [display_name(u) for u in named], count


def _invites(session: Session, model: Model, kind: str, subject_id: int) -> dict[str, Any] | None:
    """Invitations sent and how many are still outstanding (the invitee is not a member yet)."""
    signal = next((s for s in model.signals if s.distinct_property and "email" in s.distinct_property.casefold()), None)
    if signal is None:
        return None
    sent = select(VALUES.c.value).where(
        VALUES.c.subject_kind == kind, VALUES.c.subject_id == subject_id, VALUES.c.signal_id == signal.id
    )
    total = int(session.scalar(select(func.count()).select_from(sent.subquery())) or 0)
    if not total:
        return None
    # In an account an invitee has joined when they are a member; someone on their own invited
    # people who have joined when those people use the product at all.
    team = select(USERS.c.email).where(USERS.c.email.is_not(None))
    if kind == ACCOUNT:
        team = team.where(USERS.c.account_id == subject_id)
    pending = sent.where(VALUES.c.value.not_in(team))
    outstanding = int(session.scalar(select(func.count()).select_from(pending.subquery())) or 0)
    examples = list(session.scalars(pending.order_by(VALUES.c.value).limit(5)))
    return {"sent": total, "joined": total - outstanding, "outstanding": examples, "outstanding_count": outstanding}


def _seats(value: Any) -> int | None:
    """A head count worth showing: a whole number from 1 to ten million, else nothing."""
    if isinstance(value, bool):
        return None
    try:
        seats = int(str(value).strip()) if isinstance(value, (int, str)) else None
    except ValueError:
        return None
    return seats if seats is not None and 1 <= seats <= 10_000_000 else None


def _plain(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)[:100]
