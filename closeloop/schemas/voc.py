"""Voice of the customer (``closeloop outcomes voc``, ``GET /api/outcomes/voc``) and the
divergence alert (``closeloop outcomes divergence``, ``GET /api/outcomes/divergence``).

docs/metrics.md ("Voice of the customer", "Divergence alert") defines every field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from closeloop.schemas.base import Number, Schema

PeriodName = Literal["month", "quarter"]
CesDirection = Literal["lower_is_easier", "higher_is_easier"]


class NpsValue(Schema):
    """Net Promoter Score in points (-100..100) with its 95% score interval."""

    value: Number = Field(description="% promoters minus % detractors; null without answers")
    lower: Number
    upper: Number
    responses: int = Field(ge=0, description="answers counted (accounts at account level)")
    promoters: int = Field(ge=0)
    passives: int = Field(ge=0)
    detractors: int = Field(ge=0)


class CsatValue(Schema):
    """Share of satisfied answers (top two points of the scale) in percent, Wilson interval."""

    value: Number
    lower: Number
    upper: Number
    responses: int = Field(ge=0)
    satisfied: int = Field(ge=0)


class CesValue(Schema):
    """Customer effort: the mean score (t interval) and the share of easy answers (Wilson)."""

    value: Number = Field(description="mean score on the CES scale (scale_min..scale_max)")
    lower: Number
    upper: Number
    responses: int = Field(ge=0)
    easy: int = Field(ge=0, description="answers in the easiest third of the scale")
    easy_share: Number = Field(description="percent of answers that are easy")
    easy_lower: Number
    easy_upper: Number
    scale_min: Number
    scale_max: Number


class Satisfaction(Schema):
    """NPS, CSAT and CES at one level (respondent or account)."""

    nps: NpsValue
    csat: CsatValue
    ces: CesValue


class ResponseRate(Schema):
    """Who could answer a kind of survey and who did, in a group."""

    kind: Literal["nps", "csat", "ces"]
    accounts_active: int = Field(ge=0, description="accounts with an active subscription")
    accounts_responding: int = Field(ge=0, description="of those, accounts that answered")
    account_response_rate: Number = Field(description="percent of active accounts answering")
    people: int = Field(ge=0, description="people of the active accounts")
    people_responding: int = Field(ge=0, description="of those, people who answered")
    people_response_rate: Number = Field(description="percent of those people answering")


class VocGroup(Schema):
    """One period of the trend, or one segment: both levels and the response rates."""

    key: str = Field(description="the period (2024-03, 2024-Q1) or the segment's value")
    start: datetime
    end: datetime
    respondents: Satisfaction
    accounts: Satisfaction
    response_rates: list[ResponseRate]


class ExcludedScale(Schema):
    """Answers left out of every figure, by kind and declared scale, and why."""

    kind: str
    scale_min: float
    scale_max: float
    responses: int = Field(ge=0)
    reason: str


class SurveyComment(Schema):
    response_id: str
    account_id: str
    person_id: str | None
    kind: str
    score: float
    responded_at: datetime
    comment: str


class VocThresholds(Schema):
    """The divergence rule's switches (docs/metrics.md, "Divergence alert")."""

    periods: int = Field(ge=2)
    period: PeriodName
    nps_min_rise: float = Field(description="NPS points per year the NPS slope must reach")
    csat_min_rise: float = Field(description="CSAT percentage points per year")
    nrr_max_change: float = Field(
        description="NRR percentage points per year at or below which NRR is flat or falling"
    )
    alpha: float = Field(gt=0, lt=1, description="one-sided level of the rising-slope test")


class DivergencePeriod(Schema):
    """One period of the alert's two trends."""

    key: str
    start: datetime
    end: datetime
    nps: Number
    nps_responses: int = Field(ge=0)
    csat: Number
    csat_responses: int = Field(ge=0)
    nrr: Number = Field(description="net revenue retention of the period, percent")
    starting_mrr: float
    retained_mrr: Number = Field(
        description="starting MRR times NRR: what the starting accounts pay at the end"
    )


class DivergenceRule(Schema):
    name: Literal["nps_rising_nrr_flat", "csat_rising_nrr_flat"]
    fired: bool
    satisfaction_slope: Number = Field(description="points (NPS) or pp (CSAT) per year")
    satisfaction_slope_z: Number = Field(description="the slope over its standard error")
    nrr_slope: Number = Field(description="NRR percentage points per year")
    explanation: str


class Divergence(Schema):
    """Satisfaction rising while NRR is flat or falling over the last periods."""

    fired: bool
    start: datetime
    end: datetime
    thresholds: VocThresholds
    nrr_source: str = Field(description="where the per-period NRR comes from")
    nps_slope: Number = Field(description="NPS points per year (weighted least squares)")
    csat_slope: Number = Field(description="CSAT percentage points per year")
    nrr_slope: Number = Field(description="NRR percentage points per year")
    rules: list[DivergenceRule]
    series: list[DivergencePeriod]


class Voc(Schema):
    """NPS, CSAT and CES for answers in [start, end): headline (respondent level), account
    level, response rates, trend per period, segments, excluded scales and comments."""

    start: datetime
    end: datetime
    period: PeriodName
    by: str | None
    ces_direction: CesDirection
    confidence: float
    nps: NpsValue
    csat: CsatValue
    ces: CesValue
    account_level: Satisfaction
    response_rates: list[ResponseRate]
    trend: list[VocGroup]
    segments: list[VocGroup]
    excluded: list[ExcludedScale]
    comments: list[SurveyComment]
    comments_total: int = Field(ge=0, description="answers with a comment in the window")
