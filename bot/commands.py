"""The `/pql` commands: parse → storage/scoring → a rendered reply. No Slack I/O here.

Each command runs in a worker thread (the listener awaits it) and returns a Reply: the message
for the person who asked, plus any alert messages that must change in the channel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot import model_admin
from bot.errors import NotAllowed, UserInputError
from bot.model_admin import whole_number
from bot.render import Message, render
from bot.services import Services
from bot.slack.args import UnclosedQuote, split
from scoring import evaluate
from storage import ACCOUNT, USER, outbox, queries
from storage import facts as facts_store
from storage import leads as leads_store
from storage.summary import display_name, summary
from storage.tables import Account, Alert, Lead, User, pk

log = logging.getLogger("pqlbot.commands")
MAX_TOP = 50
Handler = Callable[[Services, "Caller", list[str]], "Reply"]
MAX_STATS_MONTHS = 24


@dataclass
class Update:
    """An alert message in the channel to replace (after a claim): rendered from the database
    just before it is sent (`current_alert`), so it shows every claim committed by then."""

    channel: str
    ts: str
    alert_id: int


@dataclass
class Reply:
    message: Message
    updates: list[Update] = field(default_factory=list)
    in_channel: bool = False


def notice(text: str) -> Reply:
    return Reply(render("notice.json.j2", text=text))


@dataclass(frozen=True)
class Caller:
    """Who typed the command, and whether they may change the model."""

    id: str
    admin: bool = False


ADMIN_WORDS = frozenset({"weight", "threshold", "handraiser", "signal"})


def needs_admin(text: str) -> bool:
    """Whether `/pql <text>` is an admin command (so the listener checks Slack admin status)."""
    words = [w.lower() for w in split(text)[:2]]
    return bool(words) and (words[0] in ADMIN_WORDS or words[:2] == ["model", "rollback"])


# Commands whose arguments name events or pages of several words: a quote left open is refused
# rather than guessed at.
STRICT_QUOTES = frozenset({"signal", "handraiser"})


def answer(services: Services, caller: Caller | str, text: str) -> Reply:
    """Answer `/pql <text>` typed by `caller`."""
    if isinstance(caller, str):
        caller = Caller(caller, services.is_admin(caller))
    words = split(text)
    if words and words[0].lower() in STRICT_QUOTES:
        try:
            words = split(text, strict=True)
        except UnclosedQuote:
            return notice(
                'A quote is not closed: put a name of several words between two quotes, like "Report Exported".'
            )
    name = words[0].lower() if words else "help"
    handler = COMMANDS.get(name)
    if handler is None:
        return Reply(render("help.json.j2", unknown=words[0] if words else None))
    try:
        return handler(services, caller, words[1:])
    except (UserInputError, NotAllowed) as exc:
        return notice(str(exc))


def _help(services: Services, caller: Caller, args: list[str]) -> Reply:
    return Reply(render("help.json.j2", unknown=None))


def _top(services: Services, caller: Caller, args: list[str]) -> Reply:
    limit = 10
    kinds: tuple[str, ...] = (ACCOUNT, USER)
    for arg in args:
        low = arg.lower()
        if low in ("accounts", "account"):
            kinds = (ACCOUNT,)
        elif low in ("users", "user"):
            kinds = (USER,)
        elif whole_number(low) is not None or low.lstrip("+-").isdigit():
            number = whole_number(low)
            if number is None or not 1 <= number <= MAX_TOP:
                raise UserInputError(f"`/pql top N` takes N from 1 to {MAX_TOP}.")
            limit = number
        else:
            raise UserInputError(
                f"`/pql top` takes a number (1 to {MAX_TOP}) and `accounts` or `users`, not `{arg[:40]}`."
            )
    with services.db.read() as s:
        rows = queries.top(session=s, limit=limit, kinds=kinds)
        threshold = services.pipeline.live_model(s).model.threshold
    names: dict[tuple[str, ...], tuple[str, str]] = {
        (ACCOUNT,): ("account", "accounts"),
        (USER,): ("user without an account", "users without an account"),
    }
    singular, plural = names.get(kinds, ("lead", "leads"))
    which = singular if len(rows) == 1 else plural
    return Reply(render("top.json.j2", rows=rows, which=which, threshold=threshold))


def _fresh_score(s: Any, services: Services, kind: str, subject_id: int, now: datetime) -> Any:
    model = services.pipeline.live_model(s).model
    facts = facts_store.load_facts(session=s, kind=kind, ids=[subject_id], model=model, now=now)
    return evaluate(model, facts[subject_id], now)


def _score(services: Services, caller: Caller, args: list[str]) -> Reply:
    if not args:
        raise UserInputError("Say whose score: `/pql score ada@example.com` (an email or a user id).")
    query = " ".join(args)
    now = services.clock()
    with services.db.read() as s:
        user = queries.find_user(session=s, query=query)
        if user is None:
            raise UserInputError(f"No user has the email or id `{query[:80]}`.")
        user_score = _fresh_score(s, services, USER, int(user.id), now)  # type: ignore[arg-type]
        account = s.get(Account, user.account_id) if user.account_id else None
        account_score = _fresh_score(s, services, ACCOUNT, int(account.id), now) if account else None  # type: ignore[arg-type]
        kind, subject = (ACCOUNT, account.id) if account else (USER, user.id)
        lead = leads_store.lead_of_subject(session=s, kind=kind, subject_id=int(subject))  # type: ignore[arg-type]
        model = services.pipeline.live_model(s).model
        return Reply(
            render(
                "score.json.j2",
                inactivity={sig.id for sig in model.signals if sig.is_inactivity},
                user=_person(user),
                score=user_score,
                account=account,
                account_score=account_score,
                lead=lead,
                now=now,
            )
        )


def _person(user: User) -> dict[str, Any]:
    return {
        "id": user.external_id or f"#{user.id}",
        "display": display_name(user),
        "email": user.email,
        "role": user.role,
        "last_active_at": user.last_active_at.isoformat() if user.last_active_at else None,
        "customer": user.customer_since is not None,
    }


def _find_account(s: Any, query: str, *, exact: bool = False) -> Account:
    """The one account `query` names; with `exact`, part of a name is not enough."""
    found = queries.find_accounts(session=s, query=query, partial=not exact)
    if not found and exact:
        near = queries.find_accounts(session=s, query=query)
        maybe = ", ".join(f"{a.name or a.external_id} (`{a.external_id}`)" for a in near[:5])
        raise UserInputError(
            f"No account is exactly `{query[:80]}`"
            + (f"; did you mean {maybe}?" if maybe else ".")
            + " Claim with the account's id, full name or email domain."
        )
    if not found:
        raise UserInputError(f"No account matches `{query[:80]}` (try its id, its name or an email domain).")
    if len(found) > 1:
        names = ", ".join(f"{a.name or a.external_id} (`{a.external_id}`)" for a in found[:5])
        raise UserInputError(f"`{query[:80]}` matches several accounts: {names}. Use the account id.")
    return found[0]


def _account(services: Services, caller: Caller, args: list[str]) -> Reply:
    if not args:
        raise UserInputError("Say which account: `/pql account acme` (its id, name or email domain).")
    now = services.clock()
    with services.db.read() as s:
        account = _find_account(s, " ".join(args))
        model = services.pipeline.live_model(s).model
        a = summary(session=s, kind=ACCOUNT, subject_id=pk(account), model=model, now=now)
        lead = leads_store.lead_of_subject(session=s, kind=ACCOUNT, subject_id=pk(account))
        return Reply(render("account.json.j2", a=a, lead=lead, now=now))


def _claim(services: Services, caller: Caller, args: list[str]) -> Reply:
    if not args:
        raise UserInputError("Say which lead: `/pql claim ada@example.com` or `/pql claim <account>`.")
    query = " ".join(args)
    now = services.clock()
    with services.db.write() as s:
        user = queries.find_user(session=s, query=query)
        if user is not None:
            kind, subject = (ACCOUNT, user.account_id) if user.account_id else (USER, user.id)
        else:
            # A claim is not undone by a command: it takes an exact id, name, email or domain,
            # never the first account whose name happens to contain the words.
            account = _find_account(s, query, exact=True)
            kind, subject = ACCOUNT, account.id
        lead = leads_store.ensure_leads(session=s, kind=kind, ids=[int(subject)], now=now)[int(subject)]  # type: ignore[arg-type]
        name = _subject_name(s, kind, int(subject))  # type: ignore[arg-type]
    return claim_lead(services, lead_id=int(lead.id), user_id=caller.id, name=name)  # type: ignore[arg-type]


def _subject_name(s: Any, kind: str, subject_id: int) -> str:
    row = s.get(Account if kind == ACCOUNT else User, subject_id)
    if isinstance(row, Account):
        return row.name or row.external_id
    return display_name(row) if row else f"#{subject_id}"


def claim_lead(
    services: Services, *, lead_id: int, user_id: str, name: str | None = None, clicked: tuple[str, str] | None = None
) -> Reply:
    """Claim a lead for `user_id` (compare-and-set); re-render its alerts when the claim wins.

    `clicked` is the (channel, ts) of the message whose button was pressed: when that is a
    bundled message listing several leads, it is re-rendered too.
    """
    now = services.clock()
    with services.db.write() as s:
        result = leads_store.claim(session=s, lead_id=lead_id, user=user_id, now=now)
        if result is None:
            raise UserInputError("That lead no longer exists.")
        lead = result.lead
        name = name or _subject_name(s, lead.subject_kind, lead.subject_id)
        alerts = list(outbox.delivered_for_lead(session=s, lead_id=lead_id))
        alerts += outbox.delivered_bundles_with(session=s, lead_id=lead_id, now=now)
        if clicked and all(clicked) and not any((a.channel, a.ts) == clicked for a in alerts):
            other = outbox.by_message(session=s, channel=clicked[0], ts=clicked[1])
            if other is not None:
                alerts.append(other)
        if not result.won:
            holder = lead.claimed_by or "someone"
            if holder == user_id:
                return Reply(render("notice.json.j2", text=f"You already hold {name}."))
            return Reply(render("claimed_by_other.json.j2", name=name, holder=holder, at=lead.claimed_at, now=now))
        updates = [Update(a.channel, a.ts, pk(a)) for a in alerts if a.channel and a.ts]
    log.info("lead %s claimed", lead_id)
    return Reply(render("claimed.json.j2", name=name, user=user_id, updated=len(updates)), updates=updates)


def current_alert(services: Services, alert_id: int) -> Message | None:
    """An alert as the database says it should look now (its lead's claim, a bundle's claims)."""
    with services.db.read() as s:
        alert = s.get(Alert, alert_id)
        if alert is None:
            return None
        lead = s.get(Lead, leads_store.resolve(session=s, lead_id=alert.lead_id)) if alert.lead_id is not None else None
        return render_alert(alert, claimed_by=lead.claimed_by if lead else None, now=services.clock(), session=s)


def render_alert(alert: Alert, *, claimed_by: str | None, now: datetime, session: Any = None) -> Message:
    """An alert as it should look now. A bundle shows each of its leads' claims (needs `session`)."""
    if alert.kind == "bundle":
        ids = [int(item["lead_id"]) for item in alert.context.get("leads", []) if "lead_id" in item]
        claims = leads_store.claims(session=session, lead_ids=ids) if session is not None and ids else {}
        return render("bundle.json.j2", a=alert.context, claims=claims, now=now)
    if alert.kind in ("digest", "report"):
        return render(f"{alert.kind}.json.j2", a=alert.context, now=now)
    templates = {"hand_raiser": "hand_raiser_alert.json.j2", "reminder": "reminder.json.j2"}
    template = templates.get(alert.kind, "pql_alert.json.j2")
    return render(template, a=alert.context, claimed_by=claimed_by, now=now)


