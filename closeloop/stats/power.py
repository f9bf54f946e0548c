"""Power for completion-rate lifts: what a job can detect, and how many units it needs."""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats as sps


def minimum_detectable_effect(
    n_control: float,
    n_treatment: float,
    baseline_rate: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
) -> float:
    """Smallest absolute lift in a completion rate detectable with this power (two-sided)."""
    if n_control <= 0 or n_treatment <= 0 or not 0 < baseline_rate < 1:
        return math.nan
    z = float(sps.norm.isf(alpha / 2) + sps.norm.isf(1 - power))
    variance = baseline_rate * (1 - baseline_rate)
    return z * math.sqrt(variance / n_control + variance / n_treatment)


def required_sample_size(
    baseline_rate: float,
    effect: float,
    *,
    holdout_fraction: float = 0.2,
    alpha: float = 0.05,
    power: float = 0.8,
) -> int:
    """Total units (both arms) needed to detect an absolute ``effect`` on ``baseline_rate``."""
    if effect == 0 or not 0 < baseline_rate < 1 or not 0 < holdout_fraction < 1:
        raise ValueError("need 0 < baseline_rate < 1, 0 < holdout_fraction < 1 and effect != 0")
    z = float(sps.norm.isf(alpha / 2) + sps.norm.isf(1 - power))
    treated = min(max(baseline_rate + effect, 1e-9), 1 - 1e-9)
    per_unit = baseline_rate * (1 - baseline_rate) / holdout_fraction + treated * (1 - treated) / (
        1 - holdout_fraction
    )
    return math.ceil(z**2 * per_unit / effect**2)


# -- planning a job: volume per week, enrollment weeks and the horizon ---------------------------

DAYS_PER_WEEK = 7


@dataclass(frozen=True)
class EnrollmentPlan:
    """What a job enrolling for ``weeks`` weeks can detect.

    ``units = weekly_volume * weeks`` split by the holdout fraction; the result is available once
    the last enrollment has matured, ``days_until_result = 7 * weeks + horizon_days`` after launch.
    ``mde_relative`` is ``mde_absolute / baseline_rate``. Degenerate inputs (no volume, a baseline
    of 0 or 1) give ``nan`` effects and a ``code`` saying why, never an exception.
    """

    weeks: float
    units: float
    n_holdout: float
    n_treated: float
    baseline_rate: float
    mde_absolute: float
    mde_relative: float
    days_until_result: float
    code: str | None = None


@dataclass(frozen=True)
class DurationPlan:
    """How long a job must enroll to detect an absolute ``effect`` with the requested power.

    ``enrollment_days`` is rounded up to a whole day; ``days_until_result`` adds the horizon.
    ``code`` is ``"no_volume"`` when nothing enters per week (then the durations are ``inf``).
    """

    effect: float
    units: int
    enrollment_days: float
    days_until_result: float
    code: str | None = None

    @property
    def weeks(self) -> float:
        return self.enrollment_days / DAYS_PER_WEEK


def plan_enrollment(
    weekly_volume: float,
    baseline_rate: float,
    weeks: float,
    *,
    holdout_fraction: float = 0.2,
    horizon_days: float = 30.0,
    alpha: float = 0.05,
    power: float = 0.8,
) -> EnrollmentPlan:
    """The minimum detectable effect after enrolling ``weekly_volume`` units a week for ``weeks``.

    Same normal approximation as :func:`minimum_detectable_effect` (two-sided, the baseline's
    variance in both arms), with fractional arm sizes so a plan does not jump with rounding.

    >>> plan = plan_enrollment(500, 0.2, 4, holdout_fraction=0.2, horizon_days=30)
    >>> round(plan.mde_absolute, 4), plan.days_until_result
    (0.0626, 58.0)
    """
    if not 0 < holdout_fraction < 1:
        raise ValueError(f"holdout_fraction must be between 0 and 1, got {holdout_fraction}")
    units = max(weekly_volume, 0.0) * max(weeks, 0.0)
    n_holdout = units * holdout_fraction
    n_treated = units - n_holdout
    days = float(DAYS_PER_WEEK * weeks + horizon_days)
    code = None
    if units <= 0:
        code = "no_volume"
    elif not 0 < baseline_rate < 1:
        code = "degenerate_baseline"
    if code is not None:
        return EnrollmentPlan(
            weeks, units, n_holdout, n_treated, baseline_rate, math.nan, math.nan, days, code
        )
    mde = minimum_detectable_effect(n_holdout, n_treated, baseline_rate, alpha=alpha, power=power)
    return EnrollmentPlan(
        weeks, units, n_holdout, n_treated, baseline_rate, mde, mde / baseline_rate, days
    )


