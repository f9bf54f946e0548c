"""Revenue outcomes computed in the warehouse: each account's MRR timeline from ``subscriptions``,
its movements (new, expansion, contraction, churn, reactivation) per period, and the figures
built on them (docs/metrics.md ``## Revenue``).

A subscription row is active on day d when ``start_date <= d < end_date`` (no ``end_date``: open);
an account's MRR on d is the sum of its active rows' ``mrr``. The timeline holds one row per
account and day on which that sum (or whether the account is a customer) may change. The MRR
"before" a period is the account's MRR on the day before it starts; its MRR "at the end" is the
MRR on the period's last day, so one period's ending MRR is the next one's starting MRR.

Only aggregated counts and sums per period and group leave the warehouse.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from closeloop.data.history import as_of
from closeloop.data.warehouse import Warehouse
from closeloop.errors import NotFoundError

PAUSED_PATTERN = r'"status"\s*:\s*"paused"|"paused"\s*:\s*true'
"""A subscription row is paused when its ``properties`` JSON says so."""
CANCELLED_PATTERN = r'"cancel+ed_at"\s*:\s*"([0-9]{4}-[0-9]{2}-[0-9]{2})'
"""The cancellation date of a row, from its ``properties`` JSON (its first 10 characters)."""
COHORT = "cohort"
"""A derived grouping attribute: the month the account was created (``YYYY-MM``)."""
NOT_GROUPABLE = ("account_id", "created_at", "properties")
DAYS_PER_MONTH = 365.25 / 12
MISSING_GROUP = "(none)"
ROUNDING = 6
"""Decimals kept of summed amounts."""

KINDS = ("new", "expansion", "contraction", "churn", "reactivation")
OPEN_END = date(9999, 12, 31)
"""The end an open-ended subscription row is given inside joins (every backend has this date)."""
SOURCES = ("cs_sourced", "cs_influenced", "sales", "marketing", "unattributed")
"""Where an expansion comes from: a won expansion opportunity's ``source``, or none of them."""


@dataclass(frozen=True)
class Policy:
    """The switches (closeloop.schemas.revenue_outcomes has their public enums and defaults)."""

    method: str = "endpoint"  # or "event"
    churn_at: str = "period_end"  # or "cancellation"
    reactivation_gap: str = "any"  # or "month"
    new_and_churned: str = "exclude"  # or "include"
    free_downgrade: str = "churn"  # or "contraction"
    paused: str = "zero"  # or "exclude"
    churn_denominator: str = "start"  # or "start_plus_new"
    gross_margin: float = 0.8
    match_days: int = 30


@dataclass(frozen=True)
class Figures:
    """The revenue figures of one period and group (``group`` None: all accounts)."""

    period_start: date
    period_end: date
    group: str | None
    starting_accounts: int
    new_accounts: int
    reactivated_accounts: int
    churned_accounts: int
    ending_accounts: int
    starting_mrr: float
    new_mrr: float
    expansion_mrr: float
    contraction_mrr: float
    churned_mrr: float
    reactivation_mrr: float
    ending_mrr: float
    nrr: float | None
    grr: float | None
    customer_churn_rate: float | None
    gross_mrr_churn_rate: float | None
    net_mrr_churn_rate: float | None
    arpa: float | None
    clv: float | None
    expansion_by_source: tuple[tuple[str, float, int], ...]  # source, expansion MRR, movements


@dataclass(frozen=True)
class Period:
    key: str
    start: date
    end: date


def group_columns(warehouse: Warehouse) -> tuple[str, ...]:
    """The account attributes ``--by`` accepts."""
    names = [c for c in warehouse.table("accounts").columns if c not in NOT_GROUPABLE]
    return (*names, COHORT)


def _subscription_rows(warehouse: Warehouse, policy: Policy, start: date, end: date) -> ir.Table:
    subs = warehouse.table("subscriptions")
    props = subs.properties.fill_null("")
    paused = props.re_search(PAUSED_PATTERN).fill_null(False)
    row_end = subs.end_date
    if policy.churn_at == "cancellation":
        text = props.re_extract(CANCELLED_PATTERN, 1)
        cancelled = ibis.ifelse(text.fill_null("") == "", ibis.null("date"), text.cast("date"))
        row_end = ibis.ifelse(
            cancelled.notnull() & (row_end.isnull() | (cancelled < row_end)), cancelled, row_end
        )
    rows = subs.select(
        r_account=subs.account_id,
        r_start=subs.start_date,
        r_end=row_end,
        r_mrr=ibis.ifelse(paused, 0.0, subs.mrr.cast("float64")),
        r_paused=paused,
    )
    if policy.paused == "exclude":
        lo, hi = ibis.literal(start, type="date"), ibis.literal(end, type="date")
        pausing = rows.filter(
            rows.r_paused & (rows.r_start < hi) & (rows.r_end.isnull() | (rows.r_end > lo))
        ).select(p_account=rows.r_account)
        rows = rows.anti_join(pausing.distinct(), rows.r_account == pausing.p_account)
    return rows


