"""The compile flow: optimize, score the candidate against the current artifact, and replace it
only when the candidate is at least as good, in the teardown of a test that passed.

Outcomes (DESIGN.md, "Modes"): ``compiled`` (written), ``kept`` (the candidate is not better: the
artifact stays byte-identical, the candidate goes to ``<name>.rejected.json`` with both scores, the
test passes) and ``rejected`` (the candidate misses its thresholds: the test fails).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pytest_gepa.artifact import provenance, serializer
from pytest_gepa.artifact.model import (
    SCHEMA_VERSION,
    Artifact,
    DatasetProvenance,
    DevsetScores,
    OptimizerRecord,
    Provenance,
    Scores,
)
from pytest_gepa.errors import ArtifactError, LMError, LMNotConfigured, OptimizerError
from pytest_gepa.evaluate import (
    MAX_LM_ERROR_SHARE,
    NOT_CONFIGURED,
    UNPARSEABLE_REPLY,
    Evaluation,
    evaluate,
    not_configured_message,
)
from pytest_gepa.flows.gate import conclude, stale_reasons
from pytest_gepa.flows.promotion import beats_current
from pytest_gepa.flows.scoring import (
    GateFailure,
    GateResult,
    Thresholds,
    dspy_context,
    gate_result,
    raise_first_miss,
    record_evaluation,
    record_verdict,
    score,
)
from pytest_gepa.flows.target import BuildContext, Target
from pytest_gepa.metrics import Metric, metric_fingerprint
from pytest_gepa.optimizer import resume
from pytest_gepa.optimizer.outcome import OptimizationRun
from pytest_gepa.optimizer.run import NothingToReflectOn, run_optimizer
from pytest_gepa.usage import ROLES, RoleCounter
from pytest_gepa.verdict.conditional import conditional_resolution
from pytest_gepa.verdict.statistics import score_interval
from pytest_gepa.verdict.thresholds import decide

# An LM failing this often (after dspy's own retries) stops a compile early.
MIN_FAILURES_TO_STOP = 3


def _failing(counter: RoleCounter) -> bool:
    return counter.calls > 0 and counter.failures / counter.calls > MAX_LM_ERROR_SHARE


def optimize(ctx: BuildContext, target: Target, program: Any, options: dict[str, Any]) -> Any:
    """Compile mode's ``gepa.compile``: the optimized program (the candidate), ready to gate."""
    target.examples.require("train", "val", purpose="compile")
    _open_current(ctx, target, program)
    target.baseline_program = program.deepcopy()
    target.report.baseline_instructions = serializer.instructions(program)
    optimizer = str(options.pop("optimizer", None) or ctx.settings.optimizer).lower()
    run = _run(ctx, target, optimizer, program, options)
    rival = ctx.settings.compare
    if rival is not None and rival != optimizer:
        target.rival = _run(ctx, target, rival, target.baseline_program.deepcopy(), {})
    target.run = run
    report = target.report
    report.baseline, report.stop_reason, report.metric_calls = run.val_baseline, run.stop_reason, run.metric_calls
    report.trajectory = list(run.trajectory)
    report.instructions = serializer.instructions(run.program)
    if run.decisions:
        report.warnings.append(run.decisions)  # a notice in the summary, beside the target's row
    target.lms.attach_task_lm(run.program)
    return run.program


def _open_current(ctx: BuildContext, target: Target, program: Any) -> None:
    """The committed artifact the candidate must beat, loaded into a copy of the program; a
    corrupt or stale one cannot be compared and is simply replaced."""
    if not target.store.exists():
        return
    try:
        artifact = target.store.read()
    except ArtifactError as exc:
        ctx.progress(f"  {target.name}: the current artifact cannot be read ({exc}); the candidate replaces it")
        return
    target.report.previous_instructions = dict(artifact.instructions)
    reasons = stale_reasons(ctx, target, artifact)
    if reasons:
        ctx.progress(f"  {target.name}: the current artifact is stale ({'; '.join(reasons)}); the candidate "
                     "replaces it")
        return
    current = program.deepcopy()
    try:
        serializer.load_program(current, artifact.program, where=str(target.store.path))
    except ArtifactError:
        return
    target.lms.attach_task_lm(current)
    target.artifact, target.current_program = artifact, current


