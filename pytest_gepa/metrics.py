"""Ready GEPA feedback metrics, and the one place that reads what any metric returned.

A GEPA feedback metric is ``(gold, pred, trace=None, pred_name=None, pred_trace=None)`` returning
``dspy.Prediction(score=..., feedback=...)``; a plain float or bool works too (no feedback then).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
from collections.abc import Callable, Mapping, Sequence
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

    Metrics built here (and rubrics) carry their own ``fingerprint``; for any other callable its
    source is hashed with what it reads that the source does not spell out (a module-level metric
    object or table, closure cells, defaults given by name, the user's own helpers): changing
    ``EXACT = exact_match("category")`` changes the fingerprint of a metric that calls ``EXACT``.
    """
    own = getattr(metric, "fingerprint", None)
    if isinstance(own, str):
        return own
    from pytest_gepa.code_reads import fingerprint

    return fingerprint(metric)


def _prediction(score: float, feedback: str) -> Any:
    import dspy

    return dspy.Prediction(score=score, feedback=feedback)


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def why_text(gold: Any, why: str | None, metric: str) -> str:
    """The gold example's ``why`` column, as a sentence to add to the feedback of a wrong answer.

    GEPA's reflection learns only what the feedback says: "expected claims" names the label, the
    row's own explanation says why. A missing column is a typo in the metric or the data, not an
    example without an explanation (an empty value is that): it is an error naming both.
    """
    if why is None:
        return ""
    fields = list(gold.keys()) if isinstance(gold, Mapping) or hasattr(gold, "keys") else []
    if fields and why not in fields:
        raise ValueError(f"{metric}: the example has no {why!r} field (its fields: {', '.join(map(repr, fields))}); "
                         f"add a {why!r} column to the data or pass why= one of its columns")
    text = _field(gold, why)
    text = "" if text is None else " ".join(str(text).split())
    return f" Why: {text}" if text else ""


@dataclass(frozen=True)
class ExactMatch:
    """Score 1 when the prediction's field equals the gold label (trimmed, case-insensitive)."""

    field: str
    case_sensitive: bool = False
    why: str | None = None  # a column whose text the feedback of a wrong answer quotes

    @property
    def fingerprint(self) -> str:
        # ``why`` changes what GEPA learns from, so it is part of the metric; unset, the old value.
        extra = f":why={self.why}" if self.why is not None else ""
        return f"exact_match:{self.field}:{'case' if self.case_sensitive else 'nocase'}{extra}"

    @property
    def label(self) -> str:
        return f"exact_match({self.field!r})"

    def _norm(self, value: Any) -> str:
        text = "" if value is None else str(value).strip()
        return text if self.case_sensitive else text.lower()

    def __call__(self, gold: Any, pred: Any, trace: Any = None, pred_name: Any = None,
                 pred_trace: Any = None) -> Any:
        expected, predicted = _field(gold, self.field), _field(pred, self.field)
        if predicted is None:
            why = why_text(gold, self.why, self.label)
            return _prediction(0.0, f"The output has no {self.field!r} field; expected {expected!r}.{why}")
        if self._norm(predicted) == self._norm(expected):
            return _prediction(1.0, f"Correct: {self.field} {predicted!r} matches the expected value.")
        why = why_text(gold, self.why, self.label)
        return _prediction(0.0, f"Predicted {self.field} {predicted!r} but expected {expected!r}.{why}")


def exact_match(field: str, *, case_sensitive: bool = False, why: str | None = None) -> ExactMatch:
    """A feedback metric comparing one output field to the gold label, saying what was expected.

    ``why="rule"`` adds the example's ``rule`` column to the feedback of a wrong answer
    ("Predicted category 'shipping' but expected 'claims'. Why: a dented item is a claim."), so
    GEPA's reflection learns the reason, not only the label.
    """
    return ExactMatch(field=field, case_sensitive=case_sensitive, why=why)


def metric_label(metric: Metric) -> str:
    """A short name for a metric in combined feedback: its own ``label``, else its function name."""
    own = getattr(metric, "label", None)
    if isinstance(own, str):
        return own
    return str(getattr(metric, "__qualname__", None) or type(metric).__name__)


