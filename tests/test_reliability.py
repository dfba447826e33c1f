"""Interrupted compiles, parallel writers and secrets: every failure loses nothing and leaks nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import world
from conftest import HTTP_LMS, SECRET_HEADER, SECRET_KEY, TriageProject
from filelock import FileLock

from pytest_gepa import _io as io_module
from pytest_gepa.artifact.store import ArtifactStore
from pytest_gepa.errors import ArtifactError, redact, register_secret

TESTS_DIR = Path(__file__).parent


def _popen_compile(project: TriageProject, base_url: str, *args: str) -> subprocess.Popen[str]:
    """A full-budget compile in its own process group (so a test can signal it), LMs at ``base_url``;
    ``args`` default to no cache provider (a resume test passes its own)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
           "GEPA_TEST_BASE_URL": base_url}
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "--gepa-compile", "-o", "gepa_stop_at=off", *(args or ("-p", "no:cacheprovider"))],
        cwd=project.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )


class Output:
    """A subprocess's output, read in a thread as it comes, so the pipe never fills and a failure can show it."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self._stdout = process.stdout
        self._lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stdout:
            self._lines.append(line)

    def text(self) -> str:
        return "".join(self._lines)

    def close(self) -> None:
        self._thread.join(timeout=10)
        self._stdout.close()


def _wait_for_marker(marker: Path, process: subprocess.Popen[str], output: Output, timeout: float = 120.0) -> None:
    """Until the world has written ``marker`` (a call is held: the compile can go no further)."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if process.poll() is not None:
            raise AssertionError(f"the compile exited with {process.returncode} before the world held a call "
                                 f"(marker {str(marker)!r} never written); its output:\n{output.text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"the world held no call within {timeout:g}s (marker {str(marker)!r} never "
                                 f"written); the compile's output so far:\n{output.text()}")
        time.sleep(0.05)


# The first subprocess compile reaches GEPA's first "best val" after 26 task calls, and a full
# compile makes well over a hundred: call 31 is certain to come, inside the optimizer, long before
# the teardown that would write the artifact.
TASK_CALLS_BEFORE_THE_BLOCK = 30


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_an_interrupted_compile_leaves_the_artifact_byte_identical(triage_project: TriageProject,
                                                                   sig: signal.Signals, tmp_path: Path) -> None:
    triage_project.compile().assert_outcomes(passed=1)
    before = triage_project.artifact.read_bytes()
    triage_project.pytester.makeconftest(HTTP_LMS)
    marker = tmp_path / "held"
    block = world.Block(after=TASK_CALLS_BEFORE_THE_BLOCK, marker=marker)
    with world.ScriptedServer(world.World(block=block)) as server:
        process = _popen_compile(triage_project, server.base_url)
        output = Output(process)
        try:
            # Signalled while certainly mid-compile: the world holds a call, so the run cannot finish first.
            _wait_for_marker(marker, process, output)
            os.kill(process.pid, sig)
            block.release()  # held calls now fail, so a run that handles the signal can wind down
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            output.close()
    assert block.task_calls == TASK_CALLS_BEFORE_THE_BLOCK and block.held >= 1
    assert process.returncode != 0, output.text()
    assert triage_project.artifact.read_bytes() == before
    leftovers = [p.name for p in triage_project.artifact.parent.iterdir() if p.name != "test_triage_prompt.json"]
    assert leftovers == []


def test_a_held_lock_is_reported_with_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ArtifactStore(tmp_path / "gepa_artifacts" / "test_x" / "target.json")
    monkeypatch.setattr(io_module, "LOCK_TIMEOUT_S", 0.2)
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:  # another process compiling the same target
        with FileLock(io_module.lock_for(store.path).lock_file):
            held.set()
            release.wait(5)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    try:
        with pytest.raises(ArtifactError, match=r"another process has held its lock for 0s .*wait for it and run again"):
            store._write_atomically(store.path, "{}")
    finally:
        release.set()
        thread.join()
    assert not store.path.exists()


def test_leftover_temp_files_of_a_killed_write_are_removed_by_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "target.json"
    leftover = tmp_path / ".target.json.abc123.tmp"
    leftover.write_text("half a fi")
    ArtifactStore(path)._write_atomically(path, "{}\n")
    assert path.read_text() == "{}\n" and not leftover.exists()


def test_redact_hides_registered_secrets_environment_keys_and_key_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    register_secret("hunter2-very-secret")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "ant-0000-secret-value")
    text = redact("failed with hunter2-very-secret, ant-0000-secret-value, sk-abcdefghijklmnop and Bearer abc.def.ghi.jkl")
    assert text == "failed with ***, ***, *** and ***"


def test_a_provider_error_quoting_the_key_never_shows_it(http_project: TriageProject,
                                                         scripted_server: world.ScriptedServer) -> None:
    http_project.compile("--gepa-record", "--gepa-report", "report.html").assert_outcomes(passed=1)

    def reject(request: world.ChatRequest) -> world.HTTPReply:
        return world.HTTPReply(401, {"error": {"message": f"Incorrect API key provided: {SECRET_KEY}.",
                                               "type": "invalid_request_error", "code": "invalid_api_key"}})

    scripted_server.hooks["task"] = reject
    result = http_project.run("--junitxml=junit.xml", "--gepa-report", "report.json", "-v")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["LMError: 10 of 10 examples could not be scored: LM error from the task model "
                                 "'openai/task' at http://127.0.0.1:*/v1: *"])
    output = result.stdout.str() + result.stderr.str()
    assert SECRET_KEY not in output and SECRET_HEADER not in output
    for path in http_project.root.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".xml", ".html", ".md"):
            text = path.read_text()
            assert SECRET_KEY not in text and SECRET_HEADER not in text, path


def test_an_lm_error_while_recording_names_the_wrapped_lms_endpoint(http_project: TriageProject,
                                                                    scripted_server: world.ScriptedServer) -> None:
    """Behind a cassette the LM is dspy's, on the cassette's engine: the endpoint a person checks is
    still the one of the LM it wraps."""
    http_project.compile().assert_outcomes(passed=1)
    scripted_server.hooks["task"] = lambda request: world.HTTPReply(
        401, {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                        "code": "invalid_api_key"}})
    result = http_project.run("--gepa-record")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["LMError: 10 of 10 examples could not be scored: LM error from the task model "
                                 "'openai/task' at http://127.0.0.1:*/v1: *"])
