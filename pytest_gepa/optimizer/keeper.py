"""GEPA's run kept between pytest runs, and stopped gracefully on Ctrl-C.

gepa saves ``gepa_state.bin`` in its ``run_dir`` at the start of every iteration and continues
from it, but not its random generator (shared by the candidate selector and the batch sampler),
the batch sampler's epoch, nor what our own callbacks have seen. ``StateKeeper`` writes those beside
each save and puts them back on resume, so a resumed run takes the path the uninterrupted run would
have taken. On resume it also tells gepa not to score the seed on the whole valset again: the
loaded state already holds those scores (gepa-ai/gepa#42).
"""

from __future__ import annotations

import random
import signal
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Protocol

from pytest_gepa.errors import OptimizerError


class KeptState(Protocol):
    """Where one target's state is kept (``pytest_gepa.optimizer.resume.RunState``)."""

    resuming: bool

    @property
    def run_dir(self) -> Path: ...

    def load_extra(self) -> dict[str, Any] | None: ...

    def save_extra(self, extra: dict[str, Any]) -> None: ...


# GEPA loads the ``gepa_state.bin`` pickle it finds in its run_dir (dspy's ``log_dir``): pointing
# it at a folder a repository can carry would run whatever code that file holds.
STATE_DIR_OPTIONS = ("log_dir", "run_dir")


def refuse_state_dirs(options: dict[str, Any], gepa_kwargs: dict[str, Any]) -> None:
    """Raise ``OptimizerError`` for any option that points GEPA at a state folder of the user's."""
    for where, given in (("", options), ("gepa_kwargs=", gepa_kwargs)):
        for key in STATE_DIR_OPTIONS:
            if key in given:
                shown = f"{key}={given[key]!r}" if not where else f"gepa_kwargs={{{key!r}: {given[key]!r}}}"
                raise OptimizerError(
                    f"gepa.compile(..., {shown}): GEPA would load its run state from that folder, and that state "
                    "is a pickle: loading one runs the code it holds, and a repository can carry it. pytest-gepa "
                    "keeps GEPA's run state only under pytest's cache directory and loads it from nowhere else; "
                    f"remove {key} and use `pytest --gepa-compile --gepa-resume` to continue an interrupted compile.")


class CompileInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the compile at the end of an iteration; its state is kept for --gepa-resume."""

    def __init__(self, iteration: int, metric_calls: int) -> None:
        super().__init__(f"the compile was interrupted after iteration {iteration} ({metric_calls} metric calls)")
        self.iteration, self.metric_calls = iteration, metric_calls


class GracefulInterrupt:
    """A GEPA stop callback that a SIGINT handler arms: the first Ctrl-C lets the iteration in
    flight finish (its LM calls are paid for), the second stops at once."""

    def __init__(self, progress: Callable[[str], None]) -> None:
        self.progress = progress
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def __call__(self, gepa_state: Any) -> bool:
        return self.requested

    def __enter__(self) -> GracefulInterrupt:
        # Signal handlers can only be set from the main thread (a compile in a worker thread keeps
        # Python's default: Ctrl-C stops at once, the state of the last iteration is still kept).
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.progress("Ctrl-C: stopping at the end of this iteration, keeping its state; press Ctrl-C again to "
                      "stop at once")


def _sampler_state(sampler: Any) -> dict[str, Any]:
    return {"shuffled_ids": list(sampler.shuffled_ids), "epoch": sampler.epoch,
            "id_freqs": [[key, count] for key, count in sampler.id_freqs.items()],
            "last_trainset_size": sampler.last_trainset_size, "current_iteration": sampler._current_iteration,
            "calls_in_iteration": sampler._calls_in_iteration}


def _restore_sampler(sampler: Any, saved: dict[str, Any]) -> None:
    sampler.shuffled_ids = list(saved["shuffled_ids"])
    sampler.epoch = int(saved["epoch"])
    sampler.id_freqs = Counter({key: int(count) for key, count in saved["id_freqs"]})
    sampler.last_trainset_size = int(saved["last_trainset_size"])
    sampler._current_iteration = saved["current_iteration"]
    sampler._calls_in_iteration = int(saved["calls_in_iteration"])


def _rng_state(rng: random.Random) -> list[Any]:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _restore_rng(rng: random.Random, saved: list[Any]) -> None:
    version, internal, gauss = saved
    rng.setstate((int(version), tuple(int(n) for n in internal), gauss))


class StateKeeper:
    """A GEPA callback (and first stop callback) that saves, beside each gepa state, what gepa
    does not, and restores it on resume."""

    def __init__(self, state: KeptState, observer: Any, early_stop: Any, rng: random.Random,
                 sampler: Any, progress: Callable[[str], None]) -> None:
        self.state, self.observer, self.early_stop = state, observer, early_stop
        self.rng, self.sampler, self.progress = rng, sampler, progress
        self._gepa_state: Any = None
        self._stop_values: tuple[float, int] = (float("-inf"), 0)
        self._pending = state.load_extra() if state.resuming else None

    @classmethod
    def install(cls, state: KeptState, observer: Any, early_stop: Any, seed: int, options: dict[str, Any],
                gepa_kwargs: dict[str, Any]) -> StateKeeper:
        """Point dspy's GEPA at ``state.run_dir``, with a random generator we can save."""
        from gepa.strategies.batch_sampler import EpochShuffledBatchSampler
        from gepa.strategies.candidate_selector import ParetoCandidateSelector

        refuse_state_dirs(options, gepa_kwargs)  # run_gepa refused them already: never replace ours
        # One generator for the selector and the sampler, as gepa itself shares one between them.
        rng = random.Random(seed)
        sampler: Any = None
        if "batch_sampler" not in gepa_kwargs:
            sampler = EpochShuffledBatchSampler(minibatch_size=options.pop("reflection_minibatch_size", 3) or 3,
                                                rng=rng)
            gepa_kwargs["batch_sampler"] = sampler
            options["reflection_minibatch_size"] = None  # gepa accepts a size only for its own sampler
        if options.get("candidate_selection_strategy", "pareto") == "pareto":
            options["candidate_selection_strategy"] = ParetoCandidateSelector(rng=rng)
        options["log_dir"] = str(state.run_dir)
        # The evaluation cache holds dspy predictions whose signatures are made at run time: plain
        # pickle cannot save them (cloudpickle comes with dspy).
        gepa_kwargs.setdefault("use_cloudpickle", True)
        keeper = cls(state, observer, early_stop, rng, sampler, observer.progress)
        if state.resuming:
            gepa_kwargs.setdefault("val_evaluation_policy", _seed_already_scored())
            keeper._restore_progress()
        gepa_kwargs["callbacks"] = [*gepa_kwargs.get("callbacks", []), keeper]
        gepa_kwargs["stop_callbacks"] = [keeper.watch, *gepa_kwargs.get("stop_callbacks", [])]
        return keeper

    def watch(self, gepa_state: Any) -> bool:
        """Called before every save: remember the state, and the early stop's counters before it counts."""
        self._gepa_state = gepa_state
        self._stop_values = (self.early_stop._best, self.early_stop._stalled)
        return False

    def on_state_saved(self, event: dict[str, Any]) -> None:
        if self._pending is not None:
            self._restore_random(self._pending)
            self._pending = None
        self._save(self._gepa_state)

    def on_optimization_end(self, event: dict[str, Any]) -> None:
        # gepa saves once more after its loop (a graceful stop ends there): describe that save.
        self._save(event.get("final_state"))

    def _save(self, gepa_state: Any) -> None:
        if gepa_state is None:
            return
        observer = self.observer
        extra: dict[str, Any] = {
            "iteration": int(gepa_state.i) + 1, "metric_calls": int(gepa_state.total_num_evals),
            "budget": observer.budget, "rng": _rng_state(self.rng),
            "observer": {"trajectory": [list(point) for point in observer.trajectory], "best": observer.best,
                         "accepted": observer.accepted, "proposals": list(observer.proposals),
                         "iteration": observer.iteration},
            "early_stop": list(self._stop_values),
        }
        if getattr(observer, "draws", None) is not None:
            extra["draws"] = observer.draws.state()
        if self.sampler is not None:
            extra["sampler"] = _sampler_state(self.sampler)
        try:
            self.state.save_extra(extra)
        except TypeError:  # data ids that JSON cannot hold: resume still works, on another path
            extra.pop("sampler", None)
            self.state.save_extra(extra)

    def _restore_progress(self) -> None:
        """Before the run: what the observer and the early stop had seen, so lines and the trajectory go on."""
        saved = self._pending or {}
        seen = saved.get("observer") or {}
        observer = self.observer
        observer.trajectory = [(int(calls), float(score)) for calls, score in seen.get("trajectory", [])]
        observer.best, observer.accepted = seen.get("best"), int(seen.get("accepted", 0))
        observer.proposals = list(seen.get("proposals", []))
        observer.iteration, observer.metric_calls = int(seen.get("iteration", 0)), int(saved.get("metric_calls", 0))
        observer.budget = saved.get("budget")
        observer._last_reported_best = observer.best
        if "draws" in saved and getattr(observer, "draws", None) is not None:
            observer.draws.restore(saved["draws"])
        if "early_stop" in saved:
            self.early_stop._best, self.early_stop._stalled = float(saved["early_stop"][0]), int(saved["early_stop"][1])

    def _restore_random(self, saved: dict[str, Any]) -> None:
        """At the resumed run's first save, before any draw: the generator as the interrupted run left it."""
        now = int(self._gepa_state.i) + 1 if self._gepa_state is not None else None
        if saved.get("iteration") != now:
            # Killed between gepa's save and ours: the state is one iteration ahead of our record.
            self.progress(f"gepa's random state was saved at iteration {saved.get('iteration')} but its run state at "
                          f"{now}; the resumed run continues on another path")
            return
        _restore_rng(self.rng, saved["rng"])
        if self.sampler is not None and "sampler" in saved:
            _restore_sampler(self.sampler, saved["sampler"])


def _seed_already_scored() -> Any:
    """gepa scores the seed on the whole valset before it loads a saved state; on resume the
    state holds those scores already, so the seed is scored on one example (dspy refuses none)."""
    from gepa.strategies.eval_policy import FullEvaluationPolicy

    class SeedAlreadyScored(FullEvaluationPolicy[Any, Any]):
        def get_seed_eval_batch(self, loader: Any) -> list[Any]:
            return list(loader.all_ids())[:1]

    return SeedAlreadyScored()
