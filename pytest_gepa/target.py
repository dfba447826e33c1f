"""The ``gepa`` fixture: one test's build-step handle, the one place that decides compile or gate.

In gate mode ``compile`` loads the committed artifact and ``gate`` holds it to its thresholds. In
compile mode ``compile`` runs the optimizer and ``gate`` decides whether the candidate may replace
the artifact. The artifact store only reads and writes; the decisions are all here.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_gepa import __version__
from pytest_gepa.artifact import serializer
from pytest_gepa.artifact.model import (
    SCHEMA_VERSION,
    Artifact,
    DatasetProvenance,
    DevsetScores,
    OptimizerRecord,
    Provenance,
    RoleUsage,
    Scores,
)
from pytest_gepa.artifact.store import ArtifactStore
from pytest_gepa.cassette import Cassette, cassette_path
from pytest_gepa.errors import (
    ArtifactError,
    GepaError,
    GepaWarning,
    LMError,
    OptimizerError,
    StaleArtifactError,
    redact,
)
from pytest_gepa.evaluate import UNPARSEABLE_REPLY, Evaluation, evaluate
from pytest_gepa.gate import GateResult, GateVerdict, assess, error_share_too_high
from pytest_gepa.metrics import Metric, metric_fingerprint
from pytest_gepa.report.model import TargetReport
from pytest_gepa.session import GepaSession
from pytest_gepa.usage import ROLES, RoleCounter, cost_usd

if TYPE_CHECKING:
    from pytest_gepa.optimize import OptimizationRun


# An LM failing this often (after dspy's own retries) stops a compile early.
MIN_FAILURES_TO_STOP = 3


def artifact_path(test_file: Path, name: str, artifact_dir: Path | None) -> Path:
    """``<test dir>/gepa_artifacts/<module>/<name>.json``, or under ``--gepa-artifact-dir``."""
    base = artifact_dir if artifact_dir is not None else test_file.parent / "gepa_artifacts"
    return base / test_file.stem / f"{name}.json"


def default_name(node_name: str) -> str:
    """The test's name, made safe as a file name (``test_x[a-b]`` becomes ``test_x-a-b``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", node_name).strip("-")


@dataclass
class _Target:
    """One compiled program inside a test: its files, inputs and what happened to it so far."""

    name: str
    store: ArtifactStore
    examples: Any
    metric: Metric
    report: TargetReport
    usage_before: dict[str, RoleCounter]
    artifact: Artifact | None = None  # gate mode: the loaded one; compile mode: the one it would replace
    baseline_program: Any = None
    run: OptimizationRun | None = None
    done: bool = False
    devset_scores: DevsetScores | None = None
    cassette: Cassette | None = None
    judge_errors_before: int = 0
    rival: OptimizationRun | None = None  # --gepa-compare: the other optimizer's run on the same split


