"""A matched comparison for interventions without a randomized holdout (observational).

Treated units are compared with comparison units that looked alike before entry, by coarsened
exact matching (:mod:`closeloop.stats.matching`): numeric covariates are cut into bins whose
boundaries the warehouse computes (Sturges' rule on the pooled range, or given cutpoints),
categorical ones are kept exact, and strata lacking either arm are pruned. Binning and every
aggregate run in the warehouse; Python sees one row per (stratum, arm) with counts and sums.

The units table has the shape :func:`closeloop.analysis.measurement.measure_units` takes
(``unit_id``, ``arm``, ``entered_at``, ``goal_at``, optionally ``value``) plus the covariate
columns, which must be measured *before* entry. Completion is defined by
:func:`~closeloop.analysis.measurement.prepare_units`, so it is the same as in the randomized
report, and only matured units are compared.

The estimand is the effect on the treated (ATT) — on those treated units that found a match — and
it is observational: it is causal only if, within strata, who was treated depended on nothing
else that also drives the outcome.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import ibis
import ibis.expr.types as ir

from closeloop.analysis.measurement import MeasureOptions, prepare_units
from closeloop.data.warehouse import ENROLLMENTS_TABLE, Warehouse
from closeloop.stats import (
    ComparisonResult,
    ProportionStatistic,
    SampleMeanStatistic,
    Status,
    welch_test,
)
from closeloop.stats.matching import (
    MISSING_BIN,
    ArmSums,
    BalanceRow,
    Covariate,
    MatchCounts,
    Stratum,
    att_test,
    balance_table,
    match_counts,
    sturges_cutpoints,
)

ESTIMAND = "effect on the treated (ATT), observational"
MISSING_LEVEL = "(missing)"
COMPLETED = "completed"
VALUE = "value"
PRUNED_WARNING_SHARE = 0.10  # above this share of treated units pruned, say the ATT is narrower
MINIMUM_MATCHED = 20  # matched units per arm before the comparison is called at all
THIN_STRATUM = 5  # comparison units in a matched stratum below which its variance is unreliable
IMBALANCE = 0.1  # |standardized mean difference| after matching above which a covariate is flagged
_UNIT_KEY = "unit_key__"


@dataclass(frozen=True)
class MatchedComparison:
    """Treated versus matched comparison units: ATT estimates, balance and what was pruned."""

    treated: str
    comparison: str
    horizon_days: float
    covariates: tuple[Covariate, ...]  # with the cutpoints used
    completion: ComparisonResult  # ATT on completion within the horizon (absolute, probability)
    naive_completion: ComparisonResult  # unmatched difference, for contrast: not an estimate
    treated_completion_rate: float  # matched treated
    comparison_completion_rate: float  # matched comparison units, CEM-weighted
    balance: list[BalanceRow]
    counts: MatchCounts
    value: ComparisonResult | None = None
    naive_value: ComparisonResult | None = None
    warnings: list[str] = field(default_factory=list)
    estimand: str = ESTIMAND

    @property
    def status(self) -> Status:
        return self.completion.status


def match_units(
    units: ir.Table,
    *,
    treated: str,
    comparison: str,
    covariates: Sequence[str],
    horizon_days: float,
    cutpoints: Mapping[str, Sequence[float]] | None = None,
    value: bool = False,
    as_of: datetime | None = None,
    alpha: float = 0.05,
) -> MatchedComparison:
    """Match ``treated`` units to ``comparison`` units on ``covariates`` and estimate the ATT.

    Numeric covariates (by column type) are binned with ``cutpoints[name]`` when given, else by
    Sturges' rule over both arms' matured units; other columns are matched exactly, with missing
    values as their own level. ``value`` adds the ATT on the ``value`` column.
    """
    if treated == comparison:
        raise ValueError(f"the treated and comparison arms must differ, both are {treated!r}")
    if not covariates:
        raise ValueError("name at least one pre-entry covariate to match on")
    missing = [name for name in covariates if name not in units.columns]
    if missing:
        raise ValueError(
            f"covariate column(s) {', '.join(missing)} not in the units; columns: "
            f"{', '.join(units.columns)}"
        )
    cutpoints = dict(cutpoints or {})
    unknown = sorted(set(cutpoints) - set(covariates))
    if unknown:
        raise ValueError(f"cutpoints given for {', '.join(unknown)}, which are not covariates")
    options = MeasureOptions(
        horizon_days=horizon_days, control=comparison, as_of=as_of, value=value
    )
    facts, immature = _matured_facts(units, treated, comparison, covariates, options)
    specs = _covariates(facts, units, covariates, cutpoints)
    strata = _strata(facts, specs, treated, value)
    return _compare(strata, specs, treated, comparison, options, immature, alpha)


def _matured_facts(
    units: ir.Table,
    treated: str,
    comparison: str,
    covariates: Sequence[str],
    options: MeasureOptions,
) -> tuple[ir.Table, int]:
    """Matured units of both arms with completion (and value) as ``prepare_units`` defines it,
    joined back to their covariates; and how many units were left out because not matured."""
    both = units.filter(units.arm.isin([treated, comparison]))
    # prepare_units keeps only the arm column: pass a unit key through it to join covariates back.
    key = both.unit_id.cast("string").concat("|", both.entered_at.cast("string"))
    keyed = both.mutate(**{_UNIT_KEY: key})
    facts = prepare_units(keyed.mutate(arm=keyed[_UNIT_KEY]), options).rename({_UNIT_KEY: "arm"})
    extra = [VALUE] if options.value else []
    facts = facts.select(_UNIT_KEY, "is_matured", "is_completed", *extra)
    joined = facts.inner_join(keyed.select(_UNIT_KEY, "arm", *covariates), _UNIT_KEY)
    counts = (
        joined.aggregate(immature=(~joined.is_matured).cast("int64").sum(), n=joined.count())
        .to_pyarrow()
        .to_pylist()[0]
    )
    immature = int(counts["immature"] or 0)
    return joined.filter(joined.is_matured), immature


def _covariates(
    facts: ir.Table,
    units: ir.Table,
    covariates: Sequence[str],
    cutpoints: Mapping[str, Sequence[float]],
) -> tuple[Covariate, ...]:
    """Each covariate with its cutpoints: given, or Sturges' from one warehouse aggregate."""
    numeric = [name for name in covariates if _is_numeric(units[name])]
    needs_range = [name for name in numeric if name not in cutpoints]
    ranges: dict[str, tuple[float, ...]] = {}
    if needs_range:
        metrics: dict[str, ir.Value] = {}
        for index, name in enumerate(needs_range):
            column = facts[name].cast("float64")
            metrics[f"n{index}"] = column.count()
            metrics[f"lo{index}"] = column.min()
            metrics[f"hi{index}"] = column.max()
        row = facts.aggregate(**metrics).to_pyarrow().to_pylist()[0]
        for index, name in enumerate(needs_range):
            n, lo, hi = row[f"n{index}"], row[f"lo{index}"], row[f"hi{index}"]
            ranges[name] = (
                sturges_cutpoints(int(n), float(lo), float(hi)) if n and lo is not None else ()
            )
    specs = []
    for name in covariates:
        if name not in numeric:
            if name in cutpoints:
                raise ValueError(f"cutpoints given for {name!r}, which is not numeric")
            specs.append(Covariate(name))
        elif name in cutpoints:
            specs.append(Covariate(name, tuple(float(c) for c in cutpoints[name])))
        else:
            specs.append(Covariate(name, ranges[name]))
    return tuple(specs)


