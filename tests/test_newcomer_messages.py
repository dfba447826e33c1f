"""One failure, one message: a gepa error shows once, its summary line names it, and a warning
points at the user's test line, not at the plugin."""

from __future__ import annotations

import json

import pytest
from conftest import TriageProject

BAD_DATA_TEST = '''
def test_data(gepa_examples):
    gepa_examples("data/broken.jsonl", inputs=["ticket"])
'''

BAD_RUBRIC_TEST = '''
def test_rubric(gepa_rubric):
    gepa_rubric("rubrics/broken.yaml")
'''


def _failure_section(result: pytest.RunResult) -> str:
    out = result.stdout.str()
    return out[out.index("= FAILURES =") : out.index("short test summary info")]


def test_a_broken_data_file_is_one_message(triage_project: TriageProject) -> None:
    (triage_project.root / "data" / "broken.jsonl").write_text('{"ticket": "a", "category": "b"}\n{not json\n')
    triage_project.write_test(source=BAD_DATA_TEST)
    result = triage_project.run()
    result.assert_outcomes(failed=1)
    section = _failure_section(result)
    assert "During handling of the above exception" not in section, section
    assert "Traceback" not in section and "pytest_gepa/" not in section, section
    assert section.count("broken.jsonl") == 1, section
    result.stdout.fnmatch_lines(["FAILED test_triage.py::test_data - DataFileError: *"])
    assert "Failed: DataFileError" not in result.stdout.str()


def test_a_broken_rubric_file_is_one_message(triage_project: TriageProject) -> None:
    (triage_project.root / "rubrics").mkdir()
    (triage_project.root / "rubrics" / "broken.yaml").write_text("name: r\ncriteria: 3\n")
    triage_project.write_test(source=BAD_RUBRIC_TEST)
    result = triage_project.run()
    result.assert_outcomes(failed=1)
    section = _failure_section(result)
    assert "During handling of the above exception" not in section, section
    assert "Traceback" not in section and "pytest_gepa/" not in section, section
    result.stdout.fnmatch_lines(["FAILED test_triage.py::test_rubric - RubricError: *"])
    assert "Failed: RubricError" not in result.stdout.str()


def test_a_gepa_warning_points_at_the_users_test_line(triage_project: TriageProject) -> None:
    triage_project.compile().assert_outcomes(passed=1)
    # A label fixed since the compile: the data changed, the ids did not.
    rows = [json.loads(line) for line in triage_project.data.read_text().splitlines()]
    rows[0]["note"] = "relabelled by a reviewer"
    triage_project.data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = triage_project.run("-W", "default")
    result.assert_outcomes(passed=1)
    source = (triage_project.root / "test_triage.py").read_text().splitlines()
    line = next(n for n, text in enumerate(source, start=1) if "gepa.compile(" in text)
    out = result.stdout.str()
    warnings = out[out.index("warnings summary") :]
    result.stdout.fnmatch_lines([
        "*= warnings summary =*",
        "test_triage.py::test_triage_prompt",
        f"  *test_triage.py:{line}: GepaWarning: test_triage.py::test_triage_prompt [[]test_triage_prompt[]]: "
        "the labeled examples changed since the artifact was compiled*",
    ])
    assert "pytest_gepa" not in warnings.split("-- Docs:")[0], warnings
