"""Agreement of a rubric's pass/fail with human verdicts, and Cohen's kappa.

This module knows nothing of judges: it reads labeled rows and human verdicts and sums up two
raters. ``Rubric.agreement`` (in ``judge.py``) asks the judge about each row and calls
:func:`summarize`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pytest_gepa.errors import RubricError, one_line
from pytest_gepa.rubric.material import fields_of, input_keys
from pytest_gepa.rubric.spec import looks_numeric

if TYPE_CHECKING:
    from pytest_gepa.data import ExampleSet

__all__ = [
    "Agreement",
    "Disagreement",
    "LabeledRow",
    "cohen_kappa",
    "human_verdict",
    "labeled_rows",
    "map_in_threads",
    "summarize",
]

# Weighted means of exact scores can land a hair under the threshold (0.49999999999999994).
PASS_TOLERANCE = 1e-9

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class Disagreement:
    """One labeled example on which the human verdict and the judge's differ."""

    id: str
    human: bool
    judge: bool
    score: float
    feedback: str


@dataclass(frozen=True)
class Agreement:
    """How far a rubric's pass/fail agrees with human verdicts.

    ``kappa`` is Cohen's kappa over pass/fail. It is None when it is undefined: both the humans
    and the judge gave every example the same label, so chance alone explains the agreement
    (expected agreement 1, kappa 0/0). Such a set cannot show whether the judge discriminates;
    add examples of the other label.
    """

    n: int
    agreement_rate: float
    kappa: float | None
    disagreements: tuple[Disagreement, ...]

    def __str__(self) -> str:
        kappa = "undefined (every example has the same label from both)" if self.kappa is None \
            else f"{self.kappa:.3f}"
        lines = [f"judge agrees with the human verdict on {self.n - len(self.disagreements)} of {self.n} "
                 f"examples ({self.agreement_rate:.0%}); Cohen's kappa {kappa}"]
        for d in self.disagreements:
            lines.append(f"  {d.id}: human {_pass_fail(d.human)}, judge {_pass_fail(d.judge)} "
                         f"({d.score:.2f}): {one_line(d.feedback)}")
        return "\n".join(lines)


def cohen_kappa(human: Sequence[bool], judge: Sequence[bool]) -> float | None:
    """Cohen's kappa of two pass/fail raters; None when undefined (expected agreement 1)."""
    if len(human) != len(judge) or not human:
        raise ValueError(f"need two equally long, non-empty label lists, got {len(human)} and {len(judge)}")
    n = len(human)
    observed = sum(h == j for h, j in zip(human, judge, strict=True)) / n
    human_pass, judge_pass = sum(human) / n, sum(judge) / n
    expected = human_pass * judge_pass + (1 - human_pass) * (1 - judge_pass)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1 - expected)


@dataclass(frozen=True)
class LabeledRow:
    """One labeled example: its id, all its fields (the human verdict among them), its input names."""

    id: str
    fields: dict[str, Any]
    inputs: tuple[str, ...]


def labeled_rows(labeled: ExampleSet | str | os.PathLike[str] | Iterable[Any], *,
                 inputs: Sequence[str] | None, declared_inputs: Sequence[str] | None,
                 label: str) -> tuple[list[LabeledRow], str]:
    """The rows of ``labeled`` and a name for their source (a file path, or "the labeled examples").

    A path is loaded as an examples file, whose input fields are ``inputs``, else the rubric's
    ``declared_inputs``; ids are the ExampleSet's, else each Example's, else ``#<index>``.
    """
    from pytest_gepa.data import ExampleSet, example_id, load_examples

    if isinstance(labeled, (str, os.PathLike)):
        input_names = list(inputs) if inputs is not None else list(declared_inputs or ())
        if not input_names:
            raise RubricError(
                f"{label}: agreement on {str(labeled)!r} needs the input fields: pass inputs=[...] "
                "or declare `inputs:` in the rubric file"
            )
        labeled = load_examples(labeled, inputs=input_names)
    if isinstance(labeled, ExampleSet):
        ids, source = list(labeled.ids), str(labeled.path)
    else:
        labeled = list(labeled)
        ids, source = [], "the labeled examples"
    rows = []
    for index, item in enumerate(labeled):
        fields = fields_of(item)
        row_inputs = tuple(inputs) if inputs is not None else input_keys(item, fields)
        if index < len(ids):
            row_id = ids[index]
        elif hasattr(item, "toDict"):
            row_id = example_id(item)
        else:
            row_id = f"#{index}"
        rows.append(LabeledRow(row_id, fields, row_inputs))
    return rows, source


def human_verdict(row: LabeledRow, verdict_field: str, source: str, *, pass_threshold: float) -> bool:
    """The human's pass/fail: pass/fail, true/false, yes/no, or a score read against ``pass_threshold``."""
    if verdict_field not in row.fields:
        raise RubricError(f"{source}: example {row.id} has no {verdict_field!r} field with the human "
                          "verdict; add pass/fail, true/false or a score in [0, 1]")
    value = row.fields[verdict_field]
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("pass", "passed", "true", "yes"):
            return True
        if text in ("fail", "failed", "false", "no"):
            return False
        value = float(text) if looks_numeric(text) else value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
        return bool(value >= pass_threshold - PASS_TOLERANCE)
    raise RubricError(f"{source}: example {row.id} has {verdict_field}={row.fields[verdict_field]!r}; "
                      "expected pass/fail, true/false, or a score in [0, 1]")


def summarize(rows: Sequence[LabeledRow], humans: Sequence[bool],
              judged: Sequence[tuple[bool, float, str]]) -> Agreement:
    """Agreement of the humans' verdicts with the judge's ``(passed, score, feedback)`` per row."""
    disagreements = tuple(
        Disagreement(row.id, human, passed, score, feedback)
        for row, human, (passed, score, feedback) in zip(rows, humans, judged, strict=True) if human != passed
    )
    return Agreement(
        n=len(rows),
        agreement_rate=1 - len(disagreements) / len(rows),
        kappa=cohen_kappa(humans, [passed for passed, _, _ in judged]),
        disagreements=disagreements,
    )


def map_in_threads(function: Callable[[_T], _R], items: Sequence[_T], threads: int) -> list[_R]:
    """``[function(item) for item in items]`` on up to ``threads`` threads, in order."""
    if threads <= 1 or len(items) <= 1:
        return [function(item) for item in items]
    import contextvars

    # dspy keeps its settings in context variables: each worker runs in a copy of ours.
    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=min(threads, len(items))) as pool:
        return list(pool.map(lambda item: context.copy().run(function, item), items))


def _pass_fail(value: bool) -> str:
    return "pass" if value else "fail"
