"""closeloop.stats beyond the reference cases: lifelines agreement, degenerate input, simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test as lifelines_logrank

from closeloop.stats import (
    ProportionStatistic,
    RiskTable,
    SampleMeanStatistic,
    Status,
    adjust_p_values,
    confidence_sequence,
    kaplan_meier,
    logrank_test,
    minimum_detectable_effect,
    nps,
    required_sample_size,
    rmst_difference,
    srm_test,
    welch_test,
)


def test_kaplan_meier_matches_lifelines_on_random_censored_data() -> None:
    rng = np.random.default_rng(3)
    durations = np.round(rng.exponential(10, 400), 1)
    observed = rng.random(400) < 0.7
    km = kaplan_meier(RiskTable.from_durations(durations.tolist(), observed.tolist()))
    fitter = KaplanMeierFitter().fit(durations, observed)
    times = np.array(km.times)
    assert np.allclose(km.survival, fitter.survival_function_at_times(times).to_numpy())
    bands = fitter.confidence_interval_survival_function_.loc[times]
    assert np.allclose(km.ci_lower, bands.iloc[:, 0].to_numpy(), atol=1e-9)
    assert np.allclose(km.ci_upper, bands.iloc[:, 1].to_numpy(), atol=1e-9)
    assert km.median == fitter.median_survival_time_


def test_logrank_matches_lifelines() -> None:
    rng = np.random.default_rng(4)
    a, b = np.round(rng.exponential(8, 300)), np.round(rng.exponential(10, 250))
    ea, eb = rng.random(300) < 0.8, rng.random(250) < 0.8
    ours = logrank_test(RiskTable.from_durations(a, ea), RiskTable.from_durations(b, eb))
    theirs = lifelines_logrank(a, b, event_observed_A=ea, event_observed_B=eb)
    assert ours.chi2 == pytest.approx(theirs.test_statistic)
    assert ours.p_value == pytest.approx(theirs.p_value)


def test_risk_tables_from_counts_equal_those_from_durations() -> None:
    durations = [1.0, 1.0, 2.0, 3.0, 3.0, 3.0]
    observed = [True, False, True, True, True, False]
    counts = [(1.0, True, 1), (1.0, False, 1), (2.0, True, 1), (3.0, True, 2), (3.0, False, 1)]
    assert RiskTable.from_counts(counts) == RiskTable.from_durations(durations, observed)


@pytest.mark.parametrize(
    ("control", "treatment"),
    [
        (ProportionStatistic(0, 0), ProportionStatistic(10, 3)),
        (ProportionStatistic(1, 1), ProportionStatistic(10, 3)),
        (ProportionStatistic(10, 0), ProportionStatistic(10, 0)),
        (SampleMeanStatistic(5, 10.0, 20.0), SampleMeanStatistic(5, 10.0, 20.0)),
    ],
)
def test_degenerate_input_is_insufficient_data_not_an_error(
    control: ProportionStatistic | SampleMeanStatistic,
    treatment: ProportionStatistic | SampleMeanStatistic,
) -> None:
    for difference in ("absolute", "relative"):
        result = welch_test(control, treatment, difference=difference)
        assert result.status is Status.INSUFFICIENT_DATA
        assert math.isnan(result.estimate)
        assert result.message


def test_relative_lift_on_a_zero_control_is_insufficient() -> None:
    result = welch_test(
        ProportionStatistic(100, 0), ProportionStatistic(100, 5), difference="relative"
    )
    assert result.status is Status.INSUFFICIENT_DATA
    assert "control mean is 0" in result.message


def test_tiny_p_values_do_not_underflow_to_zero() -> None:
    result = welch_test(ProportionStatistic(100_000, 10_000), ProportionStatistic(100_000, 13_000))
    assert 0 < result.p_value < 1e-50


def test_rmst_difference_needs_two_units_per_arm() -> None:
    one = RiskTable.from_durations([1.0], [True])
    assert rmst_difference(one, one, 5.0).status is Status.INSUFFICIENT_DATA


def test_srm_and_adjustment_edges() -> None:
    assert not srm_test([0, 0], [0.5, 0.5]).mismatch
    assert adjust_p_values([]) == ()
    with pytest.raises(ValueError, match="unknown adjustment"):
        adjust_p_values([0.1], method="magic")


def test_power_and_sample_size_agree() -> None:
    n = required_sample_size(0.2, 0.03, holdout_fraction=0.5)
    mde = minimum_detectable_effect(n // 2, n // 2, 0.2)
    assert 0.027 < mde < 0.033
    assert nps(0, 0, 0).score != nps(0, 0, 0).score  # NaN for no answers


def _coverage(rng: np.random.Generator, runs: int, n: int, p: float, lift: float) -> float:
    covered = 0
    control = rng.binomial(n, p, runs)
    treatment = rng.binomial(n, p + lift, runs)
    for c, t in zip(control, treatment, strict=True):
        result = welch_test(ProportionStatistic(n, int(c)), ProportionStatistic(n, int(t)))
        covered += result.ci.lower <= lift <= result.ci.upper
    return covered / runs


def test_welch_interval_covers_the_truth_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(2024)
    coverage = _coverage(rng, 3000, 2000, 0.2, 0.03)
    assert 0.935 <= coverage <= 0.965


def test_a_a_false_positive_rate() -> None:
    rng = np.random.default_rng(7)
    coverage = _coverage(rng, 3000, 2000, 0.2, 0.0)
    assert 1 - coverage <= 0.06


@pytest.mark.slow
def test_daily_peeking_is_safe_with_confidence_sequences_and_not_without() -> None:
    """30 daily looks at an A/A test: naive peeking inflates false positives, sequences do not."""
    rng = np.random.default_rng(11)
    runs, days, daily, p = 600, 30, 100, 0.2
    naive = sequential = 0
    for _ in range(runs):
        c = np.cumsum(rng.random((days, daily)) < p, axis=None).reshape(days, daily)[:, -1]
        t = np.cumsum(rng.random((days, daily)) < p, axis=None).reshape(days, daily)[:, -1]
        looks = [
            (
                ProportionStatistic(daily * (d + 1), int(c[d])),
                ProportionStatistic(daily * (d + 1), int(t[d])),
            )
            for d in range(days)
        ]
        naive += any(welch_test(a, b).p_value < 0.05 for a, b in looks)
        sequential += any(
            confidence_sequence(a, b, tuning=days * daily * 2).status is not Status.INCONCLUSIVE
            for a, b in looks
        )
    assert sequential / runs <= 0.05
    assert naive / runs > 0.1
