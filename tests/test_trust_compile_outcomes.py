"""A compile never makes the artifact worse: a tie keeps the current one, a test that fails after
its gate writes nothing, a test without a gate is held to the ini thresholds, and a rewritten
artifact takes its stale cassette away, saying so."""

from __future__ import annotations

import json

import pytest
from conftest import TRIAGE_TEST, TriageProject, literal, write_split_triage_data
from test_gate import BASE_INSTRUCTION

REJECTED = "test_triage_prompt.rejected.json"


def _naive_artifact(project: TriageProject, instruction: str = BASE_INSTRUCTION) -> bytes:
    """The committed artifact with the seed instruction (or another naive one) back in place: valid,
    not stale, ~0.5."""
    data = json.loads(project.artifact.read_text())
    data["program"]["predict"]["signature"]["instructions"] = instruction
    project.artifact.write_text(json.dumps(data, indent=2, sort_keys=True))
    return project.artifact.read_bytes()


def test_recompiling_an_unchanged_target_keeps_the_artifact_byte_identical(triage_project: TriageProject) -> None:
    first = triage_project.compile("--gepa-record")
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["*test_triage_prompt*compile*compiled*"])
    before, cassette = triage_project.artifact.read_bytes(), triage_project.cassette.read_bytes()

    second = triage_project.compile("-W", "default")
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines(["*test_triage_prompt*compile*kept*"])
    assert triage_project.artifact.read_bytes() == before
    rejected = json.loads((triage_project.artifact.with_name(REJECTED)).read_text())
    # The tie: the candidate and the current artifact, both scored in this run on the same examples.
    assert rejected["scores"]["current"]["optimized"] == rejected["scores"]["devset"]["optimized"] == 1.0
    # The artifact stayed, so its cassette still matches it and stays too.
    assert triage_project.cassette.read_bytes() == cassette
    triage_project.run("--gepa-replay").assert_outcomes(passed=1)


OWN_ASSERT_FAILS = TRIAGE_TEST.format(min_score=0.5, max_drop=0.5) + "    assert False, 'my own check failed'\n"


def test_a_test_failing_its_own_assert_after_the_gate_writes_no_artifact(triage_project: TriageProject) -> None:
    triage_project.write_test(source=OWN_ASSERT_FAILS)
    result = triage_project.compile()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*my own check failed*", "*test_triage_prompt*compile*rejected*"])
    assert not triage_project.artifact.exists()
    assert triage_project.artifact.with_name(REJECTED).exists()


def test_a_test_failing_its_own_assert_leaves_the_current_artifact_byte_identical(
        triage_project: TriageProject) -> None:
    triage_project.compile().assert_outcomes(passed=1)
    naive = _naive_artifact(triage_project)  # a candidate would beat this one, if the test passed
    triage_project.write_test(source=OWN_ASSERT_FAILS)
    triage_project.compile().assert_outcomes(failed=1)
    assert triage_project.artifact.read_bytes() == naive


def _marked(decorator: str, tail: str) -> str:
    """The triage test (thresholds it meets) with ``decorator`` on it and ``tail`` after its gate."""
    source = "import pytest\n" + TRIAGE_TEST.format(min_score=0.5, max_drop=0.5) + tail
    return source.replace("def test_triage_prompt", f"{decorator}\ndef test_triage_prompt" if decorator else
                          "def test_triage_prompt")


@pytest.mark.parametrize(("source", "outcome", "said"), [
    (_marked("@pytest.mark.xfail(reason='known')", "    assert False, 'my own check failed'\n"),
     {"xfailed": 1}, "xfailed (its own check failed)"),
    (_marked("", "    pytest.skip('decided after the gate')\n"), {"skipped": 1}, "was skipped"),
    (_marked("@pytest.mark.xfail(reason='known')", ""), {"xpassed": 1}, "passed but is marked xfail"),
], ids=["xfailed", "skipped-after-gate", "xpassed"])
def test_only_a_passed_test_writes_its_artifact_or_its_cassette(triage_project: TriageProject, source: str,
                                                                 outcome: dict[str, int], said: str) -> None:
    triage_project.compile("--gepa-record").assert_outcomes(passed=1)
    # A candidate would beat this one if the test passed; its prompt is not the seed's, so scoring it
    # makes calls the recorded cassette does not hold.
    naive = _naive_artifact(triage_project, BASE_INSTRUCTION + " Answer with the category only.")
    cassette = triage_project.cassette.read_bytes()
    triage_project.write_test(source=source)
    result = triage_project.compile("--gepa-record", "--gepa-report", "report.json")
    result.assert_outcomes(**outcome)
    assert triage_project.artifact.read_bytes() == naive
    # The cassette beside the artifact must keep answering for the artifact that stayed.
    assert triage_project.cassette.read_bytes() == cassette
    assert triage_project.artifact.with_name(REJECTED).exists()
    result.stdout.fnmatch_lines(["*test_triage_prompt*compile*rejected*"])
    target = json.loads((triage_project.root / "report.json").read_text())["targets"][0]
    assert target["message"].startswith(f"the test {said} after gepa.gate; the candidate was not written"), target


