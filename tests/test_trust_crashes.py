"""A crash in the user's program or metric is a bug in the test's code, named with the example and
the line; an LM error on one example of ten is a lost example, listed ("scored 9 of 10")."""

from __future__ import annotations

import json

import pytest
import world
from conftest import TriageProject, literal
from world.faults import install_faults

from pytest_gepa.data.ids import input_hash_id

# The triage target whose program and metric are the user's own code. Each raises on the one
# ticket named by an environment variable, so a compile without it is clean and a gate with it
# crashes on exactly that example.
OWN_CODE_TEST = '''
import os

import dspy
from pytest_gepa import metrics

class Triage(dspy.Signature):
    """Classify the support ticket into one of: billing, claims, technical, account, shipping."""
    ticket: str = dspy.InputField()
    category: str = dspy.OutputField()

class Triager(dspy.Module):
    def __init__(self):
        super().__init__()
        self.classify = dspy.ChainOfThought(Triage)

    def forward(self, ticket):
        if ticket == os.environ.get("CRASH_PROGRAM_ON"):
            raise ValueError(f"cannot route {ticket[:12]!r}")
        return self.classify(ticket=ticket)

exact = metrics.exact_match("category")

def metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
    if gold.ticket == os.environ.get("CRASH_METRIC_ON"):
        raise KeyError("priority")
    return exact(gold, pred, trace, pred_name, pred_trace)

def test_triage_prompt(gepa, gepa_examples):
    data = gepa_examples("data/triage.jsonl", inputs=["ticket"])
    program = gepa.compile(Triager(), data, metric=metric)
    gepa.gate(program, data.test, metric=metric, min_score=0.85, max_drop=0.03)
'''


def _test_tickets(project: TriageProject) -> list[str]:
    rows = [json.loads(line) for line in project.data.read_text().splitlines()]
    return [row["ticket"] for row in rows if row["split"] == "test"]


def _line_of(project: TriageProject, text: str) -> int:
    lines = (project.root / "test_triage.py").read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


@pytest.fixture
def own_code(triage_project: TriageProject) -> TriageProject:
    triage_project.write_test(source=OWN_CODE_TEST)
    triage_project.compile().assert_outcomes(passed=1)
    assert triage_project.artifact.exists()
    return triage_project


def test_a_program_that_raises_on_one_example_fails_naming_example_exception_and_line(
        own_code: TriageProject, monkeypatch: pytest.MonkeyPatch) -> None:
    ticket = _test_tickets(own_code)[3]
    monkeypatch.setenv("CRASH_PROGRAM_ON", ticket)
    result = own_code.run()
    result.assert_outcomes(failed=1)
    line = _line_of(own_code, "raise ValueError")
    result.stdout.fnmatch_lines([
        "ProgramError: test_triage.py::test_triage_prompt [[]test_triage_prompt[]]: the program raised on 1 of 10 "
        "devset examples. This is a bug in the test's code, not a low score:",
        f"  - example '{input_hash_id({'ticket': ticket})}': the program raised ValueError: cannot route "
        f"{literal(repr(ticket[:12]))}* (at test_triage.py:{line} in forward)",
    ])
    out = result.stdout.str()
    assert "LMError" not in out and "is under min_score" not in out  # neither an LM error nor a low score
    result.stdout.fnmatch_lines(["*test_triage_prompt*gate*error*"])


def test_a_metric_that_raises_on_one_example_fails_naming_example_exception_and_line(
        own_code: TriageProject, monkeypatch: pytest.MonkeyPatch) -> None:
    ticket = _test_tickets(own_code)[0]
    monkeypatch.setenv("CRASH_METRIC_ON", ticket)
    result = own_code.run()
    result.assert_outcomes(failed=1)
    line = _line_of(own_code, "raise KeyError")
    result.stdout.fnmatch_lines([
        "ProgramError: test_triage.py::test_triage_prompt [[]test_triage_prompt[]]: the program raised on 1 of 10 "
        "devset examples. This is a bug in the test's code, not a low score:",
        f"  - example '{input_hash_id({'ticket': ticket})}': the metric raised KeyError: *priority* "
        f"(at test_triage.py:{line} in metric)",
    ])
    assert "LMError" not in result.stdout.str()


def test_one_lm_error_in_ten_examples_is_a_lost_example_not_a_failure(
        http_project: TriageProject, scripted_server: world.ScriptedServer) -> None:
    http_project.compile().assert_outcomes(passed=1)
    # The fourth task call of the gate fails; the LMs retry nothing (conftest's HTTP_LMS).
    plan = install_faults(scripted_server, role="task", kind="http_500", calls={4}, retry_after=0)
    result = http_project.run("--gepa-threads", "1")
    result.assert_outcomes(passed=1)
    assert plan.count == 1
    result.stdout.fnmatch_lines([
        "*test_triage_prompt*gate*passed*",
        "*test_triage_prompt*: scored 9 of 10; lost to errors:",
        "  *: LMServerError*",
    ])
    assert "ProgramError" not in result.stdout.str()
