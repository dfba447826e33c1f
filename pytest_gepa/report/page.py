"""The HTML report: plain view data for ``templates/report.html.j2``, rendered with autoescape on.

Everything a user wrote (node ids, instructions, inputs, outputs, feedback) reaches the page only
as template variables, so it is escaped; the page loads nothing and runs nothing (see ``CSP``).
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Sequence
from typing import Any

from pytest_gepa.errors import one_line
from pytest_gepa.report.model import (
    OK_STATUSES,
    ROLES,
    MatrixCell,
    TargetReport,
    example_kind,
    fields,
    is_number,
    label,
    lost_examples,
    model_matrix,
    num,
    ordered_examples,
    verdict_facts,
)
from pytest_gepa.report.terminal import CALLS_LEGEND, cells, header, next_steps, split_command

# Nothing may load or run: the page stays self-contained, and an injected tag would be inert anyway.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
SHORT_TEXT = 160  # characters of a cell shown before "more" (the whole text is one click away)


def render_html(reports: Sequence[TargetReport], *, meta: dict[str, Any], totals: dict[str, Any]) -> str:
    """The page: summary table, next steps, then one section per target."""
    steps = [dict(zip(("prose", "command"), split_command(step), strict=True)) for step in next_steps(reports)]
    summary = [{"index": index, "cells": cells(report), "status_class": status_class(report.status)}
               for index, report in enumerate(reports, 1)]
    models, matrix_rows = model_matrix(reports)
    matrix = {"models": models, "rows": [{"target": target, "cells": [_matrix_cell(cell) for cell in row]}
                                         for target, row in matrix_rows]}
    text: str = _template().render(
        csp=CSP, meta_line=meta_line(meta), header=header(reports), summary=summary, steps=steps, matrix=matrix,
        totals=totals, total_cost=num(totals.get("cost_usd"), "${:.4f}"), calls_legend=CALLS_LEGEND,
        targets=[_target_view(index, report) for index, report in enumerate(reports, 1)],
    )
    return text


def _matrix_cell(cell: MatrixCell | None) -> dict[str, Any] | None:
    if cell is None:
        return None
    return {"score": cell.score, "text": cell.text.removeprefix(cell.score + " "), "index": cell.index,
            "class": status_class(cell.status)}


@functools.lru_cache(maxsize=1)
def _template() -> Any:
    import jinja2  # only a run that writes an HTML report pays for it

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("pytest_gepa.report", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return environment.get_template("report.html.j2")


def meta_line(meta: dict[str, Any]) -> str:
    versions = f"pytest-gepa {meta.get('pytest_gepa') or '?'}"
    if meta.get("dspy"):
        versions += f", dspy {meta['dspy']}"
    merged = meta.get("merged_from")
    source = f", merged from {len(merged)} reports" if isinstance(merged, list) else ""
    return (f"mode {meta.get('mode', '?')}, exit status {meta.get('exitstatus', '?')}, "
            f"{versions}, written {meta.get('created', '?')}{source}")


def status_class(status: str) -> str:
    if status == "inconclusive":  # passes, but asks for more evidence
        return "status inconclusive"
    if status in OK_STATUSES:
        return "status ok"
    return "status" if status == "pending" else "status bad"


def text_view(text: Any, limit: int = SHORT_TEXT) -> dict[str, Any]:
    """A cell's text: ``short`` on one line, ``full`` as written, ``cut`` when the short form hides some."""
    full = "" if text is None else str(text)
    short = one_line(full, limit)
    return {"short": short, "full": full, "cut": short != full.strip()}


def _target_view(index: int, report: TargetReport) -> dict[str, Any]:
    facts = [("artifact", report.artifact), ("mode", report.mode), *verdict_facts(report),
             ("min_score", num(report.min_score, "{:.2f}")), ("max_drop", num(report.max_drop, "{:.2f}")),
             ("recorded", num(report.recorded)), ("delta", num(report.delta, "{:+.3f}"))]
    if report.mode == "compile" or report.metric_calls is not None:
        facts += [("val baseline", num(report.baseline)),
                  ("metric calls", "-" if report.metric_calls is None else str(report.metric_calls)),
                  ("stop reason", report.stop_reason or "-")]
    facts += [("LM calls", ", ".join(f"{role} {report.lm_calls.get(role, 0)}" for role in ROLES)),
              ("tokens", ", ".join(f"{role} {report.tokens.get(role, 0)}" for role in ROLES)),
              ("cost", num(report.cost_usd, "${:.4f}"))]
    if report.judge_errors:
        facts.append(("judge errors", str(report.judge_errors)))
    caption, predictors = instruction_sections(report)
    if not report.trajectory:
        trajectory_note = "No score trajectory: this target was not optimized in this run."
    elif report.mode == "compile":
        trajectory_note = "The best validation score after each number of metric calls, over this run's GEPA run."
    else:
        trajectory_note = "The artifact's compile run: its best validation score after each number of metric calls."
    return {
        "index": index, "label": label(report), "status": report.status, "status_class": status_class(report.status),
        "facts": facts, "message": report.message, "warnings": list(report.warnings),
        "lost": lost_examples(report), "caption": caption, "predictors": predictors,
        "trajectory_note": trajectory_note, "plot": trajectory_plot(report.trajectory, report.metric_calls),
        "examples": example_views(report),
    }


# -- instructions --------------------------------------------------------------------------------


