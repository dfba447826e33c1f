"""Shared fixtures of pytest-gepa's own tests: a project laid out as a user would write it, whose
LMs are the scripted world of ``tests/world`` (in process), so every run is offline and repeatable."""

from __future__ import annotations

import json
import os
import re
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before anything imports litellm or dspy: no price-map download, and a throwaway dspy cache.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("DSPY_CACHEDIR", tempfile.mkdtemp(prefix="pytest-gepa-dspy-cache-"))

import dspy
import world

# pytester's in-process runs drop the modules a run imported first; litellm imported and dropped
# inside one run breaks every later run (no entry points found, so no plugins; odd httpx errors).
# Run litellm's whole call path once, now, so every in-process run finds it already imported.
world.prime_litellm()

# Likewise the plugin's own lazily imported modules: imported once here, they are not re-imported
# (and re-parsed by pytest's assertion rewriter) inside every in-process run, where a parse racing
# another thread's meets CPython 3.11's "AST constructor recursion depth mismatch" bug.
import pytest_gepa.cassette.engine  # noqa: E402
import pytest_gepa.data.identified  # noqa: E402
import pytest_gepa.data.yaml_source  # noqa: E402
import pytest_gepa.flows.compile  # noqa: E402
import pytest_gepa.flows.handle  # noqa: E402
import pytest_gepa.local_model.lm  # noqa: E402
import pytest_gepa.optimizer.keeper  # noqa: E402
import pytest_gepa.optimizer.resume  # noqa: E402
import pytest_gepa.report.artifact_diff  # noqa: E402
import pytest_gepa.report.files  # noqa: E402
import pytest_gepa.report.summary  # noqa: E402
import pytest_gepa.report.terminal  # noqa: E402
import pytest_gepa.role_lms  # noqa: E402
import pytest_gepa.rubric.agreement  # noqa: E402
import pytest_gepa.rubric.judge  # noqa: E402
import pytest_gepa.xdist  # noqa: E402, F401

# Cached answers would make LM call counts depend on test order; the world is fast enough uncached.
dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)

# The same LMs over real HTTP through litellm, each with a planted secret key and header that
# must never reach a file the run writes.
SECRET_KEY = "sk-gepa-SECRET-key-0123456789"
SECRET_HEADER = "hdr-gepa-SECRET-value"
HTTP_LMS_TEMPLATE = '''
import os
import dspy
import pytest

def _lm(role):
    # The timeout is long unless a test shortens it: a spurious timeout is a retry nobody planned.
    return dspy.LM(f"openai/{role}", api_base=os.environ["GEPA_TEST_BASE_URL"], api_key=SECRET_KEY,
                   extra_headers={"X-Team-Token": SECRET_HEADER}, engine="litellm", cache=False,
                   num_retries=NUM_RETRIES, timeout=float(os.environ.get("GEPA_TEST_LM_TIMEOUT", "30")))

@pytest.fixture(scope="session")
def gepa_task_lm():
    return _lm("task")

@pytest.fixture(scope="session")
def gepa_reflection_lm():
    return _lm("reflection")

@pytest.fixture(scope="session")
def gepa_judge_lm():
    return _lm("judge")
'''


def http_lms(*, num_retries: int = 0) -> str:
    """A conftest whose LMs reach GEPA_TEST_BASE_URL through litellm, with the planted secrets."""
    return (HTTP_LMS_TEMPLATE.replace("SECRET_KEY", repr(SECRET_KEY)).replace("SECRET_HEADER", repr(SECRET_HEADER))
            .replace("NUM_RETRIES", str(num_retries)))


HTTP_LMS = http_lms()

IN_PROCESS_LMS = '''
import pytest
import world

@pytest.fixture(scope="session")
def gepa_task_lm():
    return world.scripted_lm("task")

@pytest.fixture(scope="session")
def gepa_reflection_lm():
    return world.scripted_lm("reflection")

@pytest.fixture(scope="session")
def gepa_judge_lm():
    return world.scripted_lm("judge")
'''

