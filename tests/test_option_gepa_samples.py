"""Statistical verdicts against a noisy model (DESIGN.md, "Verdicts"): ``--gepa-samples``, paired
tests, ``inconclusive`` and ``--gepa-strict``, in real pytest sessions on the seeded noisy world.

The world's noise (``GEPA_TEST_NOISE``): a quarter of the inputs are borderline and answered wrong
with probability ``noise`` on each call; ``regress`` plants a real regression. Seeds are fixed, so
every run here is deterministic, and different seeds are different "reruns" of the same gate.
"""

from __future__ import annotations

import json

import pytest
from conftest import TriageProject, write_split_triage_data

NOISY = "noise=0.2,borderline=0.25,seed={seed}"
REGRESSED = "noise=0.2,borderline=0.25,regress=0.3,seed={seed}"
RERUNS = range(1, 6)


@pytest.fixture
def noisy_project(triage_project: TriageProject, monkeypatch: pytest.MonkeyPatch) -> TriageProject:
    """40 devset examples, compiled with 3 samples each on the noisy world (seed 0)."""
    write_split_triage_data(triage_project.data, n=160)
    triage_project.write_test(min_score=0.7, max_drop=0.1)
    monkeypatch.setenv("GEPA_TEST_NOISE", NOISY.format(seed=0))
    triage_project.compile("--gepa-samples", "3", "-W", "ignore::pytest_gepa.errors.GepaWarning").assert_outcomes(
        passed=1)
    return triage_project


def gate(project: TriageProject, monkeypatch: pytest.MonkeyPatch, noise: str, *args: str) -> str:
    """The one test's outcome, "passed" or "failed"; a run that errored, skipped or ran nothing is
    no verdict at all and fails the calling test, with the run's output."""
    monkeypatch.setenv("GEPA_TEST_NOISE", noise)
    result = project.run("--gepa-samples", "3", "-W", "ignore::pytest_gepa.errors.GepaWarning", *args)
    outcomes = {key: count for key, count in result.parseoutcomes().items() if key not in ("warnings", "warning")}
    if outcomes not in ({"passed": 1}, {"failed": 1}):
        raise AssertionError(f"the gate run gave {outcomes!r}, not one passed or failed test:\n{result.stdout.str()}")
    return next(iter(outcomes))


def test_the_artifact_records_every_draw_their_means_and_resolution(noisy_project: TriageProject) -> None:
    devset = json.loads(noisy_project.artifact.read_text())["scores"]["devset"]
    assert devset["samples"] == 3 and devset["n"] == 40
    # Means of three draws: a borderline example answered wrong once scores 2/3.
    assert set(devset["per_example"].values()) <= {0.0, 1 / 3, 2 / 3, 1.0}
    draws = devset["draws"]
    assert draws.keys() == devset["per_example"].keys() and {len(d) for d in draws.values()} == {3}
    assert all(sum(d) / 3 == devset["per_example"][eid] for eid, d in draws.items())
    assert any(len(set(d)) > 1 for d in draws.values())  # the noisy world: some examples' draws differ
    assert 0 < devset["resolution"] < 0.5