@dataclass
class _Watch:
    """The ``RunWatch`` the optimizer consults: this target's meter readings since the run began."""

    ctx: BuildContext
    target: Target
    since: dict[str, RoleCounter]

    def must_stop(self) -> str | None:
        """Over --gepa-max-cost, or an LM that keeps failing (dspy already retried each call)."""
        used = self.ctx.session.meter.since(self.since)
        for role in ROLES:
            counter = used[role]
            if counter.failures >= MIN_FAILURES_TO_STOP and _failing(counter):
                return (f"the {role} LM keeps failing ({counter.failures} of {counter.calls} calls; first error: "
                        f"{counter.first_error}); check --gepa-{role}-lm and its endpoint")
        limit = self.ctx.settings.max_cost
        if limit is not None:
            spent = self.target.lms.cost(self.ctx.session.meter.since(self.target.usage_before))
            if spent is not None and spent > limit:
                return (f"LM cost ${spent:.4f} exceeded --gepa-max-cost ${limit:.4f}; raise --gepa-max-cost or "
                        "lower --gepa-budget")
        return None

    def reflection_calls(self) -> tuple[int, str | None]:
        used = self.ctx.session.meter.since(self.since)["reflection"]
        return used.calls, used.first_error if used.failures else None


def _run(ctx: BuildContext, target: Target, optimizer: str, program: Any, options: dict[str, Any]) -> OptimizationRun:
    ctx.progress(f"compiling {ctx.nodeid} [{target.name}] with {optimizer}, budget {ctx.settings.budget}")
    settings, lms = ctx.settings, target.lms
    # Only GEPA keeps a run state; the other optimizers start over every time.
    state = _open_state(ctx, target, program, options) if optimizer == "gepa" else None
    if state is not None and (line := resume.resumed_line(state)) is not None:
        ctx.progress(f"  {target.name}: {line}")
    before = ctx.session.meter.snapshot()
    try:
        with dspy_context(target):
            run = run_optimizer(
                optimizer, program, list(target.examples.train), list(target.examples.val), target.metric,
                task_lm=lms.lm("task"), reflection_lm=lms.lm("reflection"), budget=settings.budget,
                seed=settings.seed, threads=settings.threads, stop_at=settings.stop_at, patience=settings.patience,
                watch=_Watch(ctx, target, before), progress=lambda line: ctx.progress(f"  {target.name}: {line}"),
                options=dict(options), state=state, decision_samples=settings.compile_samples,
            )
    except KeyboardInterrupt:
        _say_how_to_resume(ctx, target, state)
        raise
    except BaseException as error:
        # Only an interrupt (or a kill) keeps the state: a run stopped by failing LMs saved the
        # zeros they scored, and resuming it would build on them.
        if state is not None:
            state.remove()
        if isinstance(error, NothingToReflectOn):
            _explain_unreadable_task_replies(target, program)
        raise
    finally:
        # A failing task or judge LM is the cause, whatever the optimizer concluded from the zeros
        # it was fed: it wins over the optimizer's own explanation.
        raise_first_miss(target)
        for role in ("task", "judge"):
            _raise_if_lm_failed(ctx, target, role)
    used = ctx.session.meter.since(before)
    run.lm_calls = sum(counter.calls for counter in used.values())
    if state is not None:
        state.remove()  # the run completed: nothing is left to resume
    return run


def _open_state(ctx: BuildContext, target: Target, program: Any,
                options: dict[str, Any]) -> resume.RunState | None:
    """GEPA's kept state for this target, keyed on everything that would make it another run
    (the models as resolved, not as configured: a fixture's own LM has no option to read)."""
    fingerprints = resume.fingerprint(
        program=provenance.program_fingerprint(target.seed_shape), source=resume.source_fingerprint(program),
        data=str(target.examples.fingerprint), metric=metric_fingerprint(target.metric), budget=ctx.settings.budget,
        seed=ctx.settings.seed,
        # The draws behind GEPA's decisions change its path as much as an option does.
        options={**options, "gepa_compile_samples": ctx.settings.compile_samples},
        models=target.lms.resolved_models(program, target.metric), versions=provenance.versions())
    return resume.open_state(ctx.session.resume_root(), nodeid=ctx.nodeid, name=target.name,
                             fingerprints=fingerprints, resume=ctx.settings.resume, progress=ctx.progress,
                             note_once=ctx.session.note_once)


def _say_how_to_resume(ctx: BuildContext, target: Target, state: resume.RunState | None) -> None:
    """Ctrl-C: the artifact is untouched, and the state (when kept) lets the next run continue."""
    kept = state is not None and (state.run_dir / resume.STATE_FILE).is_file()
    if kept:
        ctx.progress(f"  {target.name}: interrupted; the artifact is unchanged and the compile state is kept. "
                     f"Continue with `{resume.resume_command(ctx.nodeid)}`")
    else:
        ctx.progress(f"  {target.name}: interrupted; the artifact is unchanged (no compile state was kept)")


def _raise_if_lm_failed(ctx: BuildContext, target: Target, role: str) -> None:
    used = ctx.session.meter.since(target.usage_before)[role]
    if used.failures and (used.first_error or "").startswith(NOT_CONFIGURED):
        target.report.status = "error"
        raise LMNotConfigured(not_configured_message(role, used.first_error or ""))
    if _failing(used):
        target.report.status = "lm error"
        raise LMError(f"{used.failures} of {used.calls} calls to {target.lms.describe(role)} failed (first error: "
                      f"{used.first_error}); the optimizer's scores would be meaningless. The previous artifact "
                      "is unchanged.")


