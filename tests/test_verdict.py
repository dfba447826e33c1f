"""verdict.thresholds: the gate's decision and its sentences, as a user reads them in a failed test."""

from __future__ import annotations

from collections.abc import Collection

import pytest

from pytest_gepa.verdict.conditional import conditional_resolution
from pytest_gepa.verdict.thresholds import (
    Comparison,
    Verdict,
    compare_candidate,
    decide,
    devset_resolution,
    resolution_note,
)


def _ids(n: int) -> list[str]:
    return [f"ex{i:03d}" for i in range(n)]


def _scores(n: int, wrong: Collection[int] = ()) -> dict[str, float]:
    return {eid: 0.0 if i in wrong else 1.0 for i, eid in enumerate(_ids(n))}


def test_four_examples_that_fell_fail_when_the_draws_are_recorded() -> None:
    # The case: 3 of 3 right at compile, 0 of 1 today, on four of fifteen: p = 1/256.
    recorded = _scores(15)
    now = _scores(15, wrong={0, 1, 2, 3})
    verdict = decide(now, min_score=None, max_drop=0.05, recorded=recorded,
                     recorded_draws={eid: [v] * 3 for eid, v in recorded.items()},
                     now_draws={eid: [v] for eid, v in now.items()})
    assert verdict.status == "failed" and verdict.conditional is not None
    assert verdict.conditional.p_value == 1 / 256
    assert verdict.failures == (
        "score 0.733 is 0.267 under the score recorded in the artifact (1.000) on the 15 examples in both, more "
        "than max_drop 0.050: paired drop 0.267 (on a new devset of this size, 90% CI 0.06 to 0.48; conditioned "
        "on these examples, 4 of 15 varying, 45 recorded and 15 draws today: exact hypergeometric, one-sided "
        "p = 0.0039 < 0.05, significant)",)
    assert verdict.notes == () and verdict.draws == 15
    # The same scores without recorded draws: examples as the unit cannot resolve four falls (2^-4).
    old = decide(now, min_score=None, max_drop=0.05, recorded=recorded)
    assert old.status == "inconclusive" and "recompile to record draws" in old.notes[0]


def test_a_conditional_miss_that_is_not_significant_is_inconclusive_and_names_more_draws() -> None:
    verdict = decide({"a": 0.0, "b": 1.0}, min_score=None, max_drop=0.05, recorded={"a": 1.0, "b": 1.0},
                     recorded_draws={"a": [1, 1, 1], "b": [1, 1, 1]}, now_draws={"a": [0], "b": [1]}, level=0.025)
    assert verdict.status == "inconclusive"
    assert verdict.doubts[0].endswith("exact hypergeometric, one-sided p = 0.25 >= 0.025), so this is not decided; "
                                      "more draws per example would decide it (raise gepa_samples or "
                                      "gepa_max_samples), or more examples")


def test_a_significant_drop_over_max_drop_fails_with_the_paired_drop_and_its_interval() -> None:
    recorded = _scores(20)
    now = _scores(20, wrong=set(range(6)))
    verdict = decide(now, min_score=None, max_drop=0.05, recorded=recorded,
                     feedback={"ex000": "Predicted 'billing'\n but expected 'claims'."})
    assert verdict.status == "failed" and not verdict.passed
    assert verdict.failures == (
        "score 0.700 is 0.300 under the score recorded in the artifact (1.000) on the 20 examples in both, "
        "more than max_drop 0.050: paired drop 0.300 (90% CI 0.12 to 0.48; exact McNemar, one-sided "
        "p = 0.016 < 0.05, significant)",
    )
    assert verdict.recorded == 1.0 and verdict.common == 20 and verdict.drop is not None
    assert verdict.drop.p_value == pytest.approx(1 / 64)
    assert verdict.explain().splitlines()[1:4] == [
        "6 example(s) scored lower than when compiled:",
        "  - ex000: 1.00 -> 0.00: Predicted 'billing' but expected 'claims'.",
        "  - ex001: 1.00 -> 0.00: ",
    ]
    assert verdict.explain().splitlines()[-1] == "  ... and 1 more"


