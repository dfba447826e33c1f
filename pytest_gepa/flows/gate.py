"""The gate flow: load the committed artifact (missing, corrupt and stale each say their fix),
then score it on the devset and hold it to its thresholds, statistically (DESIGN.md "Verdicts")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_gepa.artifact import provenance, serializer
from pytest_gepa.artifact.model import Artifact
from pytest_gepa.artifact.paths import file_stem
from pytest_gepa.artifact.store import ArtifactStore
from pytest_gepa.data import example_id
from pytest_gepa.errors import ArtifactError, StaleArtifactError
from pytest_gepa.evaluate import Evaluation, ExampleResult
from pytest_gepa.flows.scoring import (
    GateFailure,
    GateResult,
    Thresholds,
    gate_result,
    record_evaluation,
    record_verdict,
    score,
)
from pytest_gepa.flows.target import BuildContext, Target
from pytest_gepa.metrics import Metric, metric_fingerprint
from pytest_gepa.verdict.stages import decide_in_stages
from pytest_gepa.verdict.thresholds import Verdict, resolution_note


def load(ctx: BuildContext, target: Target, program: Any) -> Any:
    """Gate mode's ``gepa.compile``: the artifact loaded into ``program``, which is returned."""
    store = target.store
    if not store.exists():
        store = _transfer_source(ctx, target)
    try:
        artifact = store.read()
    except ArtifactError as exc:
        target.report.status = "corrupt"
        raise ArtifactError(f"{exc}. Run `{ctx.compile_command()}` to recompile it.") from exc
    target.artifact = artifact
    report = target.report
    report.instructions = dict(artifact.instructions)
    report.trajectory = list(artifact.optimizer.trajectory)
    devset = artifact.scores.devset
    report.resolution = devset.resolution if devset is not None else None
    if target.transfer_from is not None:
        report.artifact, report.mode = str(store.path), "transfer"
    check_stale(ctx, target, artifact)
    try:
        serializer.load_program(program, artifact.program, where=str(store.path))
    except ArtifactError as exc:
        report.status = "corrupt"
        raise ArtifactError(f"{exc} Run `{ctx.compile_command()}` to recompile it.") from exc
    target.lms.attach_task_lm(program)
    return program


def _this_model(ctx: BuildContext, target: Target) -> str | None:
    return ctx.model or ctx.settings.task_lm or target.lms.model("task")


def _transfer_source(ctx: BuildContext, target: Target) -> ArtifactStore:
    """A missing artifact: under ``--gepa-transfer FROM`` the one compiled for model FROM (as
    ``<name>@<FROM-slug>.json``, or the plain ``<name>.json`` when FROM compiled it alone), else the
    failure that names the command making it."""
    source, model = ctx.settings.transfer, _this_model(ctx, target)
    missing = f"No compiled artifact for {ctx.nodeid!r} at '{target.store.path}'"
    if source is None or source == model:
        target.report.status = "missing"
        hint = (" (or gate it with another model's artifact: --gepa-transfer MODEL)"
                if ctx.model is not None else "")
        raise ArtifactError(f"{missing}. Run `{ctx.compile_command()}` to create it{hint}.")
    folder = target.store.path.parent
    tried = [folder / f"{file_stem(target.name, source)}.json", folder / f"{target.name}.json"]
    for path in tried:
        store = ArtifactStore(path)
        if store.exists() and (path == tried[0] or _compiled_for(store) == source):
            target.transfer_from = target.report.transfer_from = source
            ctx.progress(f"{ctx.nodeid}: no artifact for {model!r}; gating the one compiled for {source!r} "
                         f"('{path}')")
            return store
    target.report.status = "missing"
    raise ArtifactError(f"{missing}, and --gepa-transfer {source!r} found no artifact compiled for {source!r} "
                        f"(looked for '{tried[0]}' and '{tried[1]}'). Run `{ctx.compile_command()}` to "
                        "create one for this model.")


def _compiled_for(store: ArtifactStore) -> str | None:
    try:
        return store.read().provenance.models.get("task")
    except ArtifactError:
        return None


def stale_reasons(ctx: BuildContext, target: Target, artifact: Artifact) -> list[str]:
    """Why ``artifact`` no longer fits this target: another node id, the program as written, the model.
    A transferred artifact was compiled for another test and model on purpose: only its program must fit."""
    reasons = []
    if artifact.target != ctx.nodeid and target.transfer_from is None:
        reasons.append(f"it was compiled for {artifact.target!r}, not {ctx.nodeid!r}")
    reasons += provenance.shape_changes(artifact.provenance.structure, target.seed_shape)
    recorded_model, task_model = artifact.provenance.models.get("task"), target.lms.model("task")
    if recorded_model != task_model and target.transfer_from is None:
        reasons.append(f"task model changed from {recorded_model!r} to {task_model!r}")
    return reasons


def check_stale(ctx: BuildContext, target: Target, artifact: Artifact) -> None:
    reasons = stale_reasons(ctx, target, artifact)
    if reasons:
        raise_stale(ctx, target, reasons)
    drift = []
    if artifact.provenance.dataset.fingerprint != target.examples.fingerprint:
        drift.append("the labeled examples changed")
    if artifact.provenance.metric != metric_fingerprint(target.metric):
        drift.append("the metric changed")
    if drift:
        target.warn(f"{ctx.nodeid} [{target.name}]: {' and '.join(drift)} since the artifact was compiled; the "
                    f"regression check compares only the examples present in both. Recompile with "
                    f"`{ctx.compile_command()}` to refresh it.")
    recorded_dspy, dspy_now = artifact.provenance.versions.get("dspy"), provenance.installed_version("dspy")
    if recorded_dspy and recorded_dspy != dspy_now:
        target.warn(f"{ctx.nodeid} [{target.name}]: the artifact was compiled with dspy {recorded_dspy}, this is "
                    f"dspy {dspy_now}; prompts may render differently. Recompile with `{ctx.compile_command()}`.")


