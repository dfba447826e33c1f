"""Every target has its own artifact: class-qualified default names, --gepa-artifact-dir paths that
keep same-named test files apart, an error when two targets share a file, and an artifact carried
over from another test is stale."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from conftest import TriageProject, literal

TARGET_BODY = '''
    data = gepa_examples("{data}", inputs=["ticket"])
    metric = metrics.exact_match("category")
    program = gepa.compile(dspy.ChainOfThought(Triage), data, metric=metric{name})
    gepa.gate(program, data.test, metric=metric, min_score=0.85, max_drop=0.03)
'''

HEADER = '''
import dspy
from pytest_gepa import metrics

class Triage(dspy.Signature):
    """Classify the support ticket into one of: billing, claims, technical, account, shipping."""
    ticket: str = dspy.InputField()
    category: str = dspy.OutputField()
'''


def _body(indent: str, *, data: str = "data/triage.jsonl", name: str | None = None) -> str:
    text = TARGET_BODY.format(data=data, name="" if name is None else f", name={name!r}")
    return textwrap.indent(textwrap.dedent(text), indent)


CLASS_AND_FUNCTION = (HEADER + "\nclass TestA:\n    def test_prompt(self, gepa, gepa_examples):\n" + _body(" " * 8)
                      + "\nclass TestB:\n    def test_prompt(self, gepa, gepa_examples):\n" + _body(" " * 8)
                      + "\ndef test_prompt(gepa, gepa_examples):\n" + _body(" " * 4))


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_tests_of_the_same_name_in_classes_each_get_their_own_artifact(triage_project: TriageProject,
                                                                      workers: list[str]) -> None:
    triage_project.write_test(source=CLASS_AND_FUNCTION)
    triage_project.compile(*workers).assert_outcomes(passed=3)
    folder = triage_project.root / "gepa_artifacts" / "test_triage"
    names = {"TestA.test_prompt", "TestB.test_prompt", "test_prompt"}
    assert {p.name for p in folder.glob("*.json")} == {f"{n}.json" for n in names}
    targets = {json.loads((folder / f"{n}.json").read_text())["target"] for n in names}
    assert targets == {"test_triage.py::TestA::test_prompt", "test_triage.py::TestB::test_prompt",
                       "test_triage.py::test_prompt"}
    triage_project.run(*workers).assert_outcomes(passed=3)


def _same_named_test_files(project: TriageProject) -> None:
    (project.root / "test_triage.py").unlink()
    for package in ("a", "b"):
        (project.root / package).mkdir()
        (project.root / package / "__init__.py").write_text("")
        (project.root / package / "test_x.py").write_text(
            HEADER + "\ndef test_prompt(gepa, gepa_examples):\n" + _body(" " * 4, data="../data/triage.jsonl"))


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_artifact_dir_keeps_same_named_test_files_apart(triage_project: TriageProject, workers: list[str]) -> None:
    _same_named_test_files(triage_project)
    result = triage_project.compile("--gepa-artifact-dir", "artifacts", *workers)
    result.assert_outcomes(passed=2)
    for package in ("a", "b"):
        artifact = triage_project.root / "artifacts" / package / "test_x" / "test_prompt.json"
        assert json.loads(artifact.read_text())["target"] == f"{package}/test_x.py::test_prompt"
    assert not (triage_project.root / "artifacts" / "test_x").exists()
    gate = triage_project.run("--gepa-artifact-dir", "artifacts", *workers)
    gate.assert_outcomes(passed=2)
    gate.stdout.fnmatch_lines(["a/test_x.py::test_prompt*gate*1.000*passed*",
                               "b/test_x.py::test_prompt*gate*1.000*passed*"])


TWO_NAMED_ALIKE = (HEADER + "\ndef test_one(gepa, gepa_examples):\n" + _body(" " * 4, name="shared")
                   + "\ndef test_two(gepa, gepa_examples):\n" + _body(" " * 4, name="shared"))


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_two_targets_resolving_to_one_file_is_an_error_naming_both(triage_project: TriageProject,
                                                                   workers: list[str]) -> None:
    triage_project.write_test(source=TWO_NAMED_ALIKE)
    result = triage_project.compile(*workers)
    result.assert_outcomes(passed=1, failed=1)
    found = re.search(r"GepaError: '(test_triage.py::test_\w+)' and '(test_triage.py::test_\w+)' both resolve to "
                      r"the artifact '\S*gepa_artifacts/test_triage/shared.json'; give one of them its own name "
                      r"with gepa.compile\(..., name='...'\)", result.stdout.str())
    assert found, result.stdout.str()
    loser, winner = found.groups()
    assert {loser, winner} == {"test_triage.py::test_one", "test_triage.py::test_two"}
    if not workers:
        assert winner == "test_triage.py::test_one"  # in file order, the first claims the file
    # The file is the first claimant's alone: the other target never wrote it.
    artifact = triage_project.root / "gepa_artifacts" / "test_triage" / "shared.json"
    assert json.loads(artifact.read_text())["target"] == winner


def test_an_artifact_compiled_for_another_test_is_stale_naming_both(triage_project: TriageProject) -> None:
    triage_project.compile().assert_outcomes(passed=1)
    # Someone copied the artifact of a neighbouring test over this one's.
    data = json.loads(triage_project.artifact.read_text())
    data["target"] = "test_triage.py::test_refund_prompt"
    triage_project.artifact.write_text(json.dumps(data, indent=2, sort_keys=True))
    result = triage_project.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        f"StaleArtifactError: The artifact '*test_triage_prompt.json' is stale: it was compiled for "
        f"{literal(repr('test_triage.py::test_refund_prompt'))}, not {literal(repr(triage_project.nodeid))}. "
        "Run `pytest --gepa-compile test_triage.py::test_triage_prompt` to recompile it.",
    ])
    result.stdout.fnmatch_lines(["*test_triage_prompt*gate*stale*"])


@pytest.mark.parametrize("mode", ["compile", "gate"])
@pytest.mark.parametrize("name", ["../x", "sub/../../x", "ABSOLUTE"], ids=["parent", "through-a-subfolder", "absolute"])
def test_a_name_that_leaves_the_artifact_folder_is_an_error_and_nothing_is_written_outside(
        triage_project: TriageProject, tmp_path: Path, name: str, mode: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    name = str(elsewhere / "x") if name == "ABSOLUTE" else name
    triage_project.write_test(source=HEADER + "\ndef test_triage_prompt(gepa, gepa_examples):\n"
                              + _body(" " * 4, name=name))
    result = triage_project.compile() if mode == "compile" else triage_project.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        f"GepaError: gepa.compile(..., name={literal(repr(name))}) leaves the artifact folder "
        "'*gepa_artifacts/test_triage': its artifact would be '*x.json'. A name must stay inside that folder: "
        "give a plain name such as 'x', or move the folder with --gepa-artifact-dir.",
    ])
    assert sorted(triage_project.root.rglob("*.json")) == [], "a file was written for the refused name"
    assert not elsewhere.exists()


def test_a_name_inside_a_subfolder_of_the_artifact_folder_is_kept_there(triage_project: TriageProject) -> None:
    triage_project.write_test(source=HEADER + "\ndef test_triage_prompt(gepa, gepa_examples):\n"
                              + _body(" " * 4, name="intents/refund"))
    triage_project.compile().assert_outcomes(passed=1)
    assert [p.relative_to(triage_project.root).as_posix() for p in triage_project.root.rglob("*.json")] == [
        "gepa_artifacts/test_triage/intents/refund.json"]
    triage_project.run().assert_outcomes(passed=1)
