"""The main job: events in → aggregates → scores → lead state → alerts in the outbox.

Everything for one batch happens in one transaction, so an alert exists exactly when the score
change that caused it was stored. Delivery to Slack happens afterwards (bot.delivery).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from bot.clock import Clock, utcnow
from scoring import Event, Model, Score, evaluate
from scoring.model import default_model, load_model
from storage import ACCOUNT, USER, Database, outbox
from storage import facts as facts_store
from storage import leads as leads_store
from storage import models as models_store
from storage.ingest import Recorded, record_events
from storage.summary import display_name, summary
from storage.tables import Account, User

log = logging.getLogger("pqlbot.pipeline")

# A hand-raise older than this when it reaches pqlbot (a backfill, a client that was offline)
# is recorded for the account's context but does not page sales "now".
HAND_RAISE_FRESH = timedelta(hours=24)
RESCORE_PAGE = 2000
# Batches that arrive while another is being written are written together, up to this many
# events in one transaction (see Pipeline.ingest).
GROUP_EVENTS = 5000


class _Waiting:
    __slots__ = ("done", "error", "events", "result")

    def __init__(self, events: Sequence[Event]):
        self.events = events
        self.done = False
        self.result: Recorded | None = None
        self.error: BaseException | None = None


@dataclass
class RescoreResult:
    users: int = 0
    accounts: int = 0
    changed: int = 0
    crossed: list[dict[str, Any]] = field(default_factory=list)
    cooled: list[dict[str, Any]] = field(default_factory=list)
    announced: list[dict[str, Any]] = field(default_factory=list)  # crossed and not alerted lately


class Pipeline:
    """Owns the write path. Thread-safe: each call opens its own transaction."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Clock = utcnow,
        on_alert: Callable[[], None] | None = None,
        initial_model: str | None = None,
    ):
        self.db = db
        self.clock = clock
        self.on_alert = on_alert or (lambda: None)
        self._initial_model = initial_model
        self._live: models_store.LiveModel | None = None
        self._turn = threading.Condition()
        self._waiting: list[_Waiting] = []
        self._writing = False

    # --- the model ----------------------------------------------------------------------------

    def ensure_model(self) -> models_store.LiveModel:
        """Install the first model (PQLBOT_MODEL or the bundled default) on an empty database."""
        with self.db.write(scoring=True) as s:
            live = models_store.live_model(session=s)
            if live is None:
                model = load_model(self._initial_model, complete=True) if self._initial_model else default_model()
                source = "file" if self._initial_model else "default"
                models_store.save_model(
                    session=s,
                    model=model,
                    created_by="pqlbot",
                    source=source,
                    summary="initial model",
                    now=self.clock(),
                    base_version=None,
                )
                live = models_store.live_model(session=s)
            elif self._initial_model and load_model(self._initial_model, complete=True) != live.model:
                log.warning(
                    "PQLBOT_MODEL is only imported into an empty database; this one already has model v%s, "
                    "which stays live",
                    live.version,
                )
        assert live is not None
        self._live = live
        return live

    def live_model(self, session: Session) -> models_store.LiveModel:
        version = models_store.live_version(session=session)
        if self._live is None or self._live.version != version:
            live = models_store.live_model(session=session)
            if live is None:
                raise RuntimeError("no scoring model installed; run `pqlbot db upgrade` and start pqlbot serve")
            self._live = live
        return self._live

    # --- ingest -------------------------------------------------------------------------------

    def ingest(self, events: Sequence[Event]) -> Recorded:
        """Store and score `events`; returns when they are committed (alerts included).

        Group commit: a transaction's fixed cost (the write lock, a dozen set-based statements,
        the commit) dwarfs the cost per event, so batches that arrive while another is being
        written wait and are then written together in one transaction by whichever caller goes
        next. Each caller still returns only once its own events are committed; if a group fails,
        its batches are retried one by one so an error reaches only the caller that caused it.
        The result of a grouped call describes the whole group.
        """
        me = _Waiting(events)
        with self._turn:
            self._waiting.append(me)
            while not me.done and self._writing:
                self._turn.wait()
            if me.done:
                return self._outcome(me)
            self._writing = True
            group: list[_Waiting] = []
            size = 0
            while self._waiting and (not group or size + len(self._waiting[0].events) <= GROUP_EVENTS):
                size += len(self._waiting[0].events)
                group.append(self._waiting.pop(0))
        try:
            self._write_group(group)
        finally:
            with self._turn:
                self._writing = False
                self._turn.notify_all()
        return self._outcome(me)

    @staticmethod
    def _outcome(me: _Waiting) -> Recorded:
        if me.error is not None:
            raise me.error
        assert me.result is not None
        return me.result

    def _write_group(self, group: list[_Waiting]) -> None:
        try:
            rec = self._ingest([ev for w in group for ev in w.events])
        except BaseException as exc:
            if len(group) == 1:
                group[0].error = exc
            else:
                for w in group:
                    try:
                        w.result = self._ingest(w.events)
                    except BaseException as one:
                        w.error = one
        else:
            for w in group:
                w.result = rec
        for w in group:
            w.done = True

    def ingest_quietly(self, events: Sequence[Event]) -> Recorded:
        """Store and score like `ingest`, but post nothing: crossings are recorded as PQLs (in
        /pql top) without alerts, hand-raises are kept without paging (a history backfill)."""
        return self._ingest(events, quiet=True)

    def _ingest(self, events: Sequence[Event], *, quiet: bool = False) -> Recorded:
        now = self.clock()
        alerts = 0
        with self.db.write(scoring=True) as s:
            model = self.live_model(s).model
            rec = record_events(session=s, events=events, model=model, now=now)
            if rec.stored:
                alerts += self._rescore_subjects(s, model, rec.users, rec.accounts, now, quiet=quiet)
                if not quiet:
                    alerts += self._hand_raises(s, model, rec, now)
                self._conversions(s, rec)
        if alerts:
            self.on_alert()
        return rec

    def _rescore_subjects(
        self,
        s: Session,
        model: Model,
        users: Iterable[int],
        accounts: Iterable[int],
        now: datetime,
        *,
        quiet: bool = False,
    ) -> int:
        users, accounts = set(users), set(accounts)
        user_scores = _score(s, model, USER, users, now)
        account_scores = _score(s, model, ACCOUNT, accounts, now)
        facts_store.save_scores(session=s, kind=USER, scores=user_scores)
        facts_store.save_scores(session=s, kind=ACCOUNT, scores=account_scores, now=now)
        member_accounts, lone = leads_store.lead_subjects(session=s, user_ids=users)
        missing = member_accounts - accounts
        if missing:  # a member's account not re-scored in this batch: its score is unchanged
            account_scores.update(_score(s, model, ACCOUNT, missing, now))
        crossed, _ = leads_store.update_leads(
            session=s,
            kind=ACCOUNT,
            now=now,
            scores={a: account_scores[a] for a in accounts | member_accounts if a in account_scores},
            announce=not quiet,
        )
        crossed_u, _ = leads_store.update_leads(
            session=s,
            kind=USER,
            now=now,
            scores={u: user_scores[u] for u in lone if u in user_scores},
            announce=not quiet,
        )
        announced = [t for t in crossed + crossed_u if t.announce]
        for t in announced:
            context = {
                "kind": "pql",
                "lead_id": t.lead_id,
                **summary(session=s, kind=t.kind, subject_id=t.subject_id, model=model, now=now),
            }
            outbox.enqueue(session=s, kind="pql", lead_id=t.lead_id, context=context, now=now)
            log.info("lead %s crossed the threshold with %s", t.lead_id, t.score.total)
        return len(announced)

    def _hand_raises(self, s: Session, model: Model, rec: Recorded, now: datetime) -> int:
        cooldown = timedelta(hours=model.hand_raisers.cooldown_hours)
        sent = 0
        # Latest first: when several hands go up in one batch, the alert is about the latest one.
        for hr in sorted(rec.hand_raises, key=lambda h: h.at, reverse=True):
            if hr.at < now - HAND_RAISE_FRESH:
                continue
            kind, subject = (ACCOUNT, hr.account_id) if hr.account_id is not None else (USER, hr.user_id)
            if leads_store.customers(session=s, kind=kind, ids=[subject]):
                continue
            user = s.get(User, hr.user_id)
            if kind == USER and user is not None and not (user.external_id or user.email):
                # An anonymous visitor on the pricing page is nobody sales can call: the hand-raise
                # is kept and shows once they sign up, but pages no one now.
                continue
            lead_id = leads_store.take_hand_raise(
                session=s, kind=kind, subject_id=subject, at=hr.at, now=now, cooldown=cooldown
            )
            if lead_id is None:
                continue
            context = {
                "kind": "hand_raiser",
                "lead_id": lead_id,
                "what": hr.what,
                "raised_at": hr.at.isoformat(),
                "cooldown_hours": model.hand_raisers.cooldown_hours,
                "who": _who(user),
                **summary(session=s, kind=kind, subject_id=subject, model=model, now=now),
            }
            outbox.enqueue(session=s, kind="hand_raiser", lead_id=lead_id, context=context, now=now)
            log.info("lead %s raised a hand", lead_id)
            sent += 1
        return sent

    def _conversions(self, s: Session, rec: Recorded) -> None:
        for conv in rec.conversions:
            leads_store.mark_converted(session=s, kind=USER, subject_id=conv.user_id, at=conv.at)
            if conv.account_id is not None:
                leads_store.mark_converted(session=s, kind=ACCOUNT, subject_id=conv.account_id, at=conv.at)

    # --- re-scoring ---------------------------------------------------------------------------

    def rescore_all(self, *, now: datetime | None = None, bundle: dict[str, Any] | None = None) -> RescoreResult:
        """Re-score every user and account from stored aggregates, a page per transaction.

        Leads that cross because of a model change are announced in one bundled message
        (`bundle` says what changed and who changed it), not one alert each. Without it (the
        clock-driven re-evaluation), crossings alert one by one as they would from events.
        """
        now = now or self.clock()
        result = RescoreResult()
        for kind in (USER, ACCOUNT):
            after = 0
            while True:
                with self.db.write(scoring=True) as s:
                    model = self.live_model(s).model
                    ids = facts_store.subject_ids(session=s, kind=kind, after=after, limit=RESCORE_PAGE)
                    if not ids:
                        break
                    after = ids[-1]
                    scores = _score(s, model, kind, ids, now)
                    current = facts_store.current_scores(session=s, kind=kind, ids=ids)
                    changed = {i: sc for i, sc in scores.items() if current.get(i) != sc.total}
                    facts_store.save_scores(session=s, kind=kind, scores=scores, now=now)
                    result.changed += len(changed)
                    if kind == USER:
                        result.users += len(ids)
                        lone = facts_store.without_account(session=s, ids=ids)
                        lead_scores = {u: scores[u] for u in lone}
                    else:
                        result.accounts += len(ids)
                        lead_scores = scores
                    crossed, cooled = leads_store.update_leads(session=s, kind=kind, scores=lead_scores, now=now)
                    for t in crossed:
                        item = {**_lead_line(s, t.kind, t.subject_id, t.score), "lead_id": t.lead_id}
                        result.crossed.append(item)
                        if not t.announce:
                            continue
                        if bundle is not None:
                            result.announced.append(item)
                        else:
                            context = {
                                "kind": "pql",
                                "lead_id": t.lead_id,
                                **summary(session=s, kind=t.kind, subject_id=t.subject_id, model=model, now=now),
                            }
                            outbox.enqueue(session=s, kind="pql", lead_id=t.lead_id, context=context, now=now)
                    result.cooled.extend(_lead_line(s, t.kind, t.subject_id, t.score) for t in cooled)
        if bundle is not None and result.announced:
            with self.db.write(scoring=True) as s:
                outbox.enqueue(
                    session=s,
                    kind="bundle",
                    now=now,
                    context={
                        "kind": "bundle",
                        **bundle,
                        "leads": sorted(result.announced, key=lambda r: -int(r["score"])),
                    },
                )
        if result.crossed:
            self.on_alert()
        return result


