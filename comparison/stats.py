"""What the comparison says about a metric over seeds: mean, sample std and a 95% confidence interval.

The interval is Student's t interval for the mean of n seeds (n >= 2)::

    mean +- t_{0.975, n-1} * s / sqrt(n),   s = sample standard deviation (n - 1 in the denominator)

(t_{0.975, n-1} from ``scipy.stats.t.ppf``; scipy comes with scikit-learn). It treats the seeds
as independent draws of a roughly normal quantity; with 2 or 3 seeds it is wide (t = 12.71 and
4.30), which is the honest answer to how much 2 or 3 seeds tell.

Two objectives are "within noise" of each other when their intervals overlap. That is a
conservative rule: non-overlapping 95% intervals imply a significant difference, while
overlapping ones do not prove there is none.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from scipy.stats import t as student_t

LEVEL = 0.95


class Stat(NamedTuple):
    """A metric over seeds: ``n`` values (None and NaN left out), their mean, sample std and 95% t
    interval [low, high]; mean is None for no value, std, low and high are None for fewer than two."""
    mean: float | None
    std: float | None
    low: float | None
    high: float | None
    n: int


def summarize_values(values) -> Stat:
    """The ``Stat`` of ``values`` (a list of floats, None or NaN for missing)."""
    values = [float(v) for v in values if v is not None and not math.isnan(v)]
    n = len(values)
    if not n:
        return Stat(None, None, None, None, 0)
    mean = math.fsum(values) / n
    if n < 2:
        return Stat(mean, None, None, None, n)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = half_width(std, n)
    return Stat(mean, std, mean - half, mean + half, n)


def half_width(std: float, n: int) -> float:
    """t_{0.975, n-1} * std / sqrt(n), the half width of the 95% interval of a mean of n >= 2 values."""
    return float(student_t.ppf(0.5 + LEVEL / 2, n - 1)) * std / math.sqrt(n)


def overlap(a: Stat, b: Stat) -> bool | None:
    """Whether the intervals of ``a`` and ``b`` share a point (touching counts); None when either has
    no interval (fewer than two values)."""
    if a.low is None or b.low is None:
        return None
    return a.low <= b.high and b.low <= a.high
