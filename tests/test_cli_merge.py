"""``pytest-gepa merge``: three real runs on disjoint parts of a suite, merged, read the same as one run
of the whole; bad inputs are usage errors naming the file; the job summary goes to GITHUB_STEP_SUMMARY."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TriageProject
from test_gate import BASE_INSTRUCTION
from test_report_files import browser, open_in_chromium, png_size_and_colours  # noqa: F401 (a fixture)

THREE_TARGETS = '''
import dspy
from pytest_gepa import metrics

class Triage(dspy.Signature):
    """Classify the support ticket into one of: billing, claims, technical, account, shipping."""
    ticket: str = dspy.InputField()
    category: str = dspy.OutputField()

def _target(gepa, gepa_examples, min_score):
    data = gepa_examples("data/triage.jsonl", inputs=["ticket"])
    metric = metrics.exact_match("category")
    program = gepa.compile(dspy.ChainOfThought(Triage), data, metric=metric)
    gepa.gate(program, data.test, metric=metric, min_score=min_score, max_drop=1.0)

def test_easy(gepa, gepa_examples):
    _target(gepa, gepa_examples, {easy})

def test_mid(gepa, gepa_examples):
    _target(gepa, gepa_examples, 0.5)

def test_strict(gepa, gepa_examples):
    _target(gepa, gepa_examples, {strict})
'''
SHARDS = (["test_triage.py::test_easy"], ["test_triage.py::test_mid"], ["test_triage.py::test_strict"])
WRITTEN = re.compile(r"written \d{4}-\d\d-\d\dT[0-9:+]+")


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m pytest_gepa``, as a CI step runs it (the console script is checked once, below)."""
    return subprocess.run([sys.executable, "-m", "pytest_gepa", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=env, check=False)


@pytest.fixture
def suite(triage_project: TriageProject) -> TriageProject:
    """Three compiled targets; then one's artifact goes back to the naive seed instruction (~0.5) and
    its test demands 0.9, so the suite has a failed verdict."""
    triage_project.write_test(source=THREE_TARGETS.format(easy=0.5, strict=0.5))
    triage_project.compile().assert_outcomes(passed=3)
    strict = triage_project.root / "gepa_artifacts" / "test_triage" / "test_strict.json"
    data = json.loads(strict.read_text())
    data["program"]["predict"]["signature"]["instructions"] = BASE_INSTRUCTION
    strict.write_text(json.dumps(data))
    triage_project.write_test(source=THREE_TARGETS.format(easy=0.5, strict=0.9))
    return triage_project


@pytest.fixture
def shards(suite: TriageProject) -> list[Path]:
    paths = []
    for index, part in enumerate(SHARDS, 1):
        path = suite.root / f"shard{index}.json"
        suite.run("--gepa-report", str(path), *part)
        paths.append(path)
    return paths


def test_three_shards_merged_are_one_run_of_the_whole_suite(suite: TriageProject, shards: list[Path],
                                                            tmp_path: Path) -> None:
    whole = {}
    for suffix in (".json", ".md", ".html"):
        suite.run("--gepa-report", f"whole{suffix}").assert_outcomes(passed=2, failed=1)
        whole[suffix] = (suite.root / f"whole{suffix}").read_text()

    # In a scrambled order: the merge sorts the rows as one run would.
    done = cli("merge", str(shards[2]), str(shards[0]), str(shards[1]), "--output", "merged.json",
               "-o", "merged.md", "--output", "out/merged.html", cwd=suite.root)
    assert done.returncode == 1, done.stderr  # the strict target's failed verdict is in what it read
    assert "test_strict" in done.stdout and "failed" in done.stdout
    assert "wrote out/merged.html" in done.stdout

    merged, one_run = json.loads((suite.root / "merged.json").read_text()), json.loads(whole[".json"])
    assert [t["name"] for t in merged["targets"]] == ["test_easy", "test_mid", "test_strict"]
    assert merged["targets"] == one_run["targets"], "row for row, verdict for verdict"
    assert merged["totals"] == one_run["totals"]
    assert merged["meta"]["exitstatus"] == one_run["meta"]["exitstatus"] == 1
    assert [source["path"] for source in merged["meta"]["merged_from"]] == [str(p) for p in (shards[2], *shards[:2])]
    assert [source["targets"] for source in merged["meta"]["merged_from"]] == [1, 1, 1]

    # The Markdown and HTML are drawn again from the JSON alone; only the time written differs.
    for name, suffix in (("merged.md", ".md"), ("out/merged.html", ".html")):
        text = (suite.root / name).read_text()
        assert text.count("merged from 3 reports") == 1, name
        text = text.replace(", merged from 3 reports", "")
        assert WRITTEN.sub("written T", text) == WRITTEN.sub("written T", whole[suffix]), name


@pytest.mark.usefixtures("browser")
def test_the_merged_html_renders_in_chromium(suite: TriageProject, shards: list[Path], tmp_path: Path) -> None:
    assert cli("merge", *map(str, shards), "--output", "merged.html", cwd=suite.root).returncode == 1
    dom, console, screenshot = open_in_chromium(suite.root / "merged.html", tmp_path)
    assert console == []
    assert dom.count('<section class="target') == 3
    for name in ("test_easy", "test_mid", "test_strict"):
        assert f"test_triage.py::{name}" in dom
    assert "is under min_score 0.900" in dom
    width, height, colours = png_size_and_colours(screenshot)
    assert (width, height) == (1200, 1800) and colours > 20, "the screenshot is (nearly) blank"


def test_the_console_script_is_installed_and_matches_python_m(suite: TriageProject, shards: list[Path]) -> None:
    script = Path(sys.executable).with_name("pytest-gepa")
    assert script.exists(), "pip install -e . installs the pytest-gepa console script"
    done = subprocess.run([str(script), "merge", str(shards[0]), "--output", "one.json"], cwd=suite.root,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr  # test_easy passed: nothing failed in what it read
    assert json.loads((suite.root / "one.json").read_text())["totals"]["targets"] == 1


def test_the_same_target_in_two_reports_is_an_error_naming_both(suite: TriageProject, shards: list[Path]) -> None:
    again = suite.root / "again.json"
    shutil.copy(shards[0], again)
    done = cli("merge", str(shards[0]), str(shards[1]), str(again), "--output", "merged.json", cwd=suite.root)
    assert done.returncode == 4
    assert (f"target 'test_triage.py::test_easy' on model 'scripted/task' is in both {str(shards[0])!r} and {str(again)!r}; each report "
            "must come from a different part of the suite") in done.stderr
    assert not (suite.root / "merged.json").exists(), "nothing is written from a conflicting merge"


def test_rows_on_different_models_are_different_rows(suite: TriageProject, shards: list[Path]) -> None:
    document = json.loads(shards[0].read_text())
    for model, name in (("openai/a", "a.json"), ("openai/b", "b.json")):
        document["targets"][0]["model"] = model
        (suite.root / name).write_text(json.dumps(document))
    done = cli("merge", "b.json", "a.json", "--output", "merged.json", cwd=suite.root)
    assert done.returncode == 0, done.stderr
    rows = json.loads((suite.root / "merged.json").read_text())["targets"]
    assert [(row["nodeid"], row["model"]) for row in rows] == [("test_triage.py::test_easy", "openai/a"),
                                                              ("test_triage.py::test_easy", "openai/b")]


def test_fields_this_version_does_not_know_survive_the_merge(suite: TriageProject, shards: list[Path]) -> None:
    document = json.loads(shards[0].read_text())
    document["targets"][0]["draws"] = {"example-1": [1.0, 0.0, 1.0]}  # a field a later pytest-gepa adds
    document["targets"][0]["per_example"][0]["draws"] = [1.0, 1.0]
    document["baselines"] = {"note": "a top-level key from a later version"}
    shards[0].write_text(json.dumps(document))
    assert cli("merge", *map(str, shards), "--output", "merged.json", "--output", "merged.md",
               cwd=suite.root).returncode == 1
    merged = json.loads((suite.root / "merged.json").read_text())
    easy = next(row for row in merged["targets"] if row["name"] == "test_easy")
    assert easy["draws"] == {"example-1": [1.0, 0.0, 1.0]}
    assert easy["per_example"][0]["draws"] == [1.0, 1.0]
    assert merged["meta"]["merged_from"][0]["baselines"] == {"note": "a top-level key from a later version"}


@pytest.mark.parametrize(("content", "expected"), [
    (None, "'missing.json': no such file; pass the JSON reports the runs wrote with `pytest --gepa-report PATH.json`"),
    ("{not json", "'bad.json': not valid JSON at line 1, column 2"),
    ('{"schema": "pytest-gepa-report/2", "targets": []}',
     "'bad.json': report format 'pytest-gepa-report/2', this pytest-gepa reads 'pytest-gepa-report/1'; merge "
     "reports written by the same pytest-gepa version"),
    ('{"schema_version": 2, "target": "t.py::t"}', "'bad.json': an artifact, no 'schema' key; merge reads the JSON "
     "files written by `pytest --gepa-report PATH.json`; compare artifacts with `pytest-gepa diff`"),
    ('{"schema": "pytest-gepa-report/1", "targets": [{"nodeid": "t.py::t"}]}',
     "'bad.json': targets[0] ('t.py::t') is not a target row (missing name, mode, artifact)"),
], ids=["missing", "not-json", "other-version", "an-artifact", "broken-row"])
def test_a_report_that_cannot_be_merged_is_a_usage_error_naming_it(tmp_path: Path, content: str | None,
                                                                   expected: str) -> None:
    name = "missing.json" if content is None else "bad.json"
    if content is not None:
        (tmp_path / name).write_text(content)
    done = cli("merge", name, "--output", "merged.json", cwd=tmp_path)
    assert done.returncode == 4
    assert f"pytest-gepa merge: error: {expected}" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("args", "expected"), [
    ([], "error: the following arguments are required: COMMAND"),
    (["merge", "a.json"], "error: the following arguments are required: --output/-o"),
    (["merge", "a.json", "--output", "merged.txt"], "--output 'merged.txt': expected a path ending in .json, .md, "
     ".html"),
    (["merge", "a.json", "--output", "a.json"], "--output 'a.json' is also a report to merge"),
    (["diff"], "error: the following arguments are required: ARTIFACT.json"),
    (["diff", "a.json", "b.json", "c.json"], "expected OLD.json NEW.json or one PATH, got 3 paths"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
], ids=["no-command", "no-output", "bad-suffix", "output-is-input", "diff-nothing", "diff-three", "unknown"])
def test_usage_errors_exit_4(tmp_path: Path, args: list[str], expected: str) -> None:
    done = cli(*args, cwd=tmp_path)
    assert done.returncode == 4, done.stderr
    assert expected in done.stderr


@pytest.mark.parametrize("args", [["--help"], ["merge", "--help"], ["diff", "--help"]])
def test_help_on_each_command(tmp_path: Path, args: list[str]) -> None:
    done = cli(*args, cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.startswith("usage: pytest-gepa")
    assert ("Exit status: 0 fine, 1 a failed verdict" in done.stdout) == (args == ["--help"])


def test_the_ci_example_calls_both_commands_as_they_parse() -> None:
    import shlex

    import yaml

    from pytest_gepa.cli.main import build_parser

    workflow = yaml.safe_load((Path(__file__).parents[1] / "examples" / "ci" / "gepa-sharded.yml").read_text())
    commands = [line.strip() for job in workflow["jobs"].values() for step in job["steps"]
                for line in str(step.get("run", "")).splitlines() if "pytest-gepa " in line]
    seen = set()
    for command in commands:
        words = shlex.split(command[command.index("pytest-gepa "):].split(">>")[0])
        args = build_parser().parse_args(words[1:])  # a usage error would exit 4 here
        seen.add(args.command)
    assert seen == {"merge", "diff"}


def test_one_job_per_model_merged_is_the_model_matrix_of_one_run(pytester: pytest.Pytester) -> None:
    from test_option_gepa_task_lm_matrix import MATRIX_LMS, TWO

    project = TriageProject(pytester, lms=MATRIX_LMS)
    project.compile("--gepa-task-lm", TWO).assert_outcomes(passed=2)
    project.run("--gepa-task-lm", TWO, "--gepa-report", "whole.json").assert_outcomes(passed=2)
    jobs = []
    for model in TWO.split(","):
        jobs.append(f"{model.rsplit('/', 1)[-1]}.json")
        project.run("--gepa-task-lm", TWO, "--gepa-report", jobs[-1],
                    f"{project.nodeid}[{model}]").assert_outcomes(passed=1)
    done = cli("merge", *reversed(jobs), "--output", "merged.json", "--output", "merged.md", cwd=project.root)
    assert done.returncode == 0, done.stderr
    merged, whole = (json.loads((project.root / name).read_text()) for name in ("merged.json", "whole.json"))
    assert [(row["matrix_target"], row["model"]) for row in merged["targets"]] == [
        (project.nodeid, "scripted/task"), (project.nodeid, "scripted/task-pro")]
    assert merged["targets"] == whole["targets"] and merged["totals"] == whole["totals"]
    markdown = (project.root / "merged.md").read_text()
    matrix = markdown[markdown.index("### Model matrix"):markdown.index("### Next steps")]
    assert "| target | `scripted/task` | `scripted/task-pro` |" in matrix
    assert f"| `{project.nodeid}` | 1.000 passed | 1.000 passed |" in matrix
