"""Compile mode's promotion: does the candidate replace the current artifact (DESIGN.md "Modes")?

Both programs are scored in the same run on the same examples, val and devset, paired per
example, on draws the artifact will not record; only a candidate the evidence calls better
replaces the current one, and the rest is ``kept`` with the candidate saved for review.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pytest_gepa.artifact.model import Artifact, DevsetScores
from pytest_gepa.data import example_id
from pytest_gepa.evaluate import Evaluation
from pytest_gepa.flows.scoring import Thresholds, score
from pytest_gepa.flows.target import BuildContext, Target
from pytest_gepa.metrics import Metric
from pytest_gepa.verdict.thresholds import compare_candidate


def beats_current(ctx: BuildContext, target: Target, program: Any, evaluation: Evaluation, candidate: Artifact,
                  devset: Sequence[Any], metric: Metric, thresholds: Thresholds) -> bool:
    """Score the current artifact in this run on the same examples, val and devset, paired; only a
    candidate the evidence calls better replaces it (issue 22, item 10)."""
    if target.artifact is not None and target.artifact.program == candidate.program:
        # A program cannot be better than itself: no draw could change the outcome, so none is paid
        # for (and a replayed compile asks its cassette for nothing the recording never made). Its
        # scores in this run are the current artifact's scores in this run.
        return _keep(ctx, target, candidate, evaluation, thresholds, drop=0.0, interval=(0.0, 0.0),
                     reason="the candidate is the current artifact's program (the same instructions and demos)")
    current = score(ctx, target, target.current_program, devset, metric, samples=thresholds.samples,
                    what="the current artifact's program")
    val = list(target.examples.val)
    ours, theirs = _split_keys(evaluation, "devset"), _split_keys(current, "devset")
    if val and not {example_id(example) for example in val} & current.per_example.keys():
        ours |= _split_keys(score(ctx, target, program, val, metric,
                                  samples=thresholds.samples, what="the candidate on examples.val"), "val")
        theirs |= _split_keys(score(ctx, target, target.current_program, val, metric, samples=thresholds.samples,
                                    what="the current artifact's program on examples.val"), "val")
    comparison = compare_candidate(ours, theirs, confidence=thresholds.confidence,
                                   where="val and devset" if val else "devset")
    report = target.report
    report.recorded = current.score
    report.drop, report.drop_ci = comparison.drop.drop, comparison.drop.interval
    if comparison.replace:
        return True
    return _keep(ctx, target, candidate, current, thresholds, drop=comparison.drop.drop,
                 interval=comparison.drop.interval, reason=comparison.reason)


def _keep(ctx: BuildContext, target: Target, candidate: Artifact, current: Evaluation, thresholds: Thresholds, *,
          drop: float, interval: tuple[float, float], reason: str) -> bool:
    """``kept``: the artifact stays byte-identical, the candidate goes to review with both scores."""
    candidate.scores.current = DevsetScores(
        optimized=current.score, ci=interval, n=len(current.scored), per_example=current.per_example,
        samples=thresholds.samples, confidence=thresholds.confidence)
    target.store.write_rejected(candidate)
    report = target.report
    report.recorded, report.drop, report.drop_ci = current.score, drop, interval
    report.status = "kept"
    report.message = (f"{reason}; the current artifact is kept byte-identical and the candidate is saved "
                      f"for review at '{target.store.rejected_path}'.")
    ctx.progress(f"  {target.name}: kept the current artifact: {reason}")
    return False


def _split_keys(evaluation: Evaluation, split: str) -> dict[str, float]:
    """Per-example scores keyed by split too: a val and a devset example may share an id."""
    return {f"{split}:{eid}": value for eid, value in evaluation.per_example.items()}
