"""A gate in up to two looks: decide, and when that is inconclusive draw again and decide once more.

The two looks split the test's level (``conditional.stage_levels``), so an unchanged artifact
fails at most 1 - confidence of the time over both. The second look draws the examples that fell
short of full marks today (``conditional.plan_more_draws``), as many times as the budget of
``max_samples`` draws per example leaves, and judges them by their new draws alone. Drawing is a
callback, so the flow (real LM calls) and the benchmark (a simulated world) run this same code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from pytest_gepa.verdict.conditional import Draws, plan_more_draws, second_stage_view, stage_levels
from pytest_gepa.verdict.statistics import mean
from pytest_gepa.verdict.thresholds import Verdict, decide

# Given {example id: how many more draws}, the new draws of each (ids it could not score left out).
DrawMore = Callable[[Mapping[str, int]], Mapping[str, list[float]]]


@dataclass(frozen=True)
class Staged:
    verdict: Verdict
    draws: dict[str, list[float]]  # what the deciding look judged: per example, its draws
    redrawn: int = 0  # examples drawn again
    each: int = 0  # how many more draws each of them got


def decide_in_stages(today: Draws, draw_more: DrawMore | None, *, min_score: float | None, max_drop: float | None,
                     recorded: Mapping[str, float] | None, recorded_draws: Draws | None, confidence: float,
                     samples: int, max_samples: int, feedback: Mapping[str, str] | None = None,
                     recorded_what: str = "the score recorded in the artifact") -> Staged:
    """The verdict on ``today``'s draws, with a second look bought by ``draw_more`` when in doubt."""
    n = len(today)
    budget = (max_samples - samples) * n if draw_more is not None else 0
    first, second = stage_levels(1 - confidence, staged=budget > 0)

    def judge(draws: Mapping[str, list[float]], level: float) -> Verdict:
        return decide({eid: mean(d) for eid, d in draws.items()}, min_score=min_score, max_drop=max_drop,
                      recorded=recorded, confidence=confidence, samples=samples, feedback=feedback,
                      recorded_what=recorded_what, now_draws=draws, recorded_draws=recorded_draws, level=level)

    first_draws = {eid: list(d) for eid, d in today.items()}
    verdict = judge(first_draws, first)
    plan = plan_more_draws(first_draws, budget) if verdict.status == "inconclusive" and budget > 0 else {}
    if not plan or draw_more is None:
        return Staged(verdict, first_draws)
    more = draw_more(plan)
    view = second_stage_view(first_draws, more)
    verdict = judge(view, second)
    each = next(iter(plan.values()))
    spent = sum(len(d) for d in first_draws.values()) + sum(len(d) for d in more.values())
    said = (f"{spent} draws spent on {n} examples: {len(plan)} drawn {each} more times after a first look "
            f"at level {first:.3g}, decided at level {second:.3g}")
    return Staged(replace(verdict, notes=(*verdict.notes, said), draws=spent), view, len(plan), each)
