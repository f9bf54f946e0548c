"""Two completion rates at the sample sizes customer-success teams have: 20-400 accounts per arm.

Welch's interval for a difference of proportions uses p(1-p)/n, which is 0 in an arm with no
completions; at 20 vs 80 accounts and a 5% rate it covers the truth 79% of the time. Here instead:

* **absolute lift** (treatment minus control): Newcombe's hybrid score interval, built from each
  arm's Wilson score interval (Newcombe 1998, method 10). Its exact coverage, enumerated over
  every outcome, is at least 94.8% on the grid of tests/unit/stats/test_stats_proportions.py
  (holdout/treated 20/80 to 2,000/8,000, base rates 2-30%, lifts 0 and +5 pp);
* **relative lift** (treatment / control - 1): the log risk-ratio interval with 0.5 added to every
  cell (statsmodels' ``log-adjusted``), defined with an arm at zero completions;
* **p-value**: the score test (the pooled two-proportion z-test) when every expected cell count
  is at least 5, else Fisher's exact test. A result is called (positive or negative) only when
  the interval excludes 0 *and* the p-value is below alpha, so the two never contradict.

The interval functions are vectorised (numpy arrays of counts) so tests can enumerate every
outcome of a design exactly.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
from scipy import stats as sps

from closeloop.stats.normal import two_sided_p, two_sided_z
from closeloop.stats.results import ComparisonResult, Interval, Status, status_of
from closeloop.stats.statistics import ProportionStatistic

ABSOLUTE = "absolute"
RELATIVE = "relative"
MINIMUM_EXPECTED = 5.0  # expected cell count under the null below which the test is exact
MINIMUM_EVENTS = 5  # completions, and non-completions, in both arms together before calling

ArrayOrFloat = TypeVar("ArrayOrFloat", float, np.ndarray)


def wilson_bounds(
    successes: ArrayOrFloat, n: ArrayOrFloat, z: float
) -> tuple[ArrayOrFloat, ArrayOrFloat]:
    """Wilson's score interval for ``successes`` of ``n`` (elementwise on arrays)."""
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return centre - half, centre + half


def newcombe_bounds(
    control_successes: ArrayOrFloat,
    control_n: ArrayOrFloat,
    treatment_successes: ArrayOrFloat,
    treatment_n: ArrayOrFloat,
    z: float,
) -> tuple[ArrayOrFloat, ArrayOrFloat]:
    """Newcombe's hybrid score interval for treatment minus control (elementwise on arrays)."""
    pc, pt = control_successes / control_n, treatment_successes / treatment_n
    lc, uc = wilson_bounds(control_successes, control_n, z)
    lt, ut = wilson_bounds(treatment_successes, treatment_n, z)
    difference = pt - pc
    lower = difference - np.sqrt((pt - lt) ** 2 + (uc - pc) ** 2)
    upper = difference + np.sqrt((ut - pt) ** 2 + (pc - lc) ** 2)
    return lower, upper


def _z(alpha: float) -> float:
    return two_sided_z(alpha)


def proportion_p_value(control: ProportionStatistic, treatment: ProportionStatistic) -> float:
    """Two-sided p-value of equal rates: the score test, or Fisher's exact test when an expected
    cell count is below MINIMUM_EXPECTED."""
    n_c, n_t = control.n, treatment.n
    successes = control.successes + treatment.successes
    failures = n_c + n_t - successes
    if successes == 0 or failures == 0:
        return 1.0  # nobody (or everybody) completed: no evidence of a difference
    expected = min(n_c, n_t) * min(successes, failures) / (n_c + n_t)
    if expected < MINIMUM_EXPECTED:
        table = [
            [treatment.successes, n_t - treatment.successes],
            [control.successes, n_c - control.successes],
        ]
        return float(sps.fisher_exact(table, alternative="two-sided").pvalue)
    pooled = successes / (n_c + n_t)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_t))
    statistic = abs(treatment.mean - control.mean) / se
    return two_sided_p(statistic)


def minimum_events_problem(control: ProportionStatistic, treatment: ProportionStatistic) -> str:
    """Why a comparison of rates is not called, else ''.

    At least MINIMUM_EVENTS completions and as many non-completions in the two arms together:
    with fewer, no difference is measurable. The rule is on the pooled margins, not per arm, so
    the clearest effects (a holdout where nobody completed) are still called.
    """
    successes = control.successes + treatment.successes
    failures = control.n + treatment.n - successes
    if successes >= MINIMUM_EVENTS and failures >= MINIMUM_EVENTS:
        return ""
    kind = "completions" if successes < MINIMUM_EVENTS else "non-completions"
    found = successes if successes < MINIMUM_EVENTS else failures
    return f"only {found} {kind} in both arms together; at least {MINIMUM_EVENTS} are needed"


def proportion_test(
    control: ProportionStatistic,
    treatment: ProportionStatistic,
    *,
    difference: str = ABSOLUTE,
    alpha: float = 0.05,
) -> ComparisonResult:
    """Treatment's completion rate minus (or relative to) control's; see the module docstring.

    >>> result = proportion_test(ProportionStatistic(60, 0), ProportionStatistic(240, 7))
    >>> result.status.value, round(result.p_value, 2)
    ('inconclusive', 0.35)
    """
    if difference not in (ABSOLUTE, RELATIVE):
        raise ValueError(f"difference must be {ABSOLUTE!r} or {RELATIVE!r}, got {difference!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    if control.n < 1 or treatment.n < 1:
        return ComparisonResult.insufficient(difference, alpha, "an arm has no units")
    problem = minimum_events_problem(control, treatment)
    if problem:
        return ComparisonResult.insufficient(difference, alpha, problem)
    z = _z(alpha)
    pc, pt = control.mean, treatment.mean
    p_value = proportion_p_value(control, treatment)
    if difference == ABSOLUTE:
        lower, upper = newcombe_bounds(
            float(control.successes), float(control.n), float(treatment.successes),
            float(treatment.n), z,
        )  # fmt: skip
        estimate = pt - pc
        se = math.sqrt(pt * (1 - pt) / treatment.n + pc * (1 - pc) / control.n)
    else:
        if control.successes == 0:
            return ComparisonResult.insufficient(
                difference, alpha, "no control unit completed, so a relative lift is undefined"
            )
        estimate = pt / pc - 1
        a, b = treatment.successes + 0.5, control.successes + 0.5
        log_ratio = math.log((a / (treatment.n + 0.5)) / (b / (control.n + 0.5)))
        se = math.sqrt(1 / a - 1 / (treatment.n + 0.5) + 1 / b - 1 / (control.n + 0.5))
        lower, upper = math.exp(log_ratio - z * se) - 1, math.exp(log_ratio + z * se) - 1
    ci = Interval(float(lower), float(upper))
    status = status_of(ci)
    message = ""
    if status is not Status.INCONCLUSIVE and p_value > alpha:
        status = Status.INCONCLUSIVE
        message = "the interval excludes 0 but the exact test does not reject: not called"
    return ComparisonResult(difference, estimate, ci, se, p_value, math.nan, alpha, status, message)
