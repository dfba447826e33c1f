"""Intervals, the paired drop test and a devset's resolution: pure functions, stdlib only.

Examples are the sampling unit throughout: a devset is a sample of the inputs the program will
meet, and an example scored ``samples`` times counts once, with the mean of its draws as its score.
Scores are assumed to lie in [0, 1] (every metric and rubric of pytest-gepa scores so).
Everything random is seeded, so the same scores always give the same numbers.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

from pytest_gepa.verdict._binomial import binomial

_EPS = 1e-9
# Sign-flip sums are counted on an integer grid so the exact distribution is a small dict.
_GRID = 10**6
_MAX_EXACT_STATES = 50_000
_MONTE_CARLO_FLIPS = 10_000
# A large devset scored on few levels (0/1, means of a few samples) resamples as level counts, in
# O(levels) instead of O(n) per resample; one binomial draw costs about as much as 25 picks.
_PICKS_PER_BINOMIAL = 25
_NORMAL = NormalDist()


def mean(values: Sequence[float]) -> float:
    """The arithmetic mean; 0.0 for no values (a devset that scored nothing has no score)."""
    return math.fsum(values) / len(values) if values else 0.0


def is_binary(values: Sequence[float]) -> bool:
    """Whether every value is exactly 0 or 1 (a pass/fail metric scored once per example)."""
    return all(v == 0 or v == 1 for v in values)


def z_quantile(probability: float) -> float:
    """The standard normal quantile: ``z_quantile(0.975)`` is about 1.96."""
    return _NORMAL.inv_cdf(probability)


def _check_confidence(confidence: float, *, lowest: float = 0.0) -> None:
    if not (lowest <= confidence < 1 and confidence > 0):
        raise ValueError(f"confidence {confidence!r} must be at least {lowest:g} and under 1, for example 0.95")


# -- intervals of one score -----------------------------------------------------------------------

def wilson_interval(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """The Wilson score interval of a proportion, two-sided at ``confidence``.

    It stays inside [0, 1] and keeps its coverage at 0/n and n/n, where the normal interval
    collapses to a point. No trials says nothing: (0.0, 1.0).
    """
    _check_confidence(confidence)
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= n:
        raise ValueError(f"successes {successes!r} must be between 0 and n={n!r}")
    z = z_quantile(1 - (1 - confidence) / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


def bootstrap_interval(values: Sequence[float], confidence: float, *, seed: int = 0,
                       resamples: int = 2000) -> tuple[float, float]:
    """The percentile-bootstrap interval of the mean, two-sided at ``confidence``, seeded.

    The interval depends only on the multiset of values (they are sorted first), so reordering the
    examples never moves it. Identical values give a point interval; no values raise ValueError.
    """
    _check_confidence(confidence)
    if not values:
        raise ValueError("bootstrap_interval needs at least one value")
    return _bootstrap(tuple(sorted(values)), confidence, seed, resamples)


@lru_cache(maxsize=4096)
def _bootstrap(values: tuple[float, ...], confidence: float, seed: int, resamples: int) -> tuple[float, float]:
    if values[0] == values[-1]:
        return (values[0], values[0])
    rng = random.Random(seed)
    n = len(values)
    levels = sorted(set(values))
    if n > _PICKS_PER_BINOMIAL * len(levels):
        counts = [values.count(v) for v in levels]
        means = sorted(_multinomial_sum(rng, n, levels, counts) / n for _ in range(resamples))
    else:
        means = sorted(math.fsum(rng.choices(values, k=n)) / n for _ in range(resamples))
    tail = (1 - confidence) / 2
    low = means[int(tail * resamples)]
    high = means[min(resamples - 1, math.ceil((1 - tail) * resamples) - 1)]
    return (low, high)


def _multinomial_sum(rng: random.Random, n: int, levels: Sequence[float], counts: Sequence[int]) -> float:
    """The sum of n draws with replacement from ``counts`` copies of each level, drawn as level counts.

    Equal in distribution to summing ``rng.choices(values, k=n)``, in O(levels) instead of O(n):
    the count of each level, given those before it, is binomial.
    """
    remaining, left, total = n, n, 0.0
    for level, count in zip(levels[:-1], counts[:-1], strict=True):
        drawn = binomial(rng, remaining, min(1.0, count / left)) if remaining else 0
        total += drawn * level
        remaining -= drawn
        left -= count
    return total + remaining * levels[-1]


def score_interval(values: Sequence[float], confidence: float) -> tuple[float, float]:
    """The interval of a mean score: Wilson for 0/1 scores, the seeded bootstrap otherwise.

    Per-example means of several samples are not 0/1, so they get the bootstrap.
    """
    if is_binary(values):
        return wilson_interval(sum(1 for v in values if v == 1), len(values), confidence)
    return bootstrap_interval(values, confidence)


# -- the paired drop ------------------------------------------------------------------------------

def binomial_tail(k: int, n: int, p: float = 0.5) -> float:
    """P(X >= k) for X ~ Binomial(n, p), exact (integer arithmetic at p = 0.5)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p == 0.5:
        return sum(math.comb(n, i) for i in range(k, n + 1)) / (1 << n)
    return math.fsum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


