"""Options that are wrong say so at start: a usage error (exit 4) naming the option, the value and
the fix, before any test runs, and never an INTERNALERROR."""

from __future__ import annotations

import os
import textwrap

import pytest
from conftest import TriageProject


def _usage_error(project: TriageProject, *args: str) -> str:
    result = project.run(*args)
    text = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, text
    assert "INTERNALERROR" not in text and "Traceback" not in text, text
    assert "collected" not in text, "the run stopped before collecting any test"
    return result.stderr.str()


WRONG_VALUES = [
    (["-o", "gepa_compile=maybe"], "--gepa-compile / ini gepa_compile: 'maybe' is not valid; expected true or false."),
    (["-o", "gepa_strict=sometimes"], "--gepa-strict / ini gepa_strict: 'sometimes' is not valid; expected true or "
                                      "false."),
    (["--gepa-keep-best"], "--gepa-keep-best keeps the better of two optimizers' programs and needs --gepa-compare "
                           "OPTIMIZER to name the second one (gepa, miprov2 or bootstrap)."),
    (["--gepa-resume"], "--gepa-resume continues an interrupted compile: run it with --gepa-compile "
                        "(`pytest --gepa-compile --gepa-resume ...`)."),
    (["--gepa-samples", "0"], "--gepa-samples / ini gepa_samples: '0' is not valid; expected a whole number from 1 "
                              "to 100."),
    (["-o", "gepa_samples=two"], "--gepa-samples / ini gepa_samples: 'two' is not valid; expected a whole number "
                                 "from 1 to 100."),
    (["-o", "gepa_confidence=2"], "ini gepa_confidence: '2' is not valid; expected a confidence between 0.5 and "
                                  "0.999."),
    (["--gepa-budget", "0"], "--gepa-budget / ini gepa_budget: '0' is not valid; expected light, medium, heavy, or a "
                             "positive number of metric calls."),
    (["--gepa-max-cost", "-1"], "--gepa-max-cost / ini gepa_max_cost: '-1' is not valid; expected a cost in USD, at "
                                "least 0."),
    (["--gepa-optimizer", "adam"], "--gepa-optimizer / ini gepa_optimizer: 'adam' is not valid; expected one of gepa, "
                                   "miprov2, bootstrap."),
    (["--gepa-report", "report.txt"], "--gepa-report / ini gepa_report: 'report.txt' is not valid; expected a path "
                                      "ending in .json, .md or .html."),

]


@pytest.mark.parametrize(("args", "message"), WRONG_VALUES, ids=[" ".join(args) for args, _ in WRONG_VALUES])
def test_a_wrong_value_is_a_usage_error_naming_the_option(triage_project: TriageProject, args: list[str],
                                                         message: str) -> None:
    assert message in _usage_error(triage_project, *args)


def test_an_ini_file_value_is_checked_too(triage_project: TriageProject) -> None:
    triage_project.pytester.makeini("[pytest]\ngepa_compile = maybe\n")
    assert "ini gepa_compile: 'maybe' is not valid; expected true or false." in _usage_error(triage_project)


def test_a_report_path_that_names_a_directory_is_a_usage_error(triage_project: TriageProject) -> None:
    (triage_project.root / "reports.json").mkdir()
    stderr = _usage_error(triage_project, "--gepa-report", "reports.json")
    assert "--gepa-report / ini gepa_report: 'reports.json' is not valid; expected a file path; it names a directory." \
        in stderr


def test_a_report_under_a_file_is_a_usage_error(triage_project: TriageProject) -> None:
    (triage_project.root / "out").write_text("a file, not a folder")
    stderr = _usage_error(triage_project, "--gepa-report", "out/report.json")
    assert "--gepa-report / ini gepa_report: 'out/report.json' is not valid; expected a path this user can write" \
        in stderr


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write to any folder")
def test_a_report_in_a_read_only_folder_is_a_usage_error(triage_project: TriageProject) -> None:
    folder = triage_project.root / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        stderr = _usage_error(triage_project, "--gepa-report", "locked/report.json")
    finally:
        folder.chmod(0o700)
    assert "expected a path this user can write" in stderr


def test_a_report_that_cannot_be_written_keeps_a_failed_runs_exit_status(triage_project: TriageProject) -> None:
    # The run fails (no artifact yet); the report's folder turns into a file before the report is written.
    triage_project.pytester.makeconftest(triage_project.root.joinpath("conftest.py").read_text() + textwrap.dedent("""
        import pathlib

        def pytest_sessionfinish(session):
            pathlib.Path("out").write_text("a file where the report's folder should be")
    """))
    result = triage_project.run("--gepa-report", "out/report.md")
    result.assert_outcomes(failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    text = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in text, text
    result.stdout.fnmatch_lines(["*= gepa =*", "*test_triage_prompt*", "--gepa-report was not written: *"])