def instruction_sections(report: TargetReport) -> tuple[str, list[dict[str, Any]]]:
    """The caption and, per predictor, a line diff against what this run's program replaced."""
    if report.previous_instructions:
        old, caption = report.previous_instructions, (
            "Changes from the committed artifact (removed lines) to this run's program (added lines).")
    elif report.baseline_instructions:
        old, caption = report.baseline_instructions, (
            "No committed artifact to compare with: changes from the unoptimized program (removed lines) "
            "to the compiled program (added lines).")
    elif report.mode == "gate" and report.instructions:
        old, caption = {}, "Each predictor's instruction as compiled into the artifact, the program this gate tested."
    else:
        old, caption = {}, "Instructions of the program tested; there is nothing to compare them with."
    if not report.instructions and not old:
        return "No instructions were recorded for this target.", []
    sections = []
    for name in list(report.instructions) + [name for name in old if name not in report.instructions]:
        before, after = old.get(name), report.instructions.get(name)
        if not old:
            note = ""
        elif before is None:
            note = " (new predictor)"
        elif after is None:
            note = " (predictor removed)"
        else:
            note = " (unchanged)" if before == after else ""
        sections.append({"name": name, "note": note, "lines": instruction_diff(before if old else after, after)})
    return caption, sections


def instruction_diff(before: str | None, after: str | None) -> list[tuple[str, str]]:
    """A line diff as (kind, line) pairs: ``removed``, ``added`` or ``same``."""
    old_lines = before.splitlines() if before is not None else []
    new_lines = after.splitlines() if after is not None else []
    out: list[tuple[str, str]] = []
    matcher = difflib.SequenceMatcher(a=old_lines, b=new_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            out += [("same", line) for line in old_lines[i1:i2]]
            continue
        out += [("removed", line) for line in old_lines[i1:i2]]
        out += [("added", line) for line in new_lines[j1:j2]]
    return out


# -- examples ------------------------------------------------------------------------------------


def example_views(report: TargetReport) -> dict[str, Any]:
    """The per-example table, regressions first, each cell short with its full text on expand."""
    rows = ordered_examples(report.per_example)
    kinds = [example_kind(row) for row in rows]
    views = []
    for row, kind in zip(rows, kinds, strict=True):
        score, recorded = row.get("score"), row.get("recorded")
        bar = max(0.0, min(1.0, float(score))) * 60 if is_number(score) else None
        views.append({
            "id": str(row.get("id", "")), "kind": kind, "score": num(score) if is_number(score) else "-",
            "recorded": num(recorded) if is_number(recorded) else "", "bar": bar,
            "inputs": [(name, text_view(text)) for name, text in fields(row.get("inputs"))],
            "output": [(name, text_view(text)) for name, text in fields(row.get("output"))],
            "feedback": text_view(row.get("feedback") or ""), "error": text_view(row.get("error") or ""),
        })
    # A column only when some row has it (a recorded score of 0.0 counts).
    has = {key: any(row.get(key) not in (None, "", {}) for row in rows) for key in ("inputs", "output", "recorded")}
    return {"rows": views, "regressed": kinds.count("regressed"), "errors": kinds.count("error"),
            "below": sum(1 for row in rows if is_number(row.get("score")) and row["score"] < 1), **has}


# -- score trajectory ----------------------------------------------------------------------------

WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 640, 260, 56, 24, 16, 44


def trajectory_plot(trajectory: Sequence[tuple[int, float]], metric_calls: int | None = None) -> dict[str, Any] | None:
    """Geometry of a step plot of the best validation score after each number of metric calls.

    ``metric_calls`` is where the run ended: the last best score holds until then. ``None`` without points.
    """
    if not trajectory:
        return None
    points = sorted((int(x), min(1.0, max(0.0, float(y)))) for x, y in trajectory)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    x_max = max(points[-1][0], metric_calls or 0, 1)

    def sx(x: float) -> float:
        return LEFT + plot_w * x / x_max

    def sy(y: float) -> float:
        return TOP + plot_h * (1 - y)

    step = _tick_step(x_max)
    # The best score holds until the next improvement: a step, not a slope.
    path = f"M{sx(points[0][0]):.1f},{sy(points[0][1]):.1f}"
    for x, y in points[1:]:
        path += f" H{sx(x):.1f} V{sy(y):.1f}"
    path += f" H{sx(x_max):.1f}"
    last_x, last_y = points[-1]
    anchor = "end" if sx(last_x) > LEFT + plot_w - 40 else "start"
    return {
        "width": WIDTH, "height": HEIGHT, "left": LEFT, "top": TOP, "right_edge": LEFT + plot_w,
        "bottom_edge": TOP + plot_h, "mid_x": f"{LEFT + plot_w / 2:.1f}", "mid_y": f"{TOP + plot_h / 2:.1f}",
        "y_ticks": [(f"{sy(tick):.1f}", f"{sy(tick) + 4:.1f}", f"{tick:.2f}") for tick in (0.0, 0.25, 0.5, 0.75, 1.0)],
        "x_ticks": [(f"{sx(tick):.1f}", tick) for tick in range(0, x_max + 1, step)],
        "path": path,
        "points": [(f"{sx(x):.1f}", f"{sy(y):.1f}", f"{x} metric calls: {y:.3f}") for x, y in points],
        "last": (f"{sx(last_x) + (-6 if anchor == 'end' else 6):.1f}", f"{sy(last_y) - 8:.1f}", anchor,
                 f"{last_y:.3f}"),
    }


def _tick_step(span: int) -> int:
    """A round step (1, 2 or 5 times a power of ten) giving at most six ticks over ``span``."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            if span / (factor * magnitude) <= 6:
                return factor * magnitude
        magnitude *= 10
