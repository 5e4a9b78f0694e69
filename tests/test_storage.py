"""Storage on real databases, driven the way the app drives it.

Events go in through `storage.ingest.record_events` in a write transaction; what sales would
see comes out through `storage.facts.load_facts` and `scoring.evaluate`. Every test runs on
SQLite, and on PostgreSQL when PQLBOT_TEST_POSTGRES_URL is set.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, select

from scoring import Event, Facts, Score, default_model, evaluate
from storage import ACCOUNT, USER, Database, queries
from storage import leads as leads_store
from storage.facts import load_facts
from storage.ingest import Recorded, record_events
from storage.tables import EVENTS, USERS, Account, StoredEvent, User

MODEL = default_model()
NOW = datetime(2025, 6, 2, 9, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

_ids = itertools.count(1)


# --- helpers: events as the edge builds them, and what sales would see ------------------------


def _event(
    kind: str,
    *,
    user: str | None = None,
    at: datetime = NOW - HOUR,
    message_id: str | None = None,
    anonymous_id: str | None = None,
    name: str | None = None,
    group: str | None = None,
    properties: dict[str, Any] | None = None,
    traits: dict[str, Any] | None = None,
) -> Event:
    return Event(
        message_id=message_id or f"msg-{next(_ids)}",
        kind=kind,  # type: ignore[arg-type]
        timestamp=at,
        received_at=NOW,
        user_id=user,
        anonymous_id=anonymous_id,
        name=name,
        group_id=group,
        properties=properties or {},
        traits=traits or {},
    )


def track(user: str, name: str, at: datetime = NOW - HOUR, **kw: Any) -> Event:
    return _event("track", user=user, name=name, at=at, **kw)


def invite(user: str, invitee: str | None, at: datetime = NOW - HOUR, **kw: Any) -> Event:
    props = {"invitee_email": invitee} if invitee is not None else {}
    return track(user, "Invite Sent", at, properties=props, **kw)


def integration(user: str, which: str = "github", at: datetime = NOW - HOUR) -> Event:
    return track(user, "Integration Activated", at, properties={"integration": which})


def group(user: str | None, account: str, at: datetime = NOW - 2 * DAY, name: str | None = None, **kw: Any) -> Event:
    return _event("group", user=user, group=account, at=at, traits={"name": name} if name else {}, **kw)


def record(db: Database, events: Sequence[Event], now: datetime = NOW) -> Recorded:
    with db.write() as s:
        return record_events(session=s, events=events, model=MODEL, now=now)


def _user(db: Database, external_id: str) -> User:
    with db.read() as s:
        user = queries.find_user(session=s, query=external_id)
        s.expunge_all()  # keep the loaded row readable after the read transaction ends
    assert user is not None, f"no user {external_id}"
    return user


def _account(db: Database, external_id: str) -> Account:
    with db.read() as s:
        found = queries.find_accounts(session=s, query=external_id)
        s.expunge_all()
    assert found and found[0].external_id == external_id, f"no account {external_id}"
    return found[0]


def facts(db: Database, kind: str, external_id: str, now: datetime = NOW) -> Facts:
    subject = _user(db, external_id) if kind == USER else _account(db, external_id)
    with db.read() as s:
        loaded = load_facts(session=s, kind=kind, ids=[subject.id], model=MODEL, now=now)  # type: ignore[list-item]
    return loaded[subject.id]  # type: ignore[index]


def score(db: Database, kind: str, external_id: str, now: datetime = NOW) -> Score:
    return evaluate(MODEL, facts(db, kind, external_id, now), now)


def measure(db: Database, kind: str, external_id: str, signal_id: str, now: datetime = NOW) -> int:
    return facts(db, kind, external_id, now).measures.get(signal_id, 0)


def fired(s: Score) -> set[str]:
    return {r.id for r in s.fired}


def members(db: Database, external_id: str) -> set[str | None]:
    account = _account(db, external_id)
    with db.read() as s:
        return {u.external_id for u in queries.account_members(session=s, account_id=account.id)}  # type: ignore[arg-type]


# --- idempotency ------------------------------------------------------------------------------


def test_same_message_id_twice_in_one_batch_counts_once(db: Database) -> None:
    first = track("u-ada", "Project Created", message_id="m-p1")
    rec = record(db, [first, track("u-ada", "Project Created", message_id="m-p1"), track("u-ada", "Project Created")])
    assert (rec.stored, rec.duplicates) == (2, 1)
    assert measure(db, USER, "u-ada", "projects_created") == 2
    assert "projects_created" not in fired(score(db, USER, "u-ada"))
    assert _user(db, "u-ada").activity_count == 2


def test_same_message_id_across_batches_counts_once(db: Database) -> None:
    retried = invite("u-ada", None, message_id="m-inv-1")
    assert record(db, [retried]).stored == 1
    rec = record(db, [invite("u-ada", None, message_id="m-inv-1")])
    assert (rec.stored, rec.duplicates) == (0, 1)
    # A retried invite without invitee would otherwise count as a second teammate.
    assert measure(db, USER, "u-ada", "teammates_invited") == 1
    assert score(db, USER, "u-ada").total == 0
    rec = record(db, [invite("u-ada", None, message_id="m-inv-1"), invite("u-ada", None, message_id="m-inv-2")])
    assert (rec.stored, rec.duplicates) == (1, 1)
    assert measure(db, USER, "u-ada", "teammates_invited") == 2
    with db.read() as s:
        stored = s.scalar(select(func.count()).select_from(EVENTS).where(EVENTS.c.message_id == "m-inv-1"))
    assert stored == 1


# --- distinct invitees ------------------------------------------------------------------------


def test_same_invitee_in_different_case_counts_once(db: Database) -> None:
    record(db, [invite("u-ada", "grace@northwind.example")])
    record(db, [invite("u-ada", "  Grace@Northwind.EXAMPLE ")])
    assert measure(db, USER, "u-ada", "teammates_invited") == 1
    assert "teammates_invited" not in fired(score(db, USER, "u-ada"))
    record(db, [invite("u-ada", "alan@northwind.example")])
    assert measure(db, USER, "u-ada", "teammates_invited") == 2
    assert "teammates_invited" in fired(score(db, USER, "u-ada"))


def test_invite_without_invitee_counts_on_its_own(db: Database) -> None:
    record(db, [invite("u-ada", "grace@northwind.example"), invite("u-ada", "GRACE@northwind.example")])
    assert measure(db, USER, "u-ada", "teammates_invited") == 1
    record(db, [invite("u-ada", None)])
    assert measure(db, USER, "u-ada", "teammates_invited") == 2
    assert score(db, USER, "u-ada").total == 25


# --- accounts ---------------------------------------------------------------------------------


def test_two_members_inviting_the_same_teammate_count_once_for_the_account(db: Database) -> None:
    record(db, [group("u-ada", "acct-nw", name="Northwind"), group("u-bob", "acct-nw")])
    record(db, [invite("u-ada", "grace@northwind.example")])
    record(db, [invite("u-bob", "Grace@Northwind.example")])
    assert measure(db, USER, "u-ada", "teammates_invited") == 1
    assert measure(db, USER, "u-bob", "teammates_invited") == 1
    assert measure(db, ACCOUNT, "acct-nw", "teammates_invited") == 1
    assert "teammates_invited" not in fired(score(db, ACCOUNT, "acct-nw"))
    record(db, [invite("u-bob", "alan@northwind.example"), invite("u-ada", "alan@northwind.example")])
    assert measure(db, ACCOUNT, "acct-nw", "teammates_invited") == 2
    assert "teammates_invited" in fired(score(db, ACCOUNT, "acct-nw"))


def test_members_activity_pools_into_one_account_score(db: Database) -> None:
    record(db, [group("u-ada", "acct-nw", name="Northwind"), group("u-bob", "acct-nw")])
    record(db, [integration("u-ada")])
    record(db, [invite("u-bob", "grace@northwind.example"), invite("u-bob", "alan@northwind.example")])
    assert score(db, USER, "u-ada").total == 20
    assert score(db, USER, "u-bob").total == 25
    account = score(db, ACCOUNT, "acct-nw")
    assert fired(account) == {"integration_activated", "teammates_invited"}
    assert account.total == 45
    assert account.qualified
    assert members(db, "acct-nw") == {"u-ada", "u-bob"}


def test_user_who_joins_later_brings_history_and_takes_it_when_moving(db: Database) -> None:
    record(db, [group("u-ada", "acct-nw", at=NOW - 5 * DAY), integration("u-ada", at=NOW - 5 * DAY)])
    carol_history = [
        invite("u-carol", "x@example.com", at=NOW - 4 * DAY),
        invite("u-carol", "y@example.com", at=NOW - 4 * DAY),
        *[track("u-carol", "Core Feature Used", at=NOW - 3 * DAY + i * HOUR) for i in range(5)],
    ]
    record(db, carol_history)
    assert score(db, ACCOUNT, "acct-nw").total == 20

    record(db, [group("u-carol", "acct-nw", at=NOW - 2 * DAY)])
    joined = score(db, ACCOUNT, "acct-nw")
    assert members(db, "acct-nw") == {"u-ada", "u-carol"}
    assert fired(joined) == {"integration_activated", "teammates_invited", "core_feature_habit"}
    assert joined.total == 60
    assert measure(db, ACCOUNT, "acct-nw", "core_feature_habit") == 5

    record(db, [group("u-carol", "acct-other", at=NOW - DAY)])
    assert members(db, "acct-nw") == {"u-ada"}
    assert members(db, "acct-other") == {"u-carol"}
    old = facts(db, ACCOUNT, "acct-nw")
    assert old.measures.get("teammates_invited", 0) == 0
    assert old.measures.get("core_feature_habit", 0) == 0
    assert old.measures.get("integration_activated") == 1
    assert evaluate(MODEL, old, NOW).total == 20
    new = score(db, ACCOUNT, "acct-other")
    assert fired(new) == {"teammates_invited", "core_feature_habit"}
    assert new.total == 40


def test_events_after_joining_count_for_the_account(db: Database) -> None:
    record(db, [group("u-ada", "acct-nw")])
    record(db, [invite("u-ada", "a@x.example"), invite("u-ada", "b@x.example")])
    record(db, [integration("u-ada")])
    assert score(db, ACCOUNT, "acct-nw").total == 45


def test_joining_and_using_in_one_batch_counts_each_event_once(db: Database) -> None:
    record(db, [track("u-ada", "Project Created", at=NOW - 3 * DAY)])
    record(
        db,
        [
            group("u-ada", "acct-nw", at=NOW - 2 * DAY, name="Northwind"),
            track("u-ada", "Project Created", at=NOW - DAY),
            invite("u-ada", "a@x.example", at=NOW - DAY),
            invite("u-ada", None, at=NOW - DAY),
        ],
    )
    account = facts(db, ACCOUNT, "acct-nw")
    assert account.measures.get("projects_created") == 2
    assert account.measures.get("teammates_invited") == 2
    assert evaluate(MODEL, account, NOW).total == 25


def test_context_group_id_on_a_track_call_puts_the_user_in_the_account(db: Database) -> None:
    record(db, [integration("u-dan")])
    record(db, [track("u-dan", "Project Created", group="acct-ctx")])
    assert members(db, "acct-ctx") == {"u-dan"}
    assert _user(db, "u-dan").account_id == _account(db, "acct-ctx").id
    account = facts(db, ACCOUNT, "acct-ctx")
    assert account.measures.get("integration_activated") == 1
    assert account.measures.get("projects_created") == 1


def test_group_call_from_an_unknown_anonymous_id_makes_no_phantom_member(db: Database) -> None:
    with db.read() as s:
        users_before = s.scalar(select(func.count()).select_from(USERS))
    record(db, [group(None, "acct-srv", anonymous_id="anon-server-1", name="Server Side Inc")])
    account = _account(db, "acct-srv")
    assert account.name == "Server Side Inc"
    assert members(db, "acct-srv") == set()
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(USERS)) == users_before
        assert queries.find_user(session=s, query="anon-server-1") is None


# --- traits -----------------------------------------------------------------------------------


def test_latest_trait_by_event_time_wins_even_when_an_older_identify_arrives_later(db: Database) -> None:
    newer = _event(
        "identify",
        user="u-ada",
        at=NOW - HOUR,
        traits={"name": "Ada King", "email": "ada.king@northwind.example"},
    )
    older = _event(
        "identify",
        user="u-ada",
        at=NOW - 3 * DAY,
        traits={"name": "Ada Lovelace", "email": "ada@old.example", "title": "CTO"},
    )
    record(db, [newer])
    record(db, [older])
    user = _user(db, "u-ada")
    assert user.name == "Ada King"
    assert user.email == "ada.king@northwind.example"
    assert user.role == "CTO"  # no newer value for this trait: the older one is all there is


def test_latest_account_name_by_event_time_wins(db: Database) -> None:
    record(db, [group("u-ada", "acct-nw", at=NOW - HOUR, name="Northwind Traders")])
    record(db, [group("u-bob", "acct-nw", at=NOW - 5 * DAY, name="Northwind (old)")])
    assert _account(db, "acct-nw").name == "Northwind Traders"


def test_a_later_identify_with_other_traits_keeps_name_and_email(db: Database) -> None:
    record(db, [_event("identify", user="u-ada", at=NOW - DAY, traits={"name": "Ada", "email": "ada@nw.example"})])
    record(db, [_event("identify", user="u-ada", at=NOW - HOUR, traits={"plan": "pro"})])
    user = _user(db, "u-ada")
    assert (user.name, user.email) == ("Ada", "ada@nw.example")
    assert user.traits == {"name": "Ada", "email": "ada@nw.example", "plan": "pro"}


def test_a_later_group_call_without_a_name_keeps_the_account_name(db: Database) -> None:
    record(db, [group("u-ada", "acct-nw", at=NOW - DAY, name="Northwind Traders")])
    record(db, [_event("group", user="u-ada", group="acct-nw", at=NOW - HOUR, traits={"plan": "pro"})])
    assert _account(db, "acct-nw").name == "Northwind Traders"


# --- the rolling 7-day window -----------------------------------------------------------------


def _core_uses(user: str, *ages: timedelta) -> list[Event]:
    return [track(user, "Core Feature Used", at=NOW - age) for age in ages]


def test_core_use_6_days_23_hours_ago_is_inside_the_window(db: Database) -> None:
    record(db, _core_uses("u-ada", HOUR, HOUR, HOUR, HOUR, 6 * DAY + 23 * HOUR))
    assert measure(db, USER, "u-ada", "core_feature_habit") == 5
    assert fired(score(db, USER, "u-ada")) == {"core_feature_habit"}


def test_core_use_7_days_1_hour_ago_is_outside_the_window(db: Database) -> None:
    record(db, _core_uses("u-ada", HOUR, HOUR, HOUR, HOUR, 7 * DAY + HOUR))
    assert measure(db, USER, "u-ada", "core_feature_habit") == 4
    assert "core_feature_habit" not in fired(score(db, USER, "u-ada"))


def test_window_edge_is_kept_to_the_microsecond(db: Database) -> None:
    record(db, _core_uses("u-ada", HOUR, HOUR, HOUR, HOUR, 7 * DAY - timedelta(microseconds=1)))
    assert measure(db, USER, "u-ada", "core_feature_habit") == 5
    assert measure(db, USER, "u-ada", "core_feature_habit", now=NOW + timedelta(microseconds=1)) == 4


def test_window_slides_with_now_without_new_events(db: Database) -> None:
    record(db, [group("u-ada", "acct-nw")])
    record(db, _core_uses("u-ada", HOUR, HOUR, HOUR, HOUR, 6 * DAY + 23 * HOUR))
    assert "core_feature_habit" in fired(score(db, USER, "u-ada"))
    assert "core_feature_habit" in fired(score(db, ACCOUNT, "acct-nw"))
    later = NOW + 2 * HOUR
    assert measure(db, USER, "u-ada", "core_feature_habit", now=later) == 4
    assert "core_feature_habit" not in fired(score(db, USER, "u-ada", now=later))
    assert "core_feature_habit" not in fired(score(db, ACCOUNT, "acct-nw", now=later))


# --- timestamps -------------------------------------------------------------------------------


def test_instants_come_back_as_the_same_utc_instant_with_microseconds(db: Database) -> None:
    at = datetime(2025, 5, 30, 23, 59, 58, 123456, tzinfo=UTC)
    offset = datetime(2025, 5, 31, 5, 15, 0, 654321, tzinfo=timezone(timedelta(hours=2)))  # 03:15 UTC
    record(db, [track("u-ada", "Project Created", at=at, message_id="m-time-1")])
    record(db, [track("u-ada", "Project Created", at=offset, message_id="m-time-2")])
    with db.read() as s:
        stored = {e.message_id: e for e in s.scalars(select(StoredEvent))}
        s.expunge_all()
    first = stored["m-time-1"].occurred_at
    assert first == at
    assert first.utcoffset() == timedelta(0)
    assert first.microsecond == 123456
    second = stored["m-time-2"].occurred_at
    assert second == offset
    assert second.utcoffset() == timedelta(0)
    assert (second.hour, second.microsecond) == (3, 654321)

    user = _user(db, "u-ada")
    assert user.last_active_at == offset
    assert user.last_active_at is not None and user.last_active_at.utcoffset() == timedelta(0)
    assert user.first_seen_at == at
    assert facts(db, USER, "u-ada").last_active_at == offset


def test_last_active_is_the_latest_event_not_the_last_to_arrive(db: Database) -> None:
    latest = NOW - 2 * DAY + timedelta(microseconds=7)
    record(db, [track("u-ada", "Project Created", at=latest)])
    record(db, [track("u-ada", "Project Created", at=NOW - 20 * DAY)])  # a late, old event
    assert _user(db, "u-ada").last_active_at == latest
    assert "inactive_14d" not in fired(score(db, USER, "u-ada"))
    assert "inactive_14d" in fired(score(db, USER, "u-ada", now=latest + 14 * DAY))


# --- lead state -------------------------------------------------------------------------------


def _update_leads(db: Database, kind: str, subject_id: int, s: Score, now: datetime) -> tuple[int, int]:
    with db.write() as session:
        crossed, cooled = leads_store.update_leads(session=session, kind=kind, scores={subject_id: s}, now=now)
    return len(crossed), len(cooled)


def _lead(db: Database, kind: str, subject_id: int) -> Any:
    with db.read() as s:
        lead = leads_store.lead_of_subject(session=s, kind=kind, subject_id=subject_id)
        s.expunge_all()
    return lead


def test_a_lead_crosses_once_cools_and_crosses_again(db: Database) -> None:
    record(db, [invite("u-ada", "a@x.example"), invite("u-ada", "b@x.example"), integration("u-ada")])
    uid = _user(db, "u-ada").id
    assert uid is not None
    pql = score(db, USER, "u-ada")
    assert pql.total == 45

    assert _update_leads(db, USER, uid, pql, NOW) == (1, 0)
    assert _update_leads(db, USER, uid, pql, NOW + HOUR) == (0, 0)  # still qualified: no second alert
    lead = _lead(db, USER, uid)
    assert lead.qualified and lead.qualified_at == NOW and lead.score_at_alert == 45

    quiet_at = NOW + 15 * DAY  # two weeks of silence: -15
    quiet = score(db, USER, "u-ada", now=quiet_at)
    assert quiet.total == 30
    assert _update_leads(db, USER, uid, quiet, quiet_at) == (0, 1)
    assert _update_leads(db, USER, uid, quiet, quiet_at + HOUR) == (0, 0)
    lead = _lead(db, USER, uid)
    assert not lead.qualified and lead.cooled_at == quiet_at

    back_at = quiet_at + DAY
    record(db, _core_uses_at("u-ada", back_at, 5), now=back_at)
    back = score(db, USER, "u-ada", now=back_at)
    assert back.total == 60
    assert _update_leads(db, USER, uid, back, back_at) == (1, 0)
    lead = _lead(db, USER, uid)
    assert lead.qualified and lead.qualified_at == back_at and lead.score_at_alert == 60


def _core_uses_at(user: str, when: datetime, n: int) -> list[Event]:
    return [track(user, "Core Feature Used", at=when - (i + 1) * HOUR) for i in range(n)]


def test_a_score_below_the_threshold_makes_no_crossing(db: Database) -> None:
    record(db, [invite("u-ada", "a@x.example"), invite("u-ada", "b@x.example")])
    uid = _user(db, "u-ada").id
    assert uid is not None
    assert _update_leads(db, USER, uid, score(db, USER, "u-ada"), NOW) == (0, 0)


def _qualified_account_lead(db: Database) -> int:
    record(db, [group("u-ada", "acct-nw"), integration("u-ada")])
    record(db, [invite("u-ada", "a@x.example"), invite("u-ada", "b@x.example")])
    account_id = _account(db, "acct-nw").id
    assert account_id is not None
    assert _update_leads(db, ACCOUNT, account_id, score(db, ACCOUNT, "acct-nw"), NOW) == (1, 0)
    lead = _lead(db, ACCOUNT, account_id)
    assert lead is not None
    return int(lead.id)


def test_claim_has_exactly_one_winner(db: Database) -> None:
    lead_id = _qualified_account_lead(db)
    with db.write() as s:
        first = leads_store.claim(session=s, lead_id=lead_id, user="UREP0001", now=NOW)
    with db.write() as s:
        second = leads_store.claim(session=s, lead_id=lead_id, user="UREP0002", now=NOW + HOUR)
    assert first is not None and second is not None
    assert first.won and not second.won
    assert second.lead.claimed_by == "UREP0001"  # the loser is told who holds it
    lead = _lead(db, ACCOUNT, _account(db, "acct-nw").id)  # type: ignore[arg-type]
    assert (lead.claimed_by, lead.claimed_at) == ("UREP0001", NOW)


def test_claim_at_the_same_time_has_exactly_one_winner(db: Database) -> None:
    lead_id = _qualified_account_lead(db)
    start = threading.Barrier(2)
    results: dict[str, Any] = {}

    def press(user: str) -> None:
        start.wait(timeout=10)
        with db.write() as s:
            res = leads_store.claim(session=s, lead_id=lead_id, user=user, now=NOW)
            results[user] = (res.won, res.lead.claimed_by) if res else None

    threads = [threading.Thread(target=press, args=(u,)) for u in ("UREP0001", "UREP0002")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert set(results) == {"UREP0001", "UREP0002"}
    winners = [u for u, (won, _) in results.items() if won]
    assert len(winners) == 1
    assert {holder for _, holder in results.values()} == {winners[0]}


def test_claim_of_a_missing_lead_is_none(db: Database) -> None:
    with db.write() as s:
        assert leads_store.claim(session=s, lead_id=987654, user="UREP0001", now=NOW) is None


def test_hand_raise_alerts_once_within_the_cooldown_and_again_after(db: Database) -> None:
    record(db, [group("u-ada", "acct-nw")])
    account_id = _account(db, "acct-nw").id
    assert account_id is not None
    cooldown = timedelta(hours=MODEL.hand_raisers.cooldown_hours)
    assert cooldown == timedelta(hours=24)

    def take(now: datetime) -> int | None:
        with db.write() as s:
            return leads_store.take_hand_raise(
                session=s, kind=ACCOUNT, subject_id=account_id, at=now, now=now, cooldown=cooldown
            )

    first = take(NOW)
    assert first is not None
    assert take(NOW) is None
    assert take(NOW + HOUR) is None
    assert take(NOW + 23 * HOUR + 59 * timedelta(minutes=1)) is None
    again = take(NOW + 24 * HOUR + timedelta(minutes=1))
    assert again == first  # the same lead, alerted again
    assert take(NOW + 25 * HOUR) is None
    lead = _lead(db, ACCOUNT, account_id)
    assert lead.hand_raise_alerted_at == NOW + 24 * HOUR + timedelta(minutes=1)
    assert lead.hand_raised_at == NOW + 25 * HOUR


def test_hand_raise_recorded_by_ingest_for_the_users_account(db: Database) -> None:
    record(db, [group("u-ada", "acct-nw")])
    page = _event("page", user="u-ada", name="Pricing", at=NOW - HOUR)
    rec = record(db, [page, track("u-ada", "Billing Settings Viewed", at=NOW - 2 * HOUR)])
    account = _account(db, "acct-nw")
    assert [(hr.account_id, hr.at) for hr in sorted(rec.hand_raises, key=lambda h: h.at)] == [
        (account.id, NOW - 2 * HOUR),
        (account.id, NOW - HOUR),
    ]
    user = _user(db, "u-ada")
    assert user.hand_raised_at == NOW - HOUR
    assert user.hand_raised_what is not None and "Pricing" in user.hand_raised_what
