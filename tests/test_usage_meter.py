"""The meter tells the truth: errors since a snapshot are that window's, tokens of concurrent calls
go to the role of the call that used them, and an artifact names only the models its target used."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor

from conftest import TRIAGE_TEST, TriageProject

from pytest_gepa.usage import RoleMeter, UsageMeter


def _fail(meter: UsageMeter, role: str, message: str) -> None:
    meter.started(role)
    meter.ended(role, RuntimeError(message))


def test_the_first_error_since_a_snapshot_is_the_first_after_it() -> None:
    meter = UsageMeter()
    _fail(meter, "task", "connection refused (yesterday's endpoint)")
    before = meter.snapshot()
    meter.started("task")
    meter.ended("task", None)
    _fail(meter, "task", "rate limited (this test's)")
    _fail(meter, "task", "rate limited again")
    used = meter.since(before)["task"]
    assert (used.calls, used.failures) == (3, 2)
    assert used.first_error == "RuntimeError: rate limited (this test's)"
    # A window without failures names none, whatever failed before it.
    quiet = meter.snapshot()
    meter.started("task")
    meter.ended("task", None)
    assert meter.since(quiet)["task"].first_error is None
    # The process-wide counter still remembers the very first one.
    assert meter.counters["task"].first_error == "RuntimeError: connection refused (yesterday's endpoint)"


def test_tokens_of_interleaved_asyncio_calls_go_to_each_calls_role() -> None:
    meter = UsageMeter()
    task, judge = RoleMeter(meter, "task"), RoleMeter(meter, "judge")

    async def call(callback: RoleMeter, call_id: str, tokens: int, steps: list[asyncio.Event],
                   mine: int) -> None:
        # Each call waits for its turn at every step, so the two calls' steps alternate.
        await steps[mine].wait()
        callback.on_lm_start(call_id, instance=None, inputs={})
        steps[mine + 1].set()
        await steps[mine + 2].wait()
        meter.add_usage(None, {"prompt_tokens": tokens, "completion_tokens": 1})
        steps[mine + 3].set()
        await steps[mine + 4].wait()
        callback.on_lm_end(call_id, outputs=None)
        steps[mine + 5].set()

    async def main() -> None:
        steps = [asyncio.Event() for _ in range(8)]
        steps[0].set()
        # task starts, judge starts, task reports tokens, judge reports tokens, task ends, judge ends
        await asyncio.gather(call(task, "t1", 10, steps, 0), call(judge, "j1", 100, steps, 1))

    asyncio.run(main())
    assert (meter.counters["task"].prompt_tokens, meter.counters["task"].completion_tokens) == (10, 1)
    assert (meter.counters["judge"].prompt_tokens, meter.counters["judge"].completion_tokens) == (100, 1)
    assert meter.counters["reflection"].prompt_tokens == 0


def test_tokens_of_concurrent_threads_go_to_each_calls_role() -> None:
    meter = UsageMeter()
    barrier = threading.Barrier(3)

    def call(role: str, tokens: int) -> None:
        callback = RoleMeter(meter, role)
        callback.on_lm_start(f"{role}-call", instance=None, inputs={})
        barrier.wait()  # all three calls are running at once before any reports its tokens
        meter.add_usage(None, {"prompt_tokens": tokens, "completion_tokens": tokens // 10})
        barrier.wait()
        callback.on_lm_end(f"{role}-call", outputs=None)

    with ThreadPoolExecutor(max_workers=3) as pool:
        for future in [pool.submit(call, role, tokens) for role, tokens in
                       (("task", 10), ("reflection", 200), ("judge", 3000))]:
            future.result()
    assert {role: c.prompt_tokens for role, c in meter.counters.items()} == {"task": 10, "reflection": 200,
                                                                             "judge": 3000}
    assert {role: c.calls for role, c in meter.counters.items()} == {"task": 1, "reflection": 1, "judge": 1}
    # Outside any call nobody is credited.
    meter.add_usage(None, {"prompt_tokens": 5})
    assert sum(c.prompt_tokens for c in meter.counters.values()) == 3210


JUDGED = '''def test_a_judged(gepa, gepa_examples, gepa_rubric):
    data = gepa_examples("data/triage.jsonl", inputs=["ticket"])
    judge = gepa_rubric("rubrics/triage.yaml")
    program = gepa.compile(dspy.ChainOfThought(Triage), data, metric=judge)
    gepa.gate(program, data.test, metric=judge, min_score=0.5)

'''
# The judged test first, then the plain one, in file order.
JUDGED_AND_PLAIN = TRIAGE_TEST.format(min_score=0.5, max_drop=1.0).replace(
    "def test_triage_prompt(gepa, gepa_examples):", JUDGED + "def test_b_plain(gepa, gepa_examples):")

RUBRIC = """\
name: triage_category
criteria:
  - name: category
    description: The ticket's category is the one in the reference answer.
"""


def test_an_artifact_names_only_the_models_its_own_target_used(triage_project: TriageProject) -> None:
    triage_project.write_test(source=JUDGED_AND_PLAIN)
    (triage_project.root / "rubrics").mkdir()
    (triage_project.root / "rubrics" / "triage.yaml").write_text(RUBRIC)
    # -p no:randomly keeps file order: the judged test runs first, then the plain one.
    result = triage_project.compile("-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_a_judged PASSED*", "*test_b_plain PASSED*"])
    folder = triage_project.root / "gepa_artifacts" / "test_triage"
    judged = json.loads((folder / "test_a_judged.json").read_text())
    plain = json.loads((folder / "test_b_plain.json").read_text())
    assert judged["provenance"]["models"] == {"judge": "scripted/judge", "reflection": "scripted/reflection",
                                              "task": "scripted/task"}
    assert plain["provenance"]["models"] == {"reflection": "scripted/reflection", "task": "scripted/task"}
    assert "judge" not in plain["optimizer"]["lm_usage"]
    assert judged["optimizer"]["lm_usage"]["judge"]["calls"] > 0


def test_a_price_is_found_without_importing_litellm() -> None:
    """A call dspy's native engine served is priced from dspy's bundled price map: litellm is not
    imported for it (that import costs seconds per process)."""
    import os
    import subprocess
    import sys

    script = ("import sys\n"
              "from pytest_gepa.usage import cost_usd\n"
              "cost = cost_usd('openai/gpt-4o-mini', 1_000_000, 1_000_000)\n"
              "assert cost is not None and cost > 0, cost\n"
              "assert cost_usd('openai/a-model-nobody-prices', 10, 10) is None\n"
              "assert 'litellm' not in sys.modules, 'litellm was imported'\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert done.returncode == 0, done.stderr