def _is_numeric(column: ir.Value) -> bool:
    dtype = column.type()
    return bool(dtype.is_numeric() and not dtype.is_boolean())


def _bin(column: ir.Value, covariate: Covariate) -> ir.Value:
    """The coarsened value in the warehouse, as :meth:`Covariate.coarsen` computes it."""
    if covariate.cutpoints is None:
        return column.cast("string").fill_null(MISSING_LEVEL)
    number = column.cast("float64")
    index: ir.Value = ibis.literal(0, "int64")
    for cut in covariate.cutpoints:
        index = index + (number >= cut).cast("int64")
    return ibis.ifelse(number.isnull(), ibis.literal(MISSING_BIN, "int64"), index)


def _strata(
    facts: ir.Table, covariates: Sequence[Covariate], treated: str, value: bool
) -> list[Stratum]:
    bins = {f"bin{index}": _bin(facts[c.name], c) for index, c in enumerate(covariates)}
    binned = facts.mutate(**bins, completed_number=facts.is_completed.cast("float64"))
    metrics: dict[str, ir.Value] = {
        "n": binned.count(),
        "completed_sum": binned.completed_number.sum(),
    }
    quantities = [c.name for c in covariates if not c.categorical]
    if value:
        quantities.append(VALUE)
    for index, name in enumerate(quantities):
        column = binned[name].cast("float64")
        metrics[f"q{index}_n"] = column.count()
        metrics[f"q{index}_sum"] = column.sum()
        metrics[f"q{index}_squares"] = (column * column).sum()
    rows = binned.group_by([*bins, "arm"]).aggregate(**metrics).to_pyarrow().to_pylist()
    cells: dict[tuple[tuple[object, ...], bool], ArmSums] = {}
    for row in rows:
        completed = float(row["completed_sum"] or 0.0)
        sums = {COMPLETED: SampleMeanStatistic(int(row["n"]), completed, completed)}
        for index, name in enumerate(quantities):
            sums[name] = SampleMeanStatistic(
                int(row[f"q{index}_n"] or 0),
                float(row[f"q{index}_sum"] or 0.0),
                float(row[f"q{index}_squares"] or 0.0),
            )
        key = tuple(row[name] for name in bins)
        cells[(key, row["arm"] == treated)] = ArmSums(int(row["n"]), sums)
    keys = sorted({key for key, _ in cells}, key=repr)
    empty = ArmSums(0)
    return [
        Stratum(key, cells.get((key, True), empty), cells.get((key, False), empty)) for key in keys
    ]


