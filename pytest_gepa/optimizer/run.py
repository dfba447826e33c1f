"""Running the optimizer: the only module that imports GEPA (and MIPROv2 / BootstrapFewShot).

It returns what happened (the program, its validation scores, the trajectory, how the run ended)
and raises ``OptimizerError`` when the run "succeeded" without ever producing a usable proposal,
which dspy's GEPA otherwise reports by silently returning the seed program.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pytest_gepa.errors import OptimizerError
from pytest_gepa.metrics import Metric, takes_gepa_arguments
from pytest_gepa.optimizer import draws as decisions
from pytest_gepa.optimizer.final_pick import pick_final
from pytest_gepa.optimizer.keeper import (
    CompileInterrupted,
    GracefulInterrupt,
    KeptState,
    StateKeeper,
    refuse_state_dirs,
)
from pytest_gepa.optimizer.others import run_other
from pytest_gepa.optimizer.outcome import OptimizationRun, RunWatch

# Fewer words than this is not an instruction (a weak reflection LM's one-word "proposals").
MIN_INSTRUCTION_WORDS = 3


@dataclass
class CompileObserver:
    """A GEPA callback: progress lines, the score trajectory, and what the proposals looked like."""

    progress: Callable[[str], None]
    budget: int | None = None
    iteration: int = 0
    accepted: int = 0
    proposals: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    trajectory: list[tuple[int, float]] = field(default_factory=list)
    best: float | None = None
    metric_calls: int = 0
    draws: Any = None  # the run's ``draws.Draws``: a resumed run continues with what it has seen
    _last_reported_best: float | None = None
    _last_reported_quarter: int = 0

    def on_valset_evaluated(self, event: dict[str, Any]) -> None:
        score = float(event["average_score"])
        if self.best is None or score > self.best:
            self.best = score
            self.trajectory.append((self.metric_calls, score))

    def on_budget_updated(self, event: dict[str, Any]) -> None:
        self.metric_calls = int(event["metric_calls_used"])
        remaining = event.get("metric_calls_remaining")
        if remaining is not None:
            self.budget = self.metric_calls + int(remaining)

    def on_proposal_end(self, event: dict[str, Any]) -> None:
        self.proposals.extend(str(text) for text in event.get("new_instructions", {}).values())

    def on_candidate_accepted(self, event: dict[str, Any]) -> None:
        self.accepted += 1

    def on_error(self, event: dict[str, Any]) -> None:
        exc = event.get("exception")
        self.errors.append(f"{type(exc).__name__}: {exc}")

    def on_iteration_end(self, event: dict[str, Any]) -> None:
        self.iteration = int(event["iteration"])
        # One line when the best score moves, else one per quarter of the budget: enough to see
        # the run is alive, never a line per iteration.
        quarter = max(1, (self.budget or 100) // 4)
        improved = self.best != self._last_reported_best
        if improved or self.metric_calls // quarter > self._last_reported_quarter:
            self._last_reported_best = self.best
            self._last_reported_quarter = self.metric_calls // quarter
            budget = f"/{self.budget}" if self.budget else ""
            best = "n/a" if self.best is None else f"{self.best:.3f}"
            self.progress(f"iteration {self.iteration}: best val {best}, metric calls {self.metric_calls}{budget}")


@dataclass
class EarlyStop:
    """A GEPA stop callback: stop once validation reaches ``stop_at`` or stalls for ``patience``
    iterations. It remembers why it stopped, for the artifact and the summary."""

    stop_at: float | None
    patience: int | None
    must_stop: Callable[[], str | None] = lambda: None
    reason: str | None = None
    forced: bool = False
    _best: float = float("-inf")
    _stalled: int = 0

    def __call__(self, gepa_state: Any) -> bool:
        why = self.must_stop()
        if why is not None:
            self.reason, self.forced = why, True
            return True
        scores = list(gepa_state.program_full_scores_val_set or [])
        best = max(scores) if scores else float("-inf")
        if self.stop_at is not None and best >= self.stop_at:
            self.reason = f"validation score {best:.3f} reached stop_at {self.stop_at:g}"
            return True
        if best > self._best:
            self._best, self._stalled = best, 0
        else:
            self._stalled += 1
        if self.patience is not None and self._stalled >= self.patience:
            self.reason = f"no validation improvement for {self.patience} iterations"
            return True
        return False


def gepa_metric(metric: Metric) -> Metric:
    """GEPA calls metrics with five arguments; adapt a plain (gold, pred) metric to that."""
    if takes_gepa_arguments(metric):
        return metric

    def five_argument_metric(gold: Any, pred: Any, trace: Any = None, pred_name: Any = None,
                             pred_trace: Any = None) -> Any:
        return metric(gold, pred)

    return five_argument_metric


def run_gepa(program: Any, trainset: list[Any], valset: list[Any], metric: Metric, *, task_lm: Any,
             reflection_lm: Any, budget: str | int, seed: int, threads: int, stop_at: float | None,
             patience: int | None, watch: RunWatch, progress: Callable[[str], None],
             options: dict[str, Any], state: KeptState | None = None,
             decision_samples: int = 1) -> OptimizationRun:
    """Run dspy's real GEPA on train/val and return the best program with what the run looked like.

    With ``decision_samples`` > 1, close acceptance calls and the final pick among the Pareto
    front's best are judged on up to that many draws (``pytest_gepa.optimizer.draws``). With
    ``state``, GEPA keeps its run state in ``state.run_dir`` (and continues from it when
    ``state.resuming``); Ctrl-C stops at the end of the iteration with the state kept.
    """
    import dspy

    observer = CompileObserver(progress=progress)
    gepa_kwargs = dict(options.pop("gepa_kwargs", {}) or {})
    refuse_state_dirs(options, gepa_kwargs)  # with the cache off too: state is never loaded from elsewhere
    # gepa's evaluation cache keys a score on (candidate, example id), and an id is a position in its own
    # list: with a validation split of its own, a candidate's validation score at position 3 would be read
    # from its minibatch score on training example 3. Only where dspy validates on the training set
    # (no validation split) is a remembered score a score of the same example.
    gepa_kwargs.setdefault("cache_evaluation", not valset)
    gepa_kwargs["callbacks"] = [*gepa_kwargs.get("callbacks", []), observer]
    early_stop = EarlyStop(stop_at=stop_at, patience=patience, must_stop=watch.must_stop)
    interrupt = GracefulInterrupt(progress)
    draws = observer.draws = decisions.Draws(program, trainset, valset, metric, task_lm, max(1, decision_samples),
                                             threads)
    if state is not None:
        StateKeeper.install(state, observer, early_stop, seed, options, gepa_kwargs)
    gepa_kwargs["stop_callbacks"] = [*gepa_kwargs.get("stop_callbacks", []), early_stop, interrupt]
    decisions.install(draws, gepa_kwargs, lambda: None if observer.budget is None
                      else observer.budget - observer.metric_calls)
    budget_kwargs: dict[str, Any] = {"auto": budget} if isinstance(budget, str) else {"max_metric_calls": budget}
    optimizer = dspy.GEPA(
        metric=gepa_metric(metric),
        reflection_lm=reflection_lm,
        num_threads=threads,
        seed=seed,
        track_stats=True,
        gepa_kwargs=gepa_kwargs,
        **{**budget_kwargs, **options},
    )
    started = time.perf_counter()
    with dspy.context(lm=task_lm), interrupt:
        try:
            optimized = optimizer.compile(program, trainset=trainset, valset=valset)
        except Exception as exc:
            if interrupt.requested:
                raise CompileInterrupted(observer.iteration, observer.metric_calls) from exc
            raise
    wall = time.perf_counter() - started
    if interrupt.requested:
        raise CompileInterrupted(observer.iteration, observer.metric_calls)
    if early_stop.forced:
        raise OptimizerError(f"the compile was stopped: {early_stop.reason}. The previous artifact is unchanged.")
    results = optimized.detailed_results
    scores = list(results.val_aggregate_scores)
    best, pick = results.best_idx, None
    if draws.samples > 1 and scores:
        before = draws.spent
        with dspy.context(lm=task_lm):
            pick = pick_final(draws, results)
        if pick is not None and pick.picked != best:
            best, optimized = pick.picked, results.candidates[pick.picked]
            optimized.detailed_results = results  # as dspy's own pick carries them
        observer.metric_calls += draws.spent - before
    run = OptimizationRun(
        optimizer="gepa",
        program=optimized,
        val_baseline=scores[0] if scores else None,
        val_optimized=scores[best] if scores else None,
        metric_calls=results.total_metric_calls + (pick.draws if pick is not None else 0),
        candidates=len(results.candidates),
        accepted_proposals=observer.accepted,
        trajectory=observer.trajectory,
        wall_time_s=round(wall, 3),
        decision_draws=draws.spent, decisions=decisions.summary(draws, pick),
        selection=None if pick is None else pick.record(),
    )
    _check_the_run_did_something(run, observer, *watch.reflection_calls())
    if run.stop_reason is None:
        saved = f"; {observer.budget - observer.metric_calls} metric calls saved" if observer.budget else ""
        run.stop_reason = f"{early_stop.reason}{saved}" if early_stop.reason else "budget used"
    return run


def _check_the_run_did_something(run: OptimizationRun, observer: CompileObserver, reflection_calls: int,
                                  reflection_error: str | None) -> None:
    """GEPA returns the seed program when no proposal was ever accepted; say why instead."""
    if run.candidates > 1 or (run.val_baseline is not None and run.val_baseline >= 1.0):
        return
    if reflection_error:
        raise OptimizerError(
            "GEPA accepted no new instruction because the reflection LM failed "
            f"(first error: {reflection_error}). Check --gepa-reflection-lm and its endpoint."
        )
    usable = [p for p in observer.proposals if len(p.split()) >= MIN_INSTRUCTION_WORDS]
    if observer.proposals and not usable:
        shown = ", ".join(repr(p) for p in observer.proposals[:3])
        raise OptimizerError(
            f"the reflection LM's proposals are not usable instructions ({shown}); "
            "use a stronger reflection model (--gepa-reflection-lm)."
        )
    if not observer.proposals and reflection_calls:
        # dspy's proposer logs a reply it cannot parse and moves on: no error reaches GEPA.
        raise OptimizerError(
            f"the reflection LM answered {reflection_calls} time(s) but its replies could not be parsed into an "
            "instruction; use a stronger reflection model (--gepa-reflection-lm)."
        )
    if not observer.proposals:
        detail = f" (errors: {observer.errors[0]})" if observer.errors else ""
        raise NothingToReflectOn(
            f"GEPA never asked the reflection LM for a proposal in {observer.iteration} iteration(s){detail}: "
            f"the program scored {run.val_baseline} on validation and no output could be reflected on (do the task "
            "LM's replies follow the adapter's format?), or the budget was too small for one (--gepa-budget)."
        )
    # Proposals were made and scored, none was better: a real result (the starting prompt may be
    # good already). The artifact is written, and says so.
    run.stop_reason = (f"none of {len(observer.proposals)} proposal(s) beat the starting instruction "
                       "on the validation split")


class NothingToReflectOn(OptimizerError):
    """GEPA never reflected: no program output reached the metric. The plugin looks for the cause."""


def run_optimizer(name: str, program: Any, trainset: list[Any], valset: list[Any], metric: Metric, *,
                  task_lm: Any, reflection_lm: Any, budget: str | int, seed: int, threads: int,
                  stop_at: float | None, patience: int | None, watch: RunWatch, progress: Callable[[str], None],
                  options: dict[str, Any], state: KeptState | None = None,
                  decision_samples: int = 1) -> OptimizationRun:
    """Run the named optimizer; every optimizer reports the same ``OptimizationRun``."""
    if name == "gepa":
        return run_gepa(program, trainset, valset, metric, task_lm=task_lm, reflection_lm=reflection_lm,
                        budget=budget, seed=seed, threads=threads, stop_at=stop_at, patience=patience,
                        watch=watch, progress=progress, options=options, state=state,
                        decision_samples=decision_samples)
    return run_other(name, program, trainset, valset, metric, task_lm=task_lm, reflection_lm=reflection_lm,
                     budget=budget, seed=seed, threads=threads, stop_at=stop_at, watch=watch, progress=progress,
                     options=options)
