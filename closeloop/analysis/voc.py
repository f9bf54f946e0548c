"""Voice of the customer in the warehouse: survey answers classified and counted per group.

Python sees only counts and sums per (group, kind, level), a few scale pairs and the capped
comment list; ``closeloop.stats.voc`` turns the counts into NPS, CSAT and CES with intervals.

Classification (docs/metrics.md, "Voice of the customer"):

* **NPS** on a declared scale [min, max] with ``max - min >= 10``: the score is rescaled to 0-10,
  ``10 (score - min) / (max - min)``; promoter at 9 or more, detractor at 6 or less. Coarser
  scales (1-5, 1-7, …) are excluded and reported: the 9/6 cut-offs do not fall on their points.
* **CSAT** on a scale of 2 to 11 points: satisfied when the score is in the top two points
  (``score >= max - 1``); wider scales are excluded and reported.
* **CES** on any scale: the mean is taken on the most answered declared scale, other scales
  rescaled linearly onto it; "easy" is the easiest third of the scale (``position <= 1/3`` from
  the easy end, which is the low end by default: 1-3 on 1-7, 1-2 on 1-5).
* Scores outside their declared scale are excluded and reported.

Account level keeps each account's latest valid answer of each kind in the group (ties: the
greatest ``response_id``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import ibis
import ibis.expr.types as ir

from closeloop.data.history import as_of
from closeloop.data.warehouse import Warehouse
from closeloop.errors import NotFoundError

Period = Literal["month", "quarter"]
Direction = Literal["lower_is_easier", "higher_is_easier"]
KINDS = ("nps", "csat", "ces")
LEVELS = ("respondent", "account")
NPS_MIN_WIDTH = 10.0
CSAT_MAX_WIDTH = 10.0
EASY_THIRD = 1.0 / 3.0
_TOLERANCE = 1e-9
NO_VALUE = "(none)"


@dataclass(frozen=True)
class KindCounts:
    """Sufficient statistics of one kind at one level in one group."""

    n: int = 0
    promoters: int = 0
    detractors: int = 0
    satisfied: int = 0
    easy: int = 0
    total: float = 0.0
    total_squares: float = 0.0


@dataclass(frozen=True)
class Reach:
    """Who could answer and who did, for one kind in one group."""

    accounts_active: int = 0
    accounts_responding: int = 0
    people: int = 0
    people_responding: int = 0


@dataclass
class GroupCounts:
    key: str
    start: datetime | None = None
    end: datetime | None = None
    counts: dict[tuple[str, str], KindCounts] = field(default_factory=dict)
    reach: dict[str, Reach] = field(default_factory=dict)


@dataclass(frozen=True)
class Excluded:
    kind: str
    scale_min: float
    scale_max: float
    responses: int
    reason: str


@dataclass(frozen=True)
class CommentRow:
    response_id: str
    account_id: str
    person_id: str | None
    kind: str
    score: float
    responded_at: datetime
    comment: str


@dataclass(frozen=True)
class VocCounts:
    overall: GroupCounts
    trend: list[GroupCounts]
    segments: list[GroupCounts]
    ces_scale: tuple[float, float] | None
    excluded: list[Excluded]
    comments: list[CommentRow]
    comments_total: int


def period_starts(start: datetime, end: datetime, period: Period) -> list[datetime]:
    """The calendar months or quarters that meet [start, end), each as its first instant.

    >>> [d.month for d in period_starts(datetime(2024, 2, 10), datetime(2024, 7, 1), "quarter")]
    [1, 4]
    """
    step = 1 if period == "month" else 3
    month = (start.month - 1) // step * step + 1
    current = datetime(start.year, month, 1)
    starts = []
    while current < end:
        starts.append(current)
        current = add_months(current, step)
    return starts


def add_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1)


def period_label(moment: datetime, period: Period) -> str:
    if period == "month":
        return f"{moment.year}-{moment.month:02d}"
    return f"{moment.year}-Q{(moment.month - 1) // 3 + 1}"


def _flag(condition: ir.BooleanValue) -> ir.IntegerValue:
    """1 or 0 (PostgreSQL casts no boolean to an integer)."""
    flag: ir.IntegerValue = condition.ifelse(1, 0)
    return flag


def _classified(
    responses: ir.Table, ces_scale: tuple[float, float] | None, direction: Direction
) -> ir.Table:
    width = responses.scale_max - responses.scale_min
    position = (responses.score - responses.scale_min) / width
    in_scale = (
        (width > 0)
        & (responses.score >= responses.scale_min)
        & (responses.score <= responses.scale_max)
    )
    nps_points = 10.0 * position
    valid = (
        ((responses.kind == "nps") & (width >= NPS_MIN_WIDTH - _TOLERANCE))
        | ((responses.kind == "csat") & (width <= CSAT_MAX_WIDTH + _TOLERANCE))
        | (responses.kind == "ces")
    ) & in_scale
    easy_position = position if direction == "lower_is_easier" else 1.0 - position
    if ces_scale is None:
        ces_value = responses.score
    else:
        low, high = ces_scale
        ces_value = low + position * (high - low)
    return responses.mutate(
        _valid=valid,
        _promoter=_flag(nps_points >= 9 - _TOLERANCE),
        _detractor=_flag(nps_points <= 6 + _TOLERANCE),
        _satisfied=_flag(responses.score >= responses.scale_max - 1 - _TOLERANCE),
        _easy=_flag(easy_position <= EASY_THIRD + _TOLERANCE),
        _ces=ces_value.cast("float64"),
    )


def _sums(rows: ir.Table, keys: Sequence[str]) -> ir.Table:
    return rows.group_by([*keys, "kind"]).aggregate(
        n=rows.count(),
        promoters=rows._promoter.sum(),
        detractors=rows._detractor.sum(),
        satisfied=rows._satisfied.sum(),
        easy=rows._easy.sum(),
        total=rows._ces.sum(),
        total_squares=(rows._ces * rows._ces).sum(),
    )


def _latest_per_account(rows: ir.Table, keys: Sequence[str]) -> ir.Table:
    window = ibis.window(
        group_by=[*keys, rows.account_id, rows.kind],
        order_by=[ibis.desc(rows.responded_at), ibis.desc(rows.response_id)],
    )
    ranked = rows.mutate(_rank=ibis.row_number().over(window))
    return ranked.filter(ranked._rank == 0).drop("_rank")


def _records(table: ir.Table) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = table.execute().to_dict("records")
    return records


def _int(value: Any) -> int:
    return 0 if value is None or value != value else int(value)


def _float(value: Any) -> float:
    return 0.0 if value is None or value != value else float(value)


def _fill(groups: dict[str, GroupCounts], records: list[dict[str, Any]], level: str) -> None:
    for row in records:
        group = groups.get(str(row["_group"]))
        if group is None:
            continue
        group.counts[(str(row["kind"]), level)] = KindCounts(
            n=_int(row["n"]),
            promoters=_int(row["promoters"]),
            detractors=_int(row["detractors"]),
            satisfied=_int(row["satisfied"]),
            easy=_int(row["easy"]),
            total=_float(row["total"]),
            total_squares=_float(row["total_squares"]),
        )


def _group_text(value: ir.Value) -> ir.StringValue:
    text: ir.StringValue = value.cast("string").fill_null(NO_VALUE)
    return text


def account_attribute(
    warehouse: Warehouse, column: str, at: datetime
) -> ir.Table:  # account_id, _group
    """Each account's ``column`` as of ``at`` (attribute history), as text."""
    accounts = warehouse.table("accounts")
    if column == "account_id" or column not in accounts.columns:
        choices = ", ".join(c for c in accounts.columns if c not in ("account_id", "properties"))
        raise NotFoundError(
            f"--by {column!r}: accounts have no attribute {column!r}; group by one of: {choices}"
        )
    accounts = as_of(warehouse, "account", accounts, at, key="account_id")
    return accounts.select(account_id=accounts.account_id, _group=_group_text(accounts[column]))


