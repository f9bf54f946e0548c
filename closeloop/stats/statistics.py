"""Sufficient statistics: what the warehouse aggregates, and all a test needs from each arm.

Conventions (those of GrowthBook's gbstats, so its published numbers are reference values): the
variance of a proportion is p(1 - p) (divided by n); the variance of a mean divides by n - 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def _sample_variance(n: int, total: float, sum_squares: float) -> float:
    if n <= 1:
        return math.nan
    # Not clamped at 0, to keep gbstats' arithmetic; welch_test treats a variance <= 0 as none.
    return (sum_squares - total * total / n) / (n - 1)


def _covariance(n: int, sum_x: float, sum_y: float, sum_products: float) -> float:
    if n <= 1:
        return math.nan
    return (sum_products - sum_x * sum_y / n) / (n - 1)


@dataclass(frozen=True)
class ProportionStatistic:
    """``successes`` of ``n`` units reached the outcome."""

    n: int
    successes: int

    @property
    def sum(self) -> float:
        return float(self.successes)

    @property
    def mean(self) -> float:
        return self.successes / self.n if self.n else math.nan

    @property
    def variance(self) -> float:
        p = self.mean
        return p * (1 - p) if self.n else math.nan


@dataclass(frozen=True)
class SampleMeanStatistic:
    """A numeric outcome per unit, summarised by its count, sum and sum of squares."""

    n: int
    sum: float
    sum_squares: float

    @property
    def mean(self) -> float:
        return self.sum / self.n if self.n else math.nan

    @property
    def variance(self) -> float:
        return _sample_variance(self.n, self.sum, self.sum_squares)


@dataclass(frozen=True)
class RatioStatistic:
    """A ratio of two per-unit sums (e.g. revenue per session); variance by the delta method."""

    n: int
    m_sum: float
    m_sum_squares: float
    d_sum: float
    d_sum_squares: float
    md_sum_products: float

    @property
    def mean(self) -> float:
        return self.m_sum / self.d_sum if self.d_sum else math.nan

    @property
    def variance(self) -> float:
        if self.n <= 1 or not self.d_sum:
            return math.nan
        mean_m, mean_d = self.m_sum / self.n, self.d_sum / self.n
        var_m = _sample_variance(self.n, self.m_sum, self.m_sum_squares)
        var_d = _sample_variance(self.n, self.d_sum, self.d_sum_squares)
        cov = _covariance(self.n, self.m_sum, self.d_sum, self.md_sum_products)
        return var_m / mean_d**2 - 2 * cov * mean_m / mean_d**3 + mean_m**2 * var_d / mean_d**4


@dataclass(frozen=True)
class RegressionAdjustedStatistic:
    """An outcome after entry (``post``) with the same measure before entry (``pre``), for CUPED.

    ``theta`` fixes the CUPED coefficient (e.g. one estimated on historical data); left as
    ``None``, :func:`closeloop.stats.cuped_test` pools it from both arms as gbstats does.
    """

    n: int
    post_sum: float
    post_sum_squares: float
    pre_sum: float
    pre_sum_squares: float
    post_pre_sum_products: float
    theta: float | None = None

    @property
    def post(self) -> SampleMeanStatistic:
        return SampleMeanStatistic(self.n, self.post_sum, self.post_sum_squares)

    @property
    def pre(self) -> SampleMeanStatistic:
        return SampleMeanStatistic(self.n, self.pre_sum, self.pre_sum_squares)

    @property
    def covariance(self) -> float:
        return _covariance(self.n, self.post_sum, self.pre_sum, self.post_pre_sum_products)

    @property
    def mean(self) -> float:
        """The unadjusted mean of the outcome."""
        return self.post.mean

    @property
    def variance(self) -> float:
        return self.post.variance


Statistic = ProportionStatistic | SampleMeanStatistic | RatioStatistic | RegressionAdjustedStatistic


def pooled_theta(a: RegressionAdjustedStatistic, b: RegressionAdjustedStatistic) -> float:
    """The CUPED coefficient cov(post, pre) / var(pre), from both arms' pooled sums."""
    n = a.n + b.n
    pre_variance = _sample_variance(n, a.pre_sum + b.pre_sum, a.pre_sum_squares + b.pre_sum_squares)
    if not pre_variance or math.isnan(pre_variance):
        return 0.0
    covariance = _covariance(
        n,
        a.post_sum + b.post_sum,
        a.pre_sum + b.pre_sum,
        a.post_pre_sum_products + b.post_pre_sum_products,
    )
    return covariance / pre_variance
