"""A compile that does not chase noise, and feedback that teaches: the draws behind GEPA's decisions
(``pytest_gepa.optimizer.draws``) and the ready metrics' ``why=``.

The noisy runs use the world's noise mode (``world.noise``): a quarter of the inputs borderline, each
call on one answered wrong with probability ``noise``, keyed on the noise seed and the input's call
number, so every run below is repeatable.
"""

from __future__ import annotations

import json
from typing import Any

import dspy
import pytest
import world
from conftest import TriageProject, write_split_triage_data
from world.engine import World
from world.noise import Noise
from world.triage import CONVENTIONS
from world.triage8 import triage8_splits

from pytest_gepa.evaluate import evaluate
from pytest_gepa.metrics import exact_match
from pytest_gepa.optimizer.outcome import OptimizationRun
from pytest_gepa.optimizer.run import run_optimizer

LITERAL_LMS = '''
import pytest
import world

@pytest.fixture(scope="session")
def gepa_task_lm():
    return world.scripted_lm("task")

@pytest.fixture(scope="session")
def gepa_reflection_lm():
    return world.scripted_lm("reflection-literal")
'''

# The README's walk-through, with the metric as the test says.
WALK_THROUGH = '''
import dspy
from pytest_gepa import metrics

class Triage(dspy.Signature):
    """Classify the support ticket into one of: billing, claims, technical, account, shipping."""
    ticket: str = dspy.InputField()
    category: str = dspy.OutputField()

def test_triage_prompt(gepa, gepa_examples):
    data = gepa_examples("data/triage.jsonl", inputs=["ticket"])
    metric = METRIC
    program = gepa.compile(dspy.ChainOfThought(Triage), data, metric=metric)
    gepa.gate(program, data.test, metric=metric, min_score=0.4, max_drop=0.03)
'''


def rules_learned(instruction: str) -> int:
    return sum(convention.stated_in(instruction) for convention in CONVENTIONS)


@pytest.fixture
def literal_project(pytester: pytest.Pytester) -> TriageProject:
    """The walk-through's project, its data with a ``rule`` column, and a reflector that learns
    only what the feedback spells out (as a real one cannot guess a house rule)."""
    project = TriageProject(pytester, lms=LITERAL_LMS)
    write_split_triage_data(project.data, rules=True)
    return project


def _walk_through(project: TriageProject, metric: str) -> dict[str, Any]:
    project.write_test(source=WALK_THROUGH.replace("METRIC", metric))
    project.compile().assert_outcomes(passed=1)
    artifact: dict[str, Any] = json.loads(project.artifact.read_text())
    return artifact


def test_exact_match_alone_teaches_a_literal_reflector_nothing(literal_project: TriageProject) -> None:
    artifact = _walk_through(literal_project, 'metrics.exact_match("category")')
    assert rules_learned(artifact["instructions"]["predict"]) == 0
    scores = artifact["scores"]
    assert scores["val_optimized"] == scores["val_baseline"] == 0.5
    assert "beat the starting instruction" in artifact["optimizer"]["stop_reason"]


def test_feedback_quoting_the_rows_rule_teaches_it_every_rule(literal_project: TriageProject) -> None:
    artifact = _walk_through(literal_project, 'metrics.exact_match("category", why="rule")')
    assert rules_learned(artifact["instructions"]["predict"]) == len(CONVENTIONS)
    assert artifact["scores"]["val_baseline"] == 0.5
    assert artifact["scores"]["devset"]["optimized"] == 1.0


# ---------------------------------------------------------------- the draws, GEPA run in process


class _Watch:
    def must_stop(self) -> str | None:
        return None

    def reflection_calls(self) -> tuple[int, str | None]:
        return 0, None


def _splits() -> dict[str, list[Any]]:
    seen: dict[str, int] = {}
    order, splits = ("train", "train", "val", "test"), {"train": [], "val": [], "test": []}  # as conftest splits
    for row in world.triage_rows(40):
        convention = world.triage.find_convention(row["ticket"])
        group = convention.key if convention is not None else row["category"]
        splits[order[seen.get(group, 0) % 4]].append(dspy.Example(**row).with_inputs("ticket"))
        seen[group] = seen.get(group, 0) + 1
    return splits