def _active_accounts(warehouse: Warehouse, start: datetime, end: datetime) -> ir.Table:
    """Accounts with a subscription active on some day of [start, end)."""
    subscriptions = warehouse.table("subscriptions")
    first_day, last_day = start.date(), (end - timedelta(microseconds=1)).date()
    active = subscriptions.filter(
        (subscriptions.start_date <= ibis.literal(last_day, type="date"))
        & (
            subscriptions.end_date.isnull()
            | (subscriptions.end_date > ibis.literal(first_day, type="date"))
        )
    )
    return active.select("account_id").distinct()


def _reach(
    warehouse: Warehouse,
    valid: ir.Table,
    start: datetime,
    end: datetime,
    segments: ir.Table | None,
) -> list[dict[str, Any]]:
    """Per group and kind: active accounts, responding accounts, their people, respondents."""
    active = _active_accounts(warehouse, start, end)
    people = warehouse.table("people")
    people = people.filter(
        people.created_at.isnull() | (people.created_at < ibis.literal(end, type="timestamp"))
    )
    if segments is not None:
        active = active.inner_join(segments, "account_id")
    else:
        active = active.mutate(_group=ibis.literal("all"))
    per_person = people.inner_join(active, "account_id")
    denominators = (
        active.group_by("_group")
        .aggregate(accounts_active=active.account_id.nunique())
        .left_join(
            per_person.group_by("_group").aggregate(people=per_person.person_id.nunique()),
            "_group",
        )
    )
    denominators = denominators.select(
        "_group", "accounts_active", people=denominators.people.fill_null(0)
    )
    answered = valid.filter(valid.account_id.isin(active.account_id))
    if segments is not None:
        answered = answered.inner_join(segments, "account_id")
    else:
        answered = answered.mutate(_group=ibis.literal("all"))
    numerators = answered.group_by(["_group", "kind"]).aggregate(
        accounts_responding=answered.account_id.nunique(),
        people_responding=answered.person_id.nunique(),
    )
    joined = denominators.left_join(numerators, "_group")
    return _records(
        joined.select(
            _group=denominators._group,
            kind=numerators.kind,
            accounts_active=denominators.accounts_active,
            people=denominators.people,
            accounts_responding=numerators.accounts_responding.fill_null(0),
            people_responding=numerators.people_responding.fill_null(0),
        )
    )


