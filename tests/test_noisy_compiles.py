"""A compile that does not chase noise (issue 24), in the eight-rule world whose reflector noise can
mislead (``world.triage8``): GEPA deciding on single draws (``gepa_compile_samples=1``) accepts
proposals that only the parent's unlucky draw made look better and loses rules; deciding on fresh
draws (the default) keeps them, and a noise-free compile is the same either way.
"""

from __future__ import annotations

import json
from typing import Any

import dspy
import pytest
import world
from conftest import IN_PROCESS_LMS, TRIAGE_TEST, TriageProject
from world.engine import World
from world.noise import Noise
from world.triage8 import classify8, rules_learned8, triage8_splits, write_triage8_jsonl

from pytest_gepa.metrics import exact_match
from pytest_gepa.optimizer.outcome import OptimizationRun
from pytest_gepa.optimizer.run import run_optimizer

# A noise seed on which GEPA on single draws loses rules in the pytester compile below (checked by
# that test itself: it asserts the single-draw compile learns fewer than 7 of 8).
SEED = 1

# The DESIGN.md triage target with no threshold but the score itself: the rules learned are the measure.
EIGHT_RULE_TEST = TRIAGE_TEST.format(min_score=0.0, max_drop=None)


class _Watch:
    def must_stop(self) -> str | None:
        return None

    def reflection_calls(self) -> tuple[int, str | None]:
        return 0, None


def _compile(noise: float, seed: int, samples: int) -> tuple[OptimizationRun, World, float]:
    """One real GEPA run (light budget) against the eight-rule world at ``noise``; also the noise-free
    test score of its instruction."""
    lm_world = World(noise=Noise(noise=noise, borderline=0.25, seed=seed), task="triage8")
    splits = triage8_splits()
    run = run_optimizer("gepa", dspy.ChainOfThought(world.Triage), splits["train"], splits["val"],
                        exact_match("category"), task_lm=world.scripted_lm("task", lm_world),
                        reflection_lm=world.scripted_lm("reflection", lm_world), budget="light", seed=0, threads=4,
                        stop_at=1.0, patience=None, watch=_Watch(), progress=lambda line: None, options={},
                        decision_samples=samples)
    instruction = run.program.predict.signature.instructions
    test = sum(classify8(e.ticket, instruction)[0] == e.category for e in splits["test"]) / len(splits["test"])
    return run, lm_world, test


def _rules(run: OptimizationRun) -> int:
    return rules_learned8(run.program.predict.signature.instructions)


def test_noise_free_both_compiles_learn_every_rule_and_the_draws_cost_under_a_tenth_more() -> None:
    plain, plain_world, plain_test = _compile(0.0, 0, 1)
    drawn, drawn_world, drawn_test = _compile(0.0, 0, 3)
    assert drawn.program.predict.signature.instructions == plain.program.predict.signature.instructions
    assert (_rules(drawn), drawn_test) == (_rules(plain), plain_test) == (8, 1.0)
    assert sum(drawn_world.calls.values()) <= 1.1 * sum(plain_world.calls.values())
    assert drawn.selection is not None and not drawn.selection["task_lm_varied"] and drawn.selection["draws"] == 0


def test_noisy_close_calls_are_decided_on_fresh_draws_and_the_pick_is_recorded() -> None:
    run, lm_world, test = _compile(0.1, 1, 3)
    assert run.decisions is not None and "answered some request two ways, so both sides were drawn" in run.decisions
    selection = run.selection
    assert selection is not None and selection["task_lm_varied"] and selection["draws"] > 0
    assert len(selection["compared"]) >= 2 and selection["picked"] in selection["compared"]
    assert (selection["samples"], selection["max_draws_per_example"]) == (3, 9)
    # Every draw is a metric call of the budget.
    assert lm_world.calls["task"] == run.metric_calls and run.decision_draws > 0
    assert _rules(run) == 8 and test == 1.0


# ---------------------------------------------------------------- a real pytest compile, both ways


@pytest.fixture
def eight_rule_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> TriageProject:
    """The triage project on the eight-rule task, its LMs in process, at noise 0.1 with seed ``SEED``."""
    monkeypatch.setenv("GEPA_TEST_WORLD", "triage8")
    monkeypatch.setenv("GEPA_TEST_NOISE", f"noise=0.1,borderline=0.25,seed={SEED}")
    project = TriageProject(pytester, lms=IN_PROCESS_LMS)
    write_triage8_jsonl(project.data)
    project.write_test(source=EIGHT_RULE_TEST)
    return project


def _compiled(project: TriageProject, *args: str) -> dict[str, Any]:
    project.compile(*args).assert_outcomes(passed=1)
    artifact: dict[str, Any] = json.loads(project.artifact.read_text())
    project.artifact.unlink()  # the next compile starts from nothing, as the first did
    return artifact


def test_a_noisy_compile_keeps_the_rules_that_gepa_on_single_draws_loses(eight_rule_project: TriageProject) -> None:
    single = _compiled(eight_rule_project, "-o", "gepa_compile_samples=1")
    drawn = _compiled(eight_rule_project)
    single_rules = rules_learned8(single["instructions"]["predict"])
    drawn_rules = rules_learned8(drawn["instructions"]["predict"])
    assert (single["optimizer"]["decision_draws"], single["optimizer"]["selection"]) == (0, None)
    assert single_rules < 7 <= drawn_rules, (single_rules, drawn_rules)
    assert drawn["optimizer"]["decision_draws"] > 0 and drawn["optimizer"]["selection"]["task_lm_varied"]
