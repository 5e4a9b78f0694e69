"""Changing the live model: validate, save a new version, re-score, report the impact."""

from __future__ import annotations

import re
from collections.abc import Callable

from bot.errors import UserInputError
from bot.pipeline import RescoreResult
from bot.render import Message, render
from bot.services import Services
from scoring.model import MAX_POINTS, MAX_THRESHOLD, Model, ModelError, model_from_dict, model_to_dict
from storage import models as models_store

_INTEGER = re.compile(r"[+-]?[0-9]{1,9}")


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


def _change(
    services: Services,
    *,
    by: str,
    source: str,
    edit: Callable[[Model], tuple[Model, str] | None],
) -> tuple[str, RescoreResult | None]:
    """Apply `edit` to the live model as one new version; (what changed, re-score result)."""
    now = services.clock()
    with services.db.write(scoring=True) as s:
        live = services.pipeline.live_model(s)
        edited = edit(live.model)
        if edited is None:
            return "", None
        model, what = edited
        try:
            model = model_from_dict(model_to_dict(model))
        except ModelError as exc:
            raise UserInputError("That change would make the model invalid: " + "; ".join(exc.problems)) from None
        try:
            models_store.save_model(
                session=s, model=model, created_by=by, source=source, summary=what, now=now, base_version=live.version
            )
        except models_store.ModelChanged:
            raise UserInputError(
                "Someone changed the model at the same moment; nothing was changed, try again."
            ) from None
    result = services.pipeline.rescore_all(bundle={"change": what, "by": by})
    return what, result


def set_weight(services: Services, *, signal_id: str, points: str, by: str, source: str = "slack") -> Message:
    value = parse_int(points, "Points", -MAX_POINTS, MAX_POINTS)
    wanted = signal_id.strip().lower()
    unchanged: list[str] = []

    def edit(model: Model) -> tuple[Model, str] | None:
        signal = model.signal(wanted)
        if signal is None:
            valid = ", ".join(f"`{s.id}`" for s in model.signals)
            raise UserInputError(f"There is no signal `{signal_id[:64]}`. Signals: {valid}.")
        if signal.points == value:
            unchanged.append(f"`{signal.id}` is already worth {value:+d} points; nothing changed.")
            return None
        signals = tuple(s.model_copy(update={"points": value}) if s.id == signal.id else s for s in model.signals)
        return (
            model.model_copy(update={"signals": signals}),
            f"weight of {signal.id} ({signal.label}): {signal.points:+d} → {value:+d}",
        )

    what, result = _change(services, by=by, source=source, edit=edit)
    if result is None:
        return render("notice.json.j2", text=unchanged[0])
    return render("model_changed.json.j2", what=what, by=by, result=result)


def set_threshold(services: Services, *, value: str, by: str, source: str = "slack") -> Message:
    new = parse_int(value, "The threshold", 1, MAX_THRESHOLD)
    unchanged: list[str] = []

    def edit(model: Model) -> tuple[Model, str] | None:
        if model.threshold == new:
            unchanged.append(f"The threshold is already {new}; nothing changed.")
            return None
        return model.model_copy(update={"threshold": new}), f"threshold: {model.threshold} → {new}"

    what, result = _change(services, by=by, source=source, edit=edit)
    if result is None:
        return render("notice.json.j2", text=unchanged[0])
    return render("model_changed.json.j2", what=what, by=by, result=result)
