"""Score a program on examples in parallel, keeping LM failures and crashes apart from low scores.

``dspy.Evaluate`` scores an example whose LM call failed as 0, which would let a dead endpoint
look like a bad prompt. Here every example ends as one of: a score with its feedback (the mean
of ``samples`` draws), an LM error (the endpoint failed: infrastructure), or a crash in the
user's own program or metric (their bug, with the file and line where it was raised). The
gate decides what each means; none of them is ever a low score.
"""

from __future__ import annotations

import contextvars
import os
import statistics
import sysconfig
import traceback
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_gepa.data import example_id
from pytest_gepa.errors import GepaError, describe_error
from pytest_gepa.metrics import Metric, call_metric
from pytest_gepa.verdict.statistics import mean

# A model whose reply is not in the adapter's format scored 0: a model failure, not an LM error.
UNPARSEABLE_REPLY = "The LM's reply could not be parsed:"
# More than this share of examples lost to LM errors means the score says nothing about the prompt.
MAX_LM_ERROR_SHARE = 0.1
# Frames in these places are libraries, not the user's code.
_LIBRARY_MARKERS = (*(f"{os.sep}{part}{os.sep}" for part in ("site-packages", "dist-packages", "pytest_gepa")),
                    sysconfig.get_paths()["stdlib"] + os.sep)


@dataclass(frozen=True)
class ExampleResult:
    """One example's outcome: a score with feedback, or the error that kept it from being scored."""

    id: str
    score: float | None
    feedback: str
    error: str | None = None
    lm_error: bool = False
    where: str | None = None  # for a crash in the user's code: "path:line in function"
    inputs: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)
    samples: int = 1
    variance: float | None = None  # call-to-call variance of one draw, known with samples >= 2
    draws: tuple[float, ...] = ()  # every draw's score, in order: what a compile records and a gate tests

    @property
    def crashed(self) -> bool:
        """The user's program or metric raised: their bug, never an LM error or a low score."""
        return self.error is not None and not self.lm_error


@dataclass(frozen=True)
class Evaluation:
    """The outcomes of one evaluation, split into scored examples, LM errors and crashes."""

    results: tuple[ExampleResult, ...]
    samples: int = 1

    @property
    def scored(self) -> tuple[ExampleResult, ...]:
        return tuple(r for r in self.results if r.error is None)

    @property
    def lm_errors(self) -> tuple[ExampleResult, ...]:
        return tuple(r for r in self.results if r.lm_error)

    @property
    def crashes(self) -> tuple[ExampleResult, ...]:
        return tuple(r for r in self.results if r.crashed)

    @property
    def score(self) -> float:
        return mean([r.score for r in self.scored if r.score is not None])

    @property
    def per_example(self) -> dict[str, float]:
        return {r.id: r.score for r in self.scored if r.score is not None}

    @property
    def feedback(self) -> dict[str, str]:
        return {r.id: r.feedback for r in self.scored}

    @property
    def draws(self) -> dict[str, list[float]]:
        """Each scored example's draws, one score per sample."""
        return {r.id: list(r.draws) for r in self.scored if r.score is not None}

    @property
    def variances(self) -> dict[str, float] | None:
        """Each scored example's call-to-call variance, when it was sampled more than once."""
        found = {r.id: r.variance for r in self.scored if r.variance is not None}
        return found or None

    @property
    def too_many_lm_errors(self) -> bool:
        return bool(self.results) and len(self.lm_errors) / len(self.results) > MAX_LM_ERROR_SHARE


def is_lm_error(exc: BaseException) -> bool:
    """dspy's LMError, and anything litellm, httpx or openai raise (connections, HTTP, timeouts)."""
    from dspy.utils.exceptions import LMError

    if isinstance(exc, (LMError, TimeoutError, ConnectionError)):
        return True
    return any(cls.__module__.startswith(("litellm", "httpx", "httpcore", "openai")) for cls in type(exc).__mro__)


def _is_parse_error(exc: BaseException) -> bool:
    from dspy.utils.exceptions import AdapterParseError

    return isinstance(exc, AdapterParseError)


def user_code_location(exc: BaseException) -> str | None:
    """Where in the user's code ``exc`` was raised: the innermost frame outside every library."""
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        if not any(marker in frame.filename for marker in _LIBRARY_MARKERS) and not frame.filename.startswith("<"):
            return f"{_shown_path(frame.filename)}:{frame.lineno} in {frame.name}"
    return None