@dataclass
class Impact:
    """What a model would change for sales: leads newly over the threshold and leads falling
    below it, by kind, with the top few named (highest score first / lowest first)."""

    accounts_cross: int = 0
    users_cross: int = 0
    accounts_fall: int = 0
    users_fall: int = 0
    cross: list[dict[str, Any]] = field(default_factory=list)
    fall: list[dict[str, Any]] = field(default_factory=list)

    def keep(self, shown: int) -> Impact:
        self.cross = sorted(self.cross, key=lambda r: -int(r["score"]))[:shown]
        self.fall = sorted(self.fall, key=lambda r: int(r["score"]))[:shown]
        return self


def preview(db: Database, model: Model, now: datetime, shown: int = 5) -> Impact:
    """Score every lead with `model` from stored aggregates and compare with where it stands now,
    changing nothing. (Only for models that count the same events as the live one.)"""
    impact = Impact()
    for kind in (USER, ACCOUNT):
        after = 0
        while True:
            with db.read() as s:
                ids = facts_store.subject_ids(session=s, kind=kind, after=after, limit=RESCORE_PAGE)
                if not ids:
                    break
                after = ids[-1]
                if kind == USER:
                    ids = sorted(facts_store.without_account(session=s, ids=ids))
                scores = _score(s, model, kind, ids, now)
                leads = leads_store.leads_for(session=s, kind=kind, ids=ids)
                skip = leads_store.customers(session=s, kind=kind, ids=ids)
                for i, sc in scores.items():
                    was = i in leads and leads[i].qualified
                    if sc.qualified and not was and i not in skip:
                        impact.cross.append(_lead_line(s, kind, i, sc))
                        impact.accounts_cross += kind == ACCOUNT
                        impact.users_cross += kind == USER
                    elif was and not sc.qualified:
                        impact.fall.append(_lead_line(s, kind, i, sc))
                        impact.accounts_fall += kind == ACCOUNT
                        impact.users_fall += kind == USER
    return impact.keep(shown)


def _score(s: Session, model: Model, kind: str, ids: Iterable[int], now: datetime) -> dict[int, Score]:
    loaded = facts_store.load_facts(session=s, kind=kind, ids=ids, model=model, now=now)
    return {i: evaluate(model, f, now) for i, f in loaded.items()}


def _who(user: User | None) -> dict[str, Any]:
    if user is None:
        return {"display": "someone", "email": None, "id": None}
    return {
        "display": display_name(user),
        "email": user.email,
        "id": user.external_id or f"#{user.id}",
        "role": user.role,
    }


def _lead_line(s: Session, kind: str, subject_id: int, score: Score) -> dict[str, Any]:
    row = s.get(Account if kind == ACCOUNT else User, subject_id)
    if isinstance(row, Account):
        name = row.name or row.external_id
    else:
        name = display_name(row) if row else f"#{subject_id}"
    return {"kind": "account" if kind == ACCOUNT else "user", "name": name, "score": score.total}