class GepaTarget:
    """``gepa.compile(...)`` and ``gepa.gate(...)`` for one test."""

    def __init__(self, *, nodeid: str, node_name: str, test_file: Path, session: GepaSession,
                 get_lm: Callable[[str], Any], progress: Callable[[str], None]) -> None:
        self._nodeid = nodeid
        self._node_name = node_name
        self._test_file = test_file
        self._session = session
        self._settings = session.settings
        self._get_lm = get_lm
        self._progress = progress
        self._targets: dict[str, _Target] = {}
        self._wrapped_lms: dict[tuple[str, str], Any] = {}
        self._by_program: dict[int, _Target] = {}

    @property
    def reports(self) -> list[TargetReport]:
        return [target.report for target in self._targets.values()]

    # -- compile ---------------------------------------------------------------------------

    def compile(self, program: Any, examples: Any, metric: Metric, *, name: str | None = None,
                **optimizer_options: Any) -> Any:
        """Gate mode: load the stored artifact into ``program``. Compile mode: run the optimizer."""
        target = self._new_target(name, examples, metric)
        with _explained(target):
            if self._settings.compile:
                optimized = self._optimize(target, program, optimizer_options)
            else:
                optimized = self._load(target, program)
        self._by_program[id(optimized)] = target
        return optimized

    def _new_target(self, name: str | None, examples: Any, metric: Metric) -> _Target:
        if name is None:
            if self._targets:
                raise GepaError("this test compiles more than one program: give each a name, "
                                "gepa.compile(..., name='...')")
            name = default_name(self._node_name)
        if name in self._targets:
            raise GepaError(f"this test already compiled a program named {name!r}; names must be unique")
        path = artifact_path(self._test_file, name, self._settings.artifact_dir)
        report = TargetReport(nodeid=self._nodeid, name=name, mode=self._settings.mode,
                              artifact=str(path))
        self._session.reports.append(report)
        target = _Target(name=name, store=ArtifactStore(path), examples=examples, metric=metric,
                         report=report, usage_before=self._session.meter.snapshot())
        self._targets[name] = target
        target.cassette = self._open_cassette(path)
        judge_errors = getattr(metric, "judge_errors", 0)
        target.judge_errors_before = judge_errors if isinstance(judge_errors, int) else 0
        return target

    def _open_cassette(self, artifact: Path) -> Cassette | None:
        path = cassette_path(artifact)
        if self._settings.record:
            return Cassette(path)
        if not self._settings.replay:
            return None
        try:
            return Cassette.load(path)
        except FileNotFoundError:
            raise GepaError(
                f"--gepa-replay: no cassette for {self._nodeid!r} at '{path}'. Record one with "
                f"`pytest --gepa-record --gepa-compile {self._nodeid}`."
            ) from None

    def _compile_command(self) -> str:
        return f"pytest --gepa-compile {self._nodeid}"

    def _load(self, target: _Target, program: Any) -> Any:
        store = target.store
        if not store.exists():
            target.report.status = "missing"
            raise ArtifactError(
                f"No compiled artifact for {self._nodeid!r} at '{store.path}'. "
                f"Run `{self._compile_command()}` to create it."
            )
        try:
            artifact = store.read()
        except ArtifactError as exc:
            target.report.status = "corrupt"
            raise ArtifactError(f"{exc}. Run `{self._compile_command()}` to recompile it.") from exc
        target.artifact = artifact
        target.report.instructions = dict(artifact.instructions)
        self._check_stale(target, program, artifact)
        try:
            serializer.load_program(program, artifact.program, where=str(store.path))
        except ArtifactError as exc:
            target.report.status = "corrupt"
            raise ArtifactError(f"{exc} Run `{self._compile_command()}` to recompile it.") from exc
        self._attach_task_lm(program, target)
        return program

    def _check_stale(self, target: _Target, program: Any, artifact: Artifact) -> None:
        recorded = artifact.provenance
        changes = serializer.structure_changes(recorded.structure, serializer.structure(program))
        task_model = self._model_of("task")
        if recorded.models.get("task") != task_model:
            changes.append(f"task model changed from {recorded.models.get('task')!r} to {task_model!r}")
        if changes:
            target.report.status = "stale"
            raise StaleArtifactError(
                f"The artifact '{target.store.path}' is stale: " + "; ".join(changes)
                + f". Run `{self._compile_command()}` to recompile it."
            )
        drift = []
        if recorded.dataset.fingerprint != target.examples.fingerprint:
            drift.append("the labeled examples changed")
        if recorded.metric != metric_fingerprint(target.metric):
            drift.append("the metric changed")
        if drift:
            warnings.warn(GepaWarning(
                f"{self._nodeid} [{target.name}]: {' and '.join(drift)} since the artifact was compiled; "
                "the regression check compares only the examples present in both. "
                f"Recompile with `{self._compile_command()}` to refresh it."
            ), stacklevel=3)

    def _optimize(self, target: _Target, program: Any, options: dict[str, Any]) -> Any:
        target.examples.require("train", "val", purpose="compile")
        if target.store.exists():
            try:
                target.artifact = target.store.read()
                target.report.previous_instructions = dict(target.artifact.instructions)
            except ArtifactError:
                target.artifact = None  # a corrupt artifact is simply replaced
        target.baseline_program = program.deepcopy()
        target.report.baseline_instructions = serializer.instructions(program)
        optimizer = str(options.pop("optimizer", None) or self._settings.optimizer).lower()
        run = self._run_optimizer(target, optimizer, program, options)
        rival = self._settings.compare
        if rival is not None and rival != optimizer:
            target.rival = self._run_optimizer(target, rival, target.baseline_program.deepcopy(), {})
        target.run = run
        report = target.report
        report.baseline = run.val_baseline
        report.stop_reason = run.stop_reason
        report.metric_calls = run.metric_calls
        report.trajectory = list(run.trajectory)
        report.instructions = serializer.instructions(run.program)
        self._attach_task_lm(run.program, target)
        return run.program

    def _run_optimizer(self, target: _Target, optimizer: str, program: Any, options: dict[str, Any]) -> Any:
        from pytest_gepa.optimize import run_optimizer

        self._progress(f"compiling {self._nodeid} [{target.name}] with {optimizer}, budget {self._settings.budget}")
        from pytest_gepa.optimize import NothingToReflectOn

        before = self._session.meter.snapshot()
        try:
            with self._metered(target, target.metric):
                run = run_optimizer(
                    optimizer, program, list(target.examples.train), list(target.examples.val), target.metric,
                    task_lm=self._lm("task", target), reflection_lm=self._lm("reflection", target),
                    budget=self._settings.budget, seed=self._settings.seed, threads=self._settings.threads,
                    stop_at=self._settings.stop_at, patience=self._settings.patience,
                    watch=_TargetWatch(self, target, before),
                    progress=lambda line: self._progress(f"  {target.name}: {line}"), options=dict(options),
                )
        except NothingToReflectOn:
            self._explain_unreadable_task_replies(target, program)
            raise
        finally:
            # A failing task or judge LM is the cause, whatever the optimizer concluded from the
            # zeros it was fed: it wins over the optimizer's own explanation.
            self._raise_first_miss(target)
            for role in ("task", "judge"):
                self._raise_if_lm_failed(role, target)
        used = self._session.meter.since(before)
        run.lm_calls = sum(counter.calls for counter in used.values())
        return run

    # -- gate ------------------------------------------------------------------------------

    def gate(self, program: Any, devset: Sequence[Any], metric: Metric, *, min_score: float | None = None,
             max_drop: float | None = None) -> GateResult:
        """Score ``program`` on ``devset`` and fail the test when it misses a threshold."""
        target = self._target_of(program)
        with _explained(target):
            return self._gate(target, program, devset, metric, min_score, max_drop)

    def _gate(self, target: _Target, program: Any, devset: Sequence[Any], metric: Metric,
              min_score: float | None, max_drop: float | None) -> GateResult:
        settings = self._settings
        min_score = settings.min_score if min_score is None else min_score
        max_drop = settings.max_drop if max_drop is None else max_drop
        for label, value in (("min_score", min_score), ("max_drop", max_drop)):
            if value is not None and not 0 <= value <= 1:
                raise GepaError(f"gepa.gate: {label}={value!r} is outside [0, 1]")
        report = target.report
        report.min_score, report.max_drop = min_score, max_drop
        devset = list(devset)
        if not devset:
            raise GepaError(f"gepa.gate: the devset of {target.name!r} is empty; pass examples to score")
        evaluation = self._evaluate(target, program, devset, metric)
        report.score, report.ci = evaluation.score, evaluation.ci
        report.per_example = [
            {"id": r.id, "score": r.score, "feedback": r.feedback, "error": r.error} for r in evaluation.results
        ]
        if settings.compile:
            return self._gate_candidate(target, program, devset, metric, evaluation, min_score, max_drop)
        return self._gate_artifact(target, evaluation, min_score, max_drop)

    def _evaluate(self, target: _Target, program: Any, devset: list[Any], metric: Metric) -> Evaluation:
        with self._metered(target, metric):
            evaluation = evaluate(program, devset, metric, lm=self._lm("task", target),
                                  threads=self._settings.threads)
        self._raise_first_miss(target)
        if error_share_too_high(len(evaluation.errors), len(evaluation.results)):
            target.report.status = "lm error"
            first = evaluation.errors[0]
            # Name the LM that actually failed: the judge's errors surface through the metric.
            used = self._session.meter.since(target.usage_before)
            role = "judge" if used["judge"].failures and not used["task"].failures else "task"
            raise LMError(
                f"{len(evaluation.errors)} of {len(evaluation.results)} examples could not be scored: "
                f"LM error from {self._describe_lm(role)}: {(first.error or '').rstrip('.')}. "
                "This is an infrastructure error, not a low score; check the model and its endpoint."
            )
        return evaluation

    def _gate_artifact(self, target: _Target, evaluation: Evaluation, min_score: float | None,
                       max_drop: float | None) -> GateResult:
        recorded = target.artifact.scores.devset if target.artifact is not None else None
        verdict, old = assess(evaluation.per_example, evaluation.feedback, min_score=min_score, max_drop=max_drop,
                              recorded=recorded.per_example if recorded is not None else None)
        target.report.recorded = old
        result = self._conclude(target, evaluation, verdict)
        if verdict.passed:
            target.report.status = "passed"
            return result
        target.report.status = "failed"
        raise GateFailure(f"gepa gate failed for {self._nodeid} [{target.name}]:\n{verdict.explain()}")

    def _gate_candidate(self, target: _Target, program: Any, devset: list[Any], metric: Metric,
                        evaluation: Evaluation, min_score: float | None, max_drop: float | None) -> GateResult:
        if target.rival is not None:
            program, evaluation = self._compare(target, program, devset, metric, evaluation)
        baseline = self._evaluate(target, target.baseline_program, devset, metric)
        target.devset_scores = DevsetScores(
            baseline=baseline.score, optimized=evaluation.score, ci=evaluation.ci,
            n=len(evaluation.scored), per_example=evaluation.per_example,
        )
        previous = target.artifact.scores.devset if target.artifact is not None else None
        # A candidate may not be worse than what it replaces beyond max_drop (0 when unset).
        verdict, old = assess(evaluation.per_example, evaluation.feedback, min_score=min_score,
                              max_drop=max_drop or 0.0, recorded=previous.per_example if previous else None,
                              recorded_what="the artifact it would replace")
        target.report.recorded = old
        artifact = self._build_artifact(target, program)
        result = self._conclude(target, evaluation, verdict)
        if verdict.passed:
            target.store.write(artifact)
            target.report.status = "compiled"
            return result
        target.store.write_rejected(artifact)
        target.report.status = "rejected"
        kept = "The previous artifact is unchanged" if target.store.exists() else "No artifact was written"
        raise GateFailure(
            f"gepa compile of {self._nodeid} [{target.name}] rejected:\n{verdict.explain()}\n"
            f"{kept}; the candidate is saved for review at '{target.store.rejected_path}'."
        )

    def _compare(self, target: _Target, program: Any, devset: list[Any], metric: Metric,
                 evaluation: Evaluation) -> tuple[Any, Evaluation]:
        """Score the rival optimizer's program too; with --gepa-keep-best the better one is the candidate."""
        primary, rival = target.run, target.rival
        assert primary is not None and rival is not None
        rival_evaluation = self._evaluate(target, rival.program, devset, metric)
        keep_rival = self._settings.keep_best and rival_evaluation.score > evaluation.score

        def row(run: Any, scored: Evaluation, kept: bool) -> dict[str, Any]:
            return {"optimizer": run.optimizer, "val": run.val_optimized, "score": scored.score,
                    "ci": list(scored.ci), "lm_calls": run.lm_calls, "metric_calls": run.metric_calls, "kept": kept}

        target.report.comparison = [row(primary, evaluation, not keep_rival), row(rival, rival_evaluation, keep_rival)]
        if not keep_rival:
            return program, evaluation
        target.run = rival
        self._by_program[id(rival.program)] = target
        target.report.instructions = serializer.instructions(rival.program)
        target.report.trajectory = list(rival.trajectory)
        return rival.program, rival_evaluation

    def _conclude(self, target: _Target, evaluation: Evaluation, verdict: GateVerdict) -> GateResult:
        self._finish_usage(target)
        target.done = True
        target.report.message = "" if verdict.passed else redact(verdict.explain())
        return GateResult(score=evaluation.score, ci=evaluation.ci, per_example=evaluation.per_example,
                          passed=verdict.passed, verdict=verdict, errors=len(evaluation.errors))

    # -- end of test -----------------------------------------------------------------------

    def finish(self, *, test_failed: bool) -> None:
        """At teardown: a compiled target whose test never called ``gate`` is written now, and
        recorded cassettes are saved (the calls of a failed gate are worth replaying too)."""
        for target in self._targets.values():
            if self._settings.record and target.cassette is not None and target.cassette.entries:
                target.cassette.save()
            if target.done:
                continue
            if self._settings.compile and target.run is not None and not test_failed:
                target.store.write(self._build_artifact(target, target.run.program))
                target.report.status = "compiled"
            elif target.report.status == "pending":
                target.report.status = "error" if test_failed else ("loaded" if not self._settings.compile
                                                                    else "error")
            self._finish_usage(target)

    # -- helpers ---------------------------------------------------------------------------

    def _target_of(self, program: Any) -> _Target:
        target = self._by_program.get(id(program))
        if target is not None:
            return target
        if len(self._targets) == 1:
            return next(iter(self._targets.values()))
        if not self._targets:
            raise GepaError("gepa.gate needs a program returned by gepa.compile in the same test")
        raise GepaError("gepa.gate: this program was not returned by gepa.compile in this test; "
                        f"pass one of the compiled programs ({', '.join(self._targets)})")

    def _metered(self, target: _Target, metric: Metric) -> Any:
        """The dspy context of a compile or gate: token usage goes to our meter, and a rubric's
        judge calls go through this target's judge LM (metered, and through its cassette)."""
        import dspy

        overrides: dict[str, Any] = {"usage_tracker": self._session.meter}
        if getattr(metric, "uses_judge", False):
            overrides["gepa_judge_lm"] = self._lm("judge", target)
        return dspy.context(**overrides)

    def _lm(self, role: str, target: _Target | None = None) -> Any:
        """The role's LM, metered; inside a target with a cassette, seen through that cassette."""
        lm = self._session.meter.attach(self._get_lm(role), role)
        if target is None or target.cassette is None:
            return lm
        key = (target.name, role)
        if key not in self._wrapped_lms:
            from pytest_gepa.cassette import wrap

            self._wrapped_lms[key] = wrap(lm, role=role, cassette=target.cassette,
                                          replay=self._settings.replay, target=self._nodeid)
        return self._wrapped_lms[key]

    def _raise_first_miss(self, target: _Target) -> None:
        if target.cassette is not None and target.cassette.misses:
            target.report.status = "replay miss"
            raise target.cassette.misses[0]

    def _model_of(self, role: str) -> str | None:
        model = getattr(self._lm(role), "model", None)
        return None if model is None else str(model)

    def _describe_lm(self, role: str) -> str:
        lm = self._lm(role)
        model = str(getattr(lm, "model", "?"))
        base = (getattr(lm, "kwargs", {}) or {}).get("api_base")
        if not base:
            # litellm reads an endpoint from <PROVIDER>_API_BASE / _BASE_URL when the LM names none.
            prefix = model.split("/", 1)[0].upper()
            base = os.environ.get(f"{prefix}_API_BASE") or os.environ.get(f"{prefix}_BASE_URL")
        where = f" at {base}" if base else ""
        return f"the {role} model {model!r}{where}"

    def _attach_task_lm(self, program: Any, target: _Target) -> None:
        """The returned program is ready to call: predictors without an LM get the task LM."""
        task_lm = self._lm("task", target)
        for _, predictor in program.named_predictors():
            if getattr(predictor, "lm", None) is None:
                predictor.lm = task_lm

    def _raise_if_lm_failed(self, role: str, target: _Target) -> None:
        used = self._session.meter.since(target.usage_before)[role]
        if used.calls and error_share_too_high(used.failures, used.calls):
            target.report.status = "lm error"
            raise LMError(
                f"{used.failures} of {used.calls} calls to {self._describe_lm(role)} failed "
                f"(first error: {used.first_error}); the optimizer's scores would be meaningless. "
                "The previous artifact is unchanged."
            )

    def _cost(self, used: dict[str, RoleCounter]) -> float | None:
        """The USD cost of this usage, or None when any role that made calls has no known price."""
        costs = [cost_usd(self._session.meter.models.get(role), used[role].prompt_tokens,
                          used[role].completion_tokens) for role in ROLES if used[role].calls]
        return None if any(c is None for c in costs) else sum(c for c in costs if c is not None)

    def _explain_unreadable_task_replies(self, target: _Target, program: Any) -> None:
        """GEPA reflects only on outputs the metric could score. When it never did, try one example
        ourselves: a reply that does not parse is the task model's fault, and this says so."""
        from pytest_gepa.errors import OptimizerError

        first = target.examples.val[0]
        with self._metered(target, target.metric):
            result = evaluate(program, [first], target.metric, lm=self._lm("task", target), threads=1).results[0]
        if result.feedback.startswith(UNPARSEABLE_REPLY):
            raise OptimizerError(
                f"every program output scored 0 before GEPA could reflect on it: {self._describe_lm('task')} "
                f"answers in a form dspy cannot parse ({result.feedback.removeprefix(UNPARSEABLE_REPLY).strip()}). "
                "Use a model that follows instructions, or another adapter."
            )

    def _must_stop(self, target: _Target, since: dict[str, RoleCounter]) -> str | None:
        """Checked by the optimizer between iterations: over budget, or an LM that keeps failing
        (dspy already retried each failed call; going on would only burn the budget on zeros)."""
        used = self._session.meter.since(since)
        for role in ROLES:
            counter = used[role]
            if counter.failures >= MIN_FAILURES_TO_STOP and error_share_too_high(counter.failures, counter.calls):
                return (f"the {role} LM keeps failing ({counter.failures} of {counter.calls} calls; first error: "
                        f"{counter.first_error}); check --gepa-{role}-lm and its endpoint")
        limit = self._settings.max_cost
        spent = self._cost(self._session.meter.since(target.usage_before)) if limit is not None else None
        if limit is not None and spent is not None and spent > limit:
            return (f"LM cost ${spent:.4f} exceeded --gepa-max-cost ${limit:.4f}; raise --gepa-max-cost or "
                    "lower --gepa-budget")
        return None

    def _finish_usage(self, target: _Target) -> None:
        used = self._session.meter.since(target.usage_before)
        report = target.report
        judge_errors = getattr(target.metric, "judge_errors", None)
        if isinstance(judge_errors, int):
            report.judge_errors = judge_errors - target.judge_errors_before
        report.lm_calls = {role: used[role].calls for role in ROLES}
        report.tokens = {role: used[role].prompt_tokens + used[role].completion_tokens for role in ROLES}
        report.cost_usd = self._cost(used) if any(used[role].calls for role in ROLES) else None

    def _usage_record(self, target: _Target) -> dict[str, RoleUsage]:
        used = self._session.meter.since(target.usage_before)
        return {
            role: RoleUsage(
                calls=used[role].calls, prompt_tokens=used[role].prompt_tokens,
                completion_tokens=used[role].completion_tokens,
                cost_usd=cost_usd(self._session.meter.models.get(role), used[role].prompt_tokens,
                                  used[role].completion_tokens),
            )
            for role in ROLES if used[role].calls
        }

    def _build_artifact(self, target: _Target, program: Any) -> Artifact:
        import dspy

        run = target.run
        assert run is not None, "an artifact is built only after an optimizer run"
        examples = target.examples
        structure = serializer.structure(program)
        state = serializer.program_state(program)
        return Artifact(
            schema_version=SCHEMA_VERSION,
            target=self._nodeid,
            name=target.name,
            program=state,
            instructions=serializer.instructions(program),
            demos=serializer.demos(state),
            scores=Scores(val_baseline=run.val_baseline, val_optimized=run.val_optimized,
                          devset=target.devset_scores),
            provenance=Provenance(
                dataset=DatasetProvenance(
                    fingerprint=examples.fingerprint,
                    path=_relative(examples.path, self._test_file.parent),
                    sizes={"train": len(examples.train), "val": len(examples.val), "test": len(examples.test)},
                ),
                metric=metric_fingerprint(target.metric),
                program=serializer.fingerprint(structure),
                structure=structure,
                models={role: self._session.meter.models.get(role) for role in ROLES
                        if self._session.meter.models.get(role)},
                versions={"dspy": dspy.__version__, "gepa": _version("gepa"), "pytest-gepa": __version__},
            ),
            optimizer=OptimizerRecord(
                name=run.optimizer, budget=self._settings.budget, seed=self._settings.seed,
                metric_calls=run.metric_calls, candidates=run.candidates,
                accepted_proposals=run.accepted_proposals, trajectory=run.trajectory,
                stop_reason=run.stop_reason, lm_usage=self._usage_record(target), wall_time_s=run.wall_time_s,
            ),
        )


@contextmanager
def _explained(target: _Target) -> Iterator[None]:
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


@dataclass
class _TargetWatch:
    """The ``RunWatch`` the optimizer consults: this target's meter readings since the run began."""

    handle: GepaTarget
    target: _Target
    since: dict[str, RoleCounter]

    def must_stop(self) -> str | None:
        return self.handle._must_stop(self.target, self.since)

    def reflection_calls(self) -> tuple[int, str | None]:
        used = self.handle._session.meter.since(self.since)["reflection"]
        return used.calls, used.first_error if used.failures else None


class GateFailure(GepaError):
    """The gate said no: a regression or a rejected candidate, with the sentences that explain it."""


def _relative(path: Path, start: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(start.resolve()))
    except ValueError:
        return str(path)


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"