def _total(strata: Sequence[Stratum], treated: bool, name: str) -> SampleMeanStatistic:
    total = ArmSums(0)
    for stratum in strata:
        total = total + (stratum.treated if treated else stratum.control)
    return total.statistic(name)


def _compare(
    strata: list[Stratum],
    covariates: tuple[Covariate, ...],
    treated: str,
    comparison: str,
    options: MeasureOptions,
    immature: int,
    alpha: float,
) -> MatchedComparison:
    counts = match_counts(strata)
    warnings: list[str] = []
    if counts.treated_matched < MINIMUM_MATCHED or counts.control_matched < MINIMUM_MATCHED:
        message = (
            f"fewer than {MINIMUM_MATCHED} matched units in an arm ({treated} "
            f"{counts.treated_matched}, {comparison} {counts.control_matched}): too few to call; "
            "coarsen the covariates more (fewer bins) or match on fewer of them"
        )
        completion = ComparisonResult.insufficient("absolute", alpha, message)
        value = ComparisonResult.insufficient("absolute", alpha, message) if options.value else None
    else:
        completion = att_test(strata, COMPLETED, alpha=alpha)
        value = att_test(strata, VALUE, alpha=alpha) if options.value else None
    completed_t, completed_c = _total(strata, True, COMPLETED), _total(strata, False, COMPLETED)
    naive = welch_test(
        ProportionStatistic(completed_c.n, round(completed_c.sum)),
        ProportionStatistic(completed_t.n, round(completed_t.sum)),
        alpha=alpha,
    )
    naive_value = (
        welch_test(_total(strata, False, VALUE), _total(strata, True, VALUE), alpha=alpha)
        if options.value
        else None
    )
    matched = [s for s in strata if s.matched]
    n_treated = sum(s.treated.n for s in matched)
    treated_rate = (
        sum(s.treated.statistic(COMPLETED).sum for s in matched) / n_treated
        if n_treated
        else math.nan
    )
    comparison_rate = (
        sum(s.treated.n * s.control.statistic(COMPLETED).mean for s in matched) / n_treated
        if n_treated
        else math.nan
    )
    share = counts.treated_pruned_share
    if counts.treated_pruned:
        warnings.append(
            f"{counts.treated_pruned} of {counts.treated_matched + counts.treated_pruned} treated "
            f"units ({share:.0%}) had no {comparison} unit with the same coarsened covariates and "
            "were pruned: the estimate describes only the matched treated"
            + (
                "; with this many pruned it may not describe the treated as a whole — coarsen "
                "the covariates more to keep more of them"
                if share > PRUNED_WARNING_SHARE
                else ""
            )
        )
    thin = sum(s.treated.n for s in matched if s.control.n < THIN_STRATUM)
    if n_treated and thin / n_treated > PRUNED_WARNING_SHARE:
        warnings.append(
            f"{thin / n_treated:.0%} of the matched treated are in strata with fewer than "
            f"{THIN_STRATUM} {comparison} units: those few units stand in for many treated ones "
            "and their variance is poorly estimated, so the interval may be too narrow; coarsen "
            "the covariates more"
        )
    if immature:
        warnings.append(
            f"{immature} unit(s) have not had their full {options.horizon_days:g} days yet and "
            "are left out of the matching"
        )
    imbalanced = [row for row in balance_table(strata, covariates) if abs(row.smd_after) > 0.1]
    balance = balance_table(strata, covariates)
    if imbalanced:
        listed = ", ".join(
            row.covariate if row.level is None else f"{row.covariate}={row.level}"
            for row in imbalanced
        )
        warnings.append(
            f"covariates still imbalanced after matching (|SMD| > 0.1): {listed}; use finer "
            "bins for them"
        )
    warnings.append(
        "observational: treatment was not randomized, so this is causal only if nothing besides "
        "the matched covariates drove both who was treated and the outcome"
    )
    return MatchedComparison(
        treated=treated,
        comparison=comparison,
        horizon_days=options.horizon_days,
        covariates=covariates,
        completion=completion,
        naive_completion=naive,
        treated_completion_rate=treated_rate,
        comparison_completion_rate=comparison_rate,
        balance=balance,
        counts=counts,
        value=value,
        naive_value=naive_value,
        warnings=warnings,
    )


