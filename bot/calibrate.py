"""Choosing the threshold from history: replay stored events with the live model and compare,
threshold by threshold, who would have been a PQL with who became a customer.

A subject's events after it became a customer are not replayed (a customer's usage says nothing
about who is ready to buy), and a subject that was a customer before the replayed period is left
out. Membership is today's: an account's history is its current members' events.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select

from bot.errors import UserInputError
from scoring.model import Model
from scoring.replay import Replayer, Row, calibrate, suggest
from storage import Database
from storage.rebuild import ACTIVITY, _event
from storage.tables import ACCOUNTS, EVENTS, USERS

CHUNK = 5000
MAX_ROWS = 40  # candidate thresholds shown; more distinct peaks are thinned evenly

Progress = Callable[[int, int], None]


@dataclass
class Calibration:
    level: str  # "accounts" or "users"
    rows: list[Row]
    suggestion: Row | None
    live_threshold: int
    population: int
    customers: int
    events: int
    first: datetime | None
    last: datetime | None
    weeks: float


def replay(
    db: Database,
    model: Model,
    *,
    level: str,
    since: datetime | None,
    now: datetime,
    min_precision: float | None = None,
    progress: Progress | None = None,
) -> Calibration:
    with db.read() as s:
        member: dict[int, int | None] = {}
        identified: set[int] = set()
        user_customer: dict[int, datetime] = {}
        for uid, account, external_id, email, since_ in s.execute(
            select(USERS.c.id, USERS.c.account_id, USERS.c.external_id, USERS.c.email, USERS.c.customer_since)
        ):
            member[uid] = account
            if external_id or email:
                identified.add(uid)
            if since_ is not None:
                user_customer[uid] = since_
        account_customer = {
            a: c for a, c in s.execute(select(ACCOUNTS.c.id, ACCOUNTS.c.customer_since)) if c is not None
        }
        where: list[ColumnElement[bool]] = [EVENTS.c.kind.in_(ACTIVITY), EVENTS.c.user_id.is_not(None)]
        if since is not None:
            where.append(EVENTS.c.occurred_at >= since)
        total = int(s.scalar(select(func.count()).select_from(EVENTS).where(*where)) or 0)

    def subject_of(user_id: int) -> int | None:
        if level == "accounts":
            return member.get(user_id)
        return user_id if user_id in identified else None

    def converted_at(subject: int) -> datetime | None:
        if level == "accounts":
            return account_customer.get(subject)
        account = member.get(subject)
        own, team = user_customer.get(subject), account_customer.get(account) if account is not None else None
        dates = [d for d in (own, team) if d is not None]
        return min(dates) if dates else None

    replayer = Replayer(model)
    population: set[Hashable] = set()
    customers: set[Hashable] = set()
    first = last = None
    done = 0
    # Keyset pages in (time, id) order: the replay needs each subject's events in time order.
    after: tuple[datetime, int] | None = None
    while True:
        with db.read() as s:
            q = select(
                EVENTS.c.id, EVENTS.c.user_id, EVENTS.c.kind, EVENTS.c.name, EVENTS.c.occurred_at, EVENTS.c.properties
            ).where(*where)
            if after is not None:
                q = q.where(
                    (EVENTS.c.occurred_at > after[0]) | ((EVENTS.c.occurred_at == after[0]) & (EVENTS.c.id > after[1]))
                )
            rows = s.execute(q.order_by(EVENTS.c.occurred_at, EVENTS.c.id).limit(CHUNK)).all()
        if not rows:
            break
        for event_id, user_id, kind, name, at, properties in rows:
            subject = subject_of(user_id)
            if subject is None:
                continue
            became = converted_at(subject)
            if became is not None and (since is not None and became < since):
                continue  # a customer before the period: not a lead in it
            population.add(subject)
            if became is not None:
                customers.add(subject)
                if at >= became:
                    continue  # a customer by then
            replayer.add(subject, _event(event_id, kind, name, at, properties or {}))
            first = first or at
            last = at
        after = (rows[-1][4], rows[-1][0])
        done += len(rows)
        if progress is not None:
            progress(done, total)
    start = since or first
    weeks = max((now - start).total_seconds() / timedelta(weeks=1).total_seconds(), 1 / 7) if start else 0.0
    peaks = {s: p for s, p in replayer.peaks.items() if s in population}
    candidates = sorted({p for p in peaks.values() if p > 0} | {model.threshold})
    if len(candidates) > MAX_ROWS:
        step = len(candidates) / MAX_ROWS
        candidates = sorted({candidates[int(i * step)] for i in range(MAX_ROWS)} | {model.threshold})
    rows_out = calibrate(peaks, customers, len(population), weeks, candidates)
    return Calibration(
        level=level,
        rows=rows_out,
        suggestion=suggest(rows_out, min_precision) if customers else None,
        live_threshold=model.threshold,
        population=len(population),
        customers=len(customers),
        events=done,
        first=first,
        last=last,
        weeks=weeks,
    )


def parse_precision(text: str) -> float:
    """`0.3` or `30%` as a fraction in (0, 1]."""
    value = text.strip()
    try:
        number = float(value.rstrip("%"))
    except ValueError:
        raise UserInputError(
            f"--min-precision {value[:20]!r} is not a number; give a fraction like 0.3 or 30%"
        ) from None
    if value.endswith("%"):
        number /= 100
    elif number > 1:
        raise UserInputError(
            f"--min-precision {value[:20]} is ambiguous: give a fraction like 0.3 or a percentage like 30%"
        )
    if not 0 < number <= 1 or number != number:
        raise UserInputError(f"--min-precision {value[:20]} is not between 0 and 100%")
    return number


def table(c: Calibration) -> list[str]:
    """The calibration as a readable table, the live threshold and the suggestion marked."""
    head = (
        f"{'threshold':>9}  {'PQLs':>6}  {'converted':>9}  {'precision':>9}  {'recall':>6}  {'lift':>5}  "
        f"{'alerts/week':>11}"
    )
    lines = [head, "-" * len(head)]
    best = c.suggestion.threshold if c.suggestion else None
    for r in c.rows:
        marks = []
        if r.threshold == c.live_threshold:
            marks.append("live")
        if r.threshold == best:
            marks.append("suggested")
        precision = f"{r.precision:.0%}" if c.customers else "-"
        recall = f"{r.recall:.0%}" if c.customers else "-"
        lift = f"{r.lift:.1f}x" if c.customers else "-"
        lines.append(
            f"{r.threshold:>9}  {r.pqls:>6}  {r.converted:>9}  {precision:>9}  {recall:>6}  {lift:>5}  "
            f"{r.per_week:>11.1f}" + (f"  ← {', '.join(marks)}" if marks else "")
        )
    return lines
