"""The optimizers that are not GEPA: MIPROv2 and BootstrapFewShot, seen through the same report.

They take a float metric and no stop callback, so the metric is adapted (``ScalarMetric``) and is
also where a run is told to stop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pytest_gepa.errors import OptimizerError
from pytest_gepa.metrics import Metric, call_metric
from pytest_gepa.optimizer.outcome import OptimizationRun, RunWatch


@dataclass
class Budget:
    """What a budget word or number means to an optimizer that is not GEPA."""

    auto: str | None
    trials: int | None

    @classmethod
    def of(cls, budget: str | int) -> Budget:
        return cls(auto=budget, trials=None) if isinstance(budget, str) else cls(auto=None, trials=budget)


class CompileStopped(BaseException):
    """Raised from inside MIPROv2 / BootstrapFewShot (through their metric) to end their run.

    A BaseException, as pytest's own outcomes are: MIPROv2 scores any ``Exception`` in a trial's
    evaluation as 0 and goes on to the next trial, so an ``Exception`` would stop nothing.
    """


class ScalarMetric:
    """A feedback metric seen as the float MIPROv2 and BootstrapFewShot want; it counts its calls.

    A ``dspy.Prediction(score=0, feedback=...)`` is truthy, so without this adapter a failed
    example would pass BootstrapFewShot's check. These optimizers take no stop callback, so each
    call also asks ``must_stop`` (over --gepa-max-cost, a failing LM) and raises once told to: the
    metric is the one hook they call between all their steps.
    """

    def __init__(self, metric: Metric, must_stop: Callable[[], str | None] = lambda: None) -> None:
        self.metric = metric
        self.must_stop = must_stop
        self.calls = 0
        self.stopped: str | None = None

    def check(self) -> None:
        """Raise ``CompileStopped`` if the run must end (and from then on, every time)."""
        if self.stopped is None:
            self.stopped = self.must_stop()
        if self.stopped is not None:
            raise CompileStopped(self.stopped)

    def __call__(self, gold: Any, pred: Any, trace: Any = None) -> float:
        self.check()
        self.calls += 1
        return call_metric(self.metric, gold, pred).score


def run_other(name: str, program: Any, trainset: list[Any], valset: list[Any], metric: Metric, *, task_lm: Any,
              reflection_lm: Any, budget: str | int, seed: int, threads: int, stop_at: float | None,
              watch: RunWatch, progress: Callable[[str], None], options: dict[str, Any]) -> OptimizationRun:
    """MIPROv2 or BootstrapFewShot, scored on the valset before and after as GEPA's run is."""
    import dspy

    from pytest_gepa.evaluate import evaluate

    scalar = ScalarMetric(metric, must_stop=watch.must_stop)
    plan = Budget.of(budget)
    started = time.perf_counter()
    try:
        with dspy.context(lm=task_lm):
            baseline = evaluate(program, valset, metric, lm=task_lm, threads=threads)
            scalar.check()  # a dead task LM shows in the baseline already: do not start the optimizer
            optimized = _compile_with(name, scalar, program, trainset, valset, task_lm=task_lm,
                                      reflection_lm=reflection_lm, budget=budget, plan=plan, seed=seed,
                                      threads=threads, stop_at=stop_at, progress=progress, options=options)
            scalar.check()
            after = evaluate(optimized, valset, metric, lm=task_lm, threads=threads)
    except (Exception, CompileStopped) as error:
        # The stop may reach us as itself or, from a thread dspy gave up on, as dspy's own
        # "Execution cancelled": the reason we stopped is what the user reads.
        if scalar.stopped is None or isinstance(error, OptimizerError):
            raise
        raise OptimizerError(f"the compile was stopped: {scalar.stopped}. "
                             "The previous artifact is unchanged.") from None
    return OptimizationRun(
        optimizer=name,
        program=optimized,
        val_baseline=baseline.score,
        val_optimized=after.score,
        metric_calls=scalar.calls,
        candidates=1,
        accepted_proposals=0,
        trajectory=[(0, baseline.score), (scalar.calls, after.score)],
        wall_time_s=round(time.perf_counter() - started, 3),
        stop_reason="optimizer finished",
    )


def _compile_with(name: str, scalar: ScalarMetric, program: Any, trainset: list[Any], valset: list[Any], *,
                  task_lm: Any, reflection_lm: Any, budget: str | int, plan: Budget, seed: int, threads: int,
                  stop_at: float | None, progress: Callable[[str], None], options: dict[str, Any]) -> Any:
    import dspy

    if name == "miprov2":
        _require_optuna()
        candidates = None if plan.auto else max(2, (plan.trials or 4) // 2)
        optimizer = dspy.MIPROv2(metric=scalar, prompt_model=reflection_lm, task_model=task_lm,
                                 auto=plan.auto, num_candidates=candidates, num_threads=threads, seed=seed,
                                 verbose=False, **options)
        progress(f"MIPROv2, budget {budget}")
        # MIPROv2 refuses minibatches larger than the valset; small valsets are scored whole.
        return optimizer.compile(program, trainset=trainset, valset=valset, num_trials=plan.trials,
                                 minibatch=len(valset) > 35)
    if name == "bootstrap":
        options.setdefault("metric_threshold", stop_at if stop_at is not None else 1.0)
        optimizer = dspy.BootstrapFewShot(metric=scalar, **options)
        progress("BootstrapFewShot")
        return optimizer.compile(program, trainset=trainset)
    raise OptimizerError(f"unknown optimizer {name!r}; use gepa, miprov2 or bootstrap")


def _require_optuna() -> None:
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise OptimizerError(
            "MIPROv2 needs the optional dependency optuna: pip install \"pytest-gepa[miprov2]\""
        ) from None
