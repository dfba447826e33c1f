"""The ``gepa`` section of the terminal summary, from hand-built target rows: what a person reads after a run."""

from __future__ import annotations

import pytest

from pytest_gepa.report.model import TargetReport
from pytest_gepa.report.terminal import summary_lines


def gate(**fields: object) -> TargetReport:
    values: dict[str, object] = {
        "nodeid": "tests/test_qa.py::test_answer", "name": "test_answer", "mode": "gate",
        "artifact": "tests/gepa_artifacts/test_qa/test_answer.json", "status": "passed", "score": 0.92,
        "ci": (0.85, 0.97), "min_score": 0.8, "max_drop": 0.03, "recorded": 0.9,
        "lm_calls": {"task": 20, "reflection": 0, "judge": 0},
    }
    values.update(fields)
    return TargetReport(**values)  # type: ignore[arg-type]


def row_of(lines: list[str], nodeid: str) -> str:
    rows = [line for line in lines if line.startswith(nodeid) and "  gate  " in line]
    assert len(rows) == 1, lines
    return rows[0]


def column(lines: list[str], name: str, row: str) -> str:
    """The text of one column of ``row``, cut where the header puts it."""
    head = lines[0]
    start = head.index(name)
    following = [head.index(other) for other in head.split("  ") if other and head.index(other) > start]
    end = min(following, default=len(row))
    return row[start:end].strip()


def test_a_plain_gate_row_and_the_legend() -> None:
    lines = summary_lines([gate()])
    assert lines[0].split() == ["target", "mode", "score", "(95%", "CI)", "threshold", "recorded", "delta",
                                "LM", "calls", "cost", "status"]
    row = row_of(lines, "tests/test_qa.py::test_answer")
    assert column(lines, "score (95% CI)", row) == "0.920 (0.85-0.97)"
    assert column(lines, "threshold", row) == ">=0.80 drop<=0.03"
    assert column(lines, "LM calls", row) == "20/0/0"
    assert "LM calls are task/reflection/judge." in lines
    assert lines[-1] == "All gates passed."


def test_under_replay_the_calls_column_says_replayed() -> None:
    lines = summary_lines([gate(replayed=12, lm_calls={"task": 0, "reflection": 0, "judge": 0})])
    assert column(lines, "LM calls", row_of(lines, "tests/test_qa.py::test_answer")) == "replayed 12"
    assert "0/0/0" not in "\n".join(lines)


def test_a_task_lm_that_never_answered_shows_no_call_count() -> None:
    dead = gate(status="lm error", score=None, ci=None, scored=0, total=10,
                lm_calls={"task": 10, "reflection": 0, "judge": 0},
                lm_errors=[{"id": f"q-{i}", "error": "ConnectionError: refused"} for i in range(10)])
    lines = summary_lines([dead])
    row = row_of(lines, "tests/test_qa.py::test_answer")
    assert column(lines, "LM calls", row) == "none answered"
    assert "10/0/0" not in row


@pytest.mark.parametrize("evidence", [{"scored": 6, "total": 10}, {}], ids=["some scored", "not counted"])
def test_an_lm_error_that_left_answers_keeps_the_call_count(evidence: dict[str, int]) -> None:
    lines = summary_lines([gate(status="lm error", lm_calls={"task": 10, "reflection": 0, "judge": 0}, **evidence)])
    assert column(lines, "LM calls", row_of(lines, "tests/test_qa.py::test_answer")) == "10/0/0"


def test_lost_examples_show_as_scored_n_of_total_and_a_few_are_listed() -> None:
    lost = [{"id": f"q-{i}", "error": f"TimeoutError: the task LM did not answer within 30s (call {i})"}
            for i in range(5)]
    lines = summary_lines([gate(scored=55, total=60, lm_errors=lost)])
    row = row_of(lines, "tests/test_qa.py::test_answer")
    assert column(lines, "score (95% CI)", row) == "0.920 (0.85-0.97), scored 55 of 60"
    start = lines.index("tests/test_qa.py::test_answer: scored 55 of 60; lost to errors:")
    assert lines[start + 1:start + 5] == [
        "  q-0: TimeoutError: the task LM did not answer within 30s (call 0)",
        "  q-1: TimeoutError: the task LM did not answer within 30s (call 1)",
        "  q-2: TimeoutError: the task LM did not answer within 30s (call 2)",
        "  ... and 2 more (--gepa-report lists them all)",
    ]
    assert lines.index("LM calls are task/reflection/judge.") < start, "the lost examples come below the table"


def test_everything_scored_says_nothing_about_it() -> None:
    text = "\n".join(summary_lines([gate(scored=60, total=60)]))
    assert "scored" not in text and "lost" not in text


def test_inconclusive_shows_the_interval_logic_the_warning_and_what_to_do() -> None:
    report = gate(status="inconclusive", score=0.78, ci=(0.66, 0.88), recorded=0.81, drop=0.03,
                  drop_ci=(-0.01, 0.07), resolution=0.05,
                  warnings=["max_drop 0.03 is finer than this devset's resolution 0.05 at 95%: add examples"])
    lines = summary_lines([report])
    row = row_of(lines, "tests/test_qa.py::test_answer")
    assert column(lines, "score (95% CI)", row) == "0.780 (0.66-0.88)"
    assert column(lines, "threshold", row) == ">=0.80 drop +0.030 [-0.010, +0.070] <=0.03"
    assert row.endswith("inconclusive")
    assert ("tests/test_qa.py::test_answer: max_drop 0.03 is finer than this devset's resolution 0.05 at 95%: "
            "add examples") in lines
    assert lines[-1] == ("Inconclusive: tests/test_qa.py::test_answer missed a threshold by less than the evidence "
                         "can tell; add examples or raise gepa_samples; --gepa-strict makes it fail.")
    assert "All gates passed." not in lines


def test_the_score_column_names_the_confidence_the_rows_share() -> None:
    assert summary_lines([gate(confidence=0.9)])[0].startswith("target")
    assert "score (90% CI)" in summary_lines([gate(confidence=0.9)])[0]
    assert "score (CI)" in summary_lines([gate(confidence=0.9), gate(confidence=0.99)])[0]


@pytest.mark.parametrize(("status", "step"), [
    ("failed", "Regressed: review the examples above"),
    ("stale", "Next: create or refresh the artifacts with  pytest --gepa-compile tests/test_qa.py::test_answer"),
    ("compiled", "Next: review the artifact diff"),
])
def test_the_next_steps_stay(status: str, step: str) -> None:
    assert summary_lines([gate(status=status)])[-1].startswith(step)
