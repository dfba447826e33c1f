"""Faulty LM endpoints, in compile and in gate mode: what retries absorb, and what the user reads
when they cannot.

Every LM is reached over HTTP through litellm (``tests/world/faults.py`` makes the scripted server
misbehave on chosen calls). Transient faults (429, 500, a hang past the timeout, a dropped
connection) must be retried into exactly the result of a run without faults. A persistent failure
is an LM error naming the model, the endpoint and the first error, never a low score, and in
compile mode the previous artifact stays byte-identical. A reflection LM that fails, babbles or
proposes one-word instructions is the optimizer's error, not a "no change" artifact.

Backoff, as dspy 3.4 does it (measured): a retry waits the ``Retry-After`` hint when the reply has
one, else 1 s, then 2 s. Rate limits here carry ``Retry-After: 0``, and the persistent 500s carry it
too (as a 503 would), so a run that exhausts its retries on every call still takes seconds, not
minutes; the transient 500s, hangs and drops pay dspy's real 1 s backoff.
"""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from typing import Any

import pytest
import world
from conftest import TriageProject, http_lms, literal
from world.faults import GARBAGE, answer_fields, clear_faults, faults_of, install_faults

# The HTTP LMs of conftest, with two retries, as a user would configure them.
RETRYING_HTTP_LMS = http_lms(num_retries=2)

RUBRIC_TEST = '''
from pathlib import Path

import dspy
from pytest_gepa.rubric import load_rubric

class Triage(dspy.Signature):
    """Classify the support ticket into one of: billing, claims, technical, account, shipping."""
    ticket: str = dspy.InputField()
    category: str = dspy.OutputField()

def test_triage_prompt(gepa, gepa_examples):
    data = gepa_examples("data/triage.jsonl", inputs=["ticket"])
    judge = load_rubric(Path(__file__).parent / "rubrics" / "triage.yaml")
    program = gepa.compile(dspy.ChainOfThought(Triage), data, metric=judge)
    gepa.gate(program, data.test, metric=judge, min_score=0.85, max_drop=0.03)
'''

RUBRIC = """\
name: triage_category
criteria:
  - name: correct
    description: The category agrees with the reference answer.
"""

DEVSET = 10  # test-split examples of the triage data: one task call each in a gate
SMALL_BUDGET = ("--gepa-budget", "40")  # enough to see a compile fail; a clean compile stops at val 1.0


@dataclass(frozen=True)
class Reference:
    """A compile without faults: its artifact and the LM calls it made, per role."""

    artifact: bytes
    calls: dict[str, int]

    @property
    def data(self) -> dict[str, Any]:
        return json.loads(self.artifact)


# One fault-free compile per variant for the whole module: every test starts from the same
# artifact, and a compile costs more than copying one.
_REFERENCES: dict[str, Reference] = {}


def reference(project: TriageProject, server: world.ScriptedServer, variant: str = "exact_match") -> Reference:
    """Put the fault-free artifact of ``variant`` in place (compiling it the first time) and reset
    the server's call counts."""
    ref = _REFERENCES.get(variant)
    if ref is None:
        clear_faults(server)
        server.reset_calls()
        project.compile().assert_outcomes(passed=1)
        ref = _REFERENCES[variant] = Reference(project.artifact.read_bytes(), dict(server.calls))
        assert ref.data["scores"]["devset"]["optimized"] == 1.0
    else:
        project.artifact.parent.mkdir(parents=True, exist_ok=True)
        project.artifact.write_bytes(ref.artifact)
    server.reset_calls()
    return ref


@pytest.fixture(autouse=True)
def _healthy_server_after(scripted_server: world.ScriptedServer) -> Any:
    yield
    clear_faults(scripted_server)  # also lets go of hung calls before the server stops


@pytest.fixture
def project(pytester: pytest.Pytester, scripted_server: world.ScriptedServer) -> TriageProject:
    """The triage project of ``http_project``, its LMs retrying twice."""
    return TriageProject(pytester, lms=RETRYING_HTTP_LMS)


@pytest.fixture
def rubric_project(project: TriageProject) -> TriageProject:
    """The triage target scored by a judge rubric (the judge LM over HTTP too)."""
    project.write_test(source=RUBRIC_TEST)
    (project.root / "rubrics").mkdir()
    (project.root / "rubrics" / "triage.yaml").write_text(RUBRIC)
    return project


def assert_no_crash(result: pytest.RunResult) -> None:
    text = result.stdout.str()
    assert "INTERNALERROR" not in text and result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), text


