"""The layout is the architecture: small rooms, no import cycles, and a start-up that loads only
what a run needs. (The layers themselves are import-linter's contract in pyproject.toml.)"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import grimp
import pytest
from conftest import literal

PACKAGE = Path(__file__).resolve().parent.parent / "pytest_gepa"
MAX_LINES = 400
# The rooms a run without any gepa target has no use for.
ROOMS = ("flows", "verdict", "data", "rubric", "report", "cassette", "local_model", "artifact", "usage",
         "evaluate", "optimizer", "role_lms")
# Folder names that structure viewers, coverage and lint defaults and common ignore templates skip.
IGNORED_BY_TOOLS = {"build", "dist", "out", "target", "tmp", "temp", "vendor", "node_modules", "venv", "env"}


def test_no_module_is_over_400_lines() -> None:
    sizes = {str(path.relative_to(PACKAGE)): len(path.read_text(encoding="utf-8").splitlines())
             for path in PACKAGE.rglob("*.py")}
    assert {name: lines for name, lines in sizes.items() if lines > MAX_LINES} == {}


def test_no_room_has_a_name_that_tools_skip() -> None:
    rooms = {path.name for path in PACKAGE.iterdir() if path.is_dir() and (path / "__init__.py").is_file()}
    assert rooms & IGNORED_BY_TOOLS == set()


def test_no_import_cycles_lazy_or_not() -> None:
    # grimp sees imports inside functions too: a lazy cycle is still a cycle.
    graph = grimp.build_graph("pytest_gepa", exclude_type_checking_imports=True)
    cycles = sorted({tuple(sorted((module, imported)))
                     for module in graph.modules for imported in graph.find_modules_directly_imported_by(module)
                     if graph.chain_exists(importer=imported, imported=module)})
    assert cycles == []


def test_a_run_without_targets_imports_no_room_it_does_not_need(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    pytester.makeconftest(textwrap.dedent(f"""
        import sys
        def pytest_sessionfinish(session):
            rooms = {ROOMS!r}
            loaded = sorted(m for m in sys.modules
                            if m.split(".")[0] in ("dspy", "litellm", "gepa", "jinja2")
                            or (m.startswith("pytest_gepa.") and m.split(".")[1] in rooms))
            print("LOADED", loaded)
    """))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s")
    result.stdout.fnmatch_lines(["*LOADED " + literal("[]")])


def test_importing_the_plugin_loads_only_its_wiring() -> None:
    code = "import sys, pytest_gepa.plugin; print(sorted(m for m in sys.modules if m.startswith('pytest_gepa')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert eval(out) == ["pytest_gepa", "pytest_gepa.config", "pytest_gepa.errors", "pytest_gepa.plugin",
                         "pytest_gepa.session"]
