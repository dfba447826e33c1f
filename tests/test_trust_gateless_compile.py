"""A compile whose test never calls gepa.gate is still held to something: not worse than the
unoptimized program on examples.test, paired (issue 22, item 8)."""

from __future__ import annotations

import json

import pytest
from conftest import TriageProject
from world.triage import find_convention

GATELESS_TEST = '''
import dspy
from pytest_gepa import metrics

class Triage(dspy.Signature):
    """Classify the support ticket into one of: billing, claims, technical, account, shipping."""
    ticket: str = dspy.InputField()
    category: str = dspy.OutputField()

def test_triage_prompt(gepa, gepa_examples):
    data = gepa_examples("data/triage.jsonl", inputs=["ticket"])
    gepa.compile(dspy.ChainOfThought(Triage), data, metric=metrics.exact_match("category"))
'''


def _relabel_test_rows_to_the_naive_reading(project: TriageProject) -> int:
    """The test split's rule-bound tickets get the category the unoptimized program answers: GEPA
    learns the rules on train/val, so on test its candidate is surely worse than the baseline."""
    rows = [json.loads(line) for line in project.data.read_text().splitlines()]
    changed = 0
    for row in rows:
        convention = find_convention(row["ticket"])
        if row["split"] == "test" and convention is not None:
            row["category"] = convention.naive
            changed += 1
    project.data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return changed


@pytest.mark.parametrize("ini", [(), ("-o", "gepa_max_drop=0.05")], ids=["no ini threshold", "ini max_drop"])
def test_a_gateless_candidate_worse_than_the_baseline_is_rejected_not_written(triage_project: TriageProject,
                                                                             ini: tuple[str, ...]) -> None:
    triage_project.write_test(source=GATELESS_TEST)
    assert _relabel_test_rows_to_the_naive_reading(triage_project) >= 4
    result = triage_project.compile(*ini)
    # The candidate is judged in the teardown (after the test's own asserts): pytest shows an error there.
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*rejected*", "*the unoptimized program*"])
    assert not triage_project.artifact.exists()
    assert triage_project.artifact.with_name("test_triage_prompt.rejected.json").exists()


def test_a_gateless_candidate_as_good_as_the_baseline_or_better_is_written(triage_project: TriageProject) -> None:
    triage_project.write_test(source=GATELESS_TEST)
    result = triage_project.compile()
    result.assert_outcomes(passed=1)
    assert triage_project.artifact.exists()
