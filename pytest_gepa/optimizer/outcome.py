"""What an optimizer run reports, whichever optimizer ran, and what it may ask the plugin meanwhile."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass
class OptimizationRun:
    """What one optimizer run produced, for the artifact and the summary."""

    optimizer: str
    program: Any
    val_baseline: float | None
    val_optimized: float | None
    metric_calls: int | None
    candidates: int
    accepted_proposals: int
    trajectory: list[tuple[int, float]]
    wall_time_s: float
    stop_reason: str | None = None
    lm_calls: int = 0
    decision_draws: int = 0  # metric calls spent re-drawing close decisions (in metric_calls too)
    decisions: str | None = None  # the summary's sentence about them
    selection: dict[str, Any] | None = None  # how the final candidate was picked, for the artifact


class RunWatch(Protocol):
    """What the optimizer may ask the plugin while it runs (the plugin owns the LM meter)."""

    def must_stop(self) -> str | None:
        """Why the run must end now (over --gepa-max-cost, an LM that keeps failing), or None."""

    def reflection_calls(self) -> tuple[int, str | None]:
        """How many reflection LM calls were made, and the first error among them."""
