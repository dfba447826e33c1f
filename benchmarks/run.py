"""pytest-gepa's benchmarks: every number a ratio against a baseline measured in the same run.

    .venv/bin/python benchmarks/run.py [--latency 0.02] [--repeats 3] [--startup-repeats 11]

1. start-up: plain pytest on a suite with no gepa tests, with the plugin vs ``-p no:gepa``;
2. compile: ``pytest --gepa-compile`` vs a hand-written ``dspy.GEPA`` script (``plain_gepa.py``),
   (a) at equal budget with early stop off, (b) with the plugin's default early stop;
3. gate: wall time of ``gepa.gate`` vs the ideal ``ceil(N / threads) * L``;
4. replay: a ``--gepa-replay`` gate with the LM server stopped.

The LMs are the scripted world of ``tests/world`` served over HTTP from a thread of this process,
with a fixed per-call latency; its request log (with wall-clock times) gives LM calls by role and
by phase. Every pytest run is a real subprocess on a generated project in a temp directory.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
PYTHON = sys.executable

# The world imports dspy, which imports litellm: ask for the bundled price map first, never a download.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(REPO / "tests"))

import world  # noqa: E402  (needs the path and the environment above)
from _project import GATE_FILE, NODEID, TriageHttpProject, write_trivial_suite  # noqa: E402

# The caller's own pytest options must not leak into the measured runs.
SCRUBBED_ENV = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_XDIST_AUTO_NUM_WORKERS")


# ---------------------------------------------------------------------------------------------- results


@dataclass
class Row:
    """One line of the results table: a measured value, its baseline, their ratio and the target."""

    section: str
    metric: str
    plugin: str
    baseline: str
    ratio: float | None
    target: str
    ok: bool | None  # None: informational, no target

    @property
    def ok_text(self) -> str:
        return "-" if self.ok is None else ("yes" if self.ok else "NO")

    @property
    def ratio_text(self) -> str:
        if self.ratio is None or math.isnan(self.ratio):
            return "-"
        # Three decimals near the targets (1.05x, 1.1x), so a miss never prints as the target itself.
        return f"{self.ratio:.3f}x" if self.ratio < 10 else f"{self.ratio:.1f}x"


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    def add(self, section: str, metric: str, plugin: str, baseline: str, ratio: float | None, target: str,
            ok: bool | None) -> None:
        self.rows.append(Row(section, metric, plugin, baseline, ratio, target, ok))


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def spread(values: Sequence[float]) -> str:
    """Median with the range, so noise is visible next to the number it qualifies."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"


def seconds(values: Sequence[float]) -> str:
    return f"{spread(values)} s"


