"""Time-to-goal statistics checked against lifelines (itself checked against R's ``survival``).

lifelines is the independent implementation here: ``closeloop.stats`` works from aggregated risk
tables, lifelines from one row per unit, so agreement also checks the aggregation.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test as lifelines_logrank
from lifelines.utils import median_survival_times, restricted_mean_survival_time

from closeloop.stats import (
    RiskTable,
    Status,
    kaplan_meier,
    logrank_test,
    restricted_mean,
    rmst_difference,
)

WALTONS = Path(__file__).resolve().parents[2] / "data" / "waltons.csv"
GROUPS = ("control", "miR-137")


def _waltons() -> dict[str, tuple[list[float], list[bool]]]:
    with WALTONS.open() as handle:
        rows = list(csv.DictReader(handle))
    return {
        group: (
            [float(row["T"]) for row in rows if row["group"] == group],
            [float(row["E"]) == 1 for row in rows if row["group"] == group],
        )
        for group in GROUPS
    }


def _random_sample(seed: int, size: int) -> tuple[list[float], list[bool]]:
    """Rounded durations (many ties), some at time 0, about 30% censored."""
    rng = np.random.default_rng(seed)
    durations = np.round(rng.exponential(10, size))
    observed = rng.random(size) < 0.7
    return durations.tolist(), observed.tolist()


SAMPLES = {
    **{f"waltons-{group}": sample for group, sample in _waltons().items()},
    "random-ties": _random_sample(3, 400),
    "random-small": _random_sample(5, 25),
    "all-events": ([1.0, 2.0, 2.0, 3.0, 5.0], [True] * 5),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_kaplan_meier_equals_lifelines(name: str) -> None:
    durations, observed = SAMPLES[name]
    km = kaplan_meier(RiskTable.from_durations(durations, observed))
    fitter = KaplanMeierFitter().fit(durations, observed)
    times = np.array(km.times)

    survival = fitter.survival_function_.loc[times].iloc[:, 0].to_numpy()
    bands = fitter.confidence_interval_.loc[times]
    assert np.allclose(km.survival, survival, rtol=0, atol=1e-12)
    assert np.allclose(km.ci_lower, bands.iloc[:, 0].to_numpy(), rtol=0, atol=1e-12)
    assert np.allclose(km.ci_upper, bands.iloc[:, 1].to_numpy(), rtol=0, atol=1e-12)

    expected_median = float(fitter.median_survival_time_)
    assert km.median == (expected_median if math.isfinite(expected_median) else None)
    # The median's interval: where each pointwise band crosses 0.5, as lifelines reports it.
    median_band = median_survival_times(fitter.confidence_interval_)
    assert km.median_ci.lower == float(median_band.iloc[0, 0])
    assert km.median_ci.upper == float(median_band.iloc[0, 1])


def test_waltons_medians_are_the_published_ones() -> None:
    """R: survfit(Surv(T, E) ~ group, conf.type = "log-log") on the waltons data."""
    samples = _waltons()
    control = kaplan_meier(RiskTable.from_durations(*samples["control"]))
    treated = kaplan_meier(RiskTable.from_durations(*samples["miR-137"]))
    assert (control.median, control.median_ci.lower, control.median_ci.upper) == (58, 56, 60)
    assert (treated.median, treated.median_ci.lower, treated.median_ci.upper) == (26, 19, 29)


def test_survival_at_is_a_right_continuous_step() -> None:
    km = kaplan_meier(RiskTable.from_durations([2.0, 4.0, 4.0, 6.0], [True, True, False, True]))
    assert km.survival_at(0.0) == 1.0
    assert km.survival_at(1.999) == 1.0
    assert km.survival_at(2.0) == pytest.approx(0.75)
    assert km.survival_at(5.0) == pytest.approx(0.75 * 2 / 3)
    assert km.survival_at(100.0) == 0.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_logrank_equals_lifelines(seed: int) -> None:
    a_durations, a_observed = _random_sample(seed, 150)
    b_durations, b_observed = _random_sample(seed + 100, 90)
    b_durations = [d * 1.3 for d in b_durations]
    ours = logrank_test(
        RiskTable.from_durations(a_durations, a_observed),
        RiskTable.from_durations(b_durations, b_observed),
    )
    theirs = lifelines_logrank(
        a_durations, b_durations, event_observed_A=a_observed, event_observed_B=b_observed
    )
    assert ours.chi2 == pytest.approx(theirs.test_statistic, rel=1e-10)
    assert ours.p_value == pytest.approx(theirs.p_value, rel=1e-8)
    assert ours.df == 1


def test_logrank_on_waltons_equals_lifelines() -> None:
    samples = _waltons()
    treated, control = samples["miR-137"], samples["control"]
    ours = logrank_test(RiskTable.from_durations(*treated), RiskTable.from_durations(*control))
    theirs = lifelines_logrank(
        treated[0], control[0], event_observed_A=treated[1], event_observed_B=control[1]
    )
    assert ours.chi2 == pytest.approx(theirs.test_statistic, rel=1e-10)
    # A p-value near 1e-28 must keep its magnitude (chi2.sf, not 1 - cdf).
    assert ours.p_value == pytest.approx(theirs.p_value, rel=1e-8)
    assert 0 < ours.p_value < 1e-20


@pytest.mark.parametrize("name", sorted(SAMPLES))
@pytest.mark.parametrize("tau", [0.5, 3.0, 30.0, 50.0, 80.0])
def test_restricted_mean_equals_lifelines(name: str, tau: float) -> None:
    durations, observed = SAMPLES[name]
    fitter = KaplanMeierFitter().fit(durations, observed)
    mean, variance = restricted_mean(RiskTable.from_durations(durations, observed), tau)
    assert mean == pytest.approx(restricted_mean_survival_time(fitter, t=tau), rel=1e-12)
    assert variance >= 0


def test_restricted_mean_variance_is_the_greenwood_plug_in() -> None:
    """Hand-computed: events at 1 (n=4) and 3 (n=2), a censoring at 2; tau = 4.

    S = 1 on [0,1), 3/4 on [1,3), 3/8 on [3,4); area = 1 + 1.5 + 0.375 = 2.875.
    A(1) = 1.5 + 0.375 = 1.875, A(3) = 0.375;
    variance = A(1)^2 * 1/(4*3) + A(3)^2 * 1/(2*1).
    """
    table = RiskTable.from_durations([1.0, 2.0, 3.0, 5.0], [True, False, True, False])
    mean, variance = restricted_mean(table, 4.0)
    assert mean == pytest.approx(2.875)
    assert variance == pytest.approx(1.875**2 / 12 + 0.375**2 / 2)


def test_rmst_difference_is_negative_when_treatment_reaches_the_goal_sooner() -> None:
    rng = np.random.default_rng(8)
    horizon = 30.0
    treated = np.minimum(rng.exponential(8, 600), horizon)
    control = np.minimum(rng.exponential(14, 600), horizon)
    result = rmst_difference(
        RiskTable.from_durations(treated.tolist(), (treated < horizon).tolist()),
        RiskTable.from_durations(control.tolist(), (control < horizon).tolist()),
        horizon,
    )
    assert result.difference == "absolute"
    assert result.estimate < 0
    assert result.status is Status.NEGATIVE
    assert result.ci.contains(result.estimate)
    assert 0 < result.p_value < 0.001
    z = result.estimate / result.se
    assert result.ci.width == pytest.approx(2 * 1.959963984540054 * result.se)
    assert result.p_value == pytest.approx(math.erfc(abs(z) / math.sqrt(2)))


def test_risk_table_from_counts_matches_durations_and_ignores_empty_cells() -> None:
    durations = [1.0, 1.0, 2.0, 3.0, 3.0, 3.0]
    observed = [True, False, True, True, True, False]
    counts = [
        (3.0, True, 2),
        (1.0, True, 1),
        (2.0, False, 0),  # an empty GROUP BY cell
        (1.0, False, 1),
        (2.0, True, 1),
        (3.0, False, 1),
        (9.0, True, 0),
    ]
    table = RiskTable.from_counts(counts)
    assert table == RiskTable.from_durations(durations, observed)
    assert table.times == (1.0, 2.0, 3.0)
    assert table.at_risk == (6, 4, 3)
    assert table.events == (1, 1, 2)
    assert table.censored == (1, 0, 1)
    assert table.n == 6


def test_risk_table_rejects_impossible_rows() -> None:
    with pytest.raises(ValueError, match="invalid risk-table row"):
        RiskTable.from_counts([(-1.0, True, 1)])
    with pytest.raises(ValueError, match="invalid risk-table row"):
        RiskTable.from_counts([(1.0, True, -2)])
    with pytest.raises(ValueError, match="same length"):
        RiskTable.from_durations([1.0, 2.0], [True])


def test_empty_risk_tables_give_empty_curves_not_warnings() -> None:
    empty = RiskTable.from_counts([(4.0, True, 0)])
    assert empty.n == 0
    km = kaplan_meier(empty)
    assert km.times == () and km.median is None
    assert math.isnan(km.median_ci.lower) and math.isnan(km.median_ci.upper)
    assert km.survival_at(3.0) == 1.0
    assert logrank_test(empty, empty).p_value == 1.0


def test_a_hand_built_table_with_nobody_at_risk_does_not_warn() -> None:
    table = RiskTable(times=(1.0, 2.0), at_risk=(2, 0), events=(2, 0), censored=(0, 0))
    km = kaplan_meier(table)
    assert km.survival == (0.0, 0.0)
    assert restricted_mean(table, 5.0)[0] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("treatment", "control", "message"),
    [
        ([(1.0, True, 1)], [(1.0, True, 5)], "at least 2 units"),
        ([], [(1.0, True, 5)], "at least 2 units"),
        # Nobody reached the goal in either arm: both restricted means are tau, exactly.
        ([(3.0, False, 5)], [(3.0, False, 5)], "no variance"),
    ],
)
def test_rmst_difference_degenerate_input_is_insufficient_data(
    treatment: list[tuple[float, bool, int]],
    control: list[tuple[float, bool, int]],
    message: str,
) -> None:
    result = rmst_difference(RiskTable.from_counts(treatment), RiskTable.from_counts(control), 5.0)
    assert result.status is Status.INSUFFICIENT_DATA
    assert math.isnan(result.estimate) and math.isnan(result.se) and math.isnan(result.p_value)
    assert message in result.message


def test_restricted_mean_needs_a_positive_horizon() -> None:
    with pytest.raises(ValueError, match="tau"):
        restricted_mean(RiskTable.from_durations([1.0], [True]), 0.0)
