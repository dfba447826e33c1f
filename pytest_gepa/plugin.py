"""pytest-gepa's hooks and fixtures: wiring only, the work lives in the modules they call.

Nothing heavy is imported here: dspy, litellm and gepa load on the first use of a ``gepa``
fixture, so a test run that uses none starts as fast as without the plugin.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_gepa.config import SETTINGS_KEY, Settings, add_options, resolve_settings
from pytest_gepa.errors import GepaError, redact
from pytest_gepa.session import SESSION_KEY, GepaSession

if TYPE_CHECKING:
    from pytest_gepa.data import ExampleSet
    from pytest_gepa.flows.handle import GepaHandle
    from pytest_gepa.rubric import Rubric

CALL_OUTCOME_KEY = pytest.StashKey[str]()
LM_FIXTURES = {"gepa_task_lm": "task", "gepa_reflection_lm": "reflection", "gepa_judge_lm": "judge"}


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``gepa`` option group and its ini keys."""
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    """Resolve settings once, so a bad value stops the run before any test (exit code 4)."""
    settings = resolve_settings(config)
    config.stash[SETTINGS_KEY] = settings
    session = GepaSession(settings=settings, cache=getattr(config, "cache", None))
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(RanTests(session), "gepa-ran-tests")
    if config.pluginmanager.hasplugin("xdist"):
        from pytest_gepa import xdist

        xdist.register(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the embedded local model server if this run started one."""
    import sys

    local_model = sys.modules.get("pytest_gepa.local_model")
    if local_model is not None:
        local_model.stop_all()


def _session(config: pytest.Config) -> GepaSession | None:
    return config.stash.get(SESSION_KEY, None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Show a gepa failure as its one explanatory message, not a traceback through the plugin."""
    report = yield
    if call.excinfo is not None and call.excinfo.errisinstance(GepaError):
        report.longrepr = redact(f"{type(call.excinfo.value).__name__}: {call.excinfo.value}")
    if call.when == "call":
        item.stash[CALL_OUTCOME_KEY] = call_outcome(report)
    return report


def call_outcome(report: pytest.TestReport) -> str:
    """How the test's own call ended, as the compile flow reads it: only "passed" earns a write. An
    xfailed test (its own assert failed) and a ``pytest.skip()`` after the gate are no pass, and an
    xfail-marked test that passed anyway declared it was not expected to."""
    xfail = hasattr(report, "wasxfail")
    if report.passed:
        return "xpassed" if xfail else "passed"
    if report.skipped:
        return "xfailed" if xfail else "skipped"
    return "failed"


# -- the model matrix: one test per task model ------------------------------------------------------


@pytest.hookimpl(trylast=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """With several ``--gepa-task-lm`` models, each test that uses ``gepa_task_lm`` (``gepa`` does)
    runs once per model, through the fixture, so a conftest.py override of it still decides the LM.
    Runs last: a parametrized override's or a test's own ``gepa_task_lm`` parameters win."""
    settings = metafunc.config.stash.get(SETTINGS_KEY, None)
    if settings is None or len(settings.task_lms) < 2 or "gepa_task_lm" not in metafunc.fixturenames:
        return
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0] if marker.args else marker.kwargs.get("argnames", "")
        if "gepa_task_lm" in (names.replace(" ", "").split(",") if isinstance(names, str) else names):
            return
    try:
        metafunc.parametrize("gepa_task_lm", list(settings.task_lms), indirect=True, ids=list(settings.task_lms),
                             scope="session")
    except pytest.Collector.CollectError:
        pass  # a parametrized gepa_task_lm fixture already made this test a matrix of its own models


def matrix_model(node: pytest.Item) -> str | None:
    """This test's model in a model matrix (its ``gepa_task_lm`` parameter as text), else None."""
    callspec = getattr(node, "callspec", None)
    if callspec is None or "gepa_task_lm" not in callspec.params:
        return None
    param = callspec.params["gepa_task_lm"]
    if isinstance(param, str):
        return param
    return str(getattr(param, "model", None) or param)


# -- which tests ran: a file's leftover artifacts are listed only when every test in it ran ----------


def pytest_collection_finish(session: pytest.Session) -> None:
    """Remember each test file's tests (on xdist workers too: they report them to the controller)."""
    gepa_session = _session(session.config)
    if gepa_session is not None:
        for item in session.items:
            gepa_session.collected.setdefault(item.nodeid.split("::")[0], set()).add(item.nodeid)
            model = matrix_model(item)
            if model is not None:
                gepa_session.models[item.nodeid] = model


def pytest_deselected(items: list[pytest.Item]) -> None:
    """Files some of whose tests were deselected (-k, -m, --lf) were not run whole."""
    for item in items:
        gepa_session = _session(item.config)
        if gepa_session is not None:
            gepa_session.partial.add(item.nodeid.split("::")[0])


class RanTests:
    """A test ran when its call phase did and did not skip: a test that calls ``pytest.skip``
    (or xfails) may stop before its ``gepa.compile``, and the artifact it names is still in use.
    On the xdist controller this sees every worker's tests."""

    def __init__(self, session: GepaSession) -> None:
        self.session = session

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and not report.skipped:
            self.session.ran.add(report.nodeid)


# -- record / replay for LMs used outside compile and gate -----------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Open the test's own cassette (``<name>.cassette.jsonl``) for the LMs the plugin hands out."""
    gepa_session = _session(item.config)
    if gepa_session is None or not gepa_session.settings.cassettes:
        return
    from pytest_gepa.artifact.paths import artifact_folder

    folder = artifact_folder(Path(item.path), item.config.rootpath, gepa_session.settings.artifact_dir)
    gepa_session.test_cassette_path = folder / f"{gepa_session.test_stem(item.nodeid)}.cassette.jsonl"
    gepa_session.test_nodeid = item.nodeid


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    yield
    gepa_session = _session(item.config)
    if gepa_session is not None and gepa_session.test_cassette_path is not None:
        gepa_session.close_test_cassette(passed=item.stash.get(CALL_OUTCOME_KEY, "did not run") == "passed")


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any],
                         request: pytest.FixtureRequest) -> Generator[None, Any, Any]:
    """Under record / replay every ``gepa_*_lm`` LM, a conftest override's too, goes through the
    running test's cassette: replay never opens a connection."""
    result = yield
    role = LM_FIXTURES.get(fixturedef.argname)
    gepa_session = _session(request.config)
    if role is None or _is_missing(result) or gepa_session is None or not gepa_session.settings.cassettes:
        return result
    wrapped = gepa_session.through_test_cassette(result, role)
    if fixturedef.cached_result is not None:
        fixturedef.cached_result = (wrapped, *fixturedef.cached_result[1:])
    return wrapped


