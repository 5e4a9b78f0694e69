"""The scorecard as sales sees it: which signals fire, the total, who raised a hand, whom to call.

Pure unit tests: no database and no clock (every call is given `now`).
"""

from __future__ import annotations

import ast
import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from scoring import (
    Event,
    Facts,
    Score,
    crossed,
    default_model,
    evaluate,
    hand_raiser,
    is_activity,
    is_conversion,
    signal_hits,
)
from scoring.contact import Member, choose_contact
from scoring.model import Model, ModelError, dump_model, load_model, model_from_dict, model_to_dict

NOW = datetime(2025, 6, 2, 9, 30, tzinfo=UTC)
MODEL = default_model()
ROOT = Path(__file__).resolve().parent.parent


# --- helpers ----------------------------------------------------------------------------------


def _score(last_active_at: datetime | None = NOW, model: Model = MODEL, **measures: int) -> Score:
    return _score_of(measures, last_active_at, model)


def _score_of(measures: dict[str, int], last_active_at: datetime | None = NOW, model: Model = MODEL) -> Score:
    return evaluate(model, Facts(measures=measures, last_active_at=last_active_at), NOW)


def _fired(score: Score) -> set[str]:
    return {r.id for r in score.fired}


def _event(kind: str = "track", **kw: Any) -> Event:
    kw.setdefault("user_id", "u-ada")
    return Event(message_id="m-1", kind=kind, timestamp=NOW, received_at=NOW, **kw)  # type: ignore[arg-type]


def _page(name: str | None = None, path: str | None = None, url: str | None = None, kind: str = "page") -> Event:
    """A page/screen call as the Segment edge builds it: `path` copied from properties.path."""
    props: dict[str, Any] = {}
    if path is not None:
        props["path"] = path
    if url is not None:
        props["url"] = url
    return _event(kind, name=name, path=path, properties=props)


def _default_dict() -> dict[str, Any]:
    return copy.deepcopy(model_to_dict(MODEL))


def _with_points(signal_id: str, points: int) -> Model:
    data = _default_dict()
    for s in data["signals"]:
        if s["id"] == signal_id:
            s["points"] = points
    return model_from_dict(data)


# --- the default model is the contract's scorecard --------------------------------------------


def test_default_model_matches_the_contract_table() -> None:
    signals = {s.id: s for s in MODEL.signals}
    assert list(signals) == [
        "teammates_invited",
        "integration_activated",
        "core_feature_habit",
        "projects_created",
        "inactive_14d",
    ]
    table = {
        # id: (events, min_count, window_days, points)
        "teammates_invited": (("Invite Sent",), 2, None, 25),
        "integration_activated": (("Integration Activated",), 1, None, 20),
        "core_feature_habit": (("Core Feature Used",), 5, 7, 15),
        "projects_created": (("Project Created",), 3, None, 10),
    }
    for sid, (events, min_count, window, points) in table.items():
        s = signals[sid]
        assert (s.events, s.min_count, s.window_days, s.points) == (events, min_count, window, points), sid
        assert s.inactive_days is None
    # "distinct invitees where the event names one"
    assert signals["teammates_invited"].distinct_property == "invitee_email"
    idle = signals["inactive_14d"]
    assert (idle.inactive_days, idle.points, idle.events) == (14, -15, ())
    assert MODEL.threshold == 45
    assert set(MODEL.hand_raisers.events) == {"Upgrade Page Viewed", "Billing Settings Viewed"}
    assert set(MODEL.hand_raisers.pages) == {"Upgrade", "Pricing", "Billing"}
    assert set(MODEL.hand_raisers.paths) == {"/upgrade", "/billing"}
    assert MODEL.conversions.events == ("Subscription Started",)


def test_two_invites_and_an_integration_make_a_pql() -> None:
    score = _score(teammates_invited=2, integration_activated=1)
    assert score.total == 45
    assert score.qualified
    assert _fired(score) == {"teammates_invited", "integration_activated"}


# --- each rule at its edge --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signal_id", "below", "at", "points"),
    [
        ("teammates_invited", 1, 2, 25),
        ("integration_activated", 0, 1, 20),
        ("core_feature_habit", 4, 5, 15),
        ("projects_created", 2, 3, 10),
    ],
)
def test_count_signal_fires_from_its_minimum(signal_id: str, below: int, at: int, points: int) -> None:
    under = _score_of({signal_id: below})
    assert signal_id not in _fired(under)
    assert under.total == 0
    reached = _score_of({signal_id: at})
    assert _fired(reached) == {signal_id}
    assert reached.total == points
    assert _score_of({signal_id: at + 10}).total == points  # points once, however far past the minimum


