"""A metric's fingerprint follows what changes its scores (issue 22, item 6): not only the
function's own source, but the values it reads that the source does not spell out: a module-level
metric object and its arguments, a closure's cells, defaults given by name, module-level tables,
the helpers it calls."""

from __future__ import annotations

import ast
import contextlib
import functools
import gc
import hashlib
import importlib.util
import inspect
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TriageProject

from pytest_gepa.metrics import exact_match, metric_fingerprint

HEADER = '''
import dspy
from pytest_gepa import metrics

class Triage(dspy.Signature):
    """Classify the support ticket into one of: billing, claims, technical, account, shipping."""
    ticket: str = dspy.InputField()
    category: str = dspy.OutputField()
'''

BODY = '''
def test_triage_prompt(gepa, gepa_examples):
    data = gepa_examples("data/triage.jsonl", inputs=["ticket"])
    program = gepa.compile(dspy.ChainOfThought(Triage), data, metric=metric)
    gepa.gate(program, data.test, metric=metric, min_score=0.85, max_drop=0.03)
'''

# Each metric, and an edit that changes what it scores without touching its own source.
METRICS = {
    "module-level metric object": ('''
EXACT = metrics.exact_match("category", case_sensitive=False)

def metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
    return EXACT(gold, pred, trace, pred_name, pred_trace)
''', "case_sensitive=False", "case_sensitive=True"),
    "closure": ('''
def make_metric(case_sensitive):
    exact = metrics.exact_match("category", case_sensitive=case_sensitive)

    def metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
        return exact(gold, pred, trace, pred_name, pred_trace)

    return metric

metric = make_metric(False)
''', "make_metric(False)", "make_metric(True)"),
    "default given by name": ('''
CASE_SENSITIVE = False

def metric(gold, pred, trace=None, pred_name=None, pred_trace=None, case_sensitive=CASE_SENSITIVE):
    expected, got = str(gold.category), str(pred.category)
    if not case_sensitive:
        expected, got = expected.lower(), got.lower()
    return dspy.Prediction(score=float(expected == got), feedback=f"Predicted {got!r} but expected {expected!r}")
''', "CASE_SENSITIVE = False", "CASE_SENSITIVE = True"),
    "module-level table": ('''
ALIASES = {"refund": "billing"}

def metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
    got = ALIASES.get(pred.category, pred.category)
    return dspy.Prediction(score=float(got == gold.category), feedback=f"Predicted {got!r} but expected {gold.category!r}")
''', '{"refund": "billing"}', '{"refund": "billing", "dent": "claims"}'),
}


@pytest.mark.parametrize("kind", list(METRICS))
def test_a_change_the_metrics_source_does_not_show_is_reported_at_the_gate(triage_project: TriageProject,
                                                                           kind: str) -> None:
    source, before, after = METRICS[kind]
    triage_project.write_test(source=HEADER + source + BODY)
    triage_project.compile().assert_outcomes(passed=1)
    path = triage_project.root / "test_triage.py"
    path.write_text(path.read_text().replace(before, after))
    result = triage_project.run("-W", "default")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines([
        "*GepaWarning: test_triage.py::test_triage_prompt [[]test_triage_prompt[]]: the metric changed since the "
        "artifact was compiled; the regression check compares only the examples present in both. Recompile with "
        "`pytest --gepa-compile test_triage.py::test_triage_prompt` to refresh it.",
    ])


def test_an_unchanged_metric_of_each_kind_gates_without_a_warning(triage_project: TriageProject) -> None:
    # Each kind's top-level metric under a name of its own (metric_0 ... metric_3), all four scoring.
    source = "\n".join(text.replace("\ndef metric(", f"\ndef metric_{i}(").replace("\nmetric = ", f"\nmetric_{i} = ")
                       for i, (text, _, _) in enumerate(METRICS.values()))
    triage_project.write_test(source=HEADER + source + "\nmetric = metrics.all_of(metric_0, metric_1, metric_2, "
                              "metric_3)\n" + BODY)
    triage_project.compile().assert_outcomes(passed=1)
    result = triage_project.run("-W", "error::pytest_gepa.errors.GepaWarning")
    result.assert_outcomes(passed=1)


