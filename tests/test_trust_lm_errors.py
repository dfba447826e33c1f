"""An LM error is an exception that left a call of an LM the plugin handed out, whatever its type.

A ``ConnectionError`` from the user's own retriever is their crash, named with its line, not a lost
example; a request the prompt itself made fail (context window, content policy) is a failed example,
scored 0 with the reason; an LM that is not configured is a configuration error naming what to set.
"""

from __future__ import annotations

import json

import pytest
import world
from conftest import HTTP_LMS, TriageProject, literal
from world.faults import clear_faults, install_faults

from pytest_gepa.data.ids import input_hash_id

# The triage target with a retriever of the user's own, which raises on the one ticket named by
# FAIL_ON with the error FAIL_KIND names: every kind a type-based check took for an LM error.
OWN_RETRIEVER_TEST = '''
import os

import dspy
import httpx
from openai_search import SearchUnavailable
from pytest_gepa import metrics

class Triage(dspy.Signature):
    """Classify the support ticket into one of: billing, claims, technical, account, shipping."""
    ticket: str = dspy.InputField()
    category: str = dspy.OutputField()

def retrieve(ticket):
    if ticket == os.environ.get("FAIL_ON"):
        kind = os.environ["FAIL_KIND"]
        if kind == "connection":
            raise ConnectionError("the search index refused the connection")
        if kind == "timeout":
            raise TimeoutError("the search index took too long")
        if kind == "httpx":
            raise httpx.ConnectError("search.internal: connection refused")
        raise SearchUnavailable("the search index is down")
    return ticket

class Triager(dspy.Module):
    def __init__(self):
        super().__init__()
        self.classify = dspy.ChainOfThought(Triage)

    def forward(self, ticket):
        return self.classify(ticket=retrieve(ticket))

def test_triage_prompt(gepa, gepa_examples):
    data = gepa_examples("data/triage.jsonl", inputs=["ticket"])
    metric = metrics.exact_match("category")
    program = gepa.compile(Triager(), data, metric=metric)
    gepa.gate(program, data.test, metric=metric, min_score=0.85, max_drop=0.03)
'''

# A module whose name starts with "openai": its classes are the user's, not the openai SDK's.
OPENAI_NAMED_MODULE = '''
class SearchUnavailable(Exception):
    """Raised by the project's own search client."""
'''

# A task LM over the native engine with no API key: dspy raises LMNotConfiguredError on each call.
KEYLESS_TASK_LM = HTTP_LMS + '''

@pytest.fixture(scope="session")
def gepa_task_lm():
    return dspy.LM("openai/task", api_base=os.environ["GEPA_TEST_BASE_URL"], cache=False, num_retries=0)
'''


def _test_tickets(project: TriageProject) -> list[str]:
    rows = [json.loads(line) for line in project.data.read_text().splitlines()]
    return [row["ticket"] for row in rows if row["split"] == "test"]


def test_network_errors_raised_by_the_users_own_code_are_their_crash_not_lost_examples(
        triage_project: TriageProject, monkeypatch: pytest.MonkeyPatch) -> None:
    triage_project.write_test(source=OWN_RETRIEVER_TEST)
    (triage_project.root / "openai_search.py").write_text(OPENAI_NAMED_MODULE)
    triage_project.compile().assert_outcomes(passed=1)
    ticket = _test_tickets(triage_project)[2]
    monkeypatch.setenv("FAIL_ON", ticket)
    lines = (triage_project.root / "test_triage.py").read_text().splitlines()
    for kind, raised, error in (
            ("connection", "raise ConnectionError", "ConnectionError: the search index refused the connection"),
            ("timeout", "raise TimeoutError", "TimeoutError: the search index took too long"),
            ("httpx", "raise httpx.ConnectError", "ConnectError: search.internal: connection refused"),
            ("openai_module", "raise SearchUnavailable", "SearchUnavailable: the search index is down")):
        monkeypatch.setenv("FAIL_KIND", kind)
        result = triage_project.run()
        line = next(number for number, text in enumerate(lines, 1) if raised in text)
        assert "lost to errors" not in result.stdout.str(), kind
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines([
            "ProgramError: test_triage.py::test_triage_prompt [[]test_triage_prompt[]]: the program raised on 1 of "
            "10 devset examples. This is a bug in the test's code, not a low score:",
            f"  - example '{input_hash_id({'ticket': ticket})}': the program raised {literal(error)} "
            f"(at test_triage.py:{line} in retrieve)",
        ])


@pytest.fixture
def compiled_http(http_project: TriageProject, scripted_server: world.ScriptedServer) -> TriageProject:
    http_project.compile().assert_outcomes(passed=1)
    clear_faults(scripted_server)
    return http_project


@pytest.mark.parametrize(("kind", "error"), [("context_window", "ContextWindowExceededError"),
                                             ("content_policy", "LMInvalidRequestError")])
def test_a_request_the_prompt_made_fail_is_a_failed_example_scored_0_never_dropped(
        compiled_http: TriageProject, scripted_server: world.ScriptedServer, kind: str, error: str) -> None:
    install_faults(scripted_server, role="task", kind=kind, calls={4})
    # One draw, no second look: a second look would judge the example on fresh draws, which this
    # one-call fault no longer touches (a real overflow refuses every draw alike).
    result = compiled_http.run("--gepa-threads", "1", "--gepa-report", "report.json", "-o", "gepa_max_samples=1")
    text = result.stdout.str()
    assert "lost to errors" not in text and "LMError" not in text, text
    target = json.loads((compiled_http.root / "report.json").read_text())["targets"][0]
    assert target["lm_errors"] == []
    assert (target["scored"], target["total"]) == (10, 10)
    refused = [row for row in target["per_example"] if row["score"] == 0.0]
    assert len(refused) == 1, target["per_example"]
    assert refused[0]["error"] is None
    assert refused[0]["feedback"].startswith(f"The LM refused the request this prompt made: {error}: ")
    assert "scripted fault, task call 4" in refused[0]["feedback"]


def test_every_request_refused_fails_the_gate_as_a_low_score_not_an_lm_error(
        compiled_http: TriageProject, scripted_server: world.ScriptedServer) -> None:
    install_faults(scripted_server, role="task", kind="context_window", always=True)
    result = compiled_http.run()
    result.assert_outcomes(failed=1)
    assert "LMError" not in result.stdout.str()
    result.stdout.fnmatch_lines(["GateFailure: gepa gate failed for *", "score 0.000 is under min_score 0.850*",
                                 "*The LM refused the request this prompt made: ContextWindowExceededError: *"])


def test_a_task_lm_that_is_not_configured_is_a_configuration_error_naming_what_to_set(
        compiled_http: TriageProject, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    compiled_http.pytester.makeconftest(KEYLESS_TASK_LM)
    for mode in ((), ("--gepa-compile", "--gepa-budget", "light")):
        result = compiled_http.run(*mode)
        result.assert_outcomes(failed=1)
        text = result.stdout.str()
        assert "LMError" not in text and "infrastructure error" not in text, text
        result.stdout.fnmatch_lines([
            "LMNotConfigured: The task LM is not configured: LMNotConfiguredError: [[]openai/task[]] no API key found "
            "*OPENAI_API_KEY* pass another model with --gepa-task-lm (ini gepa_task_lm), or override the "
            "gepa_task_lm fixture in conftest.py*",
        ])
