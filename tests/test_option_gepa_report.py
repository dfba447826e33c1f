"""``--gepa-report`` end to end, and xdist: workers' results reach one summary and one report."""

from __future__ import annotations

import json
import textwrap

import pytest
from conftest import TriageProject
from test_pytest_integration import TWO_TARGETS


@pytest.fixture
def two_compiled(triage_project: TriageProject) -> TriageProject:
    triage_project.write_test(source=TWO_TARGETS.format(easy=0.5, strict=0.5))
    triage_project.compile().assert_outcomes(passed=2)
    triage_project.write_test(source=TWO_TARGETS.format(easy=0.5, strict=1.01 - 0.02))
    return triage_project


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_one_summary_and_one_json_report(two_compiled: TriageProject, workers: list[str]) -> None:
    result = two_compiled.pytester.runpytest("-p", "no:cacheprovider", "--gepa-report", "out/report.json", *workers)
    result.assert_outcomes(passed=2)
    assert result.stdout.str().count("= gepa =") == 1
    result.stdout.fnmatch_lines(["*test_easy*gate*passed*", "*test_strict*gate*passed*"])
    report = json.loads((two_compiled.root / "out" / "report.json").read_text())
    assert report["schema"] == "pytest-gepa-report/1"
    assert [t["name"] for t in report["targets"]] == ["test_easy", "test_strict"]
    assert report["totals"]["targets"] == 2 and report["totals"]["passed"] == 2
    assert report["totals"]["lm_calls"]["task"] == 20
    assert all(len(t["per_example"]) == 10 for t in report["targets"])


def test_xdist_compile_writes_both_artifacts(triage_project: TriageProject) -> None:
    triage_project.write_test(source=TWO_TARGETS.format(easy=0.5, strict=0.5))
    result = triage_project.pytester.runpytest("-p", "no:cacheprovider", "--gepa-compile", "-n", "2")
    result.assert_outcomes(passed=2)
    assert result.stdout.str().count("= gepa =") == 1
    artifacts = sorted(p.name for p in (triage_project.root / "gepa_artifacts" / "test_triage").glob("*.json"))
    assert artifacts == ["test_easy.json", "test_strict.json"]


@pytest.mark.parametrize("suffix", [".md", ".html"])
def test_markdown_and_html_reports_name_the_failed_target(two_compiled: TriageProject, suffix: str) -> None:
    def naive(data: dict) -> None:
        data["program"]["predict"]["signature"]["instructions"] = "Classify the support ticket."

    path = two_compiled.root / "gepa_artifacts" / "test_triage" / "test_strict.json"
    data = json.loads(path.read_text())
    naive(data)
    path.write_text(json.dumps(data))
    result = two_compiled.run("--gepa-report", f"report{suffix}")
    result.assert_outcomes(passed=1, failed=1)
    text = (two_compiled.root / f"report{suffix}").read_text()
    assert "test_strict" in text and "failed" in text
    assert "is under min_score 0.990" in text


def test_a_report_that_cannot_be_written_keeps_the_summary_and_the_exit_status(two_compiled: TriageProject) -> None:
    # Writable when the run starts (so no usage error), gone by its end: a file takes the folder's place.
    two_compiled.pytester.makeconftest(two_compiled.root.joinpath("conftest.py").read_text() + textwrap.dedent("""
        import pathlib

        def pytest_sessionfinish(session):
            pathlib.Path("out").write_text("a file where the report's folder should be")
    """))
    result = two_compiled.run("--gepa-report", "out/report.html")
    result.assert_outcomes(passed=2)
    assert result.ret == 0
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["*= gepa =*", "*test_easy*gate*passed*", "*test_strict*gate*passed*"])