def test_breakdown_says_how_far_each_signal_is_from_firing() -> None:
    score = _score(teammates_invited=1, core_feature_habit=4)
    rows = {r.id: r for r in score.breakdown}
    assert [r.id for r in score.breakdown] == [s.id for s in MODEL.signals]
    assert (rows["teammates_invited"].measure, rows["teammates_invited"].needed) == (1, 2)
    assert (rows["core_feature_habit"].measure, rows["core_feature_habit"].needed) == (4, 5)
    assert rows["teammates_invited"].label == "Invited 2+ teammates"
    assert not any(r.fired for r in score.breakdown)


@pytest.mark.parametrize(
    ("idle", "fires"),
    [
        (timedelta(days=13), False),
        (timedelta(days=14) - timedelta(microseconds=1), False),
        (timedelta(days=14), True),
        (timedelta(days=15), True),
    ],
)
def test_inactive_14d_fires_from_exactly_14_days_idle(idle: timedelta, fires: bool) -> None:
    score = _score(last_active_at=NOW - idle)
    assert ("inactive_14d" in _fired(score)) is fires
    assert score.total == (-15 if fires else 0)


def test_inactive_14d_does_not_fire_for_someone_never_seen_active() -> None:
    score = _score(last_active_at=None)
    assert "inactive_14d" not in _fired(score)
    assert score.total == 0


def test_inactivity_breakdown_reports_idle_days() -> None:
    row = next(r for r in _score(last_active_at=NOW - timedelta(days=15, hours=3)).breakdown if r.id == "inactive_14d")
    assert (row.fired, row.measure, row.needed, row.points) == (True, 15, 14, -15)


@pytest.mark.parametrize(
    ("measures", "idle_days", "total"),
    [
        ({}, 0, 0),
        ({"teammates_invited": 2, "integration_activated": 1}, 15, 30),
        ({"core_feature_habit": 5, "projects_created": 3}, 0, 25),
        ({"projects_created": 3}, 20, -5),
        (
            {"teammates_invited": 2, "integration_activated": 1, "core_feature_habit": 5, "projects_created": 3},
            14,
            55,
        ),
        (
            {"teammates_invited": 2, "integration_activated": 1, "core_feature_habit": 5, "projects_created": 3},
            0,
            70,
        ),
    ],
)
def test_total_is_the_sum_of_fired_points_including_negative(
    measures: dict[str, int], idle_days: int, total: int
) -> None:
    score = _score_of(measures, NOW - timedelta(days=idle_days))
    assert score.total == total
    assert score.total == sum(r.points for r in score.fired)


def test_a_pql_that_goes_quiet_drops_below_the_threshold() -> None:
    active = _score(last_active_at=NOW - timedelta(days=13), teammates_invited=2, integration_activated=1)
    quiet = _score(last_active_at=NOW - timedelta(days=14), teammates_invited=2, integration_activated=1)
    assert active.qualified
    assert not quiet.qualified
    assert quiet.total == 30


@pytest.mark.parametrize(("integration_points", "qualified"), [(19, False), (20, True)])
def test_threshold_is_inclusive(integration_points: int, qualified: bool) -> None:
    model = _with_points("integration_activated", integration_points)
    score = _score(model=model, teammates_invited=2, integration_activated=1)
    assert score.total == 25 + integration_points  # 44 or 45
    assert score.threshold == 45
    assert score.qualified is qualified


def test_score_qualifies_at_the_threshold_not_below() -> None:
    assert not Score(total=44, breakdown=(), threshold=45).qualified
    assert Score(total=45, breakdown=(), threshold=45).qualified


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        (None, 45, True),  # a first score that is already a PQL
        (None, 44, False),
        (44, 45, True),
        (0, 70, True),
        (45, 46, False),  # already over: no second alert
        (45, 45, False),
        (50, 44, False),  # cooling is not crossing
        (30, 44, False),
    ],
)
def test_crossed_only_when_reaching_threshold_from_below(previous: int | None, current: int, expected: bool) -> None:
    assert crossed(previous, current, 45) is expected