def _model(services: Services, caller: Caller, args: list[str]) -> Reply:
    sub = args[0].lower() if args else ""
    if sub == "history":
        return Reply(model_admin.history(services))
    if sub == "rollback":
        if len(args) != 2:
            raise UserInputError("Usage: `/pql model rollback <version>`; `/pql model history` lists the versions.")
        return _admin(lambda sv, c, a: Reply(model_admin.rollback(sv, version=a[0], by=c.id)))(
            services, caller, args[1:]
        )
    if sub:
        raise UserInputError(
            "`/pql model` shows the live model; `/pql model history` and "
            "`/pql model rollback <version>` are the other choices."
        )
    with services.db.read() as s:
        live = services.pipeline.live_model(s)
    return Reply(render("model.json.j2", live=live, model=live.model))


def _admin(fn: Handler) -> Handler:
    def guarded(services: Services, caller: Caller, args: list[str]) -> Reply:
        if not caller.admin:
            who = "PQLBOT_ADMINS" + (" or workspace admins" if services.settings.slack_admins_are_admins else "")
            raise NotAllowed(f"Only pqlbot admins ({who}) can change the model; nothing was changed.")
        return fn(services, caller, args)

    return guarded


def _weight(services: Services, caller: Caller, args: list[str]) -> Reply:
    if len(args) != 2:
        raise UserInputError("Usage: `/pql weight <signal id> <points>`, e.g. `/pql weight integration_activated 30`.")
    return Reply(model_admin.set_weight(services, signal_id=args[0], points=args[1], by=caller.id))


