"""Score a program on examples in parallel, keeping LM failures and crashes apart from low scores.

``dspy.Evaluate`` scores an example whose LM call failed as 0, which would let a dead endpoint
look like a bad prompt. Here every example ends as one of: a score with its feedback (the mean
of ``samples`` draws), an LM error (the endpoint failed: infrastructure), or a crash in the
user's own program or metric (their bug, with the file and line where it was raised). The
gate decides what each means; none of them is ever a low score.

Which is which depends on where the exception was raised, not on its type: only an exception
that left a call of an LM the plugin handed out (``errors.lm_call_role``) is the LM's. Of those,
a request the prompt itself made fail (longer than the context window, refused by a content
policy) is the prompt's failure: scored 0 with that reason as feedback, never dropped. An LM that
says it is not configured (dspy's ``LMNotConfiguredError``) is the project's configuration to fix.
"""

from __future__ import annotations

import contextvars
import copy
import os
import statistics
import sys
import sysconfig
import traceback
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_gepa.data import example_id
from pytest_gepa.errors import GepaError, LMNotConfigured, describe_error, lm_call_role
from pytest_gepa.metrics import Metric, call_metric
from pytest_gepa.verdict.statistics import mean

# A model whose reply is not in the adapter's format scored 0: a model failure, not an LM error.
UNPARSEABLE_REPLY = "The LM's reply could not be parsed:"
# A request the prompt made fail scored 0 (an overflowing prompt must never be promoted).
PROMPT_REFUSED = "The LM refused the request this prompt made:"
# What providers (through dspy or litellm) call a request refused for its own content or length.
_PROMPT_REFUSAL_CODES = frozenset({"context_length_exceeded", "context_window_exceeded", "content_policy_violation",
                                   "content_filter"})
_LITELLM_PROMPT_REFUSALS = ("ContextWindowExceededError", "ContentPolicyViolationError")
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


def is_prompt_refusal(exc: BaseException) -> bool:
    """Did the provider refuse the request for what the prompt holds (too long, against its content
    policy)? dspy projects litellm's errors onto its own, so the whole cause chain is read."""
    from dspy.utils.exceptions import ContextWindowExceededError

    # litellm is asked only when it is loaded: an error of its kind means it already was.
    litellm = sys.modules.get("litellm")
    refusals = tuple(cls for cls in (getattr(litellm, name, None) for name in _LITELLM_PROMPT_REFUSALS)
                     if isinstance(cls, type))
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, ContextWindowExceededError) or (refusals and isinstance(link, refusals)):
            return True
        if getattr(link, "provider_code", None) in _PROMPT_REFUSAL_CODES:
            return True
        link = link.__cause__ or link.__context__
    return False


def _is_not_configured(exc: BaseException) -> bool:
    from dspy.utils.exceptions import LMNotConfiguredError

    return isinstance(exc, LMNotConfiguredError)


NOT_CONFIGURED = "LMNotConfiguredError"  # how describe_error names dspy's error, as the meter keeps it


def not_configured_message(role: str, error: str) -> str:
    """What to set when the ``role`` LM says it is not configured (``error``: dspy's own words, which
    name the key)."""
    return (f"The {role} LM is not configured: {error.rstrip('.')}. Set what it asks for in the environment, "
            f"pass another model with --gepa-{role}-lm (ini gepa_{role}_lm), or override the gepa_{role}_lm "
            "fixture in conftest.py with an LM that has its api_key=. This is the project's configuration, "
            "not an LM error or a low score.")


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


def _failed(eid: str, exc: BaseException, what: str, inputs: dict[str, Any],
            output: dict[str, Any] | None = None) -> ExampleResult:
    """Whose failure ``exc`` is: the LM's only when it left a call of an LM the plugin handed out."""
    role = lm_call_role(exc)
    if role is None:
        return ExampleResult(eid, None, "", error=f"{what} raised {describe_error(exc)}",
                             where=user_code_location(exc), inputs=inputs, output=output or {})
    if is_prompt_refusal(exc):
        return ExampleResult(eid, 0.0, f"{PROMPT_REFUSED} {describe_error(exc)}", inputs=inputs, output=output or {})
    if _is_not_configured(exc):
        raise LMNotConfigured(not_configured_message(role, describe_error(exc))) from None
    return ExampleResult(eid, None, "", error=describe_error(exc), lm_error=True, inputs=inputs,
                         output=output or {})


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
        return _failed(eid, exc, "the program", inputs)
    output = _plain_fields(prediction)
    try:
        result = call_metric(metric, example, prediction)
    except GepaError:
        raise
    except Exception as exc:
        return _failed(eid, exc, "the metric", inputs, output)
    return ExampleResult(eid, result.score, result.feedback, inputs=inputs, output=output)