# --- hand-raisers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "mentions"),
    [
        (_event(name="Upgrade Page Viewed"), "Upgrade Page Viewed"),
        (_event(name="Billing Settings Viewed"), "Billing Settings Viewed"),
        (_event(name="  billing   settings VIEWED "), "billing"),
        (_event(name="upgrade page viewed"), "upgrade page viewed"),
        (_page(name="Upgrade"), "Upgrade"),
        (_page(name="Pricing", path="/pricing"), "/pricing"),
        (_page(name="billing"), "billing"),
        (_page(name=" PRICING "), "PRICING"),
        (_page(path="/upgrade"), "/upgrade"),
        (_page(path="/billing/invoices"), "/billing/invoices"),
        (_page(name="Plans", path="/upgrade/plans"), "/upgrade/plans"),
        (_page(url="https://app.example.com/billing/invoices?tab=2#x"), "/billing/invoices"),
        (_page(url="https://app.example.com/upgrade"), "/upgrade"),
        (_page(name="Pricing", kind="screen"), "Pricing"),
        (_page(path="/billing", kind="screen"), "/billing"),
    ],
)
def test_hand_raiser_is_recognised_and_says_what_was_opened(event: Event, mentions: str) -> None:
    what = hand_raiser(MODEL, event)
    assert what is not None
    assert mentions in what


@pytest.mark.parametrize(
    "event",
    [
        _event(name="Invite Sent"),
        _event(name="Pricing"),  # a track event named like a page is not a page call
        _event(name="Upgrade Page"),
        _page(name="Dashboard", path="/dashboard"),
        _page(path="/settings/billing"),  # /billing must be the start of the path
        _page(url="https://billing.example.com/home"),
        _page(url="https://app.example.com/docs?next=/upgrade"),
        _page(),
        _event("identify", traits={"name": "Upgrade", "path": "/upgrade"}),
        _event("group", group_id="acct-1", traits={"name": "Billing"}),
    ],
)
def test_not_a_hand_raiser(event: Event) -> None:
    assert hand_raiser(MODEL, event) is None


def test_hand_raiser_list_comes_from_the_model() -> None:
    data = _default_dict()
    data["hand_raisers"] = {"events": ["Talk To Sales Clicked"], "pages": [], "paths": ["/contact-sales"]}
    model = model_from_dict(data)
    assert hand_raiser(model, _event(name="talk to sales clicked")) == "talk to sales clicked"
    assert hand_raiser(model, _page(path="/contact-sales/form")) is not None
    assert hand_raiser(model, _event(name="Upgrade Page Viewed")) is None
    assert hand_raiser(model, _page(name="Pricing")) is None


# --- which signals an event feeds -------------------------------------------------------------


def _hits(event: Event, model: Model = MODEL) -> list[tuple[str, str | None]]:
    return [(h.signal.id, h.value) for h in signal_hits(model, event)]


def test_track_event_names_match_case_and_whitespace_insensitively() -> None:
    assert _hits(_event(name="  core   FEATURE used ")) == [("core_feature_habit", None)]
    assert _hits(_event(name="Project Created")) == [("projects_created", None)]
    assert _hits(_event(name="Core Feature Used Twice")) == []


def test_distinct_values_are_normalised_so_one_invitee_counts_once() -> None:
    a = _hits(_event(name="Invite Sent", properties={"invitee_email": "  Grace@Northwind.EXAMPLE "}))
    b = _hits(_event(name="Invite Sent", properties={"invitee_email": "grace@northwind.example"}))
    assert a == b == [("teammates_invited", "grace@northwind.example")]
    spaced = _hits(_event(name="Integration Activated", properties={"integration": " Google   Drive\t"}))
    assert spaced == [("integration_activated", "google drive")]


@pytest.mark.parametrize("props", [{}, {"invitee_email": None}, {"invitee_email": "   "}, {"other": "x@y.z"}])
def test_event_lacking_the_distinct_property_has_no_value(props: dict[str, Any]) -> None:
    assert _hits(_event(name="Invite Sent", properties=props)) == [("teammates_invited", None)]


@pytest.mark.parametrize(
    "event",
    [
        _event("identify", traits={"email": "ada@northwind.example"}),
        _event("group", group_id="acct-1", traits={"name": "Northwind"}),
        _event("alias", previous_id="anon-1"),
        _page(name="Invite Sent"),  # the default model's signals are track events only
    ],
)
def test_profile_calls_and_unmatched_pages_feed_no_signal(event: Event) -> None:
    assert _hits(event) == []


