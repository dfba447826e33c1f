"""MIPROv2 and BootstrapFewShot stop as GEPA does: over --gepa-max-cost, or when an LM keeps
failing, the compile ends early with the reason, and the previous artifact stays as it was."""

from __future__ import annotations

from pathlib import Path

# Imported at collection, before any in-process pytester run: a run that imported optuna (and
# numpy) first would drop them at its end, and numpy cannot be imported twice in one process.
# MIPROv2's optional dependency is in the dev extra: without it the suite fails, it does not skip.
import optuna  # noqa: F401
import pytest
import world
from conftest import TriageProject, http_lms, write_split_triage_data
from test_optimizers import PIPELINE_TEST
from world.faults import install_faults
from world.pipeline import TriagePipeline, pipeline_world

from pytest_gepa import metrics
from pytest_gepa.data import load_examples
from pytest_gepa.errors import OptimizerError
from pytest_gepa.optimizer.outcome import OptimizationRun
from pytest_gepa.optimizer.run import run_optimizer

OPTIMIZERS = [("bootstrap", "light"), ("miprov2", 4)]
IDS = [name for name, _ in OPTIMIZERS]


class StopAfter:
    """A RunWatch that says "stop" from its ``after``-th question on (None: never)."""

    def __init__(self, after: int | None) -> None:
        self.after, self.asked = after, 0

    def must_stop(self) -> str | None:
        self.asked += 1
        return "the test said so" if self.after is not None and self.asked >= self.after else None

    def reflection_calls(self) -> tuple[int, str | None]:
        return 0, None


def _run(tmp_path: Path, optimizer: str, budget: str | int, watch: StopAfter, scripted: world.World) -> OptimizationRun:
    data = load_examples(write_split_triage_data(tmp_path / "triage.jsonl"), inputs=["ticket"])
    return run_optimizer(optimizer, TriagePipeline(), list(data.train), list(data.val), metrics.exact_match("category"),
                         task_lm=world.scripted_lm("task", scripted),
                         reflection_lm=world.scripted_lm("reflection", scripted), budget=budget, seed=0, threads=1,
                         stop_at=None, patience=None, watch=watch, progress=lambda line: None, options={})


@pytest.mark.parametrize(("optimizer", "budget"), OPTIMIZERS, ids=IDS)
def test_a_stop_during_the_optimizers_steps_ends_the_run_with_its_reason(
        tmp_path: Path, optimizer: str, budget: str | int) -> None:
    whole_world = pipeline_world()
    whole = _run(tmp_path, optimizer, budget, StopAfter(None), whole_world)
    assert whole.metric_calls is not None and whole.metric_calls > 4

    # Asked once after the baseline, then at each metric call: the 4th question comes while the
    # optimizer is under way, and is the last one.
    stopped_world, watch = pipeline_world(), StopAfter(4)
    with pytest.raises(OptimizerError) as stopped:
        _run(tmp_path, optimizer, budget, watch, stopped_world)
    assert str(stopped.value) == "the compile was stopped: the test said so. The previous artifact is unchanged."
    assert watch.asked == 4
    assert stopped_world.calls["task"] < whole_world.calls["task"], (stopped_world.calls, whole_world.calls)


# -- end to end: the pipeline project of test_optimizers, with its LMs priced or over HTTP --------

PRICED_PIPELINE_LMS = '''
import dspy, pytest, world
from world.pipeline import pipeline_world

WORLD = pipeline_world()

@pytest.fixture(scope="session")
def gepa_task_lm():
    return dspy.LM("openai/gpt-4o-mini", engine=world.ScriptedEngine("task", WORLD), cache=False)

@pytest.fixture(scope="session")
def gepa_reflection_lm():
    return dspy.LM("openai/gpt-4o", engine=world.ScriptedEngine("reflection", WORLD), cache=False)
'''


def _pipeline(project: TriageProject, lms: str, optimizer: str) -> TriageProject:
    project.pytester.makeconftest(lms)
    (project.root / "test_triage.py").unlink()
    (project.root / "test_pipeline.py").write_text(
        PIPELINE_TEST.format(options=f', optimizer="{optimizer}"', min_score=0.4))
    project.artifact = project.root / "gepa_artifacts" / "test_pipeline" / "test_pipeline.json"
    return project


@pytest.mark.parametrize(("optimizer", "budget"), OPTIMIZERS, ids=IDS)
def test_max_cost_stops_the_other_optimizers_and_keeps_the_artifact(
        triage_project: TriageProject, optimizer: str, budget: str | int) -> None:
    project = _pipeline(triage_project, PRICED_PIPELINE_LMS, optimizer)
    project.compile("--gepa-budget", str(budget)).assert_outcomes(passed=1)
    before = project.artifact.read_bytes()
    result = project.compile("--gepa-budget", str(budget), "--gepa-max-cost", "0.00001")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "OptimizerError: the compile was stopped: LM cost $0.* exceeded --gepa-max-cost $0.0000; "
        "raise --gepa-max-cost or lower --gepa-budget. The previous artifact is unchanged.",
    ])
    assert project.artifact.read_bytes() == before


@pytest.mark.parametrize(("optimizer", "budget"), OPTIMIZERS, ids=IDS)
def test_a_dead_task_lm_stops_the_other_optimizers_before_they_start(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, optimizer: str, budget: str | int) -> None:
    with world.ScriptedServer(pipeline_world()) as server:
        monkeypatch.setenv("GEPA_TEST_BASE_URL", server.base_url)
        project = _pipeline(TriageProject(pytester), http_lms(num_retries=0), optimizer)
        val = sum(1 for line in project.data.read_text().splitlines() if '"split": "val"' in line)
        install_faults(server, role="task", kind="http_500", always=True, retry_after=0)
        result = project.compile("--gepa-budget", str(budget))
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines([f"LMError: *the task model 'openai/task' at {server.base_url}*"
                                     "The previous artifact is unchanged."])
        assert "INTERNALERROR" not in result.stdout.str()
        # The baseline's one call per validation example showed the LM dead: the optimizer never ran.
        assert server.calls["task"] == val
        assert server.calls["reflection"] == 0
        assert not project.artifact.exists()
