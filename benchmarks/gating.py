"""Gate: the wall time of ``gepa.gate`` vs the ideal ``ceil(N / threads) * L``, and vs plain ``dspy.Evaluate``.

``test_gate.py`` in the generated project gates the compiled artifact once per step of a plan, all
in one pytest session per ``--gepa-threads`` value: the session's first gate (cold: it pays the lazy
imports of the engine dspy picks on its first LM call), then warm gates alternating L, 0 and the high
latency. Then the first gate of runs whose LMs are model strings, against import dspy + the ideal.
``plain_evaluate.py`` runs the same plan with plain ``dspy.Evaluate`` on the same program state.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
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
)
from _project import GATE_FILE, TriageHttpProject

PLAIN_LM_ARGS = {"own": (), "own-litellm": ("--engine", "litellm"), "strings": ("--models", "strings")}
TITLE = "gate: gepa.gate vs the ideal ceil(N / threads) * L and plain dspy.Evaluate"


def bench(ctx: Context) -> None:
    triage = ctx.compiled_triage()
    args = ctx.args
    thread_counts = [int(t) for t in args.gate_threads.split(",") if t.strip()]
    bench_gate(ctx.report, triage.project, triage.server, triage.requests, triage.env, args.repeats, args.latency,
               args.high_latency, thread_counts)
    triage.server.latency = args.latency
    strings = ctx.compiled_triage("strings")
    bench_first_gate_from_strings(ctx.report, strings.project, strings.requests, strings.env, args.repeats,
                                  args.latency, threads=4)
    strings.server.latency = args.latency


IMPORT_DSPY = "import time; t = time.perf_counter(); import dspy; print(time.perf_counter() - t)"


def bench_first_gate_from_strings(report: Report, project: TriageHttpProject, requests: RequestLog,
                                  env: dict[str, str], repeats: int, latency: float, threads: int) -> None:
    """The first gate of a pytest run whose LMs are model strings dspy's own engine serves, vs what
    no run can avoid: importing dspy (its time in a fresh process) plus the ideal LM latency."""
    n = project.splits()["test"]
    firsts: list[float] = []
    imports: list[float] = []
    for i in range(repeats):
        # Alternate who goes first, so a drift in machine load is shared by both sides.
        for step in ("gate", "import") if i % 2 == 0 else ("import", "gate"):
            if step == "gate":
                firsts.append(gate_session(project, requests, env, threads, [latency]).cold)
            else:
                done = run([PYTHON, "-c", IMPORT_DSPY], cwd=project.root, env=env)
                require_ok("import dspy", done)
                imports.append(float(done.stdout.strip().splitlines()[-1]))
    ideal = math.ceil(n / threads) * latency
    floor = median(imports) + ideal
    log(f"first gate from model strings: {median(firsts):.3f}s vs import dspy {median(imports):.3f}s"
        f" + ideal {ideal:.3f}s")
    report.raw["gate-strings"] = {"first": firsts, "import_dspy": imports, "ideal": ideal}
    r = ratio(median(firsts), floor)
    report.add("3 gate", f"model strings (bench/task, dspy's own engine), threads {threads}: first gate of the "
               "run vs import dspy + ideal", seconds(firsts), f"{floor:.3f} s = {median(imports):.3f} + {ideal:.3f}",
               r, "<= 1.2x", r <= 1.2)



@dataclass
class GateSession:
    """One pytest session of test_gate.py: its first (cold) gate, then warm gates by latency."""

    threads: int
    wall: float
    cold: float  # the first gate of the session, at the benchmark's latency
    warm: dict[float, list[float]]  # later gates by latency
    calls: list[int]  # LM calls of each gate, from the server's request log


def gate_session(project: TriageHttpProject, requests: RequestLog, env: dict[str, str], threads: int,
                 plan: list[float]) -> GateSession:
    project.gates.unlink(missing_ok=True)
    mark = requests.mark()
    result = run(pytest_cmd("-q", "--gepa-threads", str(threads), GATE_FILE), cwd=project.root,
                 env={**env, "BENCH_GATE_PLAN": json.dumps(plan), "BENCH_GATES": str(project.gates)})
    require_ok(f"gate session --gepa-threads {threads}", result)
    return gate_results(threads, result.wall, project.read_gates(), requests.since(mark))


def plain_session(project: TriageHttpProject, server: Any, requests: RequestLog, env: dict[str, str],
                  threads: int, plan: list[float]) -> GateSession:
    out = project.root / "plain-evaluate.json"
    out.unlink(missing_ok=True)
    mark = requests.mark()
    cmd = [PYTHON, str(BENCH / "plain_evaluate.py"), "--base-url", server.base_url, "--control-url",
           server.control_url, "--artifact", str(project.gate_artifact), "--data", str(project.data),
           "--threads", str(threads), "--plan", json.dumps(plan), "--out", str(out),
           *PLAIN_LM_ARGS[project.lms]]
    result = run(cmd, cwd=project.root, env=env)
    require_ok(f"plain dspy.Evaluate --threads {threads}", result)
    return gate_results(threads, result.wall, json.loads(out.read_text(encoding="utf-8")), requests.since(mark))


def gate_results(threads: int, wall: float, gates: list[dict[str, Any]],
                 entries: Sequence[tuple[float, str]]) -> GateSession:
    gates = sorted(gates, key=lambda g: int(g["step"]))
    warm: dict[float, list[float]] = {}
    for gate in gates[1:]:
        warm.setdefault(float(gate["latency"]), []).append(float(gate["wall"]))
    return GateSession(threads=threads, wall=wall, cold=float(gates[0]["wall"]), warm=warm,
                       calls=[total(calls_by_role(entries, gate["window"])) for gate in gates])


def bench_gate(report: Report, project: TriageHttpProject, server: Any, requests: RequestLog,
               env: dict[str, str], repeats: int, latency: float, high_latency: float,
               thread_counts: Sequence[int]) -> None:
    n = project.splits()["test"]
    # Warm gates alternate between the latencies, so a drift in machine load touches each alike.
    latencies = list(dict.fromkeys([latency, 0.0, high_latency]))
    plan = [latency] + [lat for _ in range(repeats) for lat in latencies]
    sessions: dict[int, tuple[GateSession, GateSession]] = {}
    for i, threads in enumerate(thread_counts):
        # Plugin and plain sessions alternate who goes first, as every paired measurement here does.
        if i % 2 == 0:
            plugin = gate_session(project, requests, env, threads, plan)
            plain = plain_session(project, server, requests, env, threads, plan)
        else:
            plain = plain_session(project, server, requests, env, threads, plan)
            plugin = gate_session(project, requests, env, threads, plan)
        sessions[threads] = (plugin, plain)
        for who, session in (("plugin", plugin), ("plain dspy.Evaluate", plain)):
            warm_text = ", ".join(f"L={lat:g}: {median(ws):.3f}s" for lat, ws in session.warm.items())
            log(f"gate threads={threads} {who}: first {session.cold:.3f}s; warm {warm_text}; "
                f"process {session.wall:.2f}s;"
                f" calls per gate {sorted(set(session.calls))}")
            if set(session.calls) != {n}:
                report.notes.append(f"gate threads {threads} ({who}): LM calls per gate {session.calls}, expected {n}.")
    server.latency = latency
    report.raw["gate"] = {"n": n, "plan": plan,
                          "sessions": {t: {"plugin": vars(a), "plain": vars(b)} for t, (a, b) in sessions.items()}}
    sec = "3 gate"
    for threads, (plugin, plain) in sessions.items():
        ideal = math.ceil(n / threads) * latency
        sub = f"  threads {threads}:"  # sub-rows name their thread count, so a miss reads on its own
        r = ratio(plugin.cold, ideal)
        report.add(sec, f"--gepa-threads {threads}, N={n}, L={latency:g}s: first gate of the session (cold)",
                   f"{plugin.cold:.3f} s", f"ideal {ideal:.3f} s", r, "<= 1.2x", r <= 1.2 if ideal else None)
        report.add(sec, f"{sub} first gate vs plain dspy.Evaluate's first scoring", f"{plugin.cold:.3f} s",
                   f"{plain.cold:.3f} s", ratio(plugin.cold, plain.cold), "-", None)
        warm, plain_warm = plugin.warm[latency], plain.warm[latency]
        r = ratio(median(warm), ideal)
        report.add(sec, f"{sub} later (warm) gates of the session, L={latency:g}s", seconds(warm),
                   f"ideal {ideal:.3f} s", r, "<= 1.2x", r <= 1.2 if ideal else None)
        report.add(sec, f"{sub} warm gate vs plain dspy.Evaluate, warm", seconds(warm), seconds(plain_warm),
                   ratio(median(warm), median(plain_warm)), "-", None)
        if high_latency != latency:
            ideal_high = math.ceil(n / threads) * high_latency
            warm_high = plugin.warm[high_latency]
            r = ratio(median(warm_high), ideal_high)
            report.add(sec, f"{sub} warm gates at L={high_latency:g}s", seconds(warm_high),
                       f"ideal {ideal_high:.3f} s", r, "<= 1.2x", r <= 1.2 if ideal_high else None)
        if latency != 0.0:
            fixed, plain_fixed = plugin.warm[0.0], plain.warm[0.0]
            report.add(sec, f"{sub} fixed overhead, warm gate at L=0 vs plain dspy.Evaluate", seconds(fixed),
                       seconds(plain_fixed), ratio(median(fixed), median(plain_fixed)), "-", None)
        report.add(sec, f"{sub} first-call extra (first - warm: first-call imports), vs plain",
                   f"{plugin.cold - median(warm):.3f} s", f"{plain.cold - median(plain_warm):.3f} s", None, "-", None)


