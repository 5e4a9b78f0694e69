"""Aggregates rebuilt from stored events equal those kept incrementally, and follow a new model."""

from __future__ import annotations

from sqlalchemy import select

from scoring import Score, evaluate
from scoring.model import model_from_dict, model_to_dict
from storage import ACCOUNT, USER, Database
from storage.facts import load_facts
from storage.rebuild import rebuild_facts
from storage.tables import FACTS, HITS, VALUES, pk
from tests.test_storage import (
    DAY,
    MODEL,
    NOW,
    _account,
    _event,
    _user,
    group,
    integration,
    invite,
    record,
    score,
    track,
)


def _snapshot(db: Database) -> tuple[list[tuple], list[tuple], list[tuple]]:  # type: ignore[type-arg]
    with db.read() as s:
        facts = sorted(tuple(r) for r in s.execute(select(FACTS)))
        values = sorted(tuple(r) for r in s.execute(select(VALUES)))
        hits = sorted(
            (r.subject_kind, r.subject_id, r.signal_id, r.occurred_at, r.value) for r in s.execute(select(HITS))
        )
    return facts, values, hits


def _history(db: Database) -> None:
    record(db, [group("u-a", "acct-1", name="One"), group("u-b", "acct-1"), group("u-c", "acct-2")])
    record(
        db,
        [
            invite("u-a", "x@one.example"),
            invite("u-b", "X@one.example"),
            invite("u-b", None),
            integration("u-c", "jira"),
            *[track("u-a", "Core Feature Used", at=NOW - i * DAY) for i in range(9)],
            _event("page", user="u-c", name="Docs", properties={"path": "/docs/start"}),
            track("u-c", "Report Exported"),
            track("u-c", "Report Exported"),
        ],
    )
    record(db, [group("u-a", "acct-2")])  # a move: acct-1 and acct-2 were rebuilt from members


def test_rebuilding_from_events_changes_nothing(db: Database) -> None:
    _history(db)
    before = _snapshot(db)
    with db.write(scoring=True) as s:
        assert rebuild_facts(session=s, model=MODEL) > 0
    assert _snapshot(db) == before


def test_a_new_signal_counts_the_history_already_stored(db: Database) -> None:
    _history(db)
    data = model_to_dict(MODEL)
    data["signals"].append(
        {"id": "reports", "label": "Exported reports", "events": ["Report Exported"], "min_count": 2, "points": 30}
    )
    data["signals"].append({"id": "docs", "label": "Read the docs", "paths": ["/docs"], "points": 5})
    model = model_from_dict(data)
    with db.write(scoring=True) as s:
        rebuild_facts(session=s, model=model)

    def scored(kind: str, external_id: str) -> Score:
        subject = _user(db, external_id) if kind == USER else _account(db, external_id)
        with db.read() as s:
            loaded = load_facts(session=s, kind=kind, ids=[pk(subject)], model=model, now=NOW)
        return evaluate(model, loaded[pk(subject)], NOW)

    assert {"reports", "docs", "integration_activated"} <= {r.id for r in scored(USER, "u-c").fired}
    assert scored(ACCOUNT, "acct-2").total == score(db, ACCOUNT, "acct-2").total + 35
