"""GEPA's decisions made on evidence: close calls judged on fresh draws, not on the draw that prompted them.

GEPA decides on single draws: a proposal is accepted when its one minibatch score beats its
parent's, and the best candidate is the one with the best single validation score. A model that
answers the same request differently from call to call turns those decisions into luck, and the luck
is not neutral: the reflection LM wrote the proposal *because* of the parent's failures on that
minibatch, so a failure that was a bad draw yields a proposal that looks better only by it. ``Draws``
spends fresh draws (new LM calls, past dspy's cache) only where they can change a decision; the
first draws say where to look, the fresh ones decide:

- **Acceptance** (gepa's ``acceptance_criterion`` hook, ``DrawnAcceptance``): when the first draws'
  margin is at most one example's score, each example on which parent and child scored differently
  is drawn ``samples - 1`` more times, and the proposal is accepted when the fresh draws keep more
  than half of the first draws' improvement (a first-draw rejection is overturned by more than half
  an example).
- **The final pick** (``final_pick.pick_final``): the Pareto front's best few are drawn again where
  their first validation draws disagree, and the two best until the draws separate them.

Who is drawn: until the LM has been seen answering one request two ways, only the side that fell
behind on the example (the parent, whose draws are the ones the reflection read, or the child), so a
deterministic LM costs ``samples - 1`` calls per disputed example. Once any (program, example) was
drawn twice with different scores (fresh draws, GEPA's own repeated evaluations of one candidate,
copies of one instruction), both sides are drawn for the rest of the run: noise, once seen, is never
assumed away. Draws of a program on an example from earlier decisions count as fresh for later
ones. Every draw counts against GEPA's metric-call budget (``state.increment_evals``) and, as an LM
call, against --gepa-max-cost through the run's meter.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from statistics import mean
from typing import Any

from pytest_gepa.evaluate import copy_program, draw_once
from pytest_gepa.metrics import Metric

Side = tuple[str, Any]  # (candidate key, program)


@dataclass
class Draws:
    """The draws behind decisions: per (candidate, split, example), the scores seen, and whether the
    LM was ever seen answering one request two ways."""

    student: Any
    trainset: Sequence[Any]
    valset: Sequence[Any]
    metric: Metric
    lm: Any
    samples: int
    threads: int
    budget_left: Callable[[], int | None] = lambda: None
    spent: int = 0  # metric calls (draws) spent on decisions beyond GEPA's own
    decisions: int = 0  # decisions that got fresh draws
    overturned: int = 0  # decisions the fresh draws made otherwise than the first draws
    varied: bool = False  # some (program, example) was drawn twice with different scores
    _scores: dict[tuple[str, str, Any], list[float]] = field(default_factory=dict)
    _gepa_val: dict[tuple[str, Any], list[float]] = field(default_factory=dict)  # GEPA's validation draws

    @property
    def active(self) -> bool:
        return self.samples > 1

    def state(self) -> dict[str, Any]:
        """What a resumed run needs to take the same path (JSON: kept beside gepa's own state)."""
        return {"spent": self.spent, "decisions": self.decisions, "overturned": self.overturned,
                "varied": self.varied,
                "scores": [[key, split, eid, scores] for (key, split, eid), scores in self._scores.items()],
                "gepa_val": [[key, eid, scores] for (key, eid), scores in self._gepa_val.items()]}

    def restore(self, saved: dict[str, Any]) -> None:
        self.spent, self.decisions = int(saved["spent"]), int(saved["decisions"])
        self.overturned, self.varied = int(saved.get("overturned", 0)), bool(saved.get("varied", False))
        self._scores = {(str(key), str(split), eid): [float(s) for s in scores]
                        for key, split, eid, scores in saved["scores"]}
        self._gepa_val = {(str(key), eid): [float(s) for s in scores] for key, eid, scores in saved.get("gepa_val", [])}

    def seen(self, key: str, split: str, eid: Any) -> list[float]:
        return self._scores.setdefault((key, split, eid), [])

    def note(self, key: str, split: str, eid: Any, score: float) -> None:
        """Keep a draw as evidence for later decisions; a draw unlike an earlier one shows the LM varies."""
        seen = self.seen(key, split, eid)
        if seen and score not in seen:
            self.varied = True
        seen.append(score)

    def program_for(self, candidate: dict[str, str]) -> Any | None:
        """The student with ``candidate``'s instructions, as dspy's adapter builds it; None when the
        candidate holds components that are not predictors' instructions (code: not drawn here)."""
        program = copy_program(self.student)
        names = {name for name, _ in program.named_predictors()}
        if not set(candidate) <= names:
            return None
        for name, predictor in program.named_predictors():
            if name in candidate:
                predictor.signature = predictor.signature.with_instructions(candidate[name])
        return program

    # ------------------------------------------------------------------ GEPA's own draws, for free

    def on_valset_evaluated(self, event: dict[str, Any]) -> None:
        """A gepa callback: GEPA's validation draws of each candidate, pooled per instruction (a copy
        of an instruction evaluated again is a second draw of the same program)."""
        key = candidate_key(dict(event["candidate"]))
        for eid, score in dict(event["scores_by_val_id"]).items():
            pooled = self._gepa_val.setdefault((key, eid), [])
            if pooled and float(score) not in pooled:
                self.varied = True
            pooled.append(float(score))

    def gepa_val(self, key: str, eid: Any) -> list[float]:
        return self._gepa_val.get((key, eid), [])

    # ------------------------------------------------------------------ fresh draws

    def _draw(self, jobs: list[tuple[str, Any, str, Any]]) -> int:
        """Draw each (key, program, split, example id) once more, within the budget; how many were drawn."""
        left = self.budget_left()
        if left is not None:
            jobs = jobs[:max(0, left)]
        if not jobs:
            return 0

        def one(job: tuple[str, Any, str, Any]) -> float | None:
            _, program, split, eid = job
            examples = self.trainset if split == "train" else self.valset
            return draw_once(program, examples[eid], self.metric, self.lm)

        context = contextvars.copy_context()
        with ThreadPoolExecutor(max_workers=max(1, min(self.threads, len(jobs)))) as pool:
            results = list(pool.map(lambda job: context.copy().run(one, job), jobs))
        self.spent += len(jobs)
        for (key, _, split, eid), score in zip(jobs, results, strict=True):
            if score is not None:  # an LM error is no evidence; the run's meter stops a failing LM
                self.note(key, split, eid, score)
        return len(jobs)

    def fresh(self, split: str, wanted: Callable[[], list[tuple[Side, Any]]]) -> list[int]:
        """Draw until every (side, example) that ``wanted`` names has its fresh draws; ``wanted`` is
        asked again after each round (a round that shows the LM varying asks for more)."""
        drawn: list[int] = []
        while True:
            jobs = [(key, program, split, eid) for (key, program), eid in wanted()]
            if not jobs:
                return drawn
            count = self._draw(jobs)
            drawn.append(count)
            if count < len(jobs):
                return drawn  # the budget is used up: decide on what there is

    def per_side(self) -> int:
        """Fresh draws per side and disputed example: samples - 1 (with the first draw, ``samples``)."""
        return max(1, self.samples - 1)


def candidate_key(candidate: dict[str, str]) -> str:
    return "\0".join(f"{name}\0{text}" for name, text in sorted(candidate.items()))


def _kept_margin(first_margin: float) -> float:
    """What the fresh draws' margin must exceed: half the first draws' improvement (most of the draws
    must side with it), or, to overturn a first-draw rejection, half an example."""
    return (first_margin if first_margin > 0 else 1.0) / 2


class DrawnAcceptance:
    """gepa's acceptance criterion: strict improvement of the minibatch sum, as gepa's default, but a
    close call (a margin of at most one example's score) is decided on fresh draws."""

    def __init__(self, draws: Draws) -> None:
        self.draws = draws

    def should_accept(self, proposal: Any, state: Any) -> bool:
        before = [float(score) for score in proposal.subsample_scores_before or []]
        after = [float(score) for score in proposal.subsample_scores_after or []]
        ids = list(proposal.subsample_indices or [])
        margin = sum(after) - sum(before)
        parents = list(proposal.parent_program_ids or [])
        if abs(margin) > 1.0 or not self.draws.active or len(ids) != len(before) or len(ids) != len(after) \
                or len(parents) != 1:
            return margin > 0
        parent_candidate = state.program_candidates[parents[0]]
        parent, child = self.draws.program_for(parent_candidate), self.draws.program_for(proposal.candidate)
        if parent is None or child is None:
            return margin > 0
        sides = ((candidate_key(parent_candidate), parent), (candidate_key(proposal.candidate), child))
        spent = self.draws.spent
        accepted = self.decide(sides, ids, before, after, margin)
        if self.draws.spent > spent:
            state.increment_evals(self.draws.spent - spent)  # the extra draws are part of the budget
        # The first draws become evidence for later decisions (they decide nothing now).
        for (key, _), scores in zip(sides, (before, after), strict=True):
            for eid, score in zip(ids, scores, strict=True):
                self.draws.note(key, "train", eid, score)
        return accepted

    def decide(self, sides: tuple[Side, Side], ids: list[Any], before: list[float], after: list[float],
               margin: float) -> bool:
        draws = self.draws
        first = dict(zip(ids, zip(before, after, strict=True), strict=True))
        disputed = [eid for eid in ids if first[eid][0] != first[eid][1]]
        if not disputed:
            return margin > 0

        def behind(eid: Any) -> int:
            """The side whose first draw is doubted: the one that fell behind."""
            return 0 if first[eid][1] > first[eid][0] else 1

        # Draws taken before this proposal (earlier decisions, GEPA's earlier evaluations) count as fresh.
        def wanted() -> list[tuple[Side, Any]]:
            need = draws.per_side()
            return [(side, eid) for eid in disputed for i, side in enumerate(sides)
                    if (draws.varied or i == behind(eid)) and len(draws.seen(side[0], "train", eid)) < need]

        draws.decisions += 1
        draws.fresh("train", wanted)

        def score(i: int, eid: Any) -> float:
            fresh = draws.seen(sides[i][0], "train", eid)
            return mean(fresh) if fresh else first[eid][i]

        fresh_margin = sum(score(1, eid) - score(0, eid) for eid in disputed)
        accepted = fresh_margin > _kept_margin(margin) + 1e-9
        if accepted != (margin > 0):
            draws.overturned += 1
        return accepted


@dataclass
class KeepForFinalPick:
    """A gepa stop callback: end the search while enough budget is left for the final pick's draws."""

    draws: Draws
    budget_left: Callable[[], int | None]
    reserve: int

    def __call__(self, gepa_state: Any) -> bool:
        left = self.budget_left()
        return self.draws.active and left is not None and left <= self.reserve


def install(draws: Draws, gepa_kwargs: dict[str, Any], budget_left: Callable[[], int | None]) -> None:
    """Point gepa's acceptance criterion at ``draws`` (unless the caller chose one of their own), record
    GEPA's validation draws, and keep a reserve of the budget for the final pick's draws."""
    if draws.samples <= 1:
        return
    draws.budget_left = budget_left
    gepa_kwargs.setdefault("acceptance_criterion", DrawnAcceptance(draws))
    gepa_kwargs["callbacks"] = [*gepa_kwargs.get("callbacks", []), draws]
    reserve = len(draws.valset) * (draws.samples - 1)
    gepa_kwargs["stop_callbacks"] = [*gepa_kwargs.get("stop_callbacks", []),
                                     KeepForFinalPick(draws, budget_left, reserve)]


def summary(draws: Draws, pick: Any) -> str | None:
    """What the summary says about the draws that went into decisions; None with one sample."""
    if draws.samples <= 1:
        return None
    text = (f"{draws.spent} extra draw(s) went into {draws.decisions} close decision(s) "
            f"(gepa_compile_samples {draws.samples}), {draws.overturned} of them decided otherwise than the "
            "first draws")
    text += ("; the task LM answered some request two ways, so both sides were drawn" if draws.varied
             else "; the task LM never answered a request two ways, so only the side behind was drawn")
    if pick is not None:
        shown = ", ".join(f"#{i} {m:.3f}" for i, m in zip(pick.compared, pick.means, strict=True))
        how = "on validation" if pick.varied else "without drawing (fresh draws would repeat the first)"
        text += f"; the final pick compared candidates {shown} {how} and kept #{pick.picked}"
    return text
