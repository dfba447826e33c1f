"""A support-ticket classifier: DESIGN.md's first target, compiled and gated on the embedded model."""

from typing import Literal

import dspy

from pytest_gepa import metrics


class Triage(dspy.Signature):
    """Classify the support ticket into one of: billing, claims, technical, account, shipping."""

    ticket: str = dspy.InputField()
    category: Literal["billing", "claims", "technical", "account", "shipping"] = dspy.OutputField()


def test_triage_prompt(gepa, gepa_examples):
    data = gepa_examples("data/triage.jsonl", inputs=["ticket"])
    metric = metrics.exact_match("category")
    program = gepa.compile(dspy.ChainOfThought(Triage), data, metric=metric)
    # Thresholds for the 135M embedded model, which gets few tickets right: see ../README.md.
    gepa.gate(program, data.test, metric=metric, min_score=0.1, max_drop=0.05)
