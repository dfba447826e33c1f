"""``--gepa-report PATH``: the run's gepa results as a file, chosen by suffix.

``.md``
    A compact table for a CI job summary (``cat report.md >> "$GITHUB_STEP_SUMMARY"``), the
    regressed targets with their messages, and the command to run next.
``.html``
    One self-contained page (no scripts, no external assets): per target the status and scores,
    a line diff of every predictor's instructions, the GEPA score trajectory and the per-example
    results.
``.json``
    The same data for machines, described below. Keys are sorted; a score that is not a finite
    number is written as ``null``.

JSON fields (schema ``pytest-gepa-report/1``)::

    schema           "pytest-gepa-report/1"; a field is only ever added within a schema version
    meta             facts about the run:
      mode           "gate" or "compile"
      created        when the report was written, ISO 8601
      pytest_gepa    pytest-gepa's version
      dspy           dspy's version, or null when dspy was never imported
      exitstatus     pytest's exit status (0 all passed, 1 tests failed, ...)
    targets          one object per target, in the order of the terminal summary:
      nodeid         the test's node id, e.g. "tests/test_qa.py::test_answer"
      name           the target's name within its test
      mode           "gate" or "compile"
      artifact       path of the artifact file
      status         how the target ended: passed, compiled, loaded (not gated), failed,
                     rejected (compile candidate refused), stale, missing, corrupt, lm error,
                     replay miss, optimizer error, error (the test failed otherwise),
                     pending (never finished)
      score          mean devset score this run, 0..1, or null when not scored
      ci             [low, high] 95% bootstrap interval of score, or null
      min_score      the min_score threshold, or null
      max_drop       the max_drop threshold, or null
      recorded       the score it was compared against (committed artifact), or null
      delta          score - recorded, or null
      baseline       validation score of the unoptimized program (compile only), or null
      lm_calls       LM calls of this target by role: {"task": n, "reflection": n, "judge": n}
      tokens         tokens (prompt + completion) of this target by role, same keys
      cost_usd       price of those tokens in US dollars, or null when a model's price is unknown
      judge_errors   LM-judge metric calls that failed for this target (0 when there is no judge)
      message        why the gate failed or the candidate was rejected, regressed examples
                     included; "" otherwise
      stop_reason    why the GEPA run stopped (compile only), or null
      metric_calls   metric calls the GEPA run used (compile only), or null
      per_example    [{"id", "score", "feedback", "error"}] one per devset example scored
      instructions   {predictor: instruction text} of the program tested (candidate or artifact)
      previous_instructions  {predictor: text} of the committed artifact a compile replaces, or {}
      baseline_instructions  {predictor: text} of the unoptimized program (compile only), or {}
      trajectory     [[metric_calls, best validation score so far], ...] over the GEPA run
      comparison     with --gepa-compare, one row per optimizer run on the same split:
                     {"optimizer", "val", "score", "ci", "lm_calls", "metric_calls", "kept"}; else []
      samples        draws per devset example (each example's score is their mean)
      confidence     confidence of the intervals and tests
      drop           paired drop (recorded minus now) on the examples present in both, or null
      drop_ci        [low, high] interval of that drop, or null
      resolution     the smallest drop the devset can detect (recorded at compile), or null
      scored         devset examples scored, or null
      total          devset examples in all, or null
      lm_errors      [{"id", "error"}] examples lost to LM errors
      replayed       LM calls answered from the cassette (under --gepa-replay), or null
      model          the task model of this row, or null
      warnings       sentences of inconclusive checks and resolution notes
    totals           the targets added up:
      targets        number of targets
      passed         targets that ended passed, compiled or loaded
      failed         targets that ended in any other status except pending
      by_status      {status: number of targets}
      lm_calls       {"task", "reflection", "judge"}: LM calls summed over targets
      tokens         {"task", "reflection", "judge"}: tokens summed over targets
      cost_usd       summed cost, or null when any target that called an LM has an unknown cost

Each element of ``targets`` loads back with ``TargetReport.from_dict``.
"""

