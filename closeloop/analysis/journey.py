"""A stage as of a time: counts, per objective the censoring-aware time to complete, the order
objectives are completed in, and a class for every account still in the stage (docs/stages.md).

The warehouse computes ``stage_status`` (one row per account) and the counts; one row per account
that entered comes back, with its objective times, name, owner and ARR as of T. Time to complete
objective j is measured in days from stage entry. An account that completed j (before leaving the
stage) is an event at that duration; any other is censored at min(exited_at, T) - entered_at, so
accounts still in progress are never dropped and never counted as failures.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

import ibis
import ibis.expr.types as ir

from closeloop.data.history import as_of as attributes_as_of
from closeloop.data.outcome_attributes import outcome_attribute
from closeloop.data.warehouse import Warehouse
from closeloop.stats.survival import RiskTable, completion_quantile

SECONDS_PER_DAY = 86_400.0
# How many of the most common completion sequences a view lists.
TOP_SEQUENCES = 5


class AccountClass(StrEnum):
    AHEAD = "ahead"
    ON_TRACK = "on_track"
    BEHIND = "behind"
    STUCK = "stuck"


@dataclass(frozen=True)
class Thresholds:
    """Where the classes cut: quantiles of time to complete, and the days without progress that
    make an overdue account stuck (a stage's ``classes:``, else ``stage_classes:``)."""

    ahead: float
    behind: float
    stuck: float
    stuck_days: float


@dataclass(frozen=True)
class Entrant:
    """An account that entered the stage by T, with its objective completion times."""

    account_id: str
    name: str | None
    owner: str | None
    arr: float | None
    entered_at: datetime
    completed_at: datetime | None
    exited_at: datetime | None
    in_stage: bool
    objectives: tuple[datetime | None, ...]


@dataclass(frozen=True)
class StageCounts:
    in_stage: int
    entered: int
    completed: int
    exited: int
    window_entered: int
    window_completed: int
    window_exited: int
    objectives_completed: tuple[int, ...]
    markers: tuple[int, ...]


@dataclass(frozen=True)
class ObjectiveTimes:
    """Time to complete one objective, in days from entry (Kaplan–Meier over the entrants)."""

    name: str
    entered: int
    completed: int  # in the stage (by its exit), by T; undated objectives: ever, by T
    censored: int
    risk_table: RiskTable
    median_days: float | None
    p75_days: float | None
    completer_median_days: float | None
    dated: bool = True
    completed_after_exit: int = 0  # entrants that completed it only after leaving the stage


@dataclass(frozen=True)
class Quantiles:
    """An objective's q(ahead), q(behind), q(stuck) in days; ``inf`` when the curve never gets
    there (such an objective is never due)."""

    ahead: float
    behind: float
    stuck: float


@dataclass(frozen=True)
class Classified:
    entrant: Entrant
    days_in_stage: float
    days_since_progress: float
    done: tuple[str, ...]
    missing: tuple[str, ...]
    account_class: AccountClass
    reason: str


@dataclass(frozen=True)
class StageData:
    counts: StageCounts
    entrants: tuple[Entrant, ...]


def days_between(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / SECONDS_PER_DAY


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


# -- the warehouse ----------------------------------------------------------------------------


def stage_data(
    status: ir.Table,
    objectives: int,
    markers: int,
    warehouse: Warehouse,
    as_of: datetime,
    window_days: float,
) -> StageData:
    """From a stage's ``stage_status`` as of T (``objectives`` and ``markers`` columns): the
    counts, aggregated in the warehouse, and one row per account that entered by T."""
    since = ibis.literal(as_of - timedelta(days=window_days), type="timestamp")
    now = ibis.literal(as_of, type="timestamp")

    def flag(condition: ir.BooleanValue) -> ir.IntegerValue:
        return condition.fill_null(False).ifelse(1, 0).sum()

    metrics: dict[str, ir.Scalar] = {
        "in_stage": flag(status.in_stage),
        "entered": status.entered_at.count(),
        "completed": status.completed_at.count(),
        "exited": flag(status.exited_incomplete),
        "window_entered": flag(status.entered_at > since),
        "window_completed": flag((status.completed_at > since) & (status.completed_at <= now)),
        "window_exited": flag(status.exited_incomplete & (status.exited_at > since)),
    }
    for index in range(objectives):
        # Only entrants: GREATEST skips nulls, so an account that never entered can carry a time.
        done = status[f"objective_{index}"].notnull() & status.entered_at.notnull()
        metrics[f"objective_{index}"] = flag(done)
    for index in range(markers):
        # A marker describes how accounts in the stage behave now, so only they are counted.
        metrics[f"marker_{index}"] = flag(status.in_stage & status[f"marker_{index}"])
    row = status.aggregate(**metrics).to_pyarrow().to_pylist()[0]

    def number(name: str) -> int:
        return int(row[name] or 0)

    counts = StageCounts(
        in_stage=number("in_stage"),
        entered=number("entered"),
        completed=number("completed"),
        exited=number("exited"),
        window_entered=number("window_entered"),
        window_completed=number("window_completed"),
        window_exited=number("window_exited"),
        objectives_completed=tuple(number(f"objective_{i}") for i in range(objectives)),
        markers=tuple(number(f"marker_{i}") for i in range(markers)),
    )
    return StageData(counts, tuple(_entrants(objectives, warehouse, as_of, status)))


def _entrants(count: int, warehouse: Warehouse, as_of: datetime, status: ir.Table) -> list[Entrant]:
    objectives = [f"objective_{i}" for i in range(count)]
    entered = status.filter(status.entered_at.notnull()).select(
        "account_id", "entered_at", "completed_at", "exited_at", "in_stage", *objectives
    )
    accounts = attributes_as_of(
        warehouse, "account", warehouse.table("accounts"), as_of, key="account_id"
    )
    details = accounts.select(
        _account=accounts.account_id,
        _name=accounts.name,
        _owner=accounts.owner,
        _arr=accounts.arr.cast("float64"),
    )
    joined = entered.left_join(details, entered.account_id == details._account)
    rows = (
        joined.select(*entered.columns, "_name", "_owner", "_arr")
        .order_by("account_id")
        .to_pyarrow()
        .to_pylist()
    )
    return [_entrant(row, objectives) for row in rows]


def _entrant(row: dict[str, Any], objectives: Sequence[str]) -> Entrant:
    return Entrant(
        account_id=str(row["account_id"]),
        name=row["_name"],
        owner=row["_owner"],
        arr=_number(row["_arr"]),
        entered_at=row["entered_at"],
        completed_at=row["completed_at"],
        exited_at=row["exited_at"],
        in_stage=bool(row["in_stage"]),
        objectives=tuple(row[name] for name in objectives),
    )


# -- time to complete -------------------------------------------------------------------------


def completion_duration(entrant: Entrant, index: int, as_of: datetime) -> tuple[float, bool]:
    """Days from entry to objective ``index`` and whether it was completed (in the stage);
    otherwise the days until the account left the stage or T, whichever came first."""
    done = entrant.objectives[index]
    if done is not None and (entrant.exited_at is None or done <= entrant.exited_at):
        return days_between(entrant.entered_at, done), True
    end = min(entrant.exited_at, as_of) if entrant.exited_at is not None else as_of
    return max(days_between(entrant.entered_at, end), 0.0), False


def objective_times(
    name: str,
    index: int,
    entrants: Sequence[Entrant],
    as_of: datetime,
    completed: int,
    *,
    dated: bool = True,
) -> ObjectiveTimes:
    """Kaplan–Meier of objective ``index``'s time to complete over every entrant, and how many
    completed it in the stage (``completed`` counts those by T, in the stage or after leaving it).
    An objective whose completion cannot be dated (``dated`` false: the compiler says T) has no
    times, and every completion by T counts."""
    if not dated:
        empty = RiskTable.from_durations([], [])
        return ObjectiveTimes(
            name, len(entrants), completed, 0, empty, None, None, None, dated=False
        )
    durations = [completion_duration(entrant, index, as_of) for entrant in entrants]
    table = RiskTable.from_durations([d for d, _ in durations], [o for _, o in durations])
    events = sorted(d for d, observed in durations if observed)
    return ObjectiveTimes(
        name=name,
        entered=len(entrants),
        completed=len(events),
        completed_after_exit=completed - len(events),
        censored=len(durations) - len(events),
        risk_table=table,
        median_days=_finite(completion_quantile(table, 0.5)),
        p75_days=_finite(completion_quantile(table, 0.75)),
        completer_median_days=_median(events),
    )


def _median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    middle = len(values) // 2
    if len(values) % 2:
        return values[middle]
    return (values[middle - 1] + values[middle]) / 2


def quantiles(table: RiskTable, thresholds: Thresholds) -> Quantiles:
    return Quantiles(
        ahead=completion_quantile(table, thresholds.ahead),
        behind=completion_quantile(table, thresholds.behind),
        stuck=completion_quantile(table, thresholds.stuck),
    )


def completion_sequences(
    entrants: Sequence[Entrant], names: Sequence[str], dated: Sequence[bool]
) -> list[tuple[tuple[str, ...], int]]:
    """The most common orders in which entrants completed the ``dated`` objectives (those that
    completed at least one), most common first; ties on time go in the defined order."""
    found: Counter[tuple[str, ...]] = Counter()
    for entrant in entrants:
        done = sorted(
            (moment, index)
            for index, moment in enumerate(entrant.objectives)
            if moment is not None and dated[index]
        )
        if done:
            found[tuple(names[index] for _, index in done)] += 1
    ranked = sorted(found.items(), key=lambda item: (-item[1], item[0]))
    return ranked[:TOP_SEQUENCES]


# -- classes ----------------------------------------------------------------------------------


def classify(
    entrant: Entrant,
    names: Sequence[str],
    cuts: Sequence[Quantiles],
    thresholds: Thresholds,
    as_of: datetime,
    dated: Sequence[bool],
) -> Classified:
    """The class of an account in the stage (docs/stages.md, "Classes").

    A missing objective is *due* past its q(behind) and *overdue* past its q(stuck): ``stuck``
    when one is overdue and nothing was completed for ``stuck_days``; ``behind`` when one is
    due; ``ahead`` when none is due and an objective was done before its q(ahead); else
    ``on_track``. An objective that cannot be dated (its quantiles are infinite) is never due
    and never counts as progress or as early.
    """
    days = days_between(entrant.entered_at, as_of)
    done_at = {
        index: days_between(entrant.entered_at, moment)
        for index, moment in enumerate(entrant.objectives)
        if moment is not None
    }
    last_progress = max(
        [
            moment
            for index, moment in enumerate(entrant.objectives)
            if moment is not None and dated[index]
        ],
        default=entrant.entered_at,
    )
    since_progress = days_between(last_progress, as_of)
    missing = [index for index in range(len(names)) if index not in done_at]
    overdue = [index for index in missing if days > cuts[index].stuck]
    due = [index for index in missing if days > cuts[index].behind]
    early = [
        index for index, at in sorted(done_at.items()) if dated[index] and at < cuts[index].ahead
    ]
    if overdue and since_progress >= thresholds.stuck_days:
        index = overdue[0]
        chosen = AccountClass.STUCK
        reason = (
            f"{names[index]!r} overdue (day {days:.0f}, {thresholds.stuck:.0%} of entrants done by "
            f"day {cuts[index].stuck:.1f}); no progress for {since_progress:.0f} days"
        )
    elif overdue:
        index = overdue[0]
        chosen = AccountClass.BEHIND
        reason = (
            f"{names[index]!r} overdue (day {days:.0f}, {thresholds.stuck:.0%} of entrants done by "
            f"day {cuts[index].stuck:.1f}), but progress {since_progress:.0f} days ago"
        )
    elif due:
        index = due[0]
        chosen = AccountClass.BEHIND
        reason = (
            f"{names[index]!r} due (day {days:.0f}, {thresholds.behind:.0%} of entrants done by "
            f"day {cuts[index].behind:.1f})"
        )
    elif early:
        index = early[0]
        chosen = AccountClass.AHEAD
        reason = (
            f"{names[index]!r} done on day {done_at[index]:.1f}, before "
            f"{thresholds.ahead:.0%} of entrants (day {cuts[index].ahead:.1f})"
        )
    else:
        chosen = AccountClass.ON_TRACK
        reason = (
            "every objective done"
            if not missing
            else f"nothing due yet on day {days:.0f} ({len(missing)} objective(s) to go)"
        )
    return Classified(
        entrant=entrant,
        days_in_stage=days,
        days_since_progress=since_progress,
        done=tuple(names[index] for index in sorted(done_at)),
        missing=tuple(names[index] for index in missing),
        account_class=chosen,
        reason=reason,
    )


# -- signals ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlaggedAccount:
    """An account a signal's rule selected, with what the signal's detail shows (as of T)."""

    account_id: str
    name: str | None
    owner: str | None
    arr: float | None
    renewal_date: date | None
    usage_change_60d: float | None
    last_seen_days: float | None


def flagged_accounts(
    units: ir.Table, warehouse: Warehouse, as_of: datetime
) -> list[FlaggedAccount]:
    """One row per account of ``units`` (column ``account_id``): name, owner, ARR and renewal
    date as of T, with the usage change and days since last seen the signals speak of."""
    keys = units.select("account_id").distinct()
    accounts = attributes_as_of(
        warehouse, "account", warehouse.table("accounts"), as_of, key="account_id"
    )
    details = accounts.select(
        _account=accounts.account_id,
        _name=accounts.name,
        _owner=accounts.owner,
        _arr=accounts.arr.cast("float64"),
        _renewal=accounts.renewal_date,
    )
    joined = keys.left_join(details, keys.account_id == details._account).select(
        "account_id", "_name", "_owner", "_arr", "_renewal"
    )
    for built_in in ("usage_change_60d", "last_seen_days"):
        values = outcome_attribute(warehouse, built_in, as_of, f"_{built_in}")
        values = values.rename(_key="account_id")
        joined = joined.left_join(values, joined.account_id == values._key).drop("_key")
    rows = joined.order_by("account_id").to_pyarrow().to_pylist()
    return [
        FlaggedAccount(
            account_id=str(row["account_id"]),
            name=row["_name"],
            owner=row["_owner"],
            arr=_number(row["_arr"]),
            renewal_date=row["_renewal"],
            usage_change_60d=_number(row["_usage_change_60d"]),
            last_seen_days=_number(row["_last_seen_days"]),
        )
        for row in rows
    ]


def _number(value: Any) -> float | None:
    return float(value) if value is not None and not math.isnan(value) else None