def timeline(warehouse: Warehouse, policy: Policy, start: date, end: date) -> ir.Table:
    """``account_id, day, mrr, customer, ever``: from ``day`` on the account's MRR is ``mrr`` and
    it is a customer when ``customer``; ``ever``: it was a customer on some row up to this one.
    Rows that change nothing are dropped."""
    rows = _subscription_rows(warehouse, policy, start, end)
    starts = rows.select(account_id=rows.r_account, day=rows.r_start)
    ends = rows.filter(rows.r_end.notnull()).select(account_id=rows.r_account, day=rows.r_end)
    points = starts.union(ends, distinct=True)
    joined = points.left_join(
        rows,
        [
            points.account_id == rows.r_account,
            rows.r_start <= points.day,
            # No OR in a join condition: DuckDB would fall back to a nested-loop join (quadratic
            # in subscription rows) instead of hashing on the account.
            points.day < rows.r_end.fill_null(ibis.literal(OPEN_END, type="date")),
        ],
    )
    daily = joined.group_by(["account_id", "day"]).aggregate(
        mrr=joined.r_mrr.sum().fill_null(0.0), active=joined.r_start.count()
    )
    by_day = ibis.window(group_by="account_id", order_by="day")
    upto = ibis.cumulative_window(group_by="account_id", order_by="day")
    if policy.free_downgrade == "churn":
        daily = daily.mutate(customer=daily.mrr > 0)
    else:
        paid = ibis.ifelse(daily.mrr > 0, 1, 0)
        daily = daily.mutate(paid_so_far=paid.max().over(upto))
        daily = daily.mutate(customer=(daily.active > 0) & (daily.paid_so_far > 0))
    daily = daily.select("account_id", "day", "mrr", "customer")
    if policy.reactivation_gap == "month":
        daily = daily.mutate(
            prev_mrr=daily.mrr.lag().over(by_day),
            prev_customer=daily.customer.lag().over(by_day).fill_null(False),
            next_day=daily.day.lead().over(by_day),
            next_customer=daily.customer.lead().over(by_day).fill_null(False),
        )
        short_gap = (
            daily.prev_customer
            & ~daily.customer
            & daily.next_customer
            & (daily.next_day < daily.day + ibis.interval(months=1))
        )
        daily = daily.select(
            "account_id",
            "day",
            mrr=ibis.ifelse(short_gap, daily.prev_mrr, daily.mrr),
            customer=daily.customer | short_gap,
        )
    daily = daily.mutate(
        prev_mrr=daily.mrr.lag().over(by_day).fill_null(0.0),
        prev_customer=daily.customer.lag().over(by_day).fill_null(False),
    )
    changed = (daily.mrr != daily.prev_mrr) | (daily.customer != daily.prev_customer)
    daily = daily.filter(changed)
    daily = daily.mutate(ever_n=ibis.ifelse(daily.customer, 1, 0).max().over(upto))
    daily = daily.mutate(ever_before_n=daily.ever_n.lag().over(by_day).fill_null(0))
    return daily.select(
        "account_id",
        "day",
        "mrr",
        "customer",
        "prev_mrr",
        "prev_customer",
        ever=daily.ever_n > 0,
        ever_before=daily.ever_before_n > 0,
    )


def _state_before(line: ir.Table, periods: ir.Table, column: str, prefix: str) -> ir.Table:
    """Per period and account, the latest timeline row strictly before ``periods[column]``."""
    joined = line.inner_join(periods, line.day < periods[column])
    order = ibis.window(group_by=["period_key", "account_id"], order_by=ibis.desc("day"))
    joined = joined.mutate(_n=ibis.row_number().over(order))
    latest = joined.filter(joined._n == 0)
    return latest.select(
        "period_key",
        "account_id",
        **{
            f"{prefix}_mrr": latest.mrr,
            f"{prefix}_customer": latest.customer,
            f"{prefix}_ever": latest.ever,
        },
    )