_PAGE_MODEL = """
threshold: 10
signals:
  - id: reports_viewed
    label: Looked at reports
    pages: [Reports]
    paths: [/reports]
    distinct_property: report
    points: 10
  - id: team_settings
    label: Opened team settings
    paths: [/settings/team]
    points: 5
"""


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (_page(name="reports"), [("reports_viewed", None)]),
        (_page(name=" REPORTS ", kind="screen"), [("reports_viewed", None)]),
        (_page(path="/reports/weekly"), [("reports_viewed", None)]),
        (_page(url="https://app.example.com/Reports/weekly?x=1"), [("reports_viewed", None)]),
        (_page(name="Reports", path="/reports"), [("reports_viewed", None)]),  # once, not twice
        (_page(path="/settings/team/members"), [("team_settings", None)]),
        (_page(path="/report"), []),
        (_page(path="/settings"), []),
        (_event(name="Reports"), []),  # a track call does not match a pages signal
    ],
)
def test_page_and_path_signals_of_a_custom_model(event: Event, expected: list[tuple[str, str | None]]) -> None:
    assert _hits(event, load_model(_PAGE_MODEL)) == expected


def test_page_signal_counts_distinct_property_values() -> None:
    event = replace(_page(name="Reports"), properties={"report": " Churn  BY Month"})
    assert _hits(event, load_model(_PAGE_MODEL)) == [("reports_viewed", "churn by month")]


def test_is_activity_only_for_product_use() -> None:
    assert is_activity(_event(name="Anything"))
    assert is_activity(_page(name="Home"))
    assert is_activity(_page(name="Home", kind="screen"))
    assert not is_activity(_event("identify", traits={"name": "Ada"}))
    assert not is_activity(_event("group", group_id="acct-1"))
    assert not is_activity(_event("alias", previous_id="anon-1"))


@pytest.mark.parametrize(
    ("event", "converts"),
    [
        (_event(name="Subscription Started"), True),
        (_event(name="  subscription   STARTED "), True),
        (_event(name="Subscription Cancelled"), False),
        (_event(name="Trial Started"), False),
        (_page(name="Subscription Started"), False),
        (_event("identify", traits={"plan": "Subscription Started"}), False),
    ],
)
def test_is_conversion(event: Event, converts: bool) -> None:
    assert is_conversion(MODEL, event) is converts


# --- loading, validating and exporting models -------------------------------------------------


def _problems(mutate: Any) -> list[str]:
    data = _default_dict()
    mutate(data)
    with pytest.raises(ModelError) as exc:
        model_from_dict(data)
    return exc.value.problems


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda d: d["signals"][0].update(colour="red"), "signals[0].colour: unknown key"),
        (lambda d: d.update(colour="red"), "colour: unknown key"),
        (lambda d: d["hand_raisers"].update(evnts=["X"]), "hand_raisers.evnts: unknown key"),
        (lambda d: d["signals"][1].update(points="20"), "signals[1].points: "),
        (lambda d: d["signals"][2].update(points=True), "signals[2].points: "),
        (lambda d: d.update(threshold="45"), "threshold: "),
        (lambda d: d.pop("threshold"), "threshold: is required"),
        (lambda d: d["signals"][1].update(id="teammates_invited"), "signals[1].id: duplicate signal id"),
        (lambda d: d["signals"][3].update(events=[]), "signals[3]: "),
    ],
    ids=[
        "unknown-signal-key",
        "unknown-top-key",
        "unknown-hand-raiser-key",
        "string-points",
        "bool-points",
        "string-threshold",
        "missing-threshold",
        "duplicate-id",
        "empty-events",
    ],
)
def test_bad_model_is_refused_naming_the_field(mutate: Any, problem: str) -> None:
    problems = _problems(mutate)
    assert len(problems) == 1, problems
    assert problems[0].startswith(problem), problems


def test_empty_event_list_problem_says_so() -> None:
    (problem,) = _problems(lambda d: d["signals"][0].update(events=[]))
    assert problem.startswith("signals[0]: ")
    assert "empty" in problem


def test_every_problem_of_a_bad_model_is_listed_at_once() -> None:
    def break_four_ways(d: dict[str, Any]) -> None:
        d["signals"][0]["colour"] = "red"
        d["signals"][1]["points"] = "20"
        d["signals"][2]["points"] = True
        d["signals"][3]["events"] = []

    problems = _problems(break_four_ways)
    assert len(problems) == 4, problems
    assert problems[0] == "signals[0].colour: unknown key"
    assert problems[1].startswith("signals[1].points: ")
    assert problems[2].startswith("signals[2].points: ")
    assert problems[3].startswith("signals[3]: ")


