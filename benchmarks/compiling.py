"""Compile: ``pytest --gepa-compile`` vs a hand-written ``dspy.GEPA`` script (``plain_gepa.py``).

(a) at equal budget with early stop off (``-o gepa_stop_at=off``), (b) with the plugin's default
early stop, both with the user's own ``dspy.LM`` on dspy's default engine; (c) end to end at equal
budget with model strings, and with litellm forced on both sides. Both score the candidate and the
baseline on the test split afterwards (the plugin also records three fresh draws of each test
example, as the contract asks), so end to end they do the same work but those; the server's request
log attributes each LM call to a role and a phase. Both run with bytecode cached, as installed code
does, after one small untimed compile each.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from _harness import (
    BENCH,
    PYTHON,
    Context,
    Report,
    RequestLog,
    calls_by_role,
    log,
    median,
    pytest_cmd,
    ratio,
    require_ok,
    run,
    seconds,
    total,
    with_bytecode_cache,
)
from _project import NODEID, TriageHttpProject

TITLE = "compile: pytest --gepa-compile vs plain dspy.GEPA"


# The kinds also measured against the plain script run as a test of a bare pytest run.
IN_PYTEST_KINDS = ("own", "strings")
# The plain script's flags that name its LMs as each kind of project does (see _project.LM_KINDS).
PLAIN_LM_ARGS = {"own": (), "own-litellm": ("--engine", "litellm"), "strings": ("--models", "strings")}
KIND_TEXT = {"own-litellm": "own dspy.LM, engine='litellm' forced on both sides",
             "strings": "model strings (gepa_task_lm = bench/task; plain: dspy.LM('bench/task'))"}


def bench(ctx: Context) -> None:
    triage = ctx.triage()
    args = ctx.args
    # Both sides as installed code runs, bytecode cached; one small untimed compile each writes it.
    env = with_bytecode_cache(triage.env, ctx.workdir)
    for kind in ("own", "strings", "own-litellm"):
        warm = ctx.triage(kind)
        warm_env = with_bytecode_cache(warm.env, ctx.workdir)
        plain_compile(warm.project, warm.server, warm.requests, warm_env, args.threads, "30")
        if kind in IN_PYTEST_KINDS:
            plain_compile(warm.project, warm.server, warm.requests, warm_env, args.threads, "30", in_pytest=True)
        plugin_compile(warm.project, warm.requests, warm_env, args.threads, "30", early_stop=False)
    bench_compile(ctx.report, triage.project, triage.server, triage.requests, env, args.repeats,
                  args.threads, args.budget)
    for kind in ("strings", "own-litellm"):
        other = ctx.triage(kind)
        bench_compile_pair(ctx.report, kind, other.project, other.server, other.requests,
                           with_bytecode_cache(other.env, ctx.workdir), args.repeats, args.threads, args.budget)


def bench_compile_pair(report: Report, kind: str, project: TriageHttpProject, server: Any, requests: RequestLog,
                       env: dict[str, str], repeats: int, threads: int, budget: str) -> None:
    """End to end, equal budget: the plugin's compile vs the plain script, both naming LMs as ``kind``."""
    plugin: list[CompileRun] = []
    plain: list[CompileRun] = []
    in_pytest: list[CompileRun] = []
    steps = [lambda: plain.append(plain_compile(project, server, requests, env, threads, budget)),
             lambda: plugin.append(plugin_compile(project, requests, env, threads, budget, early_stop=False))]
    if kind in IN_PYTEST_KINDS:
        steps.append(lambda: in_pytest.append(plain_compile(project, server, requests, env, threads, budget,
                                                            in_pytest=True)))
    for i in range(repeats):
        # Rotate the order each repeat, so no side always runs right after the same neighbour.
        for step in steps[i % len(steps):] + steps[: i % len(steps)]:
            step()
        log(f"compile ({kind}): plugin {plugin[-1].wall:.2f}s vs plain {plain[-1].wall:.2f}s"
            + (f" (in pytest {in_pytest[-1].wall:.2f}s)" if in_pytest else ""))
    report.raw[f"compile-{kind}"] = {"plugin": [vars(r) for r in plugin], "plain": [vars(r) for r in plain],
                                     "plain-in-pytest": [vars(r) for r in in_pytest]}
    sec = f"2c compile, {KIND_TEXT[kind]}"
    wall = [r.wall for r in plugin], [r.wall for r in plain]
    r = ratio(median(wall[0]), median(wall[1]))
    report.add(sec, "end-to-end wall, equal budget", seconds(wall[0]), seconds(wall[1]), r,
               "<= 1.1x" if kind == "strings" else "-", r <= 1.1 if kind == "strings" else None)
    cpu = [r.cpu for r in plugin], [r.cpu for r in plain]
    report.add(sec, "  CPU time of the whole process (user+sys)", seconds(cpu[0]), seconds(cpu[1]),
               ratio(median(cpu[0]), median(cpu[1])), "-", None)
    if in_pytest:
        add_in_pytest_rows(report, sec, plugin, plain, in_pytest)
    report.add(sec, "LM calls in the GEPA phase", calls_text(plugin, lambda x: x.compile_calls),
               calls_text(plain, lambda x: x.compile_calls), ratio(median([total(x.compile_calls) for x in plugin]),
                                                                  median([total(x.compile_calls) for x in plain])),
               "-", None)
    report.add(sec, "final val / test score", scores_text(plugin), scores_text(plain), None, "equal",
               scores_equal(plugin, plain))