@dataclass(frozen=True)
class PairedDrop:
    """How much lower today's scores are than the recorded ones on the same examples.

    ``drop`` is mean(recorded - now); ``interval`` its equal-tailed interval at level
    2*confidence - 1, so that each bound is a one-sided ``confidence`` bound, as the one-sided
    test is: a drop is ``significant`` when ``p_value`` < 1 - confidence. Interval and test are
    different methods, so right at the threshold the lower bound may sit on the other side of 0.
    """

    drop: float
    interval: tuple[float, float]
    p_value: float
    test: str
    n: int
    significant: bool
    confidence: float = 0.95

    @property
    def interval_level(self) -> float:
        """The two-sided level of ``interval`` (0.90 for confidence 0.95)."""
        return 1 - 2 * (1 - self.confidence)


def paired_drop(recorded: Sequence[float], now: Sequence[float], confidence: float) -> PairedDrop:
    """The one-sided paired test of "now is worse than recorded", position i pairing example i.

    * 0/1 scores on both sides: exact McNemar. Only discordant pairs carry evidence; under "no
      change" each is a fall or a rise with probability 1/2, so p = P(Binomial(b + c, 1/2) >= b)
      with b falls and c rises. The interval is Newcombe's hybrid score interval for a paired
      difference of proportions (his method 10), built from Wilson intervals.
    * Otherwise (means of several samples, graded metrics): the sign-flip permutation test of the
      mean difference. Under "no change" each example's difference is as likely negated, so p is
      the share of the 2^k sign assignments of the k non-zero differences whose sum reaches the
      observed one, counted exactly (a sum distribution over a fine grid) and by 10,000 seeded
      random flips only when that distribution grows too large. The interval is the seeded paired
      bootstrap of the mean difference.
    On 0/1 data the sign-flip test is exactly McNemar's, so the two branches agree where they meet.
    A one-sided test below confidence 0.5 would call a rise a drop: ValueError.
    """
    _check_confidence(confidence, lowest=0.5)
    if len(recorded) != len(now):
        raise ValueError(f"paired_drop needs pairs: {len(recorded)} recorded scores but {len(now)} now")
    n = len(now)
    alpha = 1 - confidence
    if n == 0:
        return PairedDrop(0.0, (-1.0, 1.0), 1.0, "none", 0, False, confidence)
    diffs = [r - v for r, v in zip(recorded, now, strict=True)]
    drop = math.fsum(diffs) / n
    interval_level = 1 - 2 * alpha
    if is_binary(recorded) and is_binary(now):
        table = _paired_table(recorded, now)
        p_value = binomial_tail(table[1], table[1] + table[2])
        interval = _newcombe_paired(*table, level=interval_level)
        test = "exact McNemar"
    else:
        p_value = sign_flip_p(diffs)
        interval = bootstrap_interval(diffs, interval_level)
        test = "sign-flip permutation"
    return PairedDrop(drop, interval, p_value, test, n, p_value < alpha, confidence)


def _paired_table(recorded: Sequence[float], now: Sequence[float]) -> tuple[int, int, int, int]:
    """The 2x2 table of 0/1 pairs: (right both times, falls, rises, wrong both times)."""
    pairs = list(zip(recorded, now, strict=True))
    both = sum(1 for r, v in pairs if r == 1 and v == 1)
    falls = sum(1 for r, v in pairs if r == 1 and v == 0)
    rises = sum(1 for r, v in pairs if r == 0 and v == 1)
    return both, falls, rises, len(pairs) - both - falls - rises