def test_duplicate_id_is_listed_together_with_other_problems() -> None:
    def break_two_ways(d: dict[str, Any]) -> None:
        d["signals"][0]["points"] = "25"
        d["signals"][2]["id"] = "teammates_invited"

    problems = _problems(break_two_ways)
    assert any(p.startswith("signals[0].points: ") for p in problems), problems
    assert any(p.startswith("signals[2].id: duplicate signal id") for p in problems), problems


def test_model_error_message_carries_every_problem() -> None:
    with pytest.raises(ModelError) as exc:
        model_from_dict({"threshold": 45, "signals": [], "colour": 1, "format": 1, "hand_raisers": {"x": 1}})
    assert set(exc.value.problems) == {
        "colour: unknown key",
        "hand_raisers.x: unknown key",
        "signals: no signal has positive points, so no one could ever become a PQL",
    }
    for p in exc.value.problems:
        assert p in str(exc.value)
    assert isinstance(exc.value, ValueError)


@pytest.mark.parametrize(
    "text",
    [
        "threshold: 45\nsignals: [\n  - id: x\n",
        "threshold: [45\n",
        "signals:\n  - id: a\n   label: b\n",
        "threshold: 45\n\tsignals: []\n",
    ],
)
def test_invalid_yaml_is_refused_with_its_position(text: str) -> None:
    with pytest.raises(ModelError) as exc:
        load_model(text)
    (problem,) = exc.value.problems
    assert problem.startswith("(model): not valid YAML at line ")


@pytest.mark.parametrize("text", ["", "just a string", "- threshold: 45\n", "45"])
def test_yaml_that_is_not_a_model_document_is_refused(text: str) -> None:
    with pytest.raises(ModelError) as exc:
        load_model(text)
    assert exc.value.problems == ["(model): must be a mapping with threshold and signals"]


_CUSTOM_MODEL = """
format: 1
threshold: 60
signals:
  - id: reports_viewed
    label: Looked at reports
    pages: [Reports, Dashboards]
    paths: [/reports]
    distinct_property: report
    min_count: 4
    window_days: 30
    points: 30
  - id: invited
    label: Invited someone
    events: [Invite Sent, Teammate Invited]
    points: 35
  - id: gone_quiet
    label: Quiet for a month
    inactive_days: 30
    points: -40
hand_raisers:
  events: [Talk To Sales Clicked]
  pages: [Pricing]
  paths: [/contact]
  cooldown_hours: 0
conversions:
  events: [Order Completed, Subscription Started]
"""


@pytest.mark.parametrize("model", [MODEL, load_model(_CUSTOM_MODEL)], ids=["default", "custom"])
def test_export_then_import_is_lossless(model: Model) -> None:
    text = dump_model(model)
    again = load_model(text)
    assert again == model
    assert model_to_dict(again) == model_to_dict(model)
    assert again.matching_key() == model.matching_key()
    assert dump_model(again) == text
    # and it scores identically
    facts = Facts(measures={s.id: 3 for s in model.signals}, last_active_at=NOW - timedelta(days=40))
    assert evaluate(again, facts, NOW) == evaluate(model, facts, NOW)


def test_exported_model_keeps_every_setting() -> None:
    again = load_model(dump_model(load_model(_CUSTOM_MODEL)))
    reports = again.signal("reports_viewed")
    assert reports is not None
    assert (reports.pages, reports.paths, reports.distinct_property) == (
        ("Reports", "Dashboards"),
        ("/reports",),
        "report",
    )
    assert (reports.min_count, reports.window_days, reports.points) == (4, 30, 30)
    quiet = again.signal("gone_quiet")
    assert quiet is not None and (quiet.inactive_days, quiet.points) == (30, -40)
    assert again.hand_raisers.cooldown_hours == 0
    assert again.hand_raisers.paths == ("/contact",)
    assert again.conversions.events == ("Order Completed", "Subscription Started")
    assert again.threshold == 60


# --- whom to contact --------------------------------------------------------------------------


def _member(user_id: str, activity: int = 1, **kw: Any) -> Member:
    return Member(
        user_id=user_id,
        display=user_id.title(),
        score=kw.pop("score", 0),
        activity_count=activity,
        last_active_at=kw.pop("last_active_at", NOW - timedelta(days=1)),
        **kw,
    )


