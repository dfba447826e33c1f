"""The Markdown report: what a CI job summary and a pull-request comment show.

Regressions come first, so they are what survives when the text is cut; long material (a failed
gate's message, its examples, every target's verdict) is folded in ``<details>``. The whole is cut
to ``limit`` characters (GitHub shows at most 65,536 in a comment and 1 MiB per step summary),
block by block, never inside a table row or a fold, with a note saying what was left out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pytest_gepa.errors import one_line
from pytest_gepa.report import page
from pytest_gepa.report.model import (
    OK_STATUSES,
    REGRESSED_STATUSES,
    TargetReport,
    example_kind,
    fields,
    label,
    lost_examples,
    model_matrix,
    num,
    ordered_examples,
    totals,
    verdict_facts,
)
from pytest_gepa.report.terminal import CALLS_LEGEND, cells, header, next_steps, split_command

COMMENT_LIMIT = 65536  # characters GitHub keeps in a pull-request comment (a step summary holds 1 MiB)
MD_EXAMPLES = 10  # regressed examples per target in the job summary; the HTML and JSON hold them all
MD_TEXT = 80  # characters of an input, output or feedback in a Markdown cell
MD_MESSAGE = 4000  # characters of one failed target's message
CUT_NOTE = ("\n**Cut to fit:** this summary stops at {limit:,} characters ({left} more block(s) left out) so that "
            "it fits a GitHub job summary and a pull-request comment; the JSON and HTML reports hold everything "
            "(`pytest-gepa merge REPORT.json --output report.html`).\n")

# Only what could start markup inside a line: emphasis, code, links, table cells, tags and entities.
_MD_SPECIAL = re.compile(r"[\\`*_\[\]|~]|<(?=[A-Za-z/!?])|&(?=[#A-Za-z])")


def md_text(text: str, limit: int | None = None) -> str:
    """Plain text in Markdown, on one line: characters that could start markup are backslash-escaped."""
    return _MD_SPECIAL.sub(lambda match: "\\" + match.group(), one_line(text, limit))


def md_code(text: str, *, in_table: bool) -> str:
    """An inline code span. In a table ``|`` is escaped even here: GitHub splits cells before reading spans."""
    text = one_line(text)
    if in_table:
        text = text.replace("|", "\\|")
    fence = "`" * (_longest_run(text, "`") + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_fence(text: str, info: str = "text") -> list[str]:
    """``text`` verbatim in a fenced block longer than any run of backticks inside it."""
    fence = "`" * max(3, _longest_run(text, "`") + 1)
    return [fence + info, text, fence]


def _longest_run(text: str, char: str) -> int:
    longest = run = 0
    for c in text:
        run = run + 1 if c == char else 0
        longest = max(longest, run)
    return longest


def fit(blocks: Sequence[str], limit: int) -> str:
    """The blocks in order while they fit in ``limit`` characters, then a note on what was cut."""
    out: list[str] = []
    used = 0
    reserve = len(CUT_NOTE) + 20
    for index, block in enumerate(blocks):
        last = index == len(blocks) - 1
        if used + len(block) + (0 if last else reserve) > limit:
            out.append(CUT_NOTE.format(limit=limit, left=len(blocks) - index))
            break
        out.append(block)
        used += len(block)
    return "".join(out)


def render_markdown(reports: Sequence[TargetReport], *, meta: dict[str, Any], limit: int = COMMENT_LIMIT) -> str:
    """The summary: counts, regressions, other failures, the table, the matrix, next steps, folded verdicts."""
    summed = totals(reports)
    blocks = ["## pytest-gepa\n\n" + md_text(page.meta_line(meta)) + "\n\n"
              f"**{summed['passed']} of {summed['targets']} targets passed**; {CALLS_LEGEND[:-1]}; "
              f"total cost {num(summed['cost_usd'], '${:.4f}')}.\n"]
    blocks += _failures(reports)
    blocks += _table(reports)
    blocks += _matrix(reports)
    steps = next_steps(reports)
    if steps:
        blocks.append("\n### Next steps\n\n")
        for step in steps:
            prose, command = split_command(step)
            blocks.append(f"- {md_text(prose)}" + (f" {md_code(command, in_table=False)}" if command else "") + "\n")
    blocks.append(_verdicts(reports))
    others = _below_recording(reports, [r for r in reports if r.status not in REGRESSED_STATUSES])
    if others:
        blocks.append(_fold("Examples that scored below their recording in targets that passed", others))
    return fit(blocks, limit)


def _fold(summary: str, lines: Sequence[str]) -> str:
    """A ``<details>`` block: the blank lines around its body let GitHub render Markdown inside it."""
    return f"\n<details><summary>{md_text(summary)}</summary>\n\n" + "\n".join(lines) + "\n\n</details>\n"


def _failures(reports: Sequence[TargetReport]) -> list[str]:
    """Regressed targets first, then every other failure (stale, missing, LM error ...), each with its
    reason on one line and the whole message and its regressed examples folded."""
    blocks: list[str] = []
    regressed = [r for r in reports if r.status in REGRESSED_STATUSES]
    failed = [r for r in reports if r.status not in (*OK_STATUSES, *REGRESSED_STATUSES, "pending")]
    for title, group in (("Regressions", regressed), ("Other failures", failed)):
        if not group:
            continue
        blocks.append(f"\n### {title}\n")
        for report in group:
            reason = report.message.splitlines()[0] if report.message else ""
            head = f"\n**{md_code(label(report), in_table=False)}** {md_text(report.status)}"
            head += f": {md_text(reason, 300)}\n" if reason else "\n"
            body: list[str] = []
            if report.message:
                message = report.message if len(report.message) <= MD_MESSAGE else (
                    report.message[:MD_MESSAGE] + "\n... (cut; the JSON and HTML reports hold the whole message)")
                body += md_fence(message)
            body += _examples_table(report)
            what = "message" + (" and regressed examples" if len(body) > 3 else "")
            blocks.append(head + (_fold(f"The whole {what}", body) if body else ""))
    return blocks


def _regressed(report: TargetReport) -> list[dict[str, Any]]:
    return [row for row in ordered_examples(report.per_example) if example_kind(row) == "regressed"]


def _examples_table(report: TargetReport) -> list[str]:
    """The examples that scored below their recording: what went in, what came out, why."""
    regressed = _regressed(report)
    if not regressed:
        return []
    lines = ["", f"{len(regressed)} example(s) scored below their recording:", "",
             "| id | recorded → now | inputs | output | feedback |", "|---|---:|---|---|---|"]
    for row in regressed[:MD_EXAMPLES]:
        lines.append("| " + " | ".join((
            md_code(str(row.get("id", "")), in_table=True),
            f"{num(row['recorded'], '{:.2f}')} → {num(row['score'], '{:.2f}')}",
            md_text(_fields_text(row.get("inputs")), MD_TEXT), md_text(_fields_text(row.get("output")), MD_TEXT),
            md_text(str(row.get("feedback") or row.get("error") or ""), MD_TEXT),
        )) + " |")
    if len(regressed) > MD_EXAMPLES:
        lines.append(f"\n... and {len(regressed) - MD_EXAMPLES} more in the JSON or HTML report.")
    return lines


def _below_recording(reports: Sequence[TargetReport], group: Sequence[TargetReport]) -> list[str]:
    lines: list[str] = []
    for report in group:
        table = _examples_table(report)
        if table:
            lines += ["", md_code(label(report), in_table=False) + ":", *table]
    return lines


def _fields_text(value: Any) -> str:
    return "; ".join(f"{name}: {text}" if name else text for name, text in fields(value))


def _table(reports: Sequence[TargetReport]) -> list[str]:
    """The summary table, one block per row so a cut never breaks a row."""
    blocks = ["\n### Targets\n\n| " + " | ".join(header(reports)) + " |\n"
              "|" + "|".join(("---", "---", "---:", "---", "---:", "---:", "---:", "---:", "---")) + "|\n"]
    for report in reports:
        row_cells = cells(report)
        status = md_text(row_cells[-1])
        if report.status not in OK_STATUSES:
            status = f"**{status}**"
        row = (md_code(row_cells[0], in_table=True), *(md_text(cell) for cell in row_cells[1:-1]), status)
        blocks.append("| " + " | ".join(row) + " |\n")
    return blocks


def _matrix(reports: Sequence[TargetReport]) -> list[str]:
    """Targets as rows, task models as columns: each cell the score and status on that model."""
    models, rows = model_matrix(reports)
    if not rows:
        return []
    blocks = ["\n### Model matrix\n\n| target | " + " | ".join(md_code(m, in_table=True) for m in models) + " |\n"
              "|---|" + "---|" * len(models) + "\n"]
    for target, row in rows:
        texts = ["-" if cell is None else md_text(cell.text) for cell in row]
        blocks.append(f"| {md_code(target, in_table=True)} | " + " | ".join(texts) + " |\n")
    return blocks


def _verdicts(reports: Sequence[TargetReport]) -> str:
    """One line per target with its verdict in words, then its warnings and the examples it lost."""
    lines = []
    for report in reports:
        facts = "; ".join(f"{name} {value}" for name, value in verdict_facts(report))
        lines.append(f"- {md_code(label(report), in_table=False)}: {md_text(facts)}")
        lines += [f"  - {md_text(warning)}" for warning in report.warnings]
        for row in lost_examples(report)[:MD_EXAMPLES]:
            lines.append(f"  - not scored: {md_code(row['id'], in_table=False)} {md_text(row['error'], 200)}")
    return "\n### Verdicts\n" + _fold(f"The verdict of each of the {len(reports)} target(s) in words", lines)