def _newcombe_paired(both: int, falls: int, rises: int, neither: int, *, level: float) -> tuple[float, float]:
    n = both + falls + rises + neither
    p1, p2 = (both + falls) / n, (both + rises) / n
    l1, u1 = wilson_interval(both + falls, n, level)
    l2, u2 = wilson_interval(both + rises, n, level)
    margins = (both + falls) * (rises + neither) * (both + rises) * (falls + neither)
    product = float(both * neither - falls * rises)
    if product > 0:  # Newcombe's continuity correction of the correlation
        product = max(product - n / 2, 0.0)
    phi = product / math.sqrt(margins) if margins else 0.0
    theta = p1 - p2
    low = theta - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    high = theta + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return (max(-1.0, low), min(1.0, high))


def sign_flip_p(differences: Sequence[float], *, seed: int = 0) -> float:
    """One-sided p of the sign-flip test that the mean of ``differences`` is above 0."""
    nonzero = [d for d in differences if abs(d) > _EPS]
    if not nonzero:
        return 1.0
    keys = [round(abs(d) * _GRID) for d in nonzero]
    observed = sum(round(d * _GRID) for d in nonzero)
    # Rounding to the grid moves a sum by at most half a unit per term: count ties generously.
    reach = observed - len(keys)
    counts: dict[int, int] = {0: 1}
    for key in keys:
        grown: defaultdict[int, int] = defaultdict(int)
        for total, ways in counts.items():
            grown[total + key] += ways
            grown[total - key] += ways
        counts = grown
        if len(counts) > _MAX_EXACT_STATES:
            return _sign_flip_monte_carlo(keys, reach, seed)
    return sum(ways for total, ways in counts.items() if total >= reach) / (1 << len(keys))


def _sign_flip_monte_carlo(keys: Sequence[int], reach: int, seed: int) -> float:
    rng = random.Random(seed)
    hits = 0
    for _ in range(_MONTE_CARLO_FLIPS):
        if sum(key if rng.random() < 0.5 else -key for key in keys) >= reach:
            hits += 1
    return (hits + 1) / (_MONTE_CARLO_FLIPS + 1)  # the observed assignment counts as one draw


# -- resolution: the smallest drop a devset can detect --------------------------------------------

def _exact_floor(alpha: float) -> int:
    """How many examples must fall, with nothing rising, before an exact paired test can reject."""
    return max(1, math.ceil(math.log2(1 / alpha) - _EPS))


def noise_sd(per_example_scores: Sequence[float], *, samples: int = 1,
             per_example_variances: Sequence[float] | None = None) -> float:
    """The standard deviation of one example's paired difference when nothing changed.

    With ``per_example_variances`` (the call-to-call variance of one draw on each example,
    observable when samples >= 2), it is sqrt(2 * mean variance / samples). Without them, the
    variance of the per-example scores across examples stands in: by the law of total variance it
    is at least the mean within-example variance of those scores, so the stand-in can only
    overstate the noise (conservative), and for 0/1 scores scored once it is p(1 - p).
    """
    if per_example_variances is not None and len(per_example_variances) > 0:
        return math.sqrt(2 * mean(per_example_variances) / max(1, samples))
    if len(per_example_scores) < 2:
        return math.sqrt(2 * 0.25 / max(1, samples))  # nothing observed: the largest a [0, 1] score has
    centre = mean(per_example_scores)
    spread = math.fsum((v - centre) ** 2 for v in per_example_scores) / len(per_example_scores)
    return math.sqrt(2 * spread)


def _detectable(n: int, sd0: float, alpha: float, power: float) -> float:
    """Solve d * sqrt(n) = z_(1-alpha) * sqrt(sd0^2 + d) + z_power * sqrt(sd0^2 + d - d^2) for d."""
    if n <= 0:
        return 1.0
    za, zb = z_quantile(1 - alpha), z_quantile(power)
    drop = 1.0
    for _ in range(200):  # a fixed-point iteration; converges in a few dozen steps
        step = min(1.0, _required_shift(drop, sd0, za, zb) / math.sqrt(n))
        if abs(step - drop) < 1e-12:
            break
        drop = step
    return max(drop, _exact_floor(alpha) / n)


def _required_shift(drop: float, sd0: float, za: float, zb: float) -> float:
    # The exact tests condition on the sizes of the differences: their null spread is the second
    # moment sd0^2 + d (the falls included), the alternative's spread the variance sd0^2 + d - d^2.
    return za * math.sqrt(sd0 * sd0 + drop) + zb * math.sqrt(max(0.0, sd0 * sd0 + drop - drop * drop))