def _explain_unreadable_task_replies(target: Target, program: Any) -> None:
    """GEPA reflects only on outputs the metric could score. When it never did, try one example
    ourselves: a reply that does not parse is the task model's fault, and this says so."""
    first = target.examples.val[0]
    with dspy_context(target):
        result = evaluate(program, [first], target.metric, lm=target.lms.lm("task"), threads=1).results[0]
    if result.feedback.startswith(UNPARSEABLE_REPLY):
        raise OptimizerError(
            f"every program output scored 0 before GEPA could reflect on it: {target.lms.describe('task')} answers "
            f"in a form dspy cannot parse ({result.feedback.removeprefix(UNPARSEABLE_REPLY).strip()}). Use a model "
            "that follows instructions, or another adapter."
        )


def gate_candidate(ctx: BuildContext, target: Target, program: Any, devset: Sequence[Any], metric: Metric,
                   thresholds: Thresholds, caller: tuple[str, int] | None, *,
                   against_baseline: bool = False) -> GateResult:
    """Compile mode's ``gepa.gate``: hold the candidate to its thresholds and to the current artifact.

    The decision (thresholds, then "better than the current artifact") is made on one set of
    draws; the draws the artifact records are fresh ones made after it (DESIGN.md "Verdicts"), so
    a gate compares against what the candidate does, not against the lucky draws that promoted it.
    """
    if target.rival is not None:
        program = _pick_rival(ctx, target, program, devset, metric, thresholds)
    evaluation = score(ctx, target, program, devset, metric, samples=thresholds.samples)
    baseline = score(ctx, target, target.baseline_program, devset, metric, samples=thresholds.samples,
                     what="the unoptimized program")
    # A test without gepa.gate states no threshold: its candidate is held at least to "not worse
    # than the unoptimized program", paired on the same examples and draws of this run.
    floor = baseline if against_baseline else None
    verdict = decide(evaluation.per_example, min_score=thresholds.min_score,
                     max_drop=(thresholds.max_drop or 0.0) if floor else None,
                     recorded=floor.per_example if floor else None, recorded_draws=floor.draws if floor else None,
                     recorded_what="the unoptimized program", confidence=thresholds.confidence,
                     samples=thresholds.samples, feedback=evaluation.feedback,
                     per_example_variances=evaluation.variances, now_draws=evaluation.draws)
    record_evaluation(target, evaluation, None)
    record_verdict(target, verdict)
    target.devset_scores = _devset_scores(evaluation, baseline, thresholds, verdict.interval)
    candidate = build_artifact(ctx, target, program)
    conclude(ctx, target, verdict, caller, what="compile")
    if verdict.status == "failed":
        target.store.write_rejected(candidate)
        kept = "The previous artifact is unchanged" if target.store.exists() else "No artifact was written"
        raise GateFailure(f"gepa compile of {ctx.nodeid} [{target.name}] rejected:\n{verdict.explain()}\n{kept}; "
                          f"the candidate is saved for review at '{target.store.rejected_path}'.")
    if target.current_program is not None and not beats_current(ctx, target, program, evaluation, candidate,
                                                                devset, metric, thresholds):
        return gate_result(evaluation, verdict)
    recorded = score(ctx, target, program, devset, metric, samples=thresholds.compile_samples,
                     fresh=True, what="the candidate (recording its draws)")
    target.report.resolution, note = conditional_resolution(
        recorded.draws, thresholds.max_drop, samples=thresholds.samples, max_samples=thresholds.max_samples,
        confidence=thresholds.confidence)
    target.devset_scores = _devset_scores(recorded, baseline, thresholds,
                                          score_interval(list(recorded.per_example.values()), thresholds.confidence),
                                          resolution=target.report.resolution)
    candidate.scores.devset = target.devset_scores
    if note:
        # Shown in the summary and every report, beside the thresholds it is about.
        target.report.warnings.append(note)
    target.pending = candidate
    return gate_result(evaluation, verdict)


def _devset_scores(evaluation: Evaluation, baseline: Evaluation, thresholds: Thresholds, ci: tuple[float, float],
                   resolution: float | None = None) -> DevsetScores:
    return DevsetScores(
        baseline=baseline.score, optimized=evaluation.score, ci=ci, n=len(evaluation.scored),
        per_example=evaluation.per_example, samples=evaluation.samples, confidence=thresholds.confidence,
        resolution=resolution, draws=evaluation.draws)


