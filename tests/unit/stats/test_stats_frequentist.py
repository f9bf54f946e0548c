"""Welch, ratio, CUPED and confidence sequences checked against raw-data computations.

The reference cases (tests/unit/test_stats_reference.py) pin gbstats' published numbers; here each
test builds the sufficient statistics from simulated unit-level data and compares with scipy or
numpy run on the units themselves, so the sums-to-moments algebra is checked as well.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from closeloop.stats import (
    ComparisonResult,
    Interval,
    ProportionStatistic,
    RatioStatistic,
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
    Statistic,
    Status,
    confidence_sequence,
    cuped_test,
    pooled_theta,
    welch_test,
)
from closeloop.stats.results import status_of


def _mean_statistic(values: np.ndarray) -> SampleMeanStatistic:
    return SampleMeanStatistic(len(values), float(values.sum()), float((values**2).sum()))


def _adjusted_statistic(post: np.ndarray, pre: np.ndarray) -> RegressionAdjustedStatistic:
    return RegressionAdjustedStatistic(
        n=len(post),
        post_sum=float(post.sum()),
        post_sum_squares=float((post**2).sum()),
        pre_sum=float(pre.sum()),
        pre_sum_squares=float((pre**2).sum()),
        post_pre_sum_products=float((post * pre).sum()),
    )


def _ratio_statistic(numerator: np.ndarray, denominator: np.ndarray) -> RatioStatistic:
    return RatioStatistic(
        n=len(numerator),
        m_sum=float(numerator.sum()),
        m_sum_squares=float((numerator**2).sum()),
        d_sum=float(denominator.sum()),
        d_sum_squares=float((denominator**2).sum()),
        md_sum_products=float((numerator * denominator).sum()),
    )


def _revenue(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    return np.asarray(rng.gamma(2.0, scale, n))


def test_interval_and_status() -> None:
    interval = Interval(-1.0, 3.0)
    assert interval.width == 4.0
    assert interval.contains(-1.0) and interval.contains(3.0) and not interval.contains(3.1)
    assert status_of(Interval(0.1, 2.0)) is Status.POSITIVE
    assert status_of(Interval(-2.0, -0.1)) is Status.NEGATIVE
    assert status_of(Interval(-2.0, 0.0)) is Status.INCONCLUSIVE
    assert Status.INSUFFICIENT_DATA == "insufficient_data"


def test_statistics_are_the_raw_moments() -> None:
    values = np.array([1.0, 4.0, 4.0, 7.5])
    statistic = _mean_statistic(values)
    assert statistic.mean == pytest.approx(values.mean())
    assert statistic.variance == pytest.approx(values.var(ddof=1))
    proportion = ProportionStatistic(n=8, successes=2)
    assert (proportion.sum, proportion.mean, proportion.variance) == (2.0, 0.25, 0.1875)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_welch_absolute_equals_scipy_on_the_units(seed: int) -> None:
    rng = np.random.default_rng(seed)
    control, treatment = _revenue(rng, 300, 10.0), _revenue(rng, 250, 11.0)
    result = welch_test(_mean_statistic(control), _mean_statistic(treatment), alpha=0.1)
    reference = sps.ttest_ind(treatment, control, equal_var=False)
    interval = reference.confidence_interval(confidence_level=0.9)
    assert result.estimate == pytest.approx(treatment.mean() - control.mean(), rel=1e-10)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-8)
    assert result.df == pytest.approx(reference.df, rel=1e-8)
    assert result.ci.lower == pytest.approx(interval.low, rel=1e-8)
    assert result.ci.upper == pytest.approx(interval.high, rel=1e-8)
    assert result.alpha == 0.1
    assert result.message == ""


def test_welch_relative_is_the_delta_method() -> None:
    control, treatment = ProportionStatistic(4000, 800), ProportionStatistic(4100, 902)
    result = welch_test(control, treatment, difference="relative")
    mc, mt = control.mean, treatment.mean
    variance = treatment.variance / (treatment.n * mc**2) + control.variance * mt**2 / (
        control.n * mc**4
    )
    assert result.difference == "relative"
    assert result.estimate == pytest.approx((mt - mc) / mc)
    assert result.se == pytest.approx(math.sqrt(variance))
    assert result.status is Status.POSITIVE
    assert result.p_value < 0.05


def test_welch_result_status_follows_the_interval() -> None:
    down = welch_test(ProportionStatistic(5000, 1250), ProportionStatistic(5000, 1000))
    assert down.status is Status.NEGATIVE and down.ci.upper < 0
    flat = welch_test(ProportionStatistic(500, 100), ProportionStatistic(500, 101))
    assert flat.status is Status.INCONCLUSIVE and flat.ci.contains(0.0)


def test_ratio_statistic_is_the_delta_method_on_units() -> None:
    rng = np.random.default_rng(4)
    sessions = rng.poisson(5, 2000) + 1.0
    revenue = sessions * rng.gamma(2.0, 1.5, 2000)
    statistic = _ratio_statistic(revenue, sessions)
    mean_m, mean_d = revenue.mean(), sessions.mean()
    covariance = np.cov(revenue, sessions, ddof=1)
    gradient = np.array([1 / mean_d, -mean_m / mean_d**2])
    assert statistic.mean == pytest.approx(revenue.sum() / sessions.sum())
    assert statistic.variance == pytest.approx(gradient @ covariance @ gradient, rel=1e-9)


@pytest.mark.parametrize("seed", [11, 12])
def test_cuped_is_welch_on_the_adjusted_units(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pre_c, pre_t = _revenue(rng, 800, 10.0), _revenue(rng, 700, 10.0)
    post_c = 0.8 * pre_c + _revenue(rng, 800, 3.0)
    post_t = 0.8 * pre_t + _revenue(rng, 700, 3.3)
    control, treatment = _adjusted_statistic(post_c, pre_c), _adjusted_statistic(post_t, pre_t)

    pre, post = np.concatenate([pre_c, pre_t]), np.concatenate([post_c, post_t])
    theta = np.cov(post, pre, ddof=1)[0, 1] / pre.var(ddof=1)
    assert pooled_theta(control, treatment) == pytest.approx(theta, rel=1e-9)

    result = cuped_test(control, treatment)
    reference = sps.ttest_ind(post_t - theta * pre_t, post_c - theta * pre_c, equal_var=False)
    assert result.estimate == pytest.approx(reference.statistic * result.se, rel=1e-9)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-7)
    assert result.df == pytest.approx(reference.df, rel=1e-9)

    unadjusted = welch_test(_mean_statistic(post_c), _mean_statistic(post_t))
    assert result.se < 0.5 * unadjusted.se  # the pre-period explains most of the variance


def test_cuped_uses_a_given_theta_and_refuses_two_different_ones() -> None:
    rng = np.random.default_rng(5)
    pre = _revenue(rng, 400, 10.0)
    post = pre + _revenue(rng, 400, 2.0)
    base = _adjusted_statistic(post[:200], pre[:200])
    other = _adjusted_statistic(post[200:], pre[200:])
    fixed = cuped_test(
        RegressionAdjustedStatistic(**{**base.__dict__, "theta": 0.0}),
        RegressionAdjustedStatistic(**{**other.__dict__, "theta": 0.0}),
    )
    plain = welch_test(_mean_statistic(post[:200]), _mean_statistic(post[200:]))
    assert fixed.estimate == pytest.approx(plain.estimate)
    assert fixed.se == pytest.approx(plain.se)
    with pytest.raises(ValueError, match="share one CUPED theta"):
        cuped_test(
            RegressionAdjustedStatistic(**{**base.__dict__, "theta": 0.5}),
            RegressionAdjustedStatistic(**{**other.__dict__, "theta": 0.7}),
        )


def test_cuped_relative_only_needs_the_unadjusted_control_mean() -> None:
    """The adjusted control mean can be exactly 0; the relative lift divides by the raw one."""
    control = RegressionAdjustedStatistic(4, 4.0, 6.0, 4.0, 6.0, 6.0, theta=1.0)
    treatment = RegressionAdjustedStatistic(4, 6.0, 11.0, 4.0, 6.0, 7.0, theta=1.0)
    result = cuped_test(control, treatment, difference="relative")
    assert result.status is not Status.INSUFFICIENT_DATA
    assert result.estimate == pytest.approx((6.0 - 4.0) / 4 / 1.0)


@pytest.mark.parametrize("difference", ["absolute", "relative"])
def test_confidence_sequence_is_wider_and_its_p_value_matches_its_interval(
    difference: str,
) -> None:
    rng = np.random.default_rng(6)
    for _ in range(200):
        n_control, n_treatment = (int(x) for x in rng.integers(50, 3000, 2))
        p = float(rng.uniform(0.05, 0.5))
        lift = float(rng.choice([0.0, 0.02, 0.05]))
        control = ProportionStatistic(n_control, int(rng.binomial(n_control, p)))
        treatment = ProportionStatistic(n_treatment, int(rng.binomial(n_treatment, p + lift)))
        fixed = welch_test(control, treatment, difference=difference)
        sequence = confidence_sequence(control, treatment, difference=difference, tuning=2000)
        assert sequence.estimate == fixed.estimate
        assert sequence.se == fixed.se
        assert sequence.ci.lower < fixed.ci.lower and fixed.ci.upper < sequence.ci.upper
        assert sequence.p_value >= fixed.p_value
        decisive = sequence.status in (Status.POSITIVE, Status.NEGATIVE)
        assert decisive == (sequence.p_value < sequence.alpha)


def test_confidence_sequence_p_value_for_an_overwhelming_effect() -> None:
    """Tiny always-valid p-values are found in log space: no underflow, no math domain error."""
    result = confidence_sequence(
        ProportionStatistic(100_000, 10_000), ProportionStatistic(100_000, 30_000)
    )
    assert result.status is Status.POSITIVE
    assert 0 < result.p_value < 1e-200


DEGENERATE: dict[str, tuple[Statistic, Statistic]] = {
    "empty-arms": (ProportionStatistic(0, 0), ProportionStatistic(0, 0)),
    "one-unit": (SampleMeanStatistic(1, 3.0, 9.0), SampleMeanStatistic(50, 100.0, 400.0)),
    "no-variance": (ProportionStatistic(40, 40), ProportionStatistic(40, 40)),
    "constant-means": (SampleMeanStatistic(3, 0.3, 0.03), SampleMeanStatistic(3, 0.3, 0.03)),
    "ratio-zero-denominator": (
        RatioStatistic(5, 1.0, 1.0, 0.0, 0.0, 0.0),
        RatioStatistic(5, 1.0, 1.0, 2.0, 2.0, 1.0),
    ),
    "cuped-one-unit": (
        RegressionAdjustedStatistic(1, 1.0, 1.0, 1.0, 1.0, 1.0),
        RegressionAdjustedStatistic(1, 1.0, 1.0, 1.0, 1.0, 1.0),
    ),
}


def _assert_insufficient(result: ComparisonResult) -> None:
    assert result.status is Status.INSUFFICIENT_DATA
    for value in (result.estimate, result.se, result.p_value, result.ci.lower, result.ci.upper):
        assert math.isnan(value)
    assert result.message


@pytest.mark.parametrize("difference", ["absolute", "relative"])
@pytest.mark.parametrize("name", sorted(DEGENERATE))
def test_degenerate_input_is_insufficient_data(name: str, difference: str) -> None:
    control, treatment = DEGENERATE[name]
    _assert_insufficient(welch_test(control, treatment, difference=difference))
    _assert_insufficient(confidence_sequence(control, treatment, difference=difference))
    if isinstance(control, RegressionAdjustedStatistic) and isinstance(
        treatment, RegressionAdjustedStatistic
    ):
        _assert_insufficient(cuped_test(control, treatment, difference=difference))


def test_relative_lift_over_a_zero_control_mean_is_insufficient_data() -> None:
    control = RegressionAdjustedStatistic(10, 0.0, 0.0, 5.0, 5.0, 0.0)
    treatment = RegressionAdjustedStatistic(10, 3.0, 3.0, 5.0, 5.0, 2.0)
    for result in (
        welch_test(control, treatment, difference="relative"),
        cuped_test(control, treatment, difference="relative"),
    ):
        _assert_insufficient(result)
        assert "control mean is 0" in result.message


def test_one_constant_arm_is_still_a_valid_comparison() -> None:
    result = welch_test(ProportionStatistic(300, 0), ProportionStatistic(300, 12))
    assert result.status is Status.POSITIVE
    assert result.df == pytest.approx(299.0)


def test_programming_errors_raise() -> None:
    a, b = ProportionStatistic(10, 2), ProportionStatistic(10, 3)
    with pytest.raises(ValueError, match="difference"):
        welch_test(a, b, difference="ratio")
    with pytest.raises(ValueError, match="alpha"):
        welch_test(a, b, alpha=1.5)
    with pytest.raises(ValueError, match="tuning"):
        confidence_sequence(a, b, tuning=0)
