"""Money outcomes that are mostly zero, read in two parts: who has any value, and how much.

Most accounts book no expansion revenue in an experiment's window, and the few that do book
amounts spread over orders of magnitude. Revenue per account mixes two questions a reader wants
apart: did more accounts buy (the share), and did the buyers spend more (the mean among positive
units)? Per arm, with n units of which k have a positive value, and S and Q the sum and sum of
squares of the (already capped) values:

    share s = k / n,  mean among positive m = S / k,  overall mean = S / n = s * m.

:func:`two_part_comparison` compares each:

* ``share``: :func:`~closeloop.stats.proportions.proportion_test` on k of n (Newcombe interval,
  score or Fisher test), absolute difference;
* ``mean_among_positive``: :func:`~closeloop.stats.frequentist.welch_test` on the k positive
  values; at least 2 per arm. This one is descriptive, not causal: if the treatment changes *who*
  buys, buyers in the two arms are different populations (Angrist & Pischke 2009, §3.4.2,
  "bad control");
* ``overall``: the difference of s * m by the delta method over the two parts,
  Var(s m) ~ m^2 Var(s) + s^2 Var(m). With the finite-sample estimates Var(s) = s(1 - s)/(n - 1)
  and s^2 Var(m) = (k - 1) v / (n (n - 1)) (v the sample variance of the positive values; about
  s^2 v / k), the two terms add up to exactly the sample variance of all n values over n, so the
  standard error, the Welch-Satterthwaite degrees of freedom and the t interval are those of
  Welch's test on the overall values, and the two terms say which part carries the uncertainty.
  Duan et al. (1983), "A comparison of alternative models for the demand for medical care",
  introduced the two-part model.

The cap (a percentile of the pooled values, applied in the warehouse) bounds the variance that a
single huge deal would otherwise contribute; :func:`capped_note` writes the sentence a report
prints about it.

>>> control = TwoPartStatistic(n=40, positives=4, positive_sum=8_000.0, positive_sum_squares=2.0e7)
>>> control.share, control.mean_among_positive, control.overall_mean
(0.1, 2000.0, 200.0)
>>> capped_note(99, 12_340, 3)
'value capped at the 99th percentile ($12,340); 3 units capped'
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from closeloop.stats.frequentist import welch_test
from closeloop.stats.proportions import proportion_test
from closeloop.stats.results import ComparisonResult, Interval, status_of
from closeloop.stats.statistics import ProportionStatistic, SampleMeanStatistic

ABSOLUTE = "absolute"
MINIMUM_POSITIVES = 2  # per arm, for the mean among positive units


@dataclass(frozen=True)
class TwoPartStatistic:
    """Additive sums for a non-negative value: units, units above 0, and their values' sums.

    Zeros add nothing to the sums, so ``positive_sum`` and ``positive_sum_squares`` are also the
    sums over all ``n`` units.
    """

    n: int
    positives: int
    positive_sum: float
    positive_sum_squares: float

    @classmethod
    def from_values(cls, values: npt.ArrayLike) -> TwoPartStatistic:
        """The sums of an array of non-negative values (for tests and small in-memory data)."""
        array = np.asarray(values, dtype=float)
        if np.any(array < 0) or not np.all(np.isfinite(array)):
            raise ValueError("two-part statistics need finite values of at least 0")
        positive = array[array > 0]
        return cls(
            array.size, positive.size, float(positive.sum()), float((positive * positive).sum())
        )

    @property
    def share(self) -> float:
        return self.positives / self.n if self.n else math.nan

    @property
    def mean_among_positive(self) -> float:
        return self.positive_sum / self.positives if self.positives else math.nan

    @property
    def overall_mean(self) -> float:
        return self.positive_sum / self.n if self.n else math.nan

    @property
    def any_value(self) -> ProportionStatistic:
        return ProportionStatistic(self.n, self.positives)

    @property
    def positive_values(self) -> SampleMeanStatistic:
        return SampleMeanStatistic(self.positives, self.positive_sum, self.positive_sum_squares)

    @property
    def overall_values(self) -> SampleMeanStatistic:
        return SampleMeanStatistic(self.n, self.positive_sum, self.positive_sum_squares)

    def variance_parts(self) -> tuple[float, float]:
        """The delta method's two terms of Var(overall mean): (from the share, from the amount).

        m^2 s (1 - s) / (n - 1) and (k - 1) v / (n (n - 1)); their sum is the sample variance of
        the n values divided by n. nan for fewer than 2 units.
        """
        n, k = self.n, self.positives
        if n < 2:
            return math.nan, math.nan
        # m^2 k (1 - s) = S^2 (1 - s) / k, which is 0 without positives.
        share_part = self.positive_sum**2 * (1 - k / n) / k if k else 0.0
        # (k - 1) v: the positive values' centred sum of squares, clamped against rounding.
        centred = self.positive_sum_squares - self.positive_sum**2 / k if k else 0.0
        denominator = n * (n - 1)
        return share_part / denominator, max(centred, 0.0) / denominator


@dataclass(frozen=True)
class TwoPartComparison:
    """Treatment versus control on the share with any value, the mean among those, and overall."""

    share: ComparisonResult
    mean_among_positive: ComparisonResult
    overall: ComparisonResult


def _count_problem(control: TwoPartStatistic, treatment: TwoPartStatistic) -> str:
    for name, arm in (("control", control), ("treatment", treatment)):
        if not 0 <= arm.positives <= arm.n:
            return f"{name} has {arm.positives} positive units of {arm.n}; expected 0 to {arm.n}"
        sums = (arm.positive_sum, arm.positive_sum_squares)
        if not all(math.isfinite(value) and value >= 0 for value in sums):
            return f"{name}'s sums of values are not finite and non-negative"
    return ""


def _mean_among_positive(
    control: TwoPartStatistic, treatment: TwoPartStatistic, alpha: float
) -> ComparisonResult:
    if min(control.positives, treatment.positives) < MINIMUM_POSITIVES:
        message = (
            f"the mean among units with a value needs at least {MINIMUM_POSITIVES} such units "
            f"per arm (control {control.positives}, treatment {treatment.positives})"
        )
        return ComparisonResult.insufficient(ABSOLUTE, alpha, message)
    return welch_test(control.positive_values, treatment.positive_values, alpha=alpha)


def overall_mean_comparison(
    control: TwoPartStatistic, treatment: TwoPartStatistic, *, alpha: float = 0.05
) -> ComparisonResult:
    """Treatment minus control on the overall mean (zeros included); see the module docstring.

    Same numbers as :func:`~closeloop.stats.frequentist.welch_test` on ``overall_values``,
    computed from the two parts.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    problem = _count_problem(control, treatment)
    if problem:
        return ComparisonResult.insufficient(ABSOLUTE, alpha, problem)
    if control.n < 2 or treatment.n < 2:
        message = f"each arm needs at least 2 units (control {control.n}, treatment {treatment.n})"
        return ComparisonResult.insufficient(ABSOLUTE, alpha, message)
    control_variance = sum(control.variance_parts())
    treatment_variance = sum(treatment.variance_parts())
    variance = control_variance + treatment_variance
    if not variance > 0:
        return ComparisonResult.insufficient(
            ABSOLUTE, alpha, "the value does not vary in either arm"
        )
    # Welch-Satterthwaite, from each arm's variance of its mean.
    df = variance**2 / (
        control_variance**2 / (control.n - 1) + treatment_variance**2 / (treatment.n - 1)
    )
    estimate = treatment.overall_mean - control.overall_mean
    se = math.sqrt(variance)
    quantile = float(sps.t.isf(alpha / 2, df))
    ci = Interval(estimate - quantile * se, estimate + quantile * se)
    p_value = float(2 * sps.t.sf(abs(estimate) / se, df))
    return ComparisonResult(ABSOLUTE, estimate, ci, se, p_value, df, alpha, status_of(ci))