NO_GATE = '''
import dspy
from pytest_gepa import metrics

class Triage(dspy.Signature):
    """Classify the support ticket into one of: billing, claims, technical, account, shipping."""
    ticket: str = dspy.InputField()
    category: str = dspy.OutputField()

def test_triage_prompt(gepa, gepa_examples):
    data = gepa_examples("data/triage.jsonl", inputs=["ticket"])
    gepa.compile(dspy.ChainOfThought(Triage), data, metric=metrics.exact_match("category"))
'''


def test_a_test_without_a_gate_is_held_to_the_ini_min_score_at_teardown(triage_project: TriageProject) -> None:
    triage_project.write_test(source=NO_GATE)
    # A weak candidate (GEPA stops at val 0.6) against a min_score it clearly misses.
    result = triage_project.compile("-o", "gepa_stop_at=0.6", "-o", "gepa_min_score=0.99", "-o",
                                    "gepa_confidence=0.6")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*is under min_score 0.990*", "*test_triage_prompt*compile*rejected*"])
    assert not triage_project.artifact.exists()
    assert triage_project.artifact.with_name(REJECTED).exists()


def test_a_test_without_a_gate_that_meets_the_ini_min_score_is_written(triage_project: TriageProject) -> None:
    triage_project.write_test(source=NO_GATE)
    result = triage_project.compile("-o", "gepa_min_score=0.85")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_triage_prompt*compile*1.000*compiled*"])
    assert json.loads(triage_project.artifact.read_text())["scores"]["devset"]["optimized"] == 1.0


def test_a_compile_that_rewrites_the_artifact_removes_its_cassette_and_says_so(
        triage_project: TriageProject) -> None:
    triage_project.compile("--gepa-record").assert_outcomes(passed=1)
    assert triage_project.cassette.exists()
    naive = _naive_artifact(triage_project)  # valid and not stale, but a candidate beats it
    result = triage_project.compile()
    result.assert_outcomes(passed=1)  # a notice in the summary, not a warning a -W error run would fail on
    result.stdout.fnmatch_lines(["*test_triage_prompt*compile*1.000*compiled*"])
    assert triage_project.artifact.read_bytes() != naive
    assert not triage_project.cassette.exists()
    result.stdout.fnmatch_lines([
        f"test_triage.py::test_triage_prompt: removed '{literal(str(triage_project.cassette))}': it held the LM calls "
        "of the replaced artifact and no longer matches; re-record it with "
        "`pytest --gepa-compile --gepa-record test_triage.py::test_triage_prompt`",
    ])


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_kept_and_rejected_read_the_same_under_xdist(triage_project: TriageProject, workers: list[str]) -> None:
    triage_project.compile().assert_outcomes(passed=1)
    before = triage_project.artifact.read_bytes()
    result = triage_project.compile(*workers)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_triage_prompt*compile*kept*"])
    assert triage_project.artifact.read_bytes() == before


def test_a_promoted_candidate_records_fresh_draws_not_those_that_promoted_it(triage_project: TriageProject,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # The noisy world: a quarter of the inputs answered wrong on one call in five. The draws that
    # won the comparison are the lucky ones; recording them would start the artifact's record high.
    write_split_triage_data(triage_project.data, n=160)
    triage_project.write_test(min_score=0.5, max_drop=0.5)
    monkeypatch.setenv("GEPA_TEST_NOISE", "noise=0.2,borderline=0.25,seed=0")
    quiet = ("-W", "ignore::pytest_gepa.errors.GepaWarning")
    triage_project.compile(*quiet).assert_outcomes(passed=1)
    _naive_artifact(triage_project)  # a current artifact the candidate beats
    result = triage_project.compile("--gepa-report", "report.json", *quiet)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_triage_prompt*compile*compiled*"])
    decided = {row["id"]: row["score"]
               for row in json.loads((triage_project.root / "report.json").read_text())["targets"][0]["per_example"]}
    devset = json.loads(triage_project.artifact.read_text())["scores"]["devset"]
    assert devset["per_example"].keys() == decided.keys() and len(decided) == 40
    assert devset["per_example"] != decided, "the artifact records the very draws that promoted the candidate"
    # One draw per example decided; three others, drawn after, are what the artifact records.
    assert {len(draws) for draws in devset["draws"].values()} == {3}
    assert all(sum(draws) / 3 == devset["per_example"][eid] for eid, draws in devset["draws"].items())
