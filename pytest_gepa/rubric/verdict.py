"""Verdicts: the judge's reply read into per-criterion scores, and the rubric's score, table and feedback.

Pure functions of the reply and the rubric's criteria; no LM and no dspy here. A reply that
cannot be used becomes a scored failure that says why (:func:`unusable`), never an exception.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_gepa.errors import one_line
from pytest_gepa.rubric.agreement import PASS_TOLERANCE
from pytest_gepa.rubric.material import jsonable
from pytest_gepa.rubric.spec import Criterion, show_value

__all__ = ["CriterionScore", "Judgement", "Verdict", "conclude", "read_reply", "unusable"]


@dataclass(frozen=True)
class CriterionScore:
    """The judge's score for one criterion, its weight in the rubric, and the critique."""

    name: str
    score: float
    weight: float
    critique: str


@dataclass(frozen=True)
class Verdict:
    """A rubric's judgement of one response; ``str(verdict)`` is the per-criterion table.

    ``judge_error`` says why the judge's reply could not be used (the score is then 0 and
    ``criteria`` is empty); None when the judge answered properly.
    """

    score: float
    passed: bool
    feedback: str
    criteria: tuple[CriterionScore, ...]
    judge_error: str | None = None

    def __str__(self) -> str:
        return self.feedback

    def __repr__(self) -> str:
        # Short, because pytest prints it under a failed `assert verdict.passed, verdict.feedback`.
        scores = ", ".join(f"{c.name}={c.score:.2f}" for c in self.criteria) or self.judge_error
        return f"Verdict(score={self.score:.2f}, passed={self.passed}, criteria: {scores})"


@dataclass(frozen=True)
class Judgement:
    """A verdict and the GEPA feedback made from it: what fell short, and the reference answer."""

    verdict: Verdict
    advice: str


def read_reply(verdicts: Any, criteria: Sequence[Criterion]) -> list[CriterionScore] | str:
    """Per-criterion scores from the judge's verdicts, or the reason they cannot be used."""
    if not isinstance(verdicts, list):
        return f"it holds {show_value(verdicts)} where a list of verdicts belongs"
    by_name: dict[str, Any] = {}
    for verdict in verdicts:
        name = str(getattr(verdict, "criterion", "")).strip().lower()
        if name in by_name:
            return f"criterion {getattr(verdict, 'criterion', '')!r} has two verdicts"
        by_name[name] = verdict
    scores = []
    for criterion in criteria:
        verdict = by_name.get(criterion.name.lower())
        if verdict is None:
            return f"it has no verdict for criterion {criterion.name!r}"
        score = float(verdict.score)
        if not (math.isfinite(score) and 0.0 <= score <= 1.0):
            return f"criterion {criterion.name!r} scored {score:g}, outside [0, 1]"
        scores.append(CriterionScore(criterion.name, score, criterion.weight, str(verdict.critique).strip()))
    return scores


def unusable(label: str, problem: str) -> Judgement:
    """The scored failure for a judge reply that could not be used: score 0, not passed, saying why."""
    message = f"the judge's reply could not be used: {problem}"
    header = f"{label}: 0.00, FAIL: {message}"
    return Judgement(Verdict(0.0, False, header, (), judge_error=message), message)


def conclude(scores: Sequence[CriterionScore], references: Mapping[str, Any], *, label: str,
             pass_threshold: float) -> Judgement:
    """The weighted mean, pass/fail, the table for a person and the feedback for GEPA's reflection."""
    total = sum(s.weight for s in scores)
    score = sum(s.score * s.weight for s in scores) / total
    passed = score >= pass_threshold - PASS_TOLERANCE
    reference = _reference_text(references)
    short = [s for s in scores if s.score < 1.0]
    if short:
        advice = "\n".join(f"{s.name} ({s.score:.2f}): {s.critique}" for s in short)
        if reference:
            advice += f"\nReference answer: {reference}"
    else:
        advice = f"All criteria of {label} are met ({', '.join(s.name for s in scores)})."
    verb = "meets" if passed else "is below"
    lines = [f"{label}: {score:.2f}, {verb} the pass threshold {pass_threshold:.2f} "
             f"({'PASS' if passed else 'FAIL'})", *_table(scores)]
    if reference:
        lines.append(f"Reference answer: {reference}")
    return Judgement(Verdict(score, passed, "\n".join(lines), tuple(scores)), advice)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(jsonable(value), ensure_ascii=False)


def _reference_text(references: Mapping[str, Any]) -> str:
    if not references:
        return ""
    if len(references) == 1:
        return _text(next(iter(references.values())))
    return "; ".join(f"{name}: {_text(value)}" for name, value in references.items())


def _table(scores: Sequence[CriterionScore]) -> list[str]:
    width = max(len("criterion"), *(len(s.name) for s in scores))
    lines = [f"{'criterion':<{width}}  score  weight  critique"]
    for s in scores:
        mark = "" if s.score >= 1.0 else " <"
        lines.append(f"{s.name:<{width}}  {s.score:5.2f}  {s.weight:6g}  {one_line(s.critique)}{mark}")
    return lines