def two_part_comparison(
    control: TwoPartStatistic, treatment: TwoPartStatistic, *, alpha: float = 0.05
) -> TwoPartComparison:
    """Share with any value, mean among those, and overall mean: treatment minus control.

    >>> control = TwoPartStatistic.from_values([0] * 36 + [900, 1_500, 2_400, 3_200])
    >>> treatment = TwoPartStatistic.from_values([0] * 136 + [1_000, 2_000] * 12)
    >>> result = two_part_comparison(control, treatment)
    >>> round(result.overall.estimate, 2), result.share.status.value
    (25.0, 'inconclusive')
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    problem = _count_problem(control, treatment)
    if problem:
        insufficient = ComparisonResult.insufficient(ABSOLUTE, alpha, problem)
        return TwoPartComparison(insufficient, insufficient, insufficient)
    return TwoPartComparison(
        share=proportion_test(control.any_value, treatment.any_value, alpha=alpha),
        mean_among_positive=_mean_among_positive(control, treatment, alpha),
        overall=overall_mean_comparison(control, treatment, alpha=alpha),
    )


def _ordinal(number: float) -> str:
    text = f"{number:g}"
    if number != int(number):
        return f"{text}th"
    whole = int(number)
    if whole % 100 in (11, 12, 13):
        return f"{text}th"
    return text + {1: "st", 2: "nd", 3: "rd"}.get(whole % 10, "th")


def _money(amount: float, currency: str) -> str:
    if amount == round(amount) or abs(amount) >= 100:
        return f"{currency}{amount:,.0f}"
    return f"{currency}{amount:,.2f}"


def capped_note(percentile: float, cap: float, capped_units: int, *, currency: str = "$") -> str:
    """The sentence a report prints about the cap on a value (``percentile`` in percent).

    >>> capped_note(99.5, 830.25, 1)
    'value capped at the 99.5th percentile ($830); 1 unit capped'
    >>> capped_note(95, 12.5, 0)
    'value capped at the 95th percentile ($12.50); no units capped'
    """
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100] (in percent), got {percentile}")
    if capped_units < 0:
        raise ValueError(f"capped_units must be at least 0, got {capped_units}")
    if capped_units == 0:
        units = "no units"
    else:
        units = f"{capped_units:,} unit{'s' if capped_units != 1 else ''}"
    return (
        f"value capped at the {_ordinal(percentile)} percentile ({_money(cap, currency)}); "
        f"{units} capped"
    )