def takes_gepa_arguments(metric: Metric) -> bool:
    """Does ``metric`` take GEPA's five arguments ``(gold, pred, trace, pred_name, pred_trace)``?

    The one place this is decided: a plain ``(gold, pred)`` metric is called with two.
    """
    try:
        inspect.signature(metric).bind(None, None, None, None, None)
    except (TypeError, ValueError):
        return False
    return True


def call_metric(metric: Metric, gold: Any, pred: Any) -> MetricResult:
    """Call a metric with GEPA's five arguments when it takes them, else as ``(gold, pred)``."""
    raw = metric(gold, pred, None, None, None) if takes_gepa_arguments(metric) else metric(gold, pred)
    return read_metric_result(raw)


class AllOf:
    """Several metrics as one: the weighted mean of their scores, and their feedback, each labelled."""

    def __init__(self, parts: Sequence[Metric], weights: Sequence[float], why: str | None = None) -> None:
        self.parts: tuple[Metric, ...] = tuple(parts)
        self.weights: tuple[float, ...] = tuple(float(w) for w in weights)
        self.why = why
        self._five = tuple(takes_gepa_arguments(part) for part in self.parts)

    @property
    def uses_judge(self) -> bool:
        """True when any part asks a judge LM, so the plugin meters and records judge calls."""
        return any(bool(getattr(part, "uses_judge", False)) for part in self.parts)

    @property
    def judge_errors(self) -> int:
        """Judge replies its rubric parts could not use, summed (each one scored 0)."""
        counts = (getattr(part, "judge_errors", 0) for part in self.parts)
        return sum(count for count in counts if isinstance(count, int))

    @property
    def fingerprint(self) -> str:
        parts = [[metric_fingerprint(part), weight] for part, weight in zip(self.parts, self.weights, strict=True)]
        shape: list[Any] = ["all_of", parts] if self.why is None else ["all_of", parts, {"why": self.why}]
        return hashlib.sha256(json.dumps(shape).encode()).hexdigest()

    @property
    def label(self) -> str:
        return f"all_of({', '.join(metric_label(part) for part in self.parts)})"

    def __call__(self, gold: Any, pred: Any, trace: Any = None, pred_name: Any = None,
                 pred_trace: Any = None) -> Any:
        total, lines = 0.0, []
        for part, weight, five in zip(self.parts, self.weights, self._five, strict=True):
            raw = part(gold, pred, trace, pred_name, pred_trace) if five else part(gold, pred)
            result = read_metric_result(raw)
            total += weight * result.score
            feedback = result.feedback.strip().replace("\n", "\n  ")
            lines.append(f"[{metric_label(part)}, weight {weight:g}] {result.score:.2f}: {feedback}")
        score = total / sum(self.weights)
        why = why_text(gold, self.why, self.label) if score < 1.0 else ""
        if why:
            lines.append(why.strip())
        return _prediction(score, "\n".join(lines))

    def __repr__(self) -> str:
        weights = ", ".join(f"{w:g}" for w in self.weights)
        return f"<{self.label} weights [{weights}]>"


def all_of(*metrics: Metric, weights: Sequence[float] | None = None, why: str | None = None) -> AllOf:
    """One feedback metric from several: e.g. ``all_of(exact_match("category"), rubric, weights=[1, 2])``.

    The score is the weighted mean of the parts' scores (equal weights by default); the feedback
    lists each part's feedback under its label, so GEPA's reflection sees every reason at once.
    ``why="rule"`` adds the example's ``rule`` column to the feedback of any score under 1.
    """
    if not metrics:
        raise ValueError("all_of() needs at least one metric, like all_of(exact_match('category'), rubric)")
    for index, metric in enumerate(metrics):
        if not callable(metric):
            raise TypeError(f"all_of(): argument {index + 1} is {metric!r}, not a metric (a callable)")
    if weights is None:
        weights = [1.0] * len(metrics)
    weights = list(weights)
    if len(weights) != len(metrics):
        raise ValueError(f"all_of(): {len(metrics)} metrics but {len(weights)} weights ({weights!r}); "
                         "give one weight per metric")
    for weight in weights:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
                or weight <= 0:
            raise ValueError(f"all_of(): weights must be numbers > 0, got {weight!r} in {weights!r}")
    return AllOf(metrics, weights, why=why)
