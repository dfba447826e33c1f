"""The HTTP path (litellm against a real server on 127.0.0.1), record / replay, and secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import world
from conftest import SECRET_HEADER, SECRET_KEY, TriageProject

# Appended to a project's conftest: at the very end of the run, whether anything imported litellm.
REPORT_LITELLM = """

def pytest_unconfigure(config):
    import sys
    print("litellm imported:", "litellm" in sys.modules)
"""


def _files_written(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl", ".xml", ".md", ".html")]


def test_compile_over_http_writes_an_artifact_without_secrets(http_project: TriageProject,
                                                              scripted_server: world.ScriptedServer) -> None:
    result = http_project.compile("--junitxml=junit.xml")
    result.assert_outcomes(passed=1)
    assert scripted_server.calls["task"] > 0 and scripted_server.calls["reflection"] > 0
    artifact = json.loads(http_project.artifact.read_text())
    assert artifact["scores"]["devset"]["optimized"] == 1.0
    assert artifact["provenance"]["models"] == {"reflection": "openai/reflection", "task": "openai/task"}
    assert artifact["optimizer"]["lm_usage"]["task"]["prompt_tokens"] > 0
    for path in _files_written(http_project.root):
        text = path.read_text()
        assert SECRET_KEY not in text and SECRET_HEADER not in text, path
    assert SECRET_KEY not in result.stdout.str()


def test_record_then_replay_with_the_server_stopped(http_project: TriageProject,
                                                    scripted_server: world.ScriptedServer) -> None:
    http_project.compile("--gepa-record").assert_outcomes(passed=1)
    lines = http_project.cassette.read_text().splitlines()
    assert lines == sorted(lines, key=lambda line: json.loads(line)["key"])
    roles = {json.loads(line)["role"] for line in lines}
    assert roles == {"task", "reflection"}
    for path in _files_written(http_project.root):
        text = path.read_text()
        assert SECRET_KEY not in text and SECRET_HEADER not in text, path
    artifact_before = http_project.artifact.read_bytes()

    scripted_server.stop()
    calls_before = sum(scripted_server.calls.values())
    gate = http_project.run("--gepa-replay")
    gate.assert_outcomes(passed=1)
    gate.stdout.fnmatch_lines(["*test_triage_prompt*gate*1.000*replayed 10*passed*"])
    # A replayed compile reproduces the same prompt, offline.
    compiled = http_project.compile("--gepa-replay")
    compiled.assert_outcomes(passed=1)
    replayed = json.loads(http_project.artifact.read_text())
    original = json.loads(artifact_before)
    assert replayed["instructions"] == original["instructions"]
    assert replayed["scores"] == original["scores"]
    assert sum(scripted_server.calls.values()) == calls_before


def test_replay_miss_names_the_target_model_and_prompt(http_project: TriageProject,
                                                       scripted_server: world.ScriptedServer) -> None:
    http_project.compile("--gepa-record").assert_outcomes(passed=1)
    scripted_server.stop()
    rows = [json.loads(line) for line in http_project.data.read_text().splitlines()]
    first_test_row = next(row for row in rows if row["split"] == "test")
    first_test_row["ticket"] = "A brand-new ticket that no cassette has seen."
    http_project.data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = http_project.run("--gepa-replay", "-W", "ignore::pytest_gepa.errors.GepaWarning")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "CassetteMissError: test_triage.py::test_triage_prompt: no recorded answer for a task LM call to "
        "'openai/task' in '*test_triage_prompt.cassette.jsonl'. The prompt began:",
        "    [[][[] ## ticket ## []][]]",
        "    A brand-new ticket that no cassette has seen.",
    ])
    result.stdout.fnmatch_lines(["*Re-record it with `pytest --gepa-record --gepa-compile test_triage.py::test_triage_prompt`*"])


def test_replay_without_a_cassette_says_how_to_record(triage_project: TriageProject) -> None:
    triage_project.compile().assert_outcomes(passed=1)
    result = triage_project.run("--gepa-replay")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["GepaError: --gepa-replay: no cassette for 'test_triage.py::test_triage_prompt' at "
                                 "'*test_triage_prompt.cassette.jsonl'. Record one with "
                                 "`pytest --gepa-record --gepa-compile test_triage.py::test_triage_prompt`."])


def test_corrupt_cassette_line_names_file_and_line(triage_project: TriageProject) -> None:
    triage_project.compile("--gepa-record").assert_outcomes(passed=1)
    lines = triage_project.cassette.read_text().splitlines()
    lines[2] = lines[2][:20]
    triage_project.cassette.write_text("\n".join(lines) + "\n")
    result = triage_project.run("--gepa-replay")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["GepaError: *test_triage_prompt.cassette.jsonl:3: corrupt cassette line*"])


def test_files_of_targets_that_no_longer_exist_are_reported(triage_project: TriageProject) -> None:
    triage_project.compile("--gepa-record").assert_outcomes(passed=1)
    source = (triage_project.root / "test_triage.py").read_text()
    triage_project.write_test(source=source.replace("def test_triage_prompt", "def test_triage_renamed"))
    triage_project.compile().assert_outcomes(passed=1)
    result = triage_project.run()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "2 gepa file(s) belong to no target of these tests any more (renamed or removed?); delete them if so:",
        "  *gepa_artifacts/test_triage/test_triage_prompt.json",
        "  *gepa_artifacts/test_triage/test_triage_prompt.cassette.jsonl",
    ])
    # A run that skips some of the file's tests cannot tell which targets still exist.
    renamed = (triage_project.root / "test_triage.py").read_text()
    triage_project.write_test(source=renamed + "\n\ndef test_other():\n    pass\n")
    assert "belong to no target" not in triage_project.run("-k", "renamed").stdout.str()


def _subprocess_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A fresh dspy cache per test, shared by its runs; no key or endpoint but the scripted server's.
    monkeypatch.setenv("DSPY_CACHEDIR", str(tmp_path / "dspy-cache"))
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)


def test_a_replayed_gate_imports_no_litellm(http_project: TriageProject, scripted_server: world.ScriptedServer,
                                            monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                            request: pytest.FixtureRequest) -> None:
    import dspy

    conftest = http_project.root / "conftest.py"
    # The in-process compile below runs that dspy.configure in this very process: put the adapter
    # back, or every later in-process run here formats (and records) JSONAdapter prompts.
    request.addfinalizer(lambda adapter=dspy.settings.adapter: dspy.configure(adapter=adapter))
    # JSONAdapter asks the LM what it supports (supported_params, supports_response_schema) before
    # each call; dspy.LM answers that through litellm, so a replay must answer it from the cassette.
    conftest.write_text(conftest.read_text() + "\ndspy.configure(adapter=dspy.JSONAdapter())\n")
    http_project.compile("--gepa-record").assert_outcomes(passed=1)
    scripted_server.stop()
    _subprocess_env(monkeypatch, tmp_path)
    conftest.write_text(conftest.read_text() + REPORT_LITELLM)
    # A subprocess: this process imported litellm long ago (conftest primes it).
    result = http_project.pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly", "-s",
                                                        "--gepa-replay")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_triage_prompt*gate*1.000*passed*", "litellm imported: False"])


def test_recording_with_dspys_cache_on_still_reaches_the_endpoint(
        http_project: TriageProject, scripted_server: world.ScriptedServer, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    _subprocess_env(monkeypatch, tmp_path)
    conftest = http_project.root / "conftest.py"
    conftest.write_text(conftest.read_text().replace("cache=False", "cache=True"))
    args = ("-p", "no:cacheprovider", "-p", "no:randomly", "--gepa-compile", "--gepa-budget", "light")
    # The first compile fills dspy's disk cache with every prompt the (seeded) second one will send.
    http_project.pytester.runpytest_subprocess(*args).assert_outcomes(passed=1)
    first = sum(scripted_server.calls.values())
    assert first > 0
    http_project.pytester.runpytest_subprocess(*args, "--gepa-record").assert_outcomes(passed=1)
    # A cassette holds what the endpoint answers, not what dspy's cache remembers from elsewhere:
    # every answer in it reached the endpoint during the recording run. (Comparing with the first
    # run's count would not do: a compile that finds an artifact makes other calls than one without.)
    lines = [json.loads(line) for line in http_project.cassette.read_text().splitlines()]
    recorded = sum("response" in line for line in lines)
    assert recorded > 0
    assert sum(scripted_server.calls.values()) - first >= recorded