def _period_table(periods: Sequence[Period]) -> ir.Table:
    return ibis.memtable(
        pa.table(
            {
                "period_key": pa.array([p.key for p in periods], pa.string()),
                "period_start": pa.array([p.start for p in periods], pa.date32()),
                "period_end": pa.array([p.end for p in periods], pa.date32()),
            }
        )
    )


def _groups(warehouse: Warehouse, by: str | None, start: date) -> ir.Table | None:
    if by is None:
        return None
    allowed = group_columns(warehouse)
    if by not in allowed:
        raise NotFoundError(f"no account attribute {by!r} to group by; known: {', '.join(allowed)}")
    accounts = as_of(
        warehouse,
        "account",
        warehouse.table("accounts"),
        datetime.combine(start, datetime.min.time()),
        key="account_id",
    )
    created = accounts.created_at.strftime("%Y-%m")
    value = created if by == COHORT else accounts[by].cast("string")
    return accounts.select(g_account=accounts.account_id, g_value=value)


def _with_group(table: ir.Table, groups: ir.Table | None) -> ir.Table:
    if groups is None:
        return table.mutate(group=ibis.literal(MISSING_GROUP))
    joined = table.left_join(groups, table.account_id == groups.g_account)
    return joined.mutate(group=joined.g_value.fill_null(MISSING_GROUP)).drop("g_account", "g_value")


def _opportunities(warehouse: Warehouse) -> ir.Table:
    opps = warehouse.table("opportunities")
    won = opps.filter(
        (opps.kind.lower() == "expansion")
        & (opps.status.lower() == "won")
        & opps.closed_at.notnull()
    )
    source = won.source.lower()
    return won.select(
        o_account=won.account_id,
        o_id=won.opportunity_id,
        o_closed=won.closed_at,
        o_source=ibis.ifelse(
            source.isin(SOURCES[:-1]), source, ibis.literal(SOURCES[-1])
        ).fill_null(SOURCES[-1]),
    )


def _attributed(
    expansions: ir.Table, opps: ir.Table, since: ir.Value, until: ir.Value, key: Sequence[str]
) -> ir.Table:
    """``expansions`` with ``source``: the latest won expansion opportunity of the account closed
    in [since, until) (ties: the smallest opportunity id), else unattributed."""
    joined = expansions.left_join(
        opps,
        [
            expansions.account_id == opps.o_account,
            opps.o_closed >= since,
            opps.o_closed < until,
        ],
    )
    order = ibis.window(group_by=list(key), order_by=[ibis.desc("o_closed"), "o_id"])
    joined = joined.mutate(_n=ibis.row_number().over(order))
    first = joined.filter(joined._n == 0)
    return first.mutate(source=first.o_source.fill_null(SOURCES[-1]))


def _as_timestamp(value: ir.Value) -> ir.Value:
    return value.cast("timestamp")


def compute(
    warehouse: Warehouse,
    start: date,
    end: date,
    periods: Sequence[Period],
    *,
    by: str | None,
    policy: Policy,
) -> dict[tuple[str, str], Figures]:
    """Figures per (period key, group); the group is ``(none)`` when not grouped.

    The timeline and the per-account states are materialised once (temporary tables, released
    afterwards): the three sums read them, and recomputing them for each was most of the time."""
    cached: list[ir.CachedTable] = []
    try:
        return _compute(warehouse, start, end, periods, by=by, policy=policy, cached=cached)
    finally:
        for table in cached:
            table.release()