from __future__ import annotations

import difflib
import html
import json
import math
import os
import re
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pytest_gepa.report import OK_STATUSES, REGRESSED_STATUSES, TargetReport, next_steps

SCHEMA = "pytest-gepa-report/1"
ROLES = ("task", "reflection", "judge")


def write_report(path: Path, reports: Sequence[TargetReport], *, meta: dict[str, Any]) -> None:
    """Write the report in the format its suffix names, atomically: readers see the old file or the new one."""
    render = _RENDERERS.get(path.suffix.lower())
    if render is None:
        raise ValueError(f"--gepa-report {str(path)!r}: expected a path ending in {', '.join(_RENDERERS)}")
    text = render(reports, meta=meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A sibling temp file, so os.replace stays on one file system; plain open() keeps the user's umask.
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temp, "x", encoding="utf-8", newline="\n") as out:
            out.write(text)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


# -- JSON ------------------------------------------------------------------------------------


def render_json(reports: Sequence[TargetReport], *, meta: dict[str, Any]) -> str:
    document = {
        "schema": SCHEMA,
        "meta": dict(meta),
        "targets": [report.to_dict() for report in reports],
        "totals": totals(reports),
    }
    return json.dumps(_finite(document), sort_keys=True, indent=2, ensure_ascii=False, default=str) + "\n"


def totals(reports: Sequence[TargetReport]) -> dict[str, Any]:
    """The run added up: target counts, LM calls and tokens by role, and the cost when every price is known."""
    by_status: dict[str, int] = {}
    for report in reports:
        by_status[report.status] = by_status.get(report.status, 0) + 1
    lm_calls = _sum_roles(report.lm_calls for report in reports)
    tokens = _sum_roles(report.tokens for report in reports)
    spending = [report for report in reports if any(report.lm_calls.values())]
    if spending and all(report.cost_usd is not None for report in spending):
        cost: float | None = sum(report.cost_usd or 0.0 for report in reports)
    else:
        cost = None
    passed = sum(by_status.get(status, 0) for status in OK_STATUSES)
    return {
        "targets": len(reports),
        "passed": passed,
        "failed": len(reports) - passed - by_status.get("pending", 0),
        "by_status": by_status,
        "lm_calls": lm_calls,
        "tokens": tokens,
        "cost_usd": cost,
    }


def _sum_roles(per_target: Any) -> dict[str, int]:
    summed = dict.fromkeys(ROLES, 0)
    for counts in per_target:
        for role, value in counts.items():
            summed[role] = summed.get(role, 0) + int(value)
    return summed


