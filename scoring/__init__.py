"""The scorecard: pure domain logic. No I/O, no clock: every function takes `now`."""

from scoring.evaluate import Facts, Score, SignalResult, crossed, evaluate
from scoring.events import Event
from scoring.matching import hand_raiser, is_activity, is_conversion, signal_hits
from scoring.model import Model, ModelError, Signal, default_model, load_model, model_from_dict, model_to_dict

__all__ = [
    "Event",
    "Facts",
    "Model",
    "ModelError",
    "Score",
    "Signal",
    "SignalResult",
    "crossed",
    "default_model",
    "evaluate",
    "hand_raiser",
    "is_activity",
    "is_conversion",
    "load_model",
    "model_from_dict",
    "model_to_dict",
    "signal_hits",
]
