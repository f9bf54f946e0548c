"""Intervals for the voice of the customer at the sample sizes surveys have (20-400 answers).

* **NPS** is promoters/n minus detractors/n, two shares of one trinomial (promoter, passive,
  detractor). Its interval is the score interval for a difference of two cells of a multinomial
  (Tango 1998, written for paired proportions, whose discordant cells are the same model): the
  values of the difference Δ not rejected by the score test whose variance uses the constrained
  maximum-likelihood cells under Δ. Unlike Wald it stays inside [-1, 1] and is defined at 0 or n
  promoters; its exact coverage, enumerated over every outcome at n = 20-50, is checked in
  tests/unit/stats/test_voc_intervals.py.
* **CSAT** (a proportion): Wilson's score interval.
* **CES** (a mean on a bounded scale): Student's t interval; at n = 1 or zero variance the
  interval collapses to the mean's possible range, never to a point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import optimize
from scipy import stats as sps

from closeloop.stats.proportions import wilson_bounds

CONFIDENCE = 0.95
_EDGE = 1e-12


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its interval (``None`` bounds when nothing was observed)."""

    value: float | None
    lower: float | None
    upper: float | None


def _z(confidence: float) -> float:
    return float(sps.norm.isf((1 - confidence) / 2))


def _tango_statistic(promoters: int, detractors: int, n: int, delta: float) -> float:
    """Score statistic of H0: p_promoter - p_detractor = delta (Tango 1998)."""
    numerator = promoters - detractors - n * delta
    if numerator == 0:
        return 0.0
    w = -promoters - detractors + (2 * n - promoters + detractors) * delta
    detractor_share = (
        math.sqrt(max(w * w + 8 * n * detractors * delta * (1 - delta), 0.0)) - w
    ) / (4 * n)
    variance = n * (2 * detractor_share + delta * (1 - delta))
    if variance <= 0:
        return math.copysign(math.inf, numerator)
    return numerator / math.sqrt(variance)


def nps_interval(
    promoters: int, detractors: int, n: int, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Score interval for promoters/n - detractors/n (as a share in [-1, 1], not points).

    >>> low, high = nps_interval(10, 4, 20)
    >>> round(low, 3), round(high, 3)
    (-0.068, 0.59)
    """
    if n <= 0:
        raise ValueError("an NPS interval needs at least one response")
    if min(promoters, detractors) < 0 or promoters + detractors > n:
        raise ValueError(f"impossible counts: {promoters} + {detractors} of {n}")
    z = _z(confidence)
    estimate = (promoters - detractors) / n

    def excess(delta: float) -> float:
        return _tango_statistic(promoters, detractors, n, delta)

    # The statistic falls as delta rises: the bounds are where it crosses +z and -z.
    low_end, high_end = -1 + _EDGE, 1 - _EDGE
    if excess(low_end) <= z:
        lower = -1.0
    else:
        lower = optimize.brentq(lambda d: excess(d) - z, low_end, estimate, xtol=1e-10)
    if excess(high_end) >= -z:
        upper = 1.0
    else:
        upper = optimize.brentq(lambda d: excess(d) + z, estimate, high_end, xtol=1e-10)
    return float(lower), float(upper)


def nps_estimate(
    promoters: int, detractors: int, n: int, confidence: float = CONFIDENCE
) -> Estimate:
    """NPS in points (-100..100) with its score interval; all ``None`` when ``n`` is 0."""
    if n == 0:
        return Estimate(None, None, None)
    lower, upper = nps_interval(promoters, detractors, n, confidence)
    return Estimate(100 * (promoters - detractors) / n, 100 * lower, 100 * upper)


def share_estimate(successes: int, n: int, confidence: float = CONFIDENCE) -> Estimate:
    """A share in percent (0..100) with Wilson's score interval; ``None`` when ``n`` is 0."""
    if n == 0:
        return Estimate(None, None, None)
    lower, upper = wilson_bounds(float(successes), float(n), _z(confidence))
    return Estimate(100 * successes / n, 100 * max(lower, 0.0), 100 * min(upper, 1.0))


def mean_estimate(
    n: int,
    total: float,
    total_squares: float,
    scale: tuple[float, float],
    confidence: float = CONFIDENCE,
) -> Estimate:
    """Mean of scores on ``scale`` from sufficient statistics, with Student's t interval clipped
    to the scale. One answer, or answers all alike, say nothing about spread: the interval is
    then the whole scale (an honest "unknown"), not a point."""
    if n == 0:
        return Estimate(None, None, None)
    mean = total / n
    low_end, high_end = scale
    if n < 2:
        return Estimate(mean, low_end, high_end)
    variance = max((total_squares - n * mean * mean) / (n - 1), 0.0)
    if variance == 0:
        return Estimate(mean, low_end, high_end)
    half = float(sps.t.isf((1 - confidence) / 2, n - 1)) * math.sqrt(variance / n)
    return Estimate(mean, max(mean - half, low_end), min(mean + half, high_end))


def slope(values: list[float | None]) -> float | None:
    """Least-squares slope of ``values`` against their index (0, 1, 2, …), skipping ``None``;
    ``None`` when fewer than two values exist."""
    points = [(i, v) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def weighted_slope(
    values: list[float | None], variances: list[float | None]
) -> tuple[float | None, float | None]:
    """Weighted least-squares slope of ``values`` against their index and its standard error,
    each point weighted by 1 / its variance (points without a value or with a variance that is
    not positive are skipped). ``(None, None)`` with fewer than two usable points.

    >>> slope_, error = weighted_slope([0.0, 1.0, 2.0], [1.0, 1.0, 1.0])
    >>> round(slope_, 6), round(error, 6)
    (1.0, 0.707107)
    """
    points = [
        (i, v, 1.0 / s)
        for i, (v, s) in enumerate(zip(values, variances, strict=True))
        if v is not None and s is not None and math.isfinite(v) and s > 0
    ]
    if len(points) < 2:
        return None, None
    total = sum(w for _, _, w in points)
    mean_x = sum(w * x for x, _, w in points) / total
    mean_y = sum(w * y for _, y, w in points) / total
    spread = sum(w * (x - mean_x) ** 2 for x, _, w in points)
    if spread == 0:
        return None, None
    estimate = sum(w * (x - mean_x) * (y - mean_y) for x, y, w in points) / spread
    return estimate, math.sqrt(1.0 / spread)


def nps_variance(promoters: int, detractors: int, n: int) -> float | None:
    """Variance of NPS in points² (multinomial), with one pseudo-answer of each kind added so a
    period of all promoters does not claim zero variance; ``None`` when ``n`` is 0."""
    if n == 0:
        return None
    p, q, m = (promoters + 1) / (n + 3), (detractors + 1) / (n + 3), n + 3
    return 10_000 * (p + q - (p - q) ** 2) / m


def share_variance(successes: int, n: int) -> float | None:
    """Variance of a percentage (points²) with one pseudo-success and -failure (Agresti-Coull
    style); ``None`` when ``n`` is 0."""
    if n == 0:
        return None
    p = (successes + 1) / (n + 2)
    return 10_000 * p * (1 - p) / (n + 2)
