"""The run's gepa results as data: one ``TargetReport`` per target, and what every view derives from it.

The terminal summary, the JSON, the Markdown and the HTML all read these rows; the wording that
more than one of them shows (a number, a target's label, the order of its examples, its verdict
facts) is decided here once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeGuard

ROLES = ("task", "reflection", "judge")

# How a target can end. Everything not OK (and not still pending) failed its test. An
# inconclusive verdict and a kept artifact pass (DESIGN.md, "Modes" and "Verdicts").
OK_STATUSES = ("passed", "compiled", "kept", "loaded", "inconclusive")
REGRESSED_STATUSES = ("failed", "rejected")
NEEDS_COMPILE_STATUSES = ("missing", "stale", "corrupt")


@dataclass
class TargetReport:
    """One target's row: what ran, what it scored against which thresholds, what it cost."""

    nodeid: str
    name: str
    mode: str
    artifact: str
    status: str = "pending"
    score: float | None = None
    ci: tuple[float, float] | None = None
    min_score: float | None = None
    max_drop: float | None = None
    recorded: float | None = None
    baseline: float | None = None
    lm_calls: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    cost_usd: float | None = None
    judge_errors: int = 0
    message: str = ""
    stop_reason: str | None = None
    metric_calls: int | None = None
    # {"id", "score", "recorded", "feedback", "error", "inputs": {...}, "output": {...}}; any key may be missing
    per_example: list[dict[str, Any]] = field(default_factory=list)
    instructions: dict[str, str] = field(default_factory=dict)  # the program tested (a gate: as compiled)
    previous_instructions: dict[str, str] = field(default_factory=dict)  # the committed artifact's
    baseline_instructions: dict[str, str] = field(default_factory=dict)  # the unoptimized program's
    trajectory: list[tuple[int, float]] = field(default_factory=list)  # a gate: the artifact's compile run
    comparison: list[dict[str, Any]] = field(default_factory=list)  # --gepa-compare: one row per optimizer
    # The statistical verdict (DESIGN.md, "Verdicts"); status may also be "inconclusive".
    samples: int = 1  # draws per devset example; each example's score is their mean
    confidence: float = 0.95
    drop: float | None = None  # paired drop: recorded minus now, on the examples present in both
    drop_ci: tuple[float, float] | None = None  # the paired drop's interval at `confidence`
    resolution: float | None = None  # the smallest drop this devset can detect (recorded at compile)
    scored: int | None = None  # devset examples scored ...
    total: int | None = None  # ... of this many ("scored 58 of 60": the rest lost to LM errors)
    lm_errors: list[dict[str, str]] = field(default_factory=list)  # [{"id", "error"}] of the unscored
    replayed: int | None = None  # LM calls answered from the cassette (under --gepa-replay)
    model: str | None = None  # the task model this row gated (one row per target and model)
    matrix_target: str | None = None  # in a model matrix: the target without its model (the matrix row)
    transfer_from: str | None = None  # --gepa-transfer: the model whose artifact was gated on this one
    compile_flags: str = ""  # what the compile command needs besides the node id (a matrix's models)
    warnings: list[str] = field(default_factory=list)  # inconclusive verdicts, resolution notes

    @property
    def delta(self) -> float | None:
        if self.score is None or self.recorded is None:
            return None
        return self.score - self.recorded

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["delta"] = self.delta
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TargetReport:
        data = dict(data)
        data.pop("delta", None)
        for key in ("ci", "drop_ci"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        data["trajectory"] = [tuple(point) for point in data.get("trajectory", [])]
        return cls(**data)


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


def report_order(report: TargetReport) -> tuple[str, str, str, str]:
    """The order of rows in every view: by node id, a matrix target's models next to each other by
    model name; the same with or without xdist, and for a merge of shards as for one run."""
    return (report.matrix_target or report.nodeid, report.model or "", report.nodeid, report.name)


# -- wording every view shares ------------------------------------------------------------------


def num(value: float | None, fmt: str = "{:.3f}") -> str:
    """A number as the reports show it; ``-`` for none (and for NaN, which no reader can use)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return fmt.format(value)


def label_of(nodeid: str, name: str) -> str:
    """The node id, with the target's name when the node id does not already say it."""
    return nodeid if name in nodeid else f"{nodeid} [{name}]"


def label(report: TargetReport) -> str:
    """The node id, with the target's name when the node id does not already say it."""
    return label_of(report.nodeid, report.name)


def percent(confidence: float) -> str:
    return f"{confidence * 100:g}%"


def interval(bounds: tuple[float, float] | None, fmt: str = "{:.2f}") -> str:
    return "" if bounds is None else f"[{fmt.format(bounds[0])}, {fmt.format(bounds[1])}]"


def scored_text(report: TargetReport) -> str:
    """``scored 58 of 60`` when examples were lost to LM errors; ``""`` when all were scored."""
    if report.scored is None or report.total is None or report.scored >= report.total:
        return ""
    return f"scored {report.scored} of {report.total}"


def drop_text(report: TargetReport) -> str:
    """The paired drop with its interval, ``+0.030 [-0.010, +0.070]``; ``""`` without a recording."""
    if report.drop is None:
        return ""
    bounds = interval(report.drop_ci, "{:+.3f}")
    return f"{report.drop:+.3f}" + (f" {bounds}" if bounds else "")


def task_lm_never_answered(report: TargetReport) -> bool:
    """The task LM was called and failed every time: its call count is attempts, not answers.

    Decided by ``scored == 0`` (or scored rows, when ``scored`` was not counted); with neither, an
    LM error may still have left most examples scored, so this never guesses yes.
    """
    if report.status != "lm error":
        return False
    if report.scored is not None:
        return report.scored == 0
    return bool(report.per_example) and not any(is_number(row.get("score")) for row in report.per_example)


def lost_examples(report: TargetReport) -> list[dict[str, str]]:
    """The examples no score was given for, with the error that lost them."""
    if report.lm_errors:
        return [{"id": str(row.get("id", "?")), "error": str(row.get("error", ""))} for row in report.lm_errors]
    return [{"id": str(row.get("id", "?")), "error": str(row["error"])}
            for row in report.per_example if row.get("error") and not is_number(row.get("score"))]


def verdict_facts(report: TargetReport) -> list[tuple[str, str]]:
    """The statistical verdict in words, for the Markdown and HTML reports: only what is known."""
    facts = [("status", report.status)]
    if report.model:
        facts.append(("model", report.model))
    score = num(report.score)
    if report.ci is not None:
        score += f" ({percent(report.confidence)} CI {report.ci[0]:.3f} to {report.ci[1]:.3f})"
    facts.append(("score", score))
    if report.total is not None:
        facts.append(("scored", f"{report.scored if report.scored is not None else '?'} of {report.total}"))
    facts.append(("samples", f"{report.samples} per example"))
    if report.drop is not None:
        drop = f"{report.drop:+.3f}"
        if report.drop_ci is not None:
            drop += f" ({percent(report.confidence)} CI {report.drop_ci[0]:+.3f} to {report.drop_ci[1]:+.3f})"
        facts.append(("paired drop", drop))
    if report.resolution is not None:
        facts.append(("resolution", f"{report.resolution:.3f} (smallest drop this devset can detect)"))
    if report.replayed is not None:
        facts.append(("replayed", f"{report.replayed} LM calls from the cassette"))
    return facts


@dataclass(frozen=True)
class MatrixCell:
    """One target on one model: its score and status, and its row (1-based) in the summary table."""

    score: str
    status: str
    index: int
    transfer_from: str | None = None

    @property
    def text(self) -> str:
        """``1.000 passed``; a transferred artifact says whose: ``0.800 failed (from openai/a)``."""
        return f"{self.score} {self.status}" + (f" (from {self.transfer_from})" if self.transfer_from else "")


def model_matrix(reports: Sequence[TargetReport]) -> tuple[list[str], list[tuple[str, list[MatrixCell | None]]]]:
    """The model-matrix view: targets as rows (in report order), task models as columns (by name), a
    cell per target and model; empty when no target ran in a matrix."""
    models: list[str] = []
    rows: dict[str, dict[str, MatrixCell]] = {}
    for index, report in enumerate(reports, 1):
        if report.matrix_target is None:
            continue
        model = report.model or "?"
        if model not in models:
            models.append(model)
        rows.setdefault(report.matrix_target, {})[model] = MatrixCell(num(report.score), report.status, index,
                                                                      report.transfer_from)
    models.sort()
    return models, [(target, [cells.get(model) for model in models]) for target, cells in rows.items()]


# -- examples ------------------------------------------------------------------------------------


def is_number(value: Any) -> TypeGuard[float]:
    """A score a reader can use: a finite int or float, not a bool, None or NaN."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def example_kind(row: dict[str, Any]) -> str:
    """``regressed`` (scored below its recording), ``error``, or ``ok``."""
    score, recorded = row.get("score"), row.get("recorded")
    if is_number(score) and is_number(recorded) and score < recorded:
        return "regressed"
    return "error" if row.get("error") else "ok"


def ordered_examples(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Regressions first (the largest fall first), then errors, then the rest in their own order."""
    rank = {"regressed": 0, "error": 1, "ok": 2}

    def key(row: dict[str, Any]) -> tuple[int, float]:
        kind = example_kind(row)
        return rank[kind], (row["score"] - row["recorded"]) if kind == "regressed" else 0.0

    return sorted(rows, key=key)


def field_text(value: Any) -> str:
    """One input or output value as text: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(value)


def fields(value: Any) -> list[tuple[str, str]]:
    """An example's ``inputs`` or ``output`` as (field, text) pairs; a bare value has the field ``""``.

    By field name, as the JSON report stores them (sorted keys), so a view drawn from the JSON (a
    merge) reads exactly as the run's own.
    """
    if value is None:
        return []
    if isinstance(value, dict):
        return [(str(name), field_text(value[name])) for name in sorted(value, key=str)]
    return [("", field_text(value))]
