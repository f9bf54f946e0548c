"""Frequency properties by simulation: intervals cover the truth as often as they claim.

Fixed-horizon coverage of the absolute Welch interval, the A/A false-positive rate and daily
peeking with confidence sequences are in tests/unit/test_stats_behaviour.py; these cover the
other estimators. Seeded, so each bound is checked on one fixed draw; the bounds leave about four
Monte Carlo standard errors of room.
"""

from __future__ import annotations

import numpy as np
import pytest

from closeloop.stats import (
    ProportionStatistic,
    RegressionAdjustedStatistic,
    RiskTable,
    Status,
    confidence_sequence,
    cuped_test,
    rmst_difference,
    welch_test,
)

RUNS = 2000


def test_relative_lift_interval_covers_the_truth() -> None:
    rng = np.random.default_rng(21)
    n, p_control, p_treatment = 2000, 0.2, 0.23
    truth = (p_treatment - p_control) / p_control
    controls, treatments = rng.binomial(n, p_control, RUNS), rng.binomial(n, p_treatment, RUNS)
    covered = sum(
        welch_test(
            ProportionStatistic(n, int(c)), ProportionStatistic(n, int(t)), difference="relative"
        ).ci.contains(truth)
        for c, t in zip(controls, treatments, strict=True)
    )
    assert 0.935 <= covered / RUNS <= 0.965


def _adjusted(post: np.ndarray, pre: np.ndarray) -> RegressionAdjustedStatistic:
    return RegressionAdjustedStatistic(
        n=len(post),
        post_sum=float(post.sum()),
        post_sum_squares=float((post**2).sum()),
        pre_sum=float(pre.sum()),
        pre_sum_squares=float((pre**2).sum()),
        post_pre_sum_products=float((post * pre).sum()),
    )


def test_cuped_interval_covers_the_truth() -> None:
    """Outcome = 2 + 0.7 * pre + noise, treatment adds 0.3; theta is estimated every run."""
    rng = np.random.default_rng(22)
    n, effect, runs = 400, 0.3, 1000
    covered = 0
    for _ in range(runs):
        pre = rng.normal(10, 3, (2, n))
        post = 2 + 0.7 * pre + rng.normal(0, 2, (2, n))
        post[1] += effect
        result = cuped_test(_adjusted(post[0], pre[0]), _adjusted(post[1], pre[1]))
        covered += result.ci.contains(effect)
    assert 0.93 <= covered / runs <= 0.97


def _exits(rng: np.random.Generator, n: int, scale: float, horizon: float) -> RiskTable:
    """Days to goal, exponential; units still without it at the horizon are censored there."""
    days = np.ceil(rng.exponential(scale, n))
    reached = days <= horizon
    return RiskTable.from_durations(np.minimum(days, horizon).tolist(), reached.tolist())


def test_rmst_difference_a_a_false_positive_rate() -> None:
    rng = np.random.default_rng(23)
    runs, horizon = 600, 28.0
    false_positives = 0
    for _ in range(runs):
        result = rmst_difference(
            _exits(rng, 300, 20.0, horizon), _exits(rng, 300, 20.0, horizon), horizon
        )
        assert result.status is not Status.INSUFFICIENT_DATA
        false_positives += result.p_value < 0.05
    assert false_positives / runs <= 0.07


@pytest.mark.slow
def test_confidence_sequence_relative_lift_covers_the_truth_at_every_look() -> None:
    """Simultaneous coverage over 20 looks, where the fixed-horizon interval's is far lower."""
    rng = np.random.default_rng(24)
    runs, looks, daily, p_control, p_treatment = 300, 20, 150, 0.2, 0.22
    truth = (p_treatment - p_control) / p_control
    controls = np.cumsum(rng.binomial(daily, p_control, (runs, looks)), axis=1)
    treatments = np.cumsum(rng.binomial(daily, p_treatment, (runs, looks)), axis=1)
    sequence_misses = fixed_misses = 0
    for c_run, t_run in zip(controls, treatments, strict=True):
        arms = [
            (
                ProportionStatistic(daily * (day + 1), int(c)),
                ProportionStatistic(daily * (day + 1), int(t)),
            )
            for day, (c, t) in enumerate(zip(c_run, t_run, strict=True))
        ]
        sequence_misses += any(
            not confidence_sequence(
                c, t, difference="relative", tuning=looks * daily * 2
            ).ci.contains(truth)
            for c, t in arms
        )
        fixed_misses += any(
            not welch_test(c, t, difference="relative").ci.contains(truth) for c, t in arms
        )
    assert sequence_misses / runs <= 0.05
    assert fixed_misses / runs > 0.1