def log(line: str) -> None:
    print(f"[bench] {line}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- server


class RequestLog:
    """Every chat request the server answered, as (wall-clock time, role).

    It is the server's catch-all hook, which runs after the per-call latency and before the world
    answers, so each time falls inside the client's call; a subprocess's own ``time.time()`` phase
    marks then attribute each request to the phase that made it.
    """

    def __init__(self) -> None:
        self.entries: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def __call__(self, request: Any) -> None:
        with self._lock:
            self.entries.append((time.time(), str(request.role)))

    def mark(self) -> int:
        with self._lock:
            return len(self.entries)

    def since(self, mark: int) -> list[tuple[float, str]]:
        with self._lock:
            return list(self.entries[mark:])


def calls_by_role(entries: Sequence[tuple[float, str]], window: Sequence[float] | None = None) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for when, role in entries:
        if window is None or window[0] <= when <= window[1]:
            counts[role] += 1
    return dict(counts)


def total(calls: dict[str, int]) -> int:
    return sum(calls.values())


CONTROL_PATH = "/bench/latency"


class BenchServer(world.ScriptedServer):
    """The scripted world's server, plus ``POST /bench/latency {"latency": S}`` so a running pytest
    session can change the per-call latency between two measurements (not counted as an LM call)."""

    def handle(self, method: str, path: str, raw: bytes) -> Any:
        if method == "POST" and path.split("?", 1)[0] == CONTROL_PATH:
            self.latency = float(json.loads(raw)["latency"])
            return world.HTTPReply(200, {"latency": self.latency})
        return super().handle(method, path, raw)

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{CONTROL_PATH}"


@contextmanager
def scripted_server(latency: float) -> Iterator[tuple[Any, RequestLog]]:
    server = BenchServer(latency=latency)
    requests = RequestLog()
    server.hooks["*"] = requests
    server.start()
    try:
        yield server, requests
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------- processes


@dataclass
class Run:
    wall: float
    cpu: float  # user + system seconds of the child: far less sensitive than wall time to a busy machine
    started: float  # wall clock (time.time()), comparable with a child's phase marks
    ended: float
    returncode: int
    stdout: str
    stderr: str


def base_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["DSPY_CACHEDIR"] = str(workdir / "dspy-cache")
    # The repository root first on the path: the plugin is imported from this checkout even where an
    # editable install resolves it as a namespace package outside the repository (see README).
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no .pyc churn in the generated projects between repeats
    return env


def run(cmd: Sequence[str], *, cwd: Path, env: dict[str, str], timeout: float = 900) -> Run:
    # Runs are strictly sequential and the server is a thread, so the children's rusage delta is this run's.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    stamp = time.time()
    started = time.perf_counter()
    proc = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(wall, cpu, stamp, stamp + wall, proc.returncode, proc.stdout, proc.stderr)


def pytest_cmd(*args: str) -> list[str]:
    # No cache provider: a run must not depend on what an earlier repeat left in .pytest_cache.
    return [PYTHON, "-m", "pytest", "-p", "no:cacheprovider", *args]


def require_ok(what: str, result: Run) -> None:
    if result.returncode != 0:
        tail = "\n".join((result.stdout + "\n" + result.stderr).strip().splitlines()[-40:])
        raise SystemExit(f"benchmark run failed: {what} (exit {result.returncode})\n{tail}")


# ---------------------------------------------------------------------------------------------- 1. start-up


STARTUP_VARIANTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("run 200 trivial tests (-q)", ("-q",)),
    ("collect only (--collect-only -q)", ("--collect-only", "-q")),
    ("--help", ("--help",)),
)


def bench_startup(report: Report, workdir: Path, repeats: int, tests: int) -> None:
    suite = write_trivial_suite(workdir / "trivial", tests)
    env = base_env(workdir)
    label = f"run {tests} trivial tests (-q)"
    raw: dict[str, dict[str, dict[str, list[float]]]] = {}
    for name, args in STARTUP_VARIANTS:
        shown = label if name.startswith("run ") else name
        walls: dict[str, list[float]] = {"plugin": [], "plain": []}
        cpus: dict[str, list[float]] = {"plugin": [], "plain": []}
        # Warm the OS caches once per variant so the first measured run is not the cold one.
        for plugin_args in ((), ("-p", "no:gepa")):
            run(pytest_cmd(*plugin_args, *args), cwd=suite, env=env)
        for i in range(repeats):
            # Alternate who goes first, so a drift in machine load is shared by both sides.
            order = (("plugin", ()), ("plain", ("-p", "no:gepa")))
            for who, plugin_args in order if i % 2 == 0 else tuple(reversed(order)):
                result = run(pytest_cmd(*plugin_args, *args), cwd=suite, env=env)
                require_ok(f"start-up {shown} ({who})", result)
                walls[who].append(result.wall)
                cpus[who].append(result.cpu)
        raw[shown] = {"wall": walls, "cpu": cpus}
        r = ratio(median(walls["plugin"]), median(walls["plain"]))
        report.add("1 start-up", f"{shown}: wall", seconds(walls["plugin"]), seconds(walls["plain"]), r,
                   "<= 1.05x", r <= 1.05)
        report.add("1 start-up", f"{shown}: CPU (user+sys)", seconds(cpus["plugin"]), seconds(cpus["plain"]),
                   ratio(median(cpus["plugin"]), median(cpus["plain"])), "-", None)
        log(f"start-up {shown}: plugin {median(walls['plugin']):.3f}s vs plain {median(walls['plain']):.3f}s")
    report.raw["startup"] = raw
    startup_imports(report, suite, env)


