"""--gepa-task-lm a,b: one target, a test per task model, a file per model, and --gepa-transfer.

The world's task models differ (tests/world/triage.py, STUDENT_MODELS): ``task-pro`` already
knows two house rules, so its compiled instruction states fewer; ``task-lite`` ignores two rules
it is told, so another model's artifact loses score on it.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import IN_PROCESS_LMS, TriageProject, literal

# The whole artifact package, imported here once: were only `paths` imported outside the in-process
# runs, the package would outlive each run holding attributes to that run's submodules, and a later
# run's `from pytest_gepa.artifact import provenance` would get a dropped module's classes.
import pytest_gepa.artifact.provenance
import pytest_gepa.artifact.serializer
import pytest_gepa.artifact.store  # noqa: F401
from pytest_gepa.artifact.paths import file_stem, model_slug, without_param

# The task LM follows this test's model parameter, as a user's conftest.py override would.
MATRIX_LMS = IN_PROCESS_LMS.replace('''def gepa_task_lm():
    return world.scripted_lm("task")''', '''def gepa_task_lm(request):
    return world.scripted_lm(getattr(request, "param", "scripted/task").rsplit("/", 1)[-1])''')
assert MATRIX_LMS != IN_PROCESS_LMS

TWO = "scripted/task,scripted/task-pro"
THREE = "scripted/task,scripted/task-pro,scripted/task-lite"
DENT_RULE = "Tickets that mention a dent"
SUBSCRIPTION_RULE = "Subscription changes"


def artifact(project: TriageProject, model: str) -> Path:
    return project.artifact.with_name(f"test_triage_prompt@{model_slug(model)}.json")


def read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture
def matrix_project(pytester: pytest.Pytester) -> TriageProject:
    return TriageProject(pytester, lms=MATRIX_LMS)


def test_slug_is_readable_stable_and_safe() -> None:
    assert model_slug("openai/gpt-4o-mini") == "openai-gpt-4o-mini"
    assert model_slug("anthropic/claude-3.5-sonnet:beta") == "anthropic-claude-3.5-sonnet-beta"
    assert model_slug("../etc/passwd..") == "etc-passwd"
    long = model_slug("local/" + "x" * 200 + ".gguf")
    assert len(long) <= 60 and long == model_slug("local/" + "x" * 200 + ".gguf")
    assert long != model_slug("local/" + "x" * 199 + "y.gguf")  # a cut slug keeps a hash of the whole
    assert file_stem("test_p", None) == "test_p" and file_stem("test_p", "openai/x") == "test_p@openai-x"


def test_node_id_without_the_model_parameter() -> None:
    assert without_param("t.py::test_p[openai/x]", "openai/x") == "t.py::test_p"
    assert without_param("t.py::test_p[a-openai/x]", "openai/x") == "t.py::test_p[a]"
    assert without_param("t.py::test_p[openai/x-a]", "openai/x") == "t.py::test_p[a]"
    assert without_param("t.py::test_p[a-openai/x-b]", "openai/x") == "t.py::test_p[a-b]"
    assert without_param("t.py::test_p[other]", "openai/x") == "t.py::test_p[other]"


def test_two_models_compile_two_artifacts_that_differ_where_the_models_do(matrix_project: TriageProject) -> None:
    project = matrix_project
    result = project.compile("--gepa-task-lm", TWO, "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([literal("test_triage.py::test_triage_prompt[scripted/task]") + " PASSED*",
                                 literal("test_triage.py::test_triage_prompt[scripted/task-pro]") + " PASSED*"])
    assert not project.artifact.exists()  # a matrix never writes the one-model file
    task, pro = read(artifact(project, "scripted/task")), read(artifact(project, "scripted/task-pro"))
    assert task["provenance"]["models"]["task"] == "scripted/task"
    assert pro["provenance"]["models"]["task"] == "scripted/task-pro"
    assert task["target"] == "test_triage.py::test_triage_prompt[scripted/task]"
    assert task["name"] == pro["name"] == "test_triage_prompt"
    task_text, pro_text = "\n".join(task["instructions"].values()), "\n".join(pro["instructions"].values())
    # task-pro knows about dents without being told: GEPA never had a failure to learn that rule from.
    assert DENT_RULE in task_text and DENT_RULE not in pro_text
    assert SUBSCRIPTION_RULE in task_text and SUBSCRIPTION_RULE in pro_text

    # Plain pytest (the models in the ini, one per line) gates both.
    project.pytester.makeini("[pytest]\ngepa_task_lm =\n    scripted/task\n    scripted/task-pro\n")
    gate = project.run("-v")
    gate.assert_outcomes(passed=2)
    for model in ("scripted/task", "scripted/task-pro"):  # one summary row per target and model
        gate.stdout.fnmatch_lines(["*= gepa =*", literal(f"test_triage.py::test_triage_prompt[{model}]") + " *gate*passed"])

    # -k selects one model.
    one = project.run("-k", "task-pro", "-v")
    one.assert_outcomes(passed=1, deselected=1)
    one.stdout.fnmatch_lines([literal("test_triage.py::test_triage_prompt[scripted/task-pro]") + " PASSED*"])

    # Staleness is per model: the pro artifact swapped into the task model's file is stale.
    artifact(project, "scripted/task").write_text(artifact(project, "scripted/task-pro").read_text())
    stale = project.run()
    stale.assert_outcomes(passed=1, failed=1)
    stale.stdout.fnmatch_lines(["*is stale*compiled for 'test_triage.py::test_triage_prompt[[]scripted/task-pro[]]'*"
                                "task model changed from 'scripted/task-pro' to 'scripted/task'*"])


def test_a_third_model_is_transfer_checked_and_without_transfer_says_how_to_compile(
        matrix_project: TriageProject) -> None:
    project = matrix_project
    project.compile("--gepa-task-lm", TWO).assert_outcomes(passed=2)

    missing = project.run("--gepa-task-lm", THREE)
    missing.assert_outcomes(passed=2, failed=1)
    missing.stdout.fnmatch_lines([
        "*No compiled artifact for 'test_triage.py::test_triage_prompt[[]scripted/task-lite[]]' at "
        "*test_triage_prompt@scripted-task-lite.json*. Run `pytest --gepa-compile --gepa-task-lm "
        "scripted/task-lite,scripted/task,scripted/task-pro 'test_triage.py::test_triage_prompt[[]scripted/task-lite[]]'`"
        " to create it*--gepa-transfer MODEL*"])

    # task-lite ignores two rules the task model's artifact states: the swap loses their tickets
    # (2 of the 10 devset examples, on every draw: conditioned on these examples, a regression).
    lite = project.run("--gepa-task-lm", THREE, "--gepa-transfer", "scripted/task")
    lite.assert_outcomes(passed=2, failed=1)
    lite.stdout.fnmatch_lines([
        "*kept 0.80 of 1.00 on scripted/task-lite with the artifact compiled for scripted/task; compile for it "
        "with `pytest --gepa-compile --gepa-task-lm scripted/task-lite,scripted/task,scripted/task-pro "
        "'test_triage.py::test_triage_prompt[[]scripted/task-lite[]]'`*"])
    lite.stdout.fnmatch_lines([literal("test_triage.py::test_triage_prompt[scripted/task-lite]") + " *transfer*failed"])
    assert not artifact(project, "scripted/task-lite").exists()  # a gate writes nothing

    # One model alone is no matrix: it borrows the task model's @-file and keeps all of its score.
    artifact(project, "scripted/task-pro").unlink()
    pro_alone = project.run("--gepa-task-lm", "scripted/task-pro", "--gepa-transfer", "scripted/task", "-v")
    pro_alone.assert_outcomes(passed=1)
    pro_alone.stdout.fnmatch_lines(["test_triage.py::test_triage_prompt PASSED*",
                                    "*kept 1.00 of 1.00 on scripted/task-pro with the artifact compiled for "
                                    "scripted/task; compile for it with `pytest --gepa-compile "
                                    "test_triage.py::test_triage_prompt`*"])


def test_one_model_changes_nothing(matrix_project: TriageProject) -> None:
    project = matrix_project
    result = project.compile("--gepa-task-lm", "scripted/task-pro", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["test_triage.py::test_triage_prompt PASSED*"])
    assert project.artifact.exists() and not artifact(project, "scripted/task-pro").exists()


def test_a_parametrized_override_of_gepa_task_lm_is_a_matrix_too(pytester: pytest.Pytester) -> None:
    lms = IN_PROCESS_LMS.replace('''@pytest.fixture(scope="session")
def gepa_task_lm():
    return world.scripted_lm("task")''', '''@pytest.fixture(scope="session", params=["task", "task-pro"])
def gepa_task_lm(request):
    return world.scripted_lm(request.param)''')
    project = TriageProject(pytester, lms=lms)
    result = project.compile("-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([literal("test_triage.py::test_triage_prompt[task]") + " PASSED*",
                                 literal("test_triage.py::test_triage_prompt[task-pro]") + " PASSED*"])
    pro = read(project.artifact.with_name("test_triage_prompt@task-pro.json"))
    assert pro["provenance"]["models"]["task"] == "scripted/task-pro"
    assert project.artifact.with_name("test_triage_prompt@task.json").exists() and not project.artifact.exists()
    project.run().assert_outcomes(passed=2)


def test_reports_junit_and_xdist_have_a_row_per_target_and_model(matrix_project: TriageProject) -> None:
    project = matrix_project
    project.compile("--gepa-task-lm", TWO).assert_outcomes(passed=2)
    for args in ((), ("-n", "2")):
        result = project.run("--gepa-task-lm", THREE, "--gepa-transfer", "scripted/task", "--gepa-strict", "--gepa-report",
                             "report.md", "--junitxml", "junit.xml", *args)
        result.assert_outcomes(passed=2, failed=1)
        for model, status in (("task", "passed"), ("task-lite", "failed"), ("task-pro", "passed")):
            result.stdout.fnmatch_lines(["*= gepa =*",
                                         literal(f"test_triage.py::test_triage_prompt[scripted/{model}]") + f" *{status}"])
        markdown = (project.root / "report.md").read_text(encoding="utf-8")
        assert "### Model matrix" in markdown
        assert ("| target | `scripted/task` | `scripted/task-lite` | `scripted/task-pro` |\n|---|---|---|---|\n"
                "| `test_triage.py::test_triage_prompt` | 1.000 passed | 0.800 failed (from scripted/task) | "
                "1.000 passed |") in markdown
        cases = {case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
                 for case in ET.parse(project.root / "junit.xml").getroot().iter("testcase")}
        assert cases["test_triage_prompt[scripted/task-lite]"]["gepa_model"] == "scripted/task-lite"
        assert cases["test_triage_prompt[scripted/task-lite]"]["gepa_transfer_from"] == "scripted/task"
        assert cases["test_triage_prompt[scripted/task-pro]"]["gepa_status"] == "passed"
    # A model dropped from the matrix leaves its file behind: the summary lists it.
    dropped = project.run("--gepa-task-lm", "scripted/task,scripted/task-lite", "--gepa-transfer", "scripted/task")
    dropped.stdout.fnmatch_lines(["*1 gepa file(s) belong to no target*", "*test_triage_prompt@scripted-task-pro.json"])
    html = project.run("--gepa-task-lm", TWO, "--gepa-report", "report.html")
    html.assert_outcomes(passed=2)
    page = (project.root / "report.html").read_text(encoding="utf-8")
    assert "<h2>Model matrix</h2>" in page and "<code>scripted/task-pro</code></th>" in page


def test_record_and_replay_per_model_over_http(pytester: pytest.Pytester, scripted_server,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin's own gepa_task_lm builds each model from its string (litellm over HTTP); each model
    records its own cassette, and replay answers both without a connection."""
    from conftest import HTTP_LMS

    lms = HTTP_LMS.replace('''@pytest.fixture(scope="session")
def gepa_task_lm():
    return _lm("task")''', "")
    assert lms != HTTP_LMS
    monkeypatch.setenv("OPENAI_API_BASE", scripted_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    project = TriageProject(pytester, lms=lms)
    models = "openai/task,openai/task-pro"
    project.compile("--gepa-task-lm", models, "--gepa-record").assert_outcomes(passed=2)
    for model in ("openai-task", "openai-task-pro"):
        assert project.artifact.with_name(f"test_triage_prompt@{model}.cassette.jsonl").stat().st_size > 0
    task_text = "\n".join(read(project.artifact.with_name("test_triage_prompt@openai-task.json"))["instructions"].values())
    pro_text = "\n".join(read(project.artifact.with_name("test_triage_prompt@openai-task-pro.json"))["instructions"].values())
    assert DENT_RULE in task_text and DENT_RULE not in pro_text
    calls = dict(scripted_server.calls)
    replay = project.run("--gepa-task-lm", models, "--gepa-replay")
    replay.assert_outcomes(passed=2)
    replay.stdout.fnmatch_lines(["*replayed *"])
    assert dict(scripted_server.calls) == calls  # not one request reached the server
    assert project.run("--gepa-task-lm", models, "--gepa-replay", "-n", "2").ret == 0
    assert dict(scripted_server.calls) == calls
    listed = project.run("--gepa-task-lm", models)
    listed.assert_outcomes(passed=2)
    assert "belong to no target" not in listed.stdout.str()  # every per-model file is owned


def test_a_model_named_twice_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest("--gepa-task-lm", "openai/a, openai/b,openai/a")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --gepa-task-lm / ini gepa_task_lm: 'openai/a, openai/b,openai/a' is not "
                                 "valid; expected each model once ('openai/a' is repeated)."])


def test_tests_that_do_not_use_gepa_are_not_multiplied(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest("--gepa-task-lm", TWO, "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_plain PASSED*"])


def test_reflection_and_judge_default_to_this_tests_model(pytester: pytest.Pytester,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")  # the LMs are built, never called
    pytester.makepyfile('''
        def test_lms(gepa_task_lm, gepa_reflection_lm, gepa_judge_lm):
            print("MODELS", gepa_task_lm.model, gepa_reflection_lm.model, gepa_judge_lm.model)
    ''')
    result = pytester.runpytest("--gepa-task-lm", "openai/a,openai/b", "-s", "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*MODELS openai/a openai/a openai/a*", "*MODELS openai/b openai/b openai/b*"])
    judged = pytester.runpytest("--gepa-task-lm", "openai/a,openai/b", "--gepa-judge-lm", "openai/j", "-s")
    judged.stdout.fnmatch_lines(["*MODELS openai/a openai/a openai/j*"])


def test_using_an_unconfigured_task_lm_says_which_option_to_set(pytester: pytest.Pytester) -> None:
    pytester.makepyfile('''
        def test_lm(gepa_task_lm):
            gepa_task_lm("hello")
    ''')
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*No task LM configured: pass --gepa-task-lm MODEL*"])