def _threshold(services: Services, caller: Caller, args: list[str]) -> Reply:
    if len(args) != 1:
        raise UserInputError("Usage: `/pql threshold <points>`, e.g. `/pql threshold 50`.")
    return Reply(model_admin.set_threshold(services, value=args[0], by=caller.id))


def _handraiser(services: Services, caller: Caller, args: list[str]) -> Reply:
    action = args[0].lower() if args else ""
    return Reply(model_admin.hand_raiser(services, action=action, args=args[1:], by=caller.id))


def _signal(services: Services, caller: Caller, args: list[str]) -> Reply:
    action = args[0].lower() if args else ""
    return Reply(model_admin.signal(services, action=action, args=args[1:], by=caller.id))


def _preview(services: Services, caller: Caller, args: list[str]) -> Reply:
    kind = args[0].lower() if args else ""
    return Reply(model_admin.preview_change(services, kind=kind, args=args[1:]))


def _stats(services: Services, caller: Caller, args: list[str]) -> Reply:
    months = 6
    if args:
        number = whole_number(args[0]) if len(args) == 1 else None
        if number is None or not 1 <= number <= MAX_STATS_MONTHS:
            raise UserInputError(f"`/pql stats [months]` takes a number of months from 1 to {MAX_STATS_MONTHS}.")
        months = number
    now = services.clock()
    with services.db.read() as s:
        rows = queries.conversion_by_month(session=s, months=months, now=now, zone=services.settings.zone)
    total = sum(r.pqls for r in rows)
    converted = sum(r.converted for r in rows)
    return Reply(render("stats.json.j2", rows=rows, total=total, converted=converted, zone=services.settings.timezone))


COMMANDS: dict[str, Handler] = {
    "help": _help,
    "top": _top,
    "score": _score,
    "account": _account,
    "claim": _claim,
    "model": _model,
    "stats": _stats,
    "preview": _preview,
    "weight": _admin(_weight),
    "threshold": _admin(_threshold),
    "handraiser": _admin(_handraiser),
    "signal": _admin(_signal),
}
