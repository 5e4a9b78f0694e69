"""The scoring model: signals, points, threshold, hand-raisers, conversions.

Loaded from YAML (the format admins import and export) and validated as a whole: a bad model
is refused with every problem listed by field path, never half-applied.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from importlib import resources
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

FORMAT = 1
MAX_POINTS = 1000
MAX_THRESHOLD = 100_000

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
SignalId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


def normalise_name(name: str) -> str:
    """How event and page names are compared: case-insensitive, whitespace-insensitive."""
    return " ".join(name.split()).casefold()


class ModelError(ValueError):
    """A model that cannot be used; `problems` lists each one with its field path."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Signal(_Strict):
    id: SignalId
    label: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    points: int = Field(ge=-MAX_POINTS, le=MAX_POINTS)
    events: tuple[Name, ...] = ()
    pages: tuple[Name, ...] = ()
    paths: tuple[Annotated[str, StringConstraints(pattern=r"^/", max_length=200)], ...] = ()
    min_count: int = Field(default=1, ge=1, le=1_000_000)
    window_days: int | None = Field(default=None, ge=1, le=3650)
    distinct_property: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    inactive_days: int | None = Field(default=None, ge=1, le=3650)

    @model_validator(mode="after")
    def _one_kind(self) -> Signal:
        matches = self.events or self.pages or self.paths
        if self.inactive_days is not None:
            if matches or self.distinct_property or self.window_days:
                raise ValueError(
                    "an inactivity signal (inactive_days) takes no events, pages, paths, "
                    "distinct_property or window_days"
                )
        elif not matches:
            raise ValueError("needs at least one of events, pages or paths (the event list is empty)")
        return self

    @property
    def is_inactivity(self) -> bool:
        return self.inactive_days is not None

    def describe_window(self) -> str:
        if self.is_inactivity:
            return f"no activity in {self.inactive_days} days"
        return f"in {self.window_days} days" if self.window_days else "all time"


class HandRaisers(_Strict):
    events: tuple[Name, ...] = ()
    pages: tuple[Name, ...] = ()
    paths: tuple[Annotated[str, StringConstraints(pattern=r"^/", max_length=200)], ...] = ()
    cooldown_hours: int = Field(default=24, ge=0, le=24 * 365)


class Conversions(_Strict):
    events: tuple[Name, ...] = ("Subscription Started",)


class Model(_Strict):
    format: int = FORMAT
    threshold: int = Field(ge=1, le=MAX_THRESHOLD)
    signals: tuple[Signal, ...]
    hand_raisers: HandRaisers = HandRaisers()
    conversions: Conversions = Conversions()

    @model_validator(mode="after")
    def _unique_ids(self) -> Model:
        seen: dict[str, int] = {}
        for i, s in enumerate(self.signals):
            if s.id in seen:
                raise ValueError(f"signals[{i}].id: duplicate signal id {s.id!r} (also signals[{seen[s.id]}])")
            seen[s.id] = i
        if self.format != FORMAT:
            raise ValueError(f"format: this pqlbot reads model format {FORMAT}, not {self.format}")
        return self

    def signal(self, signal_id: str) -> Signal | None:
        return next((s for s in self.signals if s.id == signal_id), None)

    @cached_property
    def _index(self) -> _MatchIndex:
        return _MatchIndex.build(self)

    def matching_key(self) -> str:
        """Changes exactly when stored per-signal aggregates would have to be rebuilt from events."""
        parts = [
            (
                s.id,
                sorted(map(normalise_name, s.events)),
                sorted(map(normalise_name, s.pages)),
                sorted(p.casefold() for p in s.paths),
                s.distinct_property,
                s.window_days,
            )
            for s in self.signals
            if not s.is_inactivity
        ]
        return hashlib.sha256(json.dumps(sorted(parts)).encode()).hexdigest()[:16]


