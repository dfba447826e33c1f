"""Judge rubrics: one YAML file that is GEPA's feedback metric, a gate's metric and an eval assertion.

The room, from the bottom up: ``spec`` (the file format and its messages), ``material`` (what
the judge sees, by role), ``agreement`` (human labels, Cohen's kappa), ``verdict`` (the judge's
reply read into a score and feedback), ``judge`` (the ``Rubric`` and its judge program).

Importing this package imports none of them: the names below load on first use, and dspy
only when a judge is first asked.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_gepa.rubric.agreement import Agreement, Disagreement, cohen_kappa
    from pytest_gepa.rubric.judge import Rubric, judge_signature, load_rubric
    from pytest_gepa.rubric.spec import Criterion
    from pytest_gepa.rubric.verdict import CriterionScore, Verdict

_HOMES = {
    "Agreement": "agreement", "Disagreement": "agreement", "cohen_kappa": "agreement",
    "Rubric": "judge", "judge_signature": "judge", "load_rubric": "judge", "JudgeSignature": "judge",
    "Criterion": "spec",
    "CriterionScore": "verdict", "Verdict": "verdict",
}

__all__ = ["Agreement", "Criterion", "CriterionScore", "Disagreement", "Rubric", "Verdict", "cohen_kappa",
           "judge_signature", "load_rubric"]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
