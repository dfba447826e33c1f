"""verdict.statistics: intervals, the exact paired test and resolution, against values computed by hand."""

from __future__ import annotations

import math
import random

import pytest

from pytest_gepa.verdict import statistics as st


def test_wilson_interval_of_nine_in_ten() -> None:
    low, high = st.wilson_interval(9, 10, 0.95)
    assert low == pytest.approx(0.596, abs=5e-4) and high == pytest.approx(0.982, abs=5e-4)


def test_wilson_interval_stays_honest_at_the_edges() -> None:
    low, high = st.wilson_interval(10, 10, 0.95)
    assert high == 1.0 and low == pytest.approx(0.722, abs=5e-4)  # ten right is not proof of a perfect prompt
    assert st.wilson_interval(0, 10, 0.95)[0] == 0.0
    assert st.wilson_interval(0, 0, 0.95) == (0.0, 1.0)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 95])
def test_a_confidence_outside_its_range_names_the_value(confidence: float) -> None:
    with pytest.raises(ValueError, match=rf"confidence {confidence!r} must be at least 0 and under 1"):
        st.wilson_interval(1, 2, confidence)


def test_a_one_sided_test_needs_a_confidence_of_at_least_one_half() -> None:
    with pytest.raises(ValueError, match=r"confidence 0.3 must be at least 0.5 and under 1, for example 0.95"):
        st.paired_drop([1.0], [0.0], 0.3)
    assert st.paired_drop([1.0] * 9 + [0.0], [0.5] * 10, 0.6).interval_level == pytest.approx(0.2)


@pytest.mark.parametrize(("k", "n", "p", "expected"), [
    (5, 10, 0.5, 638 / 1024),
    (9, 10, 0.5, 11 / 1024),
    (0, 4, 0.5, 1.0),
    (5, 4, 0.5, 0.0),
    (2, 3, 0.1, 3 * 0.01 * 0.9 + 0.001),
])
def test_binomial_tail_is_exact(k: int, n: int, p: float, expected: float) -> None:
    assert st.binomial_tail(k, n, p) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_by_hand_seven_falls_one_rise_is_significant() -> None:
    # 20 pairs: 10 right both times, 7 fell, 1 rose, 2 wrong both times.
    recorded = [1] * 10 + [1] * 7 + [0] + [0] * 2
    now = [1] * 10 + [0] * 7 + [1] + [0] * 2
    drop = st.paired_drop(recorded, now, 0.95)
    # Under no change the 8 discordant pairs are fair coins: P(X >= 7) = (C(8,7) + C(8,8)) / 2^8 = 9/256.
    assert drop.test == "exact McNemar" and drop.n == 20
    assert drop.p_value == pytest.approx(9 / 256) and drop.significant
    assert drop.drop == pytest.approx(6 / 20)
    low, high = drop.interval
    assert 0 < low < 0.3 < high <= 1  # each bound one-sided at 95%: a significant drop's interval excludes 0


def test_mcnemar_six_falls_two_rises_is_not_significant() -> None:
    recorded = [1] * 6 + [0] * 2 + [1] * 12
    now = [0] * 6 + [1] * 2 + [1] * 12
    drop = st.paired_drop(recorded, now, 0.95)
    assert drop.p_value == pytest.approx((28 + 8 + 1) / 256) and not drop.significant
    assert drop.interval[0] < 0 < drop.interval[1]


def test_a_rise_is_never_a_significant_drop() -> None:
    drop = st.paired_drop([0] * 10, [1] * 10, 0.95)
    assert drop.drop == -1.0 and drop.p_value == 1.0 and not drop.significant


def test_sign_flip_counts_every_assignment_exactly() -> None:
    # |d| = 1/3, 2/3, 1, 1/3; observed sum 5/3 of a possible 7/3. Flipping a set F lowers the sum by
    # 2*sum(F), so the sum stays >= 5/3 only for F = {}, {first 1/3}, {last 1/3}: 3 of 16.
    differences = [1 / 3, 2 / 3, 1.0, -1 / 3]
    assert st.sign_flip_p(differences) == pytest.approx(3 / 16)
    drop = st.paired_drop([1.0, 1.0, 1.0, 1 / 3], [2 / 3, 1 / 3, 0.0, 2 / 3], 0.95)
    assert drop.test == "sign-flip permutation" and drop.p_value == pytest.approx(3 / 16)


def test_sign_flip_agrees_with_mcnemar_on_zero_one_data() -> None:
    recorded = [1] * 7 + [0] + [1] * 12
    now = [0] * 7 + [1] + [1] * 12
    differences = [r - v for r, v in zip(recorded, now, strict=True)]
    assert st.sign_flip_p(differences) == pytest.approx(st.paired_drop(recorded, now, 0.95).p_value)


def test_sign_flip_stays_fast_and_valid_on_continuous_differences() -> None:
    differences = [math.sin(i) / 3 + 0.2 for i in range(300)]  # too many distinct sums for the exact count
    p = st.sign_flip_p(differences)
    assert 0 < p < 0.001 and p == st.sign_flip_p(differences)


def test_paired_drop_needs_pairs() -> None:
    with pytest.raises(ValueError, match="3 recorded scores but 2 now"):
        st.paired_drop([1, 1, 0], [1, 0], 0.95)


