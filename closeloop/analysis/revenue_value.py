"""The revenue value of a job: retention, NRR and MRR change of its cohort against the holdout.

Each unit (an enrollment, see :func:`closeloop.analysis.job_report.job_units`) gets its account's
MRR on the day it entered and ``H`` days later, for each horizon ``H`` (90 and 180 days by
default). An account's MRR on day ``d`` is the sum of ``mrr`` over its subscription rows with
``start_date <= d < end_date`` (a null ``end_date`` runs on), so a term ending on ``d`` no longer
counts on ``d``. Only units whose horizon has passed by ``as_of`` (*matured*) count at a horizon.
Everything per unit is computed and aggregated in the warehouse; Python receives one row of sums
per arm (DESIGN §6, §7).

Estimands, intention to treat, treatment minus holdout at each horizon:

- **Logo retention**: among units whose account paid at entry (MRR > 0), the share still paying at
  the horizon; Welch difference of proportions.
- **NRR** (start-cohort endpoint method): among the same units, MRR at the horizon over MRR at
  entry; difference of ratios with delta-method variances.
- **MRR change per enrolled account**: MRR at the horizon minus MRR at entry over *every* matured
  unit, including accounts without MRR at entry (they can only gain, e.g. a trial that converts);
  Welch difference. Times the number of matured treated units it is the MRR the job added, and
  times 12 the ARR, with the interval scaled the same way. Expansion (the gain, 0 if none) and
  contraction with churn (the loss, 0 if none) per account are compared the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import ibis
import ibis.expr.types as ir

from closeloop.analysis.measurement import MINIMUM_UNITS
from closeloop.data.warehouse import Warehouse
from closeloop.engine.assignment import HOLDOUT, TREATMENT
from closeloop.stats import (
    ComparisonResult,
    Interval,
    ProportionStatistic,
    RatioStatistic,
    SampleMeanStatistic,
    Status,
    welch_test,
)

HORIZONS = (90, 180)
MONTHS_PER_YEAR = 12
CURRENCY_NOTE = (
    "Money is in the currency of the subscriptions' mrr column, per month (MRR) or per year "
    "(ARR = 12 x MRR); closeloop does not convert currencies, so every subscription must use one."
)
NO_MRR_AT_ENTRY_NOTE = (
    "Units whose account had no MRR on the day it entered count in the MRR change, expansion and "
    "added MRR (they can only gain), but not in logo retention or NRR, whose denominators are the "
    "accounts paying at entry."
)


@dataclass(frozen=True)
class RevenueSums:
    """One arm's additive sufficient statistics at one horizon (add two arms to pool them).

    ``start`` is the MRR on the day of entry, ``end`` the MRR ``days`` later; the ``*_sum`` fields
    cover every matured unit, the ``paying_*`` fields those with MRR at entry above 0.
    """

    enrolled: int = 0
    matured: int = 0
    start_sum: float = 0.0
    end_sum: float = 0.0
    change_sum: float = 0.0
    change_sum_squares: float = 0.0
    expansion_sum: float = 0.0
    expansion_sum_squares: float = 0.0
    contraction_sum: float = 0.0
    contraction_sum_squares: float = 0.0
    paying: int = 0
    retained: int = 0
    paying_start_sum: float = 0.0
    paying_start_sum_squares: float = 0.0
    paying_end_sum: float = 0.0
    paying_end_sum_squares: float = 0.0
    paying_products: float = 0.0

    def __add__(self, other: RevenueSums) -> RevenueSums:
        return RevenueSums(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    @property
    def retention(self) -> ProportionStatistic:
        return ProportionStatistic(self.paying, self.retained)

    @property
    def nrr(self) -> RatioStatistic:
        return RatioStatistic(
            self.paying,
            self.paying_end_sum,
            self.paying_end_sum_squares,
            self.paying_start_sum,
            self.paying_start_sum_squares,
            self.paying_products,
        )

    @property
    def change(self) -> SampleMeanStatistic:
        return SampleMeanStatistic(self.matured, self.change_sum, self.change_sum_squares)

    @property
    def expansion(self) -> SampleMeanStatistic:
        return SampleMeanStatistic(self.matured, self.expansion_sum, self.expansion_sum_squares)

    @property
    def contraction(self) -> SampleMeanStatistic:
        return SampleMeanStatistic(self.matured, self.contraction_sum, self.contraction_sum_squares)


@dataclass(frozen=True)
class RevenueArm:
    """What one arm's matured units did to revenue over a horizon (means per unit)."""

    arm: str
    sums: RevenueSums

    @property
    def enrolled(self) -> int:
        return self.sums.enrolled

    @property
    def matured(self) -> int:
        return self.sums.matured

    @property
    def mrr_start_total(self) -> float:
        return self.sums.start_sum

    @property
    def mrr_end_total(self) -> float:
        """MRR at the horizon of every matured unit, those without MRR at entry included."""
        return self.sums.end_sum

    @property
    def retention(self) -> float:
        return self.sums.retention.mean

    @property
    def nrr(self) -> float:
        return self.sums.nrr.mean

    @property
    def mean_change(self) -> float:
        return self.sums.change.mean

    @property
    def mean_expansion(self) -> float:
        return self.sums.expansion.mean

    @property
    def mean_contraction(self) -> float:
        return self.sums.contraction.mean


