"""Replay means no live call, anywhere: under --gepa-replay every LM the plugin hands out (the
fixtures, a conftest's override of them, rubrics, compile and gate) answers only from cassettes;
calls made outside compile/gate go to the test's own cassette, recorded under --gepa-record."""

from __future__ import annotations

import json

import pytest
import world
from conftest import TRIAGE_TEST, TriageProject
from world.server import ChatRequest, HTTPReply

LIVE_TESTS = '''

def test_live_reply(gepa_rubric):
    judge = gepa_rubric("rubrics/triage.yaml")
    verdict = judge.evaluate(ticket="I was charged twice for my plan.", category="billing")
    assert verdict.passed, verdict.feedback

def test_task_lm_directly(gepa_task_lm):
    with dspy.context(lm=gepa_task_lm):
        answer = dspy.Predict(Triage)(ticket="My parcel arrived with a dent in it.")
    assert answer.category in {"billing", "claims", "technical", "account", "shipping"}
    raw = gepa_task_lm(messages=[{"role": "user", "content": "[[ ## ticket ## ]]\\nThe app crashes on start."}])
    assert raw and isinstance(raw[0], str)
'''

RUBRIC = """\
name: triage_category
criteria:
  - name: category
    description: The ticket's category is the one in the reference answer.
"""

NODEIDS = ("test_triage.py::test_triage_prompt", "test_triage.py::test_live_reply",
           "test_triage.py::test_task_lm_directly")


class DeadEndpoint:
    """A server hook for every role: whatever reaches the endpoint is noted and refused."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, request: ChatRequest) -> HTTPReply:
        self.seen.append(request.role)
        return HTTPReply(503, {"error": {"message": "endpoint is down", "type": "server_error"}})


@pytest.fixture
def recorded(http_project: TriageProject, scripted_server: world.ScriptedServer) -> TriageProject:
    """The HTTP project with a target, a rubric test and a direct task-LM test, all recorded."""
    http_project.write_test(source=TRIAGE_TEST.format(min_score=0.85, max_drop=0.03) + LIVE_TESTS)
    (http_project.root / "rubrics").mkdir()
    (http_project.root / "rubrics" / "triage.yaml").write_text(RUBRIC)
    http_project.compile("--gepa-record").assert_outcomes(passed=3)
    assert scripted_server.calls["judge"] >= 1 and scripted_server.calls["task"] > 10
    return http_project


def _own_cassette(project: TriageProject, test: str) -> list[dict[str, object]]:
    path = project.root / "gepa_artifacts" / "test_triage" / f"{test}.cassette.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_calls_outside_compile_and_gate_are_recorded_in_the_tests_own_cassette(recorded: TriageProject) -> None:
    assert {entry["role"] for entry in _own_cassette(recorded, "test_live_reply")} == {"judge"}
    direct = _own_cassette(recorded, "test_task_lm_directly")
    assert {entry["role"] for entry in direct} == {"task"} and len(direct) >= 2  # Predict, then the raw call
    assert {json.loads(line)["role"] for line in recorded.cassette.read_text().splitlines()} == {"task", "reflection"}


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_replay_with_the_endpoint_dead_passes_and_asks_the_server_nothing(
        recorded: TriageProject, scripted_server: world.ScriptedServer, workers: list[str]) -> None:
    dead = DeadEndpoint()
    scripted_server.hooks["*"] = dead
    result = recorded.run("--gepa-replay", *workers)
    result.assert_outcomes(passed=3)
    assert dead.seen == []
    result.stdout.fnmatch_lines(["*test_triage_prompt*gate*1.000*replayed 10*passed*"])


def test_a_replayed_compile_asks_the_server_nothing(recorded: TriageProject,
                                                   scripted_server: world.ScriptedServer) -> None:
    dead = DeadEndpoint()
    scripted_server.hooks["*"] = dead
    recorded.compile("--gepa-replay").assert_outcomes(passed=3)
    assert dead.seen == []


def test_a_call_outside_compile_and_gate_that_was_never_recorded_fails_naming_it(
        recorded: TriageProject, scripted_server: world.ScriptedServer) -> None:
    dead = DeadEndpoint()
    scripted_server.hooks["*"] = dead
    source = (recorded.root / "test_triage.py").read_text()
    recorded.write_test(source=source.replace("I was charged twice for my plan.", "A ticket no cassette has seen."))
    result = recorded.run("--gepa-replay", "-k", "test_live_reply")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["CassetteMissError: test_triage.py::test_live_reply: no recorded answer for a judge "
                                 "LM call to 'openai/judge' in '*test_live_reply.cassette.jsonl'*"])
    assert dead.seen == []