def test_bootstrap_is_deterministic_for_a_seed_and_ignores_order() -> None:
    values = [i % 4 / 3 for i in range(40)]
    first = st.bootstrap_interval(values, 0.95, seed=7)
    assert first == st.bootstrap_interval(list(reversed(values)), 0.95, seed=7)
    assert first != st.bootstrap_interval(values, 0.95, seed=8)
    low, high = first
    assert low < st.mean(values) < high
    assert st.bootstrap_interval([0.5, 0.5], 0.95) == (0.5, 0.5)


def test_a_large_devset_resamples_as_level_counts_with_the_same_interval() -> None:
    values = [i % 4 / 3 for i in range(400)]  # 4 levels: drawn as binomial counts, not 400 picks
    rng = random.Random(1)
    picks = sorted(math.fsum(rng.choices(values, k=400)) / 400 for _ in range(20_000))
    low, high = st.bootstrap_interval(values, 0.95, resamples=20_000)
    assert low == pytest.approx(picks[500], abs=0.003) and high == pytest.approx(picks[19_499], abs=0.003)


def test_score_interval_is_wilson_for_zero_one_and_bootstrap_for_means() -> None:
    assert st.score_interval([1] * 9 + [0], 0.95) == st.wilson_interval(9, 10, 0.95)
    means = [1.0] * 8 + [2 / 3, 1 / 3]
    assert st.score_interval(means, 0.95) == st.bootstrap_interval(means, 0.95)


def _accurate(n: int) -> list[float]:
    return [1.0] * round(0.8 * n) + [0.0] * (n - round(0.8 * n))


def test_resolution_shrinks_with_more_examples_and_more_samples() -> None:
    by_size = [st.resolution(_accurate(n)) for n in (15, 60, 200, 1000)]
    assert by_size == sorted(by_size, reverse=True) and len(set(by_size)) == 4
    noisy = [0.04] * 200  # observed call-to-call variance of one draw
    by_samples = [st.resolution(_accurate(200), samples=s, per_example_variances=noisy) for s in (1, 2, 4)]
    assert by_samples[0] > by_samples[1] > by_samples[2]


def test_resolution_never_claims_less_than_the_exact_test_can_reject() -> None:
    # Nothing noisy at all: still, 5 falls (7 at 0.99) are needed before 2^-k < 1 - confidence.
    assert st.resolution([1.0] * 60, samples=3, per_example_variances=[0.0] * 60) >= 5 / 60
    assert st.resolution([1.0] * 60, confidence=0.99) >= 7 / 60
    assert st.resolution([1.0] * 1000, confidence=0.99) >= 7 / 1000


def test_resolution_of_a_zero_one_metric_scored_once_is_conservative() -> None:
    # The spread across examples bounds the unobservable call-to-call noise from above.
    scores = _accurate(60)
    assumed = st.resolution(scores)
    true_noise = st.resolution(scores, per_example_variances=[0.25 * 0.09] * 60)  # a quarter borderline at 10%
    assert assumed > true_noise
    assert assumed == pytest.approx(0.235, abs=0.005)


def test_a_drop_at_the_resolution_is_caught_with_the_promised_power() -> None:
    # n=60, a quarter borderline (each call wrong with probability 0.2), scored 3 times; the rest
    # deterministic. Plant the resolution's drop as falls of right examples and run the real test.
    n, borderline, samples, noise = 60, 15, 3, 0.2
    variances = [noise * (1 - noise)] * borderline + [0.0] * (n - borderline)
    scores = [1 - noise] * borderline + [1.0] * (n - borderline)
    falls = math.ceil(st.resolution(scores, samples=samples, per_example_variances=variances) * n)
    rng = random.Random(11)

    def draw(broken: int) -> list[float]:
        noisy = [sum(rng.random() >= noise for _ in range(samples)) / samples for _ in range(borderline)]
        return noisy + [0.0] * broken + [1.0] * (n - borderline - broken)

    caught = sum(st.paired_drop(draw(0), draw(falls), 0.95).significant for _ in range(200))
    assert caught / 200 >= 0.8


def test_examples_and_samples_needed_invert_resolution() -> None:
    scores, noisy = _accurate(60), [0.0225] * 60
    needed = st.examples_needed(0.05, scores, per_example_variances=noisy)
    assert st.resolution(_accurate(needed), per_example_variances=noisy) <= 0.05
    assert st.resolution(_accurate(needed - 1), per_example_variances=noisy) > 0.05
    assert st.examples_needed(0.05, scores) > needed  # without observed noise: the conservative stand-in
    assert st.samples_needed(0.15, scores, samples=3, per_example_variances=noisy) == 1
    assert st.samples_needed(0.05, scores, samples=3, per_example_variances=noisy) is None  # 5/60 > 0.05
    big = [0.2] * 400
    count = st.samples_needed(0.05, _accurate(400), per_example_variances=big)
    assert count is not None and count > 1
    assert st.resolution(_accurate(400), samples=count, per_example_variances=big) <= 0.05
    assert st.resolution(_accurate(400), samples=count - 1, per_example_variances=big) > 0.05