def resolution(per_example_scores: Sequence[float], *, samples: int = 1, confidence: float = 0.95,
               power: float = 0.8, per_example_variances: Sequence[float] | None = None) -> float:
    """The smallest drop the paired test detects at ``confidence`` with probability ``power``.

    Normal approximation of the paired test on n examples (Connor's McNemar sample size, widened
    to noisy differences), the regression shaped as examples falling from right to wrong (a
    full-range fall, how a broken prompt usually shows); with a = 1 - confidence:

        d * sqrt(n) = z_(1-a) * sqrt(s0^2 + d) + z_power * sqrt(s0^2 + d - d^2)

    s0 = ``noise_sd`` is the spread of one paired difference when nothing changed. The sign-flip
    and McNemar tests judge the observed sum against the differences' second moment, s0^2 + d
    with the falls counted; the sum itself varies by s0^2 + d - d^2. Assumptions: examples
    independent, scores in [0, 1], falls on examples without call-to-call noise. With no observed
    call-to-call variance (0/1 metric, samples=1) s0 is ``noise_sd``'s conservative stand-in, so
    the number can only overstate what is needed. It is never under the exact test's floor: with
    nothing rising, ceil(log2(1/a)) examples must fall (5 at 0.95).
    """
    _check_confidence(confidence)
    sd0 = noise_sd(per_example_scores, samples=samples, per_example_variances=per_example_variances)
    return _detectable(len(per_example_scores), sd0, 1 - confidence, power)


def examples_needed(drop: float, per_example_scores: Sequence[float], *, samples: int = 1,
                    confidence: float = 0.95, power: float = 0.8,
                    per_example_variances: Sequence[float] | None = None) -> int:
    """About how many examples (same noise per example) make ``drop`` detectable, by ``resolution``."""
    _check_confidence(confidence)
    if drop <= 0:
        raise ValueError(f"drop {drop!r} must be above 0")
    sd0 = noise_sd(per_example_scores, samples=samples, per_example_variances=per_example_variances)
    alpha = 1 - confidence
    fall = min(drop, 1.0)
    normal = (_required_shift(fall, sd0, z_quantile(1 - alpha), z_quantile(power)) / fall) ** 2
    needed = max(math.ceil(normal), math.ceil(_exact_floor(alpha) / fall - _EPS))
    while needed > 1 and _detectable(needed - 1, sd0, alpha, power) <= drop:
        needed -= 1
    while _detectable(needed, sd0, alpha, power) > drop:
        needed += 1
    return needed


def samples_needed(drop: float, per_example_scores: Sequence[float], *, samples: int = 1,
                   confidence: float = 0.95, power: float = 0.8,
                   per_example_variances: Sequence[float] | None = None, limit: int = 64) -> int | None:
    """About how many samples per example make ``drop`` detectable on these examples, or None.

    More samples only shrink the call-to-call noise; the falls themselves and the exact floor stay,
    so past a point only more examples help: then None. The noise of one draw is taken from
    ``per_example_variances``, else conservatively as ``samples`` times the stand-in of
    ``noise_sd`` (capped at 0.25, the most a [0, 1] score varies).
    """
    _check_confidence(confidence)
    n = len(per_example_scores)
    if per_example_variances is not None and len(per_example_variances) > 0:
        one_draw = mean(per_example_variances)
    else:
        one_draw = min(0.25, max(1, samples) * noise_sd(per_example_scores) ** 2 / 2)
    for count in range(1, limit + 1):
        if _detectable(n, math.sqrt(2 * one_draw / count), 1 - confidence, power) <= drop:
            return count
    return None


def examples_to_bound(score: float, threshold: float, spread: float, confidence: float) -> int:
    """About how many examples put ``threshold`` outside the interval of a mean ``score``.

    Normal approximation n = (z * spread / |score - threshold|)^2, two-sided at ``confidence``,
    with ``spread`` the standard deviation of one example's score.
    """
    _check_confidence(confidence)
    gap = abs(score - threshold)
    if gap < _EPS:
        raise ValueError(f"score {score!r} equals threshold {threshold!r}: no number of examples separates them")
    z = z_quantile(1 - (1 - confidence) / 2)
    return max(1, math.ceil((z * spread / gap) ** 2))
