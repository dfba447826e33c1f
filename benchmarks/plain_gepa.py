"""The baseline: what a careful user writes by hand with ``dspy.GEPA`` and no plugin.

Same data file and split column, same program and metric, same budget, seed and thread count, same
task and reflection models on the same server as the plugin's compile. After compiling it scores the
optimized and then the unoptimized program on the test split, which is exactly the extra work the
plugin's compile does in ``gepa.gate`` (candidate, then baseline), so the two runs do the same work
end to end. Phase marks are wall-clock (``time.time()``) so the benchmark can attribute each of the
server's requests to a phase.

    python benchmarks/plain_gepa.py --base-url http://127.0.0.1:PORT/v1 --data triage.jsonl --out out.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

# Before dspy imports litellm: the bundled price map, never a download (the plugin does the same).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def load_splits(path: Path) -> dict[str, list[Any]]:
    """The rows of the data file by their ``split`` column, in file order (as the plugin loads them)."""
    import dspy

    splits: dict[str, list[Any]] = {"train": [], "val": [], "test": []}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        split = row.pop("split")
        splits[split].append(dspy.Example(row).with_inputs("ticket"))
    return splits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", choices=("own", "strings"), default="own",
                        help="own: dspy.LM('openai/<role>', api_base=...); strings: a model string 'bench/<role>'")
    parser.add_argument("--engine", choices=("auto", "litellm"), default="auto", help="dspy.LM(engine=...)")
    parser.add_argument("--budget", default="light", help="light, medium, heavy or a number of metric calls")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    started = time.time()
    import dspy

    # The plugin's own metric: the same scores and the same feedback text, so GEPA sees the same
    # signal. It is a plain callable; nothing of the plugin's machinery runs.
    from pytest_gepa.metrics import exact_match

    class Triage(dspy.Signature):
        """Classify the support ticket into one of: billing, claims, technical, account, shipping."""

        ticket: str = dspy.InputField()
        category: str = dspy.OutputField()

    from _lms import bench_lm

    def lm(role: str) -> Any:
        return bench_lm(role, args.base_url, models=args.models, engine=args.engine)

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    task_lm, reflection_lm = lm("task"), lm("reflection")
    dspy.configure(lm=task_lm)
    splits = load_splits(args.data)
    metric = exact_match("category")
    program = dspy.ChainOfThought(Triage)
    baseline = program.deepcopy()
    budget: dict[str, Any] = {"max_metric_calls": int(args.budget)} if args.budget.isdigit() else {"auto": args.budget}
    # The phase starts where the plugin's gepa.compile(...) starts: before the optimizer is built
    # (building it is what imports the gepa library), so both phases hold the same work.
    imported, cpu_before = time.time(), time.process_time()
    optimizer = dspy.GEPA(metric=metric, reflection_lm=reflection_lm, num_threads=args.threads, seed=args.seed,
                          track_stats=True, **budget)
    built = time.time()
    optimized = optimizer.compile(program, trainset=splits["train"], valset=splits["val"])
    compiled, cpu_after = time.time(), time.process_time()

    def score(candidate: Any) -> float:
        evaluate = dspy.Evaluate(devset=splits["test"], metric=metric, num_threads=args.threads,
                                 display_progress=False, display_table=False)
        return float(evaluate(candidate).score) / 100  # dspy reports a percentage

    test_optimized = score(optimized)
    gated_candidate = time.time()
    test_baseline = score(baseline)
    finished = time.time()

    results = optimized.detailed_results
    val_scores = list(results.val_aggregate_scores)
    out = {
        "phases": {"setup": [started, imported], "compile": [imported, compiled], "optimizer": [built, compiled],
                   "gate": [compiled, finished], "gate_candidate": [compiled, gated_candidate]},
        "compile_cpu": cpu_after - cpu_before,
        "val_baseline": val_scores[0],
        "val_optimized": val_scores[results.best_idx],
        "test_optimized": test_optimized,
        "test_baseline": test_baseline,
        "metric_calls": results.total_metric_calls,
        "candidates": len(results.candidates),
        "splits": {name: len(examples) for name, examples in splits.items()},
    }
    args.out.write_text(json.dumps(out, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