def _finite(value: Any) -> Any:
    """NaN and infinities are not JSON; a consumer such as jq would reject the whole file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


# -- cells shared by the Markdown and HTML tables ----------------------------------------------

HEADER = ("target", "mode", "score (95% CI)", "threshold", "recorded", "delta", "LM calls", "cost", "status")


def _num(value: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if value is None else fmt.format(value)


def _label(report: TargetReport) -> str:
    return report.nodeid if report.name in report.nodeid else f"{report.nodeid} [{report.name}]"


def _cells(report: TargetReport) -> tuple[str, ...]:
    """One summary row, worded as the terminal summary words it."""
    score = _num(report.score)
    if report.ci is not None:
        score += f" ({report.ci[0]:.2f}-{report.ci[1]:.2f})"
    parts = []
    if report.min_score is not None:
        parts.append(f">={report.min_score:.2f}")
    if report.max_drop is not None and report.recorded is not None:
        parts.append(f"drop<={report.max_drop:.2f}")
    calls = "/".join(str(report.lm_calls.get(role, 0)) for role in ROLES)
    return (_label(report), report.mode, score, " ".join(parts) or "-", _num(report.recorded),
            _num(report.delta, "{:+.3f}"), calls, _num(report.cost_usd, "${:.4f}"), report.status)


def _split_command(line: str) -> tuple[str, str | None]:
    """A next-step line is prose, then two spaces, then the command; the command is shown as code."""
    prose, sep, command = line.partition("  pytest ")
    return (prose, "pytest " + command) if sep else (line, None)


def _meta_line(meta: dict[str, Any]) -> str:
    versions = f"pytest-gepa {meta.get('pytest_gepa') or '?'}"
    if meta.get("dspy"):
        versions += f", dspy {meta['dspy']}"
    return (f"mode {meta.get('mode', '?')}, exit status {meta.get('exitstatus', '?')}, "
            f"{versions}, written {meta.get('created', '?')}")


# -- Markdown --------------------------------------------------------------------------------

# Only what could start markup inside a line: emphasis, code, links, table cells, tags and entities.
_MD_SPECIAL = re.compile(r"[\\`*_\[\]|~]|<(?=[A-Za-z/!?])|&(?=[#A-Za-z])")


def _md_text(text: str) -> str:
    """Plain text in Markdown, on one line: characters that could start markup are backslash-escaped."""
    return _MD_SPECIAL.sub(lambda match: "\\" + match.group(), " ".join(text.split()))


def _md_code(text: str, *, in_table: bool) -> str:
    """An inline code span. In a table ``|`` is escaped even here: GitHub splits cells before reading spans."""
    text = " ".join(text.split())
    if in_table:
        text = text.replace("|", "\\|")
    fence = "`" * (_longest_run(text, "`") + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _longest_run(text: str, char: str) -> int:
    longest = run = 0
    for c in text:
        run = run + 1 if c == char else 0
        longest = max(longest, run)
    return longest


def render_markdown(reports: Sequence[TargetReport], *, meta: dict[str, Any]) -> str:
    lines = ["## pytest-gepa", "", _md_text(_meta_line(meta)), ""]
    lines.append("| " + " | ".join(HEADER) + " |")
    lines.append("|" + "|".join(("---", "---", "---:", "---", "---:", "---:", "---:", "---:", "---")) + "|")
    for report in reports:
        cells = _cells(report)
        status = _md_text(cells[-1])
        if report.status not in OK_STATUSES:
            status = f"**{status}**"
        row = (_md_code(cells[0], in_table=True), *(_md_text(cell) for cell in cells[1:-1]), status)
        lines.append("| " + " | ".join(row) + " |")
    summed = totals(reports)
    lines += ["", f"{summed['passed']} of {summed['targets']} targets passed; "
              f"LM calls are task/reflection/judge; total cost {_num(summed['cost_usd'], '${:.4f}')}."]
    regressed = [report for report in reports if report.status in REGRESSED_STATUSES]
    if regressed:
        lines += ["", "### Regressions"]
        for report in regressed:
            lines += ["", f"**{_md_code(_label(report), in_table=False)}** {_md_text(report.status)}"]
            if report.message:
                fence = "`" * max(3, _longest_run(report.message, "`") + 1)
                lines += ["", fence + "text", report.message, fence]
    steps = next_steps(reports)
    if steps:
        lines += ["", "### Next steps", ""]
        for step in steps:
            prose, command = _split_command(step)
            lines.append(f"- {_md_text(prose)}" + (f" {_md_code(command, in_table=False)}" if command else ""))
    return "\n".join(lines) + "\n"


# -- HTML ------------------------------------------------------------------------------------

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; margin: 0 auto;
       max-width: 1100px; padding: 16px 24px 48px; }
h1 { font-size: 22px; margin: 8px 0 4px; }
h2 { font-size: 17px; margin: 0 0 8px; word-break: break-all; }
h3 { font-size: 15px; margin: 20px 0 6px; }
h4 { font-size: 13px; margin: 12px 0 4px; font-family: ui-monospace, monospace; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
.meta { color: #59636e; margin: 0 0 16px; }
table { border-collapse: collapse; width: 100%; margin: 4px 0 8px; }
th, td { border: 1px solid #d1d9e0; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { width: 1%; text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; }
table.summary td:first-child { word-break: break-all; min-width: 14em; }
td.text { white-space: pre-wrap; word-break: break-word; }
section.target { border: 1px solid #d1d9e0; border-radius: 6px; padding: 14px 16px; margin: 18px 0; }
.status { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
          color: #fff; background: #59636e; vertical-align: middle; }
.status.ok { background: #1a7f37; }
.status.bad { background: #cf222e; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 8px 0; }
dl.facts dt { color: #59636e; }
dl.facts dd { margin: 0; }
pre.message { background: #fff8f7; border: 1px solid #ffcecb; padding: 8px; white-space: pre-wrap; }
.note { color: #59636e; font-style: italic; }
.diff { border: 1px solid #d1d9e0; border-radius: 4px; padding: 4px 0; margin: 0; white-space: pre-wrap;
        word-break: break-word; }
.diff .line { display: block; padding: 0 8px 0 24px; text-indent: -16px; text-decoration: none; }
.diff .line::before { display: inline-block; width: 16px; text-indent: 0; color: #59636e; }
.diff del.line { background: #ffebe9; }
.diff del.line::before { content: "-"; }
.diff ins.line { background: #dafbe1; }
.diff ins.line::before { content: "+"; }
.diff .same::before { content: " "; }
svg.trajectory { max-width: 100%; height: auto; background: #fff; }
svg.trajectory .grid { stroke: #eaeef2; }
svg.trajectory .axis { stroke: #59636e; }
svg.trajectory text { font: 11px system-ui, sans-serif; fill: #59636e; }
svg.trajectory .step { fill: none; stroke: #0969da; stroke-width: 2; }
svg.trajectory .point { fill: #fff; stroke: #0969da; stroke-width: 2; }
.bar { display: inline-block; height: 8px; background: #0969da; vertical-align: middle; margin-left: 6px; }
tr.error td { background: #fff8f7; }
"""

