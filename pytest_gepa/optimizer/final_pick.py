"""The final pick: among the Pareto front's best few, the best on fresh paired validation draws.

GEPA returns the candidate with the best single validation score. With a model that answers one
request differently from call to call, the best single score is partly the luckiest draw, and two
candidates a rule apart often tie on it. Here the front's best few (copies of one instruction are one
candidate, their validation draws pooled) are drawn again where their first draws disagree, and, while
the LM varies, the two best are drawn until they are ``SEPARATION`` standard errors apart; the best
total wins and a tie keeps GEPA's pick. The artifact records which were compared and how.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import mean
from typing import Any

from pytest_gepa.optimizer.draws import Draws, candidate_key

# How many of the front's best candidates the final pick compares (the leader included).
FINAL_FEW = 3
# The two best are drawn until they are this many standard errors apart, or each has FINAL_CAP x
# samples draws of every example in dispute.
SEPARATION = 2.0
FINAL_CAP = 3


@dataclass
class FinalPick:
    """Which candidates the final pick compared, and how: for the artifact's optimizer record."""

    compared: list[int]
    means: list[float]
    picked: int
    gepa_pick: int
    samples: int
    draws: int
    disputed: int = 0
    varied: bool = True

    def record(self) -> dict[str, Any]:
        return {"compared": self.compared, "val_means": [round(m, 4) for m in self.means], "picked": self.picked,
                "gepa_pick": self.gepa_pick, "samples": self.samples, "max_draws_per_example": FINAL_CAP * self.samples,
                "draws": self.draws, "disputed_examples": self.disputed, "task_lm_varied": self.varied,
                "method": "paired on the validation split: each example where the compared candidates' first "
                          "draws disagree is drawn samples - 1 more times for each and scored on the fresh draws, "
                          "then the two best where their draws disagree until they are two standard errors apart "
                          "or max_draws_per_example is reached; the best mean wins, a tie keeps GEPA's pick. A task "
                          "LM that never answered a request two ways in the run gets no draws: GEPA's pick stands"}


def pick_final(draws: Draws, results: Any) -> FinalPick | None:
    """Among the Pareto front's best few by validation score, the best on fresh paired draws.

    ``results`` is dspy's ``DspyGEPAResult`` (candidates as programs, per-example validation scores).
    Copies of one instruction are one candidate, their validation draws pooled. None when there is
    nothing to choose between.
    """
    gepa_pick = int(results.best_idx)
    front = {int(i) for members in results.per_val_instance_best_candidates.values() for i in members}
    front.add(gepa_pick)
    texts = {i: {name: p.signature.instructions for name, p in results.candidates[i].named_predictors()}
             for i in front}
    contest = _Contest(draws, {i: candidate_key(texts[i]) for i in front}, [dict(s) for s in results.val_subscores],
                       gepa_pick)
    # One index per instruction: GEPA's pick for its own, else the earliest copy.
    distinct: dict[str, int] = {}
    for i in sorted(front, key=lambda i: (i != gepa_pick, i)):
        distinct.setdefault(contest.keys[i], i)
    few = contest.ranked(list(distinct.values()), first_only=True)[:FINAL_FEW]
    programs = {i: draws.program_for(texts[i]) for i in few}
    if len(few) < 2 or any(p is None for p in programs.values()):
        return None
    spent = draws.spent
    disputed = contest.settle(few, programs)
    means = {i: contest.total(i) / len(contest.ids) if contest.ids else 0.0 for i in few}
    picked = contest.ranked(few)[0]
    if picked != gepa_pick and gepa_pick in few:
        draws.overturned += 1
    return FinalPick(compared=few, means=[means[i] for i in few], picked=picked, gepa_pick=gepa_pick,
                     samples=draws.samples, draws=draws.spent - spent, disputed=disputed, varied=draws.varied)


class _Contest:
    """The final pick's evidence: each candidate's first validation draws (GEPA's, copies pooled) and
    the fresh ones taken where the compared candidates' first draws disagree."""

    def __init__(self, draws: Draws, keys: dict[int, str], subscores: list[dict[Any, float]], gepa_pick: int) -> None:
        self.draws, self.keys, self.subscores, self.gepa_pick = draws, keys, subscores, gepa_pick
        self.ids = list(range(len(draws.valset)))

    def first(self, i: int, eid: Any) -> float:
        pooled = self.draws.gepa_val(self.keys[i], eid)
        return mean(pooled) if pooled else float(self.subscores[i].get(eid, 0.0))

    def drawn(self, i: int, eid: Any) -> list[float]:
        return self.draws.seen(self.keys[i], "val", eid)

    def total(self, i: int, *, first_only: bool = False) -> float:
        return sum(mean(self.drawn(i, eid)) if self.drawn(i, eid) and not first_only else self.first(i, eid)
                   for eid in self.ids)

    def ranked(self, candidates: list[int], *, first_only: bool = False) -> list[int]:
        return sorted(candidates, key=lambda i: (-round(self.total(i, first_only=first_only), 9),
                                                 i != self.gepa_pick, i))

    def settle(self, few: list[int], programs: dict[int, Any]) -> int:
        """Draw the disputed examples (those some candidate's first draw fell behind on) ``samples - 1``
        more times for every candidate, then the two best where their draws disagree, until they are
        ``SEPARATION`` standard errors apart or drawn ``FINAL_CAP`` x samples times. Nothing is drawn
        for a task LM that never answered a request two ways in the whole run (every close call's
        disputed examples were drawn again): fresh draws would repeat the first. Returns how many
        examples were disputed."""
        draws = self.draws
        best = {eid: max(self.first(i, eid) for i in few) for eid in self.ids}
        disputed = [eid for eid in self.ids if any(self.first(i, eid) < best[eid] for i in few)]
        if not disputed or not draws.varied:
            return len(disputed)
        draws.decisions += 1
        need = draws.per_side()
        self.fill([(i, eid) for eid in disputed for i in few], need, programs)
        while need < FINAL_CAP * draws.samples:
            a, b = self.ranked(few)[:2]
            open_ids = [eid for eid in disputed if len({*self.drawn(a, eid), *self.drawn(b, eid)}) > 1]
            pairs = [(self.drawn(a, eid), self.drawn(b, eid)) for eid in open_ids]
            if not open_ids or _separated(self.total(a) - self.total(b), pairs):
                break
            need += 1
            if not self.fill([(i, eid) for eid in open_ids for i in (a, b)], need, programs):
                break  # the budget is used up
        return len(disputed)

    def fill(self, jobs: list[tuple[int, Any]], need: int, programs: dict[int, Any]) -> int:
        """Draw each (candidate, example) of ``jobs`` up to ``need`` draws; how many draws that took."""
        before = self.draws.spent
        self.draws.fresh("val", lambda: [((self.keys[i], programs[i]), eid) for i, eid in jobs
                                         if len(self.drawn(i, eid)) < need])
        return self.draws.spent - before


def _separated(difference: float, pairs: list[tuple[list[float], list[float]]]) -> bool:
    """Whether a difference of totals is ``SEPARATION`` standard errors clear of zero. Each example's
    variance is that of a score in [0, 1] with its mean pulled half a draw towards 1/2, so a few draws
    that happen to agree are never taken for certainty."""
    variance = 0.0
    for side_a, side_b in pairs:
        for scores in (side_a, side_b):
            if scores:
                shrunk = (sum(scores) + 0.5) / (len(scores) + 1)
                variance += shrunk * (1 - shrunk) / len(scores)
    return abs(difference) >= SEPARATION * math.sqrt(variance)