@dataclass(frozen=True)
class RevenueComparison:
    """One arm against the control at one horizon (arm minus control), and the money it made.

    ``added_mrr`` is the difference in MRR change per account times ``treated_accounts`` (the
    arm's matured units): the monthly recurring revenue the job added to that cohort.
    """

    arm: str
    control: str
    retention: ComparisonResult
    nrr: ComparisonResult
    mrr_change: ComparisonResult
    expansion: ComparisonResult
    contraction: ComparisonResult
    treated_accounts: int

    @property
    def added_mrr(self) -> float:
        return self.mrr_change.estimate * self.treated_accounts

    @property
    def added_mrr_ci(self) -> Interval:
        ci = self.mrr_change.ci
        return Interval(ci.lower * self.treated_accounts, ci.upper * self.treated_accounts)

    @property
    def added_arr(self) -> float:
        return self.added_mrr * MONTHS_PER_YEAR

    @property
    def added_arr_ci(self) -> Interval:
        ci = self.added_mrr_ci
        return Interval(ci.lower * MONTHS_PER_YEAR, ci.upper * MONTHS_PER_YEAR)

    @property
    def status(self) -> Status:
        """The verdict on revenue: the MRR change's, the one quantity measured in money."""
        return self.mrr_change.status


@dataclass(frozen=True)
class RevenueHorizon:
    """Every arm at one horizon: the job (variants pooled) against the control, and each variant."""

    days: int
    arms: dict[str, RevenueArm]  # the control and the pooled treatment
    variants: dict[str, RevenueArm]  # each variant; empty with a single treated arm
    comparison: RevenueComparison  # pooled treatment against the control
    variant_comparisons: list[RevenueComparison]
    warnings: list[str] = field(default_factory=list)

    @property
    def matured(self) -> int:
        return sum(arm.matured for arm in self.arms.values())

    @property
    def retention_difference(self) -> ComparisonResult:
        return self.comparison.retention

    @property
    def nrr_difference(self) -> ComparisonResult:
        return self.comparison.nrr

    @property
    def mrr_change_difference(self) -> ComparisonResult:
        return self.comparison.mrr_change

    @property
    def added_mrr(self) -> float:
        return self.comparison.added_mrr

    @property
    def added_mrr_ci(self) -> Interval:
        return self.comparison.added_mrr_ci


