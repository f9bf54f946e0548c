"""Two-part read-out of mostly-zero money values: identities, agreement with Welch, coverage.

Coverage is measured by seeded simulation. Each replicate draws a control arm of 40 and a
treatment arm of 160 accounts; each account has a value with probability ``share`` (10% in
control), drawn from a lognormal with median $2,000 and log-sd ``sigma``; the estimand is the
true difference of overall means, (share_t - share_c) * exp(log(2000) + sigma^2 / 2). With 6,000
replicates the Monte Carlo standard error of a coverage near 0.9 is 0.004.

Measured (this seed): 0.892 in the A/A design with sigma = 1 (about 4 accounts with a value in
control), 0.934 with treatment at 15%, 0.931 with constant amounts (sigma = 0), and 0.938 at 100
vs 400 with sigma = 0.5. The overall interval is Welch's on the overall values by construction,
and Welch's interval undercovers on skewed values with few non-zero units: the 0.92 target holds
at 100 vs 400 but not in the A/A design at 40 vs 160 with lognormal amounts, which is recorded as
a strict xfail below (40,000 replicates outside the tests: 0.889).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from closeloop.stats.frequentist import welch_test
from closeloop.stats.proportions import proportion_test
from closeloop.stats.results import Status
from closeloop.stats.value_parts import (
    TwoPartStatistic,
    capped_note,
    overall_mean_comparison,
    two_part_comparison,
)

MEDIAN_VALUE = 2_000.0
REPLICATES = 6_000


def _arm(rng: np.random.Generator, n: int, share: float, sigma: float) -> np.ndarray:
    has_value = rng.random(n) < share
    return np.where(has_value, rng.lognormal(math.log(MEDIAN_VALUE), sigma, n), 0.0)


def test_overall_mean_is_share_times_mean_among_positive() -> None:
    rng = np.random.default_rng(5)
    values = _arm(rng, 160, 0.12, 1.0)
    arm = TwoPartStatistic.from_values(values)
    assert arm.n == 160 and arm.positives == int((values > 0).sum())
    assert arm.overall_mean == pytest.approx(values.mean(), rel=1e-12)
    assert arm.share * arm.mean_among_positive == pytest.approx(arm.overall_mean, rel=1e-12)
    assert arm.mean_among_positive == pytest.approx(values[values > 0].mean(), rel=1e-12)
    assert arm.overall_values.variance == pytest.approx(values.var(ddof=1), rel=1e-10)
    # The delta method's two terms add up to the variance of the overall mean.
    share_part, amount_part = arm.variance_parts()
    assert share_part + amount_part == pytest.approx(values.var(ddof=1) / 160, rel=1e-10)
    assert share_part > 0 and amount_part > 0


def test_variance_parts_approach_the_textbook_delta_method_at_large_n() -> None:
    # m^2 s(1 - s)/n + s v/n, with plain plug-ins; the finite-sample terms differ by O(1/k).
    rng = np.random.default_rng(6)
    arm = TwoPartStatistic.from_values(_arm(rng, 20_000, 0.1, 1.0))
    s, m, v = arm.share, arm.mean_among_positive, arm.positive_values.variance
    textbook = (m * m * s * (1 - s) + s * v) / arm.n
    assert sum(arm.variance_parts()) == pytest.approx(textbook, rel=2e-3)


def _random_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(11)
    pairs = [(_arm(rng, 40, 0.1, 1.0), _arm(rng, 160, 0.1, 1.0)) for _ in range(20)]
    pairs.append((np.array([0.0] * 39 + [1_250.0]), _arm(rng, 160, 0.2, 1.5)))  # one positive
    pairs.append((np.zeros(20), _arm(rng, 80, 0.1, 0.5)))  # none in control
    pairs.append((_arm(rng, 400, 0.05, 2.0), _arm(rng, 400, 0.08, 2.0)))
    return pairs


@pytest.mark.parametrize("index", range(len(_random_pairs())))
def test_overall_comparison_from_two_parts_equals_welch_on_the_values(index: int) -> None:
    control_values, treatment_values = _random_pairs()[index]
    control = TwoPartStatistic.from_values(control_values)
    treatment = TwoPartStatistic.from_values(treatment_values)
    parts = overall_mean_comparison(control, treatment)
    welch = welch_test(control.overall_values, treatment.overall_values)
    assert parts.status is not Status.INSUFFICIENT_DATA
    assert parts.estimate == pytest.approx(
        treatment_values.mean() - control_values.mean(), rel=1e-12
    )
    for name in ("estimate", "se", "df", "p_value"):
        assert getattr(parts, name) == pytest.approx(getattr(welch, name), rel=1e-9), name
    assert parts.ci.lower == pytest.approx(welch.ci.lower, rel=1e-9)
    assert parts.ci.upper == pytest.approx(welch.ci.upper, rel=1e-9)
    assert parts.status is welch.status


def test_each_part_is_the_matching_test() -> None:
    rng = np.random.default_rng(12)
    control = TwoPartStatistic.from_values(_arm(rng, 100, 0.1, 1.0))
    treatment = TwoPartStatistic.from_values(_arm(rng, 400, 0.2, 1.0))
    result = two_part_comparison(control, treatment, alpha=0.1)
    assert result.share == proportion_test(control.any_value, treatment.any_value, alpha=0.1)
    expected = welch_test(control.positive_values, treatment.positive_values, alpha=0.1)
    assert result.mean_among_positive == expected
    assert result.overall == overall_mean_comparison(control, treatment, alpha=0.1)
    assert result.share.estimate == pytest.approx(treatment.share - control.share)


def test_no_positive_units_anywhere() -> None:
    control = TwoPartStatistic.from_values(np.zeros(40))
    treatment = TwoPartStatistic.from_values(np.zeros(160))
    result = two_part_comparison(control, treatment)
    assert control.share == 0.0 and math.isnan(control.mean_among_positive)
    assert control.variance_parts() == (0.0, 0.0)
    for part in (result.share, result.mean_among_positive, result.overall):
        assert part.status is Status.INSUFFICIENT_DATA and math.isnan(part.estimate)
    assert "at least 2 such units per arm (control 0, treatment 0)" in (
        result.mean_among_positive.message
    )
    assert result.overall.message == "the value does not vary in either arm"


def test_one_positive_unit_leaves_the_conditional_mean_unread_but_not_the_overall() -> None:
    control = TwoPartStatistic.from_values([0.0] * 39 + [3_000.0])
    treatment = TwoPartStatistic.from_values([0.0] * 150 + [1_000.0, 4_000.0] * 5)
    result = two_part_comparison(control, treatment)
    assert result.mean_among_positive.status is Status.INSUFFICIENT_DATA
    assert "(control 1, treatment 10)" in result.mean_among_positive.message
    assert result.overall.estimate == pytest.approx(25_000 / 160 - 3_000 / 40)
    # One value of 3,000 among 40: the control's variance is all from the share.
    share_part, amount_part = control.variance_parts()
    assert amount_part == 0.0
    assert share_part == pytest.approx(3_000**2 * (1 - 1 / 40) / (40 * 39))
    assert math.isfinite(result.overall.se) and result.overall.se > 0


def test_inconsistent_sums_are_reported() -> None:
    bad = TwoPartStatistic(n=10, positives=12, positive_sum=100.0, positive_sum_squares=1e4)
    good = TwoPartStatistic.from_values([0.0] * 8 + [10.0, 20.0])
    result = two_part_comparison(bad, good)
    assert result.overall.status is Status.INSUFFICIENT_DATA
    assert "control has 12 positive units of 10" in result.share.message
    negative = TwoPartStatistic(n=10, positives=2, positive_sum=-5.0, positive_sum_squares=50.0)
    assert "treatment's sums" in overall_mean_comparison(good, negative).message
    with pytest.raises(ValueError, match="at least 0"):
        TwoPartStatistic.from_values([1.0, -2.0])
    with pytest.raises(ValueError, match="alpha"):
        two_part_comparison(good, good, alpha=1.0)


def _replicate_sums(
    rng: np.random.Generator, n: int, share: float, sigma: float
) -> list[TwoPartStatistic]:
    """REPLICATES arms of n units, drawn at once, as their sums."""
    values = np.where(
        rng.random((REPLICATES, n)) < share,
        rng.lognormal(math.log(MEDIAN_VALUE), sigma, (REPLICATES, n)),
        0.0,
    )
    positives = (values > 0).sum(axis=1)
    sums, squares = values.sum(axis=1), (values * values).sum(axis=1)
    return [
        TwoPartStatistic(n, int(k), float(total), float(square))
        for k, total, square in zip(positives, sums, squares, strict=True)
    ]


@functools.cache
def _coverage(n_control: int, n_treatment: int, share_treatment: float, sigma: float) -> float:
    """Share of REPLICATES in which the overall 95% interval covers the true difference."""
    rng = np.random.default_rng(20240611)
    truth = (share_treatment - 0.10) * MEDIAN_VALUE * math.exp(sigma * sigma / 2)
    controls = _replicate_sums(rng, n_control, 0.10, sigma)
    treatments = _replicate_sums(rng, n_treatment, share_treatment, sigma)
    covered = 0
    for control, treatment in zip(controls, treatments, strict=True):
        result = overall_mean_comparison(control, treatment)
        # An unread result (no value in either arm) counts as a miss.
        covered += result.status is not Status.INSUFFICIENT_DATA and result.ci.contains(truth)
    return covered / REPLICATES


@pytest.mark.parametrize(
    ("design", "measured"),
    [
        ((40, 160, 0.10, 1.0), 0.892),
        ((40, 160, 0.15, 1.0), 0.934),
        ((40, 160, 0.10, 0.0), 0.931),
        ((100, 400, 0.10, 0.5), 0.938),
    ],
)
def test_overall_interval_coverage_by_seeded_simulation(
    design: tuple[int, int, float, float], measured: float
) -> None:
    coverage = _coverage(*design)
    print(f"coverage {design}: {coverage:.4f}")
    # Pinned to the measured value (seeded, so exact) within 2 Monte Carlo SEs, and never
    # below 0.87 whatever the design: a change to the interval shows up here.
    assert coverage == pytest.approx(measured, abs=0.008)
    assert coverage >= 0.87


def test_overall_interval_coverage_reaches_92_percent_at_100_vs_400() -> None:
    assert _coverage(100, 400, 0.10, 0.5) >= 0.92


@pytest.mark.xfail(
    strict=True,
    reason=(
        "Welch's interval on the overall values undercovers with ~4 valued control accounts "
        "and lognormal amounts: 0.892 at 40 vs 160, 10% valued, sigma 1 (target 0.92)"
    ),
)
def test_overall_interval_coverage_reaches_92_percent_at_40_vs_160() -> None:
    assert _coverage(40, 160, 0.10, 1.0) >= 0.92


@pytest.mark.parametrize(
    ("arguments", "sentence"),
    [
        ((99, 12_340, 3), "value capped at the 99th percentile ($12,340); 3 units capped"),
        ((99.5, 830.25, 1), "value capped at the 99.5th percentile ($830); 1 unit capped"),
        ((95, 12.5, 0), "value capped at the 95th percentile ($12.50); no units capped"),
        (
            (92, 1_000_000, 1_204),
            "value capped at the 92nd percentile ($1,000,000); 1,204 units capped",
        ),
        ((91, 10, 2), "value capped at the 91st percentile ($10); 2 units capped"),
        ((93, 10, 2), "value capped at the 93rd percentile ($10); 2 units capped"),
        ((11, 10, 2), "value capped at the 11th percentile ($10); 2 units capped"),
    ],
)
def test_capped_note(arguments: tuple[float, float, int], sentence: str) -> None:
    assert capped_note(*arguments) == sentence


def test_capped_note_currency_and_invalid_arguments() -> None:
    assert capped_note(99, 5_000, 2, currency="€") == (
        "value capped at the 99th percentile (€5,000); 2 units capped"
    )
    for percentile in (0, 101):
        with pytest.raises(ValueError, match="in percent"):
            capped_note(percentile, 5_000, 2)
    with pytest.raises(ValueError, match="capped_units"):
        capped_note(99, 5_000, -1)