class Loader:
    """Each source as a fresh module of its own file, as each pytest run imports the test file anew."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder, self.monkeypatch, self.count = folder, monkeypatch, 0

    def __call__(self, source: str) -> types.ModuleType:
        self.count += 1
        name = f"user_metrics_{self.count}"
        path = self.folder / f"{name}.py"
        path.write_text("from pytest_gepa import metrics\n" + textwrap.dedent(source))
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        self.monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        return module

    def fingerprints(self, source: str, before: str, after: str) -> tuple[str, str, str]:
        """The fingerprint of ``metric`` in ``source``, again in a fresh copy, and after the edit."""
        assert before in source
        return (metric_fingerprint(self(source).metric), metric_fingerprint(self(source).metric),
                metric_fingerprint(self(source.replace(before, after)).metric))


@pytest.fixture
def load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Loader:
    return Loader(tmp_path, monkeypatch)


@pytest.mark.parametrize("kind", list(METRICS))
def test_the_fingerprint_is_the_same_for_the_same_metric_and_differs_after_the_edit(load: Loader, kind: str) -> None:
    first, again, edited = load.fingerprints(*METRICS[kind])
    assert first == again
    assert edited != first


@pytest.mark.parametrize(("source", "before", "after"), [
    # a helper of the user's own that the metric calls
    ('''
def normalise(text):
    return text.strip().lower()

def metric(gold, pred, trace=None):
    return float(normalise(pred.category) == normalise(gold.category))
''', "text.strip().lower()", "text.strip()"),
    # an object of the user's own class, read from the module
    ('''
class Table:
    def __init__(self, rows):
        self.rows = rows

TABLE = Table({"refund": "billing"})

def metric(gold, pred, trace=None):
    return float(TABLE.rows.get(pred.category, pred.category) == gold.category)
''', '{"refund": "billing"}', '{"refund": "claims"}'),
    # a keyword-only default given by name
    ('''
LIMIT = 0.5

def metric(gold, pred, trace=None, *, limit=LIMIT):
    return float(len(pred.category) > limit)
''', "LIMIT = 0.5", "LIMIT = 0.7"),
    # a callable object whose __call__ reads a module-level value, and its own state
    ('''
WEIGHT = 1.0

class Metric:
    def __init__(self, field):
        self.field = field

    def __call__(self, gold, pred, trace=None):
        return WEIGHT * float(getattr(pred, self.field) == getattr(gold, self.field))

metric = Metric("category")
''', "WEIGHT = 1.0", "WEIGHT = 0.5"),
    ('''
class Metric:
    def __init__(self, field):
        self.field = field

    def __call__(self, gold, pred, trace=None):
        return float(getattr(pred, self.field) == getattr(gold, self.field))

metric = Metric("category")
''', 'Metric("category")', 'Metric("answer")'),
], ids=["helper", "user-object", "keyword-default", "callable-reads", "callable-state"])
def test_more_places_a_metric_reads_from(load: Loader, source: str, before: str, after: str) -> None:
    first, again, edited = load.fingerprints(source, before, after)
    assert first == again
    assert edited != first


def test_a_partial_is_its_function_and_its_arguments() -> None:
    def score(gold: object, pred: object, trace: object = None, *, field: str) -> float:
        return float(getattr(gold, field) == getattr(pred, field))

    assert metric_fingerprint(functools.partial(score, field="category")) == metric_fingerprint(
        functools.partial(score, field="category"))
    assert metric_fingerprint(functools.partial(score, field="category")) != metric_fingerprint(
        functools.partial(score, field="answer"))


def test_a_recursive_metric_and_a_self_referencing_table_have_a_fingerprint(load: Loader) -> None:
    module = load('''
TABLE = {"name": "table"}
TABLE["self"] = TABLE

def metric(gold, pred, trace=None, depth=0):
    if depth < 1:
        return metric(gold, pred, trace, depth + 1)
    return float(TABLE["name"] == "table")
''')
    assert metric_fingerprint(module.metric) == metric_fingerprint(module.metric)


def _plain_metric(gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None) -> float:
    return float(textwrap.dedent(str(pred.category)) == gold.category)


def test_literal_defaults_and_modules_leave_a_plain_functions_fingerprint_as_it_was() -> None:
    # Artifacts compiled before fingerprints followed reads keep matching a metric that reads nothing
    # its source does not spell out (the pipeline example's metric is such a function).
    text = inspect.getsource(_plain_metric)
    assert metric_fingerprint(_plain_metric) == hashlib.sha256(text.encode()).hexdigest()[:16]


def test_the_ready_metrics_keep_their_own_fingerprints() -> None:
    assert metric_fingerprint(exact_match("category")) == "exact_match:category:nocase"
    assert metric_fingerprint(exact_match("category", case_sensitive=True)) == "exact_match:category:case"


class _FinalizerThatParses:
    """Cyclic garbage whose finalizer parses, as pytest's hook for an exception raised in a finalizer
    does (it formats the traceback, which Python 3.11 parses), and leaves the next such garbage."""

    left = 0

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        ast.parse("answer = (1 + 2) * 3")
        if _FinalizerThatParses.left > 0:
            _FinalizerThatParses.left -= 1
            _FinalizerThatParses()


@contextlib.contextmanager
def _collections_that_parse() -> Iterator[None]:
    """A garbage collection at every allocation, each finding a finalizer that parses: on Python 3.11
    an ``ast.parse`` interrupted so fails with "AST constructor recursion depth mismatch". (A
    context, not a fixture: pytest parses source to report a failure, which must run without it.)"""
    threshold = gc.get_threshold()
    _FinalizerThatParses.left = 100_000
    gc.set_threshold(1)
    _FinalizerThatParses()
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        _FinalizerThatParses.left = 0
        gc.collect()


def test_a_collection_while_a_fingerprint_reads_source_does_not_break_the_compile() -> None:
    # The compile fingerprints the program's classes (inspect.getsource parses a class's module)
    # and the metric's spelled defaults (parsed too); a collection in either was a SystemError.
    import dspy

    from pytest_gepa.optimizer.resume import source_fingerprint

    program = dspy.ChainOfThought("ticket -> category")
    expected = source_fingerprint(program), metric_fingerprint(_plain_metric)
    with _collections_that_parse():
        during = source_fingerprint(program), metric_fingerprint(_plain_metric)
    assert during == expected