def _shown_path(filename: str) -> str:
    try:
        return str(Path(filename).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return filename


def _plain_fields(obj: Any) -> dict[str, Any]:
    try:
        items = obj.items()
    except AttributeError:
        return {"output": str(obj)}
    return {str(k): v if isinstance(v, (str, int, float, bool)) or v is None else str(v) for k, v in items}


def _crash(eid: str, exc: BaseException, what: str, inputs: dict[str, Any],
           output: dict[str, Any] | None = None) -> ExampleResult:
    if is_lm_error(exc):
        return ExampleResult(eid, None, "", error=describe_error(exc), lm_error=True, inputs=inputs,
                             output=output or {})
    return ExampleResult(eid, None, "", error=f"{what} raised {describe_error(exc)}", where=user_code_location(exc),
                         inputs=inputs, output=output or {})


def _draw(program: Any, example: Any, metric: Metric, lm: Any) -> ExampleResult:
    import dspy

    eid = example_id(example)
    inputs = _plain_fields(example.inputs())
    try:
        with dspy.context(lm=lm) if lm is not None else nullcontext():
            prediction = program(**example.inputs())
    except GepaError:
        raise  # a replay miss or a plugin error is the test's failure, not one example's
    except Exception as exc:
        if _is_parse_error(exc):
            return ExampleResult(eid, 0.0, f"{UNPARSEABLE_REPLY} {describe_error(exc)}", inputs=inputs)
        return _crash(eid, exc, "the program", inputs)
    output = _plain_fields(prediction)
    try:
        result = call_metric(metric, example, prediction)
    except GepaError:
        raise
    except Exception as exc:
        return _crash(eid, exc, "the metric", inputs, output)
    return ExampleResult(eid, result.score, result.feedback, inputs=inputs, output=output)


def evaluate_one(program: Any, example: Any, metric: Metric, lm: Any, samples: int = 1,
                 first_draw: int = 0) -> ExampleResult:
    """Run and score one example ``samples`` times; its score is the mean, its feedback the last draw's.

    Draw k (counted from ``first_draw``) differs only in its LMs' ``rollout_id``, so repeats miss
    dspy's cache and make fresh calls, and draws numbered apart never share an answer.
    """
    draws = [_draw(program if k == 0 else _resampled(program, lm, k), example, metric, lm if k == 0
                   else _rollout(lm, k)) for k in range(first_draw, first_draw + samples)]
    failed = next((d for d in draws if d.error is not None), None)
    if failed is not None:
        return failed
    scores = [d.score for d in draws if d.score is not None]
    last = draws[-1]
    variance = statistics.variance(scores) if len(scores) > 1 else None
    return ExampleResult(last.id, mean(scores), last.feedback, inputs=last.inputs, output=last.output,
                         samples=len(scores), variance=variance, draws=tuple(scores))


def _rollout(lm: Any, k: int) -> Any:
    if lm is None or not hasattr(lm, "copy"):
        return lm
    with warnings.catch_warnings():
        # dspy warns that rollout_id does nothing at temperature 0; the repeat is still a fresh call.
        warnings.simplefilter("ignore")
        return lm.copy(rollout_id=k)


def _resampled(program: Any, lm: Any, k: int) -> Any:
    """A copy of ``program`` whose predictors call their LM with ``rollout_id=k``."""
    copy = program.deepcopy()
    for _, predictor in copy.named_predictors():
        predictor.lm = _rollout(getattr(predictor, "lm", None) or lm, k)
    return copy


def evaluate(program: Any, examples: Sequence[Any], metric: Metric, *, lm: Any, threads: int,
             samples: int = 1, first_draw: int = 0) -> Evaluation:
    """Score ``program`` on every example, ``samples`` draws each, up to ``threads`` examples at once."""
    samples = max(1, int(samples))
    if threads <= 1 or len(examples) <= 1:
        return Evaluation(tuple(evaluate_one(program, ex, metric, lm, samples, first_draw) for ex in examples),
                          samples)
    # dspy keeps its settings in context variables: each worker thread runs in a copy of ours.
    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=min(threads, len(examples))) as pool:
        futures = [pool.submit(context.copy().run, evaluate_one, program, ex, metric, lm, samples, first_draw)
                   for ex in examples]
        return Evaluation(tuple(future.result() for future in futures), samples)
