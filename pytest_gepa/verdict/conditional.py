"""Tests conditioned on the devset: did the program get worse **on these examples**?

The devset is fixed; what varies between runs is the LM's answer to the same request. Under
"nothing changed", an example's draws recorded at compile and today's draws come from the same
distribution, so they are exchangeable: which of the pooled draws happened today is a uniformly
random choice. Every test here conditions on each example's pooled draws and asks how often such a
random choice gives a total as low as today's. Examples whose pooled draws never vary carry no
evidence either way and drop out. Pure functions, stdlib only, everything random seeded.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from pytest_gepa.verdict.statistics import z_quantile

_EPS = 1e-9
_GRID = 10**6  # graded draws are summed on this integer grid
_MAX_SUBSETS = 5_000  # an example whose pool splits more ways than this is permuted at random instead
_MAX_STATES = 50_000  # the exact convolution gives way to seeded permutations beyond this many sums
_PERMUTATIONS = 10_000
# The largest variance a score in [0, 1] can have: what an example with no observed variation
# of its own, and no recorded draws to show it, is assumed to have.
_WORST_VARIANCE = 0.25

Draws = Mapping[str, Sequence[float]]


@dataclass(frozen=True)
class ConditionalDrop:
    """The drop of today's draws under the recorded ones, tested conditioned on the devset.

    ``drop`` is the mean over examples of mean(recorded draws) - mean(today's draws);
    ``p_value`` the one-sided p of "today is lower" given each example's pooled draws.
    """

    drop: float
    p_value: float
    test: str
    n: int  # examples present in both
    varying: int  # of those, examples whose pooled draws vary: the only ones carrying evidence
    recorded_draws: int
    today_draws: int
    level: float  # the test's level: p under it is significant

    @property
    def significant(self) -> bool:
        return self.p_value < self.level


def _binary(values: Sequence[float]) -> bool:
    return all(v == 0 or v == 1 for v in values)


def conditional_drop(recorded: Draws, today: Draws, level: float, *, seed: int = 0) -> ConditionalDrop:
    """The exact one-sided test that today's draws are lower than the recorded ones, per example.

    The statistic is the point drop itself, sum_i (S_i / m_i - T_i (1/m_i + 1/k_i)) / n for an
    example with m_i recorded and k_i draws today, S_i their pooled total and T_i today's; with
    equal counts everywhere it is today's total. For 0/1 draws T_i given S_i is hypergeometric and
    the sum's distribution is their exact convolution; graded draws enumerate every split of each
    pool (an exact permutation test), and pools too large to enumerate use 10,000 seeded random
    splits. Unequal counts (3 recorded, 1 today) are the same test.
    """
    if not 0 < level < 1:
        raise ValueError(f"level {level!r} must be in (0, 1), for example 0.05")
    common = sorted(eid for eid in recorded.keys() & today.keys() if recorded[eid] and today[eid])
    pools = [(list(recorded[eid]), list(today[eid])) for eid in common]
    n = len(pools)
    counted = sum(len(r) for r, _ in pools), sum(len(t) for _, t in pools)
    if n == 0:
        return ConditionalDrop(0.0, 1.0, "none", 0, 0, *counted, level)
    drop = math.fsum(sum(r) / len(r) - sum(t) / len(t) for r, t in pools) / n
    varying = [(r, t) for r, t in pools if max(r + t) - min(r + t) > _EPS]
    if not varying:
        return ConditionalDrop(drop, 1.0, "exact conditional", n, 0, *counted, level)
    binary = all(_binary(r + t) for r, t in varying)
    p_value, test = _exact_p(varying, binary)
    if p_value is None:
        p_value, test = _permutation_p(varying, seed), "seeded within-example permutation"
    return ConditionalDrop(drop, p_value, test, n, len(varying), *counted, level)


def _weight_unit(varying: Sequence[tuple[list[float], list[float]]]) -> int:
    """A common multiple of every draw count, so each 0/1 example's weight is a whole number."""
    return math.lcm(*(len(part) for pool in varying for part in pool))


def _exact_p(varying: Sequence[tuple[list[float], list[float]]], binary: bool) -> tuple[float | None, str]:
    unit = _weight_unit(varying) if binary else 0
    sums: dict[int, int] = {0: 1}
    total_ways, observed = 1, 0
    for rec, now in varying:
        if binary:
            weights, seen = _hypergeometric(rec, now, unit)
        else:
            split = _subsets(rec, now)
            if split is None:
                return None, ""
            weights, seen = split
        observed += seen
        total_ways *= sum(weights.values())
        grown: defaultdict[int, int] = defaultdict(int)
        for key, ways in sums.items():
            for step, count in weights.items():
                grown[key + step] += ways * count
        sums = grown
        if len(sums) > _MAX_STATES:
            return None, ""
    # Graded sums were rounded to the grid: count ties generously, half a unit per example.
    reach = observed if binary else observed + len(varying)
    low = sum(ways for key, ways in sums.items() if key <= reach)
    return float(Fraction(low, total_ways)), ("exact hypergeometric" if binary else "exact within-example permutation")


def _hypergeometric(rec: list[float], now: list[float], unit: int) -> tuple[dict[int, int], int]:
    """Ways of each count of today's successes given the pool's, keyed by count * weight."""
    m, k = len(rec), len(now)
    pooled = int(sum(rec) + sum(now))
    weight = unit // m + unit // k
    ways = {b * weight: math.comb(pooled, b) * math.comb(m + k - pooled, k - b)
            for b in range(max(0, pooled - m), min(k, pooled) + 1)}
    return ways, int(sum(now)) * weight


def _subsets(rec: list[float], now: list[float]) -> tuple[dict[int, int], int] | None:
    m, k = len(rec), len(now)
    if math.comb(m + k, k) > _MAX_SUBSETS:
        return None
    pool = rec + now
    weight = 1 / m + 1 / k
    ways: defaultdict[int, int] = defaultdict(int)
    for chosen in itertools.combinations(range(m + k), k):
        ways[round(sum(pool[i] for i in chosen) * weight * _GRID)] += 1
    return dict(ways), round(sum(now) * weight * _GRID)


def _permutation_p(varying: Sequence[tuple[list[float], list[float]]], seed: int) -> float:
    rng = random.Random(seed)
    weights = [1 / len(r) + 1 / len(t) for r, t in varying]
    observed = sum(w * sum(t) for w, (_, t) in zip(weights, varying, strict=True))
    hits = 0
    for _ in range(_PERMUTATIONS):
        total = 0.0
        for w, (rec, now) in zip(weights, varying, strict=True):
            total += w * sum(rng.sample(rec + now, len(now)))
        if total <= observed + _EPS:
            hits += 1
    return (hits + 1) / (_PERMUTATIONS + 1)  # the observed split counts as one draw


# -- min_score: the devset's expected score given the devset ---------------------------------------

@dataclass(frozen=True)
class DevsetBound:
    """A one-sided bound on the devset's expected score (over the LM's answers, examples fixed)."""

    score: float
    upper: float
    confidence: float
    unobserved: int  # examples whose variance no draw showed, taken at the worst a [0, 1] score has


def observable(today: Draws, recorded: Draws | None) -> bool:
    """Whether the call-to-call variance shows: some example drawn twice today or recorded twice."""
    return any(len(d) >= 2 for d in today.values()) or any(len(d) >= 2 for d in (recorded or {}).values())


def devset_bound(today: Draws, confidence: float, *, recorded: Draws | None = None) -> DevsetBound:
    """The upper one-sided ``confidence`` bound of the devset's expected score, normal approximation.

    Each example's variance of one draw is the sample variance of its pooled draws (today's and,
    when recorded, the compile's), 0 for an example whose pool never varies, and the worst case
    0.25 for an example drawn once with nothing recorded. Assumes enough varying draws for the
    normal approximation; with every example steady the bound is the score itself, which is what
    a deterministic model on a fixed devset gives.
    """
    ids = sorted(eid for eid in today if today[eid])
    n = len(ids)
    if n == 0:
        return DevsetBound(0.0, 1.0, confidence, 0)
    score = math.fsum(sum(today[eid]) / len(today[eid]) for eid in ids) / n
    variance, unobserved = 0.0, 0
    for eid in ids:
        now = list(today[eid])
        pool = now + list((recorded or {}).get(eid, ()))
        if len(pool) < 2:
            one_draw, unobserved = _WORST_VARIANCE, unobserved + 1
        else:
            centre = sum(pool) / len(pool)
            one_draw = min(_WORST_VARIANCE, sum((v - centre) ** 2 for v in pool) / (len(pool) - 1))
        variance += one_draw / len(now)
    upper = min(1.0, score + z_quantile(confidence) * math.sqrt(variance) / n)
    return DevsetBound(score, upper, confidence, unobserved)


# -- buying precision: a second stage of draws ----------------------------------------------------

def stage_levels(alpha: float, *, staged: bool) -> tuple[float, float]:
    """The levels of the first look and of the second (alpha spending, Bonferroni).

    A verdict that may buy a second stage spends half of ``alpha`` on each look, so a false alarm
    at either has probability at most ``alpha`` in all; a single look spends all of it.
    """
    return (alpha / 2, alpha / 2) if staged else (alpha, 0.0)


def plan_more_draws(today: Draws, budget: int) -> dict[str, int]:
    """Which examples the second stage draws again, and how many times each (even split).

    The choice looks only at today's draws, never at the recorded ones: an example is drawn again
    when some draw today fell short of full marks, as a fallen example must have (an example
    scoring 1 on every draw cannot be lower than recorded). Chosen so, the second stage's draws and
    the recorded ones stay exchangeable under "nothing changed" (a choice that looked at the
    recorded draws would pick the examples whose recording was lucky, and fake drops).
    """
    short = sorted(eid for eid, draws in today.items() if draws and min(draws) < 1 - _EPS)
    if not short or budget < len(short):
        return {}
    each = budget // len(short)
    return {eid: each for eid in short}


def second_stage_view(today: Draws, more: Draws) -> dict[str, list[float]]:
    """The draws the second look judges: an example drawn again by its new draws alone, the rest by
    today's. The first draws that chose an example are left out: they were chosen for being low."""
    return {eid: list(more[eid]) if more.get(eid) else list(draws) for eid, draws in today.items()}


def falls_to_detect(recorded_draws: int, today_draws: int, level: float) -> int:
    """How many examples must fall from right on every recorded draw to wrong on every draw today,
    nothing else moving, before the conditional test rejects at ``level``: each such fall alone has
    probability 1 / C(m + k, k)."""
    each = 1 / math.comb(recorded_draws + today_draws, today_draws)
    return max(1, math.ceil(math.log(level) / math.log(each) + _EPS)) if each < 1 else 10**9


def conditional_resolution(recorded: Mapping[str, Sequence[float]], max_drop: float | None, *, samples: int,
                           max_samples: int, confidence: float = 0.95) -> tuple[float, str | None]:
    """The smallest drop the staged conditional test resolves on these recorded draws, and the note
    for a finer ``max_drop``; 1.0 when no fall that can happen is resolved.

    A fall is an example scoring nothing today on every draw after scoring above 0 on every recorded
    one, nothing else moving. The first look has ``samples`` draws each; the second spreads the rest
    of the ``max_samples`` budget over every example short of full marks today: the fallen ones and
    those short anyway (on a steady model, whatever was short when recorded). The smallest drop is
    the smallest falls detected, smallest scores first. Noise takes draws and evidence too, so on a
    noisy model the figure is optimistic (benchmarks/verdicts.py measures it).
    """
    n = len(recorded)
    draws = [list(d) for d in recorded.values() if d]
    if n == 0 or not draws:
        return 1.0, None
    m = min(len(d) for d in draws)
    first, second = stage_levels(1 - confidence, staged=max_samples > samples)
    short = sum(1 for d in draws if min(d) < 1 - _EPS)
    partial = sorted(sum(d) / len(d) for d in draws if min(d) > _EPS and min(d) < 1 - _EPS)
    perfect = [1.0] * sum(1 for d in draws if min(d) >= 1 - _EPS)
    can_fall = partial + perfect  # smallest first: the smallest drops
    first_look = falls_to_detect(m, samples, first)
    extra = (max_samples - samples) * n
    needed = None
    for falls in range(1, len(can_fall) + 1):
        spread = short + max(0, falls - len(partial))  # a fall from full marks is one more example short
        each = extra // spread if spread else 0
        if falls >= first_look or (second and each >= 1 and falls_to_detect(m, each, second) <= falls):
            needed = falls
            break
    smallest = 1.0 if needed is None else sum(can_fall[:needed]) / n
    if max_drop is None or max_drop + _EPS >= smallest or needed == 1:
        return smallest, None
    said = (f"this devset of {n} examples, each scored {'once' if samples == 1 else f'{samples} times'} against "
            f"{m} recorded draws, ")
    fix = "raise gepa_samples or gepa_max_samples, or add examples"
    if needed is None:
        return smallest, said + f"cannot resolve any drop; max_drop {max_drop:.2f} cannot be checked: {fix}"
    return smallest, said + (f"resolves drops of {smallest:.2f} or more ({needed} examples falling); max_drop "
                             f"{max_drop:.2f} is finer than that: {fix}")
