"""Never advise deleting an artifact in use: the "belong to no target" list counts only test files
whose every test ran, so a skipped or deselected test's artifact is never on it; a leftover file
in a wholly run test file still is."""

from __future__ import annotations

import shutil

import pytest
from conftest import TriageProject
from test_pytest_integration import TWO_TARGETS

UNUSED = "*gepa file(s) belong to no target of these tests any more (renamed or removed?); delete them if so:"
WORKERS = [pytest.param([], id="serial"), pytest.param(["-n", "2"], id="xdist")]


@pytest.fixture
def two_targets(triage_project: TriageProject) -> TriageProject:
    """test_easy and test_strict compiled, and the artifact of a test since renamed away."""
    triage_project.write_test(source=TWO_TARGETS.format(easy=0.5, strict=0.5))
    triage_project.compile().assert_outcomes(passed=2)
    folder = triage_project.root / "gepa_artifacts" / "test_triage"
    shutil.copy(folder / "test_easy.json", folder / "test_renamed_away.json")
    return triage_project


def _listed(output: str) -> list[str]:
    """The paths under the "belong to no target" line, by file name."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if "belong to no target" in line), None)
    if start is None:
        return []
    return [line.strip().rsplit("/", 1)[-1] for line in lines[start + 1:] if line.startswith("  ")]


@pytest.mark.parametrize("workers", WORKERS)
def test_a_leftover_file_of_a_wholly_run_test_file_is_listed(two_targets: TriageProject, workers: list[str]) -> None:
    result = two_targets.run(*workers)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["1 " + UNUSED[1:], "  *gepa_artifacts/test_triage/test_renamed_away.json"])
    assert _listed(result.stdout.str()) == ["test_renamed_away.json"]


@pytest.mark.parametrize("workers", WORKERS)
def test_a_skipped_tests_artifact_is_not_listed(two_targets: TriageProject, workers: list[str]) -> None:
    source = (two_targets.root / "test_triage.py").read_text()
    two_targets.write_test(source="import pytest\n" + source.replace(
        "def test_strict(", "@pytest.mark.skip(reason='flaky endpoint today')\ndef test_strict("))
    result = two_targets.run(*workers)
    result.assert_outcomes(passed=1, skipped=1)
    assert "test_strict.json" not in _listed(result.stdout.str())
    assert "belong to no target" not in result.stdout.str()  # the file did not run whole: nothing is judged
    assert (two_targets.root / "gepa_artifacts" / "test_triage" / "test_strict.json").exists()


def test_a_test_skipped_at_runtime_keeps_its_named_artifact_off_the_list(triage_project: TriageProject) -> None:
    named = TWO_TARGETS.format(easy=0.5, strict=0.5).replace(
        "program = gepa.compile(dspy.ChainOfThought(Triage), data, metric=metric)",
        "program = gepa.compile(dspy.ChainOfThought(Triage), data, metric=metric, name=name)").replace(
        "def _target(gepa, gepa_examples, min_score):", "def _target(gepa, gepa_examples, min_score, name=None):").replace(
        "_target(gepa, gepa_examples, 0.5)\n\ndef test_strict", "_target(gepa, gepa_examples, 0.5)\n\ndef test_strict").replace(
        "def test_strict(gepa, gepa_examples):\n    _target(gepa, gepa_examples, 0.5)",
        "def test_strict(gepa, gepa_examples):\n    _target(gepa, gepa_examples, 0.5, name='strict_prompt')")
    assert "name='strict_prompt'" in named
    triage_project.write_test(source=named)
    triage_project.compile().assert_outcomes(passed=2)
    artifact = triage_project.root / "gepa_artifacts" / "test_triage" / "strict_prompt.json"
    assert artifact.exists()
    # The test skips itself before it reaches gepa.compile: its artifact is still in use.
    triage_project.write_test(source="import pytest\n" + named.replace(
        "def test_strict(gepa, gepa_examples):\n", "def test_strict(gepa, gepa_examples):\n    pytest.skip('no judge today')\n"))
    result = triage_project.run()
    result.assert_outcomes(passed=1, skipped=1)
    assert "strict_prompt.json" not in _listed(result.stdout.str())
    assert "belong to no target" not in result.stdout.str()


@pytest.mark.parametrize("workers", WORKERS)
def test_a_deselected_tests_artifact_is_not_listed(two_targets: TriageProject, workers: list[str]) -> None:
    result = two_targets.run("-k", "easy", *workers)
    # Under xdist the workers deselect, and the controller's tally does not count them.
    result.assert_outcomes(passed=1, deselected=0 if workers else 1)
    result.stdout.fnmatch_lines(["*test_easy*gate*passed*"])
    assert "belong to no target" not in result.stdout.str()
