"""The run's gepa results: data first (one ``TargetReport`` per target), terminal lines second."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


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
    per_example: list[dict[str, Any]] = field(default_factory=list)
    instructions: dict[str, str] = field(default_factory=dict)
    previous_instructions: dict[str, str] = field(default_factory=dict)  # the committed artifact's
    baseline_instructions: dict[str, str] = field(default_factory=dict)  # the unoptimized program's
    trajectory: list[tuple[int, float]] = field(default_factory=list)
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
    warnings: list[str] = field(default_factory=list)  # inconclusive verdicts, resolution notes
    # per_example rows: {"id", "score", "recorded", "feedback", "error", "inputs": {...}, "output": {...}}

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
        if data.get("ci") is not None:
            data["ci"] = tuple(data["ci"])
        if data.get("drop_ci") is not None:
            data["drop_ci"] = tuple(data["drop_ci"])
        data["trajectory"] = [tuple(point) for point in data.get("trajectory", [])]
        return cls(**data)


# How a target can end. Everything not OK (and not still pending) failed its test.
OK_STATUSES = ("passed", "compiled", "kept", "loaded", "inconclusive")
REGRESSED_STATUSES = ("failed", "rejected")
NEEDS_COMPILE_STATUSES = ("missing", "stale", "corrupt")


def _num(value: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if value is None else fmt.format(value)


def summary_lines(reports: Sequence[TargetReport]) -> list[str]:
    """The terminal summary: a table of targets, then the command to run next."""
    header = ("target", "mode", "score (95% CI)", "threshold", "recorded", "delta", "LM calls", "cost", "status")
    rows = []
    for r in reports:
        ci = f" ({r.ci[0]:.2f}-{r.ci[1]:.2f})" if r.ci else ""
        threshold = " ".join(
            part for part in (
                f">={r.min_score:.2f}" if r.min_score is not None else "",
                f"drop<={r.max_drop:.2f}" if r.max_drop is not None and r.recorded is not None else "",
            ) if part
        ) or "-"
        calls = "/".join(str(r.lm_calls.get(role, 0)) for role in ("task", "reflection", "judge"))
        rows.append((r.nodeid if r.name in r.nodeid else f"{r.nodeid} [{r.name}]", r.mode,
                     _num(r.score) + ci, threshold, _num(r.recorded),
                     _num(r.delta, "{:+.3f}"), calls, _num(r.cost_usd, "${:.4f}"), r.status))
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in (header, *rows)]
    lines.append("LM calls are task/reflection/judge.")
    lines.extend(comparison_lines(reports))
    lines.extend(next_steps(reports))
    return lines


def comparison_lines(reports: Sequence[TargetReport]) -> list[str]:
    """With --gepa-compare: each optimizer's result on the same split, side by side."""
    lines = []
    for r in reports:
        if not r.comparison:
            continue
        parts = [
            f"{row['optimizer']} {row['score']:.3f} ({row['ci'][0]:.2f}-{row['ci'][1]:.2f}), val "
            f"{_num(row['val'])}, {row['lm_calls']} LM calls{' [kept]' if row['kept'] else ''}"
            for row in r.comparison
        ]
        lines.append(f"compare {r.nodeid} [{r.name}]: " + "  vs  ".join(parts))
    return lines


def next_steps(reports: Sequence[TargetReport]) -> list[str]:
    """The one command a person should run next, given how the targets ended."""
    to_compile = sorted({r.nodeid for r in reports if r.status in NEEDS_COMPILE_STATUSES})
    regressed = sorted({r.nodeid for r in reports if r.status in REGRESSED_STATUSES})
    lines = []
    if to_compile:
        lines.append("Next: create or refresh the artifacts with  pytest --gepa-compile " + " ".join(to_compile))
    if regressed:
        lines.append("Regressed: review the examples above, then fix the prompt, data or model, or "
                     "recompile with  pytest --gepa-compile " + " ".join(regressed))
    if any(r.status == "compiled" for r in reports):
        lines.append("Next: review the artifact diff (git diff -- '*gepa_artifacts*') and commit it.")
    if not lines and reports and all(r.status == "passed" for r in reports):
        lines.append("All gates passed.")
    return lines