def message_of(result: pytest.RunResult) -> str:
    """The one line a user reads for the failed target (the plugin's error or gate failure)."""
    for line in result.stdout.lines:
        if line.startswith(("LMError: ", "OptimizerError: ", "GateFailure: ", "GepaError: ")):
            return line
    raise AssertionError("no gepa failure message in:\n" + result.stdout.str())


# -- the fault plans themselves -------------------------------------------------------------------


def _chat(server: world.ScriptedServer, role: str, system: str = "") -> world.HTTPReply:
    messages = [{"role": "system", "content": system}] if system else []
    body = {"model": role, "messages": [*messages, {"role": "user", "content": "ping"}]}
    return server.handle("POST", "/v1/chat/completions", json.dumps(body).encode())


def test_fault_plans_choose_calls_by_their_number_per_role(scripted_server: world.ScriptedServer) -> None:
    _chat(scripted_server, "task")  # calls before a plan do not count towards it
    first = install_faults(scripted_server, role="task", kind="http_500", first=2)
    every = install_faults(scripted_server, role="reflection", kind="http_429", every=3)
    listed = install_faults(scripted_server, role="judge", kind="garbage", calls=[1, 4])
    statuses = {role: [_chat(scripted_server, role).status for _ in range(6)]
                for role in ("task", "reflection", "judge")}
    assert statuses["task"] == [500, 500, 200, 200, 200, 200]
    assert statuses["reflection"] == [200, 200, 429, 200, 200, 429]
    assert statuses["judge"] == [200] * 6  # garbage is a well-formed 200
    assert (first.injected, every.injected, listed.injected) == ([1, 2], [3, 6], [1, 4])
    assert faults_of(scripted_server) == {"task": first, "reflection": every, "judge": listed}
    clear_faults(scripted_server, "task")
    assert _chat(scripted_server, "task").status == 200
    clear_faults(scripted_server)
    assert faults_of(scripted_server) == {} and _chat(scripted_server, "reflection").status == 200


def test_fault_replies_look_like_a_providers(scripted_server: world.ScriptedServer) -> None:
    install_faults(scripted_server, role="task", kind="http_429", always=True, retry_after=2)
    reply = _chat(scripted_server, "task")
    assert reply.status == 429 and reply.headers == {"Retry-After": "2"}
    assert reply.body["error"]["type"] == "rate_limit_error"
    install_faults(scripted_server, role="task", kind="http_500", always=True)
    assert _chat(scripted_server, "task").headers == {}  # no Retry-After unless asked for
    install_faults(scripted_server, role="task", kind="garbage", always=True)
    assert _chat(scripted_server, "task").body["choices"][0]["message"]["content"] == GARBAGE
    install_faults(scripted_server, role="task", kind="reply", always=True,
                   content=answer_fields(new_instruction="Classify."))
    # As JSONAdapter asks for it (the reflection LM's proposer uses JSONAdapter).
    system = ("Your output fields are:\n1. `new_instruction` (str): The new instruction.\n"
              "All interactions will be structured in the following way. Outputs will be a JSON object.")
    reply = _chat(scripted_server, "task", system)
    assert json.loads(reply.body["choices"][0]["message"]["content"]) == {"new_instruction": "Classify."}


@pytest.mark.parametrize("bad", [{}, {"first": 1, "always": True}, {"every": 0}, {"first": True}],
                         ids=["no-share", "two-shares", "every-0", "first-bool"])
def test_a_fault_plan_needs_exactly_one_valid_share(scripted_server: world.ScriptedServer, bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"first|every"):
        install_faults(scripted_server, role="task", kind="http_500", **bad)
    with pytest.raises(ValueError, match="kind must be one of"):
        install_faults(scripted_server, role="task", kind="http_418", always=True)


def test_dropped_and_hung_calls_fail_on_the_wire(scripted_server: world.ScriptedServer) -> None:
    body = json.dumps({"model": "task", "messages": [{"role": "user", "content": "ping"}]})

    def post() -> int:
        connection = http.client.HTTPConnection("127.0.0.1", scripted_server.port, timeout=0.5)
        try:
            connection.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
            return connection.getresponse().status
        finally:
            connection.close()

    install_faults(scripted_server, role="task", kind="drop", first=1)
    with pytest.raises(http.client.RemoteDisconnected):
        post()
    assert post() == 200
    hang = install_faults(scripted_server, role="task", kind="hang", first=1)
    with pytest.raises(socket.timeout):
        post()
    clear_faults(scripted_server)  # lets the hung call go
    assert post() == 200 and hang.injected == [1]


