"""Compiles against the noisy eight-rule world: GEPA's decisions on one draw vs on fresh draws.

The world is ``tests/world``'s eight-rule triage task (``GEPA_TEST_WORLD=triage8``, see
``world/triage8.py``): its reflector, misled by a failure nothing in the instruction explains (noise),
appends an over-broad fallback below which every later rule is dead text. For noise 0 (once: every
seed is the same world) and noise 0.1 (``--noisy-seeds`` seeds), a fresh ``python -m world.server``
per compile and two real ``pytest --gepa-compile`` sessions of the triage project on the task's data
at the same ``--budget``: ``-o gepa_compile_samples=1`` (GEPA on single draws, the compile without
the feature) and the default 3. From each artifact: how many of the eight rules the student applies
under its instruction (``world.triage8.rules_learned8``: a rule below the fallback does not count),
its noise-free test score (the student is deterministic without noise, so it is computed from the
instruction: what a gate on the clean world scores) and the LM calls of the compile session (the
artifact's ``lm_usage``: task and reflection, optimizer and gate).
"""

from __future__ import annotations

import json
import sys
from statistics import mean
from typing import Any

from _harness import REPO, Context, base_env, log, pytest_cmd, require_ok, run
from _project import NODEID, TriageHttpProject
from noisy_gates import world_server

TITLE = "compiles against the noisy eight-rule world: decisions on one draw vs on fresh draws"
LEVELS = (0.0, 0.1)
BORDERLINE = 0.25
SIDES = (("one draw (gepa_compile_samples=1)", 1), ("fresh draws (default, gepa_compile_samples=3)", 3))


def _world() -> Any:
    sys.path.insert(0, str(REPO / "tests"))
    import world.triage8

    return world.triage8


def judge(project: TriageHttpProject) -> dict[str, Any]:
    """Rules learned, noise-free test score and LM calls of the project's artifact."""
    triage8 = _world()
    artifact = json.loads(project.artifact.read_text(encoding="utf-8"))
    instruction = "\n".join(artifact["instructions"].values())
    rows = [json.loads(line) for line in project.data.read_text(encoding="utf-8").splitlines() if line.strip()]
    test = [row for row in rows if row["split"] == "test"]
    right = sum(triage8.classify8(row["ticket"], instruction)[0] == row["category"] for row in test)
    usage = artifact["optimizer"].get("lm_usage") or {}
    return {"rules": triage8.rules_learned8(instruction), "of": len(triage8.CONVENTIONS8), "test": right / len(test),
            "calls": sum(int(role.get("calls", 0)) for role in usage.values()),
            "metric_calls": artifact["optimizer"].get("metric_calls"),
            "draws": artifact["optimizer"].get("decision_draws"), "selection": artifact["optimizer"].get("selection")}


def bench(ctx: Context) -> None:
    args = ctx.args
    workdir = ctx.folder("noisy-compiles")
    # A min_score of 0: a compile that lost rules must still pass its gate, so its artifact is written and read.
    project = TriageHttpProject(workdir / "project", rows=args.rows, thresholds="min_score=0.0")
    _world().write_triage8_jsonl(project.data)
    env = {**base_env(workdir), "GEPA_TEST_WORLD": "triage8"}
    raw: dict[str, Any] = {}
    for level in LEVELS:
        seeds = range(args.noisy_seeds) if level > 0 else range(1)
        runs: dict[int, list[dict[str, Any]]] = {samples: [] for _, samples in SIDES}
        for seed in seeds:
            spec = f"noise={level:g},borderline={BORDERLINE:g},seed={seed}" if level > 0 else None
            for who, samples in SIDES:
                # A fresh server per compile: the world's call counts start at zero for both sides.
                with world_server(env, spec) as base_url:
                    project.clean_artifacts()
                    result = run(pytest_cmd("-q", "--gepa-compile", "--gepa-budget", args.budget, "--gepa-threads",
                                            str(args.threads), "-o", f"gepa_compile_samples={samples}", NODEID),
                                 cwd=project.root, env={**env, "BENCH_BASE_URL": base_url})
                require_ok(f"noisy compile {spec} {who}", result)
                seen = {"seed": seed, **judge(project)}
                runs[samples].append(seen)
                log(f"noisy compile {spec or 'noise 0'} {who}: {seen['rules']}/{seen['of']} rules, test "
                    f"{seen['test']:.2f}, {seen['calls']} LM calls, {seen['draws']} decision draws")
        raw[f"{level:g}"] = runs
        _rows(ctx, level, runs)
    ctx.report.raw["noisy_compiles"] = raw


def _rows(ctx: Context, level: float, runs: dict[int, list[dict[str, Any]]]) -> None:
    one, drawn = runs[1], runs[3]
    sec = f"6 noisy compiles, eight-rule world, noise {level:g}" + ("" if level > 0 else " (deterministic)")

    def rules(rs: list[dict[str, Any]]) -> str:
        return ", ".join(f"{r['rules']}" for r in rs) + f" of {rs[0]['of']}"

    def tests(rs: list[dict[str, Any]]) -> str:
        each = ", ".join(f"{r['test']:.2f}" for r in rs)
        return f"{mean(r['test'] for r in rs):.3f} ({each})"

    calls_one, calls_drawn = mean(r["calls"] for r in one), mean(r["calls"] for r in drawn)
    ratio = calls_drawn / calls_one if calls_one else float("nan")
    if level > 0:
        seeds = ", ".join(str(r["seed"]) for r in drawn)
        ctx.report.add(sec, f"rules learned per compile, noise seeds {seeds} (target: every compile >= 7 of 8)",
                       rules(drawn), rules(one), None, ">= 7 each", all(r["rules"] >= 7 for r in drawn))
        ctx.report.add(sec, "noise-free test score, mean (per seed)", tests(drawn), tests(one), None, ">= 0.95",
                       mean(r["test"] for r in drawn) >= 0.95)
        ctx.report.add(sec, "LM calls per compile session, mean", f"{calls_drawn:.0f}", f"{calls_one:.0f}", ratio,
                       "-", None)
        ctx.report.add(sec, "draws spent on decisions, per compile", ", ".join(str(r["draws"]) for r in drawn),
                       "-", None, "-", None)
    else:
        same = [(r["rules"], r["test"]) for r in drawn] == [(r["rules"], r["test"]) for r in one]
        ctx.report.add(sec, "rules learned / noise-free test score", f"{rules(drawn)} / {tests(drawn)}",
                       f"{rules(one)} / {tests(one)}", None, "same", same)
        ctx.report.add(sec, "LM calls per compile session", f"{calls_drawn:.0f}", f"{calls_one:.0f}", ratio,
                       "<= 1.1x", ratio <= 1.1)
