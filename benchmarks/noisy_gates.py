"""Verdicts in real pytest runs against the noisy world: does the simulation of ``verdicts.py`` match?

The triage project (``_project.py``; ``--noisy-rows`` 80 gives a test split of 20, the simulation's n=20)
is compiled once against the clean world, served by ``python -m world.server`` in a subprocess.
Then, for each of ``--noisy-seeds`` seeds, a fresh server with the world's noise mode
(``noise=0.2,borderline=0.25,seed=N``; see ``tests/world/noise.py``) and one pytest session gating
the artifact with ``--gepa-samples 3`` and ``max_drop=0.05`` (the simulation's); the same again with
``regress=0.25`` planted (a quarter of the non-borderline inputs answered wrong on every call). Each
outcome (passed / failed / inconclusive) comes from the session's ``--gepa-report`` JSON.

Next to the counts: the rates the gate's own staged decision (``decide_in_stages``, second look
included) gives in ``--reruns`` simulated reruns of this very devset (which inputs the world makes
borderline and which it breaks, against the draws the artifact recorded), and the cell of the
verdicts table nearest to it (whose recordings are noisy too, and whose deterministic examples are
80% right).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import mean
from typing import Any

from _harness import (
    PYTHON,
    REPO,
    Context,
    base_env,
    log,
    pytest_cmd,
    read_json,
    require_ok,
    run,
)
from _project import NODEID, TriageHttpProject
from verdicts import DROPS, SIZES
from verdicts import simulate as simulate_cell

from pytest_gepa.data.ids import input_hash_id
from pytest_gepa.verdict.stages import decide_in_stages

TITLE = "verdicts in real pytest runs against the noisy HTTP world, next to the simulation"
NOISE, BORDERLINE, REGRESS, SAMPLES, MAX_DROP, CONFIDENCE = 0.2, 0.25, 0.25, 3, 0.05, 0.95
STATUSES = ("passed", "inconclusive", "failed")


@contextmanager
def world_server(env: dict[str, str], noise: str | None) -> Iterator[str]:
    """``python -m world.server`` with ``noise`` (None: the clean world); yields its base URL."""
    env = {k: v for k, v in env.items() if k != "GEPA_TEST_NOISE"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests"), env.get("PYTHONPATH", "")])
    cmd = [PYTHON, "-m", "world.server", "--port", "0", *(("--noise", noise) if noise else ())]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()  # the one line it prints once it serves
        if not base_url.startswith("http"):
            raise SystemExit(f"world.server did not start: {' '.join(cmd)!r} printed {base_url!r}")
        yield base_url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def noise_spec(seed: int, regress: float) -> str:
    return f"noise={NOISE:g},borderline={BORDERLINE:g},regress={regress:g},seed={seed}"


def gate_once(project: TriageHttpProject, env: dict[str, str], noise: str, report: Path) -> dict[str, Any]:
    with world_server(env, noise) as base_url:
        report.unlink(missing_ok=True)
        result = run(pytest_cmd("-q", "--gepa-samples", str(SAMPLES), "--gepa-report", str(report), NODEID),
                     cwd=project.root, env={**env, "BENCH_BASE_URL": base_url})
    if not report.exists():
        require_ok(f"noisy gate ({noise})", result)  # no report: show why
    target: dict[str, Any] = read_json(report)["targets"][0]
    return target


def devset_cases(project: TriageHttpProject, regress: float
                 ) -> tuple[dict[str, list[float]], set[str], set[str]]:
    """The artifact's recorded draws by example id, and which test inputs the world makes borderline
    and which it breaks (the same inputs under every seed: a stable hash of each input)."""
    sys.path.insert(0, str(REPO / "tests"))
    from world.noise import Noise

    world_noise = Noise(noise=NOISE, borderline=BORDERLINE, regress=regress)
    recorded = {eid: list(draws) for eid, draws in read_json(project.artifact)["scores"]["devset"]["draws"].items()}
    borderline, broken = set(), set()
    for line in project.data.read_text(encoding="utf-8").splitlines():
        row = json.loads(line) if line.strip() else None
        if row is None or row["split"] != "test":
            continue
        key = json.dumps({"ticket": row["ticket"]}, sort_keys=True, ensure_ascii=False)  # the world's key
        eid = input_hash_id({"ticket": row["ticket"]})
        if world_noise.is_borderline(key):
            borderline.add(eid)
        elif world_noise.is_regressed(key):
            broken.add(eid)
    return recorded, borderline, broken


def simulate(recorded: dict[str, list[float]], borderline: set[str], broken: set[str], reruns: int) -> Counter[str]:
    """The gate's staged decision over simulated reruns of this devset: each borderline example wrong
    on a call with probability NOISE, each broken one wrong on every call, the rest as recorded (the
    artifact was compiled on the clean world, so its draws of an example agree)."""
    rng = random.Random(f"noisy-gates-{len(recorded)}-{len(borderline)}-{len(broken)}")
    per_example = {eid: mean(draws) for eid, draws in recorded.items()}

    def draw(eid: str, k: int) -> list[float]:
        if eid in broken:
            return [0.0] * k
        if eid in borderline and per_example[eid] > 0:
            return [float(rng.random() >= NOISE) for _ in range(k)]
        return [per_example[eid]] * k

    outcomes: Counter[str] = Counter()
    for _ in range(reruns):
        today = {eid: draw(eid, SAMPLES) for eid in recorded}
        staged = decide_in_stages(today, lambda plan: {eid: draw(eid, k) for eid, k in plan.items()},
                                  min_score=None, max_drop=MAX_DROP, recorded=per_example, recorded_draws=recorded,
                                  confidence=CONFIDENCE, samples=SAMPLES, max_samples=3 * SAMPLES)
        outcomes[staged.verdict.status] += 1
    return outcomes


def counts_text(outcomes: Counter[str], total: int) -> str:
    return " / ".join(f"{outcomes.get(status, 0)}" for status in STATUSES) + f" of {total}"


def rates_text(outcomes: Counter[str], total: int) -> str:
    return " / ".join(f"{100 * outcomes.get(status, 0) / total:.0f}%" for status in STATUSES)


def bench(ctx: Context) -> None:
    args = ctx.args
    workdir = ctx.folder("noisy")
    project = TriageHttpProject(workdir / "project", rows=args.noisy_rows, thresholds=f"max_drop={MAX_DROP}")
    env = base_env(workdir)
    with world_server(env, None) as base_url:
        require_ok("noisy: compile on the clean world", run(pytest_cmd("-q", "--gepa-compile", NODEID),
                                                            cwd=project.root, env={**env, "BENCH_BASE_URL": base_url}))
    n = project.splits()["test"]
    lines = [
        "## Verdicts in real pytest runs",
        "",
        f"Generated by `benchmarks/noisy_gates.py`: the triage project ({n} test examples) compiled once on the "
        f"clean world, then gated by real pytest sessions against `python -m world.server` in noise mode "
        f"(`noise={NOISE:g},borderline={BORDERLINE:g},seed=N`, one server and one seed per session), "
        f"`--gepa-samples {SAMPLES}`, `max_drop={MAX_DROP}`, confidence {CONFIDENCE}. Outcomes are "
        "passed / inconclusive / failed. *simulated* is the gate's staged decision on this very devset (the inputs "
        f"the world makes borderline or breaks, the draws the artifact recorded) over {args.reruns} seeded reruns.",
        "",
        "| world | real sessions | outcomes (passed / inconcl. / failed) | simulated, this devset | "
        "nearest verdicts cell | borderline / broken examples | scores seen |",
        "|---|---|---|---|---|---|---|",
    ]
    raw: dict[str, Any] = {}
    for label, regress in (("unchanged", 0.0), (f"regress={REGRESS:g} planted", REGRESS)):
        outcomes: Counter[str] = Counter()
        scores = []
        for seed in range(args.noisy_seeds):
            spec = noise_spec(seed, regress)
            target = gate_once(project, env, spec, workdir / f"report-{regress:g}-{seed}.json")
            outcomes[str(target["status"])] += 1
            scores.append(target.get("score"))
            log(f"noisy gate {spec}: {target['status']}, score {target.get('score')}, drop {target.get('drop')}")
        recorded, borderline, broken = devset_cases(project, regress)
        simulated = simulate(recorded, borderline, broken, args.reruns)
        size = min(SIZES, key=lambda s: abs(s - n))
        drop = min((0.0, *DROPS), key=lambda d: abs(d - len(broken) / n))
        cell = simulate_cell(size, NOISE, SAMPLES, drop, args.reruns)
        nearest = Counter({"passed": cell.reruns - cell.failed - cell.inconclusive, "inconclusive": cell.inconclusive,
                           "failed": cell.failed})
        raw[label] = {"outcomes": dict(outcomes), "scores": scores, "simulated": dict(simulated),
                      "nearest": {"n": size, "drop": drop, **nearest}}
        shown = ", ".join("-" if s is None else f"{s:.2f}" for s in scores)
        lines.append(f"| {label} | {args.noisy_seeds} | {counts_text(outcomes, args.noisy_seeds)} | "
                     f"{rates_text(simulated, args.reruns)} | n={size}, drop {drop:.2f}: "
                     f"{rates_text(nearest, cell.reruns)} | {len(borderline)} / {len(broken)} of {n} | {shown} |")
        unexpected = set(outcomes) - set(STATUSES)
        if unexpected:
            ctx.report.notes.append(f"noisy gates ({label}): statuses other than a verdict: {sorted(unexpected)}.")
    lines += ["", "A real session's outcome is one draw from the simulated distribution: with "
              f"{args.noisy_seeds} sessions per row, a count within a couple of sessions of "
              f"{args.noisy_seeds} x the simulated rate is the match to expect."]
    ctx.report.raw["noisy_gates"] = raw
    ctx.blocks["noisy"] = "\n".join(lines)