def plan_duration(
    weekly_volume: float,
    baseline_rate: float,
    effect: float,
    *,
    holdout_fraction: float = 0.2,
    horizon_days: float = 30.0,
    alpha: float = 0.05,
    power: float = 0.8,
) -> DurationPlan:
    """How many days of enrollment (and days until the result) detect an absolute ``effect``.

    The units come from :func:`required_sample_size` (which uses the treated arm's own variance).

    >>> plan = plan_duration(500, 0.2, 0.05, holdout_fraction=0.2, horizon_days=30)
    >>> plan.units, plan.enrollment_days, plan.days_until_result
    (3248, 46.0, 76.0)
    """
    units = required_sample_size(
        baseline_rate, effect, holdout_fraction=holdout_fraction, alpha=alpha, power=power
    )
    if weekly_volume <= 0:
        return DurationPlan(effect, units, math.inf, math.inf, "no_volume")
    enrollment_days = float(math.ceil(DAYS_PER_WEEK * units / weekly_volume))
    return DurationPlan(effect, units, enrollment_days, enrollment_days + horizon_days)


# -- the price of looking early ------------------------------------------------------------------


@dataclass(frozen=True)
class SequentialCost:
    """What looking at a running job costs, at its planned size (N* = ``units``).

    A job's report may be read every day, so its alpha is split: ``running_alpha`` for the
    always-valid results, ``final_alpha`` for the fixed-horizon result at maturity.
    ``width_ratio`` is the always-valid interval's width at N* over the one-look fixed-horizon
    interval's at ``alpha``; ``units_implied`` the units a one-look analysis would need for an
    interval as wide (N* × ratio²). ``final_ratio`` is the same for the final look at
    ``final_alpha``, and ``mde_final`` the lift detectable there with the planned power.
    """

    units: float
    running_alpha: float
    final_alpha: float
    width_ratio: float
    units_implied: float
    final_ratio: float
    mde_final: float


def sequential_cost(
    units: float,
    baseline_rate: float,
    *,
    holdout_fraction: float,
    alpha: float = 0.05,
    running_share: float = 0.5,
    power: float = 0.8,
) -> SequentialCost:
    """The cost of looking early for a plan of ``units`` (see :class:`SequentialCost`)."""
    running_alpha, final_alpha = alpha * running_share, alpha * (1 - running_share)
    n = max(units, 1.0)
    rho2 = (-2 * math.log(running_alpha) + math.log(-2 * math.log(running_alpha) + 1)) / n
    # The half-width of the asymptotic sequence at its tuning size, per standard error.
    per_se = math.sqrt(
        n * 2 * (n * rho2 + 1) / (n * n * rho2) * math.log(math.sqrt(n * rho2 + 1) / running_alpha)
    )
    z = float(sps.norm.isf(alpha / 2))
    ratio = per_se / z
    final_ratio = float(sps.norm.isf(final_alpha / 2)) / z
    mde = minimum_detectable_effect(
        units * holdout_fraction,
        units * (1 - holdout_fraction),
        baseline_rate,
        alpha=final_alpha,
        power=power,
    )
    return SequentialCost(
        units, running_alpha, final_alpha, ratio, units * ratio * ratio, final_ratio, mde
    )