def _compute(
    warehouse: Warehouse,
    start: date,
    end: date,
    periods: Sequence[Period],
    *,
    by: str | None,
    policy: Policy,
    cached: list[ir.CachedTable],
) -> dict[tuple[str, str], Figures]:
    groups = _groups(warehouse, by, start)
    line = timeline(warehouse, policy, start, end).cache()
    cached.append(line)
    table = _period_table(periods)
    ending = _state_before(line, table, "period_end", "e")
    starting = _state_before(line, table, "period_start", "s")
    starting = starting.rename(s_key="period_key", s_account="account_id")
    states = ending.left_join(
        starting,
        [ending.period_key == starting.s_key, ending.account_id == starting.s_account],
    )
    states = states.select(
        "period_key",
        "account_id",
        "e_mrr",
        "e_customer",
        s_mrr=states.s_mrr.fill_null(0.0),
        s_customer=states.s_customer.fill_null(False),
        s_ever=states.s_ever.fill_null(False),
    )
    # Materialised once: the three sums below (states, movements, sources) all read it.
    states = _with_group(states, groups).cache()
    cached.append(states)
    state_sums = (
        states.group_by(["period_key", "group"])
        .aggregate(
            starting_accounts=ibis.ifelse(states.s_customer, 1, 0).sum(),
            starting_mrr=ibis.ifelse(states.s_customer, states.s_mrr, 0.0).sum(),
            ending_accounts=ibis.ifelse(states.e_customer, 1, 0).sum(),
            ending_mrr=ibis.ifelse(states.e_customer, states.e_mrr, 0.0).sum(),
        )
        .to_pyarrow()
        .to_pylist()
    )
    opps = _opportunities(warehouse)
    if policy.method == "endpoint":
        s, e = states.s_customer, states.e_customer
        kind = ibis.cases(
            (s & ~e, "churn"),
            (s & e & (states.e_mrr > states.s_mrr), "expansion"),
            (s & e & (states.e_mrr < states.s_mrr), "contraction"),
            (~s & e & ~states.s_ever, "new"),
            (~s & e & states.s_ever, "reactivation"),
            else_="none",
        )
        amount = ibis.cases(
            (s & ~e, states.s_mrr),
            (s & e, (states.e_mrr - states.s_mrr).abs()),
            else_=states.e_mrr,
        )
        moves = states.select("period_key", "account_id", "group", kind=kind, amount=amount)
        moves = moves.filter(moves.kind != "none")
        expansions = moves.filter(moves.kind == "expansion").inner_join(table, "period_key")
        since = _as_timestamp(expansions.period_start - ibis.interval(days=policy.match_days))
        until = _as_timestamp(expansions.period_end)
        attributed = _attributed(expansions, opps, since, until, ["period_key", "account_id"])
    else:
        moving = line.inner_join(
            table, (line.day >= table.period_start) & (line.day < table.period_end)
        )
        kind = ibis.cases(
            (~moving.prev_customer & moving.customer & ~moving.ever_before, "new"),
            (~moving.prev_customer & moving.customer, "reactivation"),
            (moving.prev_customer & ~moving.customer, "churn"),
            (moving.prev_customer & (moving.mrr > moving.prev_mrr), "expansion"),
            (moving.prev_customer & (moving.mrr < moving.prev_mrr), "contraction"),
            else_="none",
        )
        amount = ibis.cases(
            (moving.prev_customer & ~moving.customer, moving.prev_mrr),
            (~moving.prev_customer, moving.mrr),
            else_=(moving.mrr - moving.prev_mrr).abs(),
        )
        moves = moving.select("period_key", "account_id", "day", kind=kind, amount=amount)
        moves = moves.filter(moves.kind != "none")
        if policy.new_and_churned == "exclude":
            joined_now = moves.filter(moves.kind == "new").select(
                j_key=moves.period_key, j_account=moves.account_id
            )
            gone = states.filter(~states.e_customer).select(
                j_key=states.period_key, j_account=states.account_id
            )
            skip = joined_now.distinct().semi_join(
                gone, [joined_now.j_key == gone.j_key, joined_now.j_account == gone.j_account]
            )
            moves = moves.anti_join(
                skip, [moves.period_key == skip.j_key, moves.account_id == skip.j_account]
            )
        moves = _with_group(moves, groups)
        expansions = moves.filter(moves.kind == "expansion")
        since = _as_timestamp(expansions.day - ibis.interval(days=policy.match_days))
        until = _as_timestamp(expansions.day + ibis.interval(days=1))
        attributed = _attributed(
            expansions, opps, since, until, ["period_key", "account_id", "day"]
        )
    move_sums = (
        moves.group_by(["period_key", "group", "kind"])
        .aggregate(amount=moves.amount.sum(), accounts=moves.account_id.nunique())
        .to_pyarrow()
        .to_pylist()
    )
    source_sums = (
        attributed.group_by(["period_key", "group", "source"])
        .aggregate(amount=attributed.amount.sum(), movements=attributed.count())
        .to_pyarrow()
        .to_pylist()
    )
    return _assemble(periods, policy, state_sums, move_sums, source_sums, by is not None)


