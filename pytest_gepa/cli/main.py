"""``pytest-gepa merge`` and ``pytest-gepa diff``: one verdict from many CI jobs, and a prompt diff a
reviewer reads. Exit codes follow pytest's: 0 fine, 1 a failed verdict in what was read, 4 a usage
error (bad arguments, a file that is missing, not a report or artifact, or of another format).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

OK, FAILED, USAGE = 0, 1, 4
SUFFIXES = (".json", ".md", ".html")


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error; pytest-gepa, like pytest, says 4."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pytest-gepa", description=(
        "pytest-gepa's command line: merge the --gepa-report JSON files of several CI jobs into one "
        "report, and show what changed between two versions of an artifact. Exit status: 0 fine, 1 a "
        "failed verdict in what was read, 4 a usage error."))
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    merge = commands.add_parser("merge", help="merge JSON reports of several runs into one report", description=(
        "Merge the JSON reports of several runs (CI shards, one job per model; written by "
        "`pytest --gepa-report x.json`) into one report, in every format named by an --output suffix "
        "(.json, .md, .html). Rows keep their target and model, in the order of one run of the whole "
        "suite; the same target and model in two reports is an error. Prints the summary table; where "
        "GITHUB_STEP_SUMMARY is set, appends the Markdown summary to it. Exits 1 when a target failed."))
    merge.add_argument("reports", nargs="+", metavar="REPORT.json", type=Path, help="JSON reports to merge")
    merge.add_argument("--output", "-o", action="append", required=True, metavar="PATH", type=Path,
                       help="write the merged report here (.json, .md or .html); repeat for several formats")
    diff = commands.add_parser("diff", help="what changed between two versions of an artifact", description=(
        "Compare two versions of an artifact (gepa_artifacts/.../<name>.json): each predictor's instruction "
        "as a word diff, the scores and intervals before and after, the examples whose score changed and "
        "the provenance that changed. With one path, the old version is the one in git's HEAD."))
    diff.add_argument("paths", nargs="+", metavar="ARTIFACT.json", type=Path,
                      help="OLD.json NEW.json, or one PATH to compare with its version in git's HEAD")
    diff.add_argument("--format", choices=("text", "markdown"), default="text",
                      help="text for a terminal (default), markdown for a job summary or a review comment")
    diff.add_argument("--report", type=Path, metavar="REPORT.json",
                      help="a --gepa-report JSON of the run that compiled NEW: the changed examples' inputs "
                      "and outputs come from it (the artifact stores only example ids)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "merge":
            return _merge(args.reports, args.output)
        return _diff(args.paths, fmt=args.format, report=args.report)
    except ValueError as exc:  # the input errors of both commands: a sentence naming the file
        print(f"pytest-gepa {args.command}: error: {exc}", file=sys.stderr)
        return USAGE


def _merge(paths: Sequence[Path], outputs: Sequence[Path]) -> int:
    from pytest_gepa import __version__
    from pytest_gepa.report import merge, summary
    from pytest_gepa.report.files import write_report
    from pytest_gepa.report.model import OK_STATUSES
    from pytest_gepa.report.terminal import summary_lines

    for output in outputs:
        if output.suffix.lower() not in SUFFIXES:
            raise ValueError(f"--output {str(output)!r}: expected a path ending in {', '.join(SUFFIXES)}")
        if output.resolve() in {path.resolve() for path in paths}:
            raise ValueError(f"--output {str(output)!r} is also a report to merge; write the merge elsewhere")
    read = [merge.read_report(path) for path in paths]
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    merged = merge.merge(read, created=created, version=__version__)
    for line in summary_lines(merged.reports):
        print(line)
    for report in read:
        status = report.document.get("meta", {}).get("exitstatus")
        if status not in (0, 1, merge.NO_TESTS, None):
            print(f"note: {report.path!r} comes from a run that ended with exit status {status!r} (interrupted "
                  "or broken?); its targets may be incomplete")
    for output in outputs:
        problem = write_report(output, merged.reports, meta=merged.meta, raw_targets=merged.raw_targets)
        if problem:
            raise ValueError(problem.replace("--gepa-report", "--output", 1))
        print(f"wrote {output}")
    step_summary = summary.step_summary_path()
    if step_summary is not None:
        problem = summary.append_job_summary(step_summary, merged.reports, meta=merged.meta, with_diffs=False)
        if problem:
            print(f"note: {problem}", file=sys.stderr)
    return OK if all(report.status in OK_STATUSES for report in merged.reports) else FAILED


def _diff(paths: Sequence[Path], *, fmt: str, report: Path | None) -> int:
    from pytest_gepa.report import artifact_diff

    if len(paths) > 2:
        raise ValueError(f"expected OLD.json NEW.json or one PATH, got {len(paths)} paths")
    new_path = paths[-1]
    new = artifact_diff.read_artifact(new_path)
    if len(paths) == 2:
        old, old_label = artifact_diff.read_artifact(paths[0]), str(paths[0])
    else:
        if not new_path.is_file():
            raise ValueError(f"{str(new_path)!r}: no such file")
        old_label = f"HEAD:{new_path}"
        old = artifact_diff.parse_artifact(artifact_diff.committed_text(new_path), old_label)
    examples = _report_examples(report, new) if report is not None else None
    diff = artifact_diff.compare(old, new, old_label=old_label, new_label=str(new_path), examples=examples)
    render = artifact_diff.render_markdown if fmt == "markdown" else artifact_diff.render_text
    sys.stdout.write(render(diff))
    return OK


def _report_examples(path: Path, artifact: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The report rows of the artifact's target, by example id; a report without it is an error."""
    from pytest_gepa.report import merge

    read = merge.read_report(path)
    for _, target in read.rows:
        if target.nodeid == artifact.get("target") and target.name == artifact.get("name"):
            return {str(row["id"]): row for row in target.per_example if "id" in row}
    raise ValueError(f"--report {str(path)!r} has no row for target {artifact.get('target')!r} "
                     f"[{artifact.get('name')!r}]; pass the report of the run that compiled this artifact")
