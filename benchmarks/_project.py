"""The throwaway projects the benchmarks run pytest on, each in its own temp directory.

``TriageHttpProject`` is the triage target of ``tests/conftest.py``'s ``TriageProject``, with its
LMs reached over HTTP (the scripted world's server) as a user names them: their own ``dspy.LM`` in
a conftest (dspy's default engine, or litellm forced), or model strings. Its test records when
``gepa.compile`` and ``gepa.gate`` start and end (wall-clock ``time.time()``, which the server's
request log shares), so each LM request can be attributed to the phase that made it.
``write_trivial_suite`` is a plain suite with no gepa tests at all, ``write_plain_gepa_suite`` the
plain ``dspy.GEPA`` script as one test of a bare pytest run, and ``write_dspy_only_suite``
one test that only imports dspy.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

# Wall-clock phase marks go to the JSON file named by BENCH_PHASES; without it the test is a
# plain user test. The LM settings mirror tests/conftest.py's HTTP_LMS (cache off, no retries so
# a dead endpoint fails fast instead of hiding behind backoff).
CONFTEST = '''
import os

import dspy
import pytest


def _lm(role):
    return dspy.LM(f"openai/{role}", api_base=os.environ["BENCH_BASE_URL"], api_key="sk-bench",
                   ENGINEcache=False, num_retries=0)


@pytest.fixture(scope="session")
def gepa_task_lm():
    return _lm("task")


@pytest.fixture(scope="session")
def gepa_reflection_lm():
    return _lm("reflection")
'''

# Model strings: no fixture overrides; pytest.ini names bench/<role>, a provider declared to dspy at the
# server (as benchmarks/_lms.py does for the plain scripts), served by dspy's own engine choice. The
# cache is off as for the LMs above (and in the plain scripts), so repeats measure the same calls.
STRINGS_CONFTEST = '''
import os

import dspy
from dspy.lm15 import AccessPolicy, OpenAIChatCompat, ProviderDefinition, register_provider

os.environ.setdefault("BENCH_API_KEY", "sk-bench")
register_provider(ProviderDefinition.chat(
    AccessPolicy(provider="bench", env_keys=("BENCH_API_KEY",), base_url=os.environ["BENCH_BASE_URL"]),
    compat=OpenAIChatCompat()))
dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
'''
STRINGS_INI = "[pytest]\ngepa_task_lm = bench/task\ngepa_reflection_lm = bench/reflection\n"
# How each project names its LMs: a user's own dspy.LM (dspy's default engine, or litellm forced), or
# model strings.
LM_KINDS = ("own", "own-litellm", "strings")

# JSONAdapter asks its LM whether it supports a response schema before every call; dspy.LM answers
# that through litellm, so a replay that let the question through would import litellm for it.
JSON_ADAPTER = '''

dspy.configure(adapter=dspy.JSONAdapter())
'''

TRIAGE_TEST = '''
import json
import os
import time

import dspy
from pytest_gepa import metrics


class Triage(dspy.Signature):
    """Classify the support ticket into one of: billing, claims, technical, account, shipping."""
    ticket: str = dspy.InputField()
    category: str = dspy.OutputField()


def test_triage_prompt(gepa, gepa_examples):
    data = gepa_examples("data/triage.jsonl", inputs=["ticket"])
    metric = metrics.exact_match("category")
    t0, c0 = time.time(), time.process_time()
    program = gepa.compile(dspy.ChainOfThought(Triage), data, metric=metric)
    t1, c1 = time.time(), time.process_time()
    try:
        gepa.gate(program, data.test, metric=metric, GATE_THRESHOLDS)
    finally:
        t2 = time.time()
        path = os.environ.get("BENCH_PHASES")
        if path:
            with open(path, "w", encoding="utf-8") as out:
                json.dump({"compile": [t0, t1], "compile_cpu": c1 - c0, "gate": [t1, t2], "test": len(data.test),
                           "train": len(data.train), "val": len(data.val)}, out)
'''

# The gate benchmark: one test gates the same artifact once per step of BENCH_GATE_PLAN (a JSON list
# of per-call latencies), so the first gate of a session (which pays dspy's lazy import of litellm on
# its first LM call) and the later, warm ones are measured side by side, at several latencies,
# without paying pytest's and dspy's start-up once per measurement. Each step sets the server's
# latency through its control endpoint before anything is timed. One test, not one per step: each
# target has an artifact of its own, compiled for its own node id.
GATE_TEST = '''
import json
import os
import time
import urllib.request

import dspy
from pytest_gepa import metrics

PLAN = json.loads(os.environ.get("BENCH_GATE_PLAN", "[null]"))


class Triage(dspy.Signature):
    """Classify the support ticket into one of: billing, claims, technical, account, shipping."""
    ticket: str = dspy.InputField()
    category: str = dspy.OutputField()


def _set_latency(latency):
    if latency is None:
        return
    body = json.dumps({"latency": latency}).encode()
    request = urllib.request.Request(os.environ["BENCH_CONTROL_URL"], data=body, method="POST")
    with urllib.request.urlopen(request, timeout=30) as reply:
        reply.read()


def test_gate(gepa, gepa_examples):
    data = gepa_examples("data/triage.jsonl", inputs=["ticket"])
    metric = metrics.exact_match("category")
    program = gepa.compile(dspy.ChainOfThought(Triage), data, metric=metric, name="triage")
    for step, latency in enumerate(PLAN):
        _set_latency(latency)
        t0, p0 = time.time(), time.perf_counter()
        gepa.gate(program, data.test, metric=metric, min_score=0.85, max_drop=0.03)
        p1, t1 = time.perf_counter(), time.time()
        path = os.environ.get("BENCH_GATES")
        if path:
            with open(path, "a", encoding="utf-8") as out:
                out.write(json.dumps({"step": step, "latency": latency, "window": [t0, t1], "wall": p1 - p0,
                                      "n": len(data.test)}) + "\\n")
'''

NODEID = "test_triage.py::test_triage_prompt"
GATE_FILE = "test_gate.py"


class TriageHttpProject:
    """The triage target over HTTP in ``root``: its data, test, conftest and artifact paths.
    ``thresholds`` are the keyword arguments of its ``gepa.gate`` call, as Python source;
    ``json_adapter`` makes its conftest select dspy's JSONAdapter, as the examples' do."""

    def __init__(self, root: Path, rows: int, thresholds: str = "min_score=0.85, max_drop=0.03",
                 json_adapter: bool = False, lms: str = "own") -> None:
        self.root = root
        self.lms = lms
        root.mkdir(parents=True, exist_ok=True)
        # An ini file pins the rootdir here, so the repository's pyproject.toml (its addopts,
        # filterwarnings=error) never applies to the benchmark project.
        (root / "pytest.ini").write_text(STRINGS_INI if lms == "strings" else "[pytest]\n", encoding="utf-8")
        own = CONFTEST.replace("ENGINE", 'engine="litellm", ' if lms == "own-litellm" else "")
        conftest = (STRINGS_CONFTEST if lms == "strings" else own).lstrip() + (JSON_ADAPTER if json_adapter else "")
        (root / "conftest.py").write_text(conftest, encoding="utf-8")
        test = textwrap.dedent(TRIAGE_TEST).lstrip().replace("GATE_THRESHOLDS", thresholds)
        (root / "test_triage.py").write_text(test, encoding="utf-8")
        self.data = write_split_triage_data(root / "data" / "triage.jsonl", n=rows)
        self.artifact_dir = root / "gepa_artifacts"
        self.artifact = self.artifact_dir / "test_triage" / "test_triage_prompt.json"
        self.cassette = self.artifact.with_name("test_triage_prompt.cassette.jsonl")
        self.phases = root / "phases.json"
        (root / GATE_FILE).write_text(textwrap.dedent(GATE_TEST).lstrip(), encoding="utf-8")
        # gepa.compile(..., name="triage") in test_gate.py loads <artifact dir>/test_gate/triage.json.
        self.gate_artifact = self.artifact_dir / "test_gate" / "triage.json"
        self.gates = root / "gates.jsonl"
        # The compile benchmark's second baseline, written once: a rewritten test file would be
        # re-rewritten by pytest's assertion rewriting on every run, a cost only that side would pay.
        self.plain_suite = write_plain_gepa_suite(root.with_name(f"{root.name}-plain-pytest"))

    def splits(self) -> dict[str, int]:
        counts = {"train": 0, "val": 0, "test": 0}
        for line in self.data.read_text(encoding="utf-8").splitlines():
            if line.strip():
                counts[json.loads(line)["split"]] += 1
        return counts

    def clean_artifacts(self) -> None:
        """Each compile starts from nothing, so no run is compared against an earlier one's artifact."""
        shutil.rmtree(self.artifact_dir, ignore_errors=True)

    def read_phases(self) -> dict[str, Any]:
        return dict(json.loads(self.phases.read_text(encoding="utf-8")))

    def read_gates(self) -> list[dict[str, Any]]:
        lines = self.gates.read_text(encoding="utf-8").splitlines()
        return [dict(json.loads(line)) for line in lines if line.strip()]

    def read_artifact(self) -> dict[str, Any]:
        return dict(json.loads(self.artifact.read_text(encoding="utf-8")))


