"""The board report (``closeloop board``, ``GET /api/board``, the dashboard's home page).

Three layers for a period ``[start, end)``, in the order a board reads them: outcomes (revenue
retention, churn, expansion by source, each with its trend), leading indicators (adoption, time to
value, NPS/CSAT, accounts at risk), then the initiatives (every job's verdict, measured effect and
revenue value) and the team's activity last. Each part is composed from the result another
command returns (named in its ``source``); a part the project's data cannot answer carries
``status: unavailable`` and the reason, never a made-up number.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import Field

from closeloop.schemas.adoption import ActivitySummary, FeatureAdoption, ValueCohort
from closeloop.schemas.base import Number, Schema
from closeloop.schemas.plans import AchievedGroup
from closeloop.schemas.revenue_outcomes import RevenueRow
from closeloop.schemas.voc import CsatValue, NpsValue

PartStatus = Literal["ok", "unavailable"]
TrendPeriod = Literal["month", "quarter"]
Decision = Literal["ship", "keep_running", "stop", "review"]


class Part(Schema):
    """What every part of the report has: whether it could be computed, why not, and where
    its numbers come from (the command that gives the same numbers)."""

    status: PartStatus
    reason: str | None = Field(description="why the part is unavailable (null when ok)")
    source: str = Field(description="the command whose result the part is taken from")


# -- layer 1: outcomes -----------------------------------------------------------------------


class Outcomes(Part):
    """NRR, GRR, logo and revenue churn and expansion by source for the period, and the same
    figures for each of the preceding periods (the trend, oldest first, the period's own last)."""

    period: RevenueRow | None = Field(description="the report's period as one window")
    trend_period: TrendPeriod
    trend: list[RevenueRow] = Field(description="per month (or quarter), ending with the period")


# -- layer 2: leading indicators -------------------------------------------------------------


class AdoptionPart(Part):
    overall: ActivitySummary | None
    features: list[FeatureAdoption] = Field(description="key features, most adopted first")
    usage_drops: int | None = Field(description="accounts whose usage fell (at the period end)")
    checked_accounts: int | None = Field(description="accounts checked for a usage drop")


class TimeToValuePart(Part):
    value_event: str | None = Field(description="the event that marks first value")
    overall: ValueCohort | None = Field(
        description="every account created before the period end (Kaplan–Meier, censored)"
    )
    cohorts: list[ValueCohort] = Field(description="per signup month")


class VoicePart(Part):
    nps: NpsValue | None
    csat: CsatValue | None


class RiskSignal(Schema):
    id: str
    kind: str
    description: str
    accounts: int = Field(ge=0)
    arr_at_risk: float = Field(ge=0)


class RiskPart(Part):
    """Accounts flagged by the signals at the period end (an account flagged twice counts once)."""

    as_of: datetime
    accounts_at_risk: int = Field(ge=0)
    arr_at_risk: float = Field(ge=0, description="sum of the distinct flagged accounts' ARR")
    signals: list[RiskSignal]


class LeadingIndicators(Schema):
    adoption: AdoptionPart
    time_to_value: TimeToValuePart
    voice_of_customer: VoicePart
    risk: RiskPart


# -- the initiatives ----------------------------------------------------------------------------


class Initiative(Schema):
    """One job: its verdict, its completion lift with the interval, and its value in money."""

    name: str
    job_status: str = Field(description="live, paused or stopped")
    launched_at: datetime | None
    as_of: datetime | None = Field(description="measured as of min(last tick, period end)")
    status: PartStatus
    reason: str | None
    enrolled: int = Field(ge=0, description="enrollments up to as_of (both arms)")
    decision: Decision | None
    decision_words: str | None = Field(description="the verdict in words ('Ship it')")
    summary: str | None
    lift: Number = Field(description="completion rate difference, treatment − holdout")
    lift_lower: Number
    lift_upper: Number
    relative_lift: Number
    lift_status: str | None = Field(description="positive, negative, inconclusive, ...")
    added_arr: Number = Field(description="added ARR a year, in the subscriptions' currency")
    added_arr_lower: Number
    added_arr_upper: Number
    revenue_horizon_days: int | None = Field(description="the horizon the added ARR is from")
    revenue_status: str | None


class Initiatives(Part):
    jobs: list[Initiative] = Field(description="every job launched before the period end")


# -- layer 3: activity -----------------------------------------------------------------------


class Activity(Part):
    jobs_launched: int = Field(ge=0, description="jobs launched in the period")
    jobs_running: int = Field(ge=0, description="jobs launched before the end, ticked since start")
    accounts_enrolled: int = Field(ge=0, description="enrollments entered in the period")
    messages: dict[str, int] = Field(description="messages fallen due in the period, by status")
    messages_sent: int = Field(ge=0)
    messages_failed: int = Field(ge=0, description="dead-lettered")
    success_plans: AchievedGroup | None = Field(
        description="success-plan objectives decided by the period end: met and missed"
    )


class BoardReport(Schema):
    """``closeloop board --format json`` and ``GET /api/board``."""

    project: str
    start: date
    end: date = Field(description="exclusive")
    outcomes: Outcomes
    leading: LeadingIndicators
    initiatives: Initiatives
    activity: Activity
    warnings: list[str]