# -- the end of the run -------------------------------------------------------------------------------


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write ``--gepa-report``, and append the job summary where ``GITHUB_STEP_SUMMARY`` is set, once,
    on the controller, after every worker's reports arrived."""
    config = session.config
    gepa_session = _session(config)
    if gepa_session is None or hasattr(config, "workerinput"):
        return
    import os

    summary = os.environ.get("GITHUB_STEP_SUMMARY", "").strip()
    if gepa_session.settings.report is None and not (summary and gepa_session.reports):
        return
    import datetime
    import sys

    from pytest_gepa import __version__

    reports = gepa_session.sorted_reports()
    meta = {
        "mode": gepa_session.settings.mode,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "pytest_gepa": __version__,
        "dspy": getattr(sys.modules.get("dspy"), "__version__", None),
        "exitstatus": int(exitstatus),
    }
    if gepa_session.settings.report is not None:
        from pytest_gepa.report.files import write_report

        gepa_session.report_problem = write_report(gepa_session.settings.report, reports, meta=meta)
    if summary and reports:
        from pytest_gepa.report.summary import append_job_summary

        gepa_session.summary_problem = append_job_summary(Path(summary), reports, meta=meta)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One row per target, then the command to run next; silent when no target ran."""
    config = terminalreporter.config
    session = _session(config)
    if session is None or not session.reports or hasattr(config, "workerinput"):
        return
    from pytest_gepa.report.terminal import summary_lines

    terminalreporter.write_sep("=", "gepa")
    for line in summary_lines(session.sorted_reports()):
        terminalreporter.write_line(line)
    if session.report_problem:
        terminalreporter.write_line(f"--gepa-report was not written: {session.report_problem}", yellow=True)
    if session.summary_problem:
        terminalreporter.write_line(f"the job summary was not written: {session.summary_problem}", yellow=True)
    if config.option.maxfail or config.getoption("lf", False):
        return  # a run cut short says nothing about which targets still exist
    unused = session.unused_files()
    if unused:
        terminalreporter.write_line(f"{len(unused)} gepa file(s) belong to no target of these tests any more "
                                    "(renamed or removed?); delete them if so:")
        for path in unused:
            terminalreporter.write_line(f"  {path}")


# -- fixtures -----------------------------------------------------------------------------------------


def _settings(config: pytest.Config) -> Settings:
    return config.stash[SETTINGS_KEY]


def _is_missing(lm: Any) -> bool:
    # Asked only where an LM is in hand: pytest_gepa.role_lms is loaded by then.
    import sys

    lms = sys.modules.get("pytest_gepa.role_lms")
    return lms is not None and isinstance(lm, lms.MissingLM)


def _role_lm(config: pytest.Config, role: str, model: str | None) -> Any:
    from pytest_gepa.role_lms import role_lm

    settings = _settings(config)
    # Under replay no call is made, so no key is needed (and litellm is never imported).
    return role_lm(role, model, retries=settings.retries, check_keys=not settings.replay)


@pytest.fixture(scope="session")
def gepa_task_lm(pytestconfig: pytest.Config, request: pytest.FixtureRequest) -> Any:
    """The LM the compiled program runs on (``--gepa-task-lm`` / ini ``gepa_task_lm``); in a model
    matrix this test's model, ``request.param`` (an override in conftest.py can read it too)."""
    return _role_lm(pytestconfig, "task", getattr(request, "param", None) or _settings(pytestconfig).task_lm)


