"""Adoption, computed in the warehouse from ``events`` and ``accounts`` (DESIGN §7).

For a window ``[start, end)`` (``end`` is also the as-of time):

- *activity* is an event whose name is one of ``activity_events`` (any event when empty);
  active accounts and users are the distinct ``account_id`` and non-null ``person_id`` with
  activity in the window;
- mean daily active users = distinct (person, UTC day) pairs with activity / days in the window;
  stickiness = that mean / active users (DAU/MAU when the window is a month, the default);
- eligible accounts are the active ones; a key feature (an event name) is adopted by an eligible
  account with at least one of its events in the window; depth is the number of distinct key
  features an eligible account used;
- a usage drop compares activity events in ``[end - w, end)`` with ``[end - 2w, end - w)``;
  accounts created after ``end - 2w`` are too young to have the earlier window and are excluded;
- time to first value: whole days from ``accounts.created_at`` to the first value event before
  ``end`` (0 when it came before signup), censored at ``end``; one risk table per signup month.

Python only receives aggregates: counts per group, flagged accounts, risk-table rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import ibis
import ibis.expr.types as ir

from closeloop.data import history
from closeloop.data.warehouse import Warehouse
from closeloop.stats.survival import RiskTable, kaplan_meier

SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class ActivityCounts:
    """Active accounts and users over ``days`` days, with the derived stickiness."""

    active_accounts: int
    active_users: int
    person_days: int
    days: float

    @property
    def mean_daily_active_users(self) -> float:
        return self.person_days / self.days if self.days > 0 else math.nan

    @property
    def stickiness(self) -> float:
        if self.active_users == 0:
            return math.nan
        return self.mean_daily_active_users / self.active_users


@dataclass(frozen=True)
class AccountUsage:
    account_id: str
    events: int
    counts: ActivityCounts
    key_features_used: int


@dataclass(frozen=True)
class FeatureCount:
    feature: str
    adopted_accounts: int
    eligible_accounts: int


@dataclass(frozen=True)
class DropRow:
    account_id: str
    earlier_events: int
    recent_events: int


@dataclass(frozen=True)
class DropResult:
    checked_accounts: int
    too_young_accounts: int
    flagged: tuple[DropRow, ...]


@dataclass(frozen=True)
class CohortValue:
    cohort: str
    accounts: int
    reached_value: int
    median_days: float | None
    p75_days: float | None


def activity_events(
    warehouse: Warehouse, start: datetime, end: datetime, names: Sequence[str]
) -> ir.Table:
    """Activity events in ``[start, end)``: those named in ``names``, or any event."""
    events = warehouse.table("events")
    window = events.filter(events.timestamp >= start, events.timestamp < end)
    return window.filter(window.name.isin(list(names))) if names else window


def activity_counts(
    activity: ir.Table, keys: Mapping[str, ir.Value], days: float
) -> dict[tuple[object, ...], ActivityCounts]:
    """Active accounts, users and person-days per group of ``keys`` (none: one overall row)."""
    keyed = activity.mutate(**keys) if keys else activity
    names = list(keys)
    totals = keyed.aggregate(
        by=names,
        active_accounts=keyed.account_id.nunique(),
        active_users=keyed.person_id.nunique(),
    )
    people = keyed.filter(keyed.person_id.notnull())
    pairs = people.select(*names, "person_id", day=people.timestamp.truncate("D")).distinct()
    person_days = pairs.aggregate(by=names, person_days=pairs.count())
    days_by_key = {
        tuple(row[name] for name in names): int(row["person_days"])
        for row in person_days.execute().to_dict("records")
    }
    result: dict[tuple[object, ...], ActivityCounts] = {}
    for row in totals.execute().to_dict("records"):
        key = tuple(row[name] for name in names)
        result[key] = ActivityCounts(
            int(row["active_accounts"]), int(row["active_users"]), days_by_key.get(key, 0), days
        )
    return result


def overall_activity(activity: ir.Table, days: float) -> ActivityCounts:
    counts = activity_counts(activity, {}, days)
    return counts.get((), ActivityCounts(0, 0, 0, days))


def activity_by_column(
    warehouse: Warehouse, activity: ir.Table, column: str, start: datetime, days: float
) -> dict[str | None, ActivityCounts]:
    """Activity per value of an ``accounts`` column as of ``start`` (the attribute history, else
    the stored value), as text; null stays null."""
    accounts = history.as_of(
        warehouse, "account", warehouse.table("accounts"), start, key="account_id"
    )
    labels = accounts.select(
        account_id=accounts.account_id, segment=accounts[column].cast("string")
    )
    joined = activity.join(labels, "account_id")
    counts = activity_counts(joined, {"segment_key": joined.segment}, days)
    return {_text_or_none(key[0]): value for key, value in counts.items()}


def activity_by_month(
    activity: ir.Table, start: datetime, end: datetime
) -> list[tuple[datetime, datetime, ActivityCounts]]:
    """Activity per calendar month overlapping ``[start, end)``; each month clipped to it."""
    counts = activity_counts(activity, {"month": activity.timestamp.truncate("M")}, 1.0)
    by_month = {_as_datetime(key[0]): value for key, value in counts.items()}
    rows = []
    for month_start in _month_starts(start, end):
        period_start = max(month_start, start)
        period_end = min(_next_month(month_start), end)
        days = (period_end - period_start).total_seconds() / SECONDS_PER_DAY
        found = by_month.get(month_start, ActivityCounts(0, 0, 0, days))
        rows.append(
            (
                period_start,
                period_end,
                ActivityCounts(found.active_accounts, found.active_users, found.person_days, days),
            )
        )
    return rows


def account_usage(activity: ir.Table, depth: Mapping[str, int], days: float) -> list[AccountUsage]:
    """Per active account: activity events, users, person-days and its depth (from
    :func:`depth_per_account`)."""
    counts = activity_counts(activity, {"account_key": activity.account_id}, days)
    events = activity.aggregate(by="account_id", events=activity.count())
    event_counts = {
        str(row["account_id"]): int(row["events"]) for row in events.execute().to_dict("records")
    }
    return [
        AccountUsage(str(key[0]), event_counts[str(key[0])], value, depth.get(str(key[0]), 0))
        for key, value in sorted(counts.items(), key=lambda item: str(item[0][0]))
    ]


def features_used(
    warehouse: Warehouse, activity: ir.Table, start: datetime, end: datetime
) -> list[str]:
    """The default key features: every event name used in the window by an eligible account."""
    events = warehouse.table("events")
    window = events.filter(
        events.timestamp >= start,
        events.timestamp < end,
        events.account_id.isin(activity.select("account_id").distinct().account_id),
    )
    names = window.select("name").distinct().order_by("name").execute()
    return [str(name) for name in names["name"]]


def feature_adoption(
    warehouse: Warehouse,
    activity: ir.Table,
    start: datetime,
    end: datetime,
    features: Sequence[str],
) -> tuple[list[FeatureCount], dict[int, int], int]:
    """Per feature the eligible accounts that used it, the depth distribution and the eligible."""
    eligible_ids = activity.select("account_id").distinct()
    eligible = int(eligible_ids.count().execute())
    used = _feature_events(warehouse, eligible_ids, start, end, features)
    per_feature = used.aggregate(by="name", adopted=used.account_id.nunique())
    adopted = {
        str(row["name"]): int(row["adopted"]) for row in per_feature.execute().to_dict("records")
    }
    per_account = used.aggregate(by="account_id", depth=used.name.nunique())
    distribution_table = per_account.aggregate(by="depth", accounts=per_account.count())
    distribution = {
        int(row["depth"]): int(row["accounts"])
        for row in distribution_table.execute().to_dict("records")
    }
    without = eligible - sum(distribution.values())
    if eligible:
        distribution[0] = without
    counts = [FeatureCount(name, adopted.get(name, 0), eligible) for name in features]
    return counts, dict(sorted(distribution.items())), eligible


def _feature_events(
    warehouse: Warehouse,
    eligible_ids: ir.Table,
    start: datetime,
    end: datetime,
    features: Sequence[str],
) -> ir.Table:
    events = warehouse.table("events")
    return events.filter(
        events.timestamp >= start,
        events.timestamp < end,
        events.name.isin(list(features)),
        events.account_id.isin(eligible_ids.account_id),
    )


def depth_per_account(
    warehouse: Warehouse,
    activity: ir.Table,
    start: datetime,
    end: datetime,
    features: Sequence[str],
) -> dict[str, int]:
    """Distinct key features (any event of that name, activity or not) per eligible account."""
    eligible_ids = activity.select("account_id").distinct()
    used = _feature_events(warehouse, eligible_ids, start, end, features)
    per_account = used.aggregate(by="account_id", depth=used.name.nunique())
    return {
        str(row["account_id"]): int(row["depth"])
        for row in per_account.execute().to_dict("records")
    }


def usage_drops(
    warehouse: Warehouse,
    end: datetime,
    names: Sequence[str],
    *,
    threshold: float,
    window_days: int,
) -> DropResult:
    """Accounts whose activity events fell by at least ``threshold`` between the two windows."""
    window = timedelta(days=window_days)
    earliest, middle = end - 2 * window, end - window
    accounts = warehouse.table("accounts")
    old = accounts.filter(accounts.created_at <= earliest).select("account_id")
    young = accounts.filter(accounts.created_at > earliest, accounts.created_at < end)
    activity = activity_events(warehouse, earliest, end, names)
    activity = activity.filter(activity.account_id.isin(old.account_id))
    per_account = activity.aggregate(
        by="account_id",
        earlier_events=ibis.ifelse(activity.timestamp < middle, 1, 0).sum(),
        recent_events=ibis.ifelse(activity.timestamp >= middle, 1, 0).sum(),
    )
    checked = per_account.filter(per_account.earlier_events > 0)
    # recent <= (1 - threshold) * earlier, kept in integers-and-products so 0.6 * 10 is not 6.000…1
    flagged = checked.filter(
        checked.recent_events.cast("float64")
        <= checked.earlier_events.cast("float64") * (1.0 - threshold) + 1e-9
    ).order_by("account_id")
    rows = tuple(
        DropRow(str(row["account_id"]), int(row["earlier_events"]), int(row["recent_events"]))
        for row in flagged.execute().to_dict("records")
    )
    return DropResult(int(checked.count().execute()), int(young.count().execute()), rows)


def time_to_value(
    warehouse: Warehouse,
    end: datetime,
    value_event: str,
    value_where: Mapping[str, str],
) -> list[CohortValue]:
    """Kaplan–Meier time to first value per signup month (and ``all``), censored at ``end``."""
    accounts = warehouse.table("accounts")
    signed_up = accounts.filter(accounts.created_at < end).select("account_id", "created_at")
    events = warehouse.table("events")
    value = events.filter(events.name == value_event, events.timestamp < end)
    for key, expected in value_where.items():
        value = value.filter(value.properties.cast("json")[key].unwrap_as("string") == expected)
    first = value.aggregate(by="account_id", first_value=value.timestamp.min())
    joined = signed_up.left_join(first, "account_id")
    created_seconds = joined.created_at.epoch_seconds()
    reached = joined.first_value.notnull()
    stop_seconds = ibis.ifelse(
        reached, joined.first_value.epoch_seconds(), ibis.literal(end).epoch_seconds()
    )
    seconds = ibis.greatest(stop_seconds - created_seconds, 0)
    rows = joined.select(
        year=joined.created_at.year(),
        month=joined.created_at.month(),
        days=(seconds / SECONDS_PER_DAY).floor().cast("int64"),
        reached=reached,
    )
    table = rows.aggregate(by=["year", "month", "days", "reached"], accounts=rows.count())
    cells: dict[str, list[tuple[float, bool, int]]] = {}
    for row in table.execute().to_dict("records"):
        cohort = f"{int(row['year']):04d}-{int(row['month']):02d}"
        cells.setdefault(cohort, []).append(
            (float(row["days"]), bool(row["reached"]), int(row["accounts"]))
        )
    result = [_cohort_value(cohort, cells[cohort]) for cohort in sorted(cells)]
    everyone = [cell for cohort in sorted(cells) for cell in cells[cohort]]
    result.append(_cohort_value("all", everyone))
    return result


def _cohort_value(cohort: str, cells: Sequence[tuple[float, bool, int]]) -> CohortValue:
    table = RiskTable.from_counts(cells)
    fit = kaplan_meier(table)
    p75 = next(
        (t for t, s in zip(fit.times, fit.survival, strict=True) if s <= 0.25),
        None,
    )
    return CohortValue(
        cohort=cohort,
        accounts=sum(count for _, _, count in cells),
        reached_value=sum(count for _, observed, count in cells if observed),
        median_days=fit.median,
        p75_days=p75,
    )


def _text_or_none(value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def _as_datetime(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    to_pydatetime = getattr(value, "to_pydatetime", None)
    if callable(to_pydatetime):
        moment = to_pydatetime()
        return moment.replace(tzinfo=None) if isinstance(moment, datetime) else None
    return None


def _month_starts(start: datetime, end: datetime) -> list[datetime]:
    month = datetime(start.year, start.month, 1)
    months = []
    while month < end:
        months.append(month)
        month = _next_month(month)
    return months


def _next_month(month: datetime) -> datetime:
    return datetime(month.year + month.month // 12, month.month % 12 + 1, 1)
