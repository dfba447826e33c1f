"""--gepa-resume: an interrupted compile continues from the state kept under pytest's cache
directory, without paying twice for what it had done; a state for other inputs is discarded with
its reason, and Ctrl-C stops at the end of the iteration with the artifact untouched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import world
from conftest import HTTP_LMS, TriageProject, literal
from test_reliability import Output, _popen_compile, _wait_for_marker

TESTS_DIR = Path(__file__).parent
NODEID = "test_triage.py::test_triage_prompt"
RESUME = f"pytest --gepa-compile --gepa-resume {NODEID}"

# The triage target, with a metric that sends this process SIGINT (a Ctrl-C) at the metric call
# named by INTERRUPT_AT: a point certain to come, inside GEPA, in an in-process run.
INTERRUPTIBLE_TEST = '''
import itertools
import os
import signal

import dspy
from pytest_gepa import metrics

class Triage(dspy.Signature):
    """Classify the support ticket into one of: billing, claims, technical, account, shipping."""
    ticket: str = dspy.InputField()
    category: str = dspy.OutputField()

EXACT = metrics.exact_match("category")
CALLS = itertools.count(1)

def metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
    if next(CALLS) == int(os.environ.get("INTERRUPT_AT", "0")):
        os.kill(os.getpid(), signal.SIGINT)
    return EXACT(gold, pred, trace, pred_name, pred_trace)

def test_triage_prompt(gepa, gepa_examples):
    data = gepa_examples("data/triage.jsonl", inputs=["ticket"])
    program = gepa.compile(dspy.ChainOfThought(Triage), data, metric=metric)
    gepa.gate(program, data.test, metric=metric, min_score=0.85, max_drop=0.03)
'''


def _state_files(root: Path) -> list[str]:
    folder = root / ".pytest_cache" / "d" / "gepa-resume"
    return sorted(p.name for p in folder.rglob("gepa_state.bin")) if folder.exists() else []


def _compile(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # pytest's cache stays on: it is where the state is kept.
    return pytester.runpytest("-p", "no:randomly", "--gepa-compile", "--gepa-budget", "light", *args)


def _interrupt_at(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, call: int,
                  *args: str) -> pytest.RunResult:
    monkeypatch.setenv("INTERRUPT_AT", str(call))
    try:
        return _compile(pytester, *args)
    finally:
        monkeypatch.delenv("INTERRUPT_AT")


@pytest.fixture
def interruptible(pytester: pytest.Pytester) -> TriageProject:
    project = TriageProject(pytester)
    project.write_test(source=INTERRUPTIBLE_TEST)
    return project


def test_a_completed_compile_keeps_no_state(interruptible: TriageProject) -> None:
    _compile(interruptible.pytester).assert_outcomes(passed=1)
    assert interruptible.artifact.exists()
    assert _state_files(interruptible.root) == []


def test_without_the_cache_a_compile_says_once_that_no_state_is_kept(triage_project: TriageProject) -> None:
    # (--gepa-resume without the cache is a usage error: tests/test_trust_resume.py)
    result = triage_project.compile()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["[[]gepa[]] no compile state is kept (pytest's cache is disabled, -p "
                                 "no:cacheprovider): an interrupted compile will start over"])


def test_ctrl_c_stops_at_the_end_of_the_iteration_keeps_the_state_and_resume_finishes_the_run(
        interruptible: TriageProject, monkeypatch: pytest.MonkeyPatch) -> None:
    _compile(interruptible.pytester).assert_outcomes(passed=1)
    before = interruptible.artifact.read_bytes()
    interrupted = _interrupt_at(interruptible.pytester, monkeypatch, 150, "-o", "gepa_stop_at=off")
    assert interrupted.ret == pytest.ExitCode.INTERRUPTED, interrupted.stdout.str()
    interrupted.stdout.fnmatch_lines([
        "*Ctrl-C: stopping at the end of this iteration, keeping its state; press Ctrl-C again to stop at once",
        "*test_triage_prompt: interrupted; the artifact is unchanged and the compile state is kept. Continue with "
        f"`{literal(RESUME)}`",
    ])
    assert interruptible.artifact.read_bytes() == before
    assert _state_files(interruptible.root) == ["gepa_state.bin"]

    resumed = _compile(interruptible.pytester, "--gepa-resume", "-o", "gepa_stop_at=off")
    resumed.assert_outcomes(passed=1)
    resumed.stdout.fnmatch_lines(["*test_triage_prompt: resumed at iteration * with * of * metric calls already "
                                  "spent"])
    assert _state_files(interruptible.root) == []


def _edit_data(project: TriageProject) -> None:
    rows = project.data.read_text().splitlines()
    first = json.loads(rows[0])
    rows[0] = json.dumps({**first, "category": "account" if first["category"] != "account" else "billing"})
    project.data.write_text("\n".join(rows) + "\n")


def _edit_metric(project: TriageProject) -> None:
    path = project.root / "test_triage.py"
    path.write_text(path.read_text().replace("return EXACT(gold, pred, trace, pred_name, pred_trace)",
                                             "return EXACT(gold, pred, trace, pred_name, pred_trace)  # edited"))


def _edit_program(project: TriageProject) -> None:
    path = project.root / "test_triage.py"
    path.write_text(path.read_text().replace("one of: billing", "exactly one of: billing"))


@pytest.mark.parametrize(("edit", "line"), [
    (_edit_data, "the data changed since the interrupted compile; starting afresh"),
    (_edit_metric, "the metric changed since the interrupted compile; starting afresh"),
    (_edit_program, "the program changed since the interrupted compile; starting afresh"),
], ids=["data", "metric", "program"])
def test_a_state_for_other_inputs_is_discarded_with_its_reason(interruptible: TriageProject,
                                                               monkeypatch: pytest.MonkeyPatch, edit: object,
                                                               line: str) -> None:
    interrupted = _interrupt_at(interruptible.pytester, monkeypatch, 20)
    assert interrupted.ret == pytest.ExitCode.INTERRUPTED, interrupted.stdout.str()
    assert _state_files(interruptible.root) == ["gepa_state.bin"]
    edit(interruptible)  # type: ignore[operator]
    result = _compile(interruptible.pytester, "--gepa-resume")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"[[]gepa[]]   test_triage_prompt: {line}"])
    result.stdout.no_fnmatch_line("*resumed at iteration*")
    assert _state_files(interruptible.root) == []


def test_without_resume_a_found_state_says_how_to_continue_and_starts_afresh(
        interruptible: TriageProject, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _interrupt_at(interruptible.pytester, monkeypatch, 20).ret == pytest.ExitCode.INTERRUPTED
    result = _compile(interruptible.pytester)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "[[]gepa[]]   test_triage_prompt: an interrupted compile saved its state at iteration * (* metric calls "
        f"spent); `{literal(RESUME)}` would continue it. Starting afresh."])
    result.stdout.no_fnmatch_line("*resumed at iteration*")


# -- killed halfway (SIGKILL) and resumed: no more than 15% more task-LM calls, the same scores -------

# An uninterrupted compile of the triage target with stop_at off makes about 420 task calls in GEPA.
KILL_AFTER_TASK_CALLS = 200
MAX_EXTRA_SHARE = 0.15


def _scores(artifact: Path) -> object:
    return json.loads(artifact.read_text())["scores"]


def _path(artifact: Path) -> object:
    """The way GEPA went: the same random draws give the same candidates, trajectory and spend."""
    optimizer = json.loads(artifact.read_text())["optimizer"]
    return {key: optimizer[key] for key in ("candidates", "accepted_proposals", "metric_calls", "trajectory",
                                            "stop_reason")}


def test_a_compile_killed_halfway_and_resumed_pays_little_more_and_writes_the_same_scores(
        pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = TriageProject(pytester, lms=HTTP_LMS)
    with world.ScriptedServer() as server:
        monkeypatch.setenv("GEPA_TEST_BASE_URL", server.base_url)
        _compile(pytester, "-o", "gepa_stop_at=off").assert_outcomes(passed=1)
        uninterrupted_calls = server.calls["task"]
    uninterrupted, uninterrupted_path = _scores(project.artifact), _path(project.artifact)
    project.artifact.unlink()

    marker = tmp_path / "held"
    block = world.Block(after=KILL_AFTER_TASK_CALLS, marker=marker)
    with world.ScriptedServer(world.World(block=block)) as server:
        process = _popen_compile(project, server.base_url, "-p", "no:randomly", "--gepa-budget", "light")
        output = Output(process)
        try:
            _wait_for_marker(marker, process, output)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            block.release()
            output.close()
        killed_calls = server.calls["task"]  # the held calls too: a provider may bill them
    assert not project.artifact.exists(), output.text()
    assert _state_files(project.root) == ["gepa_state.bin"], output.text()

    with world.ScriptedServer() as server:
        monkeypatch.setenv("GEPA_TEST_BASE_URL", server.base_url)
        resumed = _compile(pytester, "--gepa-resume", "-o", "gepa_stop_at=off")
        resumed_calls = server.calls["task"]
    resumed.assert_outcomes(passed=1)
    resumed.stdout.fnmatch_lines(["*test_triage_prompt: resumed at iteration * with * of * metric calls already "
                                  "spent"])
    total = killed_calls + resumed_calls
    assert total <= uninterrupted_calls * (1 + MAX_EXTRA_SHARE), (
        f"killed after {killed_calls} and resumed with {resumed_calls} task calls: {total} in all, against "
        f"{uninterrupted_calls} uninterrupted")
    assert _scores(project.artifact) == uninterrupted
    assert _path(project.artifact) == uninterrupted_path
    assert _state_files(project.root) == []


def test_the_resume_module_is_not_imported_by_the_plugin() -> None:
    code = textwrap.dedent("""
        import sys, pytest_gepa.plugin
        print(sorted(m for m in sys.modules if m.startswith(("pytest_gepa.flows", "pytest_gepa.optimizer.run", "gepa"))))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