# Precedence for reflection and judge: their own flag / ini key, else the task LM, whether that
# comes from a flag or from a gepa_task_lm fixture overridden in conftest.py.


# Both request gepa_task_lm by name: in a model matrix the default follows this test's model
# (a session fixture that only looked it up would keep the first model's LM for every model).


@pytest.fixture(scope="session")
def gepa_reflection_lm(pytestconfig: pytest.Config, gepa_task_lm: Any) -> Any:
    """GEPA's reflection LM (``--gepa-reflection-lm``); defaults to the task LM."""
    model = _settings(pytestconfig).reflection_lm
    return _role_lm(pytestconfig, "reflection", model) if model else gepa_task_lm


@pytest.fixture(scope="session")
def gepa_judge_lm(pytestconfig: pytest.Config, gepa_task_lm: Any) -> Any:
    """The LM that scores rubric criteria (``--gepa-judge-lm``); defaults to the task LM."""
    model = _settings(pytestconfig).judge_lm
    return _role_lm(pytestconfig, "judge", model) if model else gepa_task_lm


@pytest.fixture
def gepa_examples(request: pytest.FixtureRequest) -> Callable[..., ExampleSet]:
    """Load labeled examples; a relative path is relative to the requesting test file."""
    from pytest_gepa.data import load_examples

    def load(path: str | Path, *, inputs: list[str] | tuple[str, ...], split: Any = None) -> ExampleSet:
        return load_examples(request.path.parent / path, inputs=inputs, split=split)

    return load


@pytest.fixture
def gepa_rubric(request: pytest.FixtureRequest) -> Callable[..., Rubric]:
    """Load a rubric file (relative to the test file); its judge is the file's ``judge_lm``, else
    gepa_judge_lm. Under record / replay a rubric's own model goes through the test's cassette too."""
    from pytest_gepa.rubric import load_rubric

    gepa_session = request.config.stash[SESSION_KEY]

    def load(path: str | Path) -> Rubric:
        return load_rubric(request.path.parent / path, judge_lm=lambda: request.getfixturevalue("gepa_judge_lm"),
                           wrap_lm=lambda lm: gepa_session.through_test_cassette(lm, "judge"))

    return load


def _param_id(node: Any, model: str) -> str:
    """The model parameter's part of the node id: the model string itself for ``--gepa-task-lm``
    models; for a parametrized override's non-text parameters, whatever the id has in brackets."""
    param = node.callspec.params["gepa_task_lm"]
    return model if isinstance(param, str) else node.callspec.id


def _progress_writer(config: pytest.Config) -> Callable[[str], None]:
    """Progress lines reach the terminal even while pytest captures the test's output."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or hasattr(config, "workerinput") or config.get_verbosity() < 0:
        return lambda line: None

    def write(line: str) -> None:
        if capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(f"[gepa] {line}")
        else:
            reporter.write_line(f"[gepa] {line}")

    return write


def _lm_getter(request: pytest.FixtureRequest) -> Callable[[str], Any]:
    def get_lm(role: str) -> Any:
        lm = request.getfixturevalue(f"gepa_{role}_lm")
        if _is_missing(lm):
            lm.fail()
        return lm

    return get_lm


@pytest.fixture
def gepa(request: pytest.FixtureRequest, gepa_task_lm: Any) -> Generator[GepaHandle, None, None]:
    """This test's build-step handle: ``gepa.compile(...)`` and ``gepa.gate(...)``. It requests
    ``gepa_task_lm`` by name so that a parametrized override of it makes a model matrix."""
    from pytest_gepa.artifact.paths import without_param
    from pytest_gepa.flows.handle import GepaHandle
    from pytest_gepa.flows.target import BuildContext

    config = request.config
    model = matrix_model(request.node)
    nodeid = request.node.nodeid
    handle = GepaHandle(BuildContext(
        nodeid=nodeid, test_file=Path(request.path), rootdir=config.rootpath,
        session=config.stash[SESSION_KEY], get_lm=_lm_getter(request), progress=_progress_writer(config),
        model=model, base_nodeid=None if model is None else without_param(nodeid, _param_id(request.node, model)),
    ))
    yield handle
    try:
        # No call report (setup failed or was interrupted) is no pass either.
        handle.finish(test_outcome=request.node.stash.get(CALL_OUTCOME_KEY, "did not run"))
    finally:
        # JUnit XML (and anything else reading user_properties) gets each target's outcome.
        for report in handle.reports:
            prefix = "gepa" if len(handle.reports) == 1 else f"gepa[{report.name}]"
            for key, value in (("model", report.model if report.matrix_target else None),
                               ("transfer_from", report.transfer_from), ("score", report.score),
                               ("min_score", report.min_score),
                               ("max_drop", report.max_drop), ("recorded", report.recorded),
                               ("drop", report.drop), ("status", report.status)):
                if value is not None:
                    request.node.user_properties.append((f"{prefix}_{key}", value))