def _fill_reach(groups: dict[str, GroupCounts], records: list[dict[str, Any]]) -> None:
    for row in records:
        group = groups.get(str(row["_group"]))
        if group is None:
            continue
        reach = Reach(
            accounts_active=_int(row["accounts_active"]),
            accounts_responding=_int(row["accounts_responding"]),
            people=_int(row["people"]),
            people_responding=_int(row["people_responding"]),
        )
        for kind in KINDS:  # a kind nobody answered still has its denominators
            group.reach.setdefault(kind, Reach(reach.accounts_active, 0, reach.people, 0))
        if row["kind"] in KINDS:
            group.reach[str(row["kind"])] = reach


def voc_counts(
    warehouse: Warehouse,
    start: datetime,
    end: datetime,
    *,
    period: Period = "month",
    by: str | None = None,
    direction: Direction = "lower_is_easier",
    comments: int = 20,
) -> VocCounts:
    """Counts behind every voice-of-the-customer figure for answers in [start, end)."""
    segments = account_attribute(warehouse, by, start) if by is not None else None
    responses = warehouse.table("survey_responses")
    responses = responses.filter(
        (responses.responded_at >= ibis.literal(start, type="timestamp"))
        & (responses.responded_at < ibis.literal(end, type="timestamp"))
    )
    ces_scale = _ces_scale(responses)
    rows = _classified(responses, ces_scale, direction)
    excluded = _excluded(rows)
    valid = rows.filter(rows._valid)

    overall = GroupCounts("all", start, end)
    _fill_levels({"all": overall}, valid.mutate(_group=ibis.literal("all")))
    _fill_reach({"all": overall}, _reach(warehouse, valid, start, end, None))

    trend: list[GroupCounts] = []
    starts = period_starts(start, end, period)
    step = 1 if period == "month" else 3
    trend_groups = {}
    for first in starts:
        group = GroupCounts(
            period_label(first, period), max(first, start), min(add_months(first, step), end)
        )
        trend_groups[group.key] = group
        trend.append(group)
    _fill_levels(trend_groups, _with_period(valid, period))
    for group in trend:
        assert group.start is not None and group.end is not None
        in_period = valid.filter(
            (valid.responded_at >= ibis.literal(group.start, type="timestamp"))
            & (valid.responded_at < ibis.literal(group.end, type="timestamp"))
        )
        _fill_reach({"all": group}, _reach(warehouse, in_period, group.start, group.end, None))

    segment_groups: list[GroupCounts] = []
    if segments is not None:
        keyed = valid.inner_join(segments, "account_id")
        names = sorted(str(row["_group"]) for row in _records(segments.select("_group").distinct()))
        by_name = {name: GroupCounts(name, start, end) for name in names}
        _fill_levels(by_name, keyed)
        _fill_reach(by_name, _reach(warehouse, valid, start, end, segments))
        segment_groups = [by_name[name] for name in names]

    comment_rows, comments_total = _comments(responses, comments)
    return VocCounts(
        overall, trend, segment_groups, ces_scale, excluded, comment_rows, comments_total
    )


