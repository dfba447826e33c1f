"""The ``gepa`` fixture's object: ``gepa.compile(...)`` and ``gepa.gate(...)`` for one test.

This is the one place that decides compile or gate (as syrupy's assertion decides update or
compare); the flows in ``compile`` and ``gate`` do the work, the artifact store only reads and
writes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pytest_gepa.artifact import provenance
from pytest_gepa.artifact.paths import artifact_folder, default_name, file_stem, is_inside, plain_name, target_path
from pytest_gepa.artifact.store import ArtifactStore
from pytest_gepa.errors import GepaError, OptimizerError, redact
from pytest_gepa.flows import gate as gate_flow
from pytest_gepa.flows.scoring import GateResult, Thresholds
from pytest_gepa.flows.target import BuildContext, Target
from pytest_gepa.flows.target_lms import TargetLMs
from pytest_gepa.metrics import Metric
from pytest_gepa.report.model import TargetReport, label_of


def _caller() -> tuple[str, int] | None:
    """The user's line that called into the handle (warnings point there, not into the plugin)."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("pytest_gepa"):
        frame = frame.f_back  # type: ignore[assignment]
    return (frame.f_code.co_filename, frame.f_lineno) if frame is not None else None


class GepaHandle:
    """``gepa.compile(...)`` and ``gepa.gate(...)`` for one test."""

    def __init__(self, ctx: BuildContext) -> None:
        self._ctx = ctx
        self._targets: dict[str, Target] = {}
        self._by_program: dict[int, Target] = {}

    @property
    def reports(self) -> list[TargetReport]:
        return [target.report for target in self._targets.values()]

    def compile(self, program: Any, examples: Any, metric: Metric, *, name: str | None = None,
                **optimizer_options: Any) -> Any:
        """Gate mode: load the stored artifact into ``program``. Compile mode: run the optimizer."""
        target = self._new_target(name, examples, metric)
        target.caller = _caller()
        target.seed_shape = provenance.shape(program)
        with _explained(target):
            if self._ctx.settings.compile:
                # Imported here: a gate (a replay too) never needs the optimizer or its flow.
                from pytest_gepa.flows import compile as compile_flow

                result = compile_flow.optimize(self._ctx, target, program, optimizer_options)
            else:
                result = gate_flow.load(self._ctx, target, program)
        self._by_program[id(result)] = target
        return result

    def gate(self, program: Any, devset: Sequence[Any], metric: Metric, *, min_score: float | None = None,
             max_drop: float | None = None, samples: int | None = None,
             confidence: float | None = None) -> GateResult:
        """Score ``program`` on ``devset`` and fail the test when it misses a threshold."""
        target = self._target_of(program)
        caller = _caller()
        with _explained(target):
            thresholds = Thresholds.resolve(self._ctx, min_score=min_score, max_drop=max_drop, samples=samples,
                                            confidence=confidence)
            report = target.report
            report.min_score, report.max_drop, report.confidence = (thresholds.min_score, thresholds.max_drop,
                                                                    thresholds.confidence)
            devset = list(devset)
            if not devset:
                raise GepaError(f"gepa.gate: the devset of {target.name!r} is empty; pass examples to score")
            if self._ctx.settings.compile:
                from pytest_gepa.flows import compile as compile_flow

                return compile_flow.gate_candidate(self._ctx, target, program, devset, metric, thresholds, caller)
            return gate_flow.gate_artifact(self._ctx, target, program, devset, metric, thresholds, caller)

    def finish(self, *, test_outcome: str) -> None:
        """At teardown: write what a passed compile earned, save recorded cassettes, and settle every
        target's usage. ``test_outcome`` is how the test's call ended ("passed", "failed",
        "skipped", "xfailed", ...): only a passed test writes an artifact, or in compile mode the
        cassette beside it (which must match the artifact); a failed gate's calls are worth
        replaying, so a gate records whatever its outcome."""
        passed = test_outcome == "passed"
        errors: list[BaseException] = []
        for target in self._targets.values():
            try:
                with _explained(target):
                    if self._ctx.settings.compile:
                        from pytest_gepa.flows import compile as compile_flow

                        compile_flow.finish(self._ctx, target, test_outcome=test_outcome, caller=target.caller)
                    elif target.report.status == "pending":
                        target.report.status = "error" if test_outcome == "failed" else "loaded"
            except GepaError as error:
                errors.append(error)
            finally:
                settings = self._ctx.settings
                if (settings.record and target.cassette is not None and target.cassette.entries
                        and (passed or not settings.compile)):
                    target.cassette.save()
                self._settle_usage(target)
        if errors:
            raise errors[0]

    # -- helpers ---------------------------------------------------------------------------

    def _new_target(self, name: str | None, examples: Any, metric: Metric) -> Target:
        ctx = self._ctx
        if name is None:
            if self._targets:
                raise GepaError("this test compiles more than one program: give each a name, "
                                "gepa.compile(..., name='...')")
            # In a matrix the name leaves the model out: the file says it after the '@'.
            name = default_name(ctx.base_nodeid or ctx.nodeid)
        if name in self._targets:
            raise GepaError(f"this test already compiled a program named {name!r}; names must be unique")
        folder = artifact_folder(ctx.test_file, ctx.rootdir, ctx.settings.artifact_dir)
        path = target_path(folder, file_stem(name, ctx.model))
        if not is_inside(folder, path):
            raise GepaError(f"gepa.compile(..., name={name!r}) leaves the artifact folder '{folder}': its artifact "
                            f"would be '{path}'. A name must stay inside that folder: give a plain name such as "
                            f"{plain_name(name)!r}, or move the folder with --gepa-artifact-dir.")
        ctx.session.claim(path, ctx.nodeid)
        report = TargetReport(nodeid=ctx.nodeid, name=name, mode=ctx.settings.mode, artifact=str(path),
                              model=ctx.model, matrix_target=None if ctx.model is None else
                              label_of(ctx.base_nodeid or ctx.nodeid, name), compile_flags=ctx.compile_flags())
        ctx.session.reports.append(report)
        cassette = ctx.session.open_target_cassette(path, ctx.nodeid)
        lms = TargetLMs(get_lm=ctx.get_lm, meter=ctx.session.meter, cassette=cassette,
                        replay=ctx.settings.replay, nodeid=ctx.nodeid)
        judge_errors = getattr(metric, "judge_errors", 0)
        target = Target(name=name, store=ArtifactStore(path), examples=examples, metric=metric, report=report,
                        usage_before=ctx.session.meter.snapshot(), lms=lms, cassette=cassette,
                        judge_errors_before=judge_errors if isinstance(judge_errors, int) else 0)
        self._targets[name] = target
        return target

    def _target_of(self, program: Any) -> Target:
        target = self._by_program.get(id(program))
        if target is not None:
            return target
        if len(self._targets) == 1:
            return next(iter(self._targets.values()))
        if not self._targets:
            raise GepaError("gepa.gate needs a program returned by gepa.compile in the same test")
        raise GepaError("gepa.gate: this program was not returned by gepa.compile in this test; "
                        f"pass one of the compiled programs ({', '.join(self._targets)})")

    def _settle_usage(self, target: Target) -> None:
        used = self._ctx.session.meter.since(target.usage_before)
        report = target.report
        judge_errors = getattr(target.metric, "judge_errors", None)
        if isinstance(judge_errors, int):
            report.judge_errors = judge_errors - target.judge_errors_before
        report.lm_calls = {role: counter.calls for role, counter in used.items()}
        report.tokens = {role: counter.prompt_tokens + counter.completion_tokens for role, counter in used.items()}
        report.cost_usd = target.lms.cost(used) if any(counter.calls for counter in used.values()) else None
        report.model = target.lms.models.get("task") or report.model
        if target.cassette is not None and self._ctx.settings.replay:
            report.replayed = target.cassette.replayed


@contextmanager
def _explained(target: Target) -> Iterator[None]:
    """Whatever stops a target, its report keeps the sentence (for the report files), and a
    target that failed without a more precise status is marked 'error'."""
    try:
        yield
    except GepaError as error:
        report = target.report
        report.message = report.message or redact(str(error))
        if report.status == "pending":
            report.status = "optimizer error" if isinstance(error, OptimizerError) else "error"
        raise
