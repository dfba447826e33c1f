"""``pytest-gepa merge``: the JSON reports of several runs (CI shards, one job per model) as one.

The merge is generic over the report's fields: each target row is kept as it was read, so a field
added by a later pytest-gepa within the same schema survives into the merged JSON; the Markdown and
HTML are drawn again from the rows, in the order of one run of the whole suite (``report_order``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_gepa.report.model import TargetReport, label_of, report_order

SCHEMA = "pytest-gepa-report/1"  # the one schema this version reads (files.SCHEMA writes it)
KNOWN = ("schema", "meta", "targets", "totals")
NO_TESTS = 5  # pytest's exit status when a run collected no tests


class ReportInputError(ValueError):
    """A report that cannot be merged: the message names the file, the value and the fix."""


@dataclass(frozen=True)
class ReadReport:
    """One report file as read: its document, and its target rows with the rows they load into."""

    path: str
    document: dict[str, Any]
    rows: list[tuple[dict[str, Any], TargetReport]]


@dataclass(frozen=True)
class MergedReport:
    reports: list[TargetReport]  # in report_order
    raw_targets: list[dict[str, Any]]  # the same rows as read, same order
    meta: dict[str, Any]


def read_report(path: Path) -> ReadReport:
    """Read and check one ``--gepa-report x.json`` file; every problem is a ``ReportInputError``."""
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportInputError(f"{where!r}: no such file; pass the JSON reports the runs wrote with "
                               "`pytest --gepa-report PATH.json`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportInputError(f"{where!r}: cannot be read ({type(exc).__name__}: {exc})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = (" (a Markdown or HTML report? merge reads the JSON ones: `--gepa-report report.json`)"
                if path.suffix.lower() in (".md", ".html") else "; the file is truncated or not a report")
        raise ReportInputError(f"{where!r}: not valid JSON at line {exc.lineno}, column {exc.colno} "
                               f"({exc.msg}){hint}") from None
    if not isinstance(document, dict) or "schema" not in document:
        found = "an artifact" if isinstance(document, dict) and "schema_version" in document else "not a report"
        raise ReportInputError(f"{where!r}: {found}, no 'schema' key; merge reads the JSON files written by "
                               "`pytest --gepa-report PATH.json`" + ("; compare artifacts with `pytest-gepa diff`"
                                                                     if found == "an artifact" else ""))
    schema = document.get("schema")
    if schema != SCHEMA:
        raise ReportInputError(f"{where!r}: report format {schema!r}, this pytest-gepa reads {SCHEMA!r}; merge "
                               "reports written by the same pytest-gepa version (upgrade or pin it in every job)")
    targets = document.get("targets")
    if not isinstance(targets, list) or not all(isinstance(row, dict) for row in targets):
        raise ReportInputError(f"{where!r}: 'targets' must be a list of objects, found {type(targets).__name__}")
    if not isinstance(document.get("meta", {}), dict):
        raise ReportInputError(f"{where!r}: 'meta' must be an object")
    rows = []
    for index, row in enumerate(targets):
        try:
            rows.append((row, _load_row(row)))
        except (TypeError, ValueError) as exc:
            raise ReportInputError(f"{where!r}: targets[{index}] ({row.get('nodeid', '?')!r}) is not a target "
                                   f"row ({exc}); was the file edited by hand?") from None
    return ReadReport(where, document, rows)


_FIELDS = frozenset(field.name for field in dataclasses.fields(TargetReport))


def _load_row(row: dict[str, Any]) -> TargetReport:
    """A row as a TargetReport for rendering; fields this version does not know stay in the raw row."""
    missing = [name for name in ("nodeid", "name", "mode", "artifact") if name not in row]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    return TargetReport.from_dict({key: value for key, value in row.items() if key in _FIELDS})


def merge(read: Sequence[ReadReport], *, created: str, version: str) -> MergedReport:
    """One report of every row; the same target and model in two reports is an error naming both."""
    owner: dict[tuple[str, str, str], str] = {}
    rows: list[tuple[dict[str, Any], TargetReport]] = []
    for report in read:
        for raw, target in report.rows:
            key = (target.nodeid, target.name, target.model or "")
            if key in owner:
                on = f" on model {target.model!r}" if target.model else ""
                where = (f"twice in {report.path!r}" if owner[key] == report.path
                         else f"in both {owner[key]!r} and {report.path!r}")
                raise ReportInputError(f"target {label_of(target.nodeid, target.name)!r}{on} is {where}; each "
                                       "report must come from a different part of the suite (check the jobs' "
                                       "-k, test paths or --gepa-task-lm) or merge only one of them")
            owner[key] = report.path
            rows.append((raw, target))
    rows.sort(key=lambda pair: report_order(pair[1]))
    metas = [report.document.get("meta", {}) for report in read]
    meta = {
        "mode": _shared(metas, "mode"),
        "created": created,
        "pytest_gepa": _shared(metas, "pytest_gepa", default=version),
        "dspy": _shared(metas, "dspy"),
        "exitstatus": worst_exit_status([m.get("exitstatus") for m in metas]),
        "merged_from": [{**{k: v for k, v in report.document.items() if k not in KNOWN},
                         "path": report.path, "meta": report.document.get("meta", {}),
                         "targets": len(report.rows)} for report in read],
    }
    return MergedReport([target for _, target in rows], [raw for raw, _ in rows], meta)


def _shared(metas: Sequence[dict[str, Any]], key: str, default: Any = None) -> Any:
    """The value every report agrees on; several are listed, sorted, comma-separated."""
    values = sorted({str(m[key]) for m in metas if m.get(key) is not None})
    if not values:
        return default
    return values[0] if len(values) == 1 else ", ".join(values)


def worst_exit_status(statuses: Sequence[Any]) -> int | None:
    """What one run of the whole would have ended with: the worst status, where a shard that
    collected no tests (5) counts only when every shard did."""
    known = [int(status) for status in statuses if isinstance(status, int) and not isinstance(status, bool)]
    if not known:
        return None
    ran = [status for status in known if status != NO_TESTS]
    return max(ran) if ran else NO_TESTS
