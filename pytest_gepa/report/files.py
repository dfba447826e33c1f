"""``--gepa-report PATH``: the run's gepa results as a file, chosen by suffix.

``.md``
    For a CI job summary (``cat report.md >> "$GITHUB_STEP_SUMMARY"``): a table of targets, each
    target's verdict (status, scored of total, samples, paired drop and interval, resolution), the
    regressed examples with their inputs, output and feedback, the failed targets' messages, and
    the command to run next.
``.html``
    One self-contained page (no scripts, no external assets; ``templates/report.html.j2``): per
    target the verdict, a line diff of every predictor's instructions (a gate: as compiled), the
    GEPA score trajectory (a gate: the artifact's compile run) and every example with its inputs,
    output and feedback, regressions first.
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
      status         how the target ended: passed, inconclusive (a threshold missed by less than
                     the evidence can tell; passes unless --gepa-strict), compiled, kept (a
                     candidate no better than the artifact), loaded (not gated), failed,
                     rejected (compile candidate refused), stale, missing, corrupt, lm error,
                     replay miss, optimizer error, error (the test failed otherwise),
                     pending (never finished)
      score          mean devset score this run, 0..1, or null when not scored
      ci             [low, high] interval of score at `confidence`, or null
      confidence     the confidence level of every interval, e.g. 0.95
      samples        times each devset example was scored; its score is their mean
      scored         devset examples that got a score, or null when not counted
      total          devset examples there were; total - scored were lost to LM errors
      lm_errors      [{"id", "error"}] the examples lost to LM errors, or []
      min_score      the min_score threshold, or null
      max_drop       the max_drop threshold, or null
      recorded       the score it was compared against (committed artifact), or null
      delta          score - recorded, or null
      drop           paired drop (recorded minus now, on the examples in both), or null
      drop_ci        [low, high] interval of drop at `confidence`, or null
      resolution     the smallest drop this devset can detect (recorded at compile), or null
      baseline       validation score of the unoptimized program (compile only), or null
      model          the task model of this row (one row per target and model), or null
      matrix_target  in a model matrix, the target without its model (the matrix view's row), or null
      transfer_from  --gepa-transfer: the model whose artifact was gated on this row's model, or null
      compile_flags  what the compile command needs besides the node id (a matrix's --gepa-task-lm), or ""
      lm_calls       LM calls of this target by role: {"task": n, "reflection": n, "judge": n}
      replayed       LM calls answered from the cassette (--gepa-replay), or null
      tokens         tokens (prompt + completion) of this target by role, same keys
      cost_usd       price of those tokens in US dollars, or null when a model's price is unknown
      judge_errors   LM-judge metric calls that failed for this target (0 when there is no judge)
      message        why the gate failed or the candidate was rejected, regressed examples
                     included; "" otherwise
      warnings       notes on the verdict (inconclusive, resolution finer than max_drop), or []
      stop_reason    why the GEPA run stopped (compile only), or null
      metric_calls   metric calls the GEPA run used (compile only), or null
      per_example    one per devset example: {"id", "score", "recorded" (its score in the
                     artifact), "feedback", "error", "inputs": {field: value}, "output":
                     {field: value}}; a key the run could not fill is absent
      instructions   {predictor: instruction text} of the program tested (candidate or artifact)
      previous_instructions  {predictor: text} of the committed artifact a compile replaces, or {}
      baseline_instructions  {predictor: text} of the unoptimized program (compile only), or {}
      trajectory     [[metric_calls, best validation score so far], ...] over the GEPA run (a
                     gate: the artifact's compile run)
      comparison     with --gepa-compare, one row per optimizer run on the same split:
                     {"optimizer", "val", "score", "ci", "lm_calls", "metric_calls", "kept"}; else []
    totals           the targets added up:
      targets        number of targets
      passed         targets that ended passed, inconclusive, compiled, kept or loaded
      failed         targets that ended in any other status except pending
      by_status      {status: number of targets}
      lm_calls       {"task", "reflection", "judge"}: LM calls summed over targets
      tokens         {"task", "reflection", "judge"}: tokens summed over targets
      cost_usd       summed cost, or null when any target that called an LM has an unknown cost

Each element of ``targets`` loads back with ``TargetReport.from_dict``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from pytest_gepa import _io
from pytest_gepa.errors import describe_error, one_line
from pytest_gepa.report import page
from pytest_gepa.report.model import (
    OK_STATUSES,
    REGRESSED_STATUSES,
    ROLES,
    TargetReport,
    example_kind,
    fields,
    label,
    lost_examples,
    model_matrix,
    num,
    ordered_examples,
    verdict_facts,
)
from pytest_gepa.report.terminal import CALLS_LEGEND, cells, header, next_steps, split_command

SCHEMA = "pytest-gepa-report/1"
MD_EXAMPLES = 10  # regressed examples per target in the job summary; the HTML and JSON hold them all
MD_TEXT = 80  # characters of an input, output or feedback in a Markdown cell


def write_report(path: Path, reports: Sequence[TargetReport], *, meta: dict[str, Any]) -> str | None:
    """Write the report in the format its suffix names, atomically (readers see the old file or the new one).

    Returns ``None`` when written, or, when the file cannot be written (``OSError``, a lock held
    too long), a one-line message naming the path, the error and the fix, for the plugin to show
    as a warning: a report that cannot be written must never lose the summary or change the exit
    status. An unknown suffix raises ``ValueError`` (settings reject it first, as a usage error).
    """
    render = _RENDERERS.get(path.suffix.lower())
    if render is None:
        raise ValueError(f"--gepa-report {str(path)!r}: expected a path ending in {', '.join(_RENDERERS)}")
    text = render(reports, meta=meta)
    try:
        _io.atomic_write(path, text)
    except OSError as error:
        return (f"--gepa-report: could not write {str(path)!r} ({describe_error(error)}); the summary above is "
                "complete; pass a path in a writable folder to keep the report.")
    return None


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


def _sum_roles(per_target: Iterable[dict[str, int]]) -> dict[str, int]:
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


# -- Markdown --------------------------------------------------------------------------------

# Only what could start markup inside a line: emphasis, code, links, table cells, tags and entities.
_MD_SPECIAL = re.compile(r"[\\`*_\[\]|~]|<(?=[A-Za-z/!?])|&(?=[#A-Za-z])")


def _md_text(text: str, limit: int | None = None) -> str:
    """Plain text in Markdown, on one line: characters that could start markup are backslash-escaped."""
    return _MD_SPECIAL.sub(lambda match: "\\" + match.group(), one_line(text, limit))


def _md_code(text: str, *, in_table: bool) -> str:
    """An inline code span. In a table ``|`` is escaped even here: GitHub splits cells before reading spans."""
    text = one_line(text)
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


def _md_fields(value: Any) -> str:
    return "; ".join(f"{name}: {text}" if name else text for name, text in fields(value))


def render_markdown(reports: Sequence[TargetReport], *, meta: dict[str, Any]) -> str:
    lines = ["## pytest-gepa", "", _md_text(page.meta_line(meta)), ""]
    lines.append("| " + " | ".join(header(reports)) + " |")
    lines.append("|" + "|".join(("---", "---", "---:", "---", "---:", "---:", "---:", "---:", "---")) + "|")
    for report in reports:
        row_cells = cells(report)
        status = _md_text(row_cells[-1])
        if report.status not in OK_STATUSES:
            status = f"**{status}**"
        row = (_md_code(row_cells[0], in_table=True), *(_md_text(cell) for cell in row_cells[1:-1]), status)
        lines.append("| " + " | ".join(row) + " |")
    summed = totals(reports)
    lines += ["", f"{summed['passed']} of {summed['targets']} targets passed; "
              f"{CALLS_LEGEND[:-1]}; total cost {num(summed['cost_usd'], '${:.4f}')}."]
    lines += _md_matrix(reports)
    lines += _md_verdicts(reports)
    lines += _md_regressed_examples(reports)
    regressed = [report for report in reports if report.status in REGRESSED_STATUSES]
    if regressed:
        lines += ["", "### Regressions"]
        for report in regressed:
            lines += ["", f"**{_md_code(label(report), in_table=False)}** {_md_text(report.status)}"]
            if report.message:
                fence = "`" * max(3, _longest_run(report.message, "`") + 1)
                lines += ["", fence + "text", report.message, fence]
    steps = next_steps(reports)
    if steps:
        lines += ["", "### Next steps", ""]
        for step in steps:
            prose, command = split_command(step)
            lines.append(f"- {_md_text(prose)}" + (f" {_md_code(command, in_table=False)}" if command else ""))
    return "\n".join(lines) + "\n"


def _md_matrix(reports: Sequence[TargetReport]) -> list[str]:
    """Targets as rows, task models as columns: each cell the score and status on that model."""
    models, rows = model_matrix(reports)
    if not rows:
        return []
    lines = ["", "### Model matrix", "", "| target | " + " | ".join(_md_code(m, in_table=True) for m in models) + " |",
             "|---|" + "---|" * len(models)]
    for target, row in rows:
        texts = ["-" if cell is None else _md_text(cell.text) for cell in row]
        lines.append(f"| {_md_code(target, in_table=True)} | " + " | ".join(texts) + " |")
    return lines


def _md_verdicts(reports: Sequence[TargetReport]) -> list[str]:
    """One line per target with its verdict in words, then its warnings and the examples it lost."""
    lines = ["", "### Verdicts", ""]
    for report in reports:
        facts = "; ".join(f"{name} {value}" for name, value in verdict_facts(report))
        lines.append(f"- {_md_code(label(report), in_table=False)}: {_md_text(facts)}")
        lines += [f"  - {_md_text(warning)}" for warning in report.warnings]
        for row in lost_examples(report)[:MD_EXAMPLES]:
            lines.append(f"  - not scored: {_md_code(row['id'], in_table=False)} {_md_text(row['error'], 200)}")
    return lines


def _md_regressed_examples(reports: Sequence[TargetReport]) -> list[str]:
    """Per target, the examples that scored below their recording: what went in, what came out, why."""
    lines: list[str] = []
    for report in reports:
        regressed = [row for row in ordered_examples(report.per_example) if example_kind(row) == "regressed"]
        if not regressed:
            continue
        if not lines:
            lines += ["", "### Regressed examples"]
        lines += ["", f"{_md_code(label(report), in_table=False)}: {len(regressed)} example(s) scored below "
                  "their recording", "", "| id | recorded → now | inputs | output | feedback |",
                  "|---|---:|---|---|---|"]
        for row in regressed[:MD_EXAMPLES]:
            lines.append("| " + " | ".join((
                _md_code(str(row.get("id", "")), in_table=True),
                f"{num(row['recorded'], '{:.2f}')} → {num(row['score'], '{:.2f}')}",
                _md_text(_md_fields(row.get("inputs")), MD_TEXT), _md_text(_md_fields(row.get("output")), MD_TEXT),
                _md_text(str(row.get("feedback") or row.get("error") or ""), MD_TEXT),
            )) + " |")
        if len(regressed) > MD_EXAMPLES:
            lines.append(f"\n... and {len(regressed) - MD_EXAMPLES} more in the JSON or HTML report.")
    return lines


# -- HTML ------------------------------------------------------------------------------------


def render_html(reports: Sequence[TargetReport], *, meta: dict[str, Any]) -> str:
    return page.render_html(reports, meta=meta, totals=totals(reports))


_RENDERERS: dict[str, Callable[..., str]] = {".json": render_json, ".md": render_markdown, ".html": render_html}
