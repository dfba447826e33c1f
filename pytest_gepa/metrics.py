"""Ready GEPA feedback metrics, and the one place that reads what any metric returned.

A GEPA feedback metric is ``(gold, pred, trace=None, pred_name=None, pred_trace=None)`` returning
``dspy.Prediction(score=..., feedback=...)``; a plain float or bool works too (no feedback then).
"""

from __future__ import annotations

import hashlib
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Metric = Callable[..., Any]


@dataclass(frozen=True)
class MetricResult:
    """A metric's answer for one example: a score in [0, 1] and the text that explains it."""

    score: float
    feedback: str


def read_metric_result(result: Any) -> MetricResult:
    """Normalise whatever a metric returned (Prediction, mapping, float, bool) into a MetricResult."""
    feedback = ""
    if isinstance(result, bool):
        score: Any = float(result)
    elif isinstance(result, (int, float)):
        score = result
    elif isinstance(result, Mapping) or hasattr(result, "score"):
        get = result.get if isinstance(result, Mapping) else lambda key, default=None: getattr(
            result, key, default
        )
        score = get("score", None)
        feedback = str(get("feedback", "") or "")
    else:
        raise TypeError(f"a metric must return a number or dspy.Prediction(score, feedback), got {result!r}")
    try:
        value = float(score)
    except (TypeError, ValueError):
        raise TypeError(f"a metric's score must be a number, got {score!r}") from None
    if math.isnan(value):
        raise TypeError("a metric's score must be a number, got NaN")
    return MetricResult(score=value, feedback=feedback or f"This output got a score of {value:g}.")


def metric_fingerprint(metric: Metric) -> str:
    """A content hash of the metric, so the artifact can tell when the metric changed.

    Metrics built here (and rubrics) carry their own ``fingerprint``; for any other callable the
    source text is hashed, falling back to its qualified name when there is no source.
    """
    own = getattr(metric, "fingerprint", None)
    if isinstance(own, str):
        return own
    target = metric if inspect.isfunction(metric) or inspect.ismethod(metric) else type(metric)
    try:
        text = inspect.getsource(target)
    except (OSError, TypeError):
        text = f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', repr(target))}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _prediction(score: float, feedback: str) -> Any:
    import dspy

    return dspy.Prediction(score=score, feedback=feedback)


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


@dataclass(frozen=True)
class ExactMatch:
    """Score 1 when the prediction's field equals the gold label (trimmed, case-insensitive)."""

    field: str
    case_sensitive: bool = False

    @property
    def fingerprint(self) -> str:
        return f"exact_match:{self.field}:{'case' if self.case_sensitive else 'nocase'}"

    def _norm(self, value: Any) -> str:
        text = "" if value is None else str(value).strip()
        return text if self.case_sensitive else text.lower()

    def __call__(self, gold: Any, pred: Any, trace: Any = None, pred_name: Any = None,
                 pred_trace: Any = None) -> Any:
        expected, predicted = _field(gold, self.field), _field(pred, self.field)
        if predicted is None:
            return _prediction(0.0, f"The output has no {self.field!r} field; expected {expected!r}.")
        if self._norm(predicted) == self._norm(expected):
            return _prediction(1.0, f"Correct: {self.field} {predicted!r} matches the expected value.")
        return _prediction(0.0, f"Predicted {self.field} {predicted!r} but expected {expected!r}.")


def exact_match(field: str, *, case_sensitive: bool = False) -> ExactMatch:
    """A feedback metric comparing one output field to the gold label, saying what was expected."""
    return ExactMatch(field=field, case_sensitive=case_sensitive)
