"""Changing the live model: validate, save a new audited version, rebuild what the change needs,
re-score, and report the impact. Also previews (the impact, changing nothing) and history.

Every change, from Slack or the CLI, goes through `change_model`: one new version recording who,
when, from where and the difference.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from bot.errors import UserInputError
from bot.pipeline import Impact, RescoreResult, preview
from bot.render import Message, render
from bot.services import Services
from scoring import edit
from scoring.model import (
    MAX_POINTS,
    MAX_THRESHOLD,
    Model,
    ModelError,
    Signal,
    load_model,
    model_from_dict,
    normalise_name,
)
from storage import models as models_store
from storage.rebuild import Progress, rebuild_facts

_INTEGER = re.compile(r"[+-]?0*[0-9]{1,9}")
_DAYS = re.compile(r"^([0-9]{1,4})\s*(d|day|days)?$", re.IGNORECASE)
HISTORY_SHOWN = 15


def whole_number(text: str) -> int | None:
    """A plain whole number as people type it (`30`, `+30`, `-15`, `−15`), else None.

    Only ASCII digits: Python's int() would also take `٣`, `５` or `4_8`, which nobody means.
    """
    raw = text.strip().replace("\u2212", "-")  # a typographic minus sign
    return int(raw) if _INTEGER.fullmatch(raw) else None


def parse_int(text: str, what: str, low: int, high: int) -> int:
    value = whole_number(text)
    if value is None:
        raise UserInputError(f"{what} must be a whole number from {low} to {high}, not `{text[:30]}`.")
    if not low <= value <= high:
        raise UserInputError(f"{what} must be from {low} to {high}, not {value}.")
    return value


@dataclass
class Changed:
    version: int
    lines: list[str]
    result: RescoreResult
    rebuilt: int | None  # events read to rebuild aggregates, when the change needed it


Edit = Callable[[Model], Model]


def _checked(edit_fn: Edit, model: Model) -> Model:
    try:
        return edit_fn(model)
    except ModelError as exc:
        raise UserInputError("That would make the model invalid: " + "; ".join(exc.problems)) from None


def change_model(
    services: Services, *, edit_fn: Edit, by: str, source: str, progress: Progress | None = None
) -> Changed | None:
    """Apply `edit_fn` to the live model as one new version; None when it changes nothing."""
    now = services.clock()
    with services.db.write(scoring=True) as s:
        live = services.pipeline.live_model(s)
        model = _checked(edit_fn, live.model)
        lines = edit.diff(live.model, model)
        if not lines:
            return None
        try:
            version = models_store.save_model(
                session=s,
                model=model,
                created_by=by,
                source=source,
                summary="; ".join(lines),
                now=now,
                base_version=live.version,
            )
        except models_store.ModelChanged:
            raise UserInputError(
                "Someone changed the model at the same moment; nothing was changed, try again."
            ) from None
        rebuilt = None
        if model.matching_key() != live.model.matching_key():
            # New or changed signals count events the aggregates never counted: rebuild them
            # from stored events in this same transaction, so no event is missed or counted twice.
            rebuilt = rebuild_facts(session=s, model=model, progress=progress)
    result = services.pipeline.rescore_all(bundle={"change": "; ".join(lines), "by": by})
    return Changed(version, lines, result, rebuilt)


def _reply(changed: Changed | None, unchanged: str, by: str) -> Message:
    if changed is None:
        return render("notice.json.j2", text=unchanged)
    return render("model_changed.json.j2", changed=changed, by=by)


def _signal(model: Model, signal_id: str) -> str:
    wanted = signal_id.strip().lower()
    if model.signal(wanted) is None:
        valid = ", ".join(f"`{s.id}`" for s in model.signals)
        raise UserInputError(f"There is no signal `{signal_id[:64]}`. Signals: {valid}.")
    return wanted


def _live(services: Services) -> Model:
    with services.db.read() as s:
        return services.pipeline.live_model(s).model


# --- weight and threshold --------------------------------------------------------------------


def set_weight(services: Services, *, signal_id: str, points: str, by: str, source: str = "slack") -> Message:
    value = parse_int(points, "Points", -MAX_POINTS, MAX_POINTS)
    sid = _signal(_live(services), signal_id)
    changed = change_model(
        services, edit_fn=lambda m: edit.with_weight(m, _signal(m, sid), value), by=by, source=source
    )
    return _reply(changed, f"`{sid}` is already worth {value:+d} points; nothing changed.", by)


def set_threshold(services: Services, *, value: str, by: str, source: str = "slack") -> Message:
    new = parse_int(value, "The threshold", 1, MAX_THRESHOLD)
    changed = change_model(services, edit_fn=lambda m: edit.with_threshold(m, new), by=by, source=source)
    return _reply(changed, f"The threshold is already {new}; nothing changed.", by)


# --- hand-raisers ------------------------------------------------------------------------------


def hand_raiser(services: Services, *, action: str, args: list[str], by: str) -> Message:
    """`handraiser add|remove [event|page|path] <name>`: an event name unless a kind is given."""
    usage = (
        "Usage: `/pql handraiser add <event name>` or `/pql handraiser remove <event name>`; "
        "`page <name>` or `path </prefix>` for page views."
    )
    if action not in ("add", "remove") or not args:
        raise UserInputError(usage)
    what = "event"
    if args[0].lower() in edit.LISTS:
        if len(args) == 1:
            raise UserInputError(f"Give the {args[0].lower()} after `{args[0].lower()}`. " + usage)
        what, args = args[0].lower(), args[1:]
    name = " ".join(" ".join(args).split())
    if not name or len(name) > 200:
        raise UserInputError("Give the event name (at most 200 characters). " + usage)
    if what == "path" and not name.startswith("/"):
        raise UserInputError(f"A page path starts with `/`, like `/billing`, not `{name[:60]}`.")
    if action == "add":
        existing = edit.find_hand_raiser(_live(services), what, name)
        if existing is not None:
            return render(
                "notice.json.j2", text=f"{what.capitalize()} `{existing}` already raises a hand; nothing changed."
            )
        changed = change_model(
            services,
            edit_fn=lambda m: m if edit.find_hand_raiser(m, what, name) else edit.with_hand_raiser(m, what, name),
            by=by,
            source="slack",
        )
        return _reply(changed, f"{what.capitalize()} `{name}` already raises a hand; nothing changed.", by)
    if edit.find_hand_raiser(_live(services), what, name) is None:
        listed = ", ".join(f"`{x}`" for x in edit.hand_raiser_lists(_live(services))[what]) or "none"
        raise UserInputError(f"`{name[:80]}` is not a hand-raiser {what}. Hand-raiser {what}s: {listed}.")
    changed = change_model(services, edit_fn=lambda m: edit.without_hand_raiser(m, what, name), by=by, source="slack")
    return _reply(changed, f"{what.capitalize()} `{name}` does not raise a hand; nothing changed.", by)


# --- signals -----------------------------------------------------------------------------------

SIGNAL_USAGE = (
    'Usage: `/pql signal add <id> "<event name>" <min count> <points> [<days>d]`, e.g. '
    '`/pql signal add reports "Report Exported" 3 10 7d`; or `/pql signal remove <id>`.'
)


def signal(services: Services, *, action: str, args: list[str], by: str) -> Message:
    if action == "remove" and len(args) == 1:
        sid = args[0].strip().lower()
        if _live(services).signal(sid) is None:
            return render("notice.json.j2", text=f"There is no signal `{sid[:64]}`; nothing changed.")
        changed = change_model(
            services, edit_fn=lambda m: edit.without_signal(m, sid) if m.signal(sid) else m, by=by, source="slack"
        )
        return _reply(changed, f"There is no signal `{sid}`; nothing changed.", by)
    if action != "add" or len(args) not in (4, 5):
        raise UserInputError(SIGNAL_USAGE)
    sid = args[0].strip().lower()
    if not edit.SIGNAL_ID.match(sid):
        raise UserInputError(
            f"A signal id is lower-case letters, digits and _ (like `reports_exported`), "
            f"not `{args[0][:40]}`. " + SIGNAL_USAGE
        )
    event = " ".join(args[1].split())
    if not event or len(event) > 200:
        raise UserInputError("Give the event name in quotes. " + SIGNAL_USAGE)
    min_count = parse_int(args[2], "The minimum count", 1, 1_000_000)
    points = parse_int(args[3], "Points", -MAX_POINTS, MAX_POINTS)
    window = None
    if len(args) == 5:
        m = _DAYS.match(args[4].strip())
        if not m or not 1 <= int(m.group(1)) <= 3650:
            raise UserInputError(f"The window is a number of days from 1 to 3650, like `7d`, not `{args[4][:20]}`.")
        window = int(m.group(1))
    wanted = edit.count_signal(sid, event, min_count, points, window)

    def add(model: Model) -> Model:
        existing = model.signal(sid)
        if existing is None:
            return edit.with_signal(model, wanted)
        candidate = edit.with_signal(edit.without_signal(model, sid), wanted).signal(sid)
        if candidate is not None and _counts_the_same(candidate, existing):
            return model  # the same signal again (names compare as matching does): nothing to do
        raise UserInputError(
            f"Signal `{sid}` already exists and counts something else; remove it first, or "
            f"change its points with `/pql weight {sid} <points>`."
        )

    changed = change_model(services, edit_fn=add, by=by, source="slack")
    return _reply(changed, f"Signal `{sid}` already exists just like that; nothing changed.", by)


def _counts_the_same(a: Signal, b: Signal) -> bool:
    def key(x: Signal) -> tuple[object, ...]:
        return (
            sorted(map(normalise_name, x.events)),
            sorted(map(normalise_name, x.pages)),
            sorted(p.casefold() for p in x.paths),
            x.min_count,
            x.window_days,
            x.distinct_property,
            x.inactive_days,
            x.points,
        )

    return key(a) == key(b)


# --- history, rollback, import, preview --------------------------------------------------------


def history(services: Services) -> Message:
    with services.db.read() as s:
        versions = models_store.history(session=s, limit=HISTORY_SHOWN)
    return render("model_history.json.j2", versions=versions)


def rollback(services: Services, *, version: str, by: str) -> Message:
    wanted = parse_int(version[1:] if version[:1] in "vV" else version, "The version", 1, 10_000_000)
    with services.db.read() as s:
        row = models_store.version(session=s, version=wanted)
    if row is None:
        raise UserInputError(f"There is no model version {wanted}; `/pql model history` lists them.")
    try:
        target = model_from_dict(row.body)
    except ModelError as exc:
        raise UserInputError(f"Version {wanted} cannot be made live again: " + "; ".join(exc.problems)) from None
    changed = change_model(services, edit_fn=lambda _m: target, by=by, source="slack")
    return _reply(changed, f"Version {wanted} is what is live already; nothing changed.", by)


def import_text(services: Services, *, text: str, by: str, progress: Progress | None = None) -> Changed | None:
    """Validate a whole model file and make it live (ModelError lists every problem)."""
    model = load_model(text, complete=True)
    return change_model(services, edit_fn=lambda _m: model, by=by, source="cli", progress=progress)


def preview_change(services: Services, *, kind: str, args: list[str]) -> Message:
    usage = "Usage: `/pql preview weight <signal id> <points>` or `/pql preview threshold <points>`."
    live = _live(services)
    if kind == "weight" and len(args) == 2:
        value = parse_int(args[1], "Points", -MAX_POINTS, MAX_POINTS)
        sid = _signal(live, args[0])
        candidate = _checked(lambda m: edit.with_weight(m, sid, value), live)
    elif kind == "threshold" and len(args) == 1:
        candidate = _checked(
            lambda m: edit.with_threshold(m, parse_int(args[0], "The threshold", 1, MAX_THRESHOLD)), live
        )
    else:
        raise UserInputError(usage)
    lines = edit.diff(live, candidate)
    impact: Impact = preview(services.db, candidate, services.clock())
    return render("preview.json.j2", lines=lines, impact=impact)
