"""A two-step triage pipeline for the world: summarize the ticket, then classify the summary.

The summarizer keeps the ticket's words, so the classifier faces the same hidden conventions as
the one-step triage task, and GEPA must teach them to the second predictor's instruction.
"""

from __future__ import annotations

from typing import Any

import dspy

from .engine import Prompt, Skill, Truth, World
from .triage import CATEGORIES, INSTRUCTION, classify, true_category


class Summarize(dspy.Signature):
    """Summarize the support ticket in one sentence, keeping its key terms."""

    ticket: str = dspy.InputField()
    summary: str = dspy.OutputField()


class ClassifySummary(dspy.Signature):
    """Classify the summarized support ticket into one of: billing, claims, technical, account, shipping."""

    summary: str = dspy.InputField()
    category: str = dspy.OutputField()


class TriagePipeline(dspy.Module):
    """Two predictors, one artifact: ``summarize.predict`` and ``classify.predict``."""

    def __init__(self) -> None:
        super().__init__()
        self.summarize = dspy.ChainOfThought(Summarize)
        self.classify = dspy.ChainOfThought(ClassifySummary)

    def forward(self, ticket: str) -> dspy.Prediction:
        summary = self.summarize(ticket=ticket).summary
        return self.classify(summary=summary)


class Summarizer(Skill):
    roles = ("task",)

    def matches(self, prompt: Prompt) -> bool:
        return "ticket" in prompt.inputs and "summary" in prompt.output_names

    def answer(self, prompt: Prompt) -> dict[str, Any]:
        return {"reasoning": "Keep the customer's own words.", "summary": f"The customer writes: {prompt.inputs['ticket']}"}


class SummaryClassifier(Skill):
    roles = ("task",)

    def matches(self, prompt: Prompt) -> bool:
        return "summary" in prompt.inputs and "category" in prompt.output_names

    def answer(self, prompt: Prompt) -> dict[str, Any]:
        category, reasoning = classify(prompt.inputs["summary"], prompt.instruction)
        return {"reasoning": reasoning, "category": category}

    def truth(self, prompt: Prompt) -> Truth:
        return Truth("category", true_category(prompt.inputs["summary"]), CATEGORIES)


def pipeline_world() -> World:
    """The default world plus the pipeline's two skills."""
    world = World()
    world.add_skill(Summarizer())
    world.add_skill(SummaryClassifier())
    return world


__all__ = ["INSTRUCTION", "ClassifySummary", "Summarize", "TriagePipeline", "pipeline_world"]
