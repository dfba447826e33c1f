"""A missing or wrong API key is one short message at once, not minutes of retried tracebacks."""

from __future__ import annotations

import pytest
import world
from conftest import TriageProject
from world.server import HTTPReply

NO_LMS = "# the LMs come from --gepa-task-lm: no fixture overrides\n"


@pytest.fixture
def keyless(triage_project: TriageProject, monkeypatch: pytest.MonkeyPatch,
            scripted_server: world.ScriptedServer) -> TriageProject:
    triage_project.pytester.makeconftest(NO_LMS)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    # Were a call made anyway, it would reach the scripted server, and be counted there.
    monkeypatch.setenv("OPENAI_BASE_URL", scripted_server.base_url)
    return triage_project


def test_a_compile_without_the_providers_key_fails_at_once_naming_it(
        keyless: TriageProject, scripted_server: world.ScriptedServer) -> None:
    result = keyless.compile("--gepa-task-lm", "openai/gpt-4o-mini")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "No API key for the task LM 'openai/gpt-4o-mini': set OPENAI_API_KEY in the environment, pass another "
        "model with --gepa-task-lm (ini gepa_task_lm), or override the gepa_task_lm fixture in conftest.py*",
    ])
    assert "Traceback" not in out and "During handling" not in out and "Retrying" not in out, out
    # The whole run's output, summary included, is a screenful, not a thousand lines of retries.
    assert len(out.splitlines()) < 40, out
    assert sum(scripted_server.calls.values()) == 0
    assert not keyless.artifact.exists()


def test_an_empty_key_is_a_missing_key(keyless: TriageProject, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "")
    result = keyless.compile("--gepa-task-lm", "openai/gpt-4o-mini")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*No API key for the task LM 'openai/gpt-4o-mini': set OPENAI_API_KEY*"])


def test_a_reflection_model_without_its_key_names_the_reflection_flag(
        keyless: TriageProject, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-present")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    result = keyless.compile("--gepa-task-lm", "openai/task", "--gepa-reflection-lm", "anthropic/claude-3-5-haiku")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*No API key for the reflection LM 'anthropic/claude-3-5-haiku': set "
                                 "ANTHROPIC_API_KEY in the environment, pass another model with --gepa-reflection-lm*"])


CALL_ONCE = '''
def test_call(gepa_task_lm):
    gepa_task_lm("Say hello.")
'''


def test_a_rejected_key_is_not_retried(keyless: TriageProject, scripted_server: world.ScriptedServer,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-revoked")
    scripted_server.hooks["*"] = lambda request: HTTPReply(401, {"error": {
        "message": "Incorrect API key provided: sk-revo***", "type": "invalid_request_error",
        "param": None, "code": "invalid_api_key"}})
    keyless.write_test(source=CALL_ONCE)
    result = keyless.run("--gepa-task-lm", "openai/task", "--gepa-retries", "3")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*AuthenticationError*"])
    # Three retries were allowed; a 401 is asked once (dspy retries only transient errors): asking
    # again cannot change the answer.
    assert scripted_server.calls["task"] == 1


def test_a_server_error_is_still_retried(keyless: TriageProject, scripted_server: world.ScriptedServer,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-present")
    scripted_server.hooks["*"] = lambda request: (HTTPReply(500, {"error": {"message": "try again"}})
                                                 if request.number == 1 else None)
    keyless.write_test(source=CALL_ONCE)
    result = keyless.run("--gepa-task-lm", "openai/task", "--gepa-retries", "1")
    result.assert_outcomes(passed=1)
    assert scripted_server.calls["task"] == 2


def test_replay_checks_no_key(keyless: TriageProject) -> None:
    keyless.write_test(source=CALL_ONCE)
    result = keyless.run("--gepa-replay", "--gepa-task-lm", "openai/gpt-4o-mini")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "No API key" not in out and "CassetteMissError" in out, out


# A model string dspy's native engine serves: a provider declared to dspy (its public
# dspy.lm15.register_provider) at the scripted server, the key read from its own variable.
NATIVE_PROVIDER = '''
import os
import sys

from dspy.lm15 import AccessPolicy, OpenAIChatCompat, ProviderDefinition, register_provider

register_provider(ProviderDefinition.chat(
    AccessPolicy(provider="scripted", env_keys=("SCRIPTED_API_KEY",), base_url=os.environ["GEPA_TEST_BASE_URL"]),
    compat=OpenAIChatCompat()))


def pytest_unconfigure(config):
    print("litellm imported:", "litellm" in sys.modules)
'''


def test_a_model_string_dspy_serves_natively_is_checked_and_called_without_litellm(
        triage_project: TriageProject, monkeypatch: pytest.MonkeyPatch,
        scripted_server: world.ScriptedServer) -> None:
    triage_project.pytester.makeconftest(NATIVE_PROVIDER)
    triage_project.write_test(source=CALL_ONCE)
    monkeypatch.delenv("SCRIPTED_API_KEY", raising=False)
    # A fresh process: the declaration is process-wide, and litellm is not imported there yet.
    keyless = triage_project.pytester.runpytest_subprocess("-p", "no:cacheprovider", "--gepa-task-lm", "scripted/task")
    keyless.assert_outcomes(failed=1)
    keyless.stdout.fnmatch_lines(["*No API key for the task LM 'scripted/task': set SCRIPTED_API_KEY in the "
                                  "environment*", "litellm imported: False"])
    assert sum(scripted_server.calls.values()) == 0
    monkeypatch.setenv("SCRIPTED_API_KEY", "sk-scripted-present")
    keyed = triage_project.pytester.runpytest_subprocess("-p", "no:cacheprovider", "--gepa-task-lm", "scripted/task")
    keyed.assert_outcomes(passed=1)
    keyed.stdout.fnmatch_lines(["litellm imported: False"])
    assert scripted_server.calls["task"] == 1
