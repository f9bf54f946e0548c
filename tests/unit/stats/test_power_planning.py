"""Planning a job's power from weekly volume, enrollment weeks and horizon, vs statsmodels."""

from __future__ import annotations

import math

import pytest
from scipy import stats as sps
from statsmodels.stats.power import NormalIndPower

from closeloop.stats.power import (
    minimum_detectable_effect,
    plan_duration,
    plan_enrollment,
    required_sample_size,
)


@pytest.mark.parametrize(
    ("weekly", "weeks", "holdout"), [(250, 2, 0.2), (500, 4, 0.2), (120, 12, 0.1), (1000, 8, 0.5)]
)
def test_enrollment_mde_agrees_with_statsmodels(weekly: int, weeks: int, holdout: float) -> None:
    baseline = 0.25
    plan = plan_enrollment(weekly, baseline, weeks, holdout_fraction=holdout, horizon_days=30)
    units = weekly * weeks
    n_holdout = units * holdout
    effect_size = NormalIndPower().solve_power(
        nobs1=n_holdout, ratio=(units - n_holdout) / n_holdout, alpha=0.05, power=0.8
    )
    # statsmodels also counts the negligible chance of rejecting in the wrong direction.
    expected = effect_size * math.sqrt(baseline * (1 - baseline))
    assert plan.mde_absolute == pytest.approx(expected, rel=1e-3)
    assert plan.mde_relative == pytest.approx(plan.mde_absolute / baseline)
    assert plan.units == units
    assert plan.days_until_result == 7 * weeks + 30
    assert plan.code is None


def test_enrollment_mde_matches_the_per_arm_function_at_whole_arm_sizes() -> None:
    plan = plan_enrollment(500, 0.3, 4, holdout_fraction=0.2)
    assert plan.mde_absolute == pytest.approx(minimum_detectable_effect(400, 1600, 0.3))
    # Four times the weeks halves the detectable effect.
    longer = plan_enrollment(500, 0.3, 16, holdout_fraction=0.2)
    assert longer.mde_absolute == pytest.approx(plan.mde_absolute / 2)


def test_degenerate_plans_are_results_with_a_code() -> None:
    no_volume = plan_enrollment(0, 0.3, 4)
    assert no_volume.code == "no_volume"
    assert math.isnan(no_volume.mde_absolute)
    flat = plan_enrollment(100, 0.0, 4)
    assert flat.code == "degenerate_baseline"
    assert math.isnan(flat.mde_relative)
    stalled = plan_duration(0, 0.3, 0.05)
    assert stalled.code == "no_volume"
    assert math.isinf(stalled.days_until_result)
    with pytest.raises(ValueError):
        plan_enrollment(100, 0.3, 4, holdout_fraction=1.0)


@pytest.mark.parametrize(("weekly", "effect", "holdout"), [(300, 0.05, 0.2), (80, 0.1, 0.25)])
def test_duration_reaches_the_requested_power(weekly: int, effect: float, holdout: float) -> None:
    baseline = 0.2
    plan = plan_duration(weekly, baseline, effect, holdout_fraction=holdout, horizon_days=14)
    assert plan.units == required_sample_size(baseline, effect, holdout_fraction=holdout)
    assert plan.enrollment_days == math.ceil(7 * plan.units / weekly)
    assert plan.days_until_result == plan.enrollment_days + 14
    assert plan.weeks == pytest.approx(plan.enrollment_days / 7)
    # Enrolling for those days gives at least the units needed, and about 80% power.
    units = weekly * plan.enrollment_days / 7
    n_holdout = units * holdout
    se = math.sqrt(
        baseline * (1 - baseline) / n_holdout
        + (baseline + effect) * (1 - baseline - effect) / (units - n_holdout)
    )
    achieved = sps.norm.sf(sps.norm.isf(0.025) - effect / se)
    assert 0.8 <= achieved < 0.81
