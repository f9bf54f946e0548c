"""Adoption: active accounts and users, stickiness, feature adoption, engagement depth, usage
drops and time to first value, as ``closeloop outcomes adoption`` and ``GET /api/outcomes/adoption``
return them. docs/metrics.md (section "Adoption") defines every field."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from closeloop.schemas.base import Number, Schema
from closeloop.schemas.options import DEFAULT_DROP_THRESHOLD as DEFAULT_DROP_THRESHOLD
from closeloop.schemas.options import DEFAULT_DROP_WINDOW_DAYS as DEFAULT_DROP_WINDOW_DAYS
from closeloop.schemas.options import DEFAULT_WINDOW_DAYS as DEFAULT_WINDOW_DAYS


class AdoptionSettings(Schema):
    """The switches the result was computed with (each with its documented default)."""

    start: datetime = Field(description="window start (inclusive)")
    end: datetime = Field(description="window end (exclusive); also the as-of time")
    activity_events: list[str] = Field(
        description="event names that count as activity; empty means any event (the default)"
    )
    features: list[str] = Field(
        description="the key features (event names); by default every event name used in the "
        "window by an eligible account"
    )
    by: str | None = Field(
        description="the accounts column the segments are grouped by, as of start"
    )
    period: str | None = Field(description="'month' for a trend by calendar month, else null")
    drop_threshold: float = Field(description="the relative fall that flags a usage drop (0.4)")
    drop_window_days: int = Field(description="the length of each usage-drop window (60 days)")
    value_event: str | None = Field(description="the event that marks first value")
    value_where: dict[str, str] = Field(
        description="property filter on the value event (key = value, all must hold)"
    )


class ActivitySummary(Schema):
    """Active accounts and users over a window (overall, one segment, or one period)."""

    active_accounts: int = Field(ge=0)
    active_users: int = Field(ge=0, description="distinct people with an activity event")
    mean_daily_active_users: Number = Field(
        description="distinct (person, UTC day) pairs with activity / days in the window"
    )
    stickiness: Number = Field(
        description="mean_daily_active_users / active_users (DAU/MAU); null without active users"
    )


class SegmentActivity(ActivitySummary):
    segment: str | None = Field(description="the value of the --by column (null: no value)")


class PeriodActivity(ActivitySummary):
    period_start: datetime
    period_end: datetime


class AccountActivity(Schema):
    """One active account's usage in the window."""

    account_id: str
    events: int = Field(ge=0, description="activity events in the window")
    active_users: int = Field(ge=0)
    mean_daily_active_users: Number
    stickiness: Number
    key_features_used: int = Field(ge=0, description="distinct key features used (depth)")


class FeatureAdoption(Schema):
    feature: str
    adopted_accounts: int = Field(ge=0, description="eligible accounts with the feature's event")
    eligible_accounts: int = Field(ge=0)
    adoption_rate: Number = Field(description="adopted_accounts / eligible_accounts")
    ci_lower: Number = Field(description="95% Wilson score interval, lower bound")
    ci_upper: Number = Field(description="95% Wilson score interval, upper bound")


class DepthBucket(Schema):
    key_features_used: int = Field(ge=0)
    accounts: int = Field(ge=0)


class EngagementDepth(Schema):
    eligible_accounts: int = Field(ge=0)
    mean_key_features_used: Number
    distribution: list[DepthBucket]


class UsageDrop(Schema):
    account_id: str
    earlier_events: int = Field(ge=0, description="events in [end - 2w, end - w)")
    recent_events: int = Field(ge=0, description="events in [end - w, end)")
    change: Number = Field(description="recent_events / earlier_events - 1")


class UsageDrops(Schema):
    checked_accounts: int = Field(
        ge=0, description="accounts old enough (created at or before end - 2w) with earlier events"
    )
    too_young_accounts: int = Field(ge=0, description="accounts created after end - 2w, excluded")
    flagged: list[UsageDrop]


class ValueCohort(Schema):
    cohort: str = Field(description="signup month YYYY-MM of accounts.created_at, or 'all'")
    accounts: int = Field(ge=0)
    reached_value: int = Field(ge=0)
    censored: int = Field(ge=0, description="not yet reached at the as-of time")
    median_days: Number = Field(description="Kaplan–Meier median; null if not reached by half")
    p75_days: Number = Field(description="Kaplan–Meier time by which 75% reached value")


class TimeToValue(Schema):
    value_event: str
    cohorts: list[ValueCohort]


class Adoption(Schema):
    """``closeloop outcomes adoption --format json`` and ``GET /api/outcomes/adoption``."""

    settings: AdoptionSettings
    overall: ActivitySummary
    segments: list[SegmentActivity] = Field(description="one row per --by value (empty without)")
    periods: list[PeriodActivity] = Field(description="one row per month with --period month")
    accounts: list[AccountActivity] = Field(description="every active account, by account_id")
    feature_adoption: list[FeatureAdoption]
    engagement_depth: EngagementDepth
    usage_drops: UsageDrops
    time_to_value: TimeToValue | None = Field(description="null unless a value event is set")
