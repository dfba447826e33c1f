"""Scoring a target's program on its devset, as both flows do, and what a score may not hide.

A crash in the user's program or metric fails the test, naming the example and the line; LM
errors may cost up to 10% of the examples (listed, "scored 58 of 60"), more is an ``LMError``.
Neither is ever a low score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from pytest_gepa.errors import GepaError, LMError, one_line
from pytest_gepa.evaluate import Evaluation, evaluate
from pytest_gepa.flows.target import BuildContext, Target
from pytest_gepa.metrics import Metric
from pytest_gepa.verdict.thresholds import Verdict

SHOWN_CRASHES = 3


class GateFailure(GepaError):
    """The gate said no: a regression or a rejected candidate, with the sentences that explain it."""


class ProgramError(GepaError):
    """The user's own program or metric raised on an example: their bug, not the model's."""


@dataclass(frozen=True)
class Thresholds:
    """One ``gepa.gate`` call's thresholds and how surely they must be decided."""

    min_score: float | None
    max_drop: float | None
    samples: int
    confidence: float
    max_samples: int = 0  # draws per example, on average, the gate may spend deciding (0: no more than samples)
    compile_samples: int = 0  # draws per example a compile records (at least samples)

    @classmethod
    def resolve(cls, ctx: BuildContext, *, min_score: float | None, max_drop: float | None, samples: int | None,
                confidence: float | None) -> Thresholds:
        settings = ctx.settings
        chosen = cls(
            min_score=settings.min_score if min_score is None else min_score,
            max_drop=settings.max_drop if max_drop is None else max_drop,
            samples=settings.samples if samples is None else samples,
            confidence=settings.confidence if confidence is None else confidence,
        )
        for label, value in (("min_score", chosen.min_score), ("max_drop", chosen.max_drop)):
            if value is not None and not 0 <= value <= 1:
                raise GepaError(f"gepa.gate: {label}={value!r} is outside [0, 1]")
        if isinstance(chosen.samples, bool) or not isinstance(chosen.samples, int) or chosen.samples < 1:
            raise GepaError(f"gepa.gate: samples={chosen.samples!r} must be a whole number of at least 1")
        if not 0.5 < chosen.confidence < 1:
            raise GepaError(f"gepa.gate: confidence={chosen.confidence!r} must be between 0.5 and 1")
        # A gate's own samples= scales the budget as the ini's gepa_samples does (3 x samples by default).
        budget = -(-settings.max_samples * chosen.samples // max(1, settings.samples))
        return replace(chosen, max_samples=max(budget, chosen.samples),
                       compile_samples=max(settings.compile_samples, chosen.samples))


def dspy_context(target: Target) -> Any:
    """The dspy context of a compile or gate: token usage goes to the meter, and a rubric's judge
    calls go through this target's LMs (metered and through its cassette), whichever model the
    rubric file names."""
    import dspy

    overrides: dict[str, Any] = {"usage_tracker": target.lms.meter}
    if getattr(target.metric, "uses_judge", False):
        # The raw judge: the rubric wraps whichever LM it chooses, once.
        overrides["gepa_judge_lm"] = target.lms.raw("judge")
        overrides["gepa_wrap_lm"] = target.lms.wrap_judge
    return dspy.context(**overrides)


def raise_first_miss(target: Target) -> None:
    if target.cassette is not None and target.cassette.misses:
        target.report.status = "replay miss"
        raise target.cassette.misses[0]


def score(ctx: BuildContext, target: Target, program: Any, devset: Sequence[Any], metric: Metric, *,
          samples: int, what: str = "the program", fresh: bool = False) -> Evaluation:
    """Score ``program`` on ``devset``; raise on a crash, a replay miss or too many LM errors."""
    with dspy_context(target):
        evaluation = evaluate(program, list(devset), metric, lm=target.lms.lm("task"),
                              threads=ctx.settings.threads, samples=samples, fresh=fresh)
    raise_first_miss(target)
    if evaluation.crashes:
        target.report.status = "error"
        raise ProgramError(crash_message(ctx, target, evaluation, what))
    if evaluation.too_many_lm_errors:
        target.report.status = "lm error"
        first = evaluation.lm_errors[0]
        used = ctx.session.meter.since(target.usage_before)
        # Name the LM that actually failed: the judge's errors surface through the metric.
        role = "judge" if used["judge"].failures and not used["task"].failures else "task"
        raise LMError(
            f"{len(evaluation.lm_errors)} of {len(evaluation.results)} examples could not be scored: "
            f"LM error from {target.lms.describe(role)}: {(first.error or '').rstrip('.')}. "
            "This is an infrastructure error, not a low score; check the model and its endpoint."
        )
    return evaluation


def crash_message(ctx: BuildContext, target: Target, evaluation: Evaluation, what: str) -> str:
    crashes = evaluation.crashes
    lines = [f"{ctx.nodeid} [{target.name}]: {what} raised on {len(crashes)} of {len(evaluation.results)} "
             "devset examples. This is a bug in the test's code, not a low score:"]
    for crash in crashes[:SHOWN_CRASHES]:
        where = f" (at {crash.where})" if crash.where else ""
        lines.append(f"  - example {crash.id!r}: {crash.error}{where}")
    if len(crashes) > SHOWN_CRASHES:
        lines.append(f"  ... and {len(crashes) - SHOWN_CRASHES} more")
    return "\n".join(lines)


def record_evaluation(target: Target, evaluation: Evaluation, recorded: dict[str, float] | None) -> None:
    """What the report shows of an evaluation: counts, the lost examples, and every example's row."""
    report = target.report
    report.scored, report.total = len(evaluation.scored), len(evaluation.results)
    report.samples = evaluation.samples
    report.lm_errors = [{"id": r.id, "error": one_line(r.error or "", 200)} for r in evaluation.lm_errors]
    report.per_example = [
        {"id": r.id, "score": r.score, "recorded": (recorded or {}).get(r.id), "feedback": r.feedback,
         "error": r.error, "inputs": r.inputs, "output": r.output}
        for r in evaluation.results
    ]


def record_verdict(target: Target, verdict: Verdict) -> None:
    report = target.report
    report.score, report.ci = verdict.score, verdict.interval
    report.recorded = verdict.recorded
    if verdict.drop is not None:
        report.drop, report.drop_ci = verdict.drop.drop, verdict.drop.interval
    report.message = "" if verdict.status == "passed" else verdict.explain()


@dataclass(frozen=True)
class GateResult:
    """What ``gepa.gate`` measured, for users who want their own asserts."""

    score: float
    ci: tuple[float, float]
    per_example: dict[str, float]
    passed: bool
    status: str
    verdict: Verdict
    errors: int = 0
    scored: int = 0
    total: int = 0


def gate_result(evaluation: Evaluation, verdict: Verdict) -> GateResult:
    return GateResult(score=verdict.score, ci=verdict.interval, per_example=evaluation.per_example,
                      passed=verdict.passed, status=verdict.status, verdict=verdict,
                      errors=len(evaluation.lm_errors), scored=len(evaluation.scored), total=len(evaluation.results))