def _pick_rival(ctx: BuildContext, target: Target, program: Any, devset: Sequence[Any], metric: Metric,
                thresholds: Thresholds) -> Any:
    """--gepa-compare: score the rival optimizer's program too; with --gepa-keep-best keep the better."""
    primary, rival = target.run, target.rival
    assert primary is not None and rival is not None
    first = score(ctx, target, program, devset, metric, samples=thresholds.samples)
    second = score(ctx, target, rival.program, devset, metric, samples=thresholds.samples)
    keep_rival = ctx.settings.keep_best and second.score > first.score

    def row(run: OptimizationRun, scored: Evaluation, kept: bool) -> dict[str, Any]:
        from pytest_gepa.verdict.statistics import score_interval

        return {"optimizer": run.optimizer, "val": run.val_optimized, "score": scored.score,
                "ci": list(score_interval(list(scored.per_example.values()), thresholds.confidence)),
                "lm_calls": run.lm_calls, "metric_calls": run.metric_calls, "kept": kept}

    target.report.comparison = [row(primary, first, not keep_rival), row(rival, second, keep_rival)]
    if not keep_rival:
        return program
    target.run = rival
    target.report.instructions = serializer.instructions(rival.program)
    target.report.trajectory = list(rival.trajectory)
    return rival.program


def finish(ctx: BuildContext, target: Target, *, test_outcome: str, caller: tuple[str, int] | None) -> None:
    """At teardown: a candidate is written only now, and only when its test passed (own asserts too):
    not when it failed, was skipped after the gate, or xfailed."""
    if test_outcome != "passed" or target.run is None:
        if target.pending is not None:
            target.store.write_rejected(target.pending)
            target.report.status = "rejected"
            target.report.message = (f"the test {_ended(test_outcome)} after gepa.gate; the candidate was not written "
                                     f"and is saved for review at '{target.store.rejected_path}'")
        return
    if not target.gated:
        # A test that never called gepa.gate holds its candidate to the same rule on examples.test.
        thresholds = Thresholds.resolve(ctx, min_score=None, max_drop=None, samples=None, confidence=None)
        gate_candidate(ctx, target, target.run.program, target.examples.test, target.metric, thresholds, caller,
                       against_baseline=True)
    if target.pending is None:
        return
    target.store.write(target.pending)
    target.report.status = "compiled"
    cassette = target.store.path.with_name(target.store.path.stem + ".cassette.jsonl")
    if not ctx.settings.record and cassette.exists():
        cassette.unlink()
        # Said in the summary (and the progress lines): a notice, not a warning to fail a -W error run on.
        note = (f"removed '{cassette}': it held the LM calls of the replaced artifact and no longer matches; "
                f"re-record it with `pytest --gepa-compile --gepa-record {ctx.nodeid}`")
        target.report.warnings.append(note)
        ctx.progress(f"  {target.name}: {note}")


def _ended(outcome: str) -> str:
    return {"skipped": "was skipped", "xfailed": "xfailed (its own check failed)",
            "xpassed": "passed but is marked xfail"}.get(outcome, outcome)


def build_artifact(ctx: BuildContext, target: Target, program: Any) -> Artifact:
    run = target.run
    assert run is not None, "an artifact is built only after an optimizer run"
    examples, state = target.examples, serializer.program_state(program)
    return Artifact(
        schema_version=SCHEMA_VERSION, target=ctx.nodeid, name=target.name, program=state,
        instructions=serializer.instructions(program), demos=serializer.demos(state),
        scores=Scores(val_baseline=run.val_baseline, val_optimized=run.val_optimized, devset=target.devset_scores),
        provenance=Provenance(
            dataset=DatasetProvenance(fingerprint=examples.fingerprint, path=_relative(examples.path, ctx),
                                      sizes={split: len(examples.split(split)) for split in ("train", "val", "test")}),
            metric=metric_fingerprint(target.metric),
            program=provenance.program_fingerprint(target.seed_shape),
            structure=target.seed_shape,
            models=dict(sorted(target.lms.models.items())),
            versions=provenance.versions(),
        ),
        optimizer=OptimizerRecord(
            name=run.optimizer, budget=ctx.settings.budget, seed=ctx.settings.seed, metric_calls=run.metric_calls,
            candidates=run.candidates, accepted_proposals=run.accepted_proposals, trajectory=run.trajectory,
            stop_reason=run.stop_reason, wall_time_s=run.wall_time_s,
            decision_draws=run.decision_draws if run.optimizer == "gepa" else None, selection=run.selection,
            lm_usage=target.lms.usage_record(ctx.session.meter.since(target.usage_before)),
        ),
    )


def _relative(path: Any, ctx: BuildContext) -> str:
    from pathlib import Path

    try:
        return str(Path(path).resolve().relative_to(ctx.test_file.parent.resolve()))
    except ValueError:
        return str(path)
