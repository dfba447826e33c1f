"""What every benchmark shares: the results table, the scripted LM server, the measured subprocesses,
and the ``Context`` a benchmark runs in (its options, its temp directory, the triage project and
server that the compile and gate benchmarks share).

Every pytest run is a real subprocess on a generated project (``_project.py``) in a temp directory;
the LMs are the scripted world of ``tests/world`` served over HTTP from a thread of this process.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
PYTHON = sys.executable

# The world imports dspy, which imports litellm: ask for the bundled price map first, never a download.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# The checkout before any installed copy of the plugin, and tests/ for the scripted world.
for _path in (REPO / "tests", REPO):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import world  # noqa: E402  (needs the path and the environment above)
from _project import GATE_FILE, TriageHttpProject  # noqa: E402

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


def with_bytecode_cache(env: dict[str, str], workdir: Path) -> dict[str, str]:
    """``env`` as an installed package runs: bytecode cached (in a ``PYTHONPYCACHEPREFIX`` inside the
    temp directory, written by a warm-up run), so neither side re-parses its source on every run."""
    cached = {key: value for key, value in env.items() if key != "PYTHONDONTWRITEBYTECODE"}
    cached["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    return cached


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




# ---------------------------------------------------------------------------------------------- context


@dataclass
class Triage:
    """The triage project and the live server the compile and gate benchmarks share."""

    project: TriageHttpProject
    server: Any
    requests: RequestLog
    env: dict[str, str]


@dataclass
class Context:
    """What a benchmark gets: the options, the report it adds rows to, a temp directory of its own."""

    args: argparse.Namespace
    report: Report
    workdir: Path
    stack: ExitStack = field(default_factory=ExitStack)
    blocks: dict[str, str] = field(default_factory=dict)  # RESULTS.md sections by block name (see _results)
    _triage: Triage | None = None
    _others: dict[str, Triage] = field(default_factory=dict)

    def folder(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def triage(self, lms: str = "own") -> Triage:
        """The shared triage project over HTTP, its server started on first use (stopped by ``close``).
        ``lms``: how the project names its LMs (``_project.LM_KINDS``); each kind has its own project
        on the one server."""
        if lms != "own":
            if lms not in self._others:
                shared = self.triage()
                project = TriageHttpProject(self.workdir / f"project-{lms}", rows=self.args.rows, lms=lms)
                self._others[lms] = Triage(project, shared.server, shared.requests,
                                           {**shared.env, "BENCH_PHASES": str(project.phases)})
            return self._others[lms]
        if self._triage is None:
            project = TriageHttpProject(self.workdir / "project", rows=self.args.rows)
            server, requests = self.stack.enter_context(scripted_server(self.args.latency))
            env = {**base_env(self.workdir), "BENCH_BASE_URL": server.base_url,
                   "BENCH_PHASES": str(project.phases), "BENCH_CONTROL_URL": server.control_url}
            self._triage = Triage(project, server, requests, env)
        return self._triage

    def compiled_triage(self, lms: str = "own") -> Triage:
        """The shared project with the gate test's artifact compiled (once, with the default early stop)."""
        triage = self.triage(lms)
        if not triage.project.gate_artifact.exists():
            cmd = pytest_cmd("-q", "--gepa-compile", "--gepa-threads", str(self.args.threads), GATE_FILE)
            require_ok("compile for the gate", run(cmd, cwd=triage.project.root, env=triage.env))
        return triage

    def close(self) -> None:
        self.stack.close()


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