@dataclass
class CompileRun:
    who: str
    wall: float
    cpu: float  # user + system seconds of the whole process
    compile_wall: float
    compile_cpu: float  # process CPU time (all threads) inside the GEPA phase
    gate_wall: float
    calls: dict[str, int]  # the whole process
    compile_calls: dict[str, int]  # inside the optimizer phase only
    gate_calls: dict[str, int]  # scoring candidate and baseline on the test split
    optimizer_wall: float  # dspy.GEPA.compile alone (the plugin's artifact records it; the plain script = compile)
    before: float  # process start to the optimizer's start: interpreter, pytest, imports, collection
    after: float  # end of test-split scoring to process exit: artifact, report, pytest teardown
    val: float | None
    test: float | None
    metric_calls: int | None
    stop_reason: str | None = None


def plugin_compile(project: TriageHttpProject, requests: RequestLog, env: dict[str, str], threads: int, budget: str,
                   early_stop: bool) -> CompileRun:
    project.clean_artifacts()
    project.phases.unlink(missing_ok=True)
    extra = () if early_stop else ("-o", "gepa_stop_at=off")
    cmd = pytest_cmd("-q", "--gepa-compile", "--gepa-budget", budget, "--gepa-threads", str(threads), *extra,
                     NODEID)
    mark = requests.mark()
    result = run(cmd, cwd=project.root, env=env)
    who = "plugin (default early stop)" if early_stop else "plugin (gepa_stop_at=off)"
    require_ok(f"compile: {who}", result)
    entries = requests.since(mark)
    phases = project.read_phases()
    artifact = project.read_artifact()
    scores = artifact["scores"]
    return CompileRun(
        who=who, wall=result.wall, cpu=result.cpu,
        compile_wall=phases["compile"][1] - phases["compile"][0], compile_cpu=float(phases["compile_cpu"]),
        gate_wall=phases["gate"][1] - phases["gate"][0],
        calls=calls_by_role(entries), compile_calls=calls_by_role(entries, phases["compile"]),
        gate_calls=calls_by_role(entries, phases["gate"]),
        optimizer_wall=float(artifact["optimizer"].get("wall_time_s") or float("nan")),
        before=phases["compile"][0] - result.started, after=result.ended - phases["gate"][1],
        val=scores.get("val_optimized"), test=(scores.get("devset") or {}).get("optimized"),
        metric_calls=artifact["optimizer"].get("metric_calls"), stop_reason=artifact["optimizer"].get("stop_reason"),
    )


def plain_compile(project: TriageHttpProject, server: Any, requests: RequestLog, env: dict[str, str],
                  threads: int, budget: str, in_pytest: bool = False) -> CompileRun:
    """The plain script as a process of its own, or (``in_pytest``) as the one test of a bare pytest
    run (``-p no:gepa``): the same script with pytest's start-up and teardown around it."""
    out = project.root / "plain.json"
    out.unlink(missing_ok=True)
    argv = ["--base-url", server.base_url, "--data", str(project.data), "--out", str(out), "--budget", budget,
            "--threads", str(threads), "--seed", "0", *PLAIN_LM_ARGS[project.lms]]
    if in_pytest:
        who = "plain dspy.GEPA in a bare pytest run"
        cwd, cmd = project.plain_suite, pytest_cmd("-q", "-p", "no:gepa", "test_plain_gepa.py")
        env = {**env, "BENCH_DIR": str(BENCH), "BENCH_PLAIN_ARGV": json.dumps(argv)}
    else:
        who = "plain dspy.GEPA"
        cwd, cmd = project.root, [PYTHON, str(BENCH / "plain_gepa.py"), *argv]
    mark = requests.mark()
    result = run(cmd, cwd=cwd, env=env)
    require_ok(f"compile: {who}", result)
    entries = requests.since(mark)
    data = json.loads(out.read_text(encoding="utf-8"))
    phases = data["phases"]
    return CompileRun(
        who=who, wall=result.wall, cpu=result.cpu,
        compile_wall=phases["compile"][1] - phases["compile"][0], compile_cpu=float(data["compile_cpu"]),
        gate_wall=phases["gate"][1] - phases["gate"][0],
        calls=calls_by_role(entries), compile_calls=calls_by_role(entries, phases["compile"]),
        gate_calls=calls_by_role(entries, phases["gate"]),
        optimizer_wall=phases["optimizer"][1] - phases["optimizer"][0],
        before=phases["compile"][0] - result.started, after=result.ended - phases["gate"][1],
        val=data["val_optimized"], test=data["test_optimized"], metric_calls=data["metric_calls"],
    )


