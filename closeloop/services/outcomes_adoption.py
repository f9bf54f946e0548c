"""Adoption outcomes as one schema model (``closeloop outcomes adoption``,
``GET /api/outcomes/adoption``); the computation lives in :mod:`closeloop.analysis.adoption`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from closeloop.analysis import adoption as analysis
from closeloop.errors import ConfigurationError
from closeloop.schemas.adoption import (
    DEFAULT_DROP_THRESHOLD,
    DEFAULT_DROP_WINDOW_DAYS,
    DEFAULT_WINDOW_DAYS,
    AccountActivity,
    ActivitySummary,
    Adoption,
    AdoptionSettings,
    DepthBucket,
    EngagementDepth,
    FeatureAdoption,
    PeriodActivity,
    SegmentActivity,
    TimeToValue,
    UsageDrop,
    UsageDrops,
    ValueCohort,
)
from closeloop.services.project import Workspace
from closeloop.stats.proportions import wilson_bounds

PERIODS = ("month",)
Z_95 = 1.959963984540054
HIDDEN_COLUMNS = ("account_id", "properties")


def window(
    at: datetime | None, start: datetime | None, end: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """``--at T`` (default now) means ``[T - 30 days, T)``; ``--start``/``--end`` give it whole."""
    if at is not None and (start is not None or end is not None):
        raise ConfigurationError("give either --at or --start and --end, not both")
    if (start is None) != (end is None):
        raise ConfigurationError("--start and --end go together (or use --at)")
    if start is not None and end is not None:
        if start >= end:
            raise ConfigurationError(
                f"--start {start.isoformat()} must be before --end {end.isoformat()}"
            )
        return start, end
    moment = at if at is not None else now
    return moment - timedelta(days=DEFAULT_WINDOW_DAYS), moment


def parse_where(items: Sequence[str]) -> dict[str, str]:
    """``key=value`` property filters (``--value-where plan=pro``)."""
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(f"--value-where {item!r} is not KEY=VALUE (e.g. source=app)")
        result[key.strip()] = value.strip()
    return result


def adoption(
    workspace: Workspace,
    start: datetime,
    end: datetime,
    *,
    by: str | None = None,
    period: str | None = None,
    activity_events: Sequence[str] = (),
    features: Sequence[str] = (),
    drop_threshold: float = DEFAULT_DROP_THRESHOLD,
    drop_window_days: int = DEFAULT_DROP_WINDOW_DAYS,
    value_event: str | None = None,
    value_where: Mapping[str, str] | None = None,
) -> Adoption:
    """Every adoption metric of docs/metrics.md ("Adoption") for the window ``[start, end)``."""
    warehouse = workspace.warehouse
    if start >= end:
        raise ConfigurationError(f"start {start.isoformat()} must be before end {end.isoformat()}")
    if period is not None and period not in PERIODS:
        raise ConfigurationError(f"period {period!r} is not one of: {', '.join(PERIODS)}")
    if not 0 < drop_threshold <= 1:
        raise ConfigurationError(f"drop threshold {drop_threshold} must be in (0, 1], e.g. 0.4")
    if drop_window_days < 1:
        raise ConfigurationError(f"drop window {drop_window_days} must be at least 1 day")
    if value_where and not value_event:
        raise ConfigurationError("--value-where needs --value-event")
    if by is not None:
        columns = [c for c in warehouse.table("accounts").columns if c not in HIDDEN_COLUMNS]
        if by not in columns:
            raise ConfigurationError(
                f"cannot group by {by!r}: accounts has no such column "
                f"(one of: {', '.join(sorted(columns))})"
            )
    where = dict(value_where or {})
    days = (end - start).total_seconds() / analysis.SECONDS_PER_DAY
    activity = analysis.activity_events(warehouse, start, end, activity_events)
    key_features = (
        sorted(set(features))
        if features
        else analysis.features_used(warehouse, activity, start, end)
    )
    counts, distribution, eligible = analysis.feature_adoption(
        warehouse, activity, start, end, key_features
    )
    depth = analysis.depth_per_account(warehouse, activity, start, end, key_features)
    drops = analysis.usage_drops(
        warehouse, end, activity_events, threshold=drop_threshold, window_days=drop_window_days
    )
    return Adoption(
        settings=AdoptionSettings(
            start=start,
            end=end,
            activity_events=sorted(set(activity_events)),
            features=key_features,
            by=by,
            period=period,
            drop_threshold=drop_threshold,
            drop_window_days=drop_window_days,
            value_event=value_event,
            value_where=where,
        ),
        overall=ActivitySummary(**_summary(analysis.overall_activity(activity, days))),
        segments=[
            SegmentActivity(segment=segment, **_summary(value))
            for segment, value in sorted(
                analysis.activity_by_column(warehouse, activity, by, start, days).items(),
                key=lambda item: (item[0] is None, item[0] or ""),
            )
        ]
        if by is not None
        else [],
        periods=[
            PeriodActivity(period_start=begin, period_end=finish, **_summary(value))
            for begin, finish, value in analysis.activity_by_month(activity, start, end)
        ]
        if period == "month"
        else [],
        accounts=[
            AccountActivity(
                account_id=usage.account_id,
                events=usage.events,
                active_users=usage.counts.active_users,
                mean_daily_active_users=usage.counts.mean_daily_active_users,
                stickiness=usage.counts.stickiness,
                key_features_used=usage.key_features_used,
            )
            for usage in analysis.account_usage(activity, depth, days)
        ],
        feature_adoption=[_feature(count) for count in counts],
        engagement_depth=EngagementDepth(
            eligible_accounts=eligible,
            mean_key_features_used=(
                sum(d * n for d, n in distribution.items()) / eligible if eligible else math.nan
            ),
            distribution=[
                DepthBucket(key_features_used=d, accounts=n) for d, n in distribution.items()
            ],
        ),
        usage_drops=UsageDrops(
            checked_accounts=drops.checked_accounts,
            too_young_accounts=drops.too_young_accounts,
            flagged=[
                UsageDrop(
                    account_id=row.account_id,
                    earlier_events=row.earlier_events,
                    recent_events=row.recent_events,
                    change=row.recent_events / row.earlier_events - 1,
                )
                for row in drops.flagged
            ],
        ),
        time_to_value=TimeToValue(
            value_event=value_event,
            cohorts=[
                ValueCohort(
                    cohort=cohort.cohort,
                    accounts=cohort.accounts,
                    reached_value=cohort.reached_value,
                    censored=cohort.accounts - cohort.reached_value,
                    median_days=cohort.median_days,
                    p75_days=cohort.p75_days,
                )
                for cohort in analysis.time_to_value(warehouse, end, value_event, where)
            ],
        )
        if value_event
        else None,
    )


def _summary(counts: analysis.ActivityCounts) -> dict[str, float | int]:
    return {
        "active_accounts": counts.active_accounts,
        "active_users": counts.active_users,
        "mean_daily_active_users": counts.mean_daily_active_users,
        "stickiness": counts.stickiness,
    }


def _feature(count: analysis.FeatureCount) -> FeatureAdoption:
    if count.eligible_accounts == 0:
        return FeatureAdoption(
            feature=count.feature,
            adopted_accounts=0,
            eligible_accounts=0,
            adoption_rate=None,
            ci_lower=None,
            ci_upper=None,
        )
    lower, upper = wilson_bounds(
        float(count.adopted_accounts), float(count.eligible_accounts), Z_95
    )
    return FeatureAdoption(
        feature=count.feature,
        adopted_accounts=count.adopted_accounts,
        eligible_accounts=count.eligible_accounts,
        adoption_rate=count.adopted_accounts / count.eligible_accounts,
        # At 0 (or n) successes the Wilson bound is exactly 0 (or 1); rounding would miss it.
        ci_lower=0.0 if count.adopted_accounts == 0 else float(lower),
        ci_upper=1.0 if count.adopted_accounts == count.eligible_accounts else float(upper),
    )