def raise_stale(ctx: BuildContext, target: Target, reasons: list[str]) -> None:
    target.report.status = "stale"
    raise StaleArtifactError(f"The artifact '{target.report.artifact}' is stale: " + "; ".join(reasons)
                             + f". Run `{ctx.compile_command()}` to recompile it.")


def gate_artifact(ctx: BuildContext, target: Target, program: Any, devset: Sequence[Any], metric: Metric,
                  thresholds: Thresholds, caller: tuple[str, int] | None) -> GateResult:
    """Score the loaded artifact and decide; raise ``GateFailure`` when it fails."""
    artifact = target.artifact
    devset_scores = artifact.scores.devset if artifact else None
    recorded = dict(devset_scores.per_example) if devset_scores else None
    recorded_draws = dict(devset_scores.draws) if devset_scores and devset_scores.draws else None
    if recorded:
        present = len(recorded.keys() & {example_id(example) for example in devset})
        if present * 2 < len(recorded):
            raise_stale(ctx, target, [f"only {present} of {len(recorded)} recorded examples remain in the devset"])
    evaluation = score(ctx, target, program, devset, metric, samples=thresholds.samples)
    evaluation, verdict = _decide_in_stages(ctx, target, program, devset, metric, thresholds, evaluation,
                                            recorded, recorded_draws)
    record_evaluation(target, evaluation, recorded)
    record_verdict(target, verdict)
    target.report.warnings.extend(verdict.notes)
    note = resolution_note(thresholds.max_drop, target.report.resolution, n=len(evaluation.scored),
                           samples=thresholds.samples) if recorded and not recorded_draws else None
    if note:
        # Warned about when compiling; on every gate it is shown in the summary and reports only.
        target.report.warnings.append(note)
    transfer = transfer_note(ctx, target) if target.transfer_from is not None else None
    if transfer:
        target.report.warnings.append(transfer)
    try:
        conclude(ctx, target, verdict, caller, what="gate")
    except GateFailure as failure:  # --gepa-strict on an inconclusive transfer: say what survived
        raise GateFailure(f"{failure}\n{transfer}" if transfer else str(failure)) from None
    if verdict.status == "failed":
        raise GateFailure(f"gepa gate failed for {ctx.nodeid} [{target.name}]:\n{verdict.explain()}"
                          + (f"\n{transfer}" if transfer else ""))
    return gate_result(evaluation, verdict)


def _decide_in_stages(ctx: BuildContext, target: Target, program: Any, devset: Sequence[Any], metric: Metric,
                      thresholds: Thresholds, evaluation: Evaluation, recorded: dict[str, float] | None,
                      recorded_draws: dict[str, list[float]] | None) -> tuple[Evaluation, Verdict]:
    """``verdict.stages``: decide, and when inconclusive draw the examples short of full marks again."""
    redrawn: dict[str, ExampleResult] = {}

    def draw_more(plan: Mapping[str, int]) -> dict[str, list[float]]:
        each = next(iter(plan.values()))
        again = [example for example in devset if example_id(example) in plan]
        ctx.progress(f"  {target.name}: inconclusive; drawing {len(again)} examples {each} more times each "
                     f"(gepa_max_samples {thresholds.max_samples})")
        more = score(ctx, target, program, again, metric, samples=each, fresh=True)
        redrawn.update({r.id: r for r in more.scored})
        return more.draws

    # A replayed gate can answer only the calls a recording holds: it takes one look, at the full level.
    staged = decide_in_stages(evaluation.draws, None if ctx.settings.replay else draw_more,
                              min_score=thresholds.min_score,
                              max_drop=thresholds.max_drop, recorded=recorded, recorded_draws=recorded_draws,
                              confidence=thresholds.confidence, samples=thresholds.samples,
                              max_samples=thresholds.max_samples, feedback=evaluation.feedback)
    if not redrawn:
        return evaluation, staged.verdict
    # The reports show each example as the deciding look judged it.
    return Evaluation(tuple(redrawn.get(r.id, r) for r in evaluation.results), evaluation.samples), staged.verdict


def transfer_note(ctx: BuildContext, target: Target) -> str:
    """How much of the borrowed artifact's score survived the swap, and the command that compiles
    for this model: ``kept 0.91 of 0.95 on openai/new-model; compile for it with ...``."""
    report = target.report
    kept = "-" if report.score is None else f"{report.score:.2f}"
    of = "-" if report.recorded is None else f"{report.recorded:.2f}"
    return (f"kept {kept} of {of} on {_this_model(ctx, target)} with the artifact compiled for "
            f"{target.transfer_from}; compile for it with `{ctx.compile_command()}`")


def conclude(ctx: BuildContext, target: Target, verdict: Verdict, caller: tuple[str, int] | None, *,
             what: str) -> None:
    """Passed, inconclusive (a warning, or a failure under --gepa-strict) or failed."""
    target.gated = True
    if verdict.status == "failed":
        target.report.status = "failed" if what == "gate" else "rejected"
        return
    if verdict.status == "inconclusive":
        target.report.status = "inconclusive"
        sentence = f"{ctx.nodeid} [{target.name}]: inconclusive {what}: {verdict.explain()}"
        if ctx.settings.strict:
            raise GateFailure(f"{sentence}\n--gepa-strict makes an inconclusive verdict fail.")
        target.warn(sentence + "\n(--gepa-strict makes this fail.)", caller)
        return
    target.report.status = "passed"
