"""Fixed-horizon tests: Welch's t-test (absolute and relative lift), ratio metrics, CUPED.

p-values come from survival functions (``scipy.stats.t.sf``), never ``1 - cdf``, so very small
p-values keep their magnitude instead of rounding to zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats as sps

from closeloop.stats.results import ComparisonResult, Interval, status_of
from closeloop.stats.statistics import RegressionAdjustedStatistic, Statistic, pooled_theta

ABSOLUTE = "absolute"
RELATIVE = "relative"
DIFFERENCES = (ABSOLUTE, RELATIVE)


@dataclass(frozen=True)
class _Moments:
    """What a test needs of one arm: n, mean and the per-unit variance."""

    n: int
    mean: float
    variance: float


def welch_df(control: _Moments, treatment: _Moments) -> float:
    """Welch–Satterthwaite degrees of freedom."""
    a = control.variance / control.n
    b = treatment.variance / treatment.n
    denominator = a * a / (control.n - 1) + b * b / (treatment.n - 1)
    return (a + b) ** 2 / denominator if denominator > 0 else math.nan


def _check(control: _Moments, treatment: _Moments, difference: str, alpha: float) -> str:
    if difference not in DIFFERENCES:
        raise ValueError(f"difference must be one of {DIFFERENCES}, got {difference!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    if control.n < 2 or treatment.n < 2:
        return f"each arm needs at least 2 units (control {control.n}, treatment {treatment.n})"
    values = (control.mean, control.variance, treatment.mean, treatment.variance)
    if not all(math.isfinite(v) for v in values):
        return "the statistics are not finite"
    if control.variance <= 0 and treatment.variance <= 0:
        return "the outcome does not vary in either arm"
    if difference == RELATIVE and control.mean == 0:
        return "the control mean is 0, so a relative lift is undefined"
    return ""


def _estimate(control: _Moments, treatment: _Moments, difference: str) -> tuple[float, float]:
    """Point estimate and its variance (delta method for the relative lift)."""
    if difference == ABSOLUTE:
        return (
            treatment.mean - control.mean,
            treatment.variance / treatment.n + control.variance / control.n,
        )
    mc, mt = control.mean, treatment.mean
    variance = treatment.variance / (treatment.n * mc**2) + control.variance * mt**2 / (
        control.n * mc**4
    )
    return (mt - mc) / abs(mc), variance


def _t_result(
    estimate: float, variance: float, df: float, difference: str, alpha: float
) -> ComparisonResult:
    se = math.sqrt(variance) if variance > 0 else math.nan
    if not (se > 0 and math.isfinite(se)):
        return ComparisonResult.insufficient(difference, alpha, "the estimate has no variance")
    quantile = float(sps.t.isf(alpha / 2, df))
    ci = Interval(estimate - quantile * se, estimate + quantile * se)
    p_value = float(2 * sps.t.sf(abs(estimate) / se, df))
    return ComparisonResult(difference, estimate, ci, se, p_value, df, alpha, status_of(ci))


def _moments(statistic: Statistic) -> _Moments:
    return _Moments(statistic.n, statistic.mean, statistic.variance)


def welch_test(
    control: Statistic,
    treatment: Statistic,
    *,
    difference: str = ABSOLUTE,
    alpha: float = 0.05,
) -> ComparisonResult:
    """Treatment minus control (or relative to control), Welch's unequal-variance t-test."""
    c, t = _moments(control), _moments(treatment)
    problem = _check(c, t, difference, alpha)
    if problem:
        return ComparisonResult.insufficient(difference, alpha, problem)
    estimate, variance = _estimate(c, t, difference)
    return _t_result(estimate, variance, welch_df(c, t), difference, alpha)


def cuped_test(
    control: RegressionAdjustedStatistic,
    treatment: RegressionAdjustedStatistic,
    *,
    difference: str = ABSOLUTE,
    alpha: float = 0.05,
) -> ComparisonResult:
    """Welch's test on CUPED-adjusted outcomes (theta pooled over both arms unless given).

    The adjusted outcome is post - theta * pre; the relative lift divides by the *unadjusted*
    control mean, as gbstats does, so it stays interpretable as a change in the outcome.
    """
    if difference not in DIFFERENCES:
        raise ValueError(f"difference must be one of {DIFFERENCES}, got {difference!r}")
    theta = _cuped_theta(control, treatment)

    def adjusted(s: RegressionAdjustedStatistic) -> _Moments:
        variance = s.post.variance + theta**2 * s.pre.variance - 2 * theta * s.covariance
        return _Moments(s.n, s.post.mean - theta * s.pre.mean, variance)

    c, t = adjusted(control), adjusted(treatment)
    # The relative lift divides by the unadjusted control mean, so only that one must be nonzero:
    # the adjusted control mean may legitimately be 0.
    problem = _check(c, t, ABSOLUTE, alpha)
    if difference == RELATIVE and not problem and control.post.mean == 0:
        problem = "the control mean is 0, so a relative lift is undefined"
    if problem:
        return ComparisonResult.insufficient(difference, alpha, problem)
    absolute = t.mean - c.mean
    if difference == ABSOLUTE:
        return _t_result(
            absolute, t.variance / t.n + c.variance / c.n, welch_df(c, t), ABSOLUTE, alpha
        )
    base = control.post.mean
    # Delta method for (adjusted_t - adjusted_c) / base, base being control's unadjusted mean,
    # with gbstats' linearisation (the control-post gradient uses treatment's unadjusted mean).
    v_treatment = t.variance / (t.n * base**2)
    g_post = -treatment.post.mean / base**2
    g_pre = theta / base
    v_control = (
        g_post**2 * control.post.variance
        + g_pre**2 * control.pre.variance
        + 2 * g_post * g_pre * control.covariance
    ) / control.n
    return _t_result(absolute / abs(base), v_treatment + v_control, welch_df(c, t), RELATIVE, alpha)


def _cuped_theta(
    control: RegressionAdjustedStatistic, treatment: RegressionAdjustedStatistic
) -> float:
    """The caller's fixed theta if given (it must be the same for both arms), else pooled."""
    given = {s.theta for s in (control, treatment) if s.theta is not None}
    if len(given) > 1:
        raise ValueError(f"control and treatment must share one CUPED theta, got {sorted(given)}")
    return given.pop() if given else pooled_theta(control, treatment)