# Nothing may load or run: the page stays self-contained, and an injected tag would be inert anyway.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _status_class(status: str) -> str:
    if status in OK_STATUSES:
        return "status ok"
    return "status" if status == "pending" else "status bad"


def render_html(reports: Sequence[TargetReport], *, meta: dict[str, Any]) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(_CSP)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>pytest-gepa report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<header><h1>pytest-gepa report</h1>",
        f'<p class="meta">{_e(_meta_line(meta))}</p></header>',
        _html_summary(reports),
    ]
    steps = next_steps(reports)
    if steps:
        parts.append("<ul class=\"next\">")
        for step in steps:
            prose, command = _split_command(step)
            parts.append(f"<li>{_e(prose)}" + (f" <code>{_e(command)}</code>" if command else "") + "</li>")
        parts.append("</ul>")
    for index, report in enumerate(reports, 1):
        parts.append(_html_target(index, report))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _html_summary(reports: Sequence[TargetReport]) -> str:
    head = "".join(f"<th>{_e(name)}</th>" for name in HEADER)
    rows = [f'<div class="scroll"><table class="summary"><thead><tr>{head}</tr></thead><tbody>']
    for index, report in enumerate(reports, 1):
        cells = _cells(report)
        row = [f'<td><a href="#target-{index}"><code>{_e(cells[0])}</code></a></td>', f"<td>{_e(cells[1])}</td>"]
        row += [f'<td class="num">{_e(cell)}</td>' for cell in cells[2:-1]]
        row.append(f'<td><span class="{_status_class(report.status)}">{_e(report.status)}</span></td>')
        rows.append("<tr>" + "".join(row) + "</tr>")
    summed = totals(reports)
    rows.append("</tbody></table></div>")
    rows.append(f'<p class="note">{summed["passed"]} of {summed["targets"]} targets passed. LM calls are '
                f"task/reflection/judge. Total cost {_e(_num(summed['cost_usd'], '${:.4f}'))}.</p>")
    return "\n".join(rows)


