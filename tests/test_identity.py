"""Identity: an anonymous visitor's history joins the person once they are known, counted once."""

from __future__ import annotations

from sqlalchemy import func, select

from storage import ACCOUNT, USER, Database, queries
from storage.tables import EVENTS, IDENTITIES, USERS
from tests.test_storage import DAY, HOUR, NOW, _event, group, invite, record, score, track


def anon(anonymous_id: str, name: str, **kw: object) -> object:
    return _event("track", anonymous_id=anonymous_id, name=name, **kw)  # type: ignore[arg-type]


def identify(user: str, anonymous_id: str | None = None, at=NOW - HOUR, **traits: object):  # type: ignore[no-untyped-def]
    return _event("identify", user=user, anonymous_id=anonymous_id, at=at, traits=dict(traits))


def alias(previous: str, user: str, at=NOW - HOUR):  # type: ignore[no-untyped-def]
    from scoring import Event

    ev = _event("alias", user=user, at=at)
    return Event(**{**{f: getattr(ev, f) for f in ev.__dataclass_fields__}, "previous_id": previous})


def _count(db: Database, table: object, *where: object) -> int:
    with db.read() as s:
        return int(s.execute(select(func.count()).select_from(table).where(*where)).scalar_one())  # type: ignore[arg-type]


def test_identify_brings_the_anonymous_history_to_the_person(db: Database) -> None:
    record(db, [anon("anon-1", "Project Created", at=NOW - 3 * DAY + i * HOUR) for i in range(3)])
    assert _count(db, USERS) == 1  # the anonymous visitor
    record(db, [identify("u-1", "anon-1", email="ada@x.example")])
    assert _count(db, USERS) == 1  # one person, not two
    result = score(db, USER, "u-1")
    assert [r.id for r in result.fired] == ["projects_created"]
    assert _count(db, EVENTS, EVENTS.c.user_id.is_not(None)) == 4
    with db.read() as s:
        assert queries.find_user(session=s, query="anon-1").external_id == "u-1"  # type: ignore[union-attr]


def test_identify_in_the_same_batch_as_the_anonymous_events(db: Database) -> None:
    record(db, [*[anon("anon-2", "Project Created") for _ in range(3)], identify("u-2", "anon-2", at=NOW)])
    assert _count(db, USERS) == 1
    assert score(db, USER, "u-2").total == 10


def test_identify_and_alias_for_the_same_visitor_count_once(db: Database) -> None:
    record(
        db,
        [
            anon("anon-3", "Invite Sent", properties={"invitee_email": "a@x.example"}),
            anon("anon-3", "Invite Sent", properties={"invitee_email": "b@x.example"}),
            anon("anon-3", "Project Created"),
        ],
    )
    record(db, [identify("u-3", "anon-3")])
    record(db, [alias("anon-3", "u-3")])
    record(db, [identify("u-3", "anon-3")])
    facts = score(db, USER, "u-3")
    measures = {r.id: r.measure for r in facts.breakdown}
    assert measures["teammates_invited"] == 2 and measures["projects_created"] == 1
    assert _count(db, USERS) == 1


def test_the_same_invitee_before_and_after_sign_up_counts_once(db: Database) -> None:
    record(db, [anon("anon-4", "Invite Sent", properties={"invitee_email": "grace@x.example"})])
    record(db, [invite("u-4", "GRACE@x.example"), invite("u-4", "alan@x.example")])
    record(db, [identify("u-4", "anon-4")])
    assert {r.id: r.measure for r in score(db, USER, "u-4").breakdown}["teammates_invited"] == 2


def test_alias_from_a_previous_user_id_merges_and_keeps_the_old_id(db: Database) -> None:
    record(db, [track("old-id", "Integration Activated", properties={"integration": "jira"})])
    record(db, [invite("new-id", "a@x.example"), invite("new-id", "b@x.example")])
    record(db, [alias("old-id", "new-id")])
    assert _count(db, USERS) == 1
    assert score(db, USER, "new-id").total == 45
    record(db, [track("old-id", "Project Created")])  # a late event under the old id
    assert _count(db, USERS) == 1
    assert {r.id: r.measure for r in score(db, USER, "new-id").breakdown}["projects_created"] == 1


def test_two_known_people_on_one_device_are_not_merged(db: Database) -> None:
    record(db, [identify("u-ann", "device-1"), track("u-ann", "Project Created")])
    record(db, [identify("u-bob", "device-1")])
    assert _count(db, USERS) == 2
    assert {r.id: r.measure for r in score(db, USER, "u-ann").breakdown}["projects_created"] == 1
    with db.read() as s:
        owner = s.execute(select(IDENTITIES.c.user_id).where(IDENTITIES.c.anonymous_id == "device-1")).scalar_one()
        ann = s.execute(select(USERS.c.id).where(USERS.c.external_id == "u-ann")).scalar_one()
    assert owner == ann


def test_an_anonymous_member_moves_their_account_facts_with_them(db: Database) -> None:
    record(db, [group("u-x", "acct-x", name="X Corp"), group("u-y", "acct-y", name="Y Corp")])
    record(db, [anon("anon-5", "Integration Activated", group="acct-x", properties={"integration": "slack"})])
    assert score(db, ACCOUNT, "acct-x").total == 20
    record(db, [identify("u-y", "anon-5")])  # the visitor was u-y all along
    assert score(db, ACCOUNT, "acct-x").total == 0
    assert score(db, ACCOUNT, "acct-y").total == 20


def test_an_anonymous_members_account_becomes_the_persons(db: Database) -> None:
    record(db, [anon("anon-6", "Integration Activated", group="acct-z", properties={"integration": "slack"})])
    record(db, [identify("u-6", "anon-6")])
    assert score(db, ACCOUNT, "acct-z").total == 20
    with db.read() as s:
        user = queries.find_user(session=s, query="u-6")
        assert user is not None and user.account_id is not None


# --- through HTTP, with Segment's own client --------------------------------------------------


def test_a_visitor_who_read_pricing_then_signed_up_is_a_hand_raiser(server) -> None:  # type: ignore[no-untyped-def]
    client = server.segment()
    client.page(anonymous_id="anon-web", name="Pricing", properties={"path": "/pricing"})
    client.track(anonymous_id="anon-web", event="Project Created")
    client.flush()
    server.settle()
    assert server.alerts() == []  # nobody to call yet
    client.identify("u-web", {"email": "web@northwind.example", "name": "Wendy Web"}, anonymous_id="anon-web")
    client.group("u-web", "acct-web", {"name": "Webcorp"})
    client.flush()
    alerts = server.wait_alerts(1)
    assert alerts and alerts[0]["text"].startswith("Hand-raiser: Wendy Web")
    assert "Pricing" in alerts[0]["text"]
    out = server.command("score web@northwind.example")
    assert "Created 3+ projects" in out and "1 of 3" in out  # the anonymous project counts
    assert "anonymous" not in server.command("top")


def test_alias_through_http_joins_two_ids(server) -> None:  # type: ignore[no-untyped-def]
    client = server.segment()
    client.track("legacy-42", "Integration Activated", {"integration": "github"})
    client.alias("legacy-42", "u-42")
    client.track("u-42", "Invite Sent", {"invitee_email": "a@x.example"})
    client.track("legacy-42", "Invite Sent", {"invitee_email": "b@x.example"})
    client.flush()
    assert "u-42 scores 45" in server.command("score u-42")
    assert "u-42 scores 45" in server.command("score legacy-42")
    assert len([a for a in server.wait_alerts(1) if a["text"].startswith("PQL")]) == 1