def test_a_point_drop_that_is_not_significant_is_inconclusive_and_says_what_would_decide_it() -> None:
    # Two of twenty fell: 0.10 is over max_drop 0.05, but two coin flips are no evidence.
    verdict = decide(_scores(20, wrong={3, 4}), min_score=None, max_drop=0.05, recorded=_scores(20))
    assert verdict.status == "inconclusive" and verdict.passed and verdict.failures == ()
    assert verdict.doubts == (
        "score 0.900 is 0.100 under the score recorded in the artifact (1.000) on the 20 examples in both, "
        "more than max_drop 0.050, but not significantly: paired drop 0.100 (90% CI -0.04 to 0.26; exact "
        "McNemar, one-sided p = 0.25 >= 0.05), so this is not decided; about 60 examples would decide a drop "
        "of 0.10, more samples per example alone would not",
    )
    assert verdict.explain().startswith(verdict.doubts[0] + "\n2 example(s) scored lower")


def test_an_inconclusive_drop_on_noisy_means_names_the_samples_that_would_decide_it() -> None:
    recorded = {eid: 1.0 if i % 4 else 2 / 3 for i, eid in enumerate(_ids(60))}
    now = {eid: 1.0 if i % 4 else 1 / 3 for i, eid in enumerate(_ids(60))}
    variances = {eid: 0.0 if i % 4 else 0.2 for i, eid in enumerate(_ids(60))}
    verdict = decide(now, min_score=None, max_drop=0.05, recorded=recorded, samples=3,
                     per_example_variances=variances)
    # 15 examples each 1/3 lower: a drop of 0.083 that the sign-flip test finds (2^-15).
    assert verdict.status == "failed" and verdict.drop is not None and verdict.drop.test == "sign-flip permutation"
    few = {eid: now[eid] for eid in _ids(60)[:12]}
    doubtful = decide(few, min_score=None, max_drop=0.05, recorded=recorded, samples=3,
                      per_example_variances=variances)
    assert doubtful.status == "inconclusive" and doubtful.common == 12
    assert doubtful.doubts[0].endswith("about 102 examples would decide a drop of 0.08, more samples per example "
                                       "alone would not")


def test_a_significant_drop_within_max_drop_passes() -> None:
    # 8 of 200 fell and none rose: surely a drop, but 0.04 is what max_drop 0.05 allows.
    verdict = decide(_scores(200, wrong=set(range(8))), min_score=None, max_drop=0.05, recorded=_scores(200))
    assert verdict.drop is not None and verdict.drop.significant
    assert verdict.status == "passed" and verdict.explain().startswith("8 example(s) scored lower")


def test_min_score_fails_only_when_the_one_sided_bound_is_under_it_and_says_which_bound() -> None:
    failed = decide(_scores(20, wrong=set(range(10))), min_score=0.85, max_drop=None, recorded=None)
    assert failed.failures == (
        "score 0.500 is under min_score 0.850, and its one-sided 95% upper bound 0.673 (examples as the unit: the "
        "call-to-call variance is not observed) is under it too",)
    assert failed.interval == pytest.approx((0.299, 0.701), abs=1e-3)  # the population view, information only
    doubtful = decide(_scores(20, wrong={0, 1, 2}), min_score=0.9, max_drop=None, recorded=None)
    assert doubtful.status == "inconclusive"
    assert doubtful.doubts == (
        "score 0.850 is under min_score 0.900, and its one-sided 95% upper bound 0.938 (examples as the unit: the "
        "call-to-call variance is not observed) reaches it on 20 examples, so this is not decided; about 138 "
        "examples would decide it, or gepa_samples >= 2 (which observes the call-to-call variance)",)
    assert decide(_scores(20), min_score=0.9, max_drop=None, recorded=None).status == "passed"


def test_min_score_conditioned_on_the_devset_fails_a_steady_miss_the_population_view_cannot() -> None:
    # Three of twenty wrong on both draws: the model never varies, so 0.85 is this devset's score.
    now = _scores(20, wrong={0, 1, 2})
    draws = {eid: [score, score] for eid, score in now.items()}
    verdict = decide(now, min_score=0.9, max_drop=None, recorded=None, now_draws=draws)
    assert verdict.status == "failed" and verdict.conditioned and verdict.bound == pytest.approx(0.85)
    assert verdict.failures[0].endswith("upper bound 0.850 (conditioned on the devset: the LM's call-to-call "
                                        "variance on these examples) is under it too")