class _Kept:
    """A stand-in for the cache folder: what ``resume.json`` would hold, round-tripped through JSON."""

    def __init__(self, run_dir: Path, extra: dict[str, object] | None = None) -> None:
        self.run_dir, self.resuming, self.extra = run_dir, extra is not None, extra

    def load_extra(self) -> dict[str, object] | None:
        return self.extra

    def save_extra(self, extra: dict[str, object]) -> None:
        self.extra = json.loads(json.dumps(extra))


class _GepaState:
    def __init__(self, i: int) -> None:
        self.i, self.total_num_evals, self.program_full_scores_val_set = i, 10 * i, [0.5]


def _keeper(kept: _Kept, lines: list[str]) -> object:
    from pytest_gepa.optimizer.keeper import StateKeeper
    from pytest_gepa.optimizer.run import CompileObserver, EarlyStop

    return StateKeeper.install(kept, CompileObserver(progress=lines.append), EarlyStop(stop_at=None, patience=None),
                               seed=0, options={}, gepa_kwargs={})


@pytest.mark.parametrize("gepa_saved_at", [3, 4], ids=["same iteration", "killed between the two saves"])
def test_gepas_random_generator_is_restored_at_the_resumed_runs_first_save(tmp_path: Path, gepa_saved_at: int) -> None:
    lines: list[str] = []
    first = _Kept(tmp_path)
    keeper: Any = _keeper(first, lines)
    [keeper.rng.random() for _ in range(7)]  # the draws of the first iterations
    keeper.watch(_GepaState(3))
    keeper.on_state_saved({})
    expected = [keeper.rng.random() for _ in range(5)]

    again: Any = _keeper(_Kept(tmp_path, first.extra), lines)
    again.watch(_GepaState(gepa_saved_at))
    again.on_state_saved({})
    drawn = [again.rng.random() for _ in range(5)]
    if gepa_saved_at == 3:
        assert drawn == expected and lines == []
    else:
        assert drawn != expected
        assert lines == ["gepa's random state was saved at iteration 4 but its run state at 5; the resumed run "
                         "continues on another path"]
