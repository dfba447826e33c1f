"""GEPA's decisions made on evidence: close calls re-drawn, the final pick a paired comparison.

GEPA decides on single draws: a proposal is accepted when its one minibatch score beats its
parent's, and the best candidate is the one with the best single validation score. A model that
answers the same request differently from call to call (temperature, provider-side sampling)
turns those decisions into luck. ``Draws`` spends more draws (fresh LM calls, past dspy's cache)
only where they can change a decision:

- **Acceptance** (gepa's ``acceptance_criterion`` hook, ``DrawnAcceptance``): when the first
  draw's margin is at most one example's score, the examples on which parent and child scored
  differently are drawn again for both, up to ``samples`` draws each; the decision is on the means.
- **The final pick** (``pick_final``): the Pareto front's best few by validation mean are compared
  pairwise with the leader on the validation examples where they disagree, drawn again up to
  ``samples`` times; the best mean wins, a tie keeps GEPA's own pick.

An example is drawn again only while its draws disagree: once a re-draw agrees with the first draw
for both programs, it is settled. Once ``DETERMINISTIC_AFTER`` re-drawn (program, example) pairs all
agreed with their first draws and none ever differed, the LM is taken to be deterministic and no
more draws are spent (a deterministic world costs no more than a few calls). Every draw counts
against GEPA's metric-call budget (``state.increment_evals``) and, as an LM call, against
--gepa-max-cost through the run's meter.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from statistics import mean
from typing import Any

from pytest_gepa.evaluate import draw_once
from pytest_gepa.metrics import Metric

# Re-drawn (program, example) pairs that all agreed, and none ever differed: a deterministic LM.
DETERMINISTIC_AFTER = 4
# How many of the front's best candidates the final pick compares (the leader included).
FINAL_FEW = 3


@dataclass
class Draws:
    """The draws taken for decisions: per (candidate, split, example) the scores seen so far."""

    student: Any
    trainset: Sequence[Any]
    valset: Sequence[Any]
    metric: Metric
    lm: Any
    samples: int
    threads: int
    budget_left: Callable[[], int | None] = lambda: None
    spent: int = 0  # metric calls (draws) spent on decisions beyond GEPA's own
    decisions: int = 0  # decisions that got more than one draw
    agreed: int = 0  # re-drawn pairs whose draws all matched the first
    differed: int = 0  # re-drawn pairs with at least one draw unlike the first
    _scores: dict[tuple[str, str, Any], list[float]] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """False with one sample, or once the LM showed itself deterministic."""
        return self.samples > 1 and not self.deterministic

    @property
    def deterministic(self) -> bool:
        return self.differed == 0 and self.agreed >= DETERMINISTIC_AFTER

    def state(self) -> dict[str, Any]:
        """What a resumed run needs to take the same path (JSON: kept beside gepa's own state)."""
        return {"spent": self.spent, "decisions": self.decisions, "agreed": self.agreed, "differed": self.differed,
                "scores": [[key, split, eid, scores] for (key, split, eid), scores in self._scores.items()]}

    def restore(self, saved: dict[str, Any]) -> None:
        self.spent, self.decisions = int(saved["spent"]), int(saved["decisions"])
        self.agreed, self.differed = int(saved["agreed"]), int(saved["differed"])
        self._scores = {(str(key), str(split), eid): [float(s) for s in scores]
                        for key, split, eid, scores in saved["scores"]}

    def seen(self, key: str, split: str, eid: Any) -> list[float]:
        return self._scores.setdefault((key, split, eid), [])

    def program_for(self, candidate: dict[str, str]) -> Any | None:
        """The student with ``candidate``'s instructions, as dspy's adapter builds it; None when the
        candidate holds components that are not predictors' instructions (code: not drawn here)."""
        program = self.student.deepcopy()
        names = {name for name, _ in program.named_predictors()}
        if not set(candidate) <= names:
            return None
        for name, predictor in program.named_predictors():
            if name in candidate:
                predictor.signature = predictor.signature.with_instructions(candidate[name])
        return program

    def _draw(self, jobs: list[tuple[str, Any, str, Any]]) -> None:
        """Draw each (key, program, split, example id) once more, within the budget."""
        left = self.budget_left()
        if left is not None:
            jobs = jobs[:max(0, left)]
        if not jobs:
            return

        def one(job: tuple[str, Any, str, Any]) -> float | None:
            _, program, split, eid = job
            examples = self.trainset if split == "train" else self.valset
            return draw_once(program, examples[eid], self.metric, self.lm)

        context = contextvars.copy_context()
        with ThreadPoolExecutor(max_workers=max(1, min(self.threads, len(jobs)))) as pool:
            results = list(pool.map(lambda job: context.copy().run(one, job), jobs))
        self.spent += len(jobs)
        for (key, _, split, eid), score in zip(jobs, results, strict=True):
            if score is None:  # an LM error is no evidence; the run's meter stops a failing LM
                continue
            seen = self.seen(key, split, eid)
            seen.append(score)
            if len(seen) == 2:  # each pair's first re-draw tells whether the LM varies
                if seen[1] == seen[0]:
                    self.agreed += 1
                else:
                    self.differed += 1

    def compare(self, split: str, ids: Sequence[Any], a: tuple[str, Any, dict[Any, float]],
                b: tuple[str, Any, dict[Any, float]]) -> tuple[float, float]:
        """Paired means of two programs on ``ids``; each is (key, program, first draw by id).

        Only the examples where the two disagree can change which is better: those are drawn
        again, for both, until their draws agree with the first or ``samples`` draws are taken.
        """
        (key_a, prog_a, first_a), (key_b, prog_b, first_b) = a, b
        for key, first in ((key_a, first_a), (key_b, first_b)):
            for eid in ids:
                if eid in first and not self.seen(key, split, eid):
                    self.seen(key, split, eid).append(float(first[eid]))
        open_ids = [eid for eid in ids if self._mean(key_a, split, eid) != self._mean(key_b, split, eid)]
        if open_ids and self.active:
            self.decisions += 1
        while open_ids and self.active:
            jobs = [job for eid in open_ids for job in ((key_a, prog_a, split, eid), (key_b, prog_b, split, eid))
                    if len(self.seen(job[0], split, eid)) < self.samples]
            if not jobs:
                break
            before = self.spent
            self._draw(jobs)
            if self.spent == before:
                break  # the budget is used up
            open_ids = [eid for eid in open_ids if not self._settled(key_a, key_b, split, eid)]
        return (mean(self._mean(key_a, split, eid) for eid in ids) if ids else 0.0,
                mean(self._mean(key_b, split, eid) for eid in ids) if ids else 0.0)

    def _settled(self, key_a: str, key_b: str, split: str, eid: Any) -> bool:
        """Settled once both programs' draws all agree (the disagreement looks real), or both
        reached ``samples`` draws."""
        draws = (self.seen(key_a, split, eid), self.seen(key_b, split, eid))
        if all(len(d) >= self.samples for d in draws):
            return True
        return all(len(d) >= 2 and len(set(d)) == 1 for d in draws)

    def _mean(self, key: str, split: str, eid: Any) -> float:
        scores = self.seen(key, split, eid)
        return mean(scores) if scores else 0.0


def candidate_key(candidate: dict[str, str]) -> str:
    return "\0".join(f"{name}\0{text}" for name, text in sorted(candidate.items()))


class DrawnAcceptance:
    """gepa's acceptance criterion: strict improvement of the minibatch sum, as gepa's default,
    but a close call (a margin of at most one example's score) is judged on more draws."""

    def __init__(self, draws: Draws) -> None:
        self.draws = draws

    def should_accept(self, proposal: Any, state: Any) -> bool:
        before = [float(score) for score in proposal.subsample_scores_before or []]
        after = [float(score) for score in proposal.subsample_scores_after or []]
        ids = list(proposal.subsample_indices or [])
        margin = sum(after) - sum(before)
        if abs(margin) > 1.0 or not self.draws.active or len(ids) != len(before) or len(ids) != len(after):
            return margin > 0
        parents = list(proposal.parent_program_ids or [])
        if len(parents) != 1:
            return margin > 0
        parent_candidate = state.program_candidates[parents[0]]
        parent, child = self.draws.program_for(parent_candidate), self.draws.program_for(proposal.candidate)
        if parent is None or child is None:
            return margin > 0
        spent = self.draws.spent
        mean_before, mean_after = self.draws.compare(
            "train", ids, (candidate_key(parent_candidate), parent, dict(zip(ids, before, strict=True))),
            (candidate_key(proposal.candidate), child, dict(zip(ids, after, strict=True))))
        if self.draws.spent > spent:
            state.increment_evals(self.draws.spent - spent)  # the extra draws are part of the budget
        return mean_after > mean_before


@dataclass
class FinalPick:
    """Which candidates the final pick compared, and how: for the artifact's optimizer record."""

    compared: list[int]
    means: list[float]
    picked: int
    gepa_pick: int
    samples: int
    draws: int

    def record(self) -> dict[str, Any]:
        return {"compared": self.compared, "val_means": [round(m, 4) for m in self.means], "picked": self.picked,
                "gepa_pick": self.gepa_pick, "max_draws_per_example": self.samples, "draws": self.draws,
                "method": "paired on the validation split: the examples where a candidate and the leader "
                          "disagree drawn again until their draws agree or max_draws_per_example is reached; "
                          "the best mean wins, a tie keeps GEPA's pick"}


def pick_final(draws: Draws, results: Any) -> FinalPick | None:
    """Among the Pareto front's best few by validation score, the best by paired means over draws.

    ``results`` is dspy's ``DspyGEPAResult`` (candidates as programs, per-example validation scores).
    None when there is nothing to choose between.
    """
    scores = list(results.val_aggregate_scores)
    subscores = list(results.val_subscores)
    gepa_pick = int(results.best_idx)
    front = {int(i) for members in results.per_val_instance_best_candidates.values() for i in members}
    front.add(gepa_pick)
    few = sorted(front, key=lambda i: (-scores[i], i != gepa_pick, i))[:FINAL_FEW]
    if len(few) < 2:
        return None
    ids = list(range(len(draws.valset)))
    spent = draws.spent
    leader = few[0]
    means = {leader: scores[leader]}

    def side(i: int) -> tuple[str, Any, dict[Any, float]]:
        return f"final:{i}", results.candidates[i], dict(subscores[i])

    for other in few[1:]:
        means[leader], means[other] = draws.compare("val", ids, side(leader), side(other))
    picked = max(few, key=lambda i: (means[i], i == gepa_pick))
    return FinalPick(compared=few, means=[means[i] for i in few], picked=picked, gepa_pick=gepa_pick,
                     samples=draws.samples, draws=draws.spent - spent)


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
    """Point gepa's acceptance criterion at ``draws`` and keep a reserve for the final pick (one more
    draw per validation example), unless the caller chose an acceptance criterion of their own."""
    if draws.samples <= 1:
        return
    draws.budget_left = budget_left
    gepa_kwargs.setdefault("acceptance_criterion", DrawnAcceptance(draws))
    reserve = len(draws.valset) * (draws.samples - 1)
    gepa_kwargs["stop_callbacks"] = [*gepa_kwargs.get("stop_callbacks", []),
                                     KeepForFinalPick(draws, budget_left, reserve)]


def summary(draws: Draws, pick: FinalPick | None) -> str | None:
    """What the summary says about the draws that went into decisions; None with one sample."""
    if draws.samples <= 1:
        return None
    text = (f"{draws.spent} extra draw(s) went into {draws.decisions} close decision(s) "
            f"(gepa_compile_samples {draws.samples})")
    if draws.deterministic:
        text += "; the task LM answered every re-draw alike, so no more were spent"
    if pick is not None:
        shown = ", ".join(f"#{i} {m:.3f}" for i, m in zip(pick.compared, pick.means, strict=True))
        text += f"; the final pick compared candidates {shown} on validation and kept #{pick.picked}"
    return text