def test_a_failure_outweighs_a_doubt() -> None:
    verdict = decide(_scores(20, wrong=set(range(6))), min_score=0.8, max_drop=0.05, recorded=_scores(20))
    assert verdict.status == "failed" and len(verdict.failures) == 1 and len(verdict.doubts) == 1
    assert verdict.doubts[0].startswith("score 0.700 is under min_score 0.800, and its one-sided 95% upper bound 0.836")
    assert verdict.doubts[0] not in verdict.explain()


def test_only_examples_present_both_times_are_compared() -> None:
    recorded = _scores(20)
    now = {**_scores(20), "added1": 0.0, "added2": 0.0, "added3": 0.0}  # new hard rows are no regression
    del now["ex019"]
    verdict = decide(now, min_score=None, max_drop=0.05, recorded=recorded)
    assert verdict.status == "passed" and verdict.common == 19 and verdict.regressions == ()
    assert verdict.score == pytest.approx(19 / 22) and verdict.scored == 22


def test_regressions_come_biggest_fall_first() -> None:
    recorded = {"a": 1.0, "b": 1.0, "c": 0.5, "d": 0.2}
    now = {"a": 0.6, "b": 0.0, "c": 0.5, "d": 0.4}
    verdict = decide(now, min_score=None, max_drop=None, recorded=recorded)
    assert [(r.id, r.recorded, r.now) for r in verdict.regressions] == [("b", 1.0, 0.0), ("a", 1.0, 0.6)]
    assert verdict.status == "passed"


def test_no_scored_example_fails() -> None:
    verdict = decide({}, min_score=0.5, max_drop=0.05, recorded={"a": 1.0})
    assert verdict.status == "failed"
    assert verdict.failures[0] == "no devset example was scored, so there is no score to hold to a threshold"


def test_max_drop_without_a_common_example_is_not_decided() -> None:
    verdict = decide({"new": 1.0}, min_score=None, max_drop=0.05, recorded={"old": 1.0},
                     recorded_what="the current artifact's score")
    assert verdict.status == "inconclusive"
    assert verdict.doubts == ("max_drop 0.050 cannot be checked: no example is present both now and in "
                              "the current artifact's score",)


def test_without_a_recording_there_is_no_drop() -> None:
    verdict = decide(_scores(10), min_score=None, max_drop=0.05, recorded=None)
    assert verdict == Verdict("passed", (), (), 1.0, verdict.interval, None, None, 0, (), 0.95, 10)


@pytest.mark.parametrize(("candidate_wrong", "current_wrong", "replace", "reason"), [
    (set(), {1, 2, 3, 4, 5}, True, "candidate 1.000 beats the current artifact 0.750 on the same 20 examples "
                                   "(paired drop -0.250, 90% CI -0.43 to -0.08; exact McNemar, one-sided p = "
                                   "0.031 that it is better < 0.05)"),
    ({1}, {1, 2, 3}, False, "candidate 0.950 is over the current artifact 0.850 on the same 20 examples, but not "
                            "significantly (paired drop -0.100, 90% CI -0.27 to 0.05; exact McNemar, one-sided "
                            "p = 0.25 that it is better >= 0.05); the current one is kept"),
    ({1, 2}, {3, 4}, False, "candidate 0.900 ties the current artifact 0.900 on the same 20 examples; "
                            "a tie keeps the current one"),
    ({1, 2, 3}, {1}, False, "candidate 0.850 is under the current artifact 0.950 on the same 20 examples "
                            "(paired drop 0.100, 90% CI -0.05 to 0.27; exact McNemar, one-sided p = 1 that it "
                            "is better); the current one is kept"),
])
def test_compare_candidate_better_not_shown_better_tie_worse(candidate_wrong: set[int], current_wrong: set[int],
                                                             replace: bool, reason: str) -> None:
    comparison = compare_candidate(_scores(20, candidate_wrong), _scores(20, current_wrong))
    assert isinstance(comparison, Comparison)
    assert (comparison.replace, comparison.reason, comparison.common) == (replace, reason, 20)


