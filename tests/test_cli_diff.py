"""``pytest-gepa diff`` on a real recompile in the scripted world: a committed artifact from a short GEPA
run, recompiled with a larger budget, read as a reviewer reads it; and its Markdown in the job summary."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import TriageProject
from test_cli_merge import cli

SHORT_BUDGET = "16"  # one GEPA proposal: about 0.7 on the devset, so a light budget's 1.0 replaces it


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=60).stdout


@pytest.fixture
def recompiled(triage_project: TriageProject) -> TriageProject:
    """A repository whose HEAD holds an artifact from a short compile; the working tree, the artifact a
    longer compile made of the same target (its report in report.json)."""
    root = triage_project.root
    git("init", "-q", cwd=root)
    git("config", "user.email", "dev@example.com", cwd=root)
    git("config", "user.name", "dev", cwd=root)
    triage_project.write_test(min_score=0.5, max_drop=0.5)
    first = triage_project.run("--gepa-compile", "--gepa-budget", SHORT_BUDGET)
    first.stdout.fnmatch_lines(["*test_triage_prompt*compile*0.700*compiled*"])
    git("add", "-A", cwd=root)
    git("commit", "-q", "-m", "first compile", cwd=root)
    second = triage_project.compile("--gepa-report", "report.json")
    second.stdout.fnmatch_lines(["*test_triage_prompt*compile*1.000*compiled*"])
    return triage_project


def test_diff_against_head_shows_the_instruction_scores_examples_and_provenance(recompiled: TriageProject) -> None:
    root = recompiled.root
    artifact = "gepa_artifacts/test_triage/test_triage_prompt.json"
    old = json.loads(git("show", f"HEAD:{artifact}", cwd=root))
    new = json.loads(recompiled.artifact.read_text())
    assert old["instructions"] != new["instructions"]

    done = cli("diff", artifact, cwd=root)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith("artifact test_triage.py::test_triage_prompt [test_triage_prompt]\n"
                           f"--- HEAD:{artifact}\n+++ {artifact}\n")
    # The word diff: every line GEPA added is marked added; what both versions say is unmarked.
    instruction = text[text.index("instruction of predict:"):text.index("scores (before -> after):")]
    added = [line for line in new["instructions"]["predict"].splitlines()
             if line not in old["instructions"]["predict"].splitlines()]
    assert added, "the longer compile learned more conventions"
    for line in added:
        assert "{+" + line.split()[0] in instruction or line in instruction
    assert "{+" in instruction
    assert "Classify the support ticket into one of: billing, claims, technical, account, shipping." in instruction
    # Scores before and after, with the interval.
    ci = new["scores"]["devset"]["ci"]
    assert (f"devset score [95% CI]: 0.700 [{old['scores']['devset']['ci'][0]:.3f}, "
            f"{old['scores']['devset']['ci'][1]:.3f}] -> 1.000 [{ci[0]:.3f}, {ci[1]:.3f}]") in text
    # The examples that went from wrong to right, by id, largest change first (the artifact has no inputs).
    rose = sorted(i for i, score in new["scores"]["devset"]["per_example"].items()
                  if score > old["scores"]["devset"]["per_example"][i])
    assert f"examples whose score changed: {len(rose)} ({10 - len(rose)} unchanged)" in text
    for example_id in rose:
        assert f"    {example_id}: 0.00 -> 1.00" in text
    assert "(inputs and outputs: pass --report REPORT.json of the run that compiled it)" in text
    # The provenance that changed: the optimizer's budget (same data, metric, program and models).
    provenance = text[text.index("provenance that changed:"):]
    assert f"    optimizer.budget: {SHORT_BUDGET} -> " in provenance
    assert "provenance.dataset" not in provenance and "provenance.models" not in provenance


def test_diff_with_the_report_shows_inputs_and_outputs_and_old_new_files(recompiled: TriageProject) -> None:
    root = recompiled.root
    (root / "old.json").write_text(git("show", "HEAD:gepa_artifacts/test_triage/test_triage_prompt.json", cwd=root))
    done = cli("diff", "old.json", str(recompiled.artifact), "--report", "report.json", "--format", "markdown",
               cwd=root)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith("### Artifact `test_triage.py::test_triage_prompt` \\[test\\_triage\\_prompt\\]")
    assert "<pre>" in text and "<ins>" in text
    report = json.loads((root / "report.json").read_text())
    rows = {row["id"]: row for row in report["targets"][0]["per_example"]}
    changed = [line for line in text.splitlines() if line.startswith("| `") and " → " in line]
    assert changed, "the changed examples are listed"
    for line in changed:
        example_id = line.split("`")[1]
        assert f"ticket: {rows[example_id]['inputs']['ticket'][:40]}" in line
        assert f"category: {rows[example_id]['output']['category']}" in line
    assert "| `optimizer.budget` | 16 |" in text


def test_a_recompile_puts_its_diff_into_the_job_summary(triage_project: TriageProject,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    root = triage_project.root
    git("init", "-q", cwd=root)
    git("config", "user.email", "dev@example.com", cwd=root)
    git("config", "user.name", "dev", cwd=root)
    triage_project.write_test(min_score=0.5, max_drop=0.5)
    triage_project.run("--gepa-compile", "--gepa-budget", SHORT_BUDGET).assert_outcomes(passed=1)
    git("add", "-A", cwd=root)
    git("commit", "-q", "-m", "first compile", cwd=root)
    summary = root / "step-summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    triage_project.compile("-n", "2").assert_outcomes(passed=1)
    text = summary.read_text()
    assert text.startswith("earlier step\n## pytest-gepa\n"), "appended, never replacing"
    assert text.count("## pytest-gepa") == 1, "the controller alone writes it under xdist"
    artifact = text[text.index("### Artifact `test_triage.py::test_triage_prompt`"):]
    assert "`HEAD:test_triage_prompt.json` → " in artifact
    assert "<ins>" in artifact and "| devset score \\[95% CI\\] | 0.700" in artifact
    assert "ticket: " in artifact, "the run's own report rows give the changed examples' inputs"


def test_a_gate_run_writes_the_summary_without_a_diff(triage_project: TriageProject,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    triage_project.compile().assert_outcomes(passed=1)
    summary = triage_project.root / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    triage_project.run().assert_outcomes(passed=1)
    text = summary.read_text()
    assert text.startswith("## pytest-gepa\n") and "### Targets" in text and "### Artifact" not in text
    assert "| `test_triage.py::test_triage_prompt` | gate |" in text


def test_diff_errors_name_the_file_and_exit_4(triage_project: TriageProject, tmp_path: Path) -> None:
    triage_project.compile("--gepa-report", "report.json").assert_outcomes(passed=1)
    root = triage_project.root
    artifact = "gepa_artifacts/test_triage/test_triage_prompt.json"
    cases = [
        (["diff", "nope.json", artifact], "'nope.json': no such file"),
        (["diff", "nope.json"], "'nope.json': no such file"),
        (["diff", "report.json", artifact], "'report.json': a --gepa-report file, not an artifact"),
        (["diff", "data/triage.jsonl", artifact], "'data/triage.jsonl': not valid JSON at line 2"),
        (["diff", artifact], f"{artifact!r}: not in git's HEAD (not a git repository"),
        (["diff", artifact, artifact, "--report", "nope.json"], "'nope.json': no such file"),
    ]
    for args, expected in cases:
        done = cli(*args, cwd=root)
        assert done.returncode == 4, (args, done.stdout)
        assert f"pytest-gepa diff: error: {expected}" in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    git("init", "-q", cwd=root)
    done = cli("diff", artifact, cwd=root)
    assert done.returncode == 4
    assert "not in git's HEAD" in done.stderr and "pytest-gepa diff OLD.json NEW.json" in done.stderr
    shutil.copy(triage_project.artifact, tmp_path / "same.json")
    done = cli("diff", str(triage_project.artifact), str(tmp_path / "same.json"), cwd=root)
    assert done.returncode == 0 and done.stdout.endswith("no changes\n")