@dataclass(frozen=True)
class RevenueValue:
    as_of: datetime
    control: str
    horizons: list[RevenueHorizon]
    currency_note: str = CURRENCY_NOTE
    no_mrr_at_entry_note: str = NO_MRR_AT_ENTRY_NOTE
    warnings: list[str] = field(default_factory=list)

    def horizon(self, days: int) -> RevenueHorizon:
        for horizon in self.horizons:
            if horizon.days == days:
                return horizon
        raise KeyError(days)


def revenue_value(
    warehouse: Warehouse,
    units: ir.Table,
    *,
    as_of: datetime,
    control: str = HOLDOUT,
    horizons: Sequence[int] = HORIZONS,
    alpha: float = 0.05,
    minimum_units: int = MINIMUM_UNITS,
) -> RevenueValue:
    """Retention, NRR and MRR change of ``units`` per arm at each horizon, against ``control``.

    ``units`` needs ``unit_id``, ``account_id``, ``arm`` and ``entered_at`` (as from
    :func:`~closeloop.analysis.job_report.job_units`); MRR comes from the warehouse's
    ``subscriptions``. Every arm other than ``control`` is pooled into ``treatment``; with two or
    more such arms each is also compared with the control on its own. A comparison with fewer than
    ``minimum_units`` units in an arm is ``insufficient_data``, not called.
    """
    part = units.mutate(**{PART: ibis.literal(SINGLE)})
    return revenue_values(
        warehouse,
        part,
        {SINGLE: as_of},
        control=control,
        horizons=horizons,
        alpha=alpha,
        minimum_units=minimum_units,
    )[SINGLE]


PART = "_part"
"""The column naming the set a unit belongs to (:func:`revenue_values`)."""
SINGLE = ""
_AS_OF = "_revenue_as_of"


