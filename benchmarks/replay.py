"""Replay: a replayed one-target gate costs little more than importing dspy.

The triage project (``_project.py``, with the examples' JSONAdapter, whose capability questions
went to litellm before the cassette answered them) is compiled and recorded once (``--gepa-compile
--gepa-record``) against the scripted server, then gated with ``--gepa-replay``:

* once with the server still up: its request counter must not move (0 LM calls);
* ``--replay-repeats`` times with the server stopped (each must pass: a call that escaped the
  cassette would fail), interleaved with a pytest run of one test that only does ``import dspy``
  in a project of its own, the floor of any run that touches a dspy program. Target: the replayed
  session's median wall time <= 1.2x that run's;
* once under ``-X importtime``, next to the dspy-only run: every module the replay imports that
  the dspy-only run does not. None of litellm, a provider client or jinja2 may be among them.

Both sides run with bytecode caching on (in a ``PYTHONPYCACHEPREFIX`` inside the temp directory,
after one warm-up run each), as an installed package runs: without it pytest re-parses and
rewrites the plugin's modules on every start.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from _harness import (
    PYTHON,
    Context,
    RequestLog,
    base_env,
    calls_by_role,
    log,
    median,
    pytest_cmd,
    ratio,
    require_ok,
    run,
    scripted_server,
    seconds,
    total,
    with_bytecode_cache,
)
from _project import NODEID, TriageHttpProject, write_dspy_only_suite

TITLE = "replay: a replayed gate session vs a pytest run that only imports dspy"
TARGET = 1.2
# What a replay must never import: litellm and the provider clients it pulls in, and the report
# page's template engine (a replay with no --gepa-report has no page to render).
HEAVY = ("litellm", "openai", "anthropic", "httpx", "aiohttp", "jinja2", "tiktoken", "tokenizers", "llama_cpp",
         "google", "boto3", "botocore")


@dataclass
class GateRun:
    wall: float
    cpu: float
    gate_wall: float
    calls: dict[str, int]


def plugin_gate(project: TriageHttpProject, requests: RequestLog | None, env: dict[str, str], threads: int,
                *extra: str) -> GateRun:
    """One pytest session gating the triage target once."""
    project.phases.unlink(missing_ok=True)
    mark = requests.mark() if requests is not None else 0
    result = run(pytest_cmd("-q", "--gepa-threads", str(threads), *extra, NODEID), cwd=project.root, env=env)
    require_ok(f"gate --gepa-threads {threads} {' '.join(extra)}", result)
    phases = project.read_phases()
    calls = calls_by_role(requests.since(mark)) if requests is not None else {}
    return GateRun(result.wall, result.cpu, phases["gate"][1] - phases["gate"][0], calls)


def imported(stderr: str) -> dict[str, int]:
    """Module -> self time in microseconds, from ``-X importtime``."""
    found: dict[str, int] = {}
    for line in stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)", line)
        if match:
            found[match.group(3)] = int(match.group(1))
    return found


def bench(ctx: Context) -> None:
    args, report = ctx.args, ctx.report
    workdir = ctx.folder("replay")
    project = TriageHttpProject(workdir / "project", rows=args.rows, json_adapter=True)
    dspy_only = write_dspy_only_suite(workdir / "dspy-only")
    env = with_bytecode_cache(base_env(workdir), workdir)
    env["BENCH_PHASES"] = str(project.phases)
    threads = args.threads
    with scripted_server(args.latency) as (server, requests):
        env["BENCH_BASE_URL"] = server.base_url
        require_ok("replay: compile and record", run(pytest_cmd("-q", "--gepa-compile", "--gepa-record",
                                                                "--gepa-threads", str(threads), NODEID),
                                                     cwd=project.root, env=env))
        live = [plugin_gate(project, requests, env, threads) for _ in range(2)]
        log(f"live gate: process {median([r.wall for r in live]):.2f}s, calls {live[-1].calls}")
        before = total(dict(server.calls))
        plugin_gate(project, requests, env, threads, "--gepa-replay")
        moved = total(dict(server.calls)) - before
        log(f"replayed gate with the server up: {moved} LM calls reached it")
    # The server is stopped: nothing answers at the LMs' address, so a call that escaped replay fails.
    replay_cmd = pytest_cmd("-q", "--gepa-threads", str(threads), "--gepa-replay", NODEID)
    dspy_cmd = pytest_cmd("-q")
    for cmd, cwd in ((replay_cmd, project.root), (dspy_cmd, dspy_only)):
        require_ok("replay: warm-up", run(cmd, cwd=cwd, env=env))  # writes the bytecode caches
    walls: dict[str, list[float]] = {"replay": [], "dspy": []}
    cpus: dict[str, list[float]] = {"replay": [], "dspy": []}
    passed = 0
    for i in range(args.replay_repeats):
        order = (("replay", replay_cmd, project.root), ("dspy", dspy_cmd, dspy_only))
        for who, cmd, cwd in order if i % 2 == 0 else tuple(reversed(order)):
            result = run(cmd, cwd=cwd, env=env)
            require_ok(f"replay benchmark: {who}", result)
            passed += who == "replay"
            walls[who].append(result.wall)
            cpus[who].append(result.cpu)
    log(f"replayed gate {median(walls['replay']):.3f}s vs import dspy {median(walls['dspy']):.3f}s")
    # -s: pytest captures fd 2 while it imports conftests and test modules, and importtime writes there.
    traced = [PYTHON, "-X", "importtime", *pytest_cmd("-q", "-s")[1:]]
    replay_imports = imported(require_ok_run("replay: -X importtime", [*traced, "--gepa-replay", NODEID],
                                             project.root, env))
    dspy_imports = imported(require_ok_run("dspy only: -X importtime", traced, dspy_only, env))
    extra = {name: us for name, us in replay_imports.items() if name not in dspy_imports}
    heavy = sorted({name.split(".")[0] for name in replay_imports} & set(HEAVY))
    packages: dict[str, int] = {}
    for name, us in extra.items():
        packages[name.split(".")[0]] = packages.get(name.split(".")[0], 0) + us

    report.raw["replay"] = {"walls": walls, "cpus": cpus, "live": [vars(r) for r in live], "moved": moved,
                            "extra_imports": extra}
    sec = "4 replay"
    r = ratio(median(walls["replay"]), median(walls["dspy"]))
    report.add(sec, "replayed one-target gate session vs a pytest run of one test that only imports dspy: wall",
               seconds(walls["replay"]), seconds(walls["dspy"]), r, f"<= {TARGET}x", r <= TARGET)
    report.add(sec, "  the same: CPU (user+sys)", seconds(cpus["replay"]), seconds(cpus["dspy"]),
               ratio(median(cpus["replay"]), median(cpus["dspy"])), "-", None)
    report.add(sec, "litellm / provider clients / jinja2 imported by the replayed session",
               ", ".join(heavy) or "none", "-", None, "none", not heavy)
    shown = ", ".join(f"{name} {us / 1000:.1f} ms" for name, us in sorted(packages.items(), key=lambda kv: -kv[1]))
    report.add(sec, "  what the replay imports beyond import dspy (self time, -X importtime)", shown or "nothing",
               "-", None, "-", None)
    report.add(sec, "LM calls reaching the server during a replayed gate (its counter)", f"{moved}",
               f"{total(live[-1].calls)} when live", None, "0", moved == 0)
    report.add(sec, "replayed gates passing with the server stopped", f"{passed} of {args.replay_repeats}", "-",
               None, "all", passed == args.replay_repeats)
    report.add(sec, "whole pytest session (one gate), replayed vs live", seconds(walls["replay"]),
               seconds([x.wall for x in live]), ratio(median(walls["replay"]), median([x.wall for x in live])),
               "-", None)


def require_ok_run(what: str, cmd: Sequence[str], cwd: Path, env: dict[str, str]) -> str:
    result = run(cmd, cwd=cwd, env=env)
    require_ok(what, result)
    return result.stderr
