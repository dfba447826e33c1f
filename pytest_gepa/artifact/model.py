"""The artifact's schema: one JSON document per target, validated with pydantic on every read."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# 2: example ids by id column or inputs, per-example samples, resolution, the program's shape; later
# 2s add `scores.devset.draws` (optional, so every 2 still reads).
SCHEMA_VERSION = 2


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DevsetScores(_Strict):
    baseline: float | None = None
    optimized: float
    ci: tuple[float, float]
    n: int
    per_example: dict[str, float]  # each example's mean over `samples` draws, by example id
    samples: int = 1
    confidence: float = 0.95
    resolution: float | None = None  # the smallest drop this devset detects at `confidence`, 80% power
    # Every draw of every example (a compile records them after deciding to promote, never the draws
    # that picked the winner); absent in older artifacts, which gate examples-as-unit.
    draws: dict[str, list[float]] | None = None


class Scores(_Strict):
    val_baseline: float | None = None
    val_optimized: float | None = None
    devset: DevsetScores | None = None
    # A kept candidate (<name>.rejected.json): the current artifact's program scored in the same run.
    current: DevsetScores | None = None


class DatasetProvenance(_Strict):
    fingerprint: str
    path: str
    sizes: dict[str, int]


class Shape(_Strict):
    """One predictor as the user wrote it: what a compiled artifact must still fit."""

    inputs: list[str]
    outputs: list[str]
    instructions: str = ""  # the seed instruction (signature docstring), not GEPA's
    fields: dict[str, dict[str, str]] = Field(default_factory=dict)  # {field: {"desc", "type"}}


class Provenance(_Strict):
    dataset: DatasetProvenance
    metric: str
    program: str
    structure: dict[str, Shape]
    models: dict[str, str | None]
    versions: dict[str, str]


class RoleUsage(_Strict):
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None


class OptimizerRecord(_Strict):
    name: str
    budget: str | int
    seed: int
    metric_calls: int | None = None
    candidates: int | None = None
    accepted_proposals: int | None = None
    trajectory: list[tuple[int, float]] = Field(default_factory=list)
    stop_reason: str | None = None
    lm_usage: dict[str, RoleUsage] = Field(default_factory=dict)
    wall_time_s: float
    # Draws spent on GEPA's close decisions (part of metric_calls), and how the final candidate was
    # picked among the Pareto front's best: {"compared", "val_means", "picked", "gepa_pick", ...}.
    decision_draws: int | None = None
    selection: dict[str, Any] | None = None


class Artifact(_Strict):
    schema_version: int
    target: str
    name: str
    program: dict[str, Any]
    instructions: dict[str, str]
    demos: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    scores: Scores
    provenance: Provenance
    optimizer: OptimizerRecord

    def to_json(self) -> str:
        """Sorted keys and fixed indentation, so a prompt change reads as a small diff in review."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
