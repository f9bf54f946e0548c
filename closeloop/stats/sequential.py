"""Always-valid confidence sequences: look at a running job every day without inflating errors.

The asymptotic confidence sequence of Waudby-Smith et al. (arXiv 2103.06476v7, eq. 9), as GrowthBook
uses it: around the same point estimate as the fixed-horizon test, a wider interval whose coverage
holds simultaneously at every sample size. ``tuning`` (N*) is the sample size at which the sequence
is tightest; pick the total enrollment you expect.
"""

from __future__ import annotations

import math

from scipy.optimize import brentq

from closeloop.stats.frequentist import ABSOLUTE, welch_test
from closeloop.stats.results import ComparisonResult, Interval, status_of
from closeloop.stats.statistics import Statistic

DEFAULT_TUNING = 5000
_SMALLEST_P = 1e-300


def confidence_sequence(
    control: Statistic,
    treatment: Statistic,
    *,
    difference: str = ABSOLUTE,
    alpha: float = 0.05,
    tuning: float = DEFAULT_TUNING,
) -> ComparisonResult:
    """An always-valid interval for treatment minus control (or the relative lift).

    Same estimate and standard error as :func:`welch_test`; the interval is wider, and its
    ``p_value`` is the smallest alpha at which the sequence excludes zero, so ``p_value < alpha``
    exactly when ``status`` is positive or negative.
    """
    if not tuning > 0:
        raise ValueError(
            f"tuning (the sample size where the sequence is tightest) must be > 0, got {tuning}"
        )
    fixed = welch_test(control, treatment, difference=difference, alpha=alpha)
    if not math.isfinite(fixed.se):
        return fixed
    n = control.n + treatment.n
    s2 = fixed.se**2 * n
    half = _half_width(s2, n, alpha, tuning)
    ci = Interval(fixed.estimate - half, fixed.estimate + half)
    # The always-valid p-value is the smallest alpha whose sequence excludes zero.
    p_value = _always_valid_p(fixed.estimate, s2, n, tuning)
    return ComparisonResult(
        difference,
        fixed.estimate,
        ci,
        fixed.se,
        p_value,
        math.inf,
        alpha,
        status_of(ci),
        "always-valid confidence sequence: safe to look at any time",
    )


def _half_width(s2: float, n: int, alpha: float, tuning: float) -> float:
    """Half-width of the asymptotic confidence sequence after ``n`` units (eq. 9)."""
    rho = math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning)
    return math.sqrt(s2) * math.sqrt(
        2 * (n * rho**2 + 1) / (n**2 * rho**2) * math.log(math.sqrt(n * rho**2 + 1) / alpha)
    )


def _always_valid_p(estimate: float, s2: float, n: int, tuning: float) -> float:
    """The smallest alpha whose sequence excludes zero: a root in log alpha (Brent's method)."""

    def margin(log_alpha: float) -> float:
        return abs(estimate) - _half_width(s2, n, math.exp(log_alpha), tuning)

    # The half-width shrinks as alpha grows, so the margin increases with log alpha.
    low, high = math.log(_SMALLEST_P), math.log1p(-1e-12)
    if margin(high) <= 0:
        return 1.0
    if margin(low) > 0:
        return _SMALLEST_P
    return float(math.exp(brentq(margin, low, high, xtol=1e-12)))
