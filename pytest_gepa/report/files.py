"""``--gepa-report PATH``: the run's gepa results as a file, chosen by suffix.

``.md``
    For a CI job summary and a pull-request comment (``markdown.py``; the plugin appends it to
    ``$GITHUB_STEP_SUMMARY`` itself when that is set): regressions first, each with its reason and,
    folded, its message and regressed examples (inputs, output, feedback); then other failures, a
    table of targets, the model matrix, the command to run next, and each target's verdict in
    words (status, scored of total, samples, paired drop and interval, resolution), folded. Cut
    block by block, with a note, to 65,536 characters.
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
      exitstatus     pytest's exit status (0 all passed, 1 tests failed, ...); of a merge, the
                     worst of its reports' (a report of no tests, 5, counts only when all are)
      merged_from    only in a report written by ``pytest-gepa merge``: one object per report
                     it read, {"path", "meta", "targets" (its number of targets)}, in the order
                     given; any other top-level key of that report is kept there too
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

Each element of ``targets`` loads back with ``TargetReport.from_dict``. The Markdown and HTML are
drawn from nothing but these fields, so ``pytest-gepa merge`` renders them again from JSON alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pytest_gepa import _io
from pytest_gepa.errors import describe_error
from pytest_gepa.report import page
from pytest_gepa.report.markdown import render_markdown
from pytest_gepa.report.model import TargetReport, totals

__all__ = ["SCHEMA", "render_html", "render_json", "render_markdown", "totals", "write_report"]

SCHEMA = "pytest-gepa-report/1"


def write_report(path: Path, reports: Sequence[TargetReport], *, meta: dict[str, Any],
                 raw_targets: Sequence[dict[str, Any]] | None = None) -> str | None:
    """Write the report in the format its suffix names, atomically (readers see the old file or the new one).

    Returns ``None`` when written, or, when the file cannot be written (``OSError``, a lock held
    too long), a one-line message naming the path, the error and the fix, for the plugin to show
    as a warning: a report that cannot be written must never lose the summary or change the exit
    status. An unknown suffix raises ``ValueError`` (settings reject it first, as a usage error).
    ``raw_targets`` (``pytest-gepa merge``): the JSON rows as read, one per report, so a field this
    version does not know survives into the merged JSON.
    """
    render = _RENDERERS.get(path.suffix.lower())
    if render is None:
        raise ValueError(f"--gepa-report {str(path)!r}: expected a path ending in {', '.join(_RENDERERS)}")
    text = render_json(reports, meta=meta, raw_targets=raw_targets) if render is render_json else render(
        reports, meta=meta)
    try:
        _io.atomic_write(path, text)
    except OSError as error:
        return (f"--gepa-report: could not write {str(path)!r} ({describe_error(error)}); the summary above is "
                "complete; pass a path in a writable folder to keep the report.")
    return None


# -- JSON ------------------------------------------------------------------------------------


def render_json(reports: Sequence[TargetReport], *, meta: dict[str, Any],
                raw_targets: Sequence[dict[str, Any]] | None = None) -> str:
    document = {
        "schema": SCHEMA,
        "meta": dict(meta),
        "targets": list(raw_targets) if raw_targets is not None else [report.to_dict() for report in reports],
        "totals": totals(reports),
    }
    return json.dumps(_finite(document), sort_keys=True, indent=2, ensure_ascii=False, default=str) + "\n"


def _finite(value: Any) -> Any:
    """NaN and infinities are not JSON; a consumer such as jq would reject the whole file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


# -- HTML ------------------------------------------------------------------------------------


def render_html(reports: Sequence[TargetReport], *, meta: dict[str, Any]) -> str:
    return page.render_html(reports, meta=meta, totals=totals(reports))


_RENDERERS: dict[str, Callable[..., str]] = {".json": render_json, ".md": render_markdown, ".html": render_html}
