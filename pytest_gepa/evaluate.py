"""Score a program on examples in parallel, keeping LM failures apart from low scores.

``dspy.Evaluate`` scores an example whose LM call failed as 0, which would let a dead endpoint
look like a bad prompt. Here every example ends as either a score with its feedback, or an error
with its cause; the gate decides what too many errors mean.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from pytest_gepa.data import example_id
from pytest_gepa.errors import GepaError, describe_error
from pytest_gepa.gate import confidence_interval, mean
from pytest_gepa.metrics import Metric, call_metric

# A model whose reply is not in the adapter's format scored 0: a model failure, not an LM error.
UNPARSEABLE_REPLY = "The LM's reply could not be parsed:"


@dataclass(frozen=True)
class ExampleResult:
    """One example's outcome: a score with feedback, or an error that kept it from being scored."""

    id: str
    score: float | None
    feedback: str
    error: str | None = None
    lm_error: bool = False
    output: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation:
    """The scored examples of one evaluation, with their mean and its 95% confidence interval."""

    results: tuple[ExampleResult, ...]

    @property
    def scored(self) -> tuple[ExampleResult, ...]:
        return tuple(r for r in self.results if r.error is None)

    @property
    def errors(self) -> tuple[ExampleResult, ...]:
        return tuple(r for r in self.results if r.error is not None)

    @property
    def score(self) -> float:
        return mean([r.score for r in self.scored if r.score is not None])

    @property
    def ci(self) -> tuple[float, float]:
        return confidence_interval([r.score for r in self.scored if r.score is not None])

    @property
    def per_example(self) -> dict[str, float]:
        return {r.id: r.score for r in self.scored if r.score is not None}

    @property
    def feedback(self) -> dict[str, str]:
        return {r.id: r.feedback for r in self.scored}


def _is_lm_error(exc: BaseException) -> bool:
    from dspy.utils.exceptions import LMError

    return isinstance(exc, LMError) or type(exc).__module__.startswith(("litellm", "httpx", "openai"))


def _is_parse_error(exc: BaseException) -> bool:
    from dspy.utils.exceptions import AdapterParseError

    return isinstance(exc, AdapterParseError)


def _outputs(prediction: Any) -> dict[str, Any]:
    try:
        return {k: str(v) for k, v in prediction.items()}
    except AttributeError:
        return {"output": str(prediction)}


def evaluate_one(program: Any, example: Any, metric: Metric, lm: Any) -> ExampleResult:
    """Run the program on one example under ``lm`` and score it; errors become results, not raises."""
    import dspy

    eid = example_id(example)
    try:
        with dspy.context(lm=lm) if lm is not None else nullcontext():
            prediction = program(**example.inputs())
    except GepaError:
        raise  # a replay miss or a plugin error is the test's failure, not one example's
    except Exception as exc:
        if _is_parse_error(exc):
            return ExampleResult(eid, 0.0, f"{UNPARSEABLE_REPLY} {describe_error(exc)}")
        return ExampleResult(eid, None, "", error=describe_error(exc), lm_error=_is_lm_error(exc))
    try:
        result = call_metric(metric, example, prediction)
    except Exception as exc:
        return ExampleResult(eid, None, "", error=f"the metric failed: {describe_error(exc)}",
                             lm_error=_is_lm_error(exc), output=_outputs(prediction))
    return ExampleResult(eid, result.score, result.feedback, output=_outputs(prediction))


def evaluate(program: Any, examples: Sequence[Any], metric: Metric, *, lm: Any, threads: int) -> Evaluation:
    """Score ``program`` on every example with up to ``threads`` examples in flight at once."""
    if threads <= 1 or len(examples) <= 1:
        return Evaluation(tuple(evaluate_one(program, ex, metric, lm) for ex in examples))
    # dspy keeps its settings in context variables: each worker thread runs in a copy of ours.
    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=min(threads, len(examples))) as pool:
        futures = [pool.submit(context.copy().run, evaluate_one, program, ex, metric, lm) for ex in examples]
        return Evaluation(tuple(future.result() for future in futures))