def test_the_gate_helper_refuses_a_run_that_errored_or_ran_nothing(noisy_project: TriageProject,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # A world that cannot be built makes the run error: that is no "passed".
    with pytest.raises(AssertionError, match="not one passed or failed test"):
        gate(noisy_project, monkeypatch, "noise=2")
    with pytest.raises(AssertionError, match="not one passed or failed test"):
        gate(noisy_project, monkeypatch, NOISY.format(seed=1), "-k", "no_such_test")


def test_an_unchanged_artifact_passes_every_noisy_rerun(noisy_project: TriageProject,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    verdicts = [gate(noisy_project, monkeypatch, NOISY.format(seed=seed)) for seed in RERUNS]
    assert verdicts == ["passed"] * len(RERUNS)


def test_a_planted_regression_fails_every_noisy_rerun(noisy_project: TriageProject,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    verdicts = [gate(noisy_project, monkeypatch, REGRESSED.format(seed=seed)) for seed in RERUNS]
    assert verdicts == ["failed"] * len(RERUNS)


def test_a_regression_failure_shows_the_paired_drop_with_its_interval(noisy_project: TriageProject,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEPA_TEST_NOISE", REGRESSED.format(seed=1))
    result = noisy_project.run("--gepa-samples", "3", "-W", "ignore::pytest_gepa.errors.GepaWarning")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "GateFailure: gepa gate failed for test_triage.py::test_triage_prompt *",
        "*under the score recorded in the artifact (*) on the 40 examples in both, more than max_drop 0.100: "
        "paired drop 0.* (on a new devset of this size, 90% CI 0.* to 0.*; conditioned on these examples, * of 40 "
        "varying, 120 recorded and 120 draws today: exact hypergeometric, one-sided p = * < 0.025, significant)",
        "*example(s) scored lower than when compiled:",
    ])


def test_samples_bypass_the_cache_and_make_fresh_calls(noisy_project: TriageProject,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEPA_TEST_NOISE", NOISY.format(seed=1))
    once = noisy_project.run("--gepa-samples", "1", "-W", "ignore::pytest_gepa.errors.GepaWarning")
    thrice = noisy_project.run("--gepa-samples", "3", "-W", "ignore::pytest_gepa.errors.GepaWarning")
    once.stdout.fnmatch_lines(["*test_triage_prompt*gate*40/0/0*"])
    thrice.stdout.fnmatch_lines(["*test_triage_prompt*gate*120/0/0*"])


@pytest.fixture
def small_project(triage_project: TriageProject) -> TriageProject:
    triage_project.write_test(min_score=0.5, max_drop=0.05)
    triage_project.compile().assert_outcomes(passed=1)
    return triage_project


def test_two_of_ten_falling_on_a_steady_model_fail_once_the_gate_draws_again(small_project: TriageProject,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # Ten devset examples, two fall: with examples as the unit no test can tell that from chance
    # (2^-2). Conditioned on the devset, 3 of 3 right at compile and 0 of 1 today is 1/4 each: not
    # yet decided, so the gate draws the two again, and 0 of 10 more is beyond doubt.
    monkeypatch.setenv("GEPA_TEST_NOISE", "noise=0,borderline=0,regress=0.2,seed=3")
    result = small_project.run("-W", "default")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*test_triage_prompt: inconclusive; drawing 2 examples 10 more times each (gepa_max_samples 3)",
        "*more than max_drop 0.050: paired drop 0.200 (*conditioned on these examples, 2 of 10 varying, 30 "
        "recorded and 28 draws today: exact hypergeometric, one-sided p = 1.2e-05 < 0.025, significant)",
        "*30 draws spent on 10 examples: 2 drawn 10 more times after a first look at level 0.025, decided at "
        "level 0.025",
    ])


def test_a_drop_the_budget_cannot_resolve_is_inconclusive_and_strict_fails_it(small_project: TriageProject,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # No budget beyond the one draw: (1/4)^2 = 1/16 is all the evidence, not under 0.05.
    monkeypatch.setenv("GEPA_TEST_NOISE", "noise=0,borderline=0,regress=0.2,seed=3")
    result = small_project.run("-W", "default", "-o", "gepa_max_samples=1")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines([
        "*GepaWarning: test_triage.py::test_triage_prompt [[]test_triage_prompt[]]: inconclusive gate: *more than "
        "max_drop 0.050, but not significantly: *p = 0.062 >= 0.05), so this is not decided; more draws per "
        "example would decide it*",
        "*test_triage_prompt*gate*inconclusive*",
        "Inconclusive: *",
    ])
    strict = small_project.run("--gepa-strict", "-o", "gepa_max_samples=1")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["GateFailure: *inconclusive gate: *", "--gepa-strict makes an inconclusive verdict fail."])


@pytest.fixture
def small_noisy_project(triage_project: TriageProject, monkeypatch: pytest.MonkeyPatch) -> TriageProject:
    """20 devset examples on the noisy world (seed 0), compiled with the default 3 recorded draws."""
    write_split_triage_data(triage_project.data, n=80)
    triage_project.write_test(min_score=0.5, max_drop=0.05)
    monkeypatch.setenv("GEPA_TEST_NOISE", NOISY.format(seed=0))
    triage_project.compile("-W", "ignore::pytest_gepa.errors.GepaWarning").assert_outcomes(passed=1)
    return triage_project


def test_twenty_noisy_examples_fail_a_real_regression_and_pass_an_unchanged_artifact(
        small_noisy_project: TriageProject, monkeypatch: pytest.MonkeyPatch) -> None:
    # With examples as the unit, 20 examples could not fail drops up to 0.15 at all (RESULTS.md before).
    devset = json.loads(small_noisy_project.artifact.read_text())["scores"]["devset"]
    assert devset["n"] == 20 and {len(d) for d in devset["draws"].values()} == {3}
    regressed = [gate(small_noisy_project, monkeypatch, REGRESSED.format(seed=seed)) for seed in RERUNS]
    unchanged = [gate(small_noisy_project, monkeypatch, NOISY.format(seed=seed)) for seed in RERUNS]
    once = [gate(small_noisy_project, monkeypatch, NOISY.format(seed=seed), "--gepa-samples", "1") for seed in RERUNS]
    assert (regressed, unchanged, once) == (["failed"] * 5, ["passed"] * 5, ["passed"] * 5)