def test_hand_raiser_beats_buyer_role_and_most_active() -> None:
    members = [
        _member("owner", activity=5, role="Owner"),
        _member("raiser", activity=1, hand_raised_at=NOW - timedelta(hours=2), hand_raised_what="Pricing page"),
        _member("power", activity=90, score=40),
    ]
    contact = choose_contact(members)
    assert contact is not None
    assert contact.member.user_id == "raiser"
    assert "Pricing page" in contact.reason
    assert contact.champion is not None and contact.champion.user_id == "power"


def test_latest_hand_raiser_is_chosen() -> None:
    members = [
        _member("early", hand_raised_at=NOW - timedelta(days=3)),
        _member("late", hand_raised_at=NOW - timedelta(hours=1)),
    ]
    contact = choose_contact(members)
    assert contact is not None and contact.member.user_id == "late"


@pytest.mark.parametrize("role", ["Admin", "workspace owner", "Billing contact", "Head of Finance", "CTO"])
def test_buyer_role_beats_most_active(role: str) -> None:
    members = [_member("power", activity=90, score=40), _member("buyer", activity=2, role=role)]
    contact = choose_contact(members)
    assert contact is not None
    assert contact.member.user_id == "buyer"
    assert role in contact.reason
    assert contact.champion is not None and contact.champion.user_id == "power"


def test_most_active_member_without_buyer_or_hand_raiser() -> None:
    members = [
        _member("quiet", activity=3, role="Software Engineer"),
        _member("power", activity=90, role="Designer"),
        _member("mid", activity=20, score=60),
    ]
    contact = choose_contact(members)
    assert contact is not None
    assert contact.member.user_id == "power"
    assert contact.reason == "most active member"
    assert contact.champion is None  # the champion is the contact: not reported twice


def test_champion_not_reported_when_the_buyer_is_also_most_active() -> None:
    members = [_member("boss", activity=50, role="Owner"), _member("dev", activity=10)]
    contact = choose_contact(members)
    assert contact is not None
    assert contact.member.user_id == "boss"
    assert contact.champion is None


def test_no_members_no_contact() -> None:
    assert choose_contact([]) is None


# --- architecture: the scorecard stays pure, storage stays below bot --------------------------

_SCORING_FORBIDDEN = {
    "slack_bolt",
    "slack_sdk",
    "sqlmodel",
    "sqlalchemy",
    "starlette",
    "fastapi",
    "apscheduler",
    "requests",
    "httpx",
    "os",
}


def _imported_modules(tree: ast.AST) -> set[str]:
    """Top-level names of every absolute import in a module (relative imports stay inside)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
            if node.module == "os" or node.module.startswith("os."):
                found.add("os")
    return found


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _clock_reads(tree: ast.AST) -> list[str]:
    """Calls that read the wall clock: datetime.now/utcnow (however imported), time.time."""
    reads: list[str] = []
    clock_names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "time":
            clock_names.update(a.asname or a.name for a in node.names if a.name in ("time", "time_ns"))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name is None:
            continue
        last = name.rsplit(".", 1)[-1]
        parts = name.split(".")
        if (
            (last in ("now", "utcnow", "today") and ("datetime" in parts or "date" in parts))
            or name in ("time.time", "time.time_ns")
            or name in clock_names
        ):
            reads.append(name)
    return reads


def _modules(package: str) -> list[Path]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no modules found in {package}/"
    return files


def test_architecture_checks_catch_what_they_forbid() -> None:
    bad = ast.parse(
        "import os\nfrom sqlalchemy import select\nimport slack_sdk.web\nfrom datetime import datetime\n"
        "from time import time as t\nimport time\n"
        "a = datetime.now()\nb = datetime.utcnow()\nc = time.time()\nd = t()\n"
    )
    assert _imported_modules(bad) >= {"os", "sqlalchemy", "slack_sdk"}
    assert sorted(_clock_reads(bad)) == ["datetime.now", "datetime.utcnow", "t", "time.time"]
    good = ast.parse("from datetime import datetime, timedelta\nx = datetime(2025, 1, 1) + timedelta(days=1)\n")
    assert _clock_reads(good) == []


@pytest.mark.parametrize("path", _modules("scoring"), ids=lambda p: p.name)
def test_scoring_has_no_io_and_no_clock(path: Path) -> None:
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    assert _imported_modules(tree) & _SCORING_FORBIDDEN == set()
    assert _clock_reads(tree) == []


@pytest.mark.parametrize("path", _modules("storage"), ids=lambda p: str(p.relative_to(ROOT)))
def test_storage_does_not_import_bot(path: Path) -> None:
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    assert "bot" not in _imported_modules(tree)
