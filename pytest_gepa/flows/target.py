"""One compiled program inside a test: its files, its inputs, and what happened to it so far."""

from __future__ import annotations

import shlex
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_gepa.artifact.model import Shape
from pytest_gepa.artifact.store import ArtifactStore
from pytest_gepa.errors import GepaWarning
from pytest_gepa.report.model import TargetReport

if TYPE_CHECKING:
    from pytest_gepa.artifact.model import Artifact, DevsetScores
    from pytest_gepa.cassette import Cassette
    from pytest_gepa.config import Settings
    from pytest_gepa.flows.target_lms import TargetLMs
    from pytest_gepa.metrics import Metric
    from pytest_gepa.optimizer.outcome import OptimizationRun
    from pytest_gepa.session import GepaSession
    from pytest_gepa.usage import RoleCounter


@dataclass(frozen=True)
class BuildContext:
    """What every target of one test shares: who it is, the run's settings and session, its LMs."""

    nodeid: str
    test_file: Path
    rootdir: Path
    session: GepaSession
    get_lm: Callable[[str], Any]
    progress: Callable[[str], None]
    # In a model matrix: this test's model (its gepa_task_lm parameter) and its node id without it.
    model: str | None = None
    base_nodeid: str | None = None

    @property
    def settings(self) -> Settings:
        return self.session.settings

    def compile_flags(self) -> str:
        """``--gepa-task-lm`` with this run's models, this one first, when this test is one model
        of a matrix: one model alone is no matrix (its file would have no ``@model``)."""
        models = self.settings.task_lms
        if self.model is None or len(models) < 2:
            return ""
        ordered = [self.model, *(model for model in models if model != self.model)]
        return f"--gepa-task-lm {shlex.quote(','.join(ordered))}"

    def compile_command(self) -> str:
        """The command that compiles this test (for this model, in a matrix)."""
        flags = self.compile_flags()
        return f"pytest --gepa-compile {flags + ' ' if flags else ''}{shlex.quote(self.nodeid)}"


@dataclass
class Target:
    """One ``gepa.compile`` of a test, from its start to its teardown."""

    name: str
    store: ArtifactStore
    examples: Any
    metric: Metric
    report: TargetReport
    usage_before: dict[str, RoleCounter]
    lms: TargetLMs
    cassette: Cassette | None = None
    seed_shape: dict[str, Shape] = field(default_factory=dict)  # the program as the test wrote it
    artifact: Artifact | None = None  # gate: the loaded one; compile: the current one, when comparable
    current_program: Any = None  # compile: the current artifact loaded into a copy of the program
    baseline_program: Any = None
    run: OptimizationRun | None = None
    rival: OptimizationRun | None = None  # --gepa-compare: the other optimizer's run on the same split
    devset_scores: DevsetScores | None = None
    pending: Artifact | None = None  # compile: the candidate to write at teardown if the test passes
    gated: bool = False
    judge_errors_before: int = 0
    caller: tuple[str, int] | None = None  # the user's line that called gepa.compile, for warnings
    transfer_from: str | None = None  # gate: the model whose artifact this model borrowed (--gepa-transfer)

    def warn(self, message: str, caller: tuple[str, int] | None = None) -> None:
        """A ``GepaWarning`` shown at the user's line (not inside the plugin), and kept for the report."""
        self.report.warnings.append(message)
        where = caller or self.caller
        if where is None:
            warnings.warn(GepaWarning(message), stacklevel=3)
        else:
            warnings.warn_explicit(GepaWarning(message), GepaWarning, filename=where[0], lineno=where[1])