def _draw_number(program: Any, example: Any, metric: Metric, lm: Any, k: int, fresh: bool) -> ExampleResult:
    """Draw ``k`` of ``example``: draw 0 is the program's plain call (dspy's cache may answer it)
    unless ``fresh`` (a second look, the draws a compile records), every other a fresh call past
    dspy's cache."""
    if k == 0 and not fresh:
        return _draw(program, example, metric, lm)
    return _draw(_resampled(program, lm), example, metric, _uncached(lm))


def _combined(draws: Sequence[ExampleResult]) -> ExampleResult:
    """One example's draws as its result: the first failure, else the mean with the last draw's feedback."""
    failed = next((d for d in draws if d.error is not None), None)
    if failed is not None:
        return failed
    scores = [d.score for d in draws if d.score is not None]
    last = draws[-1]
    variance = statistics.variance(scores) if len(scores) > 1 else None
    return ExampleResult(last.id, mean(scores), last.feedback, inputs=last.inputs, output=last.output,
                         samples=len(scores), variance=variance, draws=tuple(scores))


def _uncached(lm: Any) -> Any:
    """``lm`` with dspy's response cache off: a repeat is a fresh call, in this run and the next.

    Not a ``rollout_id``: dspy caches each rollout, so a rerun's repeats came from the cache, and
    at temperature 0 it warns on every copy (an error under ``filterwarnings = error``)."""
    if lm is None or not hasattr(lm, "copy"):
        return lm
    return lm.copy(cache=False)


def copy_program(program: Any) -> Any:
    """A deep copy of ``program`` whose predictors share the original's LMs.

    dspy's own deepcopy copies each predictor's LM with its whole call history (hundreds of calls
    late in a compile); the draws and decisions that copy a program once per call must not."""
    shared = {id(p.lm): p.lm for _, p in program.named_predictors() if getattr(p, "lm", None) is not None}
    try:
        return copy.deepcopy(program, dict(shared))
    except Exception:  # a program holding something deepcopy refuses: dspy's own tolerant copy
        return program.deepcopy()


def _resampled(program: Any, lm: Any) -> Any:
    """A copy of ``program`` whose predictors call their LM past dspy's cache."""
    resampled = copy_program(program)
    for _, predictor in resampled.named_predictors():
        predictor.lm = _uncached(getattr(predictor, "lm", None) or lm)
    return resampled


def evaluate(program: Any, examples: Sequence[Any], metric: Metric, *, lm: Any, threads: int,
             samples: int = 1, fresh: bool = False) -> Evaluation:
    """Score ``program`` on every example, ``samples`` draws each, up to ``threads`` draws at once."""
    samples = max(1, int(samples))
    if threads <= 1 or len(examples) * samples <= 1:
        return Evaluation(tuple(_combined([_draw_number(program, ex, metric, lm, k, fresh) for k in range(samples)])
                                for ex in examples), samples)
    # Each draw is its own job, so ten examples drawn three times keep every thread busy to the end
    # (ten jobs of three calls leave two of four threads idle for the last three calls).
    # dspy keeps its settings in context variables: each worker thread runs in a copy of ours.
    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=min(threads, len(examples) * samples)) as pool:
        futures = [[pool.submit(context.copy().run, _draw_number, program, ex, metric, lm, k, fresh)
                    for k in range(samples)] for ex in examples]
        return Evaluation(tuple(_combined([draw.result() for draw in draws]) for draws in futures), samples)


def draw_once(program: Any, example: Any, metric: Metric, lm: Any) -> float | None:
    """One fresh draw of ``program`` on ``example``, past dspy's cache: its score, or None when the
    LM failed or the code crashed."""
    result = _draw_number(program, example, metric, lm, 0, fresh=True)
    return None if result.error is not None else result.score