def startup_imports(report: Report, suite: Path, env: dict[str, str]) -> None:
    """What the plugin adds to a run's imports, from ``-X importtime``: far steadier than wall time."""
    result = run([PYTHON, "-X", "importtime", "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q"],
                 cwd=suite, env=env)
    require_ok("start-up -X importtime", result)
    own_us = 0
    heavy: list[str] = []
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if not match:
            continue
        name = match.group(4)
        if name.split(".")[0] == "pytest_gepa":
            own_us += int(match.group(1))
        if name.split(".")[0] in ("dspy", "litellm", "gepa", "openai", "httpx"):
            heavy.append(name)
    heavy_text = "none" if not heavy else ", ".join(sorted({h.split(".")[0] for h in heavy}))
    report.add("1 start-up", "modules the plugin imports (self time, -X importtime)", f"{own_us / 1000:.1f} ms",
               "-", None, "-", None)
    report.add("1 start-up", "dspy / litellm / gepa imported by a run with no gepa test", heavy_text, "-", None,
               "none", not heavy)


# ---------------------------------------------------------------------------------------------- 2. compile


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
                  threads: int, budget: str) -> CompileRun:
    out = project.root / "plain.json"
    out.unlink(missing_ok=True)
    cmd = [PYTHON, str(BENCH / "plain_gepa.py"), "--base-url", server.base_url, "--data", str(project.data),
           "--out", str(out), "--budget", budget, "--threads", str(threads), "--seed", "0"]
    mark = requests.mark()
    result = run(cmd, cwd=project.root, env=env)
    require_ok("compile: plain dspy.GEPA", result)
    entries = requests.since(mark)
    data = json.loads(out.read_text(encoding="utf-8"))
    phases = data["phases"]
    return CompileRun(
        who="plain dspy.GEPA", wall=result.wall, cpu=result.cpu,
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
                  env: dict[str, str], repeats: int, threads: int, budget: str) -> Path:
    runs: dict[str, list[CompileRun]] = {"off": [], "default": [], "plain": []}
    kept = project.root / "kept-artifact.json"
    steps: list[tuple[str, Callable[[], CompileRun]]] = [
        ("plain", lambda: plain_compile(project, server, requests, env, threads, budget)),
        ("off", lambda: plugin_compile(project, requests, env, threads, budget, early_stop=False)),
        ("default", lambda: plugin_compile(project, requests, env, threads, budget, early_stop=True)),
    ]
    for i in range(repeats):
        # Rotate the order each repeat, so no side always runs right after the same neighbour.
        for key, step in steps[i % 3:] + steps[: i % 3]:
            result = step()
            runs[key].append(result)
            log(f"compile {result.who}: {result.wall:.2f}s, calls {result.calls}, test {result.test}")
            if key == "default" and not kept.exists():
                shutil.copyfile(project.artifact, kept)  # the artifact the gate and replay benchmarks load
    report.raw["compile"] = {key: [vars(r) for r in rs] for key, rs in runs.items()}
    off, default, plain = runs["off"], runs["default"], runs["plain"]

    def walls(rs: Sequence[CompileRun], attr: str) -> list[float]:
        return [float(getattr(r, attr)) for r in rs]

    sec = "2a compile, equal budget"
    r = ratio(median(walls(off, "wall")), median(walls(plain, "wall")))
    report.add(sec, "end-to-end wall (process: start-up, GEPA, test-split scoring)", seconds(walls(off, "wall")),
               seconds(walls(plain, "wall")), r, "<= 1.1x", r <= 1.1)
    r = ratio(median(walls(off, "cpu")), median(walls(plain, "cpu")))
    report.add(sec, "  CPU time of the whole process (user+sys; steadier than wall on a busy machine)",
               seconds(walls(off, "cpu")), seconds(walls(plain, "cpu")), r, "-", None)
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
    # the budget, and the plugin turns on GEPA's cache_evaluation, which shifts that boundary a little.
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
    return kept


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