def test_compare_candidate_counts_only_examples_scored_for_both() -> None:
    candidate = {**_scores(10), "extra": 0.0}
    comparison = compare_candidate(candidate, _scores(10, wrong={0, 1, 2, 3, 4}), where="val and devset")
    assert comparison.replace and comparison.common == 10 and comparison.candidate == 1.0
    assert "on the same 10 examples (val and devset)" in comparison.reason


def steady(*means: float) -> dict[str, list[float]]:
    """Recorded draws of a model that answers the same way every time: three equal draws each."""
    return {f"ex{i}": [mean] * 3 for i, mean in enumerate(means)}


def test_conditional_resolution_counts_the_falls_the_staged_test_detects() -> None:
    # One example falling: 3/3 -> 0/1 is p = 1/4, but the second look's 8 more draws make it 1/165.
    assert conditional_resolution(steady(1, 1, 1, 1), 0.05, samples=1, max_samples=3) == (0.25, None)
    smallest, note = conditional_resolution(steady(*[1] * 20), 0.05, samples=1, max_samples=1)
    assert smallest == pytest.approx(3 / 20)  # one look at 0.05: (1/4)^3
    assert note == ("this devset of 20 examples, each scored once against 3 recorded draws, resolves drops of 0.15 "
                    "or more (3 examples falling); max_drop 0.05 is finer than that: raise gepa_samples or "
                    "gepa_max_samples, or add examples")


def test_conditional_resolution_counts_the_examples_wrong_anyway_that_share_the_second_look() -> None:
    # The shipped triage example: one ticket of ten right. The second look's 20 draws go to every
    # ticket short of full marks today, 2 each, and 3/3 -> 0/2 is p = 1/10: the one ticket that can
    # fall is not resolved.
    smallest, note = conditional_resolution(steady(1, *[0] * 9), 0.05, samples=1, max_samples=3)
    assert smallest == 1.0
    assert note == ("this devset of 10 examples, each scored once against 3 recorded draws, cannot resolve any drop; "
                    "max_drop 0.05 cannot be checked: raise gepa_samples or gepa_max_samples, or add examples")
    # Three draws a gate (--gepa-samples 3): 3/3 -> 0/3, then 0/6 more, resolves it.
    assert conditional_resolution(steady(1, *[0] * 9), 0.05, samples=3, max_samples=9) == (0.1, None)
    # Two of ten wrong anyway leave the budget to the fallen: one ticket falling is resolved.
    assert conditional_resolution(steady(*[1] * 8, 0, 0), 0.05, samples=1, max_samples=3) == (0.1, None)


def test_graded_examples_below_full_marks_can_fall_too() -> None:
    # The pipeline example: six messages scored 0, 0.5 or 1, none at full marks. A message at 0.5
    # that scores 0 today is a fall like any other (3 draws of 0.5, then 0 on every draw).
    assert conditional_resolution(steady(0.5, 0.5, 0, 0, 0.5, 0), 0.05, samples=3, max_samples=9) == (
        pytest.approx(0.5 / 6), None)
    smallest, note = conditional_resolution(steady(0.5, 0.5, 0, 0, 0.5, 0), 0.05, samples=1, max_samples=1)
    assert smallest == pytest.approx(1.5 / 6) and note is not None and "(3 examples falling)" in note


def test_resolution_note_warns_only_when_max_drop_is_finer_than_the_devset() -> None:
    assert resolution_note(0.2, 0.14, n=60, samples=1) is None
    assert resolution_note(None, 0.14, n=60, samples=1) is None
    assert resolution_note(0.05, 0.14, n=60, samples=1, examples=400, samples_needed=4) == (
        "this devset of 60 examples, each scored once, resolves drops of 0.14 or more; max_drop 0.05 is finer "
        "than that and needs about 400 examples, or gepa_samples = 4")


def test_devset_resolution_computes_the_note_from_the_scores() -> None:
    scores = [1.0] * 48 + [0.0] * 12
    smallest, note = devset_resolution(scores, 0.05)
    assert smallest == pytest.approx(0.235, abs=0.005)
    assert note == ("this devset of 60 examples, each scored once, resolves drops of 0.24 or more; max_drop "
                    "0.05 is finer than that and needs about 913 examples, more samples per example alone "
                    "would not")
    assert devset_resolution(scores, 0.25) == (smallest, None)
