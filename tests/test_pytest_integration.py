"""pytest-gepa behaves like the rest of pytest: -k, -x, --lf, --junitxml, -q/-v, usage errors, and
no cost at all for a run that uses no gepa fixture."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest
from conftest import TriageProject, literal
from test_gate import BASE_INSTRUCTION

TWO_TARGETS = '''
import dspy
from pytest_gepa import metrics

class Triage(dspy.Signature):
    """Classify the support ticket into one of: billing, claims, technical, account, shipping."""
    ticket: str = dspy.InputField()
    category: str = dspy.OutputField()

def _target(gepa, gepa_examples, min_score):
    data = gepa_examples("data/triage.jsonl", inputs=["ticket"])
    metric = metrics.exact_match("category")
    program = gepa.compile(dspy.ChainOfThought(Triage), data, metric=metric)
    gepa.gate(program, data.test, metric=metric, min_score=min_score, max_drop=1.0)

def test_easy(gepa, gepa_examples):
    _target(gepa, gepa_examples, {easy})

def test_strict(gepa, gepa_examples):
    _target(gepa, gepa_examples, {strict})
'''


@pytest.fixture
def two_targets(triage_project: TriageProject) -> TriageProject:
    """Two compiled targets; then the 'strict' one demands more than any prompt can give."""
    triage_project.write_test(source=TWO_TARGETS.format(easy=0.5, strict=0.5))
    triage_project.compile().assert_outcomes(passed=2)
    for artifact in (triage_project.root / "gepa_artifacts" / "test_triage").glob("*.json"):
        data = json.loads(artifact.read_text())
        data["program"]["predict"]["signature"]["instructions"] = BASE_INSTRUCTION  # valid, but naive: ~0.5
        artifact.write_text(json.dumps(data))
    triage_project.write_test(source=TWO_TARGETS.format(easy=0.4, strict=0.9))
    return triage_project


def test_k_selects_targets(two_targets: TriageProject) -> None:
    result = two_targets.run("-k", "easy")
    result.assert_outcomes(passed=1, deselected=1)
    assert "test_strict" not in result.stdout.str().split("= gepa =")[-1]


def test_x_stops_at_the_first_failed_gate(two_targets: TriageProject) -> None:
    two_targets.write_test(source=TWO_TARGETS.format(easy=0.9, strict=0.9))
    result = two_targets.run("-x")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*stopping after 1 failures*"])


def test_lf_reruns_only_the_failed_gate(two_targets: TriageProject) -> None:
    first = two_targets.pytester.runpytest()
    first.assert_outcomes(passed=1, failed=1)
    second = two_targets.pytester.runpytest("--lf")
    second.assert_outcomes(failed=1)
    second.stdout.fnmatch_lines(["run-last-failure: rerun previous 1 failure*", "*test_strict*gate*failed*"])
    assert "test_easy" not in second.stdout.str()


def test_junitxml_carries_the_failure_message(two_targets: TriageProject) -> None:
    two_targets.run("--junitxml=report.xml").assert_outcomes(passed=1, failed=1)
    tree = ET.parse(two_targets.root / "report.xml")
    failures = {case.get("name"): case.find("failure") for case in tree.iter("testcase")}
    assert failures["test_easy"] is None
    failure = failures["test_strict"]
    assert failure is not None
    assert "is under min_score 0.900" in (failure.get("message") or "") + (failure.text or "")
    properties = {case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
                  for case in tree.iter("testcase")}
    assert properties["test_strict"]["gepa_status"] == "failed"
    assert properties["test_strict"]["gepa_min_score"] == "0.9"
    assert float(properties["test_strict"]["gepa_score"]) == 0.5
    assert properties["test_easy"]["gepa_status"] == "passed"


@pytest.mark.parametrize("verbosity", ["-q", "-v"])
def test_summary_shows_with_q_and_v(two_targets: TriageProject, verbosity: str) -> None:
    result = two_targets.run(verbosity)
    result.stdout.fnmatch_lines(["*= gepa =*", "*test_easy*gate*passed*", "*test_strict*gate*failed*"])


def test_silent_when_no_target_ran(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    assert True\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert "gepa" not in result.stdout.str().replace("gepa-0.1.0", "")


def test_importing_the_plugin_imports_no_heavy_dependency() -> None:
    code = textwrap.dedent("""
        import sys
        import pytest_gepa, pytest_gepa.plugin
        print(sorted(m for m in ("dspy", "litellm", "gepa", "pydantic", "filelock") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_help_and_collection_import_no_heavy_dependency(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    pytester.makeconftest(textwrap.dedent("""
        import sys
        def pytest_sessionfinish(session):
            heavy = sorted(m for m in ("dspy", "litellm", "gepa") if m in sys.modules)
            print("HEAVY", heavy)
    """))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s")
    result.stdout.fnmatch_lines(["*HEAVY " + literal("[]")])
    assert pytester.runpytest_subprocess("--help").ret == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gepa-budget", "huge"], "--gepa-budget / ini gepa_budget: 'huge' is not valid; expected light, medium, "
                                    "heavy, or a positive number of metric calls."),
        (["--gepa-threads", "-2"], "--gepa-threads / ini gepa_threads: '-2' is not valid; expected a whole number of "
                                   "at least 1."),
        (["-o", "gepa_min_score=1.5"], "ini gepa_min_score: '1.5' is not valid; expected a score between 0 and 1."),
        (["--gepa-record", "--gepa-replay"], "--gepa-record and --gepa-replay cannot be used together*"),
        (["--gepa-optimizer", "adam"], "*'adam' is not valid; expected one of gepa, miprov2, bootstrap."),
        (["--gepa-report", "out.txt"], "*'out.txt' is not valid; expected a path ending in .json, .md or .html."),
    ],
    ids=["budget", "threads", "min-score", "record-replay", "optimizer", "report"],
)
def test_bad_options_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "INTERNALERROR" not in result.stderr.str() + result.stdout.str()


def test_missing_task_model_says_which_option_to_set(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(textwrap.dedent('''
        import dspy
        from pytest_gepa import metrics

        def test_target(gepa, gepa_examples):
            data = gepa_examples("data.jsonl", inputs=["question"])
            gepa.compile(dspy.Predict("question -> answer"), data, metric=metrics.exact_match("answer"))
    '''))
    pytester.makefile(".jsonl", data="".join(f'{{"question": "q{i}", "answer": "a"}}\n' for i in range(12)))
    result = pytester.runpytest("--gepa-compile")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*No task LM configured: pass --gepa-task-lm MODEL*set the ini key gepa_task_lm, "
                                 "or override the gepa_task_lm fixture in conftest.py."])


def test_bad_data_file_fails_the_test_naming_file_and_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(textwrap.dedent('''
        def test_target(gepa_examples):
            gepa_examples("data.jsonl", inputs=["question"])
    '''))
    pytester.makefile(".jsonl", data='{"question": "q1", "answer": "a"}\n{"question": "q2", "answer": \n')
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["DataFileError: *data.jsonl:2: invalid JSON*"])
    assert "Traceback" not in result.stdout.str()