# ---------------------------------------------------------------------------------------------- 3. gate


@dataclass
class GateRun:
    wall: float
    gate_wall: float
    calls: dict[str, int]


def plugin_gate(project: TriageHttpProject, requests: RequestLog | None, env: dict[str, str], threads: int,
                *extra: str) -> GateRun:
    """One pytest session gating the triage target once (the replay benchmark's unit)."""
    project.phases.unlink(missing_ok=True)
    mark = requests.mark() if requests is not None else 0
    result = run(pytest_cmd("-q", "--gepa-threads", str(threads), *extra, NODEID), cwd=project.root, env=env)
    require_ok(f"gate --gepa-threads {threads} {' '.join(extra)}", result)
    phases = project.read_phases()
    calls = calls_by_role(requests.since(mark)) if requests is not None else {}
    return GateRun(result.wall, phases["gate"][1] - phases["gate"][0], calls)


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
           "--threads", str(threads), "--plan", json.dumps(plan), "--out", str(out)]
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
        report.add(sec, f"{sub} first-call extra (first - warm: litellm import), vs plain",
                   f"{plugin.cold - median(warm):.3f} s", f"{plain.cold - median(plain_warm):.3f} s", None, "-", None)


# ---------------------------------------------------------------------------------------------- 4. replay


def bench_replay(report: Report, project: TriageHttpProject, server: Any, requests: RequestLog,
                 env: dict[str, str], repeats: int, threads: int) -> None:
    # The baseline: the same one-gate pytest session, live against the server (cheaper than the
    # gate benchmark's sessions, so two samples are enough next to the replays').
    live = []
    for _ in range(max(2, repeats - 1)):
        live.append(plugin_gate(project, requests, env, threads))
        log(f"live gate: gate {live[-1].gate_wall:.3f}s, process {live[-1].wall:.2f}s, calls {live[-1].calls}")
    project.cassette.unlink(missing_ok=True)
    recorded = plugin_gate(project, requests, env, threads, "--gepa-record")
    log(f"recorded a gate cassette: {recorded.calls} LM calls, {recorded.wall:.2f}s")
    # One replay while the server still answers: its request counter shows that no call escapes.
    before = total(dict(server.calls))
    watched = plugin_gate(project, requests, env, threads, "--gepa-replay")
    moved = total(dict(server.calls)) - before
    log(f"replayed gate with the server up: {moved} LM calls reached it")
    server.stop()  # then nothing answers at the LMs' address: a call that escaped replay would fail the test
    runs = []
    for _ in range(repeats):
        result = plugin_gate(project, None, env, threads, "--gepa-replay")  # require_ok: it passed
        runs.append(result)
        log(f"replayed gate, server stopped: gate {result.gate_wall:.3f}s, process {result.wall:.2f}s")
    report.raw["replay"] = {"recorded": vars(recorded), "watched": vars(watched), "runs": [vars(r) for r in runs],
                            "server_calls_moved": moved}
    sec = "4 replay"
    report.add(sec, "LM calls reaching the server during a replayed gate (its counter)", f"{moved}",
               f"{total(recorded.calls)} when recorded", None, "0", moved == 0)
    report.add(sec, "replayed gates passing with the server stopped", f"{len(runs)} of {repeats}", "-", None,
               "all", len(runs) == repeats)
    live_gate = [r.gate_wall for r in live]
    replayed_gate = [r.gate_wall for r in runs]
    report.add(sec, f"gepa.gate wall, replayed vs live (threads {threads}, L={server.latency:g}s)",
               seconds(replayed_gate), seconds(live_gate), ratio(median(replayed_gate), median(live_gate)), "-", None)
    report.add(sec, "whole pytest session (one gate), replayed vs live", seconds([r.wall for r in runs]),
               seconds([r.wall for r in live]), ratio(median([r.wall for r in runs]), median([r.wall for r in live])),
               "-", None)


# ---------------------------------------------------------------------------------------------- output


COLUMNS = ("metric", "plugin", "baseline", "ratio", "target", "ok?")