def write_split_triage_data(path: Path, n: int) -> Path:
    """The triage rows with a ``split`` column, exactly as ``tests/conftest.py`` writes them: every
    hidden convention (and every category) lands in train, val and test in turn.

    A copy rather than an import: importing ``tests/conftest.py`` primes litellm against a server of
    its own and switches dspy's cache off in this process, side effects a benchmark should not have.
    """
    import world
    from world.triage import find_convention

    seen: dict[str, int] = {}
    order = ("train", "train", "val", "test")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for row in world.triage_rows(n):
            convention = find_convention(row["ticket"])
            group = convention.key if convention is not None else row["category"]
            split = order[seen.get(group, 0) % len(order)]
            seen[group] = seen.get(group, 0) + 1
            out.write(json.dumps({**row, "split": split}) + "\n")
    return path


def write_trivial_suite(root: Path, tests: int) -> Path:
    """``tests`` trivial passing tests in ten modules, with no conftest and no gepa fixture."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    modules = 10
    for m in range(modules):
        count = tests // modules + (1 if m < tests % modules else 0)
        body = "".join(f"def test_{m}_{i}():\n    assert {i} + 1 == {i + 1}\n\n\n" for i in range(count))
        (root / f"test_trivial_{m}.py").write_text(body, encoding="utf-8")
    return root


DSPY_ONLY_TEST = '''
def test_imports_dspy():
    import dspy

    assert dspy.Predict
'''


# The compile benchmark's second baseline: the plain dspy.GEPA script (plain_gepa.py) run as a test of
# a bare pytest session (-p no:gepa), as a team without the plugin would put a compile in its suite.
PLAIN_GEPA_TEST = '''
import json
import os
import sys

sys.path.insert(0, os.environ["BENCH_DIR"])
import plain_gepa


def test_plain_gepa_compile():
    assert plain_gepa.main(json.loads(os.environ["BENCH_PLAIN_ARGV"])) == 0
'''


def write_plain_gepa_suite(root: Path) -> Path:
    """One test that runs ``plain_gepa.main`` with the arguments in ``BENCH_PLAIN_ARGV`` (JSON)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (root / "test_plain_gepa.py").write_text(PLAIN_GEPA_TEST.lstrip(), encoding="utf-8")
    return root


def write_dspy_only_suite(root: Path) -> Path:
    """The replay benchmark's baseline: one test that only imports dspy, the floor of any gepa run."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (root / "test_dspy_only.py").write_text(DSPY_ONLY_TEST.lstrip(), encoding="utf-8")
    return root
