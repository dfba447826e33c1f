"""pytest-gepa's benchmarks: every number a ratio against a baseline measured in the same run.

    python benchmarks/run.py                  # all of them, in the order below
    python benchmarks/run.py replay gate      # a subset, by name
    python benchmarks/run.py --list           # the names

Each benchmark is one module of this folder (``TITLE`` and ``bench(ctx)``), named in ``BENCHMARKS``;
``_harness.py`` holds what they share (server, subprocesses, the results table), ``_project.py`` the
generated projects, ``_results.py`` the printed table and RESULTS.md. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from _harness import BENCH, Context, Report, log
from _results import checkout, load_average, machine, text_table, write_results

# name -> module, in the order they run. A new benchmark is one line here and a module with
# TITLE and bench(ctx: Context) -> None.
BENCHMARKS: dict[str, str] = {
    "startup": "startup",  # plugin vs -p no:gepa on a suite with no gepa test
    "compile": "compiling",  # --gepa-compile vs plain dspy.GEPA
    "gate": "gating",  # gepa.gate vs the ideal and plain dspy.Evaluate
    "replay": "replay",  # a replayed gate vs a run that only imports dspy
    "verdicts": "verdicts",  # the point gate and decide under noise, simulated
    "noisy": "noisy_gates",  # real pytest gates against the noisy world, next to the simulation
    "noisy-compile": "noisy_compiles",  # compiles against the noisy world, one draw vs gepa_compile_samples
    "recording": "recording",  # one LM call behind the meter and cassette vs a plain dspy call
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default all): {', '.join(BENCHMARKS)}")
    parser.add_argument("--list", action="store_true", help="print the benchmarks' names and titles, then exit")
    parser.add_argument("--only", default="", help="comma-separated names (the same as naming them)")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds the server sleeps per LM call")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each compile and gate run")
    parser.add_argument("--startup-repeats", type=int, default=11, help="repeats of each start-up run (cheap, noisy)")
    parser.add_argument("--startup-tests", type=int, default=200, help="trivial tests in the start-up suite")
    parser.add_argument("--replay-repeats", type=int, default=9,
                        help="repeats of the replayed gate and of the dspy-only run (cheap, noisy)")
    parser.add_argument("--rows", type=int, default=40, help="rows of the triage data file (split 2:1:1)")
    parser.add_argument("--threads", type=int, default=4, help="--gepa-threads (and num_threads) of the compiles")
    parser.add_argument("--gate-threads", default="1,4,8", help="comma-separated --gepa-threads of the gate runs")
    parser.add_argument("--high-latency", type=float, default=0.25,
                        help="a second, more LM-like per-call latency for the warm gates (seconds)")
    parser.add_argument("--budget", default="light", help="--gepa-budget of both compiles (same auto= / max calls)")
    parser.add_argument("--reruns", type=int, default=400, help="simulated gate reruns per cell (verdicts, noisy)")
    parser.add_argument("--noisy-seeds", type=int, default=5, help="real noisy gates per row (noisy)")
    parser.add_argument("--noisy-rows", type=int, default=80, help="triage rows of the noisy project (80: 20 test)")
    parser.add_argument("--results", type=Path, default=BENCH / "RESULTS.md",
                        help="where to write the results (default benchmarks/RESULTS.md); '-' for nowhere")
    parser.add_argument("--json", type=Path, default=None, help="also write every raw measurement to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory and print its path")
    args = parser.parse_args(argv)
    names = [*args.names, *(n.strip() for n in args.only.split(",") if n.strip())]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}: choose among {', '.join(BENCHMARKS)}")
    # The registry's order, whatever the order given: the gate benchmark reuses the compile's artifact.
    args.selected = [n for n in BENCHMARKS if n in names] if names else list(BENCHMARKS)
    if min(args.repeats, args.startup_repeats, args.replay_repeats, args.reruns, args.noisy_seeds) < 1 \
            or args.latency < 0:
        parser.error("every --*repeats, --reruns and --noisy-seeds must be at least 1, --latency at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for name, module in BENCHMARKS.items():
            print(f"{name:10} {importlib.import_module(module).TITLE}")
        return 0
    command = " ".join(["python", os.path.relpath(__file__, Path.cwd()), *(argv if argv is not None else sys.argv[1:])])
    started, load_start, checkout_start = time.perf_counter(), load_average(), checkout()
    workdir = Path(tempfile.mkdtemp(prefix="pytest-gepa-bench-"))
    ctx = Context(args=args, report=Report(), workdir=workdir)
    log(f"working in {workdir}; load average {load_start}; running {', '.join(args.selected)}")
    try:
        for name in args.selected:
            module = importlib.import_module(BENCHMARKS[name])
            log(f"{name}: {module.TITLE}")
            began = time.perf_counter()
            module.bench(ctx)
            log(f"{name}: done in {time.perf_counter() - began:.0f} s")
    finally:
        ctx.close()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.perf_counter() - started
    report = ctx.report
    if report.rows:
        print(text_table(report))
    for text in ctx.blocks.values():
        print(f"\n{text}")
    for note in report.notes:
        print(f"note: {note}")
    misses = [r for r in report.rows if r.ok is False]
    print(f"\n{len(misses)} target(s) missed; load average {load_start} -> {load_average()}; {elapsed:.0f} s")
    if str(args.results) != "-":
        write_results(args.results, report, machine(), command, (load_start, load_average()), elapsed,
                      (checkout_start, checkout()), ctx.blocks)
        print(f"wrote {args.results}")
    if args.json is not None:
        args.json.write_text(json.dumps({"rows": [vars(r) for r in report.rows], "notes": report.notes,
                                         "raw": report.raw, "blocks": ctx.blocks}, indent=1, default=str),
                             encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
