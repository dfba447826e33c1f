"""The gate's baseline: the same compiled program scored with plain ``dspy.Evaluate``, no plugin.

It follows the same plan as the benchmark's gate session (``test_gate.py`` in the generated
project): for each step, set the server's per-call latency, then score the program on the test
split with ``num_threads`` threads, timing only the scoring. The first step of the process pays
dspy's lazy import of litellm on its first LM call, exactly as the plugin's first gate does.

    python benchmarks/plain_evaluate.py --base-url URL --control-url URL --artifact A.json --data D.jsonl \\
        --threads 4 --plan '[0.02, 0.02, 0.0]' --out out.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def set_latency(control_url: str, latency: float | None) -> None:
    if latency is None:
        return
    request = urllib.request.Request(control_url, data=json.dumps({"latency": latency}).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=30) as reply:
        reply.read()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--control-url", required=True)
    parser.add_argument("--artifact", type=Path, required=True, help="a pytest-gepa artifact (its program state)")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--plan", default="[null]", help="JSON list of per-call latencies, one scoring each")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", choices=("own", "strings"), default="own",
                        help="own: dspy.LM('openai/<role>', api_base=...); strings: a model string 'bench/<role>'")
    parser.add_argument("--engine", choices=("auto", "litellm"), default="auto", help="dspy.LM(engine=...)")
    args = parser.parse_args(argv)

    import dspy

    from pytest_gepa.metrics import exact_match  # the same metric the gate uses

    class Triage(dspy.Signature):
        """Classify the support ticket into one of: billing, claims, technical, account, shipping."""

        ticket: str = dspy.InputField()
        category: str = dspy.OutputField()

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    from _lms import bench_lm

    lm = bench_lm("task", args.base_url, models=args.models, engine=args.engine)
    dspy.configure(lm=lm)
    program = dspy.ChainOfThought(Triage)
    # The artifact's "program" is dspy's own dump_state() (headers stripped), so dspy loads it as is.
    program.load_state(json.loads(args.artifact.read_text(encoding="utf-8"))["program"])
    test: list[Any] = []
    for line in args.data.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if row.pop("split") == "test":
                test.append(dspy.Example(row).with_inputs("ticket"))
    metric = exact_match("category")
    evaluate = dspy.Evaluate(devset=test, metric=metric, num_threads=args.threads, display_progress=False,
                             display_table=False)
    gates = []
    for step, latency in enumerate(json.loads(args.plan)):
        set_latency(args.control_url, latency)
        t0, p0 = time.time(), time.perf_counter()
        result = evaluate(program)
        p1, t1 = time.perf_counter(), time.time()
        gates.append({"step": step, "latency": latency, "window": [t0, t1], "wall": p1 - p0, "n": len(test),
                      "score": float(result.score) / 100})
    args.out.write_text(json.dumps(gates, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