TRIAGE_TEST = '''
import dspy
from pytest_gepa import metrics

class Triage(dspy.Signature):
    """Classify the support ticket into one of: billing, claims, technical, account, shipping."""
    ticket: str = dspy.InputField()
    category: str = dspy.OutputField()

def test_triage_prompt(gepa, gepa_examples):
    data = gepa_examples("data/triage.jsonl", inputs=["ticket"])
    metric = metrics.exact_match("category")
    program = gepa.compile(dspy.ChainOfThought(Triage), data, metric=metric)
    gepa.gate(program, data.test, metric=metric, min_score={min_score}, max_drop={max_drop})
'''


def literal(text: str) -> str:
    """``text`` as an fnmatch pattern that matches only itself (brackets and wildcards escaped)."""
    return re.sub(r"([\[\]*?])", r"[\1]", text)


def write_split_triage_data(path: Path, n: int = 40, *, rules: bool = False) -> Path:
    """The triage rows with a ``split`` column that puts every convention (and every category) in
    train, val and test, so what GEPA learns on train/val is what the test split asks for."""
    from world.triage import find_convention

    seen: dict[str, int] = {}
    order = ("train", "train", "val", "test")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for row in world.triage_rows(n, rules=rules):
            convention = find_convention(row["ticket"])
            group = convention.key if convention is not None else row["category"]
            split = order[seen.get(group, 0) % len(order)]
            seen[group] = seen.get(group, 0) + 1
            out.write(json.dumps({**row, "split": split}) + "\n")
    return path


class TriageProject:
    """A user project with the DESIGN.md triage target, its data and in-process scripted LMs."""

    def __init__(self, pytester: pytest.Pytester, lms: str = IN_PROCESS_LMS) -> None:
        self.pytester = pytester
        self.root = pytester.path
        pytester.makeconftest(lms)
        self.data = write_split_triage_data(self.root / "data" / "triage.jsonl")
        self.write_test()
        self.artifact = self.root / "gepa_artifacts" / "test_triage" / "test_triage_prompt.json"
        self.nodeid = "test_triage.py::test_triage_prompt"
        self.cassette = self.artifact.with_name("test_triage_prompt.cassette.jsonl")

    def write_test(self, *, min_score: float = 0.85, max_drop: float = 0.03, source: str | None = None) -> None:
        text = source if source is not None else TRIAGE_TEST.format(min_score=min_score, max_drop=max_drop)
        (self.root / "test_triage.py").write_text(textwrap.dedent(text))

    def run(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly", *args)

    def compile(self, *args: str) -> pytest.RunResult:
        return self.run("--gepa-compile", "--gepa-budget", "light", *args)


@pytest.fixture(autouse=True)
def _no_job_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where this suite itself runs in GitHub Actions, its pytester runs must not append their summaries
    to the job's own; the tests of the job summary set GITHUB_STEP_SUMMARY themselves."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


@pytest.fixture
def triage_project(pytester: pytest.Pytester) -> TriageProject:
    return TriageProject(pytester)


@pytest.fixture(scope="module")
def no_dspy_cache() -> Iterator[None]:
    """dspy's cache off for a module, whatever an earlier test left configured (the world's tests
    count the calls that reach it)."""
    previous = dspy.cache
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    yield
    dspy.cache = previous


@pytest.fixture
def scripted_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[world.ScriptedServer]:
    """The world as an OpenAI-compatible server on 127.0.0.1, its URL in GEPA_TEST_BASE_URL."""
    with world.ScriptedServer() as server:
        monkeypatch.setenv("GEPA_TEST_BASE_URL", server.base_url)
        yield server


@pytest.fixture
def http_project(pytester: pytest.Pytester, scripted_server: world.ScriptedServer) -> TriageProject:
    """The triage project with every LM reached over HTTP through litellm."""
    return TriageProject(pytester, lms=HTTP_LMS)