# -- the comparison cohort of an observational job -------------------------------------------------


def eligible_comparison_units(
    warehouse: Warehouse,
    *,
    job_name: str,
    eligible_at: Callable[[datetime], ir.Table],
    times: Sequence[datetime],
    goal_reached_at: Callable[[ir.Table], ir.Table],
    arm: str = "comparison",
) -> ir.Table:
    """Accounts that were eligible for ``job_name`` at one of ``times`` but never enrolled in it.

    ``eligible_at(t)`` gives the accounts (column ``account_id``) in the job's audience and in
    none of its exclusions as of ``t``, as the engine evaluates them at a tick; the caller binds
    the job's expressions (``closeloop.data.compiler.matching_accounts`` with the project's
    catalog), because this layer does not read definitions. Time zero is aligned: a comparison
    account enters at the first of ``times`` at which it was eligible, as an enrolled one entered
    at the tick that found it eligible. ``goal_reached_at(candidates)`` maps ``account_id``,
    ``entered_at`` to ``account_id``, ``reached_at`` (``closeloop.data.compiler.goal_reached_at``
    with the job's goal). Everything stays in the warehouse: the result is an expression with
    ``unit_id``, ``account_id``, ``arm``, ``entered_at`` and ``goal_at``, ready to be unioned
    with the job's enrollments (same columns) and given covariates, then :func:`match_units`.
    """
    if not times:
        raise ValueError("give at least one evaluation time (e.g. each day of the job's window)")
    snapshots = [
        eligible_at(moment).select("account_id", eligible_since=ibis.timestamp(moment))
        for moment in sorted(set(times))
    ]
    eligible = (
        snapshots[0].union(*snapshots[1:], distinct=True) if len(snapshots) > 1 else (snapshots[0])
    )
    first = eligible.group_by("account_id").aggregate(entered_at=eligible.eligible_since.min())
    if warehouse.has_table(ENROLLMENTS_TABLE):
        enrollments = warehouse.table(ENROLLMENTS_TABLE)
        enrolled = enrollments.filter(enrollments.job_name == job_name).select("account_id")
        first = first.anti_join(enrolled, "account_id")
    reached = goal_reached_at(first.select("account_id", "entered_at"))
    reached = reached.group_by("account_id").aggregate(goal_at=reached.reached_at.min())
    units = first.left_join(reached, "account_id")
    return units.select(
        unit_id=units.account_id,
        account_id=units.account_id,
        arm=ibis.literal(arm, "string"),
        entered_at=units.entered_at.cast("timestamp"),
        goal_at=units.goal_at.cast("timestamp"),
    )
