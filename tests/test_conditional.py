"""verdict.conditional: the regression tests conditioned on the devset, pinned to exact p-values."""

from __future__ import annotations

import math
import random

import pytest

from pytest_gepa.verdict.conditional import (
    conditional_drop,
    devset_bound,
    falls_to_detect,
    plan_more_draws,
    second_stage_view,
    stage_levels,
)


def _draws(*per_example: list[float]) -> dict[str, list[float]]:
    return {f"ex{i}": list(d) for i, d in enumerate(per_example)}


def test_four_examples_right_three_times_then_wrong_once_is_p_one_in_256() -> None:
    # Each: today's one draw is the single 0 among four pooled draws with probability 1/4.
    test = conditional_drop(_draws(*[[1, 1, 1]] * 4), _draws(*[[0]] * 4), 0.05)
    assert test.p_value == 1 / 256 and test.significant
    assert (test.drop, test.test, test.n, test.varying) == (1.0, "exact hypergeometric", 4, 4)
    assert (test.recorded_draws, test.today_draws) == (12, 4)


def test_one_example_is_p_one_quarter_and_three_draws_each_side_one_twentieth() -> None:
    assert conditional_drop(_draws([1, 1, 1]), _draws([0]), 0.05).p_value == 1 / 4
    # C(6, 3) = 20 ways to pick today's three of six pooled draws; one puts all three 0s today.
    three = conditional_drop(_draws([1, 1, 1]), _draws([0, 0, 0]), 0.05)
    assert three.p_value == 1 / 20 and not three.significant  # p < level, strictly


def test_examples_that_never_vary_carry_no_evidence_and_unequal_counts_are_the_same_test() -> None:
    steady = [[1, 1, 1]] * 10 + [[0, 0, 0]] * 5
    test = conditional_drop(_draws(*steady, [1, 1, 1]), _draws(*[[1]] * 10, *[[0]] * 5, [0]), 0.05)
    assert test.p_value == 1 / 4 and test.varying == 1 and test.n == 16
    # Mixed counts: p = P(a = 0) P(b <= 2) summed with the weights of the drop (worked in the docstring's terms).
    mixed = conditional_drop(_draws([1, 1, 1], [1, 0, 1]), _draws([0], [1, 1, 0]), 0.05)
    assert mixed.p_value == pytest.approx(16 / 80)


def test_nothing_varies_nothing_is_evidence() -> None:
    test = conditional_drop(_draws([1, 1, 1], [0, 0, 0]), _draws([1], [0]), 0.05)
    assert (test.p_value, test.varying, test.drop) == (1.0, 0, 0.0)
    assert conditional_drop({}, {}, 0.05).n == 0


def test_graded_draws_are_an_exact_within_example_permutation() -> None:
    # Pool {1, 1, .5, 0, .5, 0}: 2 of the 20 ways to pick three reach a sum as low as 0.5.
    test = conditional_drop(_draws([1, 1, 0.5]), _draws([0, 0.5, 0]), 0.05)
    assert test.p_value == pytest.approx(2 / 20) and test.test == "exact within-example permutation"


def test_large_graded_pools_fall_back_to_seeded_permutations_that_agree_with_the_exact_count() -> None:
    recorded = _draws(*[[0.5 + 0.05 * k for k in range(9)]] * 2)
    today = _draws(*[[0.1 * k for k in range(9)]] * 2)
    test = conditional_drop(recorded, today, 0.05)
    assert test.test == "seeded within-example permutation"
    assert test.p_value == conditional_drop(recorded, today, 0.05).p_value  # seeded: the same every run
    assert 0 < test.p_value < 0.01


def test_the_exact_test_keeps_its_level_when_nothing_changed() -> None:
    # 2000 unchanged gates of 15 examples, a quarter borderline (right with probability 0.8), 3 draws
    # recorded, 1 today: the share under 0.05 may not exceed 0.05 (it is discrete, so it is below).
    rng = random.Random(7)
    alarms = 0
    for _ in range(2000):
        ps = [0.8] * 4 + [1.0] * 9 + [0.0] * 2
        recorded = _draws(*[[float(rng.random() < p) for _ in range(3)] for p in ps])
        today = _draws(*[[float(rng.random() < p)] for p in ps])
        alarms += conditional_drop(recorded, today, 0.05).significant
    assert alarms / 2000 <= 0.05


def test_the_devset_bound_is_the_score_when_nothing_varies_and_widens_with_variance() -> None:
    steady = devset_bound(_draws([1, 1], [0, 0], [1, 1]), 0.95)
    assert steady.upper == pytest.approx(2 / 3) and steady.unobserved == 0
    noisy = devset_bound(_draws([1, 0], [0, 0], [1, 1]), 0.95)
    # One example of variance 0.25 (capped) drawn twice: sd of the mean sqrt(0.25 / 2) / 3.
    assert noisy.upper == pytest.approx(0.5 + 1.6449 * math.sqrt(0.125) / 3, abs=1e-4)
    once = devset_bound(_draws([1], [0]), 0.95, recorded=_draws([1, 1, 1], [0, 1, 0]))
    assert once.upper > once.score and once.unobserved == 0
    assert devset_bound(_draws([1], [0]), 0.95).unobserved == 2


def test_the_stages_split_the_level_and_the_second_draws_only_what_fell_short_today() -> None:
    assert stage_levels(0.05, staged=True) == (0.025, 0.025)
    assert stage_levels(0.05, staged=False) == (0.05, 0.0)
    today = _draws([1], [0], [0.5], [1])
    assert plan_more_draws(today, 8) == {"ex1": 4, "ex2": 4}
    assert plan_more_draws(today, 1) == {}
    assert second_stage_view(today, {"ex1": [1, 1]}) == {"ex0": [1], "ex1": [1, 1], "ex2": [0.5], "ex3": [1]}


def test_falls_to_detect() -> None:
    assert falls_to_detect(3, 1, 0.05) == 3  # (1/4)^3 = 1/64
    assert falls_to_detect(3, 3, 0.05) == 2  # 1/20 is not under 0.05; 1/400 is
    assert falls_to_detect(3, 20, 0.025) == 1
