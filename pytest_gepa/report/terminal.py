"""The ``gepa`` section of the terminal summary: a row per target, what the rows cannot hold, what to run next."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from pytest_gepa.errors import one_line
from pytest_gepa.report.model import (
    NEEDS_COMPILE_STATUSES,
    REGRESSED_STATUSES,
    ROLES,
    TargetReport,
    drop_text,
    label,
    lost_examples,
    num,
    percent,
    scored_text,
    task_lm_never_answered,
)

CALLS_LEGEND = "LM calls are task/reflection/judge."
LOST_SHOWN = 3  # lost examples listed per target; the report files list them all
ERROR_WIDTH = 100


def header(reports: Sequence[TargetReport]) -> tuple[str, ...]:
    """The column names; the score's interval names its confidence when every row shares one."""
    levels = {report.confidence for report in reports}
    level = percent(levels.pop()) if len(levels) == 1 else ""
    score = f"score ({level} CI)" if level else "score (CI)"
    return ("target", "mode", score, "threshold", "recorded", "delta", "LM calls", "cost", "status")


def score_cell(report: TargetReport) -> str:
    """The score with its interval, then ``scored 58 of 60`` when examples were lost."""
    text = num(report.score)
    if report.ci is not None:
        text += f" ({report.ci[0]:.2f}-{report.ci[1]:.2f})"
    lost = scored_text(report)
    return f"{text}, {lost}" if lost else text


def threshold_cell(report: TargetReport) -> str:
    """The thresholds, and the paired drop with its interval where it is measured against a recording.

    ``>=0.80`` is decided on the score's interval (the column before); ``drop +0.030 [-0.010, +0.070]
    <=0.03`` fails only when the whole interval lies above the allowed drop.
    """
    parts = []
    if report.min_score is not None:
        parts.append(f">={report.min_score:.2f}")
    drop = drop_text(report)
    if drop:
        parts.append(f"drop {drop}" + (f" <={report.max_drop:.2f}" if report.max_drop is not None else ""))
    elif report.max_drop is not None and report.recorded is not None:
        parts.append(f"drop<={report.max_drop:.2f}")
    return " ".join(parts) or "-"


def calls_cell(report: TargetReport) -> str:
    """task/reflection/judge calls; ``replayed N`` when a cassette answered; never a count of calls
    that all failed, which would read as work done."""
    if report.replayed is not None:
        return f"replayed {report.replayed}"
    if task_lm_never_answered(report):
        return "none answered"
    return "/".join(str(report.lm_calls.get(role, 0)) for role in ROLES)


def cells(report: TargetReport) -> tuple[str, ...]:
    """One summary row, the same words in the terminal, the Markdown and the HTML table."""
    return (label(report), report.mode, score_cell(report), threshold_cell(report), num(report.recorded),
            num(report.delta, "{:+.3f}"), calls_cell(report), num(report.cost_usd, "${:.4f}"), report.status)


def summary_lines(reports: Sequence[TargetReport]) -> list[str]:
    """The terminal summary: a table of targets, the notes a row cannot hold, then the command to run next."""
    rows = [header(reports), *(cells(report) for report in reports)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.append(CALLS_LEGEND)
    lines.extend(note_lines(reports))
    lines.extend(comparison_lines(reports))
    lines.extend(next_steps(reports))
    return lines


def note_lines(reports: Sequence[TargetReport]) -> list[str]:
    """Per target: the examples lost to LM errors (a few) and the verdict's warnings (inconclusive, resolution)."""
    lines = []
    for report in reports:
        lost = lost_examples(report)
        scored = scored_text(report)
        if lost:
            lines.append(f"{label(report)}: {scored or f'{len(lost)} example(s) not scored'}; lost to errors:")
            lines += [f"  {row['id']}: {one_line(row['error'], ERROR_WIDTH)}" for row in lost[:LOST_SHOWN]]
            if len(lost) > LOST_SHOWN:
                lines.append(f"  ... and {len(lost) - LOST_SHOWN} more (--gepa-report lists them all)")
        lines += [f"{label(report)}: {one_line(warning)}" for warning in report.warnings]
    return lines


def comparison_lines(reports: Sequence[TargetReport]) -> list[str]:
    """With --gepa-compare: each optimizer's result on the same split, side by side."""
    lines = []
    for r in reports:
        if not r.comparison:
            continue
        parts = [
            f"{row['optimizer']} {row['score']:.3f} ({row['ci'][0]:.2f}-{row['ci'][1]:.2f}), val "
            f"{num(row['val'])}, {row['lm_calls']} LM calls{' [kept]' if row['kept'] else ''}"
            for row in r.comparison
        ]
        lines.append(f"compare {r.nodeid} [{r.name}]: " + "  vs  ".join(parts))
    return lines


def next_steps(reports: Sequence[TargetReport]) -> list[str]:
    """The one command a person should run next, given how the targets ended.

    A line that names a command puts two spaces before ``pytest``: the report files show it as code.
    """
    to_compile = [r for r in reports if r.status in NEEDS_COMPILE_STATUSES]
    regressed = [r for r in reports if r.status in REGRESSED_STATUSES]
    inconclusive = sorted({r.nodeid for r in reports if r.status == "inconclusive"})
    lines = []
    if to_compile:
        lines.append("Next: create or refresh the artifacts with  " + compile_command(to_compile))
    if regressed:
        lines.append("Regressed: review the examples above, then fix the prompt, data or model, or "
                     "recompile with  " + compile_command(regressed))
    if inconclusive:
        lines.append(f"Inconclusive: {' '.join(inconclusive)} missed a threshold by less than the evidence can "
                     "tell; add examples or raise gepa_samples; --gepa-strict makes it fail.")
    if any(r.status == "compiled" for r in reports):
        lines.append("Next: review the artifact diff (git diff -- '*gepa_artifacts*') and commit it.")
    if not lines and reports and all(r.status == "passed" for r in reports):
        lines.append("All gates passed.")
    return lines


def compile_command(reports: Sequence[TargetReport]) -> str:
    """``pytest --gepa-compile`` of these targets' tests; a model matrix keeps its ``--gepa-task-lm``
    (every row of one run names the same models), so each test keeps its ``@model`` file."""
    flags = next((r.compile_flags for r in reports if r.compile_flags), "")
    nodeids = sorted({shlex.quote(r.nodeid) for r in reports})
    return " ".join(["pytest --gepa-compile", *([flags] if flags else []), *nodeids])


def split_command(line: str) -> tuple[str, str | None]:
    """A next-step line is prose, then two spaces, then the command; the report files show the command as code."""
    prose, sep, command = line.partition("  pytest ")
    return (prose, "pytest " + command) if sep else (line, None)
