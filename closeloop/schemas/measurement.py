"""A measurement (``closeloop measure``, and each measurement of a job's report) as public models.

The JSON is the stable format of docs/measure-format.md (``format_version`` 1): fields are only
added within a version, never renamed or removed. Times are in days; a number that does not exist
(no data, NaN, infinity) is null; an interval is ``[lower, upper]`` at ``1 − final_alpha``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from closeloop.schemas.base import Number, Schema

FORMAT_VERSION: Literal[1] = 1

StatusName = Literal["positive", "negative", "inconclusive", "insufficient_data"]
"""What a comparison lets us say, from the goal's side; ``insufficient_data``: do not read it."""

Interval = tuple[Number, Number]
"""``[lower, upper]``; both null when the interval does not exist."""


class Estimate(Schema):
    """A difference with its interval and two-sided p-value (null when it cannot be computed)."""

    estimate: Number
    ci: Interval
    p_value: Number


class SurvivalCurve(Schema):
    """An arm's Kaplan–Meier curve up to the horizon: what a time-to-goal chart draws.

    Step points at each distinct time a unit reached the goal; ``completed`` is ``1 − S(t)``
    (the share that has reached the goal by day ``t``) with its pointwise log-log band.
    """

    days: list[float] = Field(description="times since entry, days, ascending")
    completed: list[Number] = Field(description="1 − S(t) at each time")
    completed_low: list[Number] = Field(description="lower end of the band at each time")
    completed_high: list[Number] = Field(description="upper end of the band at each time")


class Arm(Schema):
    """One arm's sizes, completion within the horizon, value and time to goal."""

    n: int = Field(ge=0, description="units in the arm")
    matured: int = Field(ge=0, description="units whose whole horizon has passed")
    completed: int = Field(ge=0, description="matured units that reached the goal in the horizon")
    completion_rate: Number = Field(description="completed / matured")
    mean_value: Number = Field(description="mean value per matured unit (null without a value)")
    median_time_to_goal: Number = Field(
        description="Kaplan–Meier median days to the goal over everyone (null: under half reach it)"
    )
    median_time_to_goal_ci: Interval
    km_completion_at_horizon: Number = Field(description="1 − S(horizon)")
    completion_at: dict[str, Number] = Field(
        description="1 − S(t) at the checkpoints within the horizon; keys are days as text ('7')"
    )
    rmst: Number = Field(description="restricted mean time to goal over the horizon, days")
    conditional_mean_days: Number = Field(
        description="mean days to the goal among units that reached it (conditional)"
    )
    conditional_median_days: Number = Field(
        description="median days to the goal among units that reached it (conditional)"
    )


class Bayesian(Schema):
    """The posterior probability that the arm beats the control, and the expected losses."""

    probability_better: Number = Field(description="null when the read-out is not defined")
    expected_loss_treatment: Number
    expected_loss_control: Number
    credible_interval: Interval
    prior: str


class TwoPart(Schema):
    """A value comparison split into the share with any value and the mean among them."""

    share: Estimate
    mean_among_positive: Estimate
    overall: Estimate


class CovariateAdjusted(Estimate):
    """Lin's regression-adjusted completion lift, beside the unadjusted one that decides."""

    variance_ratio: Number = Field(description="adjusted variance over unadjusted")
    covariates: list[str] = Field(description="the covariates kept in the adjustment")
    message: str = Field(description="why it could not be computed (else empty)")
    status: StatusName | None = Field(
        default=None, description="the adjusted lift's status (added; not decisive)"
    )


class LogRank(Schema):
    chi2: Number
    p_value: Number


class Comparison(Schema):
    """One arm against another on one metric (``arm − control``); inapplicable keys are null."""

    arm: str
    control: str
    metric: Literal["completion_rate", "value", "time_to_goal"]
    status: StatusName = Field(description="from the decisive result, from the goal's side")
    message: str = Field(description="why the comparison is insufficient_data (else empty)")
    absolute: Estimate | None = Field(
        description="difference in rate or mean value (null for time_to_goal)"
    )
    relative: Estimate | None = Field(description="(arm − control) / control")
    sequential: Estimate | None = Field(description="always-valid result (job reports)")
    cuped: bool | None = Field(description="value only: adjusted by a pre-entry covariate")
    running: bool = Field(description="units were still maturing at this look")
    family: int = Field(ge=1, description="comparisons Holm adjusts together")
    p_value_holm: Number = Field(description="Holm-adjusted p-value (null when family is 1)")
    bayesian: Bayesian | None
    two_part: TwoPart | None
    covariate_adjusted: CovariateAdjusted | None
    rmst_difference: Estimate | None = Field(
        description="time_to_goal: difference in restricted mean days (negative: sooner)"
    )
    logrank: LogRank | None
    decided_by: Literal["fixed_horizon", "always_valid", "holm_adjusted"] | None = Field(
        default=None,
        description="which result the status is read from (added): the fixed-horizon one "
        "(absolute or rmst_difference), the always-valid sequential one, or Holm's adjustment",
    )
    decisive: Estimate | None = Field(
        default=None,
        description="the result the status is read from (added): its estimate, interval and "
        "p-value (Holm's p-value when decided_by is holm_adjusted)",
    )


class SampleRatio(Schema):
    """The sample-ratio check: are the arms split as configured? (mismatch when p < 0.001)."""

    chi2: Number
    p_value: Number
    mismatch: bool