def table_rows(report: Report) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for row in report.rows:
        rows.append((f"[{row.section}] {row.metric}", row.plugin, row.baseline, row.ratio_text, row.target,
                     row.ok_text))
    return rows


def text_table(report: Report) -> str:
    rows = [COLUMNS, *table_rows(report)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = []
    for n, r in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(report: Report) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in table_rows(report):
        lines.append("| " + " | ".join(cell(c) for c in r) + " |")
    return "\n".join(lines)


def machine() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    def read(path: str, pattern: str) -> str:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError:
            return "unknown"
        match = re.search(pattern, text, re.MULTILINE)
        return match.group(1).strip() if match else "unknown"

    versions = []
    for dist in ("pytest-gepa", "dspy", "gepa", "litellm", "pytest", "pytest-xdist", "httpx", "openai"):
        try:
            versions.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            pass
    mem_kb = read("/proc/meminfo", r"^MemTotal:\s+(\d+)")
    return {
        "date": subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
        or datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "nproc": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip() or str(os.cpu_count()),
        "cpu": read("/proc/cpuinfo", r"^model name\s*:\s*(.+)$"),
        "memory": f"{int(mem_kb) / 1024 / 1024:.1f} GiB" if mem_kb.isdigit() else "unknown",
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": ", ".join(versions),
    }


def checkout() -> str:
    """The commit measured, and whether the plugin's sources differ from it (others edit concurrently)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = [line.split(maxsplit=1)[-1] for line in git("status", "--porcelain", "--", "pytest_gepa").splitlines()]
    return f"{commit}" + (f" plus uncommitted changes to {', '.join(dirty)}" if dirty else " (pytest_gepa/ clean)")


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3])
    except OSError:
        return "unknown"


ANALYSIS_BEGIN = "<!-- analysis:begin -->"
ANALYSIS_END = "<!-- analysis:end -->"


def kept_analysis(path: Path) -> str:
    """The hand-written analysis of an earlier RESULTS.md, kept across regenerations."""
    if not path.exists():
        return ""
    text = path.read_text(encoding="utf-8")
    start, end = text.find(ANALYSIS_BEGIN), text.find(ANALYSIS_END)
    if start < 0 or end < start:
        return ""
    return text[start: end + len(ANALYSIS_END)]


def write_results(path: Path, report: Report, info: dict[str, str], command: str, loads: tuple[str, str],
                  elapsed: float, checkouts: tuple[str, str]) -> None:
    misses = [r for r in report.rows if r.ok is False]
    analysis = kept_analysis(path) or f"{ANALYSIS_BEGIN}\n{ANALYSIS_END}"
    lines = [
        "# pytest-gepa benchmark results",
        "",
        "Generated by `benchmarks/run.py` (see `benchmarks/README.md`); every ratio is plugin / baseline,",
        "both measured in this one run. Times are medians over the repeats, with [min-max].",
        "",
        f"- date: {info['date']}",
        f"- machine: {info['nproc']} cores (`nproc`), {info['cpu']}, {info['memory']} RAM, {info['os']}",
        f"- load average (1/5/15 min) at start: {loads[0]}; at end: {loads[1]}",
        f"- {info['python']}; {info['packages']}",
        f"- checkout: {checkouts[0]}" + ("" if checkouts[1] == checkouts[0] else
                                         f" at the start; {checkouts[1]} at the end (changed during the run)"),
        f"- command: `{command}`",
        f"- wall time of the whole benchmark: {elapsed:.0f} s",
        "",
        markdown_table(report),
        "",
        "## Automatic notes",
        "",
    ]
    if misses:
        lines.append("Missed targets: " + "; ".join(f"[{r.section}] {r.metric} ({r.ratio_text or r.plugin}, "
                                                   f"target {r.target})" for r in misses) + ".")
    else:
        lines.append("Every target with an ok? column was met.")
    lines.extend(f"- {note}" for note in report.notes)
    lines.extend(["", "## Analysis", "", analysis, ""])
    path.write_text("\n".join(lines), encoding="utf-8")


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.02, help="seconds the server sleeps per LM call")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each compile, gate and replay run")
    parser.add_argument("--startup-repeats", type=int, default=11, help="repeats of each start-up run (cheap, noisy)")
    parser.add_argument("--startup-tests", type=int, default=200, help="trivial tests in the start-up suite")
    parser.add_argument("--rows", type=int, default=40, help="rows of the triage data file (split 2:1:1)")
    parser.add_argument("--threads", type=int, default=4, help="--gepa-threads (and num_threads) of the compiles")
    parser.add_argument("--gate-threads", default="1,4,8", help="comma-separated --gepa-threads of the gate runs")
    parser.add_argument("--high-latency", type=float, default=0.25,
                        help="a second, more LM-like per-call latency for the warm gates (seconds)")
    parser.add_argument("--budget", default="light", help="--gepa-budget of both compiles (same auto= / max calls)")
    parser.add_argument("--only", default="startup,compile,gate,replay", help="comma-separated sections to run")
    parser.add_argument("--results", type=Path, default=BENCH / "RESULTS.md",
                        help="where to write the results (default benchmarks/RESULTS.md); '-' for nowhere")
    parser.add_argument("--json", type=Path, default=None, help="also write every raw measurement to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory and print its path")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.startup_repeats < 1 or args.latency < 0:
        parser.error("--repeats and --startup-repeats must be at least 1, --latency at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sections = {s.strip() for s in args.only.split(",") if s.strip()}
    gate_threads = [int(t) for t in args.gate_threads.split(",") if t.strip()]
    command = " ".join(["python", os.path.relpath(__file__, Path.cwd()), *(argv if argv is not None else sys.argv[1:])])
    started, load_start, checkout_start = time.perf_counter(), load_average(), checkout()
    workdir = Path(tempfile.mkdtemp(prefix="pytest-gepa-bench-"))
    report = Report()
    log(f"working in {workdir}; load average {load_start}")
    try:
        if "startup" in sections:
            bench_startup(report, workdir, args.startup_repeats, args.startup_tests)
        if sections & {"compile", "gate", "replay"}:
            project = TriageHttpProject(workdir / "project", rows=args.rows)
            with scripted_server(args.latency) as (server, requests):
                env = {**base_env(workdir), "BENCH_BASE_URL": server.base_url,
                       "BENCH_PHASES": str(project.phases), "BENCH_CONTROL_URL": server.control_url}
                kept = bench_compile(report, project, server, requests, env, args.repeats, args.threads,
                                     args.budget) if "compile" in sections else None
                if sections & {"gate", "replay"}:
                    project.clean_artifacts()
                    if kept is None:  # gate or replay alone: compile the artifact they load, once
                        require_ok("compile for the gate", run(pytest_cmd("-q", "--gepa-compile", "--gepa-threads",
                                                                          str(args.threads), NODEID),
                                                               cwd=project.root, env=env))
                    else:
                        project.artifact.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(kept, project.artifact)
                    project.gate_artifact.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(project.artifact, project.gate_artifact)
                    if "gate" in sections:
                        bench_gate(report, project, server, requests, env, args.repeats, args.latency,
                                   args.high_latency, gate_threads)
                        server.latency = args.latency
                    if "replay" in sections:
                        bench_replay(report, project, server, requests, env, args.repeats, args.threads)
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.perf_counter() - started
    print(text_table(report))
    for note in report.notes:
        print(f"note: {note}")
    misses = [r for r in report.rows if r.ok is False]
    print(f"\n{len(misses)} target(s) missed; load average {load_start} -> {load_average()}; {elapsed:.0f} s")
    if str(args.results) != "-":
        write_results(args.results, report, machine(), command, (load_start, load_average()), elapsed,
                      (checkout_start, checkout()))
        print(f"wrote {args.results}")
    if args.json is not None:
        args.json.write_text(json.dumps({"rows": [vars(r) for r in report.rows], "notes": report.notes,
                                         "raw": report.raw}, indent=1, default=str), encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