class _MatchIndex:
    """Lookup tables from normalised names to the signals they feed."""

    def __init__(self) -> None:
        self.by_event: dict[str, list[Signal]] = {}
        self.by_page: dict[str, list[Signal]] = {}
        self.path_signals: list[tuple[str, Signal]] = []
        self.hand_events: frozenset[str] = frozenset()
        self.hand_pages: frozenset[str] = frozenset()
        self.hand_paths: tuple[str, ...] = ()
        self.conversions: frozenset[str] = frozenset()

    @classmethod
    def build(cls, model: Model) -> _MatchIndex:
        ix = cls()
        for s in model.signals:
            for e in s.events:
                ix.by_event.setdefault(normalise_name(e), []).append(s)
            for p in s.pages:
                ix.by_page.setdefault(normalise_name(p), []).append(s)
            ix.path_signals.extend((p.casefold(), s) for p in s.paths)
        hr = model.hand_raisers
        ix.hand_events = frozenset(map(normalise_name, hr.events))
        ix.hand_pages = frozenset(map(normalise_name, hr.pages))
        ix.hand_paths = tuple(p.casefold() for p in hr.paths)
        ix.conversions = frozenset(map(normalise_name, model.conversions.events))
        return ix


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith("function-"):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(model)"


def _problems(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = _path(tuple(err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "is required"
        if msg.startswith("signals[") and ":" in msg:  # already carries its own path
            problems.append(msg)
        else:
            problems.append(f"{loc}: {msg}")
    return problems


def model_from_dict(data: Any) -> Model:
    """Validate a parsed model document; raise ModelError listing every problem."""
    if not isinstance(data, dict):
        raise ModelError(["(model): must be a mapping with threshold and signals"])
    try:
        return Model.model_validate(_lists_to_tuples(data))
    except ValidationError as exc:
        problems = _problems(exc)
        # Pydantic checks the whole model only once every field is valid: report repeated
        # signal ids now too, so an admin sees every problem in one go.
        problems += [p for p in _duplicate_ids(data) + _empty_matches(data, problems) if p not in problems]
        raise ModelError(problems) from None


def _empty_matches(data: dict[str, Any], problems: list[str]) -> list[str]:
    """Signals that would match nothing, reported even when other fields of theirs are wrong."""
    signals = data.get("signals")
    if not isinstance(signals, (list, tuple)):
        return []
    found = []
    for i, signal in enumerate(signals):
        if not isinstance(signal, dict) or signal.get("inactive_days") is not None:
            continue
        if not any(signal.get(k) for k in ("events", "pages", "paths")):
            path = f"signals[{i}]"
            if not any(p.startswith(path + ":") for p in problems):
                found.append(f"{path}: needs at least one of events, pages or paths (the event list is empty)")
    return found


def _duplicate_ids(data: dict[str, Any]) -> list[str]:
    signals = data.get("signals")
    if not isinstance(signals, (list, tuple)):
        return []
    seen: dict[str, int] = {}
    problems = []
    for i, signal in enumerate(signals):
        sid = signal.get("id") if isinstance(signal, dict) else None
        if not isinstance(sid, str):
            continue
        if sid in seen:
            problems.append(f"signals[{i}].id: duplicate signal id {sid!r} (also signals[{seen[sid]}])")
        else:
            seen[sid] = i
    return problems


def load_model(text: str) -> Model:
    """Parse and validate a model from YAML text."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ModelError([f"(model): not valid YAML{where}"]) from None
    return model_from_dict(data)


def _lists_to_tuples(data: Any) -> Any:
    """YAML and JSON give lists; the model stores tuples (it is immutable)."""
    if isinstance(data, dict):
        return {k: _lists_to_tuples(v) for k, v in data.items()}
    if isinstance(data, list):
        return tuple(_lists_to_tuples(v) for v in data)
    return data


def model_to_dict(model: Model) -> dict[str, Any]:
    """The model as plain data, defaults left out of signals so files stay short."""
    data = model.model_dump(mode="json")
    data["signals"] = [
        s.model_dump(mode="json", exclude_defaults=True, exclude={"id", "label", "points"})
        | {"id": s.id, "label": s.label, "points": s.points}
        for s in model.signals
    ]
    # Key order that reads well: id and label first.
    data["signals"] = [
        {k: d[k] for k in ("id", "label", *[k for k in d if k not in ("id", "label")])} for d in data["signals"]
    ]
    return data


def dump_model(model: Model) -> str:
    return yaml.safe_dump(model_to_dict(model), sort_keys=False, allow_unicode=True, width=100)


def default_model() -> Model:
    return load_model(resources.files("scoring").joinpath("default_model.yaml").read_text("utf-8"))
