"""The gate's decision: thresholds held to per-example scores, pure, no I/O and no LM.

Each threshold is a small check object that returns a sentence: a failure when the evidence says
the threshold is missed, a doubt when only the point estimate misses it, so a verdict reads like
something a statistician would write. The numbers come from ``verdict.statistics``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pytest_gepa.errors import one_line
from pytest_gepa.verdict import statistics as st
from pytest_gepa.verdict.statistics import PairedDrop

SHOWN_REGRESSIONS = 5
FEEDBACK_LIMIT = 200
_EPS = 1e-9


def _level(confidence: float) -> str:
    """95% for 0.95, 97.5% for 0.975."""
    return f"{confidence * 100:.4g}%"


def _samples_advice(count: int | None) -> str:
    if count is None:
        return "more samples per example alone would not"
    return f"or gepa_samples = {count}"


@dataclass(frozen=True)
class Regression:
    """An example that scored better when recorded than it does now."""

    id: str
    recorded: float
    now: float
    feedback: str


@dataclass(frozen=True)
class Finding:
    """What one check found: a failure sentence, a doubt sentence, or neither."""

    failure: str | None = None
    doubt: str | None = None


@dataclass(frozen=True)
class MinScore:
    """Today's score must reach an absolute floor; it fails only when the whole interval is under it."""

    min_score: float

    def check(self, values: Sequence[float], interval: tuple[float, float], confidence: float) -> Finding:
        score = st.mean(values)
        if score + _EPS >= self.min_score:
            return Finding()
        said = (f"score {score:.3f} ({_level(confidence)} CI {interval[0]:.2f}-{interval[1]:.2f}) "
                f"is under min_score {self.min_score:.3f}")
        if interval[1] + _EPS < self.min_score:
            return Finding(failure=f"{said}, and so is the interval's upper bound")
        spread = _spread(values)
        if spread <= 0:
            spread = 0.5  # every example scored alike: assume the widest spread a [0, 1] score has
        needed = st.examples_to_bound(score, self.min_score, spread, confidence)
        return Finding(doubt=(f"{said}, but the interval reaches it on {len(values)} examples, so this is "
                              f"not decided; about {needed} examples would decide it"))


@dataclass(frozen=True)
class MaxDrop:
    """Today's score may not fall more than ``max_drop`` under a recorded one, paired per example."""

    max_drop: float
    recorded_what: str = "the score recorded in the artifact"

    def check(self, recorded: Sequence[float], now: Sequence[float], drop: PairedDrop, *, samples: int,
              per_example_variances: Sequence[float] | None = None) -> Finding:
        if drop.n == 0:
            return Finding(doubt=(f"max_drop {self.max_drop:.3f} cannot be checked: no example is present both "
                                  f"now and in {self.recorded_what}"))
        if drop.drop <= self.max_drop + _EPS:
            return Finding()
        said = (f"score {st.mean(now):.3f} is {drop.drop:.3f} under {self.recorded_what} "
                f"({st.mean(recorded):.3f}) on the {drop.n} examples in both, more than max_drop "
                f"{self.max_drop:.3f}")
        low, high = drop.interval
        evidence = (f"paired drop {drop.drop:.3f} ({_level(drop.interval_level)} CI {low:.2f} to {high:.2f}; "
                    f"{drop.test}, one-sided p = {drop.p_value:.2g}")
        alpha = f"{1 - drop.confidence:.3g}"
        if drop.significant:
            return Finding(failure=f"{said}: {evidence} < {alpha}, significant)")
        examples = st.examples_needed(drop.drop, recorded, samples=samples, confidence=drop.confidence,
                                      per_example_variances=per_example_variances)
        more = st.samples_needed(drop.drop, recorded, samples=samples, confidence=drop.confidence,
                                 per_example_variances=per_example_variances)
        return Finding(doubt=(f"{said}, but not significantly: {evidence} >= {alpha}), so this is not decided; "
                              f"about {examples} examples would decide a drop of {drop.drop:.2f}, "
                              f"{_samples_advice(more)}"))


def _spread(values: Sequence[float]) -> float:
    centre = st.mean(values)
    return float((sum((v - centre) ** 2 for v in values) / len(values)) ** 0.5) if values else 0.0