def calls_text(runs: Sequence[CompileRun], pick: Callable[[CompileRun], dict[str, int]]) -> str:
    """Total calls (task + reflection); the median, with the range if the repeats disagree."""
    totals = [total(pick(r)) for r in runs]
    task = median([pick(r).get("task", 0) for r in runs])
    refl = median([pick(r).get("reflection", 0) for r in runs])
    varied = f" (range {min(totals)}-{max(totals)})" if min(totals) != max(totals) else ""
    return f"{median(totals):.0f} = {task:.0f} task + {refl:.0f} refl{varied}"


def bench_compile(report: Report, project: TriageHttpProject, server: Any, requests: RequestLog,
                  env: dict[str, str], repeats: int, threads: int, budget: str) -> None:
    runs: dict[str, list[CompileRun]] = {"off": [], "default": [], "plain": [], "plain-in-pytest": []}
    steps: list[tuple[str, Callable[[], CompileRun]]] = [
        ("plain", lambda: plain_compile(project, server, requests, env, threads, budget)),
        ("off", lambda: plugin_compile(project, requests, env, threads, budget, early_stop=False)),
        ("default", lambda: plugin_compile(project, requests, env, threads, budget, early_stop=True)),
        ("plain-in-pytest", lambda: plain_compile(project, server, requests, env, threads, budget, in_pytest=True)),
    ]
    for i in range(repeats):
        # Rotate the order each repeat, so no side always runs right after the same neighbour.
        for key, step in steps[i % len(steps):] + steps[: i % len(steps)]:
            result = step()
            runs[key].append(result)
            log(f"compile {result.who}: {result.wall:.2f}s, calls {result.calls}, test {result.test}")
    report.raw["compile"] = {key: [vars(r) for r in rs] for key, rs in runs.items()}
    off, default, plain, in_pytest = runs["off"], runs["default"], runs["plain"], runs["plain-in-pytest"]

    def walls(rs: Sequence[CompileRun], attr: str) -> list[float]:
        return [float(getattr(r, attr)) for r in rs]

    sec = "2a compile, equal budget"
    r = ratio(median(walls(off, "wall")), median(walls(plain, "wall")))
    report.add(sec, "end-to-end wall (process: start-up, GEPA, test-split scoring)", seconds(walls(off, "wall")),
               seconds(walls(plain, "wall")), r, "<= 1.1x", r <= 1.1)
    r = ratio(median(walls(off, "cpu")), median(walls(plain, "cpu")))
    report.add(sec, "  CPU time of the whole process (user+sys; steadier than wall on a busy machine)",
               seconds(walls(off, "cpu")), seconds(walls(plain, "cpu")), r, "-", None)
    add_in_pytest_rows(report, sec, off, plain, in_pytest)
    r = ratio(median(walls(off, "compile_wall")), median(walls(plain, "compile_wall")))
    report.add(sec, "GEPA phase wall (gepa.compile vs optimizer.compile)", seconds(walls(off, "compile_wall")),
               seconds(walls(plain, "compile_wall")), r, "<= 1.1x", r <= 1.1)
    r = ratio(median(walls(off, "compile_cpu")), median(walls(plain, "compile_cpu")))
    report.add(sec, "  CPU time of the GEPA phase (process_time, all threads)", seconds(walls(off, "compile_cpu")),
               seconds(walls(plain, "compile_cpu")), r, "-", None)
    r = ratio(median(walls(off, "optimizer_wall")), median(walls(plain, "optimizer_wall")))
    report.add(sec, "  of which GEPA.compile() itself (plugin: its artifact's optimizer.wall_time_s)",
               seconds(walls(off, "optimizer_wall")), seconds(walls(plain, "optimizer_wall")), r, "-", None)
    r = ratio(median(walls(off, "gate_wall")), median(walls(plain, "gate_wall")))
    report.add(sec, "test-split phase wall (candidate + baseline scored)", seconds(walls(off, "gate_wall")),
               seconds(walls(plain, "gate_wall")), r, "-", None)
    report.add(sec, "before the optimizer (interpreter, pytest, imports, collection)", seconds(walls(off, "before")),
               seconds(walls(plain, "before")), ratio(median(walls(off, "before")), median(walls(plain, "before"))),
               "-", None)
    report.add(sec, "after the test split (artifact, report, teardown, exit)", seconds(walls(off, "after")),
               seconds(walls(plain, "after")), ratio(median(walls(off, "after")), median(walls(plain, "after"))),
               "-", None)
    off_calls = median([total(x.compile_calls) for x in off])
    plain_calls = median([total(x.compile_calls) for x in plain])
    r = ratio(off_calls, plain_calls)
    # Equal budgets need not mean identical call counts: GEPA stops at the first iteration boundary past
    # the budget. (The plugin no longer turns on GEPA's cache_evaluation with a validation split: it read
    # validation scores off training examples; RESULTS.md's 2a rows predate that and need a re-run.)
    report.add(sec, "LM calls in the GEPA phase", calls_text(off, lambda x: x.compile_calls),
               calls_text(plain, lambda x: x.compile_calls), r, "1.0x +-2%", abs(r - 1) <= 0.02)
    report.add(sec, "LM calls scoring the test split (excluded above)", calls_text(off, lambda x: x.gate_calls),
               calls_text(plain, lambda x: x.gate_calls), ratio(median([total(x.gate_calls) for x in off]),
                                                                median([total(x.gate_calls) for x in plain])),
               "-", None)
    report.add(sec, "final val / test score", scores_text(off), scores_text(plain), None, "equal",
               scores_equal(off, plain))

    sec = "2b compile, early stop"
    default_calls = median([total(x.compile_calls) for x in default])
    r = ratio(default_calls, plain_calls)
    report.add(sec, "LM calls in the GEPA phase (default stop_at=1.0 vs full budget)",
               calls_text(default, lambda x: x.compile_calls), calls_text(plain, lambda x: x.compile_calls), r,
               "<= 0.6x", r <= 0.6 and scores_at_least(default, plain))
    r_all = ratio(median([total(x.calls) for x in default]), median([total(x.calls) for x in plain]))
    report.add(sec, "LM calls, whole run (incl. test-split scoring)", calls_text(default, lambda x: x.calls),
               calls_text(plain, lambda x: x.calls), r_all, "-", None)
    report.add(sec, "final val / test score", scores_text(default), scores_text(plain), None, ">= baseline",
               scores_at_least(default, plain))
    r = ratio(median(walls(default, "wall")), median(walls(plain, "wall")))
    report.add(sec, "end-to-end wall", seconds(walls(default, "wall")), seconds(walls(plain, "wall")), r, "-", None)
    reasons = sorted({str(x.stop_reason) for x in default})
    report.notes.append(f"Plugin early stop ended with: {'; '.join(reasons)}.")
    metric_calls = sorted({x.metric_calls for x in plain + off + default if x.metric_calls is not None})
    report.notes.append(
        f"GEPA metric calls (rollouts) seen: plain {[x.metric_calls for x in plain]}, plugin off "
        f"{[x.metric_calls for x in off]}, plugin default {[x.metric_calls for x in default]} ({metric_calls})."
    )