def _html_target(index: int, report: TargetReport) -> str:
    score = _num(report.score)
    if report.ci is not None:
        score += f" (95% CI {report.ci[0]:.3f}-{report.ci[1]:.3f})"
    facts = [
        ("artifact", f"<code>{_e(report.artifact)}</code>"),
        ("mode", _e(report.mode)),
        ("devset score", _e(score)),
        ("min_score", _e(_num(report.min_score, "{:.2f}"))),
        ("max_drop", _e(_num(report.max_drop, "{:.2f}"))),
        ("recorded", _e(_num(report.recorded))),
        ("delta", _e(_num(report.delta, "{:+.3f}"))),
    ]
    if report.mode == "compile" or report.trajectory or report.metric_calls is not None:
        facts += [
            ("val baseline", _e(_num(report.baseline))),
            ("metric calls", _e("-" if report.metric_calls is None else report.metric_calls)),
            ("stop reason", _e(report.stop_reason or "-")),
        ]
    facts += [
        ("LM calls", _e(", ".join(f"{role} {report.lm_calls.get(role, 0)}" for role in ROLES))),
        ("tokens", _e(", ".join(f"{role} {report.tokens.get(role, 0)}" for role in ROLES))),
        ("cost", _e(_num(report.cost_usd, "${:.4f}"))),
    ]
    if report.judge_errors:
        facts.append(("judge errors", _e(report.judge_errors)))
    parts = [
        f'<section class="target" id="target-{index}">',
        f'<h2><span class="{_status_class(report.status)}">{_e(report.status)}</span> {_e(_label(report))}</h2>',
        '<dl class="facts">' + "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in facts) + "</dl>",
    ]
    if report.message:
        parts.append(f'<pre class="message">{_e(report.message)}</pre>')
    parts.append(_html_instructions(report))
    parts.append("<h3>Score trajectory</h3>")
    parts.append(trajectory_svg(report.trajectory, metric_calls=report.metric_calls))
    parts.append(_html_examples(report))
    parts.append("</section>")
    return "\n".join(parts)


def _html_instructions(report: TargetReport) -> str:
    if report.previous_instructions:
        old, caption = report.previous_instructions, (
            "Changes from the committed artifact (removed lines) to this run's program (added lines).")
    elif report.baseline_instructions:
        old, caption = report.baseline_instructions, (
            "No committed artifact to compare with: changes from the unoptimized program (removed lines) "
            "to the compiled program (added lines).")
    else:
        old, caption = {}, "Instructions of the program tested; there is nothing to compare them with."
    if not report.instructions and not old:
        return '<h3>Instructions</h3>\n<p class="note">No instructions were recorded for this target.</p>'
    parts = ["<h3>Instructions</h3>", f'<p class="note">{_e(caption)}</p>']
    names = list(report.instructions) + [name for name in old if name not in report.instructions]
    for name in names:
        before, after = old.get(name), report.instructions.get(name)
        if not old:
            note = ""
        elif before is None:
            note = " (new predictor)"
        elif after is None:
            note = " (predictor removed)"
        else:
            note = " (unchanged)" if before == after else ""
        parts.append(f"<h4>{_e(name)}{_e(note)}</h4>")
        parts.append(instruction_diff(before if old else after, after))
    return "\n".join(parts)