def find_regressions(recorded: Mapping[str, float], now: Mapping[str, float],
                     feedback: Mapping[str, str] | None = None) -> list[Regression]:
    """Examples present in both whose score fell, the biggest falls first."""
    notes = feedback or {}
    falls = [Regression(eid, recorded[eid], now[eid], notes.get(eid, ""))
             for eid in recorded.keys() & now.keys() if now[eid] < recorded[eid] - _EPS]
    return sorted(falls, key=lambda r: (r.now - r.recorded, r.id))


@dataclass(frozen=True)
class Verdict:
    """What the gate decided, with every sentence behind it and the numbers the sentences quote."""

    status: str  # "passed" | "failed" | "inconclusive"
    failures: tuple[str, ...]
    doubts: tuple[str, ...]
    score: float
    interval: tuple[float, float]
    recorded: float | None
    drop: PairedDrop | None
    common: int
    regressions: tuple[Regression, ...]
    confidence: float = 0.95
    scored: int = 0

    @property
    def passed(self) -> bool:
        """An inconclusive verdict passes (with a warning, unless the run is strict)."""
        return self.status != "failed"

    def explain(self) -> str:
        """The failures (or else the doubts), then the examples that fell, with their feedback."""
        lines = list(self.failures or self.doubts)
        if self.regressions:
            lines.append(f"{len(self.regressions)} example(s) scored lower than when compiled:")
            for reg in self.regressions[:SHOWN_REGRESSIONS]:
                lines.append(f"  - {reg.id}: {reg.recorded:.2f} -> {reg.now:.2f}: "
                             f"{one_line(reg.feedback, FEEDBACK_LIMIT)}")
            if len(self.regressions) > SHOWN_REGRESSIONS:
                lines.append(f"  ... and {len(self.regressions) - SHOWN_REGRESSIONS} more")
        return "\n".join(lines)


def decide(now: Mapping[str, float], *, min_score: float | None, max_drop: float | None,
           recorded: Mapping[str, float] | None, confidence: float = 0.95, samples: int = 1,
           feedback: Mapping[str, str] | None = None,
           recorded_what: str = "the score recorded in the artifact",
           per_example_variances: Mapping[str, float] | None = None) -> Verdict:
    """Hold per-example scores (id -> mean over ``samples`` draws) to the thresholds.

    ``min_score`` applies to every scored example and fails when the score's upper bound is under
    it. ``max_drop`` compares only the examples present both now and in ``recorded``, paired, so
    added or removed rows can neither fake a regression nor hide one; it fails when the drop is
    significant at ``confidence`` and its point is over ``max_drop``. A miss of the point alone is
    a doubt: status "inconclusive". ``per_example_variances`` (id -> call-to-call variance of one
    draw, known when samples >= 2) sharpens the "how many would decide it" counts.
    """
    values = [now[eid] for eid in sorted(now)]
    failures: list[str] = []
    doubts: list[str] = []
    if values:
        interval = st.score_interval(values, confidence)
    else:
        interval = (0.0, 1.0)
        failures.append("no devset example was scored, so there is no score to hold to a threshold")
    if min_score is not None and values:
        _collect(MinScore(min_score).check(values, interval, confidence), failures, doubts)
    drop: PairedDrop | None = None
    old: float | None = None
    common: list[str] = []
    regressions: list[Regression] = []
    if recorded is not None:
        common = sorted(recorded.keys() & now.keys())
        then_values = [recorded[eid] for eid in common]
        now_values = [now[eid] for eid in common]
        drop = st.paired_drop(then_values, now_values, confidence)
        old = st.mean(then_values) if common else None
        regressions = find_regressions({eid: recorded[eid] for eid in common}, now, feedback)
        if max_drop is not None:
            variances = ([per_example_variances[eid] for eid in common if eid in per_example_variances]
                         if per_example_variances else None)
            finding = MaxDrop(max_drop, recorded_what).check(then_values, now_values, drop, samples=samples,
                                                             per_example_variances=variances or None)
            _collect(finding, failures, doubts)
    status = "failed" if failures else "inconclusive" if doubts else "passed"
    return Verdict(status=status, failures=tuple(failures), doubts=tuple(doubts), score=st.mean(values),
                   interval=interval, recorded=old, drop=drop, common=len(common),
                   regressions=tuple(regressions), confidence=confidence, scored=len(values))