def add_in_pytest_rows(report: Report, sec: str, plugin: Sequence[CompileRun], plain: Sequence[CompileRun],
                       in_pytest: Sequence[CompileRun]) -> None:
    """The plugin against the plain script run as a test of a bare pytest run, which pays pytest's own
    start-up and teardown as the plugin does; and that pytest share itself, next to the script."""
    wall = [r.wall for r in plugin], [r.wall for r in in_pytest]
    report.add(sec, "end-to-end wall vs the same plain script as the one test of a bare pytest run (-p no:gepa)",
               seconds(wall[0]), seconds(wall[1]), ratio(median(wall[0]), median(wall[1])), "-", None)
    shares = [(r.before + r.after) for r in in_pytest], [(r.before + r.after) for r in plain]
    report.notes.append(
        f"{sec}: pytest's own share, the plain script in a bare pytest run vs as a script: end to end "
        f"{median([r.wall for r in in_pytest]):.3f} s vs {median([r.wall for r in plain]):.3f} s; before the "
        f"optimizer plus after the test split {median(shares[0]):.3f} s vs {median(shares[1]):.3f} s.")


def scores_text(runs: Sequence[CompileRun]) -> str:
    vals = sorted({round(r.val, 3) for r in runs if r.val is not None})
    tests = sorted({round(r.test, 3) for r in runs if r.test is not None})
    return f"{'/'.join(map(str, vals))} / {'/'.join(map(str, tests))}"


def scores_equal(a: Sequence[CompileRun], b: Sequence[CompileRun]) -> bool:
    return scores_text(a) == scores_text(b)


def scores_at_least(a: Sequence[CompileRun], b: Sequence[CompileRun]) -> bool:
    worst_a = min((r.test or 0.0) for r in a)
    best_b = max((r.test or 0.0) for r in b)
    worst_val_a = min((r.val or 0.0) for r in a)
    best_val_b = max((r.val or 0.0) for r in b)
    return worst_a >= best_b and worst_val_a >= best_val_b