def _with_period(rows: ir.Table, period: Period) -> ir.Table:
    unit = "M" if period == "month" else "Q"
    first = rows.responded_at.truncate(unit)
    if period == "month":
        label = first.strftime("%Y-%m")
    else:
        quarter = ((first.month() - 1) // 3 + 1).cast("string")
        label = first.year().cast("string") + "-Q" + quarter
    return rows.mutate(_group=label)


def _fill_levels(groups: dict[str, GroupCounts], rows: ir.Table) -> None:
    _fill(groups, _records(_sums(rows, ["_group"])), "respondent")
    _fill(groups, _records(_sums(_latest_per_account(rows, ["_group"]), ["_group"])), "account")


def _ces_scale(responses: ir.Table) -> tuple[float, float] | None:
    ces = responses.filter((responses.kind == "ces") & (responses.scale_max > responses.scale_min))
    counted = ces.group_by(["scale_min", "scale_max"]).aggregate(n=ces.count())
    top = _records(counted.order_by([ibis.desc("n"), "scale_min", "scale_max"]).limit(1))
    if not top:
        return None
    return float(top[0]["scale_min"]), float(top[0]["scale_max"])


def _excluded(rows: ir.Table) -> list[Excluded]:
    bad = rows.filter(~rows._valid)
    counted = bad.group_by(["kind", "scale_min", "scale_max"]).aggregate(
        responses=bad.count(),
    )
    result = []
    for row in _records(counted.order_by(["kind", "scale_min", "scale_max"])):
        kind, low, high = str(row["kind"]), float(row["scale_min"]), float(row["scale_max"])
        if kind not in KINDS:
            reason = f"unknown kind {kind!r} (expected nps, csat or ces)"
        elif high <= low:
            reason = "the declared scale is empty (scale_max <= scale_min)"
        elif kind == "nps" and high - low < NPS_MIN_WIDTH:
            reason = (
                f"an NPS scale of {high - low + 1:g} points is too coarse for the 0-6 / 9-10 "
                "cut-offs (at least 11 points, e.g. 0-10)"
            )
        elif kind == "csat" and high - low > CSAT_MAX_WIDTH:
            reason = "a CSAT scale wider than 11 points has no 'top two' (use 1-5)"
        else:
            reason = "the score lies outside its declared scale"
        result.append(Excluded(kind, low, high, _int(row["responses"]), reason))
    return result


def _comments(responses: ir.Table, limit: int) -> tuple[list[CommentRow], int]:
    commented = responses.filter(
        responses.comment.notnull() & (responses.comment.strip().length() > 0)
    )
    total = _int(commented.count().execute())
    newest = commented.order_by([ibis.desc("responded_at"), ibis.desc("response_id")]).limit(limit)
    rows = [
        CommentRow(
            response_id=str(row["response_id"]),
            account_id=str(row["account_id"]),
            person_id=None if row["person_id"] is None else str(row["person_id"]),
            kind=str(row["kind"]),
            score=float(row["score"]),
            responded_at=row["responded_at"].to_pydatetime(),
            comment=str(row["comment"]),
        )
        for row in (_records(newest) if limit > 0 else [])
    ]
    return rows, total