def _collect(finding: Finding, failures: list[str], doubts: list[str]) -> None:
    if finding.failure:
        failures.append(finding.failure)
    if finding.doubt:
        doubts.append(finding.doubt)


@dataclass(frozen=True)
class Comparison:
    """Whether a freshly compiled candidate replaces the current artifact, and why."""

    replace: bool
    reason: str
    candidate: float
    current: float
    drop: PairedDrop  # current - candidate, paired: positive when the candidate is worse
    common: int


def compare_candidate(candidate: Mapping[str, float], current: Mapping[str, float], *,
                      confidence: float = 0.95) -> Comparison:
    """Compile mode: the candidate replaces the current artifact only if it is at least as good there.

    Both are scored on the same devset examples in the same run; only the examples scored for both
    count. The candidate must be higher in point and not significantly worse, paired per example;
    a tie keeps the current artifact, so recompiling an unchanged target never churns the file.
    """
    common = sorted(candidate.keys() & current.keys())
    ours = [candidate[eid] for eid in common]
    theirs = [current[eid] for eid in common]
    drop = st.paired_drop(theirs, ours, confidence)
    new, old = st.mean(ours), st.mean(theirs)
    where = f"on the same {len(common)} examples"
    if not common:
        return Comparison(False, "no devset example was scored for both the candidate and the current "
                                 "artifact, so the current artifact is kept", new, old, drop, 0)
    low, high = drop.interval
    paired = f"paired drop {drop.drop:.3f}, {_level(drop.interval_level)} CI {low:.2f} to {high:.2f}"
    if new > old + _EPS and not drop.significant:
        return Comparison(True, f"candidate {new:.3f} beats the current artifact {old:.3f} {where} ({paired})",
                          new, old, drop, len(common))
    if abs(new - old) <= _EPS:
        return Comparison(False, f"candidate {new:.3f} ties the current artifact {old:.3f} {where}; "
                                 "a tie keeps the current one", new, old, drop, len(common))
    return Comparison(False, f"candidate {new:.3f} is under the current artifact {old:.3f} {where} ({paired}); "
                             "the current one is kept", new, old, drop, len(common))


def resolution_note(max_drop: float | None, resolution: float | None, *, n: int, samples: int,
                    examples: int | None = None, samples_needed: int | None = None) -> str | None:
    """The warning when ``max_drop`` is finer than the devset resolves, else None.

    ``examples`` and ``samples_needed`` are ``statistics.examples_needed`` / ``samples_needed`` for
    ``max_drop``; ``devset_resolution`` computes all of it from the scores.
    """
    if max_drop is None or resolution is None or max_drop + _EPS >= resolution:
        return None
    scored = "once" if samples == 1 else f"{samples} times"
    if resolution > 1:
        # Even every example falling would not be significant: no drop is resolvable at all.
        note = (f"this devset of {n} examples, each scored {scored}, is too small for the paired test to detect "
                f"any drop (it needs about {math.ceil(resolution * n - _EPS)} examples to fall); max_drop "
                f"{max_drop:.2f} cannot be checked")
    else:
        note = (f"this devset of {n} examples, each scored {scored}, resolves drops of {resolution:.2f} or more; "
                f"max_drop {max_drop:.2f} is finer than that")
    if examples is None:
        return note
    return f"{note} and needs about {examples} examples, {_samples_advice(samples_needed)}"


def devset_resolution(per_example_scores: Sequence[float], max_drop: float | None, *, samples: int = 1,
                      confidence: float = 0.95,
                      per_example_variances: Sequence[float] | None = None) -> tuple[float, str | None]:
    """The devset's resolution (for the artifact) and the warning for a ``max_drop`` finer than it."""
    smallest = st.resolution(per_example_scores, samples=samples, confidence=confidence,
                             per_example_variances=per_example_variances)
    if max_drop is None or max_drop <= 0 or max_drop + _EPS >= smallest:
        return smallest, None
    examples = st.examples_needed(max_drop, per_example_scores, samples=samples, confidence=confidence,
                                  per_example_variances=per_example_variances)
    more = st.samples_needed(max_drop, per_example_scores, samples=samples, confidence=confidence,
                             per_example_variances=per_example_variances)
    return smallest, resolution_note(max_drop, smallest, n=len(per_example_scores), samples=samples,
                                     examples=examples, samples_needed=more)
