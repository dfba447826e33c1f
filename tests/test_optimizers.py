"""Multi-module programs and the choice of optimizer (GEPA, MIPROv2, BootstrapFewShot)."""

from __future__ import annotations

import json

import pytest
from conftest import TriageProject

PIPELINE_LMS = '''
import pytest
import world
from world.pipeline import pipeline_world

WORLD = pipeline_world()

@pytest.fixture(scope="session")
def gepa_task_lm():
    return world.scripted_lm("task", WORLD)

@pytest.fixture(scope="session")
def gepa_reflection_lm():
    return world.scripted_lm("reflection", WORLD)
'''

PIPELINE_TEST = '''
from pytest_gepa import metrics
from world.pipeline import TriagePipeline

def test_pipeline(gepa, gepa_examples):
    data = gepa_examples("data/triage.jsonl", inputs=["ticket"])
    metric = metrics.exact_match("category")
    program = gepa.compile(TriagePipeline(), data, metric=metric{options})
    gepa.gate(program, data.test, metric=metric, min_score={min_score})
'''


@pytest.fixture
def pipeline(triage_project: TriageProject) -> TriageProject:
    triage_project.pytester.makeconftest(PIPELINE_LMS)
    (triage_project.root / "test_triage.py").unlink()
    triage_project.artifact = triage_project.root / "gepa_artifacts" / "test_pipeline" / "test_pipeline.json"
    return triage_project


def _write(project: TriageProject, *, options: str = "", min_score: float = 0.85) -> None:
    (project.root / "test_pipeline.py").write_text(PIPELINE_TEST.format(options=options, min_score=min_score))


def test_gepa_compiles_every_predictor_of_a_pipeline_into_one_artifact(pipeline: TriageProject) -> None:
    _write(pipeline, options=', component_selector="all"')
    pipeline.compile().assert_outcomes(passed=1)
    artifact = json.loads(pipeline.artifact.read_text())
    assert set(artifact["instructions"]) == {"summarize.predict", "classify.predict"}
    assert "are claims, not shipping" in artifact["instructions"]["classify.predict"]
    assert artifact["scores"]["devset"]["optimized"] == 1.0 > artifact["scores"]["devset"]["baseline"]
    assert artifact["optimizer"]["name"] == "gepa"
    pipeline.run().assert_outcomes(passed=1)


def test_a_predictor_renamed_since_compile_is_stale_by_name(pipeline: TriageProject) -> None:
    _write(pipeline)
    pipeline.compile().assert_outcomes(passed=1)
    source = (pipeline.root / "test_pipeline.py").read_text()
    (pipeline.root / "test_pipeline.py").write_text(source.replace(
        "program = gepa.compile(TriagePipeline()",
        "pipe = TriagePipeline()\n    pipe.categorize = pipe.classify\n    del pipe.classify\n"
        "    program = gepa.compile(pipe"))
    result = pipeline.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*is stale: predictor 'classify.predict' is gone (renamed or removed); "
                                 "predictor 'categorize.predict' is new.*"])


@pytest.mark.parametrize("optimizer", ["bootstrap", "miprov2"])
def test_other_optimizers_compile_and_gate_the_pipeline(pipeline: TriageProject, optimizer: str) -> None:
    # In the world only instructions teach conventions, so demos cannot lift the score: the
    # gate's threshold is what these optimizers honestly reach.
    _write(pipeline, options=f', optimizer="{optimizer}"', min_score=0.4)
    result = pipeline.compile("--gepa-budget", "4" if optimizer == "miprov2" else "light")
    result.assert_outcomes(passed=1)
    artifact = json.loads(pipeline.artifact.read_text())
    assert artifact["optimizer"]["name"] == optimizer
    assert artifact["optimizer"]["metric_calls"] > 0
    assert set(artifact["program"]) == {"summarize.predict", "classify.predict"}
    if optimizer == "bootstrap":
        assert artifact["demos"], "BootstrapFewShot keeps the demos whose score reached the threshold"
        assert all(demo["category"] for demos in artifact["demos"].values() for demo in demos if "category" in demo)
    pipeline.run().assert_outcomes(passed=1)


def test_optimizer_flag_picks_the_optimizer(pipeline: TriageProject) -> None:
    _write(pipeline, min_score=0.4)
    pipeline.compile("--gepa-optimizer", "bootstrap").assert_outcomes(passed=1)
    assert json.loads(pipeline.artifact.read_text())["optimizer"]["name"] == "bootstrap"


@pytest.mark.parametrize("keep_best", [False, True])
def test_compare_runs_a_second_optimizer_and_shows_both(pipeline: TriageProject, keep_best: bool) -> None:
    _write(pipeline, min_score=0.4)
    args = ["--gepa-optimizer", "bootstrap", "--gepa-compare", "gepa"] + (["--gepa-keep-best"] if keep_best else [])
    result = pipeline.compile(*args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "compare test_pipeline.py::test_pipeline [[]test_pipeline[]]: bootstrap 0.500 (*), val *, * LM calls"
        + ("" if keep_best else " [[]kept[]]") + "  vs  gepa 1.000 (0.72-1.00), val 1.000, * LM calls"
        + (" [[]kept[]]" if keep_best else ""),
    ])
    artifact = json.loads(pipeline.artifact.read_text())
    assert artifact["optimizer"]["name"] == ("gepa" if keep_best else "bootstrap")
