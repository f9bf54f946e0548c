"""The revenue value of a job: logo retention, NRR and MRR change of its cohort against the holdout.

Money is in the currency of the subscriptions' ``mrr`` column (per month; ARR = 12 × MRR). A
number that does not exist is null; an interval is ``[lower, upper]``.
"""

from __future__ import annotations

from pydantic import Field

from closeloop.schemas.base import Number, Schema
from closeloop.schemas.measurement import Interval, StatusName


class RevenueResult(Schema):
    """A difference (arm − control) with its interval, standard error and status."""

    estimate: Number
    ci: Interval
    se: Number
    p_value: Number
    status: StatusName
    message: str = Field(description="why it is insufficient_data (else empty)")


class RevenueArm(Schema):
    """What one arm's matured units did to revenue over a horizon."""

    enrolled: int = Field(ge=0)
    matured: int = Field(ge=0, description="units that have had the horizon since entry")
    paying_at_entry: int = Field(ge=0, description="matured units whose account had MRR > 0")
    retained: int = Field(ge=0, description="of those, still paying at the horizon")
    mrr_start_total: Number = Field(description="MRR at entry over the matured units")
    mrr_end_total: Number = Field(description="MRR at the horizon over the matured units")
    retention: Number = Field(description="logo retention among units paying at entry")
    nrr: Number = Field(description="net revenue retention among units paying at entry")
    mean_mrr_change: Number = Field(description="MRR change per matured unit")
    mean_expansion: Number
    mean_contraction: Number


class RevenueComparison(Schema):
    """One arm against the control at one horizon, and the money it made."""

    arm: str
    control: str
    status: StatusName = Field(description="the MRR change's status")
    retention_difference: RevenueResult
    nrr_difference: RevenueResult
    mrr_change_difference: RevenueResult
    expansion_difference: RevenueResult
    contraction_difference: RevenueResult
    treated_accounts: int = Field(ge=0, description="the arm's matured units")
    added_mrr: Number = Field(description="MRR change difference × treated accounts")
    added_mrr_ci: Interval
    added_arr: Number = Field(description="12 × added_mrr")
    added_arr_ci: Interval


class RevenueHorizon(Schema):
    """Every arm at one horizon: the job (variants pooled) against the control, and each variant."""

    days: int = Field(ge=1)
    matured: int = Field(ge=0)
    arms: dict[str, RevenueArm] = Field(description="the control and the pooled treatment")
    variants: dict[str, RevenueArm] = Field(description="each variant (empty with one)")
    comparison: RevenueComparison = Field(description="the pooled treatment against the control")
    variant_comparisons: list[RevenueComparison]
    warnings: list[str]


class RevenueValue(Schema):
    """Retention, NRR and MRR change of a job's cohort per arm at each horizon (90, 180 days)."""

    as_of: str = Field(description="ISO 8601 analysis time")
    control: str
    currency_note: str
    no_mrr_at_entry_note: str
    warnings: list[str]
    horizons: list[RevenueHorizon]
