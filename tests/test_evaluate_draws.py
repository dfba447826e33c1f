"""Repeated draws of one example: fresh LM calls without copying the LM itself.

A draw past the first runs a copy of the program whose predictors call their LM with another
``rollout_id``. That copy must share the LM's client and state, not deep-copy it: a dspy LM carries
its whole call history, so copying it per draw made the draws a compile records cost more CPU than
GEPA itself (benchmarks/RESULTS.md, the compile rows)."""

from __future__ import annotations

from typing import Any

import dspy
import world
from world import Triage

from pytest_gepa.evaluate import evaluate
from pytest_gepa.metrics import exact_match

# Outside the program: a list the program held would be copied with it.
SEEN: list[object] = []


class Watched(dspy.Module):
    """A program that notes which LM state each of its calls runs with."""

    def __init__(self, lm: Any) -> None:
        super().__init__()
        self.classify = dspy.Predict(Triage)
        self.classify.lm = lm

    def forward(self, ticket: str) -> Any:
        SEEN.append(self.classify.lm.state_marker)
        return self.classify(ticket=ticket)


def test_draws_call_the_programs_own_lm_under_another_rollout_without_copying_it(
        scripted_server: world.ScriptedServer) -> None:
    # A user's own dspy.LM over HTTP on dspy's default engine (the in-process world's LM holds a
    # lock, which makes dspy fall back to a shallow copy and would hide the cost).
    lm = dspy.LM("openai/task", api_base=scripted_server.base_url, api_key="sk-test", cache=False)
    lm.state_marker = object()  # stands for the client, pools and history a deep copy would duplicate
    SEEN.clear()
    example = dspy.Example(ticket="I was charged twice this month.", category="billing").with_inputs("ticket")

    result = evaluate(Watched(lm), [example], exact_match("category"), lm=lm, threads=1, samples=3)

    assert result.results[0].samples == 3
    assert len(SEEN) == 3
    assert all(marker is lm.state_marker for marker in SEEN)


def test_repeats_are_fresh_calls_at_temperature_0_with_dspys_cache_on_and_warn_nothing(
        scripted_server: world.ScriptedServer) -> None:
    # temperature=0 and dspy's response cache on: a common user LM. The suite runs with warnings as
    # errors, as many users' do; dspy warns that a rollout_id has no effect at temperature 0.
    lm = dspy.LM("openai/task", api_base=scripted_server.base_url, api_key="sk-test", cache=True, temperature=0)
    example = dspy.Example(ticket="My invoice shows a charge I do not recognise.",
                           category="billing").with_inputs("ticket")

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)  # the suite turns it off
    try:
        first = evaluate(dspy.Predict(Triage), [example], exact_match("category"), lm=lm, threads=1, samples=3)
        calls = scripted_server.calls["task"]
        again = evaluate(dspy.Predict(Triage), [example], exact_match("category"), lm=lm, threads=1, samples=3)
    finally:
        dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)

    assert first.results[0].error is None and first.results[0].samples == 3
    assert again.results[0].samples == 3
    # The first draw may come from dspy's cache; the repeats are fresh calls every run.
    assert scripted_server.calls["task"] - calls == 2
