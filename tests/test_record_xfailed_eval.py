"""A test's own cassette records its calls whatever the test's outcome, also under --gepa-compile.

Only the artifact, and the cassette beside it that must match it, wait for a passed test (issue 22,
item 5). A plain eval marked xfail (the support_qa example's, on a model that is no judge) recorded
nothing, so its replay met a miss that the xfail then hid: the eval was never replayed at all."""

from __future__ import annotations

import pytest
import world
from conftest import TRIAGE_TEST, TriageProject

XFAILED_EVAL = '''

@pytest.mark.xfail(reason="this judge disagrees", strict=True)
def test_plain_eval(gepa_task_lm):
    with dspy.context(lm=gepa_task_lm):
        answer = dspy.Predict(Triage)(ticket="My parcel arrived with a dent in it.")
    assert answer.category == "billing"  # the world says claims: the test's own assert fails
'''


@pytest.mark.parametrize("mode", ["--gepa-compile", None])
def test_an_xfailed_plain_eval_records_its_own_cassette_and_replays_from_it(
        http_project: TriageProject, scripted_server: world.ScriptedServer, mode: str | None) -> None:
    http_project.write_test(source="import pytest\n" + TRIAGE_TEST.format(min_score=0.85, max_drop=0.03)
                            + XFAILED_EVAL)
    http_project.compile("--gepa-record").assert_outcomes(passed=1, xfailed=1)  # the artifact first
    args = ("--gepa-record", mode) if mode else ("--gepa-record",)
    http_project.run(*args, "-k", "plain_eval").assert_outcomes(xfailed=1, deselected=1)
    cassette = http_project.artifact.with_name("test_plain_eval.cassette.jsonl")
    assert cassette.exists(), "the xfailed eval's calls were not recorded"

    calls = dict(scripted_server.calls)
    replayed = http_project.run("--gepa-replay", "-k", "plain_eval", "-rx")
    replayed.assert_outcomes(xfailed=1, deselected=1)
    assert "replay" not in replayed.stdout.str().lower().split("short test summary")[-1]  # no miss behind the xfail
    assert dict(scripted_server.calls) == calls  # answered from the cassette