def _assemble(
    periods: Sequence[Period],
    policy: Policy,
    state_sums: list[dict[str, Any]],
    move_sums: list[dict[str, Any]],
    source_sums: list[dict[str, Any]],
    grouped: bool,
) -> dict[tuple[str, str], Figures]:
    """Sum the warehouse's per-group figures (also over all groups: ``*``) and derive ratios."""
    totals: dict[tuple[str, str], dict[str, float]] = {}

    def add(key: str, group: str, name: str, value: float) -> None:
        targets = [(key, "*")] + ([(key, group)] if grouped else [])
        for target in targets:
            bucket = totals.setdefault(target, {})
            bucket[name] = bucket.get(name, 0.0) + float(value or 0.0)

    for period in periods:
        totals.setdefault((period.key, "*"), {})
    for row in state_sums:
        for name in ("starting_accounts", "starting_mrr", "ending_accounts", "ending_mrr"):
            add(row["period_key"], row["group"], name, row[name])
    for row in move_sums:
        add(row["period_key"], row["group"], f"{row['kind']}_mrr", row["amount"])
        add(row["period_key"], row["group"], f"{row['kind']}_accounts", row["accounts"])
    for row in source_sums:
        add(row["period_key"], row["group"], f"source:{row['source']}", row["amount"])
        add(row["period_key"], row["group"], f"sourcen:{row['source']}", row["movements"])
    # The warehouse adds floats in no fixed order: round off the last bits so that equal data
    # gives equal figures (amounts are money; 1e-6 of a currency unit is far below a cent).
    for bucket in totals.values():
        for name, value in bucket.items():
            bucket[name] = round(value, ROUNDING)
    by_key = {period.key: period for period in periods}
    return {
        (key, group): _row(by_key[key], None if group == "*" else group, values, policy)
        for (key, group), values in sorted(totals.items())
    }


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _row(period: Period, group: str | None, v: dict[str, float], policy: Policy) -> Figures:
    def get(name: str) -> float:
        return v.get(name, 0.0)

    starting = get("starting_mrr")
    retained = starting - get("contraction_mrr") - get("churn_mrr")
    returned = get("expansion_mrr")
    if policy.method == "event":
        returned += get("reactivation_mrr")
    churned_accounts = get("churn_accounts")
    denominator = get("starting_accounts")
    if policy.churn_denominator == "start_plus_new":
        denominator += get("new_accounts")
    churn_rate = _ratio(churned_accounts, denominator)
    arpa = _ratio(get("ending_mrr"), get("ending_accounts"))
    return Figures(
        period_start=period.start,
        period_end=period.end,
        group=group,
        starting_accounts=int(get("starting_accounts")),
        new_accounts=int(get("new_accounts")),
        reactivated_accounts=int(get("reactivation_accounts")),
        churned_accounts=int(churned_accounts),
        ending_accounts=int(get("ending_accounts")),
        starting_mrr=starting,
        new_mrr=get("new_mrr"),
        expansion_mrr=get("expansion_mrr"),
        contraction_mrr=get("contraction_mrr"),
        churned_mrr=get("churn_mrr"),
        reactivation_mrr=get("reactivation_mrr"),
        ending_mrr=get("ending_mrr"),
        nrr=_ratio(retained + returned, starting),
        grr=_ratio(retained, starting),
        customer_churn_rate=churn_rate,
        gross_mrr_churn_rate=_ratio(get("contraction_mrr") + get("churn_mrr"), starting),
        net_mrr_churn_rate=_ratio(get("contraction_mrr") + get("churn_mrr") - returned, starting),
        arpa=arpa,
        clv=clv(arpa, churn_rate, policy.gross_margin, (period.end - period.start).days),
        expansion_by_source=tuple(
            (source, get(f"source:{source}"), int(get(f"sourcen:{source}"))) for source in SOURCES
        ),
    )


def clv(arpa: float | None, churn_rate: float | None, margin: float, days: int) -> float | None:
    """ARPA × gross margin / monthly customer churn rate; the period's rate is converted to a
    monthly one (``1 - (1 - c) ** (30.4375 / days)``). None without churn or customers."""
    if arpa is None or churn_rate is None or churn_rate <= 0 or days <= 0:
        return None
    monthly = 1.0 if churn_rate >= 1 else 1 - (1 - churn_rate) ** (DAYS_PER_MONTH / days)
    return arpa * margin / monthly if monthly > 0 and math.isfinite(monthly) else None


def split_periods(start: date, end: date, period: str | None) -> list[Period]:
    """The window, and its calendar months or quarters clipped to [start, end)."""
    out = [Period("window", start, end)]
    if period is None:
        return out
    step = 1 if period == "month" else 3
    cursor = date(start.year, ((start.month - 1) // step) * step + 1, 1)
    while cursor < end:
        month = cursor.month - 1 + step
        following = date(cursor.year + month // 12, month % 12 + 1, 1)
        lo, hi = max(cursor, start), min(following, end)
        out.append(Period(lo.isoformat(), lo, hi))
        cursor = following
    return out


__all__ = [
    "KINDS",
    "SOURCES",
    "Figures",
    "Period",
    "Policy",
    "clv",
    "compute",
    "group_columns",
    "split_periods",
    "timeline",
]