def revenue_values(
    warehouse: Warehouse,
    units: ir.Table,
    as_of_by_part: Mapping[str, datetime],
    *,
    control: str = HOLDOUT,
    horizons: Sequence[int] = HORIZONS,
    alpha: float = 0.05,
    minimum_units: int = MINIMUM_UNITS,
) -> dict[str, RevenueValue]:
    """:func:`revenue_value` of several sets of units (a unit's set is its ``_part`` column),
    each as of its own time, in one query: the measurement refresh values every job at once.
    Each set's value is the one :func:`revenue_value` gives it alone."""
    if not horizons or any(days <= 0 for days in horizons):
        raise ValueError(f"horizons must be positive numbers of days, got {list(horizons)}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    days_list = sorted({int(days) for days in horizons})
    params = ibis.memtable(
        {"_revenue_part": list(as_of_by_part), _AS_OF: list(as_of_by_part.values())},
        schema={"_revenue_part": "string", _AS_OF: "timestamp"},
    )
    chosen = units.select(PART, "unit_id", "account_id", "arm", "entered_at")
    joined = chosen.inner_join(params, chosen[PART] == params._revenue_part)
    per_unit = _unit_mrr(warehouse, joined.drop("_revenue_part"), days_list)
    rows_by_part: dict[str, dict[str, dict[str, Any]]] = {}
    for row in _arm_sums(per_unit, days_list).to_pyarrow().to_pylist():
        rows_by_part.setdefault(str(row[PART]), {})[str(row["arm"])] = row
    return {
        part: _value(rows_by_part.get(part, {}), as_of, control, days_list, alpha, minimum_units)
        for part, as_of in as_of_by_part.items()
    }


def _value(
    by_arm: dict[str, dict[str, Any]],
    as_of: datetime,
    control: str,
    days_list: Sequence[int],
    alpha: float,
    minimum_units: int,
) -> RevenueValue:
    """One set's value from its rows of sums per arm."""
    treated_names = sorted(name for name in by_arm if name != control)
    warnings: list[str] = []
    if control not in by_arm:
        warnings.append(f"no unit is in the {control!r} arm: there is nothing to compare with")
    if not treated_names:
        warnings.append(f"no unit is in an arm other than {control!r}: nothing was treated")
    result = [
        _horizon(days, by_arm, control, treated_names, alpha, minimum_units, as_of)
        for days in days_list
    ]
    return RevenueValue(as_of=as_of, control=control, horizons=result, warnings=warnings)


# -- in the warehouse ------------------------------------------------------------------------------


def _mrr_on(subscriptions: ir.Table, day: ir.DateValue) -> ir.FloatingValue:
    """The MRR of a subscription row on ``day`` (0 when the row is not running that day)."""
    running = (subscriptions.sub_start <= day) & (
        subscriptions.sub_end.isnull() | (day < subscriptions.sub_end)
    )
    return ibis.ifelse(running, subscriptions.mrr.fill_null(0.0), 0.0)


def _unit_mrr(warehouse: Warehouse, units: ir.Table, days_list: Sequence[int]) -> ir.Table:
    """Per unit (with its set and analysis time): arm, MRR at entry (``mrr_start``), per
    horizon ``mrr_<H>`` and ``matured_<H>``."""
    u = units.select(PART, _AS_OF, "unit_id", "account_id", "arm", "entered_at")
    subscriptions = warehouse.table("subscriptions")
    s = subscriptions.select(
        sub_account=subscriptions.account_id,
        sub_start=subscriptions.start_date,
        sub_end=subscriptions.end_date,
        mrr=subscriptions.mrr,
    )
    joined = u.left_join(s, u.account_id == s.sub_account)
    entry_day = joined.entered_at.date()
    metrics: dict[str, ir.Value] = {"mrr_start": _mrr_on(joined, entry_day).sum()}
    for days in days_list:
        end_day = (joined.entered_at + ibis.interval(days=days)).date()
        metrics[f"mrr_{days}"] = _mrr_on(joined, end_day).sum()
    per_unit = joined.group_by([PART, _AS_OF, "unit_id", "arm", "entered_at"]).aggregate(**metrics)
    return per_unit.mutate(
        mrr_start=per_unit.mrr_start.fill_null(0.0),
        **{f"mrr_{days}": per_unit[f"mrr_{days}"].fill_null(0.0) for days in days_list},
        **{
            f"matured_{days}": per_unit.entered_at + ibis.interval(days=days) <= per_unit[_AS_OF]
            for days in days_list
        },
    )


def _arm_sums(per_unit: ir.Table, days_list: Sequence[int]) -> ir.Table:
    """One row per set and arm: ``enrolled`` and, per horizon, the fields of
    :class:`RevenueSums`."""
    start = per_unit.mrr_start
    metrics: dict[str, ir.Value] = {"enrolled": per_unit.count()}
    for days in days_list:
        matured = per_unit[f"matured_{days}"]
        paying = matured & (start > 0)
        end = per_unit[f"mrr_{days}"]
        change = end - start
        expansion = ibis.ifelse(change > 0, change, 0.0)
        contraction = ibis.ifelse(change < 0, -change, 0.0)

        def total(value: ir.NumericValue, where: ir.BooleanValue) -> ir.Value:
            return ibis.ifelse(where, value, 0.0).sum()

        def count(where: ir.BooleanValue) -> ir.Value:
            return ibis.ifelse(where, 1, 0).sum()

        metrics.update(
            {
                f"{days}:matured": count(matured),
                f"{days}:start_sum": total(start, matured),
                f"{days}:end_sum": total(end, matured),
                f"{days}:change_sum": total(change, matured),
                f"{days}:change_sum_squares": total(change * change, matured),
                f"{days}:expansion_sum": total(expansion, matured),
                f"{days}:expansion_sum_squares": total(expansion * expansion, matured),
                f"{days}:contraction_sum": total(contraction, matured),
                f"{days}:contraction_sum_squares": total(contraction * contraction, matured),
                f"{days}:paying": count(paying),
                f"{days}:retained": count(paying & (end > 0)),
                f"{days}:paying_start_sum": total(start, paying),
                f"{days}:paying_start_sum_squares": total(start * start, paying),
                f"{days}:paying_end_sum": total(end, paying),
                f"{days}:paying_end_sum_squares": total(end * end, paying),
                f"{days}:paying_products": total(start * end, paying),
            }
        )
    return per_unit.group_by([PART, "arm"]).aggregate(**metrics)


# -- in Python, from the sums ----------------------------------------------------------------------


def _sums(row: dict[str, Any] | None, days: int) -> RevenueSums:
    if row is None:
        return RevenueSums()
    values: dict[str, Any] = {"enrolled": int(row["enrolled"])}
    for f in fields(RevenueSums):
        if f.name == "enrolled":
            continue
        raw = row[f"{days}:{f.name}"] or 0
        values[f.name] = int(raw) if f.type == "int" else float(raw)
    return RevenueSums(**values)


def _horizon(
    days: int,
    by_arm: dict[str, dict[str, Any]],
    control: str,
    treated_names: Sequence[str],
    alpha: float,
    minimum_units: int,
    as_of: datetime,
) -> RevenueHorizon:
    base = RevenueArm(control, _sums(by_arm.get(control), days))
    variants = {name: RevenueArm(name, _sums(by_arm[name], days)) for name in treated_names}
    pooled_sums = sum((arm.sums for arm in variants.values()), RevenueSums())
    pooled = RevenueArm(TREATMENT, pooled_sums)
    arms = {control: base, TREATMENT: pooled}
    comparison = _compare(pooled, base, alpha, minimum_units)
    variant_comparisons = (
        [_compare(arm, base, alpha, minimum_units) for arm in variants.values()]
        if len(variants) > 1
        else []
    )
    warnings: list[str] = []
    enrolled = base.enrolled + pooled.enrolled
    matured = base.matured + pooled.matured
    if enrolled and not matured:
        warnings.append(
            f"no unit has had {days} days since entry yet (as of {as_of:%Y-%m-%d}): nothing is "
            f"measured at {days} days"
        )
    elif matured < enrolled:
        warnings.append(
            f"{enrolled - matured} of {enrolled} units have not had {days} days since entry yet "
            f"and are left out at {days} days"
        )
    without_mrr = sum(arm.matured - arm.sums.paying for arm in arms.values())
    if without_mrr:
        warnings.append(
            f"{without_mrr} matured unit(s) had no MRR at entry: they count in the MRR change "
            "and added MRR, not in retention or NRR"
        )
    if matured and not (base.sums.paying + pooled.sums.paying):
        warnings.append(
            f"no matured unit had MRR at entry at {days} days: check that subscriptions are "
            "loaded for these accounts"
        )
    return RevenueHorizon(
        days=days,
        arms=arms,
        variants=variants if len(variants) > 1 else {},
        comparison=comparison,
        variant_comparisons=variant_comparisons,
        warnings=warnings,
    )


def _compare(
    arm: RevenueArm, base: RevenueArm, alpha: float, minimum_units: int
) -> RevenueComparison:
    def test(
        control: ProportionStatistic | RatioStatistic | SampleMeanStatistic,
        treatment: ProportionStatistic | RatioStatistic | SampleMeanStatistic,
        counted: str,
    ) -> ComparisonResult:
        if min(control.n, treatment.n) < minimum_units:
            return ComparisonResult.insufficient(
                "absolute",
                alpha,
                f"fewer than {minimum_units} {counted} units in an arm ({base.arm} {control.n}, "
                f"{arm.arm} {treatment.n}): too few to call",
            )
        return welch_test(control, treatment, alpha=alpha)

    a, b = arm.sums, base.sums
    return RevenueComparison(
        arm=arm.arm,
        control=base.arm,
        retention=test(b.retention, a.retention, "paying"),
        nrr=test(b.nrr, a.nrr, "paying"),
        mrr_change=test(b.change, a.change, "matured"),
        expansion=test(b.expansion, a.expansion, "matured"),
        contraction=test(b.contraction, a.contraction, "matured"),
        treated_accounts=a.matured,
    )
