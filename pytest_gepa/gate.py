"""Threshold logic of the gate: pure functions over scores, no I/O, no LM.

Each threshold is a small check object that returns the sentence of its failure (or None), so a
failed gate reads like something a person would write.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SHOWN_REGRESSIONS = 5
# More than this share of examples erroring means the score says nothing about the prompt.
MAX_ERROR_SHARE = 0.1


@dataclass(frozen=True)
class MinScore:
    """The score must reach an absolute floor."""

    min_score: float

    def check(self, score: float, ci: tuple[float, float]) -> str | None:
        if score + 1e-12 >= self.min_score:
            return None
        return (f"score {score:.3f} (95% CI {ci[0]:.3f}-{ci[1]:.3f}) is under min_score {self.min_score:.3f}")


@dataclass(frozen=True)
class MaxDrop:
    """The score may not fall more than ``max_drop`` under a recorded score on the same examples."""

    max_drop: float
    recorded: float
    recorded_what: str = "the score recorded in the artifact"

    def check(self, score: float, ci: tuple[float, float]) -> str | None:
        drop = self.recorded - score
        if drop <= self.max_drop + 1e-12:
            return None
        return (f"score {score:.3f} (95% CI {ci[0]:.3f}-{ci[1]:.3f}) is {drop:.3f} under "
                f"{self.recorded_what} ({self.recorded:.3f}), more than max_drop {self.max_drop:.3f}")


Check = MinScore | MaxDrop


@dataclass(frozen=True)
class Regression:
    """An example that scored better when the artifact was compiled than it does now."""

    id: str
    recorded: float
    now: float
    feedback: str


def find_regressions(recorded: Mapping[str, float], now: Mapping[str, float],
                     feedback: Mapping[str, str]) -> list[Regression]:
    """Examples present in both whose score fell, the biggest falls first."""
    falls = [
        Regression(eid, recorded[eid], now[eid], feedback.get(eid, ""))
        for eid in recorded.keys() & now.keys()
        if now[eid] < recorded[eid] - 1e-9
    ]
    return sorted(falls, key=lambda r: (r.now - r.recorded, r.id))


def recorded_mean(recorded: Mapping[str, float], ids: Sequence[str] | set[str]) -> float | None:
    """The recorded mean over the given ids (the examples present both then and now)."""
    values = [recorded[eid] for eid in ids if eid in recorded]
    return sum(values) / len(values) if values else None


def error_share_too_high(errors: int, total: int) -> bool:
    return total > 0 and errors / total > MAX_ERROR_SHARE


@dataclass(frozen=True)
class GateVerdict:
    """What the gate decided and every sentence behind it."""

    passed: bool
    failures: tuple[str, ...]
    regressions: tuple[Regression, ...] = ()

    def explain(self) -> str:
        lines = list(self.failures)
        if self.regressions:
            lines.append(f"{len(self.regressions)} example(s) scored lower than when compiled:")
            for reg in self.regressions[:SHOWN_REGRESSIONS]:
                lines.append(f"  - {reg.id}: {reg.recorded:.2f} -> {reg.now:.2f}: {_one_line(reg.feedback)}")
            if len(self.regressions) > SHOWN_REGRESSIONS:
                lines.append(f"  ... and {len(self.regressions) - SHOWN_REGRESSIONS} more")
        return "\n".join(lines)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def confidence_interval(values: Sequence[float], *, level: float = 0.95, resamples: int = 2000) -> tuple[float, float]:
    """A percentile-bootstrap interval of the mean; seeded, so the same scores give the same interval."""
    if not values:
        return (0.0, 0.0)
    if len(set(values)) == 1:
        return (values[0], values[0])
    rng = random.Random(0)
    n = len(values)
    means = sorted(sum(rng.choice(values) for _ in range(n)) / n for _ in range(resamples))
    tail = (1 - level) / 2
    return (means[int(tail * resamples)], means[min(resamples - 1, int((1 - tail) * resamples))])


def assess(scores: Mapping[str, float], feedback: Mapping[str, str], *, min_score: float | None,
           max_drop: float | None, recorded: Mapping[str, float] | None,
           recorded_what: str = "the score recorded in the artifact") -> tuple[GateVerdict, float | None]:
    """Hold per-example scores to the thresholds; also return the recorded mean they were compared to.

    ``min_score`` applies to every scored example. ``max_drop`` compares only the examples present
    both now and in ``recorded``, so added or removed rows cannot fake a regression or hide one.
    """
    values = list(scores.values())
    failures: list[str] = []
    if min_score is not None:
        failures += _sentences([MinScore(min_score)], mean(values), confidence_interval(values))
    regressions: list[Regression] = []
    old = None
    if recorded:
        common = recorded.keys() & scores.keys()
        old = recorded_mean(recorded, common)
        if old is not None and max_drop is not None:
            now = [scores[eid] for eid in common]
            failures += _sentences([MaxDrop(max_drop, old, recorded_what)], mean(now), confidence_interval(now))
            regressions = find_regressions(recorded, {eid: scores[eid] for eid in common}, feedback)
    return GateVerdict(passed=not failures, failures=tuple(failures), regressions=tuple(regressions)), old


def _sentences(checks: Sequence[Check], score: float, ci: tuple[float, float]) -> list[str]:
    return [sentence for check in checks if (sentence := check.check(score, ci)) is not None]


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class GateResult:
    """What ``gepa.gate`` measured, for users who want their own asserts."""

    score: float
    ci: tuple[float, float]
    per_example: dict[str, float]
    passed: bool
    verdict: GateVerdict
    errors: int = 0
