"""Start-up: plain pytest on a suite with no gepa tests, with the plugin vs ``-p no:gepa``.

200 trivial tests in 10 modules, no conftest: ``-q``, ``--collect-only -q`` and ``--help``, wall
time (target <= 1.05x) and the children's CPU time, with bytecode caching on as for an installed
package; and from ``-X importtime``, the plugin's own modules and a check that dspy / litellm /
gepa are not imported at all.
"""

from __future__ import annotations

import re
from pathlib import Path

from _harness import (
    PYTHON,
    Context,
    Report,
    base_env,
    log,
    median,
    pytest_cmd,
    ratio,
    require_ok,
    run,
    seconds,
    with_bytecode_cache,
)
from _project import write_trivial_suite

TITLE = "start-up: a run with no gepa test, plugin vs -p no:gepa"


STARTUP_VARIANTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("run 200 trivial tests (-q)", ("-q",)),
    ("collect only (--collect-only -q)", ("--collect-only", "-q")),
    ("--help", ("--help",)),
)


def bench(ctx: Context) -> None:
    report, repeats, tests = ctx.report, ctx.args.startup_repeats, ctx.args.startup_tests
    workdir = ctx.folder("startup")
    suite = write_trivial_suite(workdir / "trivial", tests)
    # Bytecode caching on, as an installed package runs (its wheel's .pyc files; pytest's own are
    # cached in site-packages): without it every start re-compiles the plugin's source, a cost no
    # installed plugin pays. The warm-up run below writes the cache.
    env = with_bytecode_cache(base_env(workdir), workdir)
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