# -- transient faults: retried, same result --------------------------------------------------------

# (kind, which calls, extra options). With calls in flight in parallel a request may meet two of
# the `first` faults, which two retries still get through; `every` runs one call at a time, so a
# retry never meets the next fault.
TRANSIENT = [
    pytest.param("http_429", {"first": 2}, (), id="429-first-2"),
    pytest.param("http_500", {"first": 2}, (), id="500-first-2"),
    pytest.param("hang", {"first": 1}, (), id="timeout-first-1"),
    pytest.param("drop", {"first": 2}, (), id="dropped-connection-first-2"),
]


def _shorten_timeout_for(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if kind == "hang":
        monkeypatch.setenv("GEPA_TEST_LM_TIMEOUT", "1")


@pytest.mark.parametrize(
    ("kind", "share", "options"),
    [*TRANSIENT, pytest.param("http_429", {"every": 20}, ("--gepa-threads", "1"), id="429-every-20th")],
)
def test_transient_task_faults_in_compile_are_retried_into_the_same_artifact(
        project: TriageProject, scripted_server: world.ScriptedServer, monkeypatch: pytest.MonkeyPatch,
        kind: str, share: dict[str, Any], options: tuple[str, ...]) -> None:
    ref = reference(project, scripted_server)
    project.artifact.unlink()
    _shorten_timeout_for(kind, monkeypatch)
    plan = install_faults(scripted_server, role="task", kind=kind, **share)
    result = project.compile(*options)
    result.assert_outcomes(passed=1)
    assert plan.count >= 1
    # Each fault cost exactly one retry, and nothing else changed.
    assert scripted_server.calls["task"] == ref.calls["task"] + plan.count
    artifact = json.loads(project.artifact.read_text())
    assert artifact["instructions"] == ref.data["instructions"]
    assert artifact["scores"] == ref.data["scores"]
    result.stdout.fnmatch_lines(["*test_triage_prompt*compile*1.000 (0.72-1.00)*compiled*"])


@pytest.mark.parametrize(
    ("kind", "share", "options"),
    [*TRANSIENT, pytest.param("http_429", {"every": 3}, ("--gepa-threads", "1"), id="429-every-3rd")],
)
def test_transient_task_faults_in_gate_are_retried_into_the_same_score(
        project: TriageProject, scripted_server: world.ScriptedServer, monkeypatch: pytest.MonkeyPatch,
        kind: str, share: dict[str, Any], options: tuple[str, ...]) -> None:
    reference(project, scripted_server)
    _shorten_timeout_for(kind, monkeypatch)
    plan = install_faults(scripted_server, role="task", kind=kind, **share)
    result = project.run(*options)
    result.assert_outcomes(passed=1)
    assert plan.count >= 1
    assert scripted_server.calls["task"] == DEVSET + plan.count
    # The score recorded by the fault-free compile, unchanged: 10 task calls as the meter sees them.
    result.stdout.fnmatch_lines(["*test_triage_prompt*gate*1.000 (0.72-1.00)*1.000*+0.000*10/0/0*passed*"])


@pytest.mark.parametrize("retries", [2, 0])
def test_gepa_retries_applies_to_lms_built_from_model_strings(
        project: TriageProject, scripted_server: world.ScriptedServer, monkeypatch: pytest.MonkeyPatch,
        retries: int) -> None:
    reference(project, scripted_server)
    project.pytester.makeconftest("")  # no fixture override: the plugin builds the LM from the flag
    monkeypatch.setenv("OPENAI_API_BASE", scripted_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    install_faults(scripted_server, role="task", kind="http_500", first=2, retry_after=0)
    result = project.run("--gepa-task-lm", "openai/task", "--gepa-retries", str(retries))
    assert_no_crash(result)
    if retries:
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["*test_triage_prompt*gate*1.000 (0.72-1.00)*passed*"])
    else:
        result.assert_outcomes(failed=1)
        assert message_of(result).startswith(
            "LMError: 2 of 10 examples could not be scored: LM error from the task model 'openai/task'")


# -- persistent failure of the task or judge LM: an LM error, never a low score --------------------


def test_task_lm_down_fails_the_gate_with_an_lm_error(project: TriageProject,
                                                       scripted_server: world.ScriptedServer) -> None:
    reference(project, scripted_server)
    install_faults(scripted_server, role="task", kind="http_500", always=True, retry_after=0)
    result = project.run()
    result.assert_outcomes(failed=1)
    assert_no_crash(result)
    result.stdout.fnmatch_lines([
        "LMError: 10 of 10 examples could not be scored: LM error from the task model 'openai/task' at "
        f"{scripted_server.base_url}: LMServerError: [[]task[]] *The server had an error (scripted fault, task call *)*"
        "This is an infrastructure error, not a low score; check the model and its endpoint.",
    ])
    result.stdout.fnmatch_lines(["*test_triage_prompt*gate*lm error*"])
    assert scripted_server.calls["task"] == DEVSET * 3  # every example: one call and two retries


def test_task_lm_down_fails_the_compile_with_an_lm_error_and_keeps_the_artifact(
        project: TriageProject, scripted_server: world.ScriptedServer) -> None:
    ref = reference(project, scripted_server)
    install_faults(scripted_server, role="task", kind="http_500", always=True, retry_after=0)
    result = project.compile(*SMALL_BUDGET)
    result.assert_outcomes(failed=1)
    assert_no_crash(result)
    assert project.artifact.read_bytes() == ref.artifact
    result.stdout.fnmatch_lines([
        f"LMError: *the task model 'openai/task' at {scripted_server.base_url}*"
        "LMServerError: [[]task[]] *scripted fault, task call *The previous artifact is unchanged.",
    ])


def test_task_lm_from_a_model_string_names_its_endpoint_when_down(
        project: TriageProject, scripted_server: world.ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    reference(project, scripted_server)
    project.pytester.makeconftest("")
    monkeypatch.setenv("OPENAI_API_BASE", scripted_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    install_faults(scripted_server, role="task", kind="http_500", always=True, retry_after=0)
    result = project.run("--gepa-task-lm", "openai/task", "--gepa-retries", "0")
    result.assert_outcomes(failed=1)
    assert message_of(result).startswith(
        "LMError: 10 of 10 examples could not be scored: LM error from the task model 'openai/task' at "
        f"{scripted_server.base_url}: LMServerError: "), message_of(result)


def test_judge_lm_down_fails_the_gate_with_an_lm_error_naming_the_judge(
        rubric_project: TriageProject, scripted_server: world.ScriptedServer) -> None:
    reference(rubric_project, scripted_server, "rubric")
    install_faults(scripted_server, role="judge", kind="http_500", always=True, retry_after=0)
    result = rubric_project.run()
    result.assert_outcomes(failed=1)
    assert_no_crash(result)
    result.stdout.fnmatch_lines([
        "LMError: 10 of 10 examples could not be scored: LM error from the judge model 'openai/judge' at "
        f"{scripted_server.base_url}: *LMServerError: [[]judge[]] *scripted fault, judge call *",
    ])


def test_judge_lm_down_fails_the_compile_with_an_lm_error_and_keeps_the_artifact(
        rubric_project: TriageProject, scripted_server: world.ScriptedServer) -> None:
    ref = reference(rubric_project, scripted_server, "rubric")
    install_faults(scripted_server, role="judge", kind="http_500", always=True, retry_after=0)
    result = rubric_project.compile(*SMALL_BUDGET)
    result.assert_outcomes(failed=1)
    assert_no_crash(result)
    assert rubric_project.artifact.read_bytes() == ref.artifact
    result.stdout.fnmatch_lines([
        f"LMError: *the judge model 'openai/judge' at {scripted_server.base_url}*"
        "LMServerError: [[]judge[]] *scripted fault, judge call *",
    ])


# -- the reflection LM: down, babbling, or proposing nothing usable --------------------------------


def test_reflection_lm_down_fails_the_compile_with_an_optimizer_error(
        project: TriageProject, scripted_server: world.ScriptedServer) -> None:
    ref = reference(project, scripted_server)
    install_faults(scripted_server, role="reflection", kind="http_500", always=True, retry_after=0)
    result = project.compile(*SMALL_BUDGET)
    result.assert_outcomes(failed=1)
    assert_no_crash(result)
    assert project.artifact.read_bytes() == ref.artifact
    result.stdout.fnmatch_lines([
        # The run stops as soon as the failures show, instead of burning the budget on them.
        "OptimizerError: the compile was stopped: the reflection LM keeps failing (* of * calls; first error: "
        "LMServerError: [[]reflection[]] *The server had an error (scripted fault, reflection call *)*; "
        "check --gepa-reflection-lm and its endpoint. The previous artifact is unchanged.",
    ])
    result.stdout.fnmatch_lines(["*test_triage_prompt*compile*optimizer error*"])


def test_reflection_lm_garbage_fails_the_compile_with_an_optimizer_error(
        project: TriageProject, scripted_server: world.ScriptedServer) -> None:
    ref = reference(project, scripted_server)
    install_faults(scripted_server, role="reflection", kind="garbage", always=True)
    result = project.compile(*SMALL_BUDGET)
    result.assert_outcomes(failed=1)
    assert_no_crash(result)
    assert project.artifact.read_bytes() == ref.artifact
    result.stdout.fnmatch_lines([
        "OptimizerError: the reflection LM answered * time(s) but its replies could not be parsed into an "
        "instruction; use a stronger reflection model (--gepa-reflection-lm).",
    ])


def test_reflection_lm_garbage_is_explained_as_unparseable_replies(
        project: TriageProject, scripted_server: world.ScriptedServer) -> None:
    reference(project, scripted_server)
    install_faults(scripted_server, role="reflection", kind="garbage", always=True)
    result = project.compile(*SMALL_BUDGET)
    result.assert_outcomes(failed=1)
    message = message_of(result)
    assert message.startswith("OptimizerError: ") and "reflection" in message, message
    assert "could not be parsed" in message or "AdapterParseError" in message, message
    assert "--gepa-budget" not in message, message


def test_one_word_proposals_fail_the_compile_as_unusable(project: TriageProject,
                                                         scripted_server: world.ScriptedServer) -> None:
    ref = reference(project, scripted_server)
    # Well-formed replies in the proposer's own format (JSON, `new_instruction`), every one a single word.
    plan = install_faults(scripted_server, role="reflection", kind="reply", always=True,
                          content=answer_fields(new_instruction="Classify."))
    result = project.compile(*SMALL_BUDGET)
    result.assert_outcomes(failed=1)
    assert_no_crash(result)
    assert plan.count >= 1
    assert project.artifact.read_bytes() == ref.artifact
    result.stdout.fnmatch_lines([
        "OptimizerError: the reflection LM's proposals are not usable instructions ('Classify.', *); "
        "use a stronger reflection model (--gepa-reflection-lm).",
    ])


# -- garbage from the task LM: a scored format failure or an error, never a crash ------------------


def test_task_lm_garbage_in_gate_is_a_scored_format_failure(project: TriageProject,
                                                            scripted_server: world.ScriptedServer) -> None:
    reference(project, scripted_server)
    install_faults(scripted_server, role="task", kind="garbage", always=True)
    result = project.run()
    result.assert_outcomes(failed=1)
    assert_no_crash(result)
    result.stdout.fnmatch_lines([
        "GateFailure: gepa gate failed for test_triage.py::test_triage_prompt [[]test_triage_prompt[]]:",
        "score 0.000 is under min_score 0.850, and its one-sided * upper bound * is under it too",
        "*example(s) scored lower than when compiled:",
        "  - *: 1.00 -> 0.00: The LM's reply could not be parsed: AdapterParseError: *"
        + literal("LM Response: I'm sorry, as a large lan") + "*",
    ])
    result.stdout.fnmatch_lines(["*test_triage_prompt*gate*0.000 (0.00-0.28)*failed*"])


def test_task_lm_garbage_in_compile_fails_cleanly_and_keeps_the_artifact(
        project: TriageProject, scripted_server: world.ScriptedServer) -> None:
    ref = reference(project, scripted_server)
    install_faults(scripted_server, role="task", kind="garbage", always=True)
    result = project.compile(*SMALL_BUDGET)
    result.assert_outcomes(failed=1)
    assert_no_crash(result)
    assert project.artifact.read_bytes() == ref.artifact
    # GEPA scores every rollout 0 (format failures) and never reflects; the plugin finds out why.
    assert message_of(result).startswith("OptimizerError: every program output scored 0 before GEPA could reflect")


def test_task_lm_garbage_in_compile_names_the_task_models_format_errors(
        project: TriageProject, scripted_server: world.ScriptedServer) -> None:
    reference(project, scripted_server)
    install_faults(scripted_server, role="task", kind="garbage", always=True)
    result = project.compile(*SMALL_BUDGET)
    result.assert_outcomes(failed=1)
    message = message_of(result)
    assert "openai/task" in message and ("could not be parsed" in message or "AdapterParseError" in message), message
    assert "reflection LM" not in message and "--gepa-budget" not in message, message
