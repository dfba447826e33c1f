"""The job summary fits GitHub's limits: 65,536 characters in a pull-request comment, 1 MiB per step
summary; cut block by block with a note, regressions kept first; and ``pytest-gepa merge`` appends it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_cli_merge import cli
from test_report_files import META, failed_gate, passed_gate

from pytest_gepa.report.markdown import COMMENT_LIMIT, render_markdown
from pytest_gepa.report.model import TargetReport
from pytest_gepa.report.summary import STEP_SUMMARY_BYTES, append_job_summary, room_in


def many(count: int) -> list[TargetReport]:
    """``count`` passing targets and, last in the order, one failed one: the cut must keep the failure."""
    reports = []
    for index in range(count):
        report = passed_gate()
        report.nodeid = report.name = f"tests/test_many.py::test_{index:04d}"
        reports.append(report)
    return [*reports, failed_gate()]


def test_a_large_run_is_cut_to_a_comment_with_a_note_and_keeps_the_regressions() -> None:
    text = render_markdown(many(2000), meta=META)
    assert len(text) <= COMMENT_LIMIT
    assert "**Cut to fit:** this summary stops at 65,536 characters" in text
    assert text.index("### Regressions") < text.index("### Targets"), "the failure survives the cut"
    assert "**`tests/test_triage.py::test_triage[a|b]`** failed" in text
    assert text.count("<details>") == text.count("</details>"), "never cut inside a fold"
    rows = [line for line in text.splitlines() if line.startswith("| `tests/test_many.py::")]
    assert 100 < len(rows) < 2000 and all(line.endswith("| passed |") for line in rows), "whole rows only"


def test_a_small_run_is_not_cut() -> None:
    text = render_markdown([failed_gate(), passed_gate()], meta=META)
    assert "Cut to fit" not in text
    assert text.rstrip().endswith("</details>")


def test_a_long_failure_message_is_cut_inside_its_fold() -> None:
    report = failed_gate()
    report.message = "first line\n" + "x" * 100_000
    text = render_markdown([report], meta=META)
    assert len(text) < 10_000
    assert "... (cut; the JSON and HTML reports hold the whole message)" in text


def test_the_summary_fits_what_earlier_steps_left_of_the_step_summary(tmp_path: Path) -> None:
    path = tmp_path / "summary.md"
    assert room_in(path) == COMMENT_LIMIT  # no file yet
    path.write_text("x" * (STEP_SUMMARY_BYTES - 40_000))
    assert room_in(path) == 10_000  # a character may take four bytes
    assert append_job_summary(path, many(2000), meta=META) is None
    assert path.stat().st_size <= STEP_SUMMARY_BYTES
    assert "Cut to fit" in path.read_text()[STEP_SUMMARY_BYTES - 40_000:]

    path.write_text("x" * STEP_SUMMARY_BYTES)
    problem = append_job_summary(path, many(3), meta=META)
    assert problem is not None and "already near GitHub's 1 MiB limit" in problem
    assert path.stat().st_size == STEP_SUMMARY_BYTES, "nothing appended past the limit"


def test_an_unwritable_step_summary_is_a_line_not_an_exception(tmp_path: Path) -> None:
    problem = append_job_summary(tmp_path, [passed_gate()], meta=META)  # a folder, not a file
    assert problem is not None and problem.startswith("$GITHUB_STEP_SUMMARY: could not append the gepa summary to")


def test_merge_appends_the_merged_summary_to_the_step_summary(tmp_path: Path) -> None:
    from pytest_gepa.report.files import render_json

    (tmp_path / "a.json").write_text(render_json([passed_gate()], meta={**META, "exitstatus": 0}))
    (tmp_path / "b.json").write_text(render_json([failed_gate()], meta=META))
    summary = tmp_path / "summary.md"
    summary.write_text("## tests\n")
    env = {key: value for key, value in __import__("os").environ.items()}
    env["GITHUB_STEP_SUMMARY"] = str(summary)
    done = cli("merge", "a.json", "b.json", "--output", "merged.json", cwd=tmp_path, env=env)
    assert done.returncode == 1
    text = summary.read_text()
    assert text.startswith("## tests\n## pytest-gepa\n")
    assert re.search(r"mode compile, exit status 1, ", text)
    assert "**1 of 2 targets passed**" in text
    assert text.index("### Regressions") < text.index("### Targets")
    merged = json.loads((tmp_path / "merged.json").read_text())
    assert merged["totals"]["failed"] == 1


@pytest.mark.parametrize("statuses, expected", [([0, 1, 0], 1), ([0, 5], 0), ([5, 5], 5), ([0, 2], 2), ([], None)])
def test_the_merged_exit_status_is_the_worst_a_run_of_the_whole_would_have(statuses: list[int],
                                                                           expected: int | None) -> None:
    from pytest_gepa.report.merge import worst_exit_status

    assert worst_exit_status(statuses) == expected
