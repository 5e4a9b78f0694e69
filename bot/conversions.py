"""Conversions from billing or a CRM: a CSV of who became a customer, and when.

    user_id,converted_at            email,converted_at           account_id,converted_at
    u-123,2026-11-03                ada@northwind.example,...    acct-northwind,2026-11-03T10:00Z

A column named `id` (or a file without a header: identifier, date) is looked up as a user id,
then an account id, then an email. A date without a time means midnight in PQLBOT_TIMEZONE.
The whole file is checked first: one malformed row refuses the file and nothing is recorded.
Then every row is looked up, reading only, and the changes are written in short transactions.
Identifiers pqlbot has never seen are reported, not refused (a CRM knows customers who never
used the free product). Importing the same file twice changes nothing; an earlier date wins.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from bot.errors import UserInputError
from storage import ACCOUNT, USER, Database
from storage._sql import chunks
from storage.leads import lead_of_subject, mark_converted
from storage.queries import ALREADY_CUSTOMER
from storage.tables import ACCOUNTS, IDENTITIES, USERS

MAX_BYTES = 64 * 1024 * 1024
MAX_ID = 255
MAX_PROBLEMS = 20
EARLIEST = datetime(2000, 1, 1)

_ID_COLUMNS = {
    "user": ("user_id", "userid", "user", "external_id"),
    "email": ("email", "email_address", "e_mail", "user_email"),
    "account": ("account_id", "accountid", "account", "group_id", "groupid", "company_id", "workspace_id"),
    "any": ("id", "customer", "customer_id"),
}
_DATE_COLUMNS = ("converted_at", "convertedat", "converted", "conversion_date", "date", "subscription_started_at")
PRIORITY = ("user", "email", "account", "any")


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    kind: str  # user | email | account | any
    ident: str
    at: datetime


@dataclass
class Outcome:
    rows: int = 0
    users: set[int] = field(default_factory=set)  # users now customers
    accounts: set[int] = field(default_factory=set)  # accounts now customers
    already: int = 0  # rows that changed nothing (recorded before, as early or earlier)
    missing: list[Row] = field(default_factory=list)
    pql_days: list[float] = field(default_factory=list)  # days from first alert, per converted PQL


def _key(header: str) -> str:
    return "_".join(header.strip().strip("\ufeff").lower().replace("-", " ").split())


def parse_when(text: str, zone: tzinfo, now: datetime) -> datetime:
    """A conversion time: ISO 8601 date or date-time (any offset; none means `zone`)."""
    value = text.strip()
    if not value:
        raise ValueError("converted_at is empty")
    try:
        if len(value) == 10:
            at = datetime.combine(date.fromisoformat(value), time(), zone)
        else:
            at = datetime.fromisoformat(value.replace("z", "Z"))
            at = at if at.tzinfo else at.replace(tzinfo=zone)
    except ValueError:
        raise ValueError(f"converted_at {value[:40]!r} is not a date like 2026-11-03 or 2026-11-03T10:00:00Z") from None
    if at > now + timedelta(days=1):
        raise ValueError(f"converted_at {value[:40]} is in the future")
    if at < EARLIEST.replace(tzinfo=zone):
        raise ValueError(f"converted_at {value[:40]} is before 2000")
    return at


def parse_csv(data: bytes, *, zone: tzinfo, now: datetime) -> list[Row]:
    """Every row of the file, or UserInputError listing the problems (the first twenty)."""
    if len(data) > MAX_BYTES:
        raise UserInputError(f"the file is larger than {MAX_BYTES // (1024 * 1024)} MB; split it")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserInputError(f"the file is not UTF-8 text (byte {exc.start}); save it as CSV UTF-8") from None
    if "\x00" in text:
        raise UserInputError("the file is not a CSV text file")
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    if not first:
        raise UserInputError("the file is empty")
    delimiter = max(",;\t", key=first.count)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        records = [(reader.line_num, rec) for rec in reader if any(c.strip() for c in rec)]
    except csv.Error as exc:
        raise UserInputError(f"line {reader.line_num}: {exc}") from None
    header = [_key(c) for c in records[0][1]]
    columns: dict[str, int] = {}
    for kind, names in _ID_COLUMNS.items():
        for i, h in enumerate(header):
            if h in names and kind not in columns:
                columns[kind] = i
    when = next((i for i, h in enumerate(header) if h in _DATE_COLUMNS), None)
    body = records[1:]
    if not columns and when is None and len(header) == 2:
        try:  # no header: identifier, date
            parse_when(records[0][1][1], zone, now)
        except ValueError:
            pass
        else:
            columns, when, body = {"any": 0}, 1, records
    if when is None or not columns:
        raise UserInputError(
            "the first line must name the columns: user_id, email or account_id (or id), and converted_at; "
            f"found {', '.join(h[:30] for h in header[:8]) or 'nothing'}"
        )
    rows: list[Row] = []
    problems: list[str] = []
    for line, rec in body:
        cells = {k: (rec[i].strip() if i < len(rec) else "") for k, i in columns.items()}
        found = next((k for k in PRIORITY if cells.get(k)), None)
        try:
            if found is None:
                raise ValueError(f"no {' or '.join(header[columns[k]] for k in PRIORITY if k in columns)}")
            ident = cells[found]
            if len(ident) > MAX_ID:
                raise ValueError(f"the {header[columns[found]]} is longer than {MAX_ID} characters")
            at = parse_when(rec[when] if when < len(rec) else "", zone, now)
        except ValueError as exc:
            problems.append(f"line {line}: {exc}")
            continue
        rows.append(Row(line, found, ident.casefold() if found == "email" else ident, at))
    if problems:
        more = f"\n  …and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
        raise UserInputError(
            f"{len(problems)} rows cannot be read; nothing was recorded:\n  "
            + "\n  ".join(problems[:MAX_PROBLEMS])
            + more
        )
    if not rows:
        raise UserInputError("the file has a header but no rows")
    return rows


def _resolve(session: Session, row: Row) -> tuple[list[tuple[int, int | None]], int | None]:
    """(users as (id, account id), account id) the row names; both empty when unknown."""

    def users_where(cond: object) -> list[tuple[int, int | None]]:
        return [(u, a) for u, a in session.execute(select(USERS.c.id, USERS.c.account_id).where(cond))]  # type: ignore[arg-type]

    def by_user_id() -> list[tuple[int, int | None]]:
        found = users_where(USERS.c.external_id == row.ident)
        if not found:  # an id an alias merged into someone else
            merged = select(IDENTITIES.c.user_id).where(
                IDENTITIES.c.anonymous_id == row.ident, IDENTITIES.c.kind == "user"
            )
            found = users_where(USERS.c.id.in_(merged))
        return found

    def by_account() -> int | None:
        return session.scalar(select(ACCOUNTS.c.id).where(ACCOUNTS.c.external_id == row.ident))

    if row.kind == "user":
        return by_user_id(), None
    if row.kind == "email":
        return users_where(USERS.c.email == row.ident), None
    if row.kind == "account":
        return [], by_account()
    users = by_user_id()
    if users:
        return users, None
    account = by_account()
    if account is not None:
        return [], account
    if "@" in row.ident:
        return users_where(USERS.c.email == row.ident.casefold()), None
    return [], None


def _convert(session: Session, kind: str, subject_id: int, at: datetime) -> None:
    """`at` as the subject's conversion time unless an earlier one is recorded (a compare-and-set:
    a live `Subscription Started` arriving meanwhile is kept when it is earlier)."""
    table = USERS if kind == USER else ACCOUNTS
    session.execute(
        update(table)
        .where(table.c.id == subject_id, or_(table.c.customer_since.is_(None), table.c.customer_since > at))
        .values(customer_since=at)
    )
    mark_converted(session=session, kind=kind, subject_id=subject_id, at=at)


def _subjects(users: list[tuple[int, int | None]], account: int | None) -> list[tuple[str, int]]:
    """Who a row makes a customer: the users it names, their accounts, and the account it names."""
    accounts = {a for _, a in users if a is not None} | ({account} if account is not None else set())
    return [(USER, u) for u, _ in users] + [(ACCOUNT, a) for a in sorted(accounts)]


def _known_conversions(
    session: Session,
    resolved: list[tuple[Row, list[tuple[int, int | None]], int | None]],
    earliest: dict[tuple[str, int], datetime],
    never: datetime,
) -> None:
    """Each newly named subject's recorded conversion time (`never` for none) into `earliest`,
    with one query per kind for the whole chunk."""
    wanted: dict[str, set[int]] = {USER: set(), ACCOUNT: set()}
    for _, users, account in resolved:
        for kind, subject_id in _subjects(users, account):
            wanted[kind].add(subject_id)
    for kind, table in ((USER, USERS), (ACCOUNT, ACCOUNTS)):
        ids = [i for i in wanted[kind] if (kind, i) not in earliest]
        for part in chunks(ids, 500):
            found = dict(session.execute(select(table.c.id, table.c.customer_since).where(table.c.id.in_(part))).all())
            for i in part:
                earliest[(kind, i)] = found.get(i) or never


def record(
    db: Database, rows: Iterable[Row], *, dry_run: bool = False, progress: Callable[[int, int], None] | None = None
) -> Outcome:
    """Record the conversions. Every row is looked up first, reading only (a dry run ends
    there); the writes then go in short transactions, so live ingest is never held up for long.
    A run cut off part-way is finished by running it again: recording is idempotent."""
    rows = list(rows)
    out = Outcome(rows=len(rows))
    earliest: dict[tuple[str, int], datetime] = {}  # what each subject's conversion time becomes
    done = 0
    never = datetime.max.replace(tzinfo=UTC)
    for part in chunks(rows, 1000):
        with db.read() as s:
            resolved = [(row, *_resolve(s, row)) for row in part]
            _known_conversions(s, resolved, earliest, never)
            for row, users, account in resolved:
                if not users and account is None:
                    out.missing.append(row)
                    continue
                changed = False
                for key in _subjects(users, account):
                    if row.at < earliest[key]:
                        earliest[key] = row.at
                        (out.users if key[0] == USER else out.accounts).add(key[1])
                        changed = True
                if not changed:
                    out.already += 1
        done += len(part)
        if progress is not None:
            progress(done, len(rows))
    changed_subjects = [(USER, u) for u in out.users] + [(ACCOUNT, a) for a in out.accounts]
    if not dry_run:
        for part_subjects in chunks(changed_subjects, 500):
            with db.write(scoring=True) as s:
                for kind, subject_id in part_subjects:
                    _convert(s, kind, subject_id, earliest[(kind, subject_id)])
    with db.read() as s:
        for kind, subject_id in changed_subjects:
            lead = lead_of_subject(session=s, kind=kind, subject_id=subject_id)
            if lead is None or lead.first_alerted_at is None:
                continue
            converted = lead.converted_at if not dry_run else earliest[(kind, subject_id)]
            if converted is not None and converted >= lead.first_alerted_at - ALREADY_CUSTOMER:
                out.pql_days.append(max(0.0, (converted - lead.first_alerted_at).total_seconds() / 86400))
    return out


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None
