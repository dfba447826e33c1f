"""Resume: what a compile killed halfway and continued with --gepa-resume costs, against one uninterrupted.

Three real pytest subprocesses on the triage project of ``_project.py`` (LMs over HTTP, the scripted
world with a per-call latency), ``-o gepa_stop_at=off`` so GEPA uses its whole budget:

1. an uninterrupted ``--gepa-compile``: its task-LM calls and the artifact's scores;
2. the same compile from nothing, killed (SIGKILL) once the world has answered ``--kill-at`` of those
   task calls (the world holds the next call and writes a marker: a state certain to come);
3. ``--gepa-compile --gepa-resume``: it continues from the state kept under pytest's cache.

The ratio is (task calls of 2 + 3) / (task calls of 1); the issue's target is at most 1.15, with the
same scores in the artifact. Nothing leaves 127.0.0.1.

    python benchmarks/resume.py                        # about a minute
    python benchmarks/resume.py --latency 0.05 --kill-at 0.3 --json resume.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(REPO / "tests"))

import world  # noqa: E402  (needs the path and the environment above)
from _project import TriageHttpProject  # noqa: E402

TARGET_RATIO = 1.15
COMPILE = ("test_triage.py", "-p", "no:randomly", "--gepa-compile", "-o", "gepa_stop_at=off")


def _env(workdir: Path, base_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", DSPY_CACHEDIR=str(workdir / "dspy-cache"),
               BENCH_BASE_URL=base_url, PYTHONDONTWRITEBYTECODE="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    return env


def _compile(project: TriageHttpProject, workdir: Path, latency: float, budget: str, *extra: str) -> dict[str, Any]:
    with world.ScriptedServer(latency=latency) as server:
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", *COMPILE, "--gepa-budget", budget, *extra],
                              cwd=project.root, env=_env(workdir, server.base_url), capture_output=True, text=True,
                              timeout=1800)
        wall = time.perf_counter() - started
        calls = server.calls["task"]
    if proc.returncode != 0:
        raise SystemExit(f"the compile {' '.join(extra) or ''} failed ({proc.returncode}):\n{proc.stdout[-3000:]}")
    resumed = [line for line in proc.stdout.splitlines() if "resumed at iteration" in line]
    return {"task_calls": calls, "wall_s": round(wall, 2), "resumed": resumed[0].strip() if resumed else None}


def _killed(project: TriageHttpProject, workdir: Path, latency: float, budget: str, after: int) -> dict[str, Any]:
    marker = workdir / "held"
    marker.unlink(missing_ok=True)
    block = world.Block(after=after, marker=marker, seconds=600)
    with world.ScriptedServer(world.World(block=block), latency=latency) as server:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "pytest", *COMPILE, "--gepa-budget", budget],
                                   cwd=project.root, env=_env(workdir, server.base_url), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            while not marker.exists():
                if process.poll() is not None:
                    raise SystemExit(f"the compile ended ({process.returncode}) before {after} task calls")
                time.sleep(0.05)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            block.release()
        wall = time.perf_counter() - started
        calls = server.calls["task"]  # the calls held when it was killed count too: a provider may bill them
    return {"task_calls": calls, "answered": block.task_calls, "wall_s": round(wall, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per LM call (default 0.02)")
    parser.add_argument("--budget", default="light", help="--gepa-budget of every compile (default light)")
    parser.add_argument("--kill-at", type=float, default=0.5,
                        help="share of the uninterrupted run's task calls after which the run is killed (default 0.5)")
    parser.add_argument("--rows", type=int, default=40, help="triage data rows (default 40)")
    parser.add_argument("--json", type=Path, help="write every measurement to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="pytest-gepa-bench-resume-"))
    try:
        project = TriageHttpProject(workdir / "project", rows=args.rows)
        whole = _compile(project, workdir, args.latency, args.budget)
        scores = project.read_artifact()["scores"]
        project.clean_artifacts()
        shutil.rmtree(project.root / ".pytest_cache", ignore_errors=True)
        after = max(1, int(whole["task_calls"] * args.kill_at))
        killed = _killed(project, workdir, args.latency, args.budget, after)
        resumed = _compile(project, workdir, args.latency, args.budget, "--gepa-resume")
        same = project.read_artifact()["scores"] == scores
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    total = killed["task_calls"] + resumed["task_calls"]
    ratio = total / whole["task_calls"]
    ok = ratio <= TARGET_RATIO and same
    print(f"uninterrupted compile:   {whole['task_calls']:5d} task calls  {whole['wall_s']:7.2f}s")
    print(f"killed at {args.kill_at:.0%}:           {killed['task_calls']:5d} task calls  {killed['wall_s']:7.2f}s")
    print(f"resumed:                 {resumed['task_calls']:5d} task calls  {resumed['wall_s']:7.2f}s  "
          f"({resumed['resumed'] or 'no resume line!'})")
    print(f"killed + resumed:        {total:5d} task calls: ratio {ratio:.3f} (target <= {TARGET_RATIO}); "
          f"same scores: {same}; {'ok' if ok else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps({"uninterrupted": whole, "killed": killed, "resumed": resumed, "ratio": ratio,
                                         "same_scores": same, "latency": args.latency, "budget": args.budget,
                                         "kill_at": args.kill_at}, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