def _compile(noise: float, seed: int, samples: int, *, budget: str | int = "light",
             stop_at: float | None = 1.0) -> tuple[OptimizationRun, World, float]:
    """One real GEPA run against the world at ``noise``; also the candidate's noise-free test score."""
    lm_world = World(noise=Noise(noise=noise, borderline=0.25, seed=seed))
    splits = _splits()
    metric = exact_match("category")
    run = run_optimizer("gepa", dspy.ChainOfThought(world.Triage), splits["train"], splits["val"], metric,
                        task_lm=world.scripted_lm("task", lm_world),
                        reflection_lm=world.scripted_lm("reflection", lm_world), budget=budget, seed=0, threads=4,
                        stop_at=stop_at, patience=None, watch=_Watch(), progress=lambda line: None, options={},
                        decision_samples=samples)
    clean = world.scripted_lm("task", World(noise=Noise()))
    test = evaluate(run.program, splits["test"], metric, lm=clean, threads=4).score
    return run, lm_world, test


def test_noise_free_the_draws_change_nothing_and_cost_under_a_tenth_more() -> None:
    plain, plain_world, plain_test = _compile(0.0, 0, 1)
    drawn, drawn_world, drawn_test = _compile(0.0, 0, 3)
    assert drawn.program.predict.signature.instructions == plain.program.predict.signature.instructions
    assert (drawn.val_optimized, drawn_test) == (plain.val_optimized, plain_test) == (1.0, 1.0)
    assert sum(drawn_world.calls.values()) <= 1.1 * sum(plain_world.calls.values())
    assert drawn.decisions is not None and "never answered a request two ways" in drawn.decisions
    assert plain.decision_draws == 0 and plain.selection is None and plain.decisions is None


def test_the_draws_are_paid_from_the_budget() -> None:
    budget = 120
    run, lm_world, _ = _compile(0.3, 1, 3, budget=budget, stop_at=None)
    assert run.decision_draws > 0
    # Every task call is a metric call, draws included; gepa may finish the iteration it is in
    # (one minibatch pair and one validation pass) past its budget, as it does without draws.
    assert lm_world.calls["task"] == run.metric_calls
    assert run.metric_calls is not None and run.metric_calls <= budget + 2 * 3 + len(_splits()["val"])


def test_validation_scores_are_scores_of_the_validation_examples() -> None:
    """gepa's evaluation cache keys a score by its example's position in its own list: turned on with a
    validation split, a candidate's validation score at position k was its minibatch score on training
    example k (in the eight-rule world a candidate missing a rule read 1.0 and stopped the run)."""
    lm_world = World(task="triage8")
    splits = triage8_splits()
    metric = exact_match("category")
    run = run_optimizer("gepa", dspy.ChainOfThought(world.Triage), splits["train"], splits["val"], metric,
                        task_lm=world.scripted_lm("task", lm_world),
                        reflection_lm=world.scripted_lm("reflection", lm_world), budget="light", seed=0, threads=4,
                        stop_at=1.0, patience=None, watch=_Watch(), progress=lambda line: None, options={})
    results = run.program.detailed_results
    assert len(results.candidates) > 5
    clean = world.scripted_lm("task", World(task="triage8"))
    for candidate, recorded in zip(results.candidates, results.val_subscores, strict=True):
        real = evaluate(candidate, splits["val"], metric, lm=clean, threads=4)
        assert dict(recorded) == {i: result.score for i, result in enumerate(real.results)}


# ---------------------------------------------------------------- what a user sees


def test_the_summary_says_how_many_draws_went_into_decisions_and_the_artifact_records_the_pick(
        triage_project: TriageProject, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEPA_TEST_NOISE", "noise=0.1,borderline=0.25,seed=4")
    result = triage_project.compile()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*extra draw(s) went into * close decision(s) (gepa_compile_samples 3)*"
                                 "final pick compared candidates #*"])
    record = json.loads(triage_project.artifact.read_text())["optimizer"]
    assert record["decision_draws"] > 0
    selection = record["selection"]
    assert selection["picked"] in selection["compared"] and len(selection["val_means"]) == len(selection["compared"])
    assert "paired on the validation split" in selection["method"]


def test_gepa_compile_samples_1_is_gepa_on_single_draws(triage_project: TriageProject,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEPA_TEST_NOISE", "noise=0.1,borderline=0.25,seed=4")
    result = triage_project.compile("-o", "gepa_compile_samples=1")
    result.assert_outcomes(passed=1)
    assert "went into" not in result.stdout.str()
    record = json.loads(triage_project.artifact.read_text())["optimizer"]
    assert (record["decision_draws"], record["selection"]) == (0, None)
