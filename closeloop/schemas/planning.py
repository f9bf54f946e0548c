"""Power plans: what a job can detect for a volume and baseline, and how long it must run.

``closeloop power --format json``, ``POST /api/power`` and ``GET /api/jobs/{name}/power`` return a
:class:`PowerPlan`. Effects are absolute differences of completion rates (0.05 = 5 percentage
points); a number that does not exist (no volume, a duration that is never reached) is ``null``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from closeloop.schemas.base import Number, Schema

DEFAULT_WEEKS = (2.0, 4.0, 8.0, 12.0)


class PowerInputs(Schema):
    """The inputs of a plan (the body of ``POST /api/power``; the ``inputs`` of a plan)."""

    weekly_volume: float = Field(
        description="units entering the audience per week (0, or 0.001 to 1e9)"
    )
    baseline_rate: float = Field(
        description="the holdout's completion rate within the horizon (strictly between 0 and 1)"
    )
    holdout_fraction: float = Field(
        default=0.2, description="the share of units held out (0.01 to 0.99)"
    )
    horizon_days: float = Field(default=30.0, description="days after entry measured (0 to 3650)")
    weeks: list[float] = Field(
        default_factory=lambda: list(DEFAULT_WEEKS),
        description="enrollment durations to plan for, in weeks (each 0 to 520; at most 52)",
    )
    effect: float | None = Field(
        default=None,
        description="a target absolute lift (0.05 = 5 pp): how long to enroll to detect it",
    )
    alpha: float = Field(default=0.05, description="two-sided significance (1e-6 to 0.5)")
    power: float = Field(default=0.8, description="the power wanted (0.05 to 0.999999)")


class EnrollmentPlan(Schema):
    """What a job enrolling for ``weeks`` weeks can detect.

    ``units = weekly_volume × weeks``, split by the holdout fraction; the result is available
    ``days_until_result = 7 × weeks + horizon_days`` after launch.
    """

    weeks: Number
    units: Number
    n_holdout: Number
    n_treated: Number
    baseline_rate: Number
    mde_absolute: Number = Field(description="the minimum detectable absolute lift")
    mde_relative: Number = Field(description="mde_absolute / baseline_rate")
    days_until_result: Number
    code: str | None = Field(
        default=None, description="why the effects are null (e.g. no_volume), if they are"
    )


class DurationPlan(Schema):
    """How long a job must enroll to detect ``effect`` with the requested power."""

    effect: Number
    units: int = Field(description="units to enroll, holdout and treated together")
    enrollment_days: Number = Field(description="whole days of enrollment; null: never")
    days_until_result: Number = Field(description="enrollment days plus the horizon; null: never")
    code: str | None = None
    weeks: Number = Field(description="enrollment_days / 7")


EstimateSource = Literal["given", "enrollments", "audience", "holdout", "schedule", "default"]


class PlanEstimate(Schema):
    """A number estimated from data, with where it came from and how."""

    value: float
    source: EstimateSource = Field(
        description=(
            "given (an option), enrollments or audience (weekly volume), holdout or audience "
            "(baseline), schedule or default (planned weeks)"
        )
    )
    detail: str = Field(description="how the value was computed, in words")


class JobEstimates(Schema):
    """What a job's plan read from the job and its data."""

    job_name: str
    as_of: datetime = Field(description="the time the data was read as of (naive UTC)")
    weekly_volume: PlanEstimate
    baseline_rate: PlanEstimate
    planned_weeks: PlanEstimate
    effect_source: Literal["given", "hypothesis.minimum_effect"] | None = Field(
        description="where the target effect came from; null: no target effect"
    )


class SequentialCost(Schema):
    """What looking at a running job costs, at its planned size.

    The report may be read every day, so alpha is split: ``running_alpha`` for the always-valid
    results, ``final_alpha`` for the fixed-horizon result at maturity. ``width_ratio`` is the
    always-valid interval's width over a one-look interval's at the planned units;
    ``units_implied`` the units a one-look analysis would need for an interval as wide;
    ``final_ratio`` the same for the final look, and ``mde_final`` the lift detectable there.
    """

    units: Number
    running_alpha: Number
    final_alpha: Number
    width_ratio: Number
    units_implied: Number
    final_ratio: Number
    mde_final: Number


class PowerPlan(Schema):
    """The minimum detectable effect per enrollment duration, the duration for a target effect,
    and, for a job, what was estimated from its data and what looking early costs."""

    inputs: PowerInputs
    plans: list[EnrollmentPlan] = Field(description="one plan per requested number of weeks")
    duration: DurationPlan | None = Field(description="null without a target effect")
    job: JobEstimates | None = Field(default=None, description="null for a plan from numbers")
    planned: EnrollmentPlan | None = Field(
        default=None, description="a job's plan at its planned duration"
    )
    underpowered: bool | None = Field(
        default=None,
        description="the planned duration's MDE exceeds the target effect (null: no target)",
    )
    warnings: list[str] = Field(default_factory=list)
    sequential: SequentialCost | None = Field(
        default=None, description="a job's: what looking at it while it runs costs"
    )
