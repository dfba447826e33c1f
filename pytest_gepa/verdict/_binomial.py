"""A binomial sampler in O(1) per draw, so a bootstrap of n scores on few levels costs no O(n) per resample.

Ported from CPython 3.12's ``random.Random.binomialvariate`` (Devroye's geometric method for
n*p < 10, Hörmann's BTRS otherwise; PSF licence), because 3.11, which pytest-gepa supports, lacks
it. The port always runs, on every Python, so a seed gives the same interval everywhere.
"""

from __future__ import annotations

import math
import random


def binomial(rng: random.Random, n: int, p: float) -> int:
    """A draw of Binomial(n, p) from ``rng``."""
    if n < 0:
        raise ValueError(f"n {n!r} must be non-negative")
    if p <= 0.0 or p >= 1.0:
        if p <= 0.0:
            return 0
        return n
    if n == 1:
        return int(rng.random() < p)
    if p > 0.5:
        return n - binomial(rng, n, 1.0 - p)
    if n * p < 10.0:
        x = y = 0
        c = math.log2(1.0 - p)
        if not c:
            return x
        while True:
            y += math.floor(math.log2(rng.random()) / c) + 1
            if y > n:
                return x
            x += 1
    return _btrs(rng, n, p)


def _btrs(rng: random.Random, n: int, p: float) -> int:
    spq = math.sqrt(n * p * (1.0 - p))
    b = 1.15 + 2.53 * spq
    a = -0.0873 + 0.0248 * b + 0.01 * p
    c = n * p + 0.5
    vr = 0.92 - 4.2 / b
    alpha = (2.83 + 5.1 / b) * spq
    lpq = math.log(p / (1.0 - p))
    mode = math.floor((n + 1) * p)
    h = math.lgamma(mode + 1) + math.lgamma(n - mode + 1)
    while True:
        u = rng.random() - 0.5
        us = 0.5 - abs(u)
        k = math.floor((2.0 * a / us + b) * u + c)
        if k < 0 or k > n:
            continue
        v = rng.random()
        if us >= 0.07 and v <= vr:  # the squeeze: most draws end here
            return k
        v *= alpha / (a / (us * us) + b)
        if math.log(v) <= h - math.lgamma(k + 1) - math.lgamma(n - k + 1) + (k - mode) * lpq:
            return k