def instruction_diff(before: str | None, after: str | None) -> str:
    """A line diff as HTML: removed lines as ``<del>``, added lines as ``<ins>``, the rest as context."""
    old_lines = (before or "").splitlines() if before is not None else []
    new_lines = (after or "").splitlines() if after is not None else []
    out = ['<div class="diff">']
    matcher = difflib.SequenceMatcher(a=old_lines, b=new_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            out += [f'<span class="line same">{_e(line)}</span>' for line in old_lines[i1:i2]]
            continue
        out += [f'<del class="line removed">{_e(line)}</del>' for line in old_lines[i1:i2]]
        out += [f'<ins class="line added">{_e(line)}</ins>' for line in new_lines[j1:j2]]
    out.append("</div>")
    return "".join(out)


def trajectory_svg(trajectory: Sequence[tuple[int, float]], *, metric_calls: int | None = None) -> str:
    """The best validation score after each number of metric calls, as a step plot with a marker per point.

    ``metric_calls`` is where the run ended: the last best score holds until then.
    """
    if not trajectory:
        return '<p class="note">No score trajectory: this target was not optimized in this run.</p>'
    points = sorted((int(x), min(1.0, max(0.0, float(y)))) for x, y in trajectory)
    width, height, left, right, top, bottom = 640, 260, 56, 24, 16, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    x_max = max(points[-1][0], metric_calls or 0, 1)
    step = _tick_step(x_max)

    def sx(x: float) -> float:
        return left + plot_w * x / x_max

    def sy(y: float) -> float:
        return top + plot_h * (1 - y)

    svg = [f'<svg class="trajectory" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="best validation score by metric calls">']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = sy(tick)
        svg.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}"/>')
        svg.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:.2f}</text>')
    tick = 0
    while tick <= x_max:
        x = sx(tick)
        svg.append(f'<line class="axis" x1="{x:.1f}" y1="{top + plot_h}" x2="{x:.1f}" y2="{top + plot_h + 4}"/>')
        svg.append(f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{tick}</text>')
        tick += step
    svg.append(f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}"/>')
    svg.append(f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}"/>')
    svg.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle">metric calls</text>')
    svg.append(f'<text transform="translate(14 {top + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle">'
               "best validation score</text>")
    # The best score holds until the next improvement: a step, not a slope.
    path = f"M{sx(points[0][0]):.1f},{sy(points[0][1]):.1f}"
    for x, y in points[1:]:
        path += f" H{sx(x):.1f} V{sy(y):.1f}"
    path += f" H{sx(x_max):.1f}"
    svg.append(f'<path class="step" d="{path}"/>')
    for x, y in points:
        svg.append(f'<circle class="point" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5">'
                   f"<title>{x} metric calls: {y:.3f}</title></circle>")
    last_x, last_y = points[-1]
    anchor = "end" if sx(last_x) > left + plot_w - 40 else "start"
    offset = -6 if anchor == "end" else 6
    svg.append(f'<text x="{sx(last_x) + offset:.1f}" y="{sy(last_y) - 8:.1f}" text-anchor="{anchor}">'
               f"{last_y:.3f}</text>")
    svg.append("</svg>")
    return "".join(svg)


def _tick_step(span: int) -> int:
    """A round step (1, 2 or 5 times a power of ten) giving at most six ticks over ``span``."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            if span / (factor * magnitude) <= 6:
                return factor * magnitude
        magnitude *= 10


def _html_examples(report: TargetReport) -> str:
    rows = report.per_example
    if not rows:
        return '<h3>Examples</h3>\n<p class="note">No examples were scored for this target.</p>'
    errors = sum(1 for row in rows if row.get("error"))
    below = sum(1 for row in rows if isinstance(row.get("score"), (int, float)) and row["score"] < 1)
    out = ["<h3>Examples</h3>",
           f"<details open><summary>{len(rows)} scored, {below} below 1.0, {errors} with errors</summary>",
           '<table class="examples"><thead><tr><th>id</th><th>score</th><th>feedback</th><th>error</th></tr>'
           "</thead><tbody>"]
    for row in rows:
        score = row.get("score")
        if isinstance(score, (int, float)) and math.isfinite(score):
            bar = f'<span class="bar" style="width:{max(0.0, min(1.0, float(score))) * 60:.0f}px"></span>'
            score_cell = f"{float(score):.3f}{bar}"
        else:
            score_cell = "-"
        error = row.get("error")
        out.append(f'<tr class="{"error" if error else "ok"}"><td><code>{_e(row.get("id", ""))}</code></td>'
                   f'<td class="num">{score_cell}</td><td class="text">{_e(row.get("feedback") or "")}</td>'
                   f'<td class="text">{_e(error or "")}</td></tr>')
    out.append("</tbody></table></details>")
    return "\n".join(out)


_RENDERERS: dict[str, Callable[..., str]] = {".json": render_json, ".md": render_markdown, ".html": render_html}
