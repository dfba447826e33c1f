"""Cost: priced models show USD in the summary and artifact; --gepa-max-cost stops a compile cleanly."""

from __future__ import annotations

import json

import pytest
from conftest import TriageProject

# The world's answers under model names litellm's (local) price map knows.
PRICED_LMS = '''
import dspy, pytest, world

@pytest.fixture(scope="session")
def gepa_task_lm():
    return dspy.LM("openai/gpt-4o-mini", engine=world.ScriptedEngine("task"), cache=False)

@pytest.fixture(scope="session")
def gepa_reflection_lm():
    return dspy.LM("openai/gpt-4o", engine=world.ScriptedEngine("reflection"), cache=False)
'''


@pytest.fixture
def priced(triage_project: TriageProject) -> TriageProject:
    triage_project.pytester.makeconftest(PRICED_LMS)
    return triage_project


def test_cost_is_shown_and_recorded_for_priced_models(priced: TriageProject) -> None:
    result = priced.compile()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_triage_prompt*compile*$0.0*compiled*"])
    usage = json.loads(priced.artifact.read_text())["optimizer"]["lm_usage"]
    assert usage["task"]["cost_usd"] > 0 and usage["reflection"]["cost_usd"] > 0


def test_max_cost_stops_the_compile_and_keeps_the_artifact(priced: TriageProject) -> None:
    priced.compile().assert_outcomes(passed=1)
    before = priced.artifact.read_bytes()
    result = priced.compile("--gepa-max-cost", "0.00001")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "OptimizerError: the compile was stopped: LM cost $0.* exceeded --gepa-max-cost $0.0000; "
        "raise --gepa-max-cost or lower --gepa-budget. The previous artifact is unchanged.",
    ])
    assert priced.artifact.read_bytes() == before
