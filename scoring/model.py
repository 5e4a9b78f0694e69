"""The scoring model: signals, points, threshold, hand-raisers, conversions.

Loaded from YAML (the format admins import and export) and validated as a whole: a bad model
is refused with every problem listed by field path, never half-applied.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from functools import cached_property
from importlib import resources
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

FORMAT = 1
MAX_POINTS = 1000
MAX_THRESHOLD = 100_000
MAX_FILE = 1024 * 1024  # a model file; the bundled one is 2 KB
MAX_SIGNALS = 100
MAX_NAMES = 100  # event names, pages or paths in one list
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _printable(value: str) -> str:
    """Names and labels are shown in Slack and terminals and typed in commands: no control
    characters (a NUL, a line break, a terminal escape)."""
    if _CONTROL.search(value):
        raise ValueError("contains a control character (such as a line break, tab or NUL)")
    if any(unicodedata.category(ch) == "Cf" for ch in value):
        # zero-width spaces, joiners and direction marks: a name that shows blank or reversed
        raise ValueError("contains an invisible or text-direction character (such as a zero-width space)")
    return value


Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(_printable)
]
Path_ = Annotated[str, StringConstraints(pattern=r"^/", max_length=200), AfterValidator(_printable)]
Label = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), AfterValidator(_printable)
]
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
    label: Label
    points: int = Field(ge=-MAX_POINTS, le=MAX_POINTS)
    events: tuple[Name, ...] = Field(default=(), max_length=MAX_NAMES)
    pages: tuple[Name, ...] = Field(default=(), max_length=MAX_NAMES)
    paths: tuple[Path_, ...] = Field(default=(), max_length=MAX_NAMES)
    min_count: int = Field(default=1, ge=1, le=1_000_000)
    window_days: int | None = Field(default=None, ge=1, le=3650)
    distinct_property: (
        Annotated[str, StringConstraints(min_length=1, max_length=100), AfterValidator(_printable)] | None
    ) = None
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
    events: tuple[Name, ...] = Field(default=(), max_length=MAX_NAMES)
    pages: tuple[Name, ...] = Field(default=(), max_length=MAX_NAMES)
    paths: tuple[Path_, ...] = Field(default=(), max_length=MAX_NAMES)
    cooldown_hours: int = Field(default=24, ge=0, le=24 * 365)


class Conversions(_Strict):
    events: tuple[Name, ...] = Field(default=("Subscription Started",), max_length=MAX_NAMES)


class Model(_Strict):
    format: int = FORMAT
    threshold: int = Field(ge=1, le=MAX_THRESHOLD)
    signals: tuple[Signal, ...] = Field(max_length=MAX_SIGNALS)
    hand_raisers: HandRaisers = HandRaisers()
    conversions: Conversions = Conversions()

    @model_validator(mode="after")
    def _whole(self) -> Model:
        data = {"format": self.format, "signals": [{"id": s.id} for s in self.signals]}
        problems = _format_problem(data) + _duplicate_ids(data)
        if problems:
            raise ValueError(_JOIN.join(problems))
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


_JOIN = "\n"  # between whole-model problems inside one validation error


def _problems(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = _path(tuple(err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "is required"
        elif err["type"] == "too_long":
            msg = f"has too many entries (at most {err.get('ctx', {}).get('max_length')})"
        if loc == "(model)":  # whole-model problems carry their own paths
            problems.extend(msg.split(_JOIN))
        elif msg.startswith("signals[") and ":" in msg:
            problems.append(msg)
        else:
            problems.append(f"{loc}: {msg}")
    return problems


def _format_problem(data: dict[str, Any]) -> list[str]:
    if data.get("format", FORMAT) != FORMAT:
        return [f"format: this pqlbot reads model format {FORMAT}, not {data.get('format')!r}"]
    return []


def _new_model_problems(data: dict[str, Any]) -> list[str]:
    """What makes a new model unusable though each field is fine: a name twice in one list, a
    threshold no one can reach. (Models stored before these checks still load.)"""
    problems = _repeated_names(data)
    signals = data.get("signals")
    threshold = data.get("threshold")
    if isinstance(signals, (list, tuple)) and all(isinstance(x, dict) for x in signals):
        points = [x.get("points") for x in signals]
        if all(isinstance(p, int) and not isinstance(p, bool) for p in points):
            reachable = sum(p for p in points if isinstance(p, int) and p > 0)
            if reachable == 0:
                problems.append("signals: no signal has positive points, so no one could ever become a PQL")
            elif isinstance(threshold, int) and not isinstance(threshold, bool) and threshold > reachable:
                problems.append(
                    f"threshold: {threshold} cannot be reached: every positive signal together gives {reachable}"
                )
    return problems


def _repeated_names(data: dict[str, Any]) -> list[str]:
    """The same event, page or path twice in one list (names compare ignoring case and spaces)."""
    lists: list[tuple[str, Any]] = []
    signals = data.get("signals")
    if isinstance(signals, (list, tuple)):
        for i, signal in enumerate(signals):
            if isinstance(signal, dict):
                lists += [(f"signals[{i}].{k}", signal.get(k)) for k in ("events", "pages", "paths")]
    for section, keys in (("hand_raisers", ("events", "pages", "paths")), ("conversions", ("events",))):
        part = data.get(section)
        if isinstance(part, dict):
            lists += [(f"{section}.{k}", part.get(k)) for k in keys]
    problems = []
    for where, names in lists:
        if not isinstance(names, (list, tuple)):
            continue
        seen: dict[str, int] = {}
        for j, name in enumerate(names):
            if not isinstance(name, str):
                continue
            key = name.casefold() if where.endswith("paths") else normalise_name(name)
            if key in seen:
                problems.append(f"{where}[{j}]: {name[:60]!r} repeats {where}[{seen[key]}]")
            else:
                seen[key] = j
    return problems


SECTIONS = ("format", "threshold", "signals", "hand_raisers", "conversions")


def model_from_dict(data: Any, *, complete: bool = False, stored: bool = False) -> Model:
    """Validate a parsed model document; raise ModelError listing every problem.

    `complete`: a file an admin imports must spell out hand_raisers and conversions (an empty
    list is fine); leaving one out would otherwise silently empty it. `stored`: a version read
    back from the database, checked only as strictly as when it was saved."""
    if not isinstance(data, dict):
        raise ModelError(["(model): must be a mapping with threshold and signals"])
    odd = [k for k in data if not isinstance(k, str)]
    if odd:
        raise ModelError([f"{k!r}: unknown key (the keys are {', '.join(SECTIONS)})" for k in odd[:10]])
    missing = []
    if complete:
        missing = [
            f"{k}: is required (write `{k}: {{}}` for none)" for k in ("hand_raisers", "conversions") if k not in data
        ]
    try:
        model = Model.model_validate(_lists_to_tuples(data))
    except ValidationError as exc:
        problems = missing + _problems(exc)
        # Pydantic checks the whole model only once every field is valid: report what only the
        # whole model can tell now too, so an admin sees every problem in one go.
        extra = _format_problem(data) + _duplicate_ids(data) + _new_model_problems(data)
        problems += [p for p in extra + _empty_matches(data, problems) if p not in problems]
        raise ModelError(problems) from None
    problems = missing + ([] if stored else _new_model_problems(data))
    if problems:
        raise ModelError(problems)
    return model


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


class _Loader(yaml.SafeLoader):
    """YAML as model files need it: no anchors or aliases (a few lines of them can expand to
    gigabytes), and a key written twice is an error, not the last one silently winning."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise ModelError([f"(model): line {mark.line + 1}: aliases (*name) are not allowed in a model file"])
        event = self.peek_event()
        if getattr(event, "anchor", None):
            raise ModelError(
                [f"(model): line {event.start_mark.line + 1}: anchors (&name) are not allowed in a model file"]
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in seen:
                    raise ModelError(
                        [f"(model): line {key_node.start_mark.line + 1}: {key!r} appears twice (also line {seen[key]})"]
                    )
                seen[key] = key_node.start_mark.line + 1
            except TypeError:
                pass  # an unhashable key: construct_mapping says so
        return super().construct_mapping(node, deep=deep)


def load_model(text: str, *, complete: bool = False) -> Model:
    """Parse and validate a model from YAML text (`complete`: as an imported file must be)."""
    if len(text) > MAX_FILE:
        raise ModelError([f"(model): the file is larger than {MAX_FILE // 1024} KB; a model is a few KB"])
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ModelError([f"(model): not valid YAML{where}"]) from None
    except RecursionError:
        raise ModelError(["(model): nested too deeply to be a model"]) from None
    try:
        return model_from_dict(data, complete=complete)
    except RecursionError:
        raise ModelError(["(model): nested too deeply to be a model"]) from None


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