class Segment(Schema):
    """An arm against the control within one value of one pre-entry column."""

    column: str
    segment: str = Field(description="the value; '(none)' when missing")
    arm: str
    control: str
    n_control: int = Field(ge=0)
    n_arm: int = Field(ge=0)
    rate_control: Number
    rate_arm: Number
    lift: Estimate = Field(description="absolute difference in completion rate, marginal")
    p_value_bh: Number = Field(description="Benjamini–Hochberg over the family (null outside)")
    p_value_holm: Number = Field(description="Holm over the family (null outside)")
    adjusted_ci: Interval | None = Field(
        description="false-coverage-rate adjusted interval, selected segments only"
    )
    in_family: bool
    selected: bool = Field(description="BH p ≤ alpha")
    sequential: Estimate | None = Field(description="marginal always-valid result (job reports)")
    small: bool = Field(description="fewer than 50 units in an arm: read with care")


class HeterogeneityTest(Schema):
    """Cochran's Q across a column's segments for one arm, on one scale."""

    column: str
    arm: str
    q: Number
    df: int
    p_value: Number
    scale: Literal["absolute", "log_ratio"]


class ValueCap(Schema):
    """The value outcome was winsorized at this percentile's value."""

    percentile: float
    cap: Number
    capped_units: int = Field(ge=0)


class EntryWeek(Schema):
    week: str = Field(description="the Monday the week starts (YYYY-MM-DD)")
    n_control: int = Field(ge=0)
    n_arm: int = Field(ge=0)
    rate_control: Number
    rate_arm: Number
    lift: Estimate
    status: StatusName


class EntryWeeks(Schema):
    """The headline arm's lift per entry week, and the weighted slope per week (does it fade?)."""

    arm: str
    weeks: list[EntryWeek]
    trend: Estimate | None = Field(description="null with fewer than three usable weeks")


class CompetingOutcome(Schema):
    """Reaching the goal and churning first, competing (Aalen–Johansen), at the horizon."""

    arm: str
    control: str
    goal: Estimate
    goal_status: StatusName
    churn: Estimate
    churn_status: StatusName = Field(description="from the goal's side (more churn: negative)")
    goal_incidence: dict[str, Number] = Field(description="per arm")
    churn_incidence: dict[str, Number] = Field(description="per arm")


class MeasureSource(Schema):
    """Where ``closeloop measure`` read its units and events."""

    units_file: str
    events_file: str
    units: int = Field(ge=0)
    events: int = Field(ge=0)
    events_for_unknown_units: int = Field(ge=0)


class MatchedCovariate(Schema):
    name: str
    cutpoints: list[float] | None = Field(description="bin edges; null for exact matching")


class MatchCounts(Schema):
    treated_matched: int = Field(ge=0)
    treated_pruned: int = Field(ge=0)
    control_matched: int = Field(ge=0)
    control_pruned: int = Field(ge=0)
    strata: int = Field(ge=0)
    matched_strata: int = Field(ge=0)


class BalanceRow(Schema):
    """Standardized mean differences of one covariate (or level) before and after matching."""

    covariate: str
    level: str | None
    treated_before: Number
    control_before: Number
    smd_before: Number
    treated_after: Number
    control_after: Number
    smd_after: Number


class MatchedComparison(Schema):
    """An arm matched to the control by coarsened exact matching: the effect on the treated."""

    estimand: str
    arm: str
    control: str
    status: StatusName
    covariates: list[MatchedCovariate]
    completion: Estimate = Field(description="ATT on completion within the horizon")
    naive_completion: Estimate = Field(description="the unmatched difference, for contrast")
    treated_completion_rate: Number
    control_completion_rate: Number = Field(description="CEM-weighted")
    value: Estimate | None
    naive_value: Estimate | None
    counts: MatchCounts
    balance: list[BalanceRow]
    warnings: list[str]
    message: str = Field(
        default="", description="why the completion estimate is insufficient_data (added)"
    )


class Measurement(Schema):
    """Arms, comparisons, checks, segments and warnings of one measurement (docs/measure-format.md).

    ``matched`` is only present in ``closeloop measure`` output (``--match-on``); a job's report
    carries its matched comparison beside its measurement.
    """

    format_version: Literal[1] = FORMAT_VERSION
    horizon_days: Number
    control: str
    as_of: str | None = Field(description="ISO 8601 analysis time; null: every unit matured")
    running: bool
    alpha: float
    looks_while_running: bool
    running_alpha: float
    final_alpha: float
    status: StatusName
    source: MeasureSource | None
    arms: dict[str, Arm] = Field(description="one per arm, the control first")
    pooled: Arm | None = Field(description="several treated arms together ('all treated')")
    comparisons: list[Comparison]
    srm: SampleRatio | None
    segments: list[Segment]
    heterogeneity: list[HeterogeneityTest]
    value_cap: ValueCap | None
    by_entry_week: EntryWeeks | None
    competing: list[CompetingOutcome]
    warnings: list[str]
    matched: list[MatchedComparison] | None = Field(
        default=None, description="closeloop measure --match-on: one per treated arm"
    )
    curves: dict[str, SurvivalCurve] = Field(
        default_factory=dict,
        description="per arm, the Kaplan–Meier curve up to the horizon (added, for charts)",
    )
